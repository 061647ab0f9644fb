"""Where the shipped model files live: `weights/` in a checkout, `c2f/shipped_weights/` in an installed wheel.

Torch-free, so the ONNX Runtime path (`c2f refine --backend onnx`) never imports torch.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_WEIGHTS_NAME = "fasseg.safetensors"
DEFAULT_ONNX_NAME = "fasseg.onnx"
INT8_ONNX_NAME = "fasseg.int8.onnx"  # `c2f export --quantize int8` of the shipped model; refine's default when present


def default_weights_path(name: str = DEFAULT_WEIGHTS_NAME) -> Path:
    """A shipped model file: `weights/` beside the package in a checkout, else the installed copy."""
    checkout_copy = Path(__file__).resolve().parent.parent / "weights" / name
    if checkout_copy.is_file():
        return checkout_copy
    return Path(__file__).resolve().parent / "shipped_weights" / name


def default_onnx_path() -> Path:
    """The shipped FASSEG model as ONNX: fasseg.onnx beside the shipped safetensors."""
    return default_weights_path(DEFAULT_ONNX_NAME)


def int8_onnx_path() -> Path:
    """The shipped FASSEG model quantised to int8: fasseg.int8.onnx beside the shipped safetensors."""
    return default_weights_path(INT8_ONNX_NAME)
