"""The float working copy that every kernel computes on, and the way back to the input dtype.

A uint8 batch becomes float32 in 0-255 (``bound`` 255); a float batch stays in 0-1 (``bound`` 1),
its values clamped into [0, 1] (a bicubic resize overshoots by a little; normalised data is far
outside) and NaN made 0: kernels that index by level (equalize, posterize) need values in range
(out of range, an index is out of bounds: on CUDA a device-side assert that ends the process),
and two ops cost less than a range check that would wait on the device.
With ``bound`` 255 the values are whole 8-bit levels, and kernels that build an intermediate
image (grayscale, blur) round it to levels as Pillow does, so results match Pillow's.
"""
from __future__ import annotations

import torch

UINT8_BOUND = 255.0


def to_working(images: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Return (float copy of ``images``, bound): bound 255 for uint8, 1 for float, whose values
    are clamped into [0, 1], NaN made 0 (two ops more for float input; none for uint8)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32), UINT8_BOUND
    x = images.to(torch.float32) if images.dtype in (torch.float16, torch.bfloat16) else images
    return torch.nan_to_num(x, nan=0.0).clamp_(0.0, 1.0), 1.0


def quantize(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Clamp ``x`` to [0, bound]; with bound 255 also truncate to whole levels, as Pillow stores
    every intermediate result as uint8 (its blends truncate rather than round)."""
    x = x.clamp(0.0, bound)
    return x.floor_() if bound == UINT8_BOUND else x


def from_working(x: torch.Tensor, dtype: torch.dtype, bound: float) -> torch.Tensor:
    """Return the working copy ``x`` as ``dtype`` (uint8 levels or float in [0, 1])."""
    return quantize(x, bound).to(dtype)


def run_kernel(kernel, images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Apply ``kernel(x, values, bound)`` to the working copy of ``images``; return input dtype."""
    x, bound = to_working(images)
    return from_working(kernel(x, values, bound), images.dtype, bound)


def from_resampled(x: torch.Tensor, dtype: torch.dtype, bound: float) -> torch.Tensor:
    """Return a resampled working copy ``x`` (a resize, not a Pillow blend) as ``dtype``: rounded
    to the nearest level for uint8, as torchvision rounds a resized uint8 tensor (truncating
    would darken every interpolated pixel by half a level on average), clamped to [0, bound]."""
    if bound == UINT8_BOUND:
        x = x.round()
    return x.clamp(0.0, bound).to(dtype)
