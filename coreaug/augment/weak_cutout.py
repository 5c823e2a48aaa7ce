"""The weak policy (pad-and-crop plus flip, the standard CIFAR baseline) and the Cutout policy."""
from __future__ import annotations

from typing import Optional

import torch

from coreaug.errors import UsageError

from .occlusion import cutout_kernel
from .flip_crop import pad_crop_flip_kernel
from .policy import Policy
from .registry import register_policy
from .sampling import check_randomness
from .validation import check_fill_level, check_images, check_whole


def _fill_for(images: torch.Tensor, fill_level: float) -> float:
    return fill_level if images.dtype == torch.uint8 else fill_level / 255.0


@register_policy("weak")
class Weak(Policy):
    """Pad by ``padding`` pixels (4) with the 0-255 level ``fill``, crop back at a random offset,
    then flip left-right with probability 1/2 unless ``flip=False`` (digits, SVHN)."""

    def __init__(self, padding: int = 4, flip: bool = True, fill: float = 0):
        self.padding = check_whole("padding", padding, 0)
        if not isinstance(flip, bool):
            raise UsageError(f"flip must be True or False, got {flip!r}")
        self.flip = flip
        self.fill = check_fill_level(fill)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        check_images(images)
        check_randomness(generator, images.shape[0])
        return pad_crop_flip_kernel(images, self.padding, _fill_for(images, self.fill), 0.5 if self.flip else 0.0,
                                    generator)


@register_policy("cutout")
class Cutout(Policy):
    """Cutout: blank a ``size`` square per example at a random centre with the 0-255 level
    ``fill``. ``size`` None means 16 pixels per 32 of the shorter side (16 for CIFAR, 14 for
    28x28)."""

    def __init__(self, size: Optional[int] = None, fill: float = 0):
        self.size = None if size is None else check_whole("size", size, 0)
        self.fill = check_fill_level(fill)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        check_images(images)
        check_randomness(generator, images.shape[0])
        n, _, height, width = images.shape
        size = self.size if self.size is not None else round(16 * min(height, width) / 32)
        sizes = torch.full((n,), float(size), device=images.device)
        return cutout_kernel(images, sizes, _fill_for(images, self.fill), generator)
