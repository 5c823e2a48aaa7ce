"""SVHN cropped digits (Netzer et al. 2011) from ``train_32x32.mat`` and ``test_32x32.mat``.

Each file holds ``X`` of shape (32, 32, 3, N) uint8 and ``y`` of shape (N, 1) with labels 1..10,
where 10 stands for the digit 0; labels are mapped so that class k is digit k.
"""
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError

from .dataset import ImageDataset, file_labels, make_dataset
from .download import Resource, fetch_resource
from .locate import FileLayout, PathLike, find_or_download, how_to_get
from .registry import register_dataset

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_RESOURCES = {
    "train": Resource("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                      (SVHN_URL + "train_32x32.mat",)),
    "test": Resource("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3",
                     (SVHN_URL + "test_32x32.mat",)),
}
SVHN_LAYOUT = FileLayout(folders=("svhn", "SVHN"),
                         files={"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)})


def read_svhn_mat(path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64 in 0..9)`` from one SVHN .mat file.

    Raises:
        UsageError: naming the file, if it is unreadable or its arrays have the wrong shapes or
            labels outside 1..10.
    """
    import scipy.io  # here, not at `import coreaug`

    try:
        contents = scipy.io.loadmat(path)
    # scipy raises assorted exception types on damaged .mat files; all mean "corrupted".
    except Exception as error:
        raise UsageError(f"{path} is not a readable .mat file ({type(error).__name__}: {error}); "
                         f"delete it and get it again") from error
    if "X" not in contents or "y" not in contents:
        raise UsageError(f"{path} lacks the X and y arrays of an SVHN file")
    images, labels = contents["X"], file_labels(contents["y"], path, 1, 10)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise UsageError(f"{path}: X has shape {images.shape} and dtype {images.dtype}, "
                         f"expected (32, 32, 3, N) uint8")
    if len(labels) != images.shape[3]:
        raise UsageError(f"{path} holds {images.shape[3]} images but {len(labels)} labels")
    images = np.ascontiguousarray(images.transpose(3, 2, 0, 1))
    # SVHN writes digit 0 as label 10.
    return torch.from_numpy(images), torch.from_numpy(labels % 10)


@register_dataset("svhn")
@keyword_only
def load_svhn(data_dir: Optional[PathLike] = None, *, download: bool = False,
              progress: bool = True) -> ImageDataset:
    """SVHN: 73,257 train / 26,032 test, 3x32x32, 10 classes (class k is digit k).

    The 531,131-image ``extra`` split is not loaded.
    """

    def fetch(root: Path) -> None:
        for resource in SVHN_RESOURCES.values():
            fetch_resource(resource, root / "svhn", progress)

    folder, paths = find_or_download(
        "svhn", SVHN_LAYOUT, data_dir, download, fetch,
        how_to_get("svhn", [r.urls[0] for r in SVHN_RESOURCES.values()], data_dir))
    return make_dataset("svhn", read_svhn_mat(paths["train"]), read_svhn_mat(paths["test"]), 10,
                        [str(digit) for digit in range(10)], str(folder))
