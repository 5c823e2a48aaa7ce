"""MNIST and Fashion-MNIST from their IDX files (gzipped or raw).

Looked for in a root's ``MNIST/raw`` / ``FashionMNIST/raw`` (torchvision's layout), in a folder
named after the dataset, or in the root itself (Debian's /usr/share/datasets/fashion-mnist).
"""
from pathlib import Path
from typing import Dict, List, Optional

import torch

from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError

from .dataset import ImageDataset, make_dataset
from .download import Resource, fetch_resource
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from .locate import FileLayout, PathLike, find_or_download, how_to_get
from .registry import register_dataset

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# MD5s of the official .gz files, as published by the datasets' authors and used by torchvision.
MNIST_MD5 = {
    "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
    "test_images": "9fb629c4189551a2d022fa330f9573f3",
    "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MNIST_MD5 = {
    "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
    "test_images": "bef4ecab320f06d8554ea6380940ec79",
    "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
}
# yann.lecun.com now often refuses downloads, so torchvision's S3 mirror is tried first.
MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FASHION_MNIST_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(digit) for digit in range(10)]


def idx_layout(torchvision_folder: str, name: str) -> FileLayout:
    """Each IDX file may be gzipped (``.gz``, as distributed) or already decompressed."""
    return FileLayout(folders=(f"{torchvision_folder}/raw", name),
                      files={role: (f"{stem}.gz", stem) for role, stem in IDX_FILES.items()})


def idx_resources(base_urls, md5s: Dict[str, str]) -> List[Resource]:
    """The four ``.gz`` downloads of an IDX dataset."""
    return [Resource(f"{stem}.gz", md5s[role], tuple(base + f"{stem}.gz" for base in base_urls))
            for role, stem in IDX_FILES.items()]


@keyword_only
def load_idx_dataset(name: str, *, layout: FileLayout, resources: List[Resource],
                     class_names: List[str], data_dir: Optional[PathLike], download: bool,
                     progress: bool, extra_help: str = "") -> ImageDataset:
    """Locate (or download into ``<root>/<name>``) and read the four IDX files of a dataset."""

    def fetch(root: Path) -> None:
        for resource in resources:
            fetch_resource(resource, root / name, progress)

    help_text = how_to_get(name, [resources[0].urls[0].rsplit("/", 1)[0] + "/"], data_dir,
                           extra_help)
    folder, paths = find_or_download(name, layout, data_dir, download, fetch, help_text)
    splits = []
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], IMAGES_MAGIC)
        labels = read_idx(paths[f"{split}_labels"], LABELS_MAGIC)
        if len(images) != len(labels):
            raise UsageError(f"{paths[f'{split}_images']} holds {len(images)} images but "
                             f"{paths[f'{split}_labels']} holds {len(labels)} labels")
        if labels.size and labels.max() >= len(class_names):
            raise UsageError(f"{paths[f'{split}_labels']} holds label {labels.max()}, outside "
                             f"0..{len(class_names) - 1}: corrupted")
        splits.append((torch.from_numpy(images).unsqueeze(1),
                       torch.from_numpy(labels).long()))
    if splits[0][0].shape[2:] != splits[1][0].shape[2:]:  # a model would train at one size, test at another
        (height, width), (test_height, test_width) = splits[0][0].shape[2:], splits[1][0].shape[2:]
        raise UsageError(f"{paths['train_images']} holds {height}x{width} images but {paths['test_images']} "
                         f"{test_height}x{test_width}: both splits of {name} must be of one size")
    return make_dataset(name, splits[0], splits[1], len(class_names), class_names, str(folder))


@register_dataset("mnist")
@keyword_only
def load_mnist(data_dir: Optional[PathLike] = None, *, download: bool = False,
               progress: bool = True) -> ImageDataset:
    """MNIST handwritten digits: 60,000 train / 10,000 test, 1x28x28, 10 classes."""
    return load_idx_dataset("mnist", layout=idx_layout("MNIST", "mnist"),
                            resources=idx_resources(MNIST_URLS, MNIST_MD5), class_names=DIGIT_CLASSES,
                            data_dir=data_dir, download=download, progress=progress)


@register_dataset("fashion-mnist")
@keyword_only
def load_fashion_mnist(data_dir: Optional[PathLike] = None, *, download: bool = False,
                       progress: bool = True) -> ImageDataset:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test, 1x28x28, 10 classes."""
    return load_idx_dataset("fashion-mnist", layout=idx_layout("FashionMNIST", "fashion-mnist"),
                            resources=idx_resources(FASHION_MNIST_URLS, FASHION_MNIST_MD5),
                            class_names=FASHION_MNIST_CLASSES, data_dir=data_dir, download=download,
                            progress=progress, extra_help="On Debian/Ubuntu: apt-get install dataset-fashion-mnist")
