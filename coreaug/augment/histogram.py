"""Histogram ops, per example and per channel: auto-contrast and equalize (Pillow's ImageOps).

Kernels take the float working copy ``x`` (n, C, H, W), unused per-example values (for a
uniform kernel signature) and ``bound``; see working_float.
"""
from __future__ import annotations

import torch

from .validation import check_images
from .working_float import UINT8_BOUND, run_kernel


def auto_contrast_kernel(x, values, bound):
    """Stretch each channel linearly so its darkest value becomes 0 and its brightest ``bound``."""
    flat = x.flatten(2)
    low, high = flat.amin(dim=2), flat.amax(dim=2)
    spread = high - low
    flat_channel = spread <= 0  # Pillow leaves a one-level channel unchanged
    scale = torch.where(flat_channel, torch.ones_like(spread), bound / spread.clamp(min=1e-12))
    low = torch.where(flat_channel, torch.zeros_like(low), low)
    return (x - low[..., None, None]).mul_(scale[..., None, None]).clamp_(0.0, bound)


def equalize_kernel(x, values, bound):
    """Equalize the 256-level histogram of each channel, with Pillow's lookup table."""
    n, channels, height, width = x.shape
    rows = n * channels
    levels = x if bound == UINT8_BOUND else (x * (255.0 / bound)).round_()
    levels = levels.reshape(rows, height * width).long()
    offsets = torch.arange(rows, device=x.device).mul_(256).unsqueeze(1)
    # scatter_add_ into a fixed-size table, not bincount: bincount's output size waits on the device.
    counts = torch.zeros(rows * 256, dtype=torch.long, device=x.device)
    counts = counts.scatter_add_(0, (levels + offsets).view(-1), torch.ones_like(levels).view(-1)).view(rows, 256)
    top_count = counts.gather(1, levels.amax(dim=1, keepdim=True))
    # Pillow: step = (pixels - count of the highest level present) // 255; no step, no change.
    step = (height * width - top_count) // 255
    below = counts.cumsum(dim=1) - counts
    lut = (below + step // 2) // step.clamp(min=1)
    identity = torch.arange(256, device=x.device).expand(rows, 256)
    lut = torch.where(step > 0, lut.clamp_(max=255), identity)
    mapped = lut.gather(1, levels).view(n, channels, height, width).to(x.dtype)
    return mapped if bound == UINT8_BOUND else mapped.mul_(bound / 255.0)


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
