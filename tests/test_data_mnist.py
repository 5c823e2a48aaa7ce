"""MNIST / Fashion-MNIST: IDX files (gzipped or raw) written by the tests, and the real
Fashion-MNIST from Debian's package where it is installed."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from coreaug.data import DatasetNotFoundError, load_dataset, locate
from coreaug.data.mnist import FASHION_MNIST_CLASSES

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Only folders under tmp_path are searched: no real data can satisfy a lookup."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train=6, n_test=4, gzipped=True, seed=0):
    """Write the four IDX files; return the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 28, 28)), 2051),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, n_train), 2049),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, 28, 28)), 2051),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, n_test), 2049),
    }
    for stem, (array, magic) in arrays.items():
        content = idx_bytes(array, magic)
        if gzipped:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return {stem: array for stem, (array, _) in arrays.items()}


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_files_load_exactly(tmp_path, gzipped):
    written = write_idx_dataset(tmp_path / "fashion-mnist", gzipped=gzipped)
    data = load_dataset("fashion-mnist", tmp_path)
    assert data.train_images.shape == (6, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.train_labels.dtype == torch.int64
    assert np.array_equal(data.train_images[:, 0].numpy(), written["train-images-idx3-ubyte"])
    assert np.array_equal(data.train_labels.numpy(), written["train-labels-idx1-ubyte"])
    assert np.array_equal(data.test_images[:, 0].numpy(), written["t10k-images-idx3-ubyte"])
    assert np.array_equal(data.test_labels.numpy(), written["t10k-labels-idx1-ubyte"])
    assert data.num_classes == 10 and data.class_names == FASHION_MNIST_CLASSES
    assert data.source == str(tmp_path / "fashion-mnist")


@pytest.mark.parametrize("name, subfolder", [("fashion-mnist", "FashionMNIST/raw"),
                                             ("mnist", "MNIST/raw"), ("mnist", "mnist")])
def test_torchvision_and_dataset_named_subfolders_are_found(tmp_path, name, subfolder):
    write_idx_dataset(tmp_path / subfolder)
    assert load_dataset(name, tmp_path).source == str(tmp_path / subfolder)


def test_data_dir_may_be_the_folder_holding_the_files(tmp_path):
    write_idx_dataset(tmp_path / "anywhere")
    assert load_dataset("mnist", tmp_path / "anywhere").source == str(tmp_path / "anywhere")


def test_mean_and_std_are_computed_from_train_images(tmp_path):
    written = write_idx_dataset(tmp_path)
    pixels = written["train-images-idx3-ubyte"] / 255.0
    data = load_dataset("mnist", tmp_path)
    assert data.mean == pytest.approx((pixels.mean(),))
    assert data.std == pytest.approx((pixels.std(),))


def test_wrong_magic_number_names_the_file(tmp_path):
    write_idx_dataset(tmp_path, gzipped=False)
    # A label file where the image file should be.
    labels = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(labels)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte has IDX magic number 2049"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gzipped", [True, False])
def test_truncated_file_names_the_file(tmp_path, gzipped):
    write_idx_dataset(tmp_path, gzipped=gzipped)
    path = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gzipped else ""))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) - 100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*(damaged|truncated)"):
        load_dataset("mnist", tmp_path)


def test_file_longer_than_its_header_declares_is_rejected(tmp_path):
    write_idx_dataset(tmp_path, gzipped=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte declares shape"):
        load_dataset("mnist", tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx_dataset(tmp_path, gzipped=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5), 2049))
    with pytest.raises(ValueError, match="6 images but .* 5 labels"):
        load_dataset("mnist", tmp_path)


def test_missing_fashion_mnist_suggests_the_debian_package(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian_package_loads():
    data = load_dataset("fashion-mnist", DEBIAN_FASHION_MNIST)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(data.train_labels), torch.full((10,), 6000))
    # The published statistics of Fashion-MNIST.
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert data.std[0] == pytest.approx(0.3530, abs=1e-4)


def test_train_and_test_images_of_different_sizes_are_one_error_naming_both_files(tmp_path):
    write_idx_dataset(tmp_path, gzipped=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((6, 32, 32)), 2051))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds 32x32 images but .*t10k-images-idx3-ubyte "
                                         r"28x28"):
        load_dataset("mnist", tmp_path)
