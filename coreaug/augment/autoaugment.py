"""AutoAugment's CIFAR-10 and ImageNet policies (Cubuk et al., CVPR 2019), a sub-policy drawn
per example.

Each policy is its published table of 25 sub-policies: two (op, probability, magnitude bin of
10) steps each. Magnitude ranges follow torchvision's AutoAugment.
"""
from __future__ import annotations

from typing import Optional

import torch

from coreaug.errors import UsageError

from .constants import ConstantCache, static
from .geometric import check_interpolation
from .op_set import OpSet, linear, no_magnitude, posterize_bits, whole_pixels
from .policy import Policy
from .registry import register_policy
from .sampling import (check_randomness, integers, integers_from, per_image_hashes, positive_from, signs, uniform,
                       uniform_from)
from .validation import check_fill_channels, check_fill_levels, check_images
from .working_float import to_working

CIFAR10_SUBPOLICIES = (
    (("invert", 0.1, None), ("contrast", 0.2, 6)),
    (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
    (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
    (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
    (("auto_contrast", 0.5, None), ("equalize", 0.9, None)),
    (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
    (("color", 0.4, 3), ("brightness", 0.6, 7)),
    (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
    (("equalize", 0.6, None), ("equalize", 0.5, None)),
    (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
    (("color", 0.7, 7), ("translate_x", 0.5, 8)),
    (("equalize", 0.3, None), ("auto_contrast", 0.4, None)),
    (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
    (("brightness", 0.9, 6), ("color", 0.2, 8)),
    (("solarize", 0.5, 2), ("invert", 0.0, None)),
    (("equalize", 0.2, None), ("auto_contrast", 0.6, None)),
    (("equalize", 0.2, None), ("equalize", 0.6, None)),
    (("color", 0.9, 9), ("equalize", 0.6, None)),
    (("auto_contrast", 0.8, None), ("solarize", 0.2, 8)),
    (("brightness", 0.1, 3), ("color", 0.7, 0)),
    (("solarize", 0.4, 5), ("auto_contrast", 0.9, None)),
    (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
    (("auto_contrast", 0.9, None), ("solarize", 0.8, 3)),
    (("equalize", 0.8, None), ("invert", 0.1, None)),
    (("translate_y", 0.7, 9), ("auto_contrast", 0.9, None)),
)

IMAGENET_SUBPOLICIES = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
    (("solarize", 0.6, 5), ("auto_contrast", 0.6, None)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
    (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("equalize", 0.4, None), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, None)),
    (("posterize", 0.8, 5), ("equalize", 1.0, None)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
    (("equalize", 0.6, None), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)),
    (("rotate", 0.4, 9), ("equalize", 0.6, None)),
    (("equalize", 0.0, None), ("equalize", 0.8, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)),
    (("sharpness", 0.4, 7), ("invert", 0.6, None)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, None)),
    (("color", 0.4, 0), ("equalize", 0.6, None)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("solarize", 0.6, 5), ("auto_contrast", 0.6, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
)

# The published tables by dataset; the ImageNet one repeats some sub-policies, as published.
AUTOAUGMENT_POLICIES = {"cifar10": CIFAR10_SUBPOLICIES, "imagenet": IMAGENET_SUBPOLICIES}

AUTOAUGMENT_BINS = 10
AUTOAUGMENT_RANGES = {
    "identity": no_magnitude,
    "shear_x": linear(0.0, 0.3),
    "shear_y": linear(0.0, 0.3),
    "translate_x": whole_pixels(linear(0.0, 150 / 331, "width")),
    "translate_y": whole_pixels(linear(0.0, 150 / 331, "height")),
    "rotate": linear(0.0, 30.0),
    "brightness": linear(0.0, 0.9),
    "color": linear(0.0, 0.9),
    "contrast": linear(0.0, 0.9),
    "sharpness": linear(0.0, 0.9),
    "posterize": posterize_bits(4),
    "solarize": linear(255.0, 0.0, "level"),
    "auto_contrast": no_magnitude,
    "equalize": no_magnitude,
    "invert": no_magnitude,
}


@register_policy("autoaugment")
class AutoAugment(Policy):
    """AutoAugment: each example draws one of the 25 sub-policies of ``policy``'s table
    ("cifar10", the default, or "imagenet"), uniformly and independently per example, and
    applies its two steps, each with its own probability. Needs 1 or 3 channels; ``fill`` is the 0-255
    level for pixels that geometric ops uncover (or a list of one per channel, as torchvision's).
    Float images are taken as [0, 1]: values outside it are clamped into it."""

    def __init__(self, interpolation: str = "nearest", fill: float = 0, policy: str = "cifar10"):
        check_interpolation(interpolation)
        if policy not in AUTOAUGMENT_POLICIES:
            raise UsageError(f"policy must be one of {tuple(AUTOAUGMENT_POLICIES)}, got {policy!r}")
        self.interpolation = interpolation
        self.fill = check_fill_levels(fill)
        self.policy = policy
        self._subpolicies = table = AUTOAUGMENT_POLICIES[policy]
        self._ops = OpSet(AUTOAUGMENT_RANGES, AUTOAUGMENT_BINS)
        # Per step and sub-policy (2, 25): the op (an index into the op set), its probability and bin.
        self._ops_of_step = [[self._ops.index(sub[step][0]) for sub in table] for step in range(2)]
        self._probability = torch.tensor([[sub[step][1] for sub in table] for step in range(2)])
        self._bin_table = torch.tensor([[sub[step][2] or 0 for sub in table] for step in range(2)])
        self._identity = self._ops.index("identity")
        self._on_device = ConstantCache()

    @property
    def subpolicies(self) -> tuple:
        """The 25 sub-policies in use: ((op, probability, magnitude bin or None), step 2) each."""
        return self._subpolicies

    def _tables_on(self, device):
        """The sub-policy tables on ``device``, copied there once (not once per batch): per
        step and sub-policy the probability, magnitude bin and op (an index into the op set),
        each (2, 25), and the identity op's index."""
        return self._on_device.get(str(device), lambda: tuple(static(t.to(device, copy=True)) for t in (
            self._probability, self._bin_table, torch.tensor(self._ops_of_step), torch.tensor(self._identity))))

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        """Each example draws its own sub-policy; its two steps are two layers (an example whose
        step is not applied takes the identity in that layer)."""
        check_images(images, gray_or_rgb=True)
        check_fill_channels(self.fill, images)
        check_randomness(generator, images.shape[0])
        n, device = images.shape[0], images.device
        if images.numel() == 0:  # no examples, or images of no pixels
            return images
        probability, bin_table, kinds, identity = self._tables_on(device)
        x, bound = to_working(images)
        hashed = per_image_hashes(generator, 5, n, device)
        if hashed is not None:  # a key per image: one draw holds the numbers of the three
            subpolicy = integers_from(hashed[0], len(self._subpolicies))
            drawn, sign = uniform_from(hashed[1:3]), positive_from(hashed[3:])
        else:
            subpolicy = integers(len(self._subpolicies), n, generator, device)
            drawn = uniform(2 * n, generator, device).view(2, n)
            sign = signs(2 * n, generator, device).view(2, n)
        applied = drawn < probability.index_select(1, subpolicy)
        kind = torch.where(applied, kinds.index_select(1, subpolicy), identity)
        bin_index = bin_table.index_select(1, subpolicy)
        present = [set(step) | {self._identity} for step in self._ops_of_step]
        x = self._ops.apply_layers(x, kind, bin_index, sign, self.fill, self.interpolation, bound, present)
        return x.to(images.dtype)


@register_policy("autoaugment-imagenet")
def autoaugment_imagenet(interpolation: str = "nearest", fill: float = 0) -> AutoAugment:
    """AutoAugment with the ImageNet policy: ``AutoAugment(interpolation, fill, "imagenet")``."""
    return AutoAugment(interpolation, fill, policy="imagenet")
