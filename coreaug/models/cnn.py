"""A small, fast CNN for 28x28 images (Fashion-MNIST, MNIST) that also runs on 8x8 and 32x32."""
import torch
from torch import nn

from .registry import register_model
from .weight_init import kaiming_init


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (same padding), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """conv32-pool-conv64-pool-conv128, global average pooling, linear.

    Two 2x2 max-pools take 28x28 to 7x7 and 8x8 to 2x2; global average pooling then makes the
    classifier independent of the input size.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, 32),
            nn.MaxPool2d(2),
            conv_bn_relu(32, 64),
            nn.MaxPool2d(2),
            conv_bn_relu(64, 128),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model("cnn")
def cnn(in_channels: int = 3, num_classes: int = 10) -> SmallCNN:
    """The small CNN (~94K parameters); a training step takes about 1 s per 1,000 28x28 images
    on 2 CPU cores."""
    return SmallCNN(in_channels, num_classes)
