"""Predictors: turn a float32 (N, C, h, w) batch into float32 (N, K, h, w) logits.

The torch and ONNX Runtime predictors share this one signature, so windowing,
blending and argmax (in tiling.py and refine.py) are written once for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelSet
from c2f_cli.tiling import Predictor

if TYPE_CHECKING:  # torch is imported only when the torch backend runs: the ONNX path never needs it
    import torch

    from c2f_cli.model import UNet

BACKENDS = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> None:
    """Refuse a --device other than DEVICES, the same way for both backends."""
    if device not in DEVICES:
        raise C2FError(f"unknown --device {device!r}; choose one of {', '.join(DEVICES)}.")


def choose_torch_device(device: str) -> torch.device:
    """auto picks CUDA when torch sees a GPU, else the CPU; cuda without a GPU is an error."""
    import torch

    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise C2FError("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu.")
    return torch.device(device)


def torch_predictor(model: UNet, device: str = "cpu") -> Predictor:
    """Wrap a model as a numpy-in, numpy-out predictor on the chosen device."""
    import torch

    target = choose_torch_device(device)
    model = model.to(target).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(target)).float().cpu().numpy()
    return predict


def choose_backend(weights: Path | None) -> str:
    """auto: ONNX Runtime for .onnx files and for the shipped model (it runs faster on a CPU), torch otherwise."""
    if weights is None:
        from c2f_cli.onnx_backend import default_onnx_path
        return "onnx" if default_onnx_path().is_file() else "torch"
    return "onnx" if Path(weights).suffix.lower() == ".onnx" else "torch"


def load_predictor(weights: Path | None, labels: LabelSet | None, backend: str = "auto",
                   device: str = "auto") -> tuple[Predictor, LabelSet, bool]:
    """A predictor for a weights file, its label set, and whether it reads the coarse map."""
    if backend == "auto":
        backend = choose_backend(weights)
    if backend == "onnx":
        from c2f_cli.onnx_backend import onnx_predictor
        return onnx_predictor(weights, labels, device)
    if backend != "torch":
        raise C2FError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    from c2f_cli.weights import load_weights

    model, stored_labels, _ = load_weights(weights, labels)
    return torch_predictor(model, device), stored_labels, model.config.use_coarse
