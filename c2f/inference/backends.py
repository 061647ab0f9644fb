"""Choosing a backend for a weights file and loading its predictor (predictor.py describes the seam)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

from c2f.errors import C2FError
from c2f.extras import TORCH_BACKEND_MODULES, require
from c2f.inference.devices import check_device, cuda_available
from c2f.inference.onnx_session import onnx_predictor
from c2f.inference.predictor import Predictor
from c2f.io.label_sets import LabelSet
from c2f.shipped import default_onnx_path, refine_weights

BACKENDS = ("auto", "torch", "onnx")


def warn(note: str) -> None:
    """The default for notes: a RuntimeWarning, which library users see once and can filter."""
    warnings.warn(note, RuntimeWarning, stacklevel=3)


def choose_backend(weights: Path | None) -> str:
    """auto: ONNX Runtime for .onnx files and for the shipped model (it runs faster on a CPU), torch otherwise."""
    if weights is None:
        return "onnx" if default_onnx_path().is_file() else "torch"
    return "onnx" if Path(weights).suffix.lower() == ".onnx" else "torch"


def model_file(weights: Path | None, backend: str = "auto", precision: str = "auto") -> Path:
    """The file to load: --weights as given, else the default shipped model in the precision asked for
    (shipped.shipped_model_file: int8 where shipped, unless fp32 is asked for)."""
    return refine_weights(weights, None, None, backend, precision)


def run_precision(precision: str) -> str:
    """The precision load_predictor still needs once refine_weights has chosen the file for it: bf16 says how to
    run that file; auto, fp32 and int8 only chose it."""
    return "bf16" if precision == "bf16" else "auto"


def load_predictor(weights: Path | None, labels: LabelSet | None, backend: str = "auto", device: str = "auto",
                   on_note: Callable[[str], None] | None = None,
                   precision: str = "auto") -> tuple[Predictor, LabelSet, bool]:
    """A predictor for a weights file (or the shipped model of a precision), its label set, and whether it reads
    the coarse map. precision bf16 runs the torch backend in bfloat16 (torch_backend.py).

    --device cuda where the GPU cannot be used runs on the CPU instead, after one line to on_note
    (default: a RuntimeWarning): refining gives the same maps there, only slower.
    """
    on_note = on_note or warn
    weights = model_file(weights, backend, precision)
    if backend == "auto":
        backend = choose_backend(weights)
    if precision == "bf16" and backend != "torch":
        raise C2FError("--precision bf16 runs on the torch backend; drop --backend onnx.")
    if backend == "onnx":
        return onnx_predictor(weights, labels, device, on_note)
    if backend != "torch":
        raise C2FError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    # Imported here, not at the top: torch takes seconds to import, and the ONNX path never needs it.
    require(f"the torch backend ({Path(weights).name})" if weights else "the torch backend", *TORCH_BACKEND_MODULES)
    from c2f.inference.torch_backend import torch_predictor
    from c2f.weights import load_weights

    model, stored_labels, _ = load_weights(weights, labels)
    check_device(device)
    if device == "cuda" and not cuda_available():
        on_note("torch sees no CUDA GPU, so this runs on the CPU; install a CUDA build of torch to use the GPU.")
        device = "cpu"
    return (torch_predictor(model, device, "bf16" if precision == "bf16" else "fp32"), stored_labels,
            model.config.use_coarse)
