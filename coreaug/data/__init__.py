"""Datasets as uint8 tensors: CIFAR-10/100, SVHN, MNIST, Fashion-MNIST, scikit-learn's digits
and a generated ``synthetic`` set, found on disk or downloaded with MD5 checks.

    >>> from coreaug.data import load_dataset
    >>> data = load_dataset("fashion-mnist")      # /usr/share/datasets/fashion-mnist on Debian
    >>> data.train_images.shape, data.train_images.dtype
    (torch.Size([60000, 1, 28, 28]), torch.uint8)
"""
from .dataset import ImageDataset, channel_stats
from .download import Resource
from .locate import DatasetNotFoundError, search_roots
from .noise import apply_label_noise
from .registry import available_datasets, dataset_options, is_folder_dataset, load_dataset, register_dataset
# Importing the loader modules registers their names.
from . import cifar, digits, mnist, svhn, synthetic  # noqa: F401  (imported for registration)

__all__ = [
    "DatasetNotFoundError", "ImageDataset", "Resource", "apply_label_noise",
    "available_datasets", "channel_stats", "dataset_options", "load_dataset",
    "register_dataset", "search_roots",
]
