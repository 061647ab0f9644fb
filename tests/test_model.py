"""The conditional networks: shapes for several widths and depths, with and without the coarse map; the encoder's."""

from __future__ import annotations

import pytest
import torch

from c2f.config import ModelConfig
from c2f.model import EncoderUNet, UNet, build_model

ENCODER = ModelConfig(encoder="efficientnet-lite0")


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


@pytest.mark.parametrize("depth", [1, 3])
def test_nearest_upsampling_gives_the_same_shapes_without_a_transposed_convolution(depth):
    config = ModelConfig(num_classes=5, width=4, depth=depth, upsampling="nearest")
    model = UNet(config).eval()
    assert not any(isinstance(layer, torch.nn.ConvTranspose2d) for layer in model.modules())
    assert [upsampler[0].kernel_size for upsampler in model.upsamplers] == [(1, 1)] * depth
    with torch.no_grad():
        logits = model(torch.randn(1, config.in_channels, 2**depth * 2, 2**depth * 3))
    assert logits.shape == (1, 5, 2**depth * 2, 2**depth * 3)


def test_nearest_upsampling_doubles_each_pixel_after_its_1x1_convolution():
    upsampler = UNet(ModelConfig(width=2, depth=1, upsampling="nearest")).upsamplers[0]
    features = torch.randn(1, 4, 3, 5)
    with torch.no_grad():
        doubled, mixed = upsampler(features), upsampler[0](features)
    assert doubled.shape == (1, 2, 6, 10)
    assert torch.equal(doubled[:, :, ::2, ::2], mixed) and torch.equal(doubled[:, :, 1::2, 1::2], mixed)


def test_build_model_builds_the_architecture_the_config_names():
    assert type(build_model(ModelConfig(width=4, depth=2))) is UNet
    assert type(build_model(ENCODER)) is EncoderUNet
    assert ModelConfig(width=4, depth=2).size_multiple == 4 and ENCODER.size_multiple == 32


@pytest.mark.parametrize("use_coarse", [True, False])
def test_encoder_model_gives_one_logit_per_class_at_the_input_size(use_coarse):
    config = ModelConfig(num_classes=5, use_coarse=use_coarse, encoder="efficientnet-lite0")
    model = build_model(config).eval()
    assert model.encoder.stem.conv.in_channels == config.in_channels
    with torch.no_grad():
        logits = model(torch.randn(2, config.in_channels, 64, 96))
    assert logits.shape == (2, 5, 64, 96) and logits.dtype == torch.float32


def test_encoder_model_adds_the_coarse_map_with_its_gain_and_takes_out_the_loss_weights_at_inference():
    torch.manual_seed(0)
    model = build_model(ENCODER).eval()
    inputs = torch.cat([torch.randn(1, 3, 32, 32), torch.nn.functional.one_hot(
        torch.randint(0, 6, (1, 32, 32)), 6).permute(0, 3, 1, 2).float()], dim=1)
    with torch.no_grad():
        before = model(inputs)
        model.coarse_gain.add_(2.0)
        model.log_loss_weights.copy_(torch.arange(6.0))
        after = model(inputs)
    expected = 2.0 * inputs[:, 3:] - torch.arange(6.0)[:, None, None]
    assert torch.allclose(after - before, expected, atol=1e-5)


def test_gradients_reach_the_encoder_stem_and_the_full_resolution_block():
    model = build_model(ENCODER)
    model(torch.randn(2, 9, 32, 32)).sum().backward()
    assert model.encoder.stem.conv.weight.grad[:, 3:].abs().sum() > 0  # the coarse planes' stem weights learn
    assert model.full_resolution[0].weight.grad.abs().sum() > 0
