"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8x8 images.

Always available offline, so it is the quickest real dataset for tests and demos.
"""
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
    # Imported here: scikit-learn takes most of a second to import, and only this loader needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    # At least one image on each side, whatever the fraction.
    n_test = min(max(round(test_fraction * len(labels)), 1), len(labels) - 1)
    train, test = order[:-n_test], order[-n_test:]

    def split(indices):
        return torch.from_numpy(images[indices]), torch.from_numpy(labels[indices])

    return make_dataset("digits", split(train), split(test), 10,
                        [str(digit) for digit in range(10)], "scikit-learn:load_digits")
