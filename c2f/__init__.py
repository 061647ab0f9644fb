"""c2f: refine coarse segmentation maps into fine ones with a conditional U-Net.

    import c2f
    refiner = c2f.Refiner()  # the shipped FASSEG model; or c2f.Refiner("run/model.safetensors")
    fine = refiner.refine("photo.png", "coarse.png")  # (H, W) class ids; numpy arrays work too
    print(c2f.score(fine, "fine.png").mean_iou)

Everything is imported on first use (c2f.api), so `import c2f` loads neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import sys
import types

PUBLIC_NAMES = ("Refiner", "score", "__version__")
__all__ = list(PUBLIC_NAMES)


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("c2f")
        except PackageNotFoundError:  # a checkout on PYTHONPATH, never installed
            return "0+unknown"
    if name == "Refiner":
        from c2f.api import Refiner

        return Refiner
    raise AttributeError(f"module 'c2f' has no attribute {name!r}")


class Package(types.ModuleType):
    """The c2f package, whose `score` is the scoring function even once the c2f.score module is loaded."""

    @property
    def score(self):
        """c2f.score(predicted, fine, labels=None): Scores of a predicted map against a fine one."""
        from c2f.api import score

        return score

    @score.setter
    def score(self, module) -> None:
        # Loading the c2f.score module makes Python set c2f.score to it; the function stays the public name
        # (the module is still what `from c2f.score import ...` reads, through sys.modules).
        pass


sys.modules[__name__].__class__ = Package
