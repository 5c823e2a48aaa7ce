"""Models by name: CIFAR ResNets (resnet20/32/56), resnet18, wrn-16-8, a small CNN, and
torchvision's ImageNet ResNets (resnet18_imagenet, resnet34/50/101, wide_resnet50_2).

Every model maps ``(B, C, H, W)`` float images (``H, W >= 8``) to ``(B, num_classes)`` logits,
ends with global average pooling and an ``nn.Linear`` classifier (the layer whose input the
selection engine hooks), and is Kaiming-initialised. `load_pretrained` starts one from a
local checkpoint file (the ImageNet ResNets load torchvision's).
"""
from .registry import available_models, create_model, register_model
from .pretrained import PretrainedReport, load_pretrained
# Importing the model modules registers their names.
from . import cnn, imagenet_resnet, resnet, wide_resnet  # noqa: F401  (imported for registration)

__all__ = ["available_models", "create_model", "register_model", "load_pretrained", "PretrainedReport"]
