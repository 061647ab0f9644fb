"""c2f: refine coarse segmentation maps into fine ones with a conditional U-Net.

    import c2f
    refiner = c2f.Refiner()  # the shipped FASSEG model; or c2f.Refiner("run/model.safetensors")
    fine = refiner.refine("photo.png", "coarse.png")  # (H, W) class ids; numpy arrays work too
    print(c2f.score(fine, "fine.png").mean_iou)

Everything is imported on first use (c2f.api), so `import c2f` loads neither torch nor ONNX Runtime.
"""

from __future__ import annotations

PUBLIC_NAMES = ("Refiner", "score", "__version__")
__all__ = list(PUBLIC_NAMES)


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("c2f")
        except PackageNotFoundError:  # a checkout on PYTHONPATH, never installed
            return "0+unknown"
    if name in ("Refiner", "score"):
        from c2f import api

        return getattr(api, name)
    raise AttributeError(f"module 'c2f' has no attribute {name!r}")
