"""Models found by name: ``create_model("resnet20", in_channels=1, num_classes=10)``."""
from typing import Callable, Dict, List

from torch import nn

from coreaug.errors import UsageError

ModelFactory = Callable[[int, int], nn.Module]

_MODELS: Dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that makes ``factory(in_channels, num_classes) -> nn.Module`` available by name.

    Names are lower-case; registering a taken name is an error so that two modules cannot
    silently shadow each other.
    """
    key = name.lower()

    def decorate(factory: ModelFactory) -> ModelFactory:
        if key in _MODELS:
            raise UsageError(f"a model named {key!r} is already registered")
        _MODELS[key] = factory
        return factory

    return decorate


def available_models() -> List[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def create_model(name: str, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """Build a freshly initialised model by name.

    Args:
        name: one of :func:`available_models` (case-insensitive), e.g. ``"resnet20"``.
        in_channels: image channels (1 for MNIST-like data, 3 for CIFAR/SVHN).
        num_classes: outputs of the final ``nn.Linear``.

    Returns:
        An ``nn.Module`` mapping ``(B, in_channels, H, W)`` float images (any ``H, W >= 8``) to
        ``(B, num_classes)`` logits. Its last ``nn.Linear`` is the classifier and its input is
        the globally average-pooled feature vector, which the selection engine hooks.
    """
    key = str(name).lower()
    if key not in _MODELS:
        raise UsageError(
            f"unknown model {name!r}; choose one of: {', '.join(available_models())}"
        )
    for arg_name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{arg_name} must be a positive integer, got {value!r}")
    return _MODELS[key](in_channels, num_classes)
