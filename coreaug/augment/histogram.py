"""Histogram ops, per example and per channel: auto-contrast and equalize (Pillow's ImageOps).

Kernels take the float working copy ``x`` (n, C, H, W), unused per-example values (for a
uniform kernel signature) and ``bound``; see working_float.
"""
from __future__ import annotations

import torch

from .constants import static
from .validation import check_images
from .working_float import UINT8_BOUND, run_kernel


def auto_contrast_kernel(x, values, bound):
    """Stretch each channel linearly so its darkest value becomes 0 and its brightest ``bound``
    (before clamping: callers clamp to [0, bound], as float error may pass it by an ulp)."""
    flat = x.flatten(2)
    low, high = flat.aminmax(dim=2, keepdim=True)
    spread = high - low
    # A one-level channel (spread 0) stays as it was, as in Pillow: (x - low) is 0 there, and
    # adding low back gives x, without a mask.
    stretched = (flat - low).mul_(spread.clamp(min=1e-12).reciprocal_().mul_(bound))
    return stretched.add_(low * (spread <= 0)).view_as(x)


def equalize_kernel(x, values, bound):
    """Equalize the 256-level histogram of each channel, with Pillow's lookup table."""
    n, channels, height, width = x.shape
    levels = x if bound == UINT8_BOUND else (x * (255.0 / bound)).round_()
    levels = levels.reshape(n * channels, height * width).long()
    # scatter_add_ into a fixed-size table, not bincount: bincount's output size waits on the device.
    counts = torch.zeros(n * channels, 256, dtype=torch.long, device=x.device)
    counts = counts.scatter_add_(1, levels, _ones_like(levels))
    top_count = counts.gather(1, levels.amax(dim=1, keepdim=True))
    # Pillow: step = (pixels - count of the highest level present) // 255; no step, no change.
    step = (height * width - top_count) // 255
    # Where there is no step the table is the identity: below // 1 + the level's own offset.
    below = counts.cumsum(dim=1).sub_(counts)
    no_step = step <= 0
    lut = below.add_(step // 2).floor_divide_(step.clamp(min=1)).clamp_(max=255)
    lut = torch.where(no_step, _levels(x.device), lut)
    mapped = lut.gather(1, levels).view(n, channels, height, width).to(x.dtype)
    return mapped if bound == UINT8_BOUND else mapped.mul_(bound / 255.0)


_CONSTANTS: dict = {}


def _levels(device) -> torch.Tensor:
    """0..255 as int64 on ``device``, made once."""
    key = ("levels", str(device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = static(torch.arange(256, device=device))
    return _CONSTANTS[key]


def _ones_like(levels: torch.Tensor) -> torch.Tensor:
    """A ones tensor of the shape of ``levels`` without writing one per batch (an expanded view)."""
    key = ("one", str(levels.device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = static(torch.ones(1, dtype=torch.long, device=levels.device))
    return _CONSTANTS[key].expand_as(levels)


def auto_contrast(images: torch.Tensor) -> torch.Tensor:
    """Maximise contrast per image and channel (Pillow's ImageOps.autocontrast, cutoff 0).

    Takes a (B, C, H, W) uint8 or float [0, 1] batch; returns one of the same shape and dtype.
    """
    check_images(images)
    return run_kernel(auto_contrast_kernel, images, torch.empty(0, device=images.device))


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Equalize the histogram per image and channel (Pillow's ImageOps.equalize).

    Takes a (B, C, H, W) uint8 or float [0, 1] batch (float is quantised to 256 levels for the
    histogram); returns one of the same shape and dtype.
    """
    check_images(images)
    return run_kernel(equalize_kernel, images, torch.empty(0, device=images.device))
