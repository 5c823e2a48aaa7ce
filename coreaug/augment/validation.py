"""Checks at the public boundary of coreaug.augment: images, magnitudes, fills and whole numbers.

Every public op and policy validates its arguments here, once, with messages that say what was
expected; the kernels behind them trust their inputs.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import torch

from coreaug.errors import UsageError

Magnitude = Union[float, int, torch.Tensor]


MANY_CHANNELS = 16  # above it, a (B, C, H, 1 or 3) batch is taken for channels-last images (B, H, W, C)


def check_images(images: torch.Tensor, *, gray_or_rgb: bool = False) -> None:
    """Raise UsageError unless ``images`` is a 4-D uint8 or floating batch (B, C, H, W).

    With ``gray_or_rgb`` the channel count must be 1 (grayscale) or 3 (RGB), as ops that use
    luminance (color, contrast) need.
    """
    if not isinstance(images, torch.Tensor):
        raise UsageError(f"images must be a torch.Tensor (B, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        # (one image's fixes: a batch of rows or signals is no image, and coreaug's policies are image ops)
        hint = {2: "; one grey image? add channel and batch dimensions with images[None, None] (a batch of rows "
                   "or 1-D signals is no image: augment it with a callable of your own)",
                3: "; one image? add a batch dimension with images.unsqueeze(0) (a batch of 1-D signals "
                   "(B, C, T) is no image: augment it with a callable of your own)"}.get(
            images.dim(), "; frames of (B, T, C, H, W)? fold them into the batch with images.flatten(0, 1) (torch's "
                          "video layout (B, C, T, H, W) first with images.transpose(1, 2))" if images.dim() == 5 else
            "; fold the leading dimensions into the batch with images.flatten(0, -4)" if images.dim() > 5 else "")
        raise UsageError(f"images must be a 4-D tensor (B, C, H, W), got shape {tuple(images.shape)}{hint}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UsageError(
            f"images must be uint8 (0-255) or floating point (0-1), got dtype {images.dtype}"
        )
    channels = images.shape[1]
    if channels < 1:
        raise UsageError(f"images must have at least 1 channel, got shape {tuple(images.shape)}")
    last = channels not in (1, 3) and images.shape[-1] in (1, 3)  # as numpy and PIL give images: (B, H, W, C)
    # square, or more "channels" than data has (240 of a 320 x 240 photo): weak, cutout, crops took the wrong axes
    if last and (images.shape[1] == images.shape[2] or channels > MANY_CHANNELS) and not gray_or_rgb:
        raise UsageError(f"images must be (B, C, H, W), and shape {tuple(images.shape)} looks channels-last "
                         "(B, H, W, C), as numpy and PIL give images: if so, images.permute(0, 3, 1, 2)")
    if gray_or_rgb and channels not in (1, 3):
        hint = "; channels last, as numpy and PIL give images? images.permute(0, 3, 1, 2)" if last else ""
        raise UsageError(
            f"images must have 1 (grayscale) or 3 (RGB) channels, got {channels} channels "
            f"in shape {tuple(images.shape)}{hint}"
        )


def check_magnitude(
    value: Magnitude,
    batch_size: int,
    device: torch.device,
    *,
    name: str,
    low: Optional[float] = None,
    high: Optional[float] = None,
    integer: bool = False,
) -> torch.Tensor:
    """Return ``value`` as a float32 tensor of shape (batch_size,) on ``device``.

    ``value`` is a Python number or a tensor of shape () or (batch_size,): one magnitude per
    example. Raises UsageError if it has another shape, is not finite, is not a whole number when
    ``integer``, or lies outside [low, high].
    """
    if isinstance(value, torch.Tensor):
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != batch_size):
            raise UsageError(
                f"{name} must be a number or a tensor of shape ({batch_size},) (one per example), "
                f"got shape {tuple(value.shape)}"
            )
        values = value.detach().to(device=device, dtype=torch.float32).expand(batch_size)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy scalars too
        values = torch.full((batch_size,), float(value), device=device)
    else:
        raise UsageError(f"{name} must be a real number or a tensor, got {type(value).__name__}")
    if batch_size == 0:
        return values
    lowest, highest = values.min().item(), values.max().item()
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        raise UsageError(f"{name} must be finite, got values in [{lowest}, {highest}]")
    if integer and not bool((values == values.round()).all()):
        raise UsageError(f"{name} must be whole numbers, got {value}")
    if (low is not None and lowest < low) or (high is not None and highest > high):
        expected = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        shown = f"{lowest}" if lowest == highest else f"values in [{lowest}, {highest}]"
        raise UsageError(f"{name} must be in {expected}, got {shown}")
    return values


def check_fill_value(fill, images: torch.Tensor) -> float:
    """Return ``fill`` as a float if it is a number in the images' range ([0, 255] for uint8,
    [0, 1] for float), else raise UsageError."""
    high = 255.0 if images.dtype == torch.uint8 else 1.0
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not 0 <= fill <= high:
        raise UsageError(f"fill must be a number in [0, {high:g}] for {images.dtype} images, "
                         f"got {fill!r}")
    return float(fill)


def whole_number(value) -> Optional[int]:
    """``value`` as an int if it is an integer (a Python or numpy integer, or a 0-dim integer
    tensor), not a bool; else None."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        return int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):  # numpy's bool_ is not Integral
        return int(value)
    return None


def check_whole(name: str, value, low: int, high: Optional[int] = None) -> int:
    """Return ``value`` as an int if it is an integer (Python or numpy, or a 0-dim integer
    tensor; not a bool) in [low, high], else raise UsageError naming ``name``."""
    whole = whole_number(value)
    if whole is None:
        raise UsageError(f"{name} must be a whole number (an int), got {value!r}")
    value = whole
    if value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise UsageError(f"{name} must be {'in ' if high is not None else ''}{bounds}, got {value}")
    return value


def check_fill_level(fill) -> float:
    """Return a policy's fill (a Pillow-style fillcolor level in [0, 255]) as a float (one strictly
    between 0 and 1 warned about: see check_fill_levels)."""
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not 0 <= fill <= 255:
        raise UsageError(f"fill must be a level in [0, 255] (Pillow's fillcolor), got {fill!r}")
    _warn_if_units(float(fill))
    return float(fill)


def check_fill_levels(fill):
    """Return the fill of RandAugment, TrivialAugment or AutoAugment: one 0-255 level (a float), or
    a list or tuple of one level per channel (a tuple of floats), as torchvision's policies take.
    A level strictly between 0 and 1 is warned about: it reads as image units (0.5 for mid-grey, as
    the single ops and torchvision take a float image's fill), and as a level it is nearly black."""
    if not isinstance(fill, (list, tuple)):
        return check_fill_level(fill)
    if not fill or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 255 for v in fill):
        raise UsageError(f"fill must be a level in [0, 255] (Pillow's fillcolor) or a list of one per channel, "
                         f"got {fill!r}")
    levels = tuple(float(v) for v in fill)
    for level in levels:
        _warn_if_units(level)
    return levels[0] if len(levels) == 1 else levels


def _warn_if_units(level):
    if 0 < level < 1:
        from coreaug.files import warn_at_caller

        warn_at_caller(f"fill {level:g} is a 0-255 level (Pillow's fillcolor), whatever the images' dtype: nearly "
                       f"black; for a fill in image units pass its level ({level:g} of 1 is {round(level * 255)})")


def check_fill_channels(fill, images: torch.Tensor) -> None:
    """Raise UsageError unless a per-channel ``fill`` (a tuple) has one level per channel of ``images``."""
    if isinstance(fill, tuple) and len(fill) != images.shape[1]:
        raise UsageError(f"fill has {len(fill)} levels (one per channel) but the images have {images.shape[1]} "
                         f"channel{'s' if images.shape[1] != 1 else ''}, shape {tuple(images.shape)}")
