"""RandAugment (Cubuk et al., 2020) and TrivialAugment-Wide (Mueller & Hutter, 2021), per example.

Magnitude ranges follow torchvision's: a magnitude is a bin in [0, num_magnitude_bins - 1].
RandAugment's translations are a fraction of the image size (up to 150/331 of it, so 28x28
images get proportionate shifts); TrivialAugment-Wide's are up to 32 pixels at any size, as in
the paper and torchvision's TrivialAugmentWide (a quarter of a 128-px image, a seventh of 224).
A shift is the magnitude truncated to whole pixels, as torchvision's ``int(magnitude)`` (and
AutoAugment's likewise).
"""
from __future__ import annotations

from typing import Optional

import torch

from coreaug.errors import UsageError

from .geometric import check_interpolation
from .op_set import OpSet, linear, no_magnitude, posterize_bits, whole_pixels
from .policy import Policy
from .registry import register_policy
from .sampling import check_randomness, integers, integers_from, per_image_hashes, positive_from, signs
from .validation import check_fill_channels, check_fill_levels, check_images, check_whole
from .working_float import to_working

# Bounds that catch a typo before it costs: each op's magnitude table has num_magnitude_bins entries
# (10 ** 9 filled the memory), and the ops run one layer after another (torchvision's defaults: 31 bins, 2 ops).
MAX_MAGNITUDE_BINS = 10_000
MAX_OPS = 100


def randaugment_ranges(shear=0.3, translate=150 / 331, degrees=30.0, enhance=0.9, bits_dropped=4):
    """The 14 ops of the RandAugment paper with their magnitude ranges (torchvision's)."""
    return {
        "identity": no_magnitude,
        "shear_x": linear(0.0, shear),
        "shear_y": linear(0.0, shear),
        "translate_x": whole_pixels(linear(0.0, translate, "width")),
        "translate_y": whole_pixels(linear(0.0, translate, "height")),
        "rotate": linear(0.0, degrees),
        "brightness": linear(0.0, enhance),
        "color": linear(0.0, enhance),
        "contrast": linear(0.0, enhance),
        "sharpness": linear(0.0, enhance),
        "posterize": posterize_bits(bits_dropped),
        "solarize": linear(255.0, 0.0, "level"),
        "auto_contrast": no_magnitude,
        "equalize": no_magnitude,
    }


def trivialaugment_ranges():
    """TrivialAugment-Wide's ops and wide magnitude ranges (torchvision's): translations up to
    32 pixels whatever the image size."""
    ranges = randaugment_ranges(shear=0.99, degrees=135.0, enhance=0.99, bits_dropped=6)
    ranges.update(translate_x=whole_pixels(linear(0.0, 32.0)), translate_y=whole_pixels(linear(0.0, 32.0)))
    return ranges


class _OneOpPerLayer(Policy):
    """Shared body: each layer gives every example one uniformly drawn op of the set. Each
    example draws its op independently, and all layers' draws are made at once: ops, then
    magnitude bins (TrivialAugment), then signs (see op_set for how a layer runs)."""

    draws_bins = False  # each example draws its magnitude bin (else one bin for all: ``magnitude``)

    def __init__(self, ops: OpSet, interpolation: str, fill):
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.fill = check_fill_levels(fill)
        self._ops = ops

    def _draws(self, generator, layers, n, device) -> tuple:
        """(op kinds (layers, n), bins (layers, n) or one int, signs (layers, n): True or +1 for +)."""
        parts = 3 if self.draws_bins else 2
        hashed = per_image_hashes(generator, parts * layers, n, device)
        if hashed is not None:  # a key per image: one draw holds the numbers of the three
            hashed = hashed.view(parts, layers, n)
            bins = integers_from(hashed[1], self.num_magnitude_bins) if self.draws_bins else self.magnitude
            return integers_from(hashed[0], len(self._ops.names)), bins, positive_from(hashed[-1])
        draws = layers * n
        kind = integers(len(self._ops.names), draws, generator, device).view(layers, n)
        bins = (integers(self.num_magnitude_bins, draws, generator, device).view(layers, n) if self.draws_bins
                else self.magnitude)
        return kind, bins, signs(draws, generator, device).view(layers, n)

    def _augment(self, images, generator, layers):
        check_images(images, gray_or_rgb=True)
        check_fill_channels(self.fill, images)
        check_randomness(generator, images.shape[0])
        n, device = images.shape[0], images.device
        if images.numel() == 0:  # no examples, or images of no pixels
            return images
        if layers == 0:  # a new tensor, as every call gives, float values clamped and NaN made 0
            return images.clone() if images.dtype == torch.uint8 else to_working(images)[0].to(images.dtype)
        x, bound = to_working(images)  # every example draws its op independently
        kind, bins, sign = self._draws(generator, layers, n, device)
        x = self._ops.apply_layers(x, kind, bins, sign, self.fill, self.interpolation, bound)
        return x.to(images.dtype)


@register_policy("randaugment")
class RandAugment(_OneOpPerLayer):
    """RandAugment: ``num_ops`` ops per example (at most MAX_OPS), each drawn uniformly from the 14,
    at one shared ``magnitude`` bin in [0, num_magnitude_bins - 1] (default 9 of 31, as torchvision;
    at most MAX_MAGNITUDE_BINS bins).
    Needs 1 or 3 channels; ``fill`` is the 0-255 level for pixels that geometric ops uncover (or a
    list of one per channel, as torchvision's).
    Float images are taken as [0, 1]: values outside it are clamped into it."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 interpolation: str = "nearest", fill: float = 0):
        self.num_ops = check_whole("num_ops", num_ops, 0, MAX_OPS)
        self.num_magnitude_bins = check_whole("num_magnitude_bins", num_magnitude_bins, 2, MAX_MAGNITUDE_BINS)
        if check_whole("magnitude", magnitude, 0) == 9 and self.num_magnitude_bins <= 9:  # the default, maybe not given
            raise UsageError(f"magnitude (9 by default) must be below num_magnitude_bins={self.num_magnitude_bins}: "
                             f"pass magnitude=0..{self.num_magnitude_bins - 1} too")
        self.magnitude = check_whole("magnitude", magnitude, 0, self.num_magnitude_bins - 1)
        super().__init__(OpSet(randaugment_ranges(), num_magnitude_bins), interpolation, fill)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        return self._augment(images, generator, self.num_ops)


@register_policy("trivialaugment")
class TrivialAugmentWide(_OneOpPerLayer):
    """TrivialAugment-Wide: one op per example, uniformly drawn, at a uniformly drawn magnitude
    bin of ``num_magnitude_bins`` (31), with the wide ranges (translations up to 32 pixels at
    any size, as torchvision's TrivialAugmentWide). Needs 1 or 3 channels; ``fill`` as RandAugment's.
    Float images are taken as [0, 1]: values outside it are clamped into it."""

    draws_bins = True

    def __init__(self, num_magnitude_bins: int = 31, interpolation: str = "nearest",
                 fill: float = 0):
        self.num_magnitude_bins = check_whole("num_magnitude_bins", num_magnitude_bins, 2, MAX_MAGNITUDE_BINS)
        super().__init__(OpSet(trivialaugment_ranges(), num_magnitude_bins), interpolation, fill)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 **context) -> torch.Tensor:
        return self._augment(images, generator, 1)
