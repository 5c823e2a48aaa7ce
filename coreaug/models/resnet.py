"""ResNets for small images.

* ``resnet20/32/56``: He et al. 2016 ("Deep Residual Learning", section 4.2), the CIFAR family:
  a 3x3 stem with 16 channels, three stages of 16/32/64 channels with n = 3/5/9 basic blocks
  each (depth 6n + 2), global average pooling, linear classifier. Shortcuts are the paper's
  **option A**: identity, and where the shape changes a parameter-free stride-2 subsample
  padded with zero channels; this is what gives resnet20 its 0.27M parameters.
* ``resnet18``: the ImageNet ResNet-18 layout (64/128/256/512 channels, two blocks per stage,
  1x1-conv + BN projection shortcuts) with the usual CIFAR stem: one 3x3 stride-1 convolution
  and no max-pool, so 32x32 inputs keep their resolution in the first stage.
"""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from coreaug.errors import UsageError

from .registry import register_model
from .weight_init import kaiming_init


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: take every ``stride``-th pixel and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option-B shortcut: a strided 1x1 convolution followed by batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (post-activation, as in He et al.)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "zero_pad":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem, stages of basic blocks (the first block of each later stage has stride 2),
    global average pooling and a linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, widths: List[int],
                 blocks_per_stage: int, shortcut: str):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, shortcut))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.blocks(self.stem(x))).flatten(1)
        return self.classifier(features)


def cifar_resnet(depth: int, in_channels: int, num_classes: int) -> ResNet:
    """He et al.'s CIFAR ResNet of ``depth = 6n + 2`` layers with option-A shortcuts."""
    if (depth - 2) % 6 != 0:
        raise UsageError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, ...), got {depth}")
    return ResNet(in_channels, num_classes, [16, 32, 64], (depth - 2) // 6, "zero_pad")


@register_model("resnet20")
def resnet20(in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages x 3 blocks, 16/32/64 channels, ~0.27M."""
    return cifar_resnet(20, in_channels, num_classes)


@register_model("resnet32")
def resnet32(in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """ResNet-32 for CIFAR (He et al. 2016): 3 stages x 5 blocks, 16/32/64 channels, ~0.46M."""
    return cifar_resnet(32, in_channels, num_classes)


@register_model("resnet56")
def resnet56(in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """ResNet-56 for CIFAR (He et al. 2016): 3 stages x 9 blocks, 16/32/64 channels, ~0.85M."""
    return cifar_resnet(56, in_channels, num_classes)


@register_model("resnet18")
def resnet18(in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max-pool) and projection shortcuts,
    ~11.2M parameters."""
    return ResNet(in_channels, num_classes, [64, 128, 256, 512], 2, "projection")
