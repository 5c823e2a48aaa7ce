"""Histogram ops, per example and per channel: auto-contrast and equalize (Pillow's ImageOps).

Kernels take the float working copy ``x`` (n, C, H, W), unused per-example values (for a
uniform kernel signature) and ``bound``; see working_float. ``levels``, where given, is ``x`` as
int64 (whole levels, bound 255 only): a layer that runs both kernels converts it once.
"""
from __future__ import annotations

import torch

from .constants import ConstantCache, static
from .validation import check_images
from .working_float import UINT8_BOUND, run_kernel


def auto_contrast_kernel(x, values, bound, levels=None):
    """Stretch each channel linearly so its darkest value becomes 0 and its brightest ``bound``
    (before clamping: callers clamp to [0, bound], as float error may pass it by an ulp).

    8-bit levels get Pillow's values exactly: each channel is mapped through Pillow's own
    256-level table for its (low, high), int(level * scale - low * scale) with scale = 255 /
    (high - low) in double precision. That lands a level under the exact stretch where the
    stretch is a whole number and the rounding falls below it (a channel's brightest level
    becomes 254 for about one (low, high) pair in five), as Pillow does. The tables of every
    (low, high) are made once (`_pillow_tables`), so a call picks each channel's (one small
    gather) and looks its pixels up (another): no float64 on the device, fewer ops than the
    arithmetic. A one-level channel stays as it was, as in Pillow."""
    n, channels = x.shape[:2]
    flat = x.flatten(2)
    if bound == UINT8_BOUND:
        flat = flat.long() if levels is None else levels.reshape(n, channels, -1)  # (a turned batch: a copy)
        low, high = flat.aminmax(dim=2)
        row = high.add(low, alpha=256).view(-1)  # low * 256 + high
        tables = _pillow_tables(x.device).index_select(0, row).view(n, channels, 256).to(x.dtype)
        return tables.gather(2, flat).view_as(x)
    # Not aminmax: torch 2.5 has no derivative for it (float images that require grad)
    low, high = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)
    spread = high - low
    # (x - low) is 0 in a one-level channel (spread 0), and adding low back gives x, without a
    # mask. Not in place on a tensor autograd keeps (float images that require grad).
    stretched = (flat - low).div_(spread.clamp(min=1e-12))
    return stretched.add_(low * (spread <= 0)).view_as(x)


def _pillow_tables(device) -> torch.Tensor:
    """uint8 (65536, 256) on ``device``: row low * 256 + high is Pillow's autocontrast table for
    a channel whose levels span [low, high] (ImageOps.autocontrast, cutoff 0), the identity
    where high <= low. 16 MB, made once per device (in about 0.03 s on a CPU)."""
    return _CONSTANTS.get(("autocontrast", str(device)), lambda: static(_make_pillow_tables().to(device)))


def _make_pillow_tables() -> torch.Tensor:
    levels = torch.arange(256, dtype=torch.float64)
    tables = torch.arange(256, dtype=torch.uint8).repeat(65536, 1)  # the identity, where high <= low
    by_pair = tables.view(256, 256, 256)
    for low in range(0, 256, 32):  # 32 lows at a time (no Python loop to trace per level), their highs above them
        lows = levels[low:low + 32, None]
        spread = levels[low + 1:] - lows  # (32, 255 - low): high - low
        scale = torch.full_like(spread, 255.0) / spread.clamp(min=1.0)  # a true division, as Pillow's 255.0 / (hi - lo)
        offset = -(scale * lows)
        # Pillow: int(ix * scale + offset), two roundings in double, truncated, clamped to 0-255.
        stretched = (levels * scale[:, :, None]).add_(offset[:, :, None]).trunc_().clamp_(0.0, 255.0).to(torch.uint8)
        block = by_pair[low:low + 32, low + 1:]
        block.copy_(torch.where((spread > 0).unsqueeze(2), stretched, block))
    return tables


def equalize_kernel(x, values, bound, levels=None):
    """Equalize the 256-level histogram of each channel, with Pillow's lookup table."""
    n, channels, height, width = x.shape
    if levels is None:
        levels = x if bound == UINT8_BOUND else (x * (255.0 / bound)).round_()
        levels = levels.long()
    levels = levels.reshape(n * channels, height * width)
    # scatter_add_ into a fixed-size table, not bincount: bincount's output size waits on the device.
    # Counted one column on, so that the running sum is each level's number of pixels below it.
    counts = torch.zeros(n * channels, 257, dtype=torch.long, device=x.device)
    counts[:, 1:].scatter_add_(1, levels, _ones_like(levels))
    below = counts.cumsum(dim=1)[:, :256]
    # Pillow: step = (pixels - count of the highest level present) // 255, the pixels below the
    # highest level // 255; no step, no change.
    step = below.gather(1, levels.amax(dim=1, keepdim=True)) // 255
    no_step = step <= 0
    lut = below.add_(step // 2).floor_divide_(step.clamp(min=1)).clamp_(max=255)
    lut = torch.where(no_step, _levels(x.device), lut)
    mapped = lut.gather(1, levels).view(n, channels, height, width).to(x.dtype)
    return mapped if bound == UINT8_BOUND else mapped.mul_(bound / 255.0)


_CONSTANTS = ConstantCache()


def _levels(device) -> torch.Tensor:
    """0..255 as int64 on ``device``, made once."""
    return _CONSTANTS.get(("levels", str(device)), lambda: static(torch.arange(256, device=device)))


def _ones_like(levels: torch.Tensor) -> torch.Tensor:
    """A ones tensor of the shape of ``levels`` without writing one per batch (an expanded view)."""
    one = _CONSTANTS.get(("one", str(levels.device)),
                         lambda: static(torch.ones(1, dtype=torch.long, device=levels.device)))
    return one.expand_as(levels)


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
