"""Where the shipped files live: `weights/` and `labels/` in a checkout, `c2f/shipped_weights/` and
`c2f/label_tables/` in an installed wheel.

Torch-free, so the ONNX Runtime path (`c2f refine --backend onnx`) never imports torch.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "fasseg"  # the model `c2f refine` uses when neither --weights, --model nor a matching --labels is given
DEFAULT_WEIGHTS_NAME = "fasseg.safetensors"

# Shipped models by name (`--model`, `--init`): FASSEG's faces and CamVid's street scenes, each with its label table
# of the same name (labels/NAME.toml), an ONNX export beside it (NAME.onnx) and, where int8 keeps the model's
# accuracy, its int8 export (NAME.int8.onnx).
SHIPPED_MODELS = {"fasseg": DEFAULT_WEIGHTS_NAME, "camvid": "camvid.safetensors"}


def default_weights_path(name: str = DEFAULT_WEIGHTS_NAME) -> Path:
    """A shipped model file: `weights/` beside the package in a checkout, else the installed copy."""
    checkout_copy = Path(__file__).resolve().parent.parent / "weights" / name
    if checkout_copy.is_file():
        return checkout_copy
    return Path(__file__).resolve().parent / "shipped_weights" / name


def default_onnx_path(model: str = DEFAULT_MODEL) -> Path:
    """A shipped model as float32 ONNX: NAME.onnx beside its safetensors."""
    return default_weights_path(SHIPPED_MODELS[model]).with_suffix(".onnx")


def int8_onnx_path(model: str = DEFAULT_MODEL) -> Path:
    """A shipped model quantised to int8: NAME.int8.onnx beside its safetensors."""
    return default_weights_path(SHIPPED_MODELS[model]).with_suffix(".int8.onnx")


def shipped_model_file(model: str, backend: str = "auto", precision: str = "auto") -> Path:
    """The file of a shipped model for a backend and precision (auto, int8, fp32 or bf16).

    auto picks the int8 export where it is shipped (it is shipped only when it keeps the float32
    model's accuracy, and it runs faster on a CPU), else float32 ONNX; the torch backend, and bf16,
    which only it runs, load the safetensors.
    """
    from c2f.errors import C2FError

    safetensors, onnx, int8 = default_weights_path(SHIPPED_MODELS[model]), default_onnx_path(model), \
        int8_onnx_path(model)
    if precision == "int8":
        if backend == "torch":
            raise C2FError("--precision int8 runs on ONNX Runtime; drop --backend torch.")
        if not int8.is_file():
            raise C2FError(f"the shipped {model} model has no int8 export ({int8} is absent): pass --precision "
                           "auto or fp32, or write one with `c2f export --quantize int8 --calibration DATA`.")
        return int8
    if precision == "bf16":
        if backend == "onnx":
            raise C2FError("--precision bf16 runs on the torch backend; drop --backend onnx.")
        return safetensors
    if backend == "torch":
        return safetensors
    if precision == "auto" and int8.is_file():
        return int8
    return onnx if onnx.is_file() or backend == "onnx" else safetensors


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


def refine_weights(weights: Path | None, model: str | None, labels: str | Path | None, backend: str = "auto",
                   precision: str = "auto") -> Path:
    """The file `c2f refine` loads: --weights as given, else the shipped model named by --model or made for
    --labels, else the default (FASSEG) model, in the file --backend and --precision ask for."""
    from c2f.errors import C2FError

    if weights is not None and model is not None:
        raise C2FError("give --weights or --model, not both: --model names a shipped model, --weights a file.")
    if weights is not None:
        if precision == "bf16":  # how the torch backend runs a .safetensors file, not a file of its own
            if Path(weights).suffix.lower() == ".onnx":
                raise C2FError(f"--precision bf16 runs a .safetensors file on the torch backend; {weights} is an "
                               "ONNX file, which runs in its own precision.")
            return Path(weights)
        if precision != "auto":
            raise C2FError("--precision chooses among the shipped models; --weights names its own file (write an "
                           "int8 one with `c2f export --quantize int8 --calibration DATA`).")
        return Path(weights)
    name = model or shipped_model_for_labels(labels) or DEFAULT_MODEL
    if name not in SHIPPED_MODELS:
        raise C2FError(f"no shipped model {name!r}; choose one of {', '.join(SHIPPED_MODELS)}.")
    path = shipped_model_file(name, backend, precision)
    if not path.is_file():
        raise C2FError(f"the shipped {name} model is missing ({path}); reinstall c2f.")
    return path
