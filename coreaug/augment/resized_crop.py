"""Random-resized crop plus flip, the weak augmentation for larger images (64-224 px), batched.

Each example draws a box (a random fraction of its area at a random aspect ratio, at a random
place inside the image) and a coin for a left-right flip; the boxes of the whole batch are then
resampled to the image's own size in one ``grid_sample``. This is Inception-style cropping
(Szegedy et al., 2015), torchvision's ``RandomResizedCrop`` then ``RandomHorizontalFlip``, with
these differences, chosen so that no draw depends on another and the device never waits:

- A box wider or taller than the image is clamped to the image's side (its area then falls
  below the drawn fraction and its shape leaves ``ratio``). torchvision draws
  again instead, up to 10 times, then falls back to a centre crop of the whole image with the
  aspect ratio clamped into ``ratio``. With the defaults 14% of draws are clamped here: more
  full-width or full-height boxes than torchvision gives.
- Boxes have fractional sizes and positions; torchvision rounds them to whole pixels.
- The output is a ``size`` square (default: the input's own size, as images are stored as
  fixed-size squares). Resampling is bilinear without antialiasing: it enlarges a box smaller
  than the output, and shrinks a larger one by at most input / ``size`` (8/7 for a folder
  stored at 256 px and trained at 224, coreaug.data.image_folder.STORE_RATIO), where
  torchvision antialiases.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
import torch.nn.functional as F

from coreaug.errors import UsageError

from .geometric import check_interpolation
from .policy import Policy
from .registry import register_policy
from .sampling import check_randomness, uniform
from .validation import check_images
from .working_float import from_resampled, to_working


def random_boxes(n: int, scale: tuple, ratio: tuple, generator: Optional[torch.Generator],
                 device: torch.device, height: int = 1, width: int = 1) -> torch.Tensor:
    """Draw n crop boxes of an image of ``height`` x ``width`` pixels: a float32 (n, 4) tensor of
    (left, top, width, height), each a fraction of the image's width or height.

    The area fraction s ~ U(scale) and the aspect ratio r (width over height, in pixels) is
    log-uniform on ``ratio``; as fractions, width sqrt(s r H / W) and height sqrt(s W / (r H))
    are each clamped to 1 (see the module docstring), and the position is uniform over those
    that keep the box inside the image.
    """
    draws = uniform(4 * n, generator, device).view(4, n)
    area = scale[0] + (scale[1] - scale[0]) * draws[0]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[1])
    if height != width:  # the ratio in pixels: in fractions of the sides, r H / W
        aspect = aspect * (height / width)
    width = (area * aspect).sqrt().clamp(max=1.0)
    height = (area / aspect).sqrt().clamp(max=1.0)
    return torch.stack([(1.0 - width) * draws[2], (1.0 - height) * draws[3], width, height], dim=1)


def box_matrices(boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """The (n, 2, 3) ``affine_grid`` matrices (normalised coordinates, align_corners=False) that
    map the whole output onto each box of ``boxes`` (n, 4), mirrored where ``flip`` (n,) is set."""
    left, top, width, height = boxes.unbind(1)
    zero = torch.zeros_like(width)
    across = torch.where(flip, -width, width)
    rows = [across, zero, 2.0 * left + width - 1.0, zero, height, 2.0 * top + height - 1.0]
    return torch.stack(rows, dim=1).view(-1, 2, 3)


def resized_crop_kernel(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor,
                        interpolation: str, size: Optional[int] = None) -> torch.Tensor:
    """Resample each example's box (see ``random_boxes``) to a ``size`` square (None: the full
    (H, W)), mirrored where ``flip`` is set, in one ``grid_sample`` for the batch. Takes a
    non-empty (B, C, H, W) uint8 or float batch; returns one of the same dtype (uint8 rounded
    to levels)."""
    x, bound = to_working(images)
    theta = box_matrices(boxes, flip).to(x.dtype)
    shape = list(x.shape) if size is None else [*x.shape[:2], size, size]
    grid = F.affine_grid(theta, shape, align_corners=False)
    # Every sample lies inside its box, so inside the image; "border" only keeps rounding error
    # at the edge from blending in zeros.
    out = F.grid_sample(x, grid, mode=interpolation, padding_mode="border", align_corners=False)
    return from_resampled(out, images.dtype, bound)


def _check_pair(name: str, value, rule: str, holds) -> tuple:
    """Return ``value`` as a pair of floats (low, high) if ``holds(low, high)``, else raise."""
    numbers_given = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not numbers_given or not holds(float(value[0]), float(value[1])):
        raise UsageError(f"{name} must be a pair (low, high) with {rule}, got {value!r}")
    return float(value[0]), float(value[1])


@register_policy("resized-crop")
class ResizedCrop(Policy):
    """Random-resized crop and flip (the ImageNet weak augmentation): per example a box of area
    fraction s ~ U(``scale``) and aspect ratio (width / height, in pixels) log-uniform on
    ``ratio``, at a uniform position inside the image, resampled with ``interpolation``
    ("bilinear" or "nearest") to a ``size`` square (None: the image's own size); then a
    left-right flip with probability 1/2 unless ``flip=False``. Any channel count, uint8 or
    float (taken as [0, 1]: values outside it are clamped into it). See the module docstring
    for how it differs from torchvision's RandomResizedCrop."""

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                 interpolation: str = "bilinear", size: Optional[int] = None):
        self.scale = _check_pair("scale", scale, "0 < low <= high <= 1 (fractions of the area)",
                                 lambda low, high: 0 < low <= high <= 1)
        self.ratio = _check_pair("ratio", ratio, "0 < low <= high (width over height)",
                                 lambda low, high: 0 < low <= high)
        if not isinstance(flip, bool):
            raise UsageError(f"flip must be True or False, got {flip!r}")
        self.flip = flip
        check_interpolation(interpolation)
        self.interpolation = interpolation
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
            raise UsageError(f"size must be a positive integer (pixels) or None, got {size!r}")
        self.size = size

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        check_images(images)
        check_randomness(generator, images.shape[0])
        if images.numel() == 0:  # affine_grid takes no empty batch; nothing to crop
            if self.size is not None and images.shape[0]:  # no pixels to make a `size` square of
                raise UsageError(f"resized-crop needs images with pixels to crop {self.size}x{self.size} squares from, "
                                 f"got shape {tuple(images.shape)}")
            size = images.shape[-2:] if self.size is None else (self.size, self.size)
            return images.new_empty((*images.shape[:-2], *size))
        n, device = images.shape[0], images.device
        boxes = random_boxes(n, self.scale, self.ratio, generator, device, *images.shape[2:])
        flip = uniform(n, generator, device) < (0.5 if self.flip else 0.0)
        return resized_crop_kernel(images, boxes, flip, self.interpolation, self.size)
