"""The conditional U-Net: photo (+ one-hot coarse map) in, per-class logits out.

Pure torch, no I/O. Width and depth are hyperparameters so the same code builds
the small shipped model and larger experiments; `ModelConfig` travels with the
weights so a weights file rebuilds its own network.
"""

from __future__ import annotations

import torch
from torch import nn

from c2f.config import ModelConfig


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
            self.upsamplers.append(nn.ConvTranspose2d(width * 2, width, 2, stride=2))
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
        logits = self.head(features)  # (N, num_classes, H, W)
        if self.coarse_gain is not None:
            logits = logits + self.coarse_gain * inputs[:, 3:]
        if not self.training:
            logits = logits - self.log_loss_weights[:, None, None]
        return logits
