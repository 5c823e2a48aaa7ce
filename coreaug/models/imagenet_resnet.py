"""ImageNet ResNets (He et al. 2016, "Deep Residual Learning", table 1) in torchvision's layout.

A 7x7 stride-2 convolution ``conv1`` with ``bn1`` and a 3x3 stride-2 max-pool (so a 224x224
image enters ``layer1`` at 56x56), four stages ``layer1..layer4`` of 64/128/256/512 "planes",
global average pooling and the classifier ``fc``. The first block of ``layer2..layer4`` has
stride 2, and wherever a block changes shape its shortcut is ``downsample``: a strided 1x1
convolution and batch norm. Bottleneck blocks put the stride on their 3x3 convolution (the
"ResNet v1.5" that torchvision ships, not the paper's stride on the first 1x1).

Module and parameter names, and so every state-dict key and shape, are torchvision's, so a
torchvision checkpoint loads with `coreaug.models.load_pretrained`.

``resnet18`` is taken by the CIFAR-stem ResNet-18 (`coreaug.models.resnet`), so the
ImageNet one is registered as ``resnet18_imagenet``; the deeper ones keep torchvision's names.
"""
from typing import List, Optional, Type, Union

import torch
from torch import nn

from coreaug.errors import UsageError

from .registry import register_model
from .weight_init import kaiming_init


def downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The projection shortcut: strided 1x1 conv (``downsample.0``) and BN (``downsample.1``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 shortcut: Optional[nn.Module] = None, width_per_group: int = 64):
        super().__init__()
        if width_per_group != 64:
            raise UsageError(f"BasicBlock only supports width_per_group=64, got {width_per_group}")
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to ``4 * planes``, each with BN (ResNet-50/101).

    The inner width is ``planes * width_per_group / 64``: 64 is the plain ResNet, 128 the
    "wide" variant (Zagoruyko & Komodakis's ``wide_resnet50_2``), whose outputs stay the same.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 shortcut: Optional[nn.Module] = None, width_per_group: int = 64):
        super().__init__()
        width = planes * width_per_group // 64
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class ImageNetResNet(nn.Module):
    """ImageNet-stem ResNet with ``blocks_per_stage[i]`` blocks in ``layer{i+1}``.

    Convolutions are Kaiming-normal (fan-out, ReLU), batch norms start at weight 1 and bias 0,
    and ``fc`` keeps PyTorch's default init, as torchvision does by default. The last BN of
    each block is *not* zero-initialised (torchvision's ``zero_init_residual=False``).
    """

    def __init__(self, block: Block, blocks_per_stage: List[int], in_channels: int = 3,
                 num_classes: int = 1000, width_per_group: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], blocks_per_stage)):
            stride = 1 if stage == 0 else 2
            out_channels = planes * block.expansion
            shortcut = None
            if stride != 1 or channels != out_channels:
                shortcut = downsample(channels, out_channels, stride)
            layer = [block(channels, planes, stride, shortcut, width_per_group)]
            layer += [block(out_channels, planes, 1, None, width_per_group) for _ in range(blocks - 1)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
            channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("resnet18_imagenet")
def resnet18_imagenet(in_channels: int = 3, num_classes: int = 1000) -> ImageNetResNet:
    """torchvision's ResNet-18: basic blocks [2, 2, 2, 2], 11,689,512 parameters at 1000 classes."""
    return ImageNetResNet(BasicBlock, [2, 2, 2, 2], in_channels, num_classes)


@register_model("resnet34")
def resnet34(in_channels: int = 3, num_classes: int = 1000) -> ImageNetResNet:
    """torchvision's ResNet-34: basic blocks [3, 4, 6, 3], 21,797,672 parameters at 1000 classes."""
    return ImageNetResNet(BasicBlock, [3, 4, 6, 3], in_channels, num_classes)


@register_model("resnet50")
def resnet50(in_channels: int = 3, num_classes: int = 1000) -> ImageNetResNet:
    """torchvision's ResNet-50 (v1.5): bottlenecks [3, 4, 6, 3], 25,557,032 parameters at 1000
    classes."""
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], in_channels, num_classes)


@register_model("resnet101")
def resnet101(in_channels: int = 3, num_classes: int = 1000) -> ImageNetResNet:
    """torchvision's ResNet-101 (v1.5): bottlenecks [3, 4, 23, 3], 44,549,160 parameters at 1000
    classes."""
    return ImageNetResNet(Bottleneck, [3, 4, 23, 3], in_channels, num_classes)


@register_model("wide_resnet50_2")
def wide_resnet50_2(in_channels: int = 3, num_classes: int = 1000) -> ImageNetResNet:
    """torchvision's Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide inside,
    68,883,240 parameters at 1000 classes."""
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], in_channels, num_classes, width_per_group=128)
