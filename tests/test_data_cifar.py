"""CIFAR-10 / CIFAR-100: pickle batches in the real format, written by the tests."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from coreaug.data import DatasetNotFoundError, load_dataset, locate

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Only folders under tmp_path are searched: no real data can satisfy a lookup."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")


def dump(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar10(folder: Path, per_batch=3, seed=0):
    """Five train batches, a test batch and batches.meta; returns (train data, labels, test data,
    labels) as written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(0, 10, per_batch)]
        dump(folder / name, {b"batch_label": name.encode(), b"data": data, b"labels": labels})
        batches.append((data, labels))
    dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                   b"num_vis": 3072})
    train_data = np.concatenate([data for data, _ in batches[:5]])
    train_labels = sum((labels for _, labels in batches[:5]), [])
    return train_data, train_labels, batches[5][0], batches[5][1]


def write_cifar100(folder: Path, n_train=7, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, count in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        fine = [int(label) for label in rng.integers(0, 100, count)]
        coarse = [label // 5 for label in fine]
        dump(folder / name, {b"data": data, b"fine_labels": fine, b"coarse_labels": coarse})
        written[name] = (data, fine)
    dump(folder / "meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                           b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
    return written


def test_cifar10_batches_load_exactly_in_batch_order(tmp_path):
    train_data, train_labels, test_data, test_labels = write_cifar10(
        tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", tmp_path)
    assert data.train_images.shape == (15, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (3, 3, 32, 32)
    assert np.array_equal(data.train_images.reshape(15, -1).numpy(), train_data)
    assert data.train_labels.tolist() == train_labels and data.train_labels.dtype == torch.int64
    assert np.array_equal(data.test_images.reshape(3, -1).numpy(), test_data)
    assert data.test_labels.tolist() == test_labels
    assert data.class_names == CIFAR10_NAMES and data.num_classes == 10


def test_cifar_rows_are_red_then_green_then_blue_planes(tmp_path):
    train_data, *_ = write_cifar10(tmp_path)
    image = load_dataset("cifar10", tmp_path).train_images[0]
    assert image[0, 0, 1] == train_data[0, 1]           # red, row 0, column 1
    assert image[1, 0, 0] == train_data[0, 1024]        # green plane starts at 1024
    assert image[2, 1, 0] == train_data[0, 2048 + 32]   # blue, row 1, column 0


@pytest.mark.parametrize("as_parent", [True, False])
def test_data_dir_may_be_the_parent_or_the_batches_folder(tmp_path, as_parent):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    data_dir = tmp_path if as_parent else tmp_path / "cifar-10-batches-py"
    assert load_dataset("cifar10", data_dir).source == str(tmp_path / "cifar-10-batches-py")


def test_cifar100_uses_fine_labels_and_names(tmp_path):
    written = write_cifar100(tmp_path / "cifar-100-python")
    data = load_dataset("cifar100", tmp_path)
    assert data.num_classes == 100 and data.class_names[7] == "class7"
    assert data.train_labels.tolist() == written["train"][1]
    assert data.test_labels.tolist() == written["test"][1]
    assert np.array_equal(data.train_images.reshape(7, -1).numpy(), written["train"][0])


def test_batches_with_str_keys_are_accepted(tmp_path):
    write_cifar100(tmp_path)
    batch = pickle.loads((tmp_path / "test").read_bytes())
    dump(tmp_path / "test", {key.decode(): value for key, value in batch.items()})
    assert len(load_dataset("cifar100", tmp_path).test_labels) == 5


def test_truncated_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="data_batch_3 is not a readable CIFAR batch"):
        load_dataset("cifar10", tmp_path)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar10(tmp_path)

    class RunsCode:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    dump(tmp_path / "test_batch", RunsCode())
    with pytest.raises(ValueError, match="test_batch .*refusing to load global"):
        load_dataset("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_wrong_data_shape_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    dump(tmp_path / "test_batch", {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(ValueError, match=r"test_batch: data has shape \(3, 100\)"):
        load_dataset("cifar10", tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path):
    write_cifar10(tmp_path)
    dump(tmp_path / "test_batch", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})
    with pytest.raises(ValueError, match="test_batch holds labels outside 0..9"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("labels", [["cat"], [1.5], [float("nan")]])
def test_labels_that_are_not_whole_numbers_are_rejected_naming_the_file(tmp_path, labels):
    """A string was a ValueError traceback from numpy, and 1.5 was taken as class 1."""
    write_cifar10(tmp_path)
    dump(tmp_path / "test_batch", {b"data": np.zeros((1, 3072), np.uint8), b"labels": labels})
    with pytest.raises(ValueError, match="test_batch holds labels that are not whole numbers"):
        load_dataset("cifar10", tmp_path)


def test_whole_float_labels_are_read_as_classes(tmp_path):
    write_cifar10(tmp_path)
    dump(tmp_path / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array([3.0, 9.0])})
    assert load_dataset("cifar10", tmp_path).test_labels.tolist() == [3, 9]


def test_incomplete_folder_is_reported_not_loaded(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="incomplete: lacks data_batch_4"):
        load_dataset("cifar10", tmp_path)
