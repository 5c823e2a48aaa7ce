"""CIFAR-10 and CIFAR-100 from the "python version" pickle batches (Krizhevsky 2009).

Each batch is a pickled dict with ``b"data"`` (N x 3072 uint8: the red plane, then green, then
blue, each 32x32 row-major) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).
"""
import pickle
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError

from .dataset import ImageDataset, file_labels, make_dataset
from .download import Resource, check_placed, extract_tar, fetch_resource
from .locate import FileLayout, PathLike, default_download_root, find_or_download, how_to_get
from .registry import register_dataset

CIFAR10_ARCHIVE = Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                           ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",))
CIFAR100_ARCHIVE = Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                            ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",))

CIFAR10_LAYOUT = FileLayout(
    folders=("cifar-10-batches-py",),
    files={**{f"train{i}": (f"data_batch_{i}",) for i in range(1, 6)},
           "test": ("test_batch",), "meta": ("batches.meta",)},
)
CIFAR100_LAYOUT = FileLayout(folders=("cifar-100-python",),
                             files={"train": ("train",), "test": ("test",), "meta": ("meta",)})

# The batches hold numpy arrays and lists only; refusing every other global means a tampered
# file cannot run code when unpickled.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves numpy's array reconstructors and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """Unpickle one batch file into a dict with ``bytes`` keys.

    Raises:
        UsageError: naming the file, if it is truncated, not a pickle, or not a dict.
    """
    try:
        with open(path, "rb") as handle:
            batch = NumpyOnlyUnpickler(handle, encoding="bytes").load()
    # Unpickling damaged bytes can fail with almost any exception type; all mean "corrupted".
    except Exception as error:
        raise UsageError(f"{path} is not a readable CIFAR batch ({type(error).__name__}: "
                         f"{error}); delete it and get it again") from error
    if not isinstance(batch, dict):
        raise UsageError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict")
    # Batches re-pickled under Python 3 may carry str keys; the originals carry bytes.
    return {key.encode() if isinstance(key, str) else key: value for key, value in batch.items()}


def batch_arrays(path: Path, label_key: bytes, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` of one batch, validated."""
    batch = read_batch(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise UsageError(f"{path} lacks the {key!r} entry of a CIFAR batch "
                             f"(has {sorted(batch)})")
    data = np.asarray(batch[b"data"])
    labels = file_labels(batch[label_key], path, 0, num_classes - 1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UsageError(f"{path}: data has shape {data.shape} and dtype {data.dtype}, expected "
                         f"(N, 3072) uint8")
    if len(labels) != len(data):
        raise UsageError(f"{path} holds {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def class_names_from(path: Path, key: bytes) -> List[str]:
    """Class names stored under ``key`` of a meta file, decoded to str."""
    meta = read_batch(path)
    if key not in meta:
        raise UsageError(f"{path} lacks the {key!r} entry of CIFAR metadata")
    return [name.decode() if isinstance(name, bytes) else str(name) for name in meta[key]]


@keyword_only
def load_cifar(name: str, *, layout: FileLayout, archive: Resource, train_roles: List[str],
               label_key: bytes, names_key: bytes, num_classes: int,
               data_dir: Optional[PathLike], download: bool, progress: bool) -> ImageDataset:
    """Locate (or download and extract) and read a CIFAR dataset. The archive downloaded by hand into
    the download folder is extracted there as a download's would be, without ``download``."""

    def fetch(root: Path) -> None:
        extract_tar(fetch_resource(archive, root, progress) if download else check_placed(archive, root), root)

    download_root = default_download_root(data_dir)
    placed = (download_root / archive.filename).is_file()
    hint = f"A {archive.filename} downloaded by hand into {download_root} is extracted there."
    folder, paths = find_or_download(name, layout, data_dir, download or placed, fetch,
                                     how_to_get(name, archive.urls, data_dir, extra=hint))
    class_names = class_names_from(paths["meta"], names_key)
    if len(class_names) != num_classes:
        raise UsageError(f"{paths['meta']} names {len(class_names)} classes, expected "
                         f"{num_classes}")
    train = [batch_arrays(paths[role], label_key, num_classes) for role in train_roles]
    test = batch_arrays(paths["test"], label_key, num_classes)

    def as_tensors(images: np.ndarray, labels: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)

    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return make_dataset(name, as_tensors(train_images, train_labels), as_tensors(*test),
                        num_classes, class_names, str(folder))


@register_dataset("cifar10")
@keyword_only
def load_cifar10(data_dir: Optional[PathLike] = None, *, download: bool = False,
                 progress: bool = True) -> ImageDataset:
    """CIFAR-10: 50,000 train / 10,000 test, 3x32x32, 10 classes."""
    return load_cifar("cifar10", layout=CIFAR10_LAYOUT, archive=CIFAR10_ARCHIVE,
                      train_roles=[f"train{i}" for i in range(1, 6)], label_key=b"labels",
                      names_key=b"label_names", num_classes=10, data_dir=data_dir, download=download,
                      progress=progress)


@register_dataset("cifar100")
@keyword_only
def load_cifar100(data_dir: Optional[PathLike] = None, *, download: bool = False,
                  progress: bool = True) -> ImageDataset:
    """CIFAR-100 with its 100 fine labels: 50,000 train / 10,000 test, 3x32x32."""
    return load_cifar("cifar100", layout=CIFAR100_LAYOUT, archive=CIFAR100_ARCHIVE, train_roles=["train"],
                      label_key=b"fine_labels", names_key=b"fine_label_names", num_classes=100,
                      data_dir=data_dir, download=download, progress=progress)
