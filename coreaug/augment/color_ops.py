"""Colour ops as batched per-example blends and point maps, matching Pillow at 8 bits.

Kernels (``*_kernel``) take the float working copy ``x`` (n, C, H, W), per-example values (n,)
and ``bound`` (255 for uint8 data, 1 for float); see working_float. Public functions take
uint8 or float batches and validate. Pillow's ImageEnhance ops are blends
``degenerate + factor * (image - degenerate)``; the degenerate image is black (brightness),
the mean grey level (contrast), the grayscale image (color) or a 3x3 smoothing (sharpness).

One channel: ``color`` is the identity (a grayscale image is already fully desaturated, as in
Pillow for mode "L"), ``contrast`` uses the channel itself as luminance.
"""
from __future__ import annotations

import torch

from .constants import ConstantCache, static
from .validation import Magnitude, check_images, check_magnitude
from .working_float import UINT8_BOUND, run_kernel

# Pillow's ITU-R 601-2 luma in 16-bit fixed point: L = (19595 R + 38470 G + 7471 B) / 65536.
_LUMA_WEIGHTS = (19595 / 65536, 38470 / 65536, 7471 / 65536)


def _per_example(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor, bound: float):
    return (degenerate + _per_example(factor) * (x - degenerate)).clamp_(0.0, bound)


_TABLES = ConstantCache()


def _constant(name: str, make, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor made once per dtype and device (not once per batch), kept while
    in recent use (see constants.ConstantCache)."""
    return _TABLES.get((name, dtype, str(device)), lambda: static(make().to(dtype=dtype, device=device)))


def luminance(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Return the grayscale (n, 1, H, W) of a working copy with 1 or 3 channels (Pillow's "L")."""
    if x.shape[1] == 1:
        return x
    weights = _constant("luma", lambda: torch.tensor(_LUMA_WEIGHTS).view(1, 3, 1, 1), x.dtype, x.device)
    # The weights are 16-bit fractions, so for 8-bit levels every product and sum is exact
    # (in any order); Pillow rounds half up.
    gray = (x * weights).sum(dim=1, keepdim=True)
    return gray.add_(0.5).floor_() if bound == UINT8_BOUND else gray


def invert_kernel(x, values, bound):
    """Return bound - x; ``values`` unused."""
    return bound - x


def solarize_kernel(x, thresholds, bound):
    """Invert every value at or above the per-example threshold (image units)."""
    if bound == UINT8_BOUND:
        # Whole levels: (x - ceil(t) + 1) clamped to [0, 1] is the indicator of x >= t, and
        # arithmetic is much faster than a bool mask and torch.where on CPU.
        above = (x - _per_example(thresholds).ceil() + 1.0).clamp_(0.0, 1.0)
    else:
        above = (x >= _per_example(thresholds)).to(x.dtype)
    return x + above * (bound - 2.0 * x)


def posterize_kernel(x, bits, bound):
    """Keep the top ``bits`` (0-8) bits of each 8-bit level, per example."""
    return posterize_by_step(x, torch.pow(2.0, 8.0 - _per_example(bits)), bound)


def posterize_by_step(x, step, bound):
    """`posterize_kernel` with each example's ``step``, 2 ** (8 - bits), given ((n, 1, 1, 1))."""
    if bound == UINT8_BOUND:
        return x.div(step).floor_().mul_(step)
    return (x * (255.0 / bound)).round_().div_(step).floor_().mul_(step).mul_(bound / 255.0)


def brightness_kernel(x, factors, bound):
    """Blend with black: factor 0 gives black, 1 the original."""
    return (x * _per_example(factors)).clamp_(0.0, bound)


def contrast_kernel(x, factors, bound):
    """Blend with the mean grey level of each image: factor 0 gives flat grey, 1 the original."""
    mean = luminance(x, bound).mean(dim=(1, 2, 3))
    if bound == UINT8_BOUND:
        mean = mean.add_(0.5).floor_()  # Pillow: int(mean + 0.5)
    return _blend(_per_example(mean), x, factors, bound)


def color_kernel(x, factors, bound):
    """Blend with the grayscale image: factor 0 gives grayscale, 1 the original (saturation)."""
    if x.shape[1] == 1:
        return x
    return _blend(luminance(x, bound), x, factors, bound)


def smoothed(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Pillow's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13) of a working copy, its
    one-pixel border left as it was (as Pillow's filter leaves it): sharpness's degenerate."""
    height, width = x.shape[2:]
    if height < 3 or width < 3:
        return x
    border = _constant(f"border{height}x{width}", lambda: torch.nn.functional.pad(
        torch.zeros(height - 2, width - 2, dtype=torch.bool), (1, 1, 1, 1), value=True), torch.bool, x.device)
    # Pillow's (3x3 box sum + 4 * centre) / 13, the box sum as sums over sliding windows (views):
    # several times faster than a convolution or pooling on the CPU; whole levels sum exactly.
    box = x.unfold(2, 3, 1).sum(dim=-1).unfold(3, 3, 1).sum(dim=-1)
    inner = box.add_(x[:, :, 1:-1, 1:-1], alpha=4.0).div_(13.0)
    if bound == UINT8_BOUND:
        inner = inner.round_()
    return torch.where(border, x, torch.nn.functional.pad(inner, (1, 1, 1, 1)))


def sharpness_kernel(x, factors, bound):
    """Blend with a 3x3 smoothing (Pillow's SMOOTH): factor 0 blurs, 1 is the original,
    above 1 sharpens."""
    return _blend(smoothed(x, bound), x, factors, bound)


def _enhance(kernel, images, factor, *, gray_or_rgb=False):
    check_images(images, gray_or_rgb=gray_or_rgb)
    factors = check_magnitude(factor, images.shape[0], images.device, name="factor", low=0.0)
    return run_kernel(kernel, images, factors)


def identity(images: torch.Tensor) -> torch.Tensor:
    """Return ``images`` unchanged (RandAugment's identity op)."""
    return images


def invert(images: torch.Tensor) -> torch.Tensor:
    """Invert every value (Pillow's ImageOps.invert).

    Takes a (B, C, H, W) uint8 or float [0, 1] batch; returns one of the same shape and dtype.
    """
    check_images(images)
    return run_kernel(invert_kernel, images, torch.empty(0, device=images.device))


def solarize(images: torch.Tensor, threshold: Magnitude) -> torch.Tensor:
    """Invert values at or above ``threshold`` (Pillow's ImageOps.solarize).

    ``threshold``: a number or (B,) tensor in the images' units, [0, 255] for uint8 and [0, 1]
    for float. Returns a batch of the same shape and dtype.
    """
    check_images(images)
    high = 255.0 if images.dtype == torch.uint8 else 1.0
    thresholds = check_magnitude(
        threshold, images.shape[0], images.device, name="threshold", low=0.0, high=high
    )
    return run_kernel(solarize_kernel, images, thresholds)


def posterize(images: torch.Tensor, bits: Magnitude) -> torch.Tensor:
    """Keep the ``bits`` most significant bits of each 8-bit level (Pillow's ImageOps.posterize).

    ``bits``: a whole number or (B,) tensor in [0, 8]; float images are quantised to 8-bit levels
    first. Returns a batch of the same shape and dtype.
    """
    check_images(images)
    values = check_magnitude(
        bits, images.shape[0], images.device, name="bits", low=0.0, high=8.0, integer=True
    )
    return run_kernel(posterize_kernel, images, values)


def brightness(images: torch.Tensor, factor: Magnitude) -> torch.Tensor:
    """Scale brightness (Pillow's ImageEnhance.Brightness): 0 black, 1 the original.

    ``factor``: a number or (B,) tensor >= 0. Returns a batch of the same shape and dtype.
    """
    return _enhance(brightness_kernel, images, factor)


def contrast(images: torch.Tensor, factor: Magnitude) -> torch.Tensor:
    """Scale contrast about the mean grey level (Pillow's ImageEnhance.Contrast).

    Images need 1 or 3 channels. ``factor``: a number or (B,) tensor >= 0; 0 flat grey, 1 the
    original. Returns a batch of the same shape and dtype.
    """
    return _enhance(contrast_kernel, images, factor, gray_or_rgb=True)


def color(images: torch.Tensor, factor: Magnitude) -> torch.Tensor:
    """Scale saturation (Pillow's ImageEnhance.Color): 0 grayscale, 1 the original.

    Images need 1 or 3 channels; on 1 channel this is the identity. ``factor``: a number or (B,)
    tensor >= 0. Returns a batch of the same shape and dtype.
    """
    return _enhance(color_kernel, images, factor, gray_or_rgb=True)


def sharpness(images: torch.Tensor, factor: Magnitude) -> torch.Tensor:
    """Scale sharpness (Pillow's ImageEnhance.Sharpness): 0 smoothed, 1 the original, 2 sharper.

    ``factor``: a number or (B,) tensor >= 0. Returns a batch of the same shape and dtype.
    """
    return _enhance(sharpness_kernel, images, factor)
