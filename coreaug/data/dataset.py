"""The object every loader returns: a dataset as uint8 image tensors plus its metadata."""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from coreaug.errors import UsageError


@dataclass
class ImageDataset:
    """A labelled image dataset held in memory, ready to move to a device in one copy.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        train_images, test_images: ``torch.uint8`` tensors of shape ``(N, C, H, W)``.
        train_labels, test_labels: ``torch.int64`` tensors of shape ``(N,)``, values in
            ``[0, num_classes)``.
        num_classes: number of classes.
        class_names: one name per class, or ``None`` where the format carries none.
        mean, std: per-channel statistics of the train images in [0, 1] units, for
            normalisation (``(x / 255 - mean) / std``).
        source: the folder the files were read from, or ``"generated"``.
        fingerprint: for a folder of images, a hash of its files (path, label, size,
            modification time), which changes when the folder does; else None.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    class_names: Optional[List[str]]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    source: str
    fingerprint: Optional[str] = None

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train_images.shape[1:])

    @property
    def in_channels(self) -> int:
        """Number of image channels, the ``in_channels`` of a model for this data."""
        return int(self.train_images.shape[1])

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes}, source={self.source!r})")


def file_labels(values, path, low: int, high: int) -> np.ndarray:
    """The int64 labels (N,) of a dataset file's label array, or a UsageError naming the file when
    they are not whole numbers in low..high (strings, fractions, NaN: a damaged or foreign file)."""
    labels = np.asarray(values).reshape(-1)
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not np.array_equal(labels, np.floor(labels))):
        raise UsageError(f"{path} holds labels that are not whole numbers ({labels.dtype}): corrupted")
    if labels.size and (labels.min() < low or labels.max() > high):
        raise UsageError(f"{path} holds labels outside {low}..{high}: corrupted")
    return labels.astype(np.int64)


def channel_histograms(images: torch.Tensor) -> torch.Tensor:
    """Pixel counts per channel and level, int64 ``(C, 256)``, of uint8 ``(N, C, H, W)`` images."""
    return torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])])


def stats_of_histograms(counts: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel (mean, standard deviation) in [0, 1] from ``(C, 256)`` pixel counts."""
    counts = counts.double()
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(1)
    mean = (counts * levels).sum(1) / total
    std = ((counts * (levels - mean[:, None]) ** 2).sum(1) / total).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def channel_stats(images: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Exact per-channel mean and standard deviation of uint8 ``(N, C, H, W)`` images, in [0, 1].

    Computed from a 256-bin histogram per channel, so it never makes a float copy of the data
    (CIFAR-10 as float32 would be 600 MB).
    """
    return stats_of_histograms(channel_histograms(images))


def make_dataset(name: str, train: Tuple[torch.Tensor, torch.Tensor],
                 test: Tuple[torch.Tensor, torch.Tensor], num_classes: int,
                 class_names: Optional[List[str]], source: str) -> ImageDataset:
    """Assemble an :class:`ImageDataset` from ``(images, labels)`` pairs, computing mean/std.

    Loaders call this last; the checks here are invariants of the loaders, not user input.
    """
    for images, labels in (train, test):
        assert images.dtype == torch.uint8 and images.dim() == 4, (images.dtype, images.shape)
        assert labels.dtype == torch.int64 and labels.shape == images.shape[:1]
    mean, std = channel_stats(train[0])
    return ImageDataset(name=name, train_images=train[0], train_labels=train[1],
                        test_images=test[0], test_labels=test[1], num_classes=num_classes,
                        class_names=class_names, mean=mean, std=std, source=source)
