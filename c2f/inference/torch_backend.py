"""The torch backend: a model wrapped as a numpy-in, numpy-out predictor."""

from __future__ import annotations

import numpy as np
import torch

from c2f.inference.devices import choose_torch_device
from c2f.inference.predictor import Predictor
from c2f.model import Network


def torch_predictor(model: Network, device: str | torch.device = "cpu") -> Predictor:
    """Wrap a model as a numpy-in, numpy-out predictor on the chosen device (auto, cpu, cuda, or a torch.device)."""
    target = device if isinstance(device, torch.device) else choose_torch_device(device)
    model = model.to(target).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(target)).float().cpu().numpy()
    return predict
