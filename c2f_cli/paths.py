"""Where the shipped model files live, and the format tag c2f writes into its model files.

Torch-free, so the ONNX Runtime path (`c2f refine --backend onnx`) never imports torch.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_WEIGHTS_NAME = "fasseg.safetensors"
FORMAT_VERSION = "1"  # stored as "c2f_format" in every weights, checkpoint and ONNX file c2f writes


def default_weights_path(name: str = DEFAULT_WEIGHTS_NAME) -> Path:
    """The shipped FASSEG weights: `weights/` beside the package in a checkout, else the installed copy."""
    checkout_copy = Path(__file__).resolve().parent.parent / "weights" / name
    if checkout_copy.is_file():
        return checkout_copy
    # A wheel installs the `c2f_cli.weights` package data as c2f_cli/weights/; importlib.resources cannot
    # reach it by name because the module c2f_cli/weights.py wins the import of that name.
    return Path(__file__).resolve().parent / "weights" / name
