"""Choosing where the network runs: auto (CUDA when present), cpu or cuda, the same way for both backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from c2f.errors import C2FError

if TYPE_CHECKING:  # torch is imported only when the torch backend runs
    import torch

DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> None:
    """Refuse a --device other than DEVICES, the same way for both backends."""
    if device not in DEVICES:
        raise C2FError(f"unknown --device {device!r}; choose one of {', '.join(DEVICES)}.")


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def choose_torch_device(device: str) -> torch.device:
    """auto picks CUDA when torch sees a GPU, else the CPU; cuda without a GPU is an error."""
    import torch

    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise C2FError("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu.")
    return torch.device(device)
