"""The torch backend: channels-last on the CPU, bfloat16 where the hardware has it, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_scene

from c2f.config import ModelConfig, WindowSettings
from c2f.errors import C2FError
from c2f.inference import torch_backend
from c2f.inference.backends import load_predictor, run_precision
from c2f.inference.network_input import network_input
from c2f.inference.sliding_window import refine_map
from c2f.inference.torch_backend import torch_predictor
from c2f.io.label_sets import FASSEG_LABELS
from c2f.model import UNet
from c2f.weights import save_weights

# bfloat16 keeps 8 bits of mantissa, so logits move by about 1 % and pixels whose two best classes lie
# that close flip. On the shipped face model 99.98 % of held-out pixels keep their class; a small random
# model has far more near ties, so it is held to 97 %. A real fault (a layer skipped, a wrong layout)
# leaves 20 to 60 % of pixels agreeing.
BF16_AGREEMENT = 0.97


def small_model(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    model = UNet(ModelConfig(width=8, depth=2))
    with torch.no_grad():
        model.coarse_gain.fill_(0.3)  # let the network, not only the coarse map, decide pixels
    return model.eval()


def scene_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    photo, coarse, _ = make_scene(64, 96, seed=3)
    return photo, coarse, network_input(photo, coarse, 6)[None]


def test_the_cpu_predictor_runs_channels_last_with_the_same_logits_and_leaves_the_callers_model_alone():
    model = small_model()
    _, _, batch = scene_batch()
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    logits = torch_predictor(model, "cpu")(batch)
    assert logits.dtype == np.float32 and logits.flags.c_contiguous
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    weight = next(parameter for parameter in model.parameters() if parameter.dim() == 4)
    assert weight.is_contiguous()  # a model in training keeps its own layout


def test_bf16_agrees_with_float32_on_most_pixels(monkeypatch):
    monkeypatch.setattr(torch_backend, "bf16_supported", lambda device: True)  # emulated where the CPU lacks it
    model = small_model()
    photo, coarse, _ = scene_batch()
    settings = WindowSettings(whole_image=True)
    float32 = refine_map(torch_predictor(model, "cpu"), photo, coarse, 6, settings)
    bfloat16 = refine_map(torch_predictor(model, "cpu", "bf16"), photo, coarse, 6, settings)
    assert (float32 == bfloat16).mean() >= BF16_AGREEMENT


def test_bf16_is_refused_where_the_hardware_lacks_it_and_unknown_precisions_always(monkeypatch):
    monkeypatch.setattr(torch_backend, "bf16_supported", lambda device: False)
    with pytest.raises(C2FError, match="no bfloat16 instructions.*--precision fp32 or int8"):
        torch_predictor(small_model(), "cpu", "bf16")
    with pytest.raises(C2FError, match="fp32 or bf16"):
        torch_predictor(small_model(), "cpu", "int8")


def test_bf16_support_follows_the_cpus_instructions(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": False})
    assert torch_backend.bf16_supported(cpu)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert torch_backend.bf16_supported(cpu)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})
    assert not torch_backend.bf16_supported(cpu)


def test_load_predictor_runs_bf16_on_torch_only(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_backend, "bf16_supported", lambda device: True)
    weights = tmp_path / "small.safetensors"
    save_weights(weights, small_model(), FASSEG_LABELS)
    photo, coarse, batch = scene_batch()
    predictor, labels, uses_coarse = load_predictor(weights, None, "auto", "cpu", precision="bf16")
    reference, _, _ = load_predictor(weights, None, "torch", "cpu")
    assert labels == FASSEG_LABELS and uses_coarse
    assert (predictor(batch).argmax(1) == reference(batch).argmax(1)).mean() >= BF16_AGREEMENT
    with pytest.raises(C2FError, match="bf16 runs on the torch backend"):
        load_predictor(weights, None, "onnx", "cpu", precision="bf16")


def test_only_bf16_reaches_load_predictor_once_the_file_is_chosen():
    assert [run_precision(name) for name in ("auto", "fp32", "int8", "bf16")] == ["auto", "auto", "auto", "bf16"]
