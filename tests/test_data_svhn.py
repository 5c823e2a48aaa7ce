"""SVHN: .mat files in the real layout (X of shape (32, 32, 3, N), y of shape (N, 1))."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from coreaug.data import load_dataset, locate


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Only folders under tmp_path are searched: no real data can satisfy a lookup."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")


def write_svhn_mat(path: Path, labels, seed=0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, (32, 32, 3, len(labels)), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": images, "y": np.array(labels, np.uint8).reshape(-1, 1)})
    return images


def write_svhn(folder: Path):
    train = write_svhn_mat(folder / "train_32x32.mat", [1, 10, 3, 10, 9], seed=0)
    test = write_svhn_mat(folder / "test_32x32.mat", [10, 2, 5], seed=1)
    return train, test


def test_svhn_loads_exactly_with_label_10_meaning_digit_0(tmp_path):
    train, test = write_svhn(tmp_path / "svhn")
    data = load_dataset("svhn", tmp_path)
    assert data.train_images.shape == (5, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.train_labels.tolist() == [1, 0, 3, 0, 9]
    assert data.test_labels.tolist() == [0, 2, 5] and data.test_labels.dtype == torch.int64
    assert np.array_equal(data.train_images.numpy(), train.transpose(3, 2, 0, 1))
    assert np.array_equal(data.test_images.numpy(), test.transpose(3, 2, 0, 1))
    # Spot check of the axis order: X[row, column, channel, example].
    assert data.train_images[4, 2, 5, 7] == train[5, 7, 2, 4]
    assert data.class_names == [str(d) for d in range(10)]


@pytest.mark.parametrize("subfolder", ["svhn", "SVHN", ""])
def test_svhn_files_are_found_in_subfolder_or_root(tmp_path, subfolder):
    write_svhn(tmp_path / subfolder)
    assert load_dataset("svhn", tmp_path).source == str(tmp_path / subfolder)


def test_truncated_mat_file_names_the_file(tmp_path):
    write_svhn(tmp_path)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="test_32x32.mat is not a readable .mat file"):
        load_dataset("svhn", tmp_path)


def test_wrong_image_shape_names_the_file(tmp_path):
    write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "train_32x32.mat",
                     {"X": np.zeros((3, 32, 32, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(ValueError, match=r"train_32x32.mat: X has shape \(3, 32, 32, 2\)"):
        load_dataset("svhn", tmp_path)


def test_label_zero_is_not_an_svhn_label(tmp_path):
    write_svhn(tmp_path)
    write_svhn_mat(tmp_path / "train_32x32.mat", [0, 1])
    with pytest.raises(ValueError, match="train_32x32.mat holds labels outside 1..10"):
        load_dataset("svhn", tmp_path)


def test_svhn_labels_that_are_not_whole_numbers_are_rejected_naming_the_file(tmp_path):
    write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "train_32x32.mat",
                     {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.5], [2.0]])})
    with pytest.raises(ValueError, match="train_32x32.mat holds labels that are not whole numbers"):
        load_dataset("svhn", tmp_path)


def test_svhn_labels_stored_as_doubles_load_as_digits(tmp_path):
    write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "train_32x32.mat",
                     {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10.0], [2.0]])})
    assert load_dataset("svhn", tmp_path).train_labels.tolist() == [0, 2]
