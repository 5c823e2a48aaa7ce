"""Models by name: CIFAR ResNets (resnet20/32/56), resnet18, wrn-16-8 and a small CNN.

Every model maps ``(B, C, H, W)`` float images (``H, W >= 8``) to ``(B, num_classes)`` logits,
ends with global average pooling and an ``nn.Linear`` classifier (the layer whose input the
selection engine hooks), and is Kaiming-initialised.
"""
from .registry import available_models, create_model, register_model
# Importing the model modules registers their names.
from . import cnn, resnet, wide_resnet  # noqa: F401  (imported for registration)

__all__ = ["available_models", "create_model", "register_model"]
