"""The conditional U-Net: shapes for several widths and depths, with and without the coarse map."""

from __future__ import annotations

import pytest
import torch

from c2f.config import ModelConfig
from c2f.model import UNet


@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_output_has_one_logit_per_class_at_the_input_size(width, depth):
    config = ModelConfig(num_classes=6, width=width, depth=depth)
    side = 2**depth * 2  # the smallest size every level can halve
    model = UNet(config).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, config.in_channels, side, side * 3))
    assert logits.shape == (2, 6, side, side * 3)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("use_coarse, in_channels", [(True, 3 + 19), (False, 3)])
def test_input_channels_follow_use_coarse(use_coarse, in_channels):
    config = ModelConfig(num_classes=19, use_coarse=use_coarse, width=4, depth=2)
    assert config.in_channels == in_channels
    model = UNet(config).eval()
    assert model.encoders[0][0].in_channels == in_channels
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 32, 32)).shape == (1, 19, 32, 32)


def test_rgb_only_model_refuses_a_coarse_map_input():
    model = UNet(ModelConfig(use_coarse=False, width=4, depth=2)).eval()
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3 + 6, 32, 32))


def test_widths_double_at_each_level():
    model = UNet(ModelConfig(width=4, depth=3))
    assert [encoder[0].out_channels for encoder in model.encoders] == [4, 8, 16, 32]
    assert len(model.decoders) == 3
    assert model.head.out_channels == 6


def test_same_seed_builds_the_same_model():
    def parameters(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [tensor.clone() for tensor in UNet(ModelConfig(width=4, depth=2)).state_dict().values()]

    assert all(torch.equal(first, second) for first, second in zip(parameters(7), parameters(7)))
    assert not all(torch.equal(first, second) for first, second in zip(parameters(7), parameters(8)))


def test_gradients_reach_the_first_layer():
    model = UNet(ModelConfig(width=4, depth=2))
    model(torch.randn(2, 9, 16, 16)).sum().backward()
    assert model.encoders[0][0].weight.grad is not None
    assert model.encoders[0][0].weight.grad.abs().sum() > 0
