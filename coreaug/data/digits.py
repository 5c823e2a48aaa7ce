"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8x8 images.

Always available offline, so it is the quickest real dataset for tests and demos.
"""
import gzip
import importlib.util
import os
from typing import Optional

import numpy as np
import torch

from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError

from .dataset import ImageDataset, make_dataset
from .locate import PathLike
from .registry import register_dataset


@register_dataset("digits", reads_files=False)
@keyword_only
def load_sklearn_digits(data_dir: Optional[PathLike] = None, *, download: bool = False,
                        progress: bool = True, test_fraction: float = 0.2,
                        seed: int = 0) -> ImageDataset:
    """The digits as 1x8x8 uint8 images, split train/test by a seeded permutation.

    Args:
        data_dir, download, progress: ignored (the data ships with scikit-learn).
        test_fraction: share of the 1,797 images put in the test split (``round`` of it).
        seed: seed of the permutation; the same seed always gives the same split.

    Pixel values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``).
    """
    if not 0 < test_fraction < 1:
        raise UsageError(f"test_fraction must be in (0, 1), got {test_fraction}")
    pixels, labels = _digits_table()
    images = np.rint(pixels.reshape(-1, 1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    labels = labels.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    # At least one image on each side, whatever the fraction.
    n_test = min(max(round(test_fraction * len(labels)), 1), len(labels) - 1)
    train, test = order[:-n_test], order[-n_test:]

    def split(indices):
        return torch.from_numpy(images[indices]), torch.from_numpy(labels[indices])

    return make_dataset("digits", split(train), split(test), 10,
                        [str(digit) for digit in range(10)], "scikit-learn:load_digits")


def _digits_table():
    """The digits' (1797, 64) pixels (0..16) and labels, read from the CSV file scikit-learn ships,
    where it is: `load_digits` reads the same file, but importing scikit-learn (SciPy, pandas) takes
    1.3-1.5 s, most of a quick digits run's start-up. Through `load_digits` if the file moved."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running its code
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in folders:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                table = np.loadtxt(f, delimiter=",")
        except (OSError, ValueError, EOFError):
            continue
        if table.ndim == 2 and table.shape[1] == 65:
            return table[:, :64], table[:, 64]
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target
