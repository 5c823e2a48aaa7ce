"""Affine ops as one batched warp with a matrix per example: rotate, shear, translate.

Matrices are 2x3, in pixel coordinates whose pixel centres sit at (i + 0.5, j + 0.5), and map an
output position to the input position it samples: Pillow's ``Image.transform(AFFINE, data)``
convention, so ``shear_x(m)`` is Pillow's ``(1, m, 0, 0, 1, 0)``. The warp is one
call for the whole batch with per-example matrices: nearest gathers pixels directly (any dtype,
Pillow's floor rule), bilinear uses ``grid_sample``; positions that fall outside the image take a
fill value (Pillow's ``fillcolor``).
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from coreaug.errors import UsageError

from .validation import Magnitude, check_images, check_magnitude
from .working_float import from_working, to_working

Fill = Union[float, int, Sequence[float]]
INTERPOLATIONS = ("nearest", "bilinear")


def _affine(values: torch.Tensor, a, b, c, d, e, f) -> torch.Tensor:
    entries = torch.broadcast_tensors(a, b, c, d, e, f)
    return torch.stack(entries, dim=-1).view(-1, 2, 3).to(values)


def rotate_matrix(degrees: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices that rotate counter-clockwise by ``degrees`` about the image centre."""
    radians = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    cx, cy = width / 2.0, height / 2.0
    return _affine(degrees, cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)


def shear_x_matrix(factors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices sampling input x + factor * y: Pillow's (1, m, 0, 0, 1, 0)."""
    one, zero = torch.ones_like(factors), torch.zeros_like(factors)
    return _affine(factors, one, factors, zero, zero, one, zero)


def shear_y_matrix(factors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices sampling input y + factor * x: Pillow's (1, 0, 0, m, 1, 0)."""
    one, zero = torch.ones_like(factors), torch.zeros_like(factors)
    return _affine(factors, one, zero, zero, factors, one, zero)


def translate_x_matrix(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices moving the content right by ``pixels``."""
    one, zero = torch.ones_like(pixels), torch.zeros_like(pixels)
    return _affine(pixels, one, zero, -pixels, zero, one, zero)


def translate_y_matrix(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices moving the content down by ``pixels``."""
    one, zero = torch.ones_like(pixels), torch.zeros_like(pixels)
    return _affine(pixels, one, zero, zero, zero, one, -pixels)


def _source_positions(matrices: torch.Tensor, height: int, width: int):
    """Input positions (x, y), each (n, H, W), sampled by every output pixel centre."""
    xs = torch.arange(width, device=matrices.device, dtype=matrices.dtype).add_(0.5)
    ys = torch.arange(height, device=matrices.device, dtype=matrices.dtype).add_(0.5)
    m = matrices.view(-1, 6, 1, 1)
    source_x = m[:, 0] * xs + m[:, 1] * ys.unsqueeze(1) + m[:, 2]
    source_y = m[:, 3] * xs + m[:, 4] * ys.unsqueeze(1) + m[:, 5]
    return source_x, source_y


def _warp_nearest(x, source_x, source_y, fill):
    n, channels, height, width = x.shape
    # A one-pixel frame of fill around the image: positions outside are clamped onto it, so one
    # gather does both sampling and filling (no masks: bool tensors are slow on CPU).
    framed = fill.to(x.dtype).view(1, channels, 1, 1).repeat(n, 1, height + 2, width + 2)
    framed[:, :, 1:-1, 1:-1] = x
    # Pillow's nearest neighbour is the pixel containing the position: floor, not round.
    col = source_x.floor_().clamp_(-1, width).add_(1)
    row = source_y.floor_().clamp_(-1, height).add_(1)
    index = row.mul_(width + 2).add_(col).long().view(n, 1, height * width)
    out = framed.flatten(2).gather(2, index.expand(n, channels, height * width))
    return out.view(n, channels, height, width)


def _warp_bilinear(x, source_x, source_y, fill, has_fill):
    n, channels, height, width = x.shape
    # grid_sample's [-1, 1] coordinates with align_corners=False are pixel positions * 2 / size - 1.
    grid = torch.stack([source_x * (2.0 / width) - 1.0, source_y * (2.0 / height) - 1.0], dim=-1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if has_fill:
        # The weight that fell inside the image tells how much fill to add.
        coverage = F.grid_sample(x.new_ones(n, 1, height, width), grid, mode="bilinear",
                                 padding_mode="zeros", align_corners=False)
        out = out.add_((1.0 - coverage) * fill.to(x.dtype).view(1, channels, 1, 1))
    return out


def warp(x: torch.Tensor, matrices: torch.Tensor, fill: torch.Tensor, interpolation: str,
         has_fill: bool = True):
    """Warp ``x`` (n, C, H, W) by pixel matrices (n, 2, 3); positions outside take ``fill``.

    ``fill`` is a (C,) tensor in the units of ``x``; ``has_fill`` False says it is all zeros
    (the caller knows it; asking the tensor would wait on the device). Nearest works on any
    dtype by gathering pixels; bilinear needs a float ``x``. Returns a new tensor of the dtype
    of ``x``.
    """
    source_x, source_y = _source_positions(matrices.float(), x.shape[2], x.shape[3])
    if interpolation == "nearest":
        return _warp_nearest(x, source_x, source_y, fill)
    return _warp_bilinear(x, source_x.to(x.dtype), source_y.to(x.dtype), fill, has_fill)


def check_fill(fill: Fill, images: torch.Tensor) -> torch.Tensor:
    """Return ``fill`` (a number or one per channel, in image units) as a (C,) float tensor."""
    channels = images.shape[1]
    values = torch.as_tensor(fill, dtype=torch.float32).flatten()
    if values.numel() == 1:
        values = values.expand(channels)
    high = 255.0 if images.dtype == torch.uint8 else 1.0
    if values.numel() != channels or bool((values < 0).any() | (values > high).any()):
        raise UsageError(
            f"fill must be a number or {channels} numbers (one per channel) in [0, {high:g}], "
            f"got {fill}"
        )
    return values.to(images.device)


def check_interpolation(interpolation: str) -> None:
    """Raise UsageError unless ``interpolation`` is "nearest" or "bilinear"."""
    if interpolation not in INTERPOLATIONS:
        raise UsageError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def _warp_op(images, magnitude, name, matrix, interpolation, fill):
    check_images(images)
    check_interpolation(interpolation)
    values = check_magnitude(magnitude, images.shape[0], images.device, name=name)
    fill_values = check_fill(fill, images)
    has_fill = bool(fill_values.any())
    matrices = matrix(values, images.shape[2], images.shape[3])
    if interpolation == "nearest":  # moves whole pixels: no float copy needed
        return warp(images, matrices, fill_values, interpolation, has_fill)
    x, bound = to_working(images)
    return from_working(warp(x, matrices, fill_values, interpolation, has_fill), images.dtype, bound)


def rotate(images: torch.Tensor, degrees: Magnitude, *, interpolation: str = "nearest",
           fill: Fill = 0) -> torch.Tensor:
    """Rotate counter-clockwise about the centre (Pillow's ``Image.rotate``).

    ``degrees``: number or (B,) tensor. ``fill``: value for uncovered pixels in image units,
    a number or one per channel. Returns a batch of the same shape and dtype.
    """
    return _warp_op(images, degrees, "degrees", rotate_matrix, interpolation, fill)


def shear_x(images: torch.Tensor, factor: Magnitude, *, interpolation: str = "nearest",
            fill: Fill = 0) -> torch.Tensor:
    """Shear horizontally: output (x, y) samples input (x + factor * y, y), about the top-left.

    ``factor``: number or (B,) tensor. Returns a batch of the same shape and dtype.
    """
    return _warp_op(images, factor, "factor", shear_x_matrix, interpolation, fill)


def shear_y(images: torch.Tensor, factor: Magnitude, *, interpolation: str = "nearest",
            fill: Fill = 0) -> torch.Tensor:
    """Shear vertically: output (x, y) samples input (x, y + factor * x), about the top-left.

    ``factor``: number or (B,) tensor. Returns a batch of the same shape and dtype.
    """
    return _warp_op(images, factor, "factor", shear_y_matrix, interpolation, fill)


def translate_x(images: torch.Tensor, pixels: Magnitude, *, interpolation: str = "nearest",
                fill: Fill = 0) -> torch.Tensor:
    """Move the content right by ``pixels`` (number or (B,) tensor; negative moves left).

    Returns a batch of the same shape and dtype.
    """
    return _warp_op(images, pixels, "pixels", translate_x_matrix, interpolation, fill)


def translate_y(images: torch.Tensor, pixels: Magnitude, *, interpolation: str = "nearest",
                fill: Fill = 0) -> torch.Tensor:
    """Move the content down by ``pixels`` (number or (B,) tensor; negative moves up).

    Returns a batch of the same shape and dtype.
    """
    return _warp_op(images, pixels, "pixels", translate_y_matrix, interpolation, fill)
