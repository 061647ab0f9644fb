"""The conditional networks: photo (+ one-hot coarse map) in, per-class logits out.

Pure torch, no I/O. Two architectures: the U-Net trained from scratch (width and depth are
hyperparameters so the same code builds the small shipped model and larger experiments),
and a light U-Net decoder over the ImageNet-pretrained EfficientNet-Lite0 (`--encoder`).
`ModelConfig` travels with the weights so a weights file rebuilds its own network through
`build_model`.
"""

from __future__ import annotations

import torch
from torch import nn

from c2f.config import Encoder, ModelConfig, Upsampling
from c2f.encoders import FEATURE_CHANNELS, PRETRAINED_MEAN, PRETRAINED_SPREAD, EfficientNetLite0
from c2f.inference.network_input import PHOTO_MEAN, PHOTO_SPREAD


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def upsampler(in_channels: int, out_channels: int, kind: str) -> nn.Module:
    """Twice the rows and columns, in_channels to out_channels: a learned 2x2 transposed convolution, or a 1x1
    convolution at the low resolution followed by nearest-neighbour doubling (the 3x3 convolutions after it tell
    the four copies apart). ONNX Runtime's CPU kernels run transposed convolutions in float32 only, so an int8
    model dequantises around each one and changes memory layout twice; the nearest form stays quantised."""
    if kind == Upsampling.nearest.value:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)


def finished_logits(model: nn.Module, logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """A network head's logits plus the gained one-hot coarse map, less the loss weights' log at inference."""
    if model.coarse_gain is not None:
        logits = logits + model.coarse_gain * inputs[:, 3:]
    if not model.training:
        logits = logits - model.log_loss_weights[:, None, None]
    return logits


class UNet(nn.Module):
    """U-Net whose channel count doubles at each of `depth` downsamplings."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = [config.width * 2**level for level in range(config.depth + 1)]
        self.encoders = nn.ModuleList()
        in_channels = config.in_channels
        for width in widths:
            self.encoders.append(conv_block(in_channels, width))
            in_channels = width
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamplers.append(upsampler(width * 2, width, config.upsampling))
            self.decoders.append(conv_block(width * 2, width))
        self.head = nn.Conv2d(widths[0], config.num_classes, 1)
        # The coarse map is already about 90 % right: adding it to the logits lets the
        # network start from it and learn only the corrections, which trains far faster.
        self.coarse_gain = nn.Parameter(torch.tensor(3.0)) if config.use_coarse else None
        # Training weights rare classes up (inverse frequency), which biases the argmax towards
        # them; at inference the log of those weights is taken back out (logit adjustment), so
        # the map shows the most likely class. Set by training, stored with the weights.
        self.register_buffer("log_loss_weights", torch.zeros(config.num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # inputs: (N, in_channels, H, W) with H and W multiples of 2**depth
        skips = []
        features = inputs
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                features = nn.functional.max_pool2d(features, 2)
            features = encoder(features)
            skips.append(features)
        skips.pop()  # the bottleneck is not a skip connection
        for upsampler, decoder in zip(self.upsamplers, self.decoders):
            features = upsampler(features)
            features = decoder(torch.cat([features, skips.pop()], dim=1))
        return finished_logits(self, self.head(features), inputs)  # (N, num_classes, H, W)


def separable_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 1x1 convolution mixing the inputs, then a depthwise-separable 3x3; batch norm and ReLU after each."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


# Channels of the decoder at strides 16, 8, 4, 2 and 1. Separable convolutions and these narrow widths keep the
# decoder near 1.5 GFLOP on a 512x416 face, so the whole network costs a fifth of the U-Net's 20 GFLOP.
DECODER_WIDTHS = (96, 48, 32, 24, 16)
# Channels of the full-resolution convolution on the raw input (photo + coarse map): the encoder's finest
# features are at half resolution, and class boundaries must land on the right pixel.
FULL_RESOLUTION_WIDTH = 16


class EncoderUNet(nn.Module):
    """ImageNet-pretrained EfficientNet-Lite0 encoder with a light U-Net decoder back to full resolution.

    The encoder sees the photo and the coarse map: its stem takes all input channels, with the
    ImageNet weights on RGB and zeros on the coarse planes (`build_model(..., pretrained=True)`),
    so training starts from the ImageNet encoder on the photo and learns how far to let the coarse
    map shape its features; a decoder-only coarse map could not steer what the encoder attends to.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite0(config.in_channels)
        self.full_resolution = nn.Sequential(
            nn.Conv2d(config.in_channels, FULL_RESOLUTION_WIDTH, 3, padding=1, bias=False),
            nn.BatchNorm2d(FULL_RESOLUTION_WIDTH),
            nn.ReLU(inplace=True),
        )
        skip_channels = (*reversed(FEATURE_CHANNELS[:-1]), FULL_RESOLUTION_WIDTH)  # strides 16, 8, 4, 2, 1
        self.decoders = nn.ModuleList()
        in_channels = FEATURE_CHANNELS[-1]
        for width, skip in zip(DECODER_WIDTHS, skip_channels):
            self.decoders.append(separable_block(in_channels + skip, width))
            in_channels = width
        self.head = nn.Conv2d(in_channels, config.num_classes, 1)
        # As in the U-Net: the coarse map added to the logits, and the loss weights' log taken out at inference.
        self.coarse_gain = nn.Parameter(torch.tensor(3.0)) if config.use_coarse else None
        self.register_buffer("log_loss_weights", torch.zeros(config.num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # inputs: (N, in_channels, H, W) as network_input makes them, H and W multiples of 32
        # The pretrained encoder expects RGB as (value - 127) / 128; network_input gives (value - 127.5) / 64.
        photo = (inputs[:, :3] * (PHOTO_SPREAD / PRETRAINED_SPREAD)
                 + (PHOTO_MEAN - PRETRAINED_MEAN) / PRETRAINED_SPREAD)
        features = self.encoder(torch.cat([photo, inputs[:, 3:]], dim=1))  # strides 2, 4, 8, 16, 32
        skips = [self.full_resolution(inputs), *features[:-1]]
        decoded = features[-1]  # (N, 320, H/32, W/32)
        for decoder in self.decoders:
            decoded = nn.functional.interpolate(decoded, scale_factor=2, mode="bilinear", align_corners=False)
            decoded = decoder(torch.cat([decoded, skips.pop()], dim=1))
        return finished_logits(self, self.head(decoded), inputs)  # (N, num_classes, H, W)


Network = UNet | EncoderUNet


def build_model(config: ModelConfig, pretrained: bool = False) -> Network:
    """The network `config` describes; `pretrained` starts an encoder from its ImageNet weights (their package)."""
    if config.encoder == Encoder.unet.value:
        return UNet(config)
    model = EncoderUNet(config)
    if pretrained:
        model.encoder.load_pretrained()
    return model
