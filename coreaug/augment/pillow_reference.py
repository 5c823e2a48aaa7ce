"""Per-image Pillow versions of the ops: the reference the tests compare against and the
per-image baseline the benchmark measures. coreaug itself never imports this module (Pillow,
which it needs, is one of coreaug's own requirements: image folders are decoded with it).

Every function takes a PIL image (mode "L" or "RGB") and the op's value in the same units as
the batched op (levels, factors, degrees, pixels), and returns a new PIL image.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (C, H, W) uint8 tensor with 1 or 3 channels as a PIL image ("L" or "RGB")."""
    array = image.permute(1, 2, 0).contiguous().numpy()
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], "L")
    return Image.fromarray(array, "RGB")


def from_pil(image: Image.Image) -> torch.Tensor:
    """A PIL image as a (C, H, W) uint8 tensor."""
    array = np.asarray(image)
    array = array.reshape(array.shape[0], array.shape[1], -1).copy()
    return torch.from_numpy(array).permute(2, 0, 1)


def _fillcolor(image: Image.Image, fill: int):
    return fill if image.mode == "L" else (fill,) * len(image.getbands())


def _affine(image, data, fill):
    return image.transform(image.size, Image.Transform.AFFINE, data, Image.Resampling.NEAREST,
                           fillcolor=_fillcolor(image, fill))


PILLOW_OPS = {
    "identity": lambda image, value, fill=0: image,
    "auto_contrast": lambda image, value, fill=0: ImageOps.autocontrast(image),
    "equalize": lambda image, value, fill=0: ImageOps.equalize(image),
    "invert": lambda image, value, fill=0: ImageOps.invert(image),
    "solarize": lambda image, value, fill=0: ImageOps.solarize(image, value),
    "posterize": lambda image, value, fill=0: ImageOps.posterize(image, int(value)),
    "color": lambda image, value, fill=0: ImageEnhance.Color(image).enhance(value),
    "contrast": lambda image, value, fill=0: ImageEnhance.Contrast(image).enhance(value),
    "brightness": lambda image, value, fill=0: ImageEnhance.Brightness(image).enhance(value),
    "sharpness": lambda image, value, fill=0: ImageEnhance.Sharpness(image).enhance(value),
    "rotate": lambda image, value, fill=0: image.rotate(
        value, resample=Image.Resampling.NEAREST, fillcolor=_fillcolor(image, fill)),
    "shear_x": lambda image, value, fill=0: _affine(image, (1, value, 0, 0, 1, 0), fill),
    "shear_y": lambda image, value, fill=0: _affine(image, (1, 0, 0, value, 1, 0), fill),
    "translate_x": lambda image, value, fill=0: _affine(image, (1, 0, -value, 0, 1, 0), fill),
    "translate_y": lambda image, value, fill=0: _affine(image, (1, 0, 0, 0, 1, -value), fill),
    "horizontal_flip": lambda image, value, fill=0: ImageOps.mirror(image) if value else image,
}


def apply_each(op: str, images: torch.Tensor, values, fill: int = 0) -> torch.Tensor:
    """Apply Pillow op ``op`` to each image of a (B, C, H, W) uint8 batch with its own value
    (``values``: a sequence of B numbers); returns the (B, C, H, W) uint8 result."""
    return torch.stack([
        from_pil(PILLOW_OPS[op](to_pil(image), float(value), fill))
        for image, value in zip(images, values)
    ])
