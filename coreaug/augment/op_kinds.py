"""The catalogue of op kinds that policies draw from, by name.

Each kind is a colour kernel ``kernel(x, values, bound)`` or an affine ``matrix(values, H, W)``
(geometric kinds share one warp per layer), or neither (identity). A policy's magnitude
``m`` becomes the kernel's value ``base + sign * m``: enhance factors are ``1 +/- m`` and signed
kinds get a random sign per example, as in torchvision's RandAugment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from . import color_ops, geometric, histogram


@dataclass(frozen=True)
class OpKind:
    """One augmentation op as policies see it: how to apply it and how to read a magnitude."""

    name: str
    kernel: Optional[Callable] = None
    matrix: Optional[Callable] = None
    signed: bool = False
    base: float = 0.0

    @property
    def is_geometric(self) -> bool:
        """True for ops applied as an affine warp."""
        return self.matrix is not None


OP_KINDS = {
    kind.name: kind
    for kind in (
        OpKind("identity"),
        OpKind("auto_contrast", kernel=histogram.auto_contrast_kernel),
        OpKind("equalize", kernel=histogram.equalize_kernel),
        OpKind("invert", kernel=color_ops.invert_kernel),
        OpKind("solarize", kernel=color_ops.solarize_kernel),
        OpKind("posterize", kernel=color_ops.posterize_kernel),
        OpKind("color", kernel=color_ops.color_kernel, signed=True, base=1.0),
        OpKind("contrast", kernel=color_ops.contrast_kernel, signed=True, base=1.0),
        OpKind("brightness", kernel=color_ops.brightness_kernel, signed=True, base=1.0),
        OpKind("sharpness", kernel=color_ops.sharpness_kernel, signed=True, base=1.0),
        OpKind("rotate", matrix=geometric.rotate_matrix, signed=True),
        OpKind("shear_x", matrix=geometric.shear_x_matrix, signed=True),
        OpKind("shear_y", matrix=geometric.shear_y_matrix, signed=True),
        OpKind("translate_x", matrix=geometric.translate_x_matrix, signed=True),
        OpKind("translate_y", matrix=geometric.translate_y_matrix, signed=True),
    )
}
