"""Affine ops as one batched warp with a matrix per example: rotate, shear, translate.

Matrices are 2x3, in pixel coordinates whose pixel centres sit at (i + 0.5, j + 0.5), and map an
output position to the input position it samples: Pillow's ``Image.transform(AFFINE, data)``
convention, so ``shear_x(m)`` is Pillow's ``(1, m, 0, 0, 1, 0)``. The warp is one
call for the whole batch with per-example matrices: nearest gathers pixels directly (any dtype,
Pillow's floor rule), bilinear uses ``grid_sample``, rounding uint8 results to the nearest level as
torchvision does (Pillow truncates; float32's error would then darken whole levels by one);
positions that fall outside the image take a fill value (Pillow's ``fillcolor``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from coreaug.errors import UsageError

from .constants import ConstantCache, static
from .validation import Magnitude, check_images, check_magnitude
from .working_float import from_resampled, to_working

Fill = Union[float, int, Sequence[float]]
INTERPOLATIONS = ("nearest", "bilinear")


# Every affine op's matrix is T0 + v T1 + cos(r v) T2 + sin(r v) T3: four fixed rows of six
# entries per op ("terms") and r, radians per unit of the op's value v (pi/180 for rotate, 0
# otherwise). One formula for all ops lets a batch whose examples run different ops build every
# matrix at once, and the single ops use the same arithmetic, so both give the same pixels.
_IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
_ZERO = [0.0] * 6
_LINEAR_TERM = {"shear_x": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0], "shear_y": [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
                "translate_x": [0.0, 0.0, -1.0, 0.0, 0.0, 0.0],
                "translate_y": [0.0, 0.0, 0.0, 0.0, 0.0, -1.0]}


TRIG_GRID = float(2 ** 20)  # cos and sin are rounded to multiples of its inverse (see affine_matrices)


def affine_terms(name: str, height: int, width: int) -> tuple:
    """(terms, radians): the four rows of six matrix entries of op ``name`` (see above) as lists,
    and its radians per unit of value. An op that is not affine gets the identity matrix."""
    if name == "rotate":  # counter-clockwise about the image centre
        cx, cy = width / 2.0, height / 2.0
        return [[0.0, 0.0, cx, 0.0, 0.0, cy], _ZERO, [1.0, 0.0, -cx, 0.0, 1.0, -cy],
                [0.0, -1.0, cy, 1.0, 0.0, -cx]], math.pi / 180.0
    return [_IDENTITY, _LINEAR_TERM.get(name, _ZERO), _ZERO, _ZERO], 0.0


def affine_matrices(terms: torch.Tensor, values: torch.Tensor, radians: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) matrices from per-example ``terms`` (n, 4, 6), ``values`` (n,) and ``radians``
    (n,): T0 + v T1 + cos(r v) T2 + sin(r v) T3.

    cos and sin are rounded to a grid of 2**-20 (Pillow rounds them to 15 decimals): float32's
    cos of 90 degrees is -4.4e-8, not 0, and where a side's pixels sample exactly between two
    (width and height of odd difference) its sign moved each row by its own pixel; cos and sin
    of 45 degrees come out equal, as they are."""
    angle = values * radians
    trig = torch.stack([angle.cos(), angle.sin()], dim=1).mul_(TRIG_GRID).round_().div_(TRIG_GRID)
    basis = torch.cat([torch.ones_like(values)[:, None], values[:, None], trig], dim=1)
    return (basis.unsqueeze(2) * terms).sum(dim=1).view(-1, 2, 3)


def _op_matrices(name: str, values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    terms, radians = affine_terms(name, height, width)
    terms = torch.tensor(terms, dtype=values.dtype, device=values.device).expand(len(values), 4, 6)
    return affine_matrices(terms, values, torch.full_like(values, radians))


def rotate_matrix(degrees: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices that rotate counter-clockwise by ``degrees`` about the image centre."""
    return _op_matrices("rotate", degrees, height, width)


def shear_x_matrix(factors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices sampling input x + factor * y: Pillow's (1, m, 0, 0, 1, 0)."""
    return _op_matrices("shear_x", factors, height, width)


def shear_y_matrix(factors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices sampling input y + factor * x: Pillow's (1, 0, 0, m, 1, 0)."""
    return _op_matrices("shear_y", factors, height, width)


def translate_x_matrix(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices moving the content right by ``pixels``."""
    return _op_matrices("translate_x", pixels, height, width)


def translate_y_matrix(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) matrices moving the content down by ``pixels``."""
    return _op_matrices("translate_y", pixels, height, width)


_GRIDS = ConstantCache()


def _grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> tuple:
    """Cached per size, dtype and device: the x and y of the pixel centres, each (H*W,), and
    (2, 1) columns for x and y: the lowest and highest frame positions and grid_sample's scale."""
    return _GRIDS.get((height, width, dtype, str(device)), lambda: _make_grid(height, width, dtype, device))


def _make_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> tuple:
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype),
                            indexing="ij")
    centres = (xs.flatten() + 0.5, ys.flatten() + 0.5)
    columns = torch.tensor([[-1.0, width, 2.0 / width], [-1.0, height, 2.0 / height]], dtype=dtype)
    return tuple(static(t.to(device)) for t in (*centres, *columns.unsqueeze(2).unbind(1)))


def _source_positions(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Input positions (n, 2, H*W), x then y, sampled by every output pixel centre."""
    xs, ys = _grid(height, width, matrices.dtype, matrices.device)[:2]
    # m2 + m0 x + m1 y, for both rows of every matrix: two passes over the (n, 2, H*W) result.
    return torch.addcmul(matrices[..., 2:], matrices[..., :1], xs).addcmul_(matrices[..., 1:2], ys)


def _framed(x: torch.Tensor, fill) -> torch.Tensor:
    """``x`` inside a one-pixel frame of ``fill`` (a number, or a (C,) tensor in x's units)."""
    if not isinstance(fill, torch.Tensor):
        return F.pad(x, (1, 1, 1, 1), value=float(fill))
    n, channels, height, width = x.shape
    framed = fill.to(x.dtype).view(1, channels, 1, 1).repeat(n, 1, height + 2, width + 2)
    framed[:, :, 1:-1, 1:-1] = x
    return framed


def _warp_nearest(x, source, fill):
    n, channels, height, width = x.shape
    low, high = _grid(height, width, source.dtype, source.device)[2:4]
    # Positions outside are clamped onto a one-pixel frame of fill, so one gather does both
    # sampling and filling (no masks). Pillow's nearest neighbour is the pixel containing the
    # position: floor, not round.
    index = _framed_index(source.floor().clamp_(low, high), width)
    framed = _framed(x, fill).flatten(2)
    out = framed.gather(2, index.view(n, 1, height * width).expand(n, channels, height * width))
    return out.view(n, channels, height, width)


def _framed_index(cells: torch.Tensor, width: int) -> torch.Tensor:
    """int64 (n, H*W): the flat positions in the image framed by one pixel of the cells (x, y)
    (whole numbers, (n, 2, H*W)), x + 1 + (y + 1) (W + 2). In int64: float32 holds whole numbers
    exactly only up to 2 ** 24, which a 4,095 x 4,095 image with its frame passes."""
    cells = cells.long()
    return torch.add(cells[:, 0], cells[:, 1], alpha=width + 2).add_(width + 3)


def _warp_bilinear(x, source, fill, has_fill):
    n, channels, height, width = x.shape
    scale = _grid(height, width, source.dtype, source.device)[4]
    # grid_sample's [-1, 1] coordinates with align_corners=False are pixel positions * 2 / size - 1.
    grid = (source * scale).sub_(1.0).transpose(1, 2).reshape(n, height, width, 2).to(x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if has_fill:
        # The weight that fell inside the image tells how much fill to add.
        coverage = F.grid_sample(x.new_ones(n, 1, height, width), grid, mode="bilinear",
                                 padding_mode="zeros", align_corners=False)
        if isinstance(fill, torch.Tensor):
            fill = fill.to(x.dtype).view(1, channels, 1, 1)
        out = out.add_((1.0 - coverage) * fill)
    return out


def warp(x: torch.Tensor, matrices: torch.Tensor, fill, interpolation: str,
         has_fill: bool = True):
    """Warp ``x`` (n, C, H, W) by pixel matrices (n, 2, 3); positions outside take ``fill``.

    ``fill`` is a number or a (C,) tensor in the units of ``x``; ``has_fill`` False says it is
    all zeros (the caller knows it; asking the tensor would wait on the device). Nearest works
    on any dtype by gathering pixels; bilinear needs a float ``x``. Returns a new tensor of the
    dtype of ``x``.
    """
    source = _source_positions(matrices.float(), x.shape[2], x.shape[3])
    if interpolation == "nearest":
        return _warp_nearest(x, source, fill)
    return _warp_bilinear(x, source, fill, has_fill)


def check_fill(fill: Fill, images: torch.Tensor) -> torch.Tensor:
    """Return ``fill`` (a number or one per channel, in image units) as a (C,) float tensor."""
    channels = images.shape[1]
    high = 255.0 if images.dtype == torch.uint8 else 1.0
    values = torch.empty(0)
    if fill is not None and not isinstance(fill, (str, bytes, bool)):  # (as_tensor takes a string of digits)
        with contextlib.suppress(TypeError, ValueError, RuntimeError):  # numbers, a list, an array, a tensor
            values = torch.as_tensor(fill, dtype=torch.float32).flatten()
    if values.numel() == 1:
        values = values.expand(channels)
    if values.numel() != channels or not bool(((values >= 0) & (values <= high)).all()):  # NaN too
        raise UsageError(
            f"fill must be a number or {channels} numbers (one per channel) in [0, {high:g}], "
            f"got {fill!r}"
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
    x, bound = to_working(images)  # bilinear resamples: rounded back to levels (float32 error is not darkening)
    return from_resampled(warp(x, matrices, fill_values, interpolation, has_fill), images.dtype, bound)


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
