"""A generated dataset that needs no files: smooth class-specific patterns plus noise.

Each class has a prototype image (random 4x4 values per channel, bilinearly upsampled); an
example is its class prototype with a random brightness shift and Gaussian pixel noise. A small
CNN separates the classes well above chance within two epochs, which makes it the dataset for
end-to-end tests of training and selection.
"""
import dataclasses
from typing import Optional

import torch
from torch.nn import functional as F

from coreaug.deprecation import keyword_only

from .dataset import ImageDataset, make_dataset, validate_positive
from .locate import PathLike
from .registry import register_dataset

PIXEL_NOISE = 0.12
BRIGHTNESS_JITTER = 0.1
CHUNK = 1024  # examples made at a time; a multiple of 16 (see sample_examples)


def sample_examples(prototypes: torch.Tensor, count: int, generator: torch.Generator):
    """``count`` uint8 examples with balanced, shuffled labels drawn around ``prototypes``.

    Made CHUNK examples at a time, so the float temporaries stay small (the whole of
    synthetic-cifar's train split at once took ~2.3 GB for its 150 MB of images); torch.randn
    draws the same stream in chunks of a multiple of 16 values as at once, so the values are
    those of the whole split drawn in one call."""
    num_classes = len(prototypes)
    labels = (torch.arange(count) % num_classes)[torch.randperm(count, generator=generator)]
    brightness = (torch.rand(count, 1, 1, 1, generator=generator) * 2 - 1) * BRIGHTNESS_JITTER
    images = torch.empty((count, *prototypes.shape[1:]), dtype=torch.uint8)
    for start in range(0, count, CHUNK):
        rows = slice(start, start + CHUNK)
        noise = torch.randn((len(labels[rows]), *prototypes.shape[1:]), generator=generator).mul_(PIXEL_NOISE)
        examples = prototypes[labels[rows]].add_(brightness[rows]).add_(noise).clamp_(0, 1)
        images[rows] = examples.mul_(255).round_()  # whole numbers 0..255: the uint8 copy is exact
    return images, labels


@register_dataset("synthetic", reads_files=False)
@keyword_only
def load_synthetic(data_dir: Optional[PathLike] = None, *, download: bool = False,
                   progress: bool = True, n_train: int = 2000, n_test: int = 500,
                   num_classes: int = 10, channels: int = 3, size: int = 32,
                   seed: int = 0) -> ImageDataset:
    """Generate the synthetic dataset; the same arguments always give the same tensors.

    Args:
        data_dir, download, progress: ignored (nothing is read from disk).
        n_train, n_test: examples per split; labels are balanced (``i % num_classes``) and
            shuffled.
        num_classes: number of classes (>= 2).
        channels, size: images are ``(channels, size, size)``, ``size >= 4``.
        seed: seeds the prototypes and the examples.
    """
    n_train, n_test, num_classes, channels, size = (
        validate_positive(name, value, minimum)
        for name, value, minimum in (("n_train", n_train, 1), ("n_test", n_test, 1), ("num_classes", num_classes, 2),
                                     ("channels", channels, 1), ("size", size, 4)))
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=generator)
    # Values in [0.2, 0.8] leave room for brightness and noise before clipping.
    prototypes = 0.2 + 0.6 * F.interpolate(coarse, size=(size, size), mode="bilinear",
                                           align_corners=True)
    train = sample_examples(prototypes, n_train, generator)
    test = sample_examples(prototypes, n_test, generator)
    return make_dataset("synthetic", train, test, num_classes, None, "generated")


@register_dataset("synthetic-cifar", reads_files=False)
@keyword_only
def load_synthetic_cifar(data_dir: Optional[PathLike] = None, *, download: bool = False,
                         progress: bool = True, seed: int = 0) -> ImageDataset:
    """The synthetic dataset at CIFAR-10's shape and size: 50,000 + 10,000 RGB 32x32 images in
    10 classes, for benchmarks of the training step where CIFAR-10 itself is not at hand."""
    data = load_synthetic(n_train=50_000, n_test=10_000, num_classes=10, channels=3, size=32, seed=seed)
    return dataclasses.replace(data, name="synthetic-cifar")  # its registry name, as every loader's
