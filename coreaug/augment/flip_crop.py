"""The weak augmentations, per example on any dtype: horizontal flip and pad-and-crop.

They move whole pixels, so they index the batch directly (no float copy, no interpolation).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .constants import ConstantCache, static
from .sampling import check_randomness, uniform
from .validation import Magnitude, check_fill_value, check_images, check_magnitude


def flip_kernel(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the examples where the bool mask ``flip`` (B,) is set."""
    return shift_flip_kernel(images, torch.zeros(images.shape[0], device=images.device), 0.0,
                             flip, None, most=0)


def crop_kernel(images: torch.Tensor, padding: torch.Tensor, fill: float,
                generator: Optional[torch.Generator]) -> torch.Tensor:
    """Pad each example by its ``padding`` (B,) whole pixels with ``fill`` and crop back to
    (H, W) at a uniformly random offset: a random integer shift of up to ``padding`` pixels."""
    flip = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    return shift_flip_kernel(images, padding, fill, flip, generator)


def _random_offsets(padding: torch.Tensor, most: int, generator) -> torch.Tensor:
    """Per-example crop starts in an image padded by ``most``: uniform over the 2p + 1 starts
    that stay within the example's own padding p. Returns int64 (B,)."""
    choices = 2 * padding + 1
    draws = (uniform(len(padding), generator, padding.device) * choices).floor_()
    return (most - padding + draws.minimum(choices - 1)).long()


def shift_flip_kernel(images: torch.Tensor, padding: torch.Tensor, fill: float,
                      flip: torch.Tensor, generator: Optional[torch.Generator],
                      most: Optional[int] = None) -> torch.Tensor:
    """Pad-and-crop by ``padding`` (B,) as crop_kernel, mirroring the examples where ``flip``
    (B,) is set, as one gather (the weak augmentation in a single pass). ``most`` is the
    largest padding when the caller knows it (read from ``padding`` otherwise, which waits
    on the device)."""
    if most is None:
        most = int(padding.max().item()) if images.shape[0] else 0
    top = _random_offsets(padding, most, generator)
    left = _random_offsets(padding, most, generator)
    return _crop_flip_gather(images, most, fill, top.unsqueeze(1), left.unsqueeze(1), flip.unsqueeze(1))


def pad_crop_flip_kernel(images: torch.Tensor, padding: int, fill: float, flip_probability: float,
                         generator: Optional[torch.Generator]) -> torch.Tensor:
    """Pad every example by ``padding`` whole pixels of ``fill``, crop it back to (H, W) at a
    uniformly random offset and mirror it left-right with ``flip_probability``: the weak
    augmentation, one padding for the whole batch. An example's three draws (flip, top, left)
    come from one call: fewer ops than `shift_flip_kernel`, whose paddings differ per example."""
    draws = uniform(3 * images.shape[0], generator, images.device).view(3, -1, 1)
    top, left = (draws[1:] * (2 * padding + 1)).floor_().clamp_(max=2 * padding).long().unbind(0)  # (B, 1) each
    # Without flips (digits, SVHN) the draws are still made, so the crops are those a flipping call makes
    flip = draws[0] < flip_probability if flip_probability > 0 else None
    return _crop_flip_gather(images, padding, fill, top, left, flip)


def _crop_flip_gather(images: torch.Tensor, most: int, fill: float, top: torch.Tensor, left: torch.Tensor,
                      flip: Optional[torch.Tensor]) -> torch.Tensor:
    """``images`` padded by ``most`` pixels of ``fill`` and cropped back to (H, W) from each
    example's ``top``, ``left`` (int64 (B, 1)), mirrored where ``flip`` (bool (B, 1); None: none
    is): one gather."""
    batch, channels, height, width = images.shape
    steps, mirrored, row_starts = _ramps(height, width, most, images.device)
    cols = (steps if flip is None else torch.where(flip, mirrored, steps)) + left
    rows = torch.add(row_starts, top, alpha=width + 2 * most)  # (top + r) * the padded width
    index = (rows.unsqueeze(2) + cols.unsqueeze(1)).view(batch, 1, height * width)
    padded = F.pad(images, (most, most, most, most), value=fill) if most else images
    picked = padded.flatten(2).gather(2, index.expand(batch, channels, height * width))
    return picked.view(batch, channels, height, width)


_RAMPS = ConstantCache()  # per image size, padding and device


def _ramps(height: int, width: int, most: int, device) -> tuple:
    """int64 on ``device``, cached (three launches a call fewer): the columns 0, 1, ..., W - 1, the
    same mirrored, and the first position of each row in the image padded by ``most``."""
    def make():
        steps = torch.arange(width, device=device)
        row_starts = torch.arange(height, device=device) * (width + 2 * most)
        return static(steps), static((width - 1) - steps), static(row_starts)
    if torch.compiler.is_compiling():  # made in the graph (fused there): no cache for dynamo to guard on,
        return make()  # so a policy compiled without an eager call first compiles once
    return _RAMPS.get((height, width, most, str(device)), make)


def horizontal_flip(images: torch.Tensor, p: Magnitude = 0.5,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Mirror each example left-right with probability ``p`` (number or (B,) tensor in [0, 1]).

    Takes a (B, C, H, W) uint8 or float batch; returns one of the same shape and dtype.
    """
    check_images(images)
    check_randomness(generator, images.shape[0])
    probability = check_magnitude(p, images.shape[0], images.device, name="p", low=0.0, high=1.0)
    flip = uniform(images.shape[0], generator, images.device) < probability
    return flip_kernel(images, flip)


def random_crop(images: torch.Tensor, padding: Magnitude = 4, fill: float = 0,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Pad by ``padding`` pixels with ``fill`` and crop back at a random offset, per example.

    ``padding``: whole number or (B,) tensor >= 0 (4 for 32x32 CIFAR). ``fill``: padding value in
    image units. Returns a batch of the same shape and dtype.
    """
    check_images(images)
    check_randomness(generator, images.shape[0])
    pad = check_magnitude(padding, images.shape[0], images.device, name="padding", low=0.0,
                          integer=True)
    return crop_kernel(images, pad, check_fill_value(fill, images), generator)
