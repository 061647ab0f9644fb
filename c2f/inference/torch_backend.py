"""The torch backend: a model wrapped as a numpy-in, numpy-out predictor, in float32 or bfloat16.

On a CPU the network runs channels-last (NHWC), the layout oneDNN's convolutions are fastest in; the
maps are the same as in the default layout. bfloat16 (`--precision bf16`) runs under autocast on CPUs
with bfloat16 instructions (AVX512-BF16 or AMX) and on CUDA GPUs that have it; elsewhere it is refused,
since emulated bfloat16 is slower than float32.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from c2f.errors import C2FError
from c2f.inference.devices import choose_torch_device
from c2f.inference.predictor import Predictor
from c2f.model import Network

TORCH_PRECISIONS = ("fp32", "bf16")


def bf16_supported(device: torch.device) -> bool:
    """Whether the device computes in bfloat16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for bf16, nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torch_predictor(model: Network, device: str | torch.device = "cpu", precision: str = "fp32") -> Predictor:
    """Wrap a model as a numpy-in, numpy-out predictor on the chosen device (auto, cpu, cuda, or a torch.device),
    in fp32 or bf16. The model is set to eval mode; on a CPU the predictor runs a channels-last copy of it, so the
    caller's model (a model in training, say) keeps its layout."""
    if precision not in TORCH_PRECISIONS:
        raise C2FError(f"the torch backend runs in {' or '.join(TORCH_PRECISIONS)}, not {precision!r}.")
    target = device if isinstance(device, torch.device) else choose_torch_device(device)
    if precision == "bf16" and not bf16_supported(target):
        what = "this GPU" if target.type == "cuda" else "this CPU (it needs AVX512-BF16 or AMX)"
        raise C2FError(f"{what} has no bfloat16 instructions, where bf16 would run slower than float32; use "
                       "--precision fp32 or int8.")
    model = model.to(target).eval()
    channels_last = target.type == "cpu"
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def predict(batch: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(batch).to(target)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(target, precision):
            logits = model(inputs)
        return logits.float().contiguous().cpu().numpy()
    return predict
