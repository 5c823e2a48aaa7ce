"""Wide ResNet (Zagoruyko & Komodakis 2016), pre-activation blocks.

WRN-d-k has (d - 4) / 6 blocks in each of three stages of 16k/32k/64k channels, after a 3x3
stem of 16 channels. Each block is BN-ReLU-conv3x3-BN-ReLU-conv3x3; where the shape changes
the shortcut is a 1x1 convolution of the block's pre-activated input, as in the paper's code.
"""
import torch
from torch import nn
from torch.nn import functional as F

from coreaug.errors import UsageError

from .registry import register_model
from .weight_init import kaiming_init


class PreActBlock(nn.Module):
    """Pre-activation residual block with optional dropout between its two convolutions."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.dropout = dropout
        self.projection = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(activated)
        out = self.conv1(activated)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """WRN-depth-width: stem, three stages of pre-activation blocks, BN-ReLU, pool, linear."""

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise UsageError(f"Wide ResNet depth must be 6n + 4 (16, 22, 28, ...), got {depth}")
        blocks_per_stage = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, padding=1, bias=False)
        blocks = []
        channels = 16
        for stage, base in enumerate([16, 32, 64]):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(PreActBlock(channels, base * width, stride, dropout))
                channels = base * width
        self.blocks = nn.Sequential(*blocks)
        # Pre-activation blocks leave their output un-normalised, so one BN-ReLU closes the trunk.
        self.final_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.final_norm(self.blocks(self.stem(x)))).flatten(1)
        return self.classifier(features)


@register_model("wrn-16-8")
def wrn_16_8(in_channels: int = 3, num_classes: int = 10) -> WideResNet:
    """WRN-16-8: two pre-activation blocks per stage, 128/256/512 channels, ~11.0M parameters."""
    return WideResNet(16, 8, in_channels, num_classes)
