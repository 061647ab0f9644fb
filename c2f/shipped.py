"""Where the shipped files live: `weights/` and `labels/` in a checkout, `c2f/shipped_weights/` and
`c2f/label_tables/` in an installed wheel.

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


SHIPPED_MODELS = {"fasseg": DEFAULT_WEIGHTS_NAME}  # names that --init accepts for a shipped model


def resolve_weights(path: Path) -> Path:
    """A weights path as given, or a shipped model's file when given its name (`--init fasseg`) and no such file exists."""
    if not Path(path).exists() and str(path) in SHIPPED_MODELS:
        return default_weights_path(SHIPPED_MODELS[str(path)])
    return Path(path)


def is_inside_package(path: Path) -> bool:
    """Whether path lies inside the installed c2f package (site-packages), where nothing should be written."""
    package = Path(__file__).resolve().parent
    return Path(path).resolve().is_relative_to(package)


def shipped_label_table(name: str) -> Path:
    """A shipped label table (`--labels cityscapes`): `labels/NAME.toml` in a checkout, else the installed copy."""
    checkout_copy = Path(__file__).resolve().parent.parent / "labels" / f"{name}.toml"
    if checkout_copy.is_file():
        return checkout_copy
    return Path(__file__).resolve().parent / "label_tables" / f"{name}.toml"
