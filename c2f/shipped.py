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


# Shipped models by name (`--model`, `--init`): FASSEG's faces and CamVid's street scenes, each with its label table
# of the same name (labels/NAME.toml) and an ONNX export beside it (NAME.onnx).
SHIPPED_MODELS = {"fasseg": DEFAULT_WEIGHTS_NAME, "camvid": "camvid.safetensors"}


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


def shipped_model_for_labels(labels: str | Path | None) -> str | None:
    """The shipped model made for a label table: `--labels camvid` (or the shipped camvid.toml itself) gives camvid."""
    if labels is None:
        return None
    name = Path(labels).stem
    if name in SHIPPED_MODELS and (str(labels) == name or Path(labels).resolve() == shipped_label_table(name).resolve()):
        return name
    return None


def refine_weights(weights: Path | None, model: str | None, labels: str | Path | None, backend: str) -> Path | None:
    """The weights `c2f refine` loads: --weights as given, else the shipped model named by --model or made for
    --labels (its ONNX file unless the torch backend is asked for), else None for the default (FASSEG) model."""
    from c2f.errors import C2FError

    if weights is not None and model is not None:
        raise C2FError("give --weights or --model, not both: --model names a shipped model, --weights a file.")
    if weights is not None:
        return Path(weights)
    name = model or shipped_model_for_labels(labels)
    if name is not None and name not in SHIPPED_MODELS:
        raise C2FError(f"no shipped model {name!r}; choose one of {', '.join(SHIPPED_MODELS)}.")
    if name is None or SHIPPED_MODELS[name] == DEFAULT_WEIGHTS_NAME:
        return None  # the default model, whose precision (--precision) picks its file
    safetensors = default_weights_path(SHIPPED_MODELS[name])
    onnx = safetensors.with_suffix(".onnx")
    path = onnx if backend != "torch" and onnx.is_file() else safetensors
    if not path.is_file():
        raise C2FError(f"the shipped {name} model is missing ({path}); reinstall c2f.")
    return path
