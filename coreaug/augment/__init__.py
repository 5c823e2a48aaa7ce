"""Batched strong augmentation with per-example random choices, on any device.

Ops take a (B, C, H, W) uint8 or float [0, 1] batch and per-example magnitudes (a number or a
(B,) tensor); policies are found by name (``create_policy("weak+randaugment+cutout")``) and
called as ``policy(images, generator)``. Outputs keep the input's shape, dtype and device.
A policy of one's own (``register_policy``) draws with ``uniform``, ``integers``, ``signs`` and
``permutation``, which take a torch.Generator or the `RandomSource` the trainer passes.

Grayscale: every op works on 1-channel batches; ``color`` (saturation) is then the identity and
``contrast`` uses the channel as luminance. Ops that need luminance require 1 or 3 channels;
the others take any channel count.
"""
from .color_ops import (brightness, color, contrast, identity, invert, posterize, sharpness,
                        solarize)
from .occlusion import cutout
from .flip_crop import horizontal_flip, random_crop
from .geometric import rotate, shear_x, shear_y, translate_x, translate_y
from .histogram import auto_contrast, equalize
from .policy import Compose, Policy
from .registry import available_policies, create_policy, register_policy
from .sampling import RandomSource, integers, permutation, signs, uniform

# Importing the policy modules registers them.
from .autoaugment import AutoAugment
from .maxloss import MaxLossAugment
from .randaugment import RandAugment, TrivialAugmentWide
from .resized_crop import ResizedCrop
from .weak_cutout import Cutout, Weak


__all__ = [
    "AutoAugment", "Compose", "Cutout", "MaxLossAugment", "Policy", "RandAugment", "RandomSource", "ResizedCrop",
    "TrivialAugmentWide", "Weak", "auto_contrast", "available_policies", "brightness", "color",
    "contrast", "create_policy", "cutout", "equalize", "horizontal_flip", "identity", "integers", "invert",
    "permutation", "posterize", "random_crop", "register_policy", "rotate", "sharpness", "shear_x", "shear_y",
    "signs", "solarize", "translate_x", "translate_y", "uniform",
]
