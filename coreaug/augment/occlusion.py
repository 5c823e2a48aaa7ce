"""Cutout (DeVries & Taylor, 2017): blank one square per example at a random centre.

The square is centred anywhere in the image and clipped at the borders, as in the paper.
"""
from __future__ import annotations

from typing import Optional

import torch

from .sampling import check_randomness, uniform
from .validation import Magnitude, check_fill_value, check_images, check_magnitude


def cutout_kernel(images: torch.Tensor, sizes: torch.Tensor, fill: float,
                  generator: Optional[torch.Generator]) -> torch.Tensor:
    """Set a ``sizes`` (B,) pixel square of each example to ``fill``, centred uniformly at
    random."""
    batch, _, height, width = images.shape
    device = images.device
    centre_y = (uniform(batch, generator, device) * height).floor_()
    centre_x = (uniform(batch, generator, device) * width).floor_()
    top = (centre_y - (sizes / 2).floor()).unsqueeze(1)
    left = (centre_x - (sizes / 2).floor()).unsqueeze(1)
    rows = torch.arange(height, device=device, dtype=torch.float32)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    in_rows = (rows >= top) & (rows < top + sizes.unsqueeze(1))
    in_cols = (cols >= left) & (cols < left + sizes.unsqueeze(1))
    square = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)
    if images.is_floating_point():  # the square is fill whatever was there (a blend makes inf * 0 NaN)
        return torch.where(square, fill, images)
    # uint8: blend with a 0/1 square in the images' dtype (a bool mask selecting is slower on CPU).
    square = square.to(images.dtype)
    out = images * (1 - square)
    return out.add_((square * fill).to(images.dtype)) if fill else out


def cutout(images: torch.Tensor, size: Magnitude = 16, fill: float = 0,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Blank a ``size`` x ``size`` square per example at a random centre, clipped at the borders.

    ``size``: whole number or (B,) tensor >= 0 (16 for 32x32 CIFAR-10). ``fill``: value in image
    units. Returns a batch of the same shape and dtype.
    """
    check_images(images)
    check_randomness(generator, images.shape[0])
    sizes = check_magnitude(size, images.shape[0], images.device, name="size", low=0.0,
                            integer=True)
    return cutout_kernel(images, sizes, check_fill_value(fill, images), generator)
