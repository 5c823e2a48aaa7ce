"""Where dataset files are looked for: data_dir alone when given, else $COREAUG_DATA, ~/.cache/coreaug,
/usr/share/datasets/<name>, and the error that lists them all."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from coreaug.data import DatasetNotFoundError, load_dataset, locate, search_roots
from coreaug.errors import UsageError


@pytest.fixture
def system_dir(tmp_path, monkeypatch):
    """Home, $COREAUG_DATA and the system data folder all point into tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path / "system"


def write_mnist(folder: Path, n_train: int) -> None:
    """Gzipped IDX files with ``n_train`` train and 2 test examples (black images, labels 0 and 1 in turn)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, shape, magic in (("train-images-idx3-ubyte", (n_train, 28, 28), 2051),
                               ("train-labels-idx1-ubyte", (n_train,), 2049),
                               ("t10k-images-idx3-ubyte", (2, 28, 28), 2051),
                               ("t10k-labels-idx1-ubyte", (2,), 2049)):
        header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
        values = np.arange(shape[0], dtype=np.uint8) % 2 if len(shape) == 1 else np.zeros(shape, np.uint8)
        content = header + values.tobytes()
        (folder / f"{stem}.gz").write_bytes(gzip.compress(content))


def test_search_order_is_env_home_cache_system(tmp_path, system_dir, monkeypatch):
    monkeypatch.setenv("COREAUG_DATA", str(tmp_path / "env"))
    assert search_roots("mnist") == [tmp_path / "env", tmp_path / "home" / ".cache" / "coreaug", system_dir / "mnist"]


def test_a_data_dir_given_is_the_only_folder_searched(tmp_path, system_dir, monkeypatch):
    monkeypatch.setenv("COREAUG_DATA", str(tmp_path / "env"))
    assert search_roots("mnist", tmp_path / "given") == [tmp_path / "given"]


@pytest.mark.parametrize("given", ["typo", "incomplete"])
def test_a_data_dir_without_the_dataset_is_one_line_not_a_fallback(tmp_path, system_dir, monkeypatch, given):
    """A typo'd or incomplete data_dir does not silently read another copy (that of $COREAUG_DATA)."""
    write_mnist(tmp_path / "env", n_train=2)
    monkeypatch.setenv("COREAUG_DATA", str(tmp_path / "env"))
    write_mnist(tmp_path / "incomplete", n_train=1)
    (tmp_path / "incomplete" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(locate.DataDirLacksDataset) as caught:
        load_dataset("mnist", tmp_path / given)
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, UsageError) and isinstance(caught.value, FileNotFoundError)
    assert f"{tmp_path / given}" in message and "train-images-idx3-ubyte.gz" in message
    assert ("(no such folder)" in message) == (given == "typo")
    assert ("incomplete: lacks t10k-labels-idx1-ubyte.gz" in message) == (given == "incomplete")


def test_coreaug_data_environment_variable_is_searched(tmp_path, system_dir, monkeypatch):
    write_mnist(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("COREAUG_DATA", str(tmp_path / "env"))
    data = load_dataset("mnist")
    assert data.source == str(tmp_path / "env" / "mnist") and len(data.train_labels) == 3


def test_home_cache_is_searched(tmp_path, system_dir):
    write_mnist(tmp_path / "home" / ".cache" / "coreaug" / "MNIST" / "raw", n_train=4)
    assert len(load_dataset("mnist").train_labels) == 4


def test_system_dataset_folder_is_searched(system_dir):
    write_mnist(system_dir / "fashion-mnist", n_train=5)
    data = load_dataset("fashion-mnist")
    assert data.source == str(system_dir / "fashion-mnist") and len(data.train_labels) == 5


def test_data_dir_wins_over_environment_and_cache(tmp_path, system_dir, monkeypatch):
    write_mnist(tmp_path / "given", n_train=2)
    write_mnist(tmp_path / "env", n_train=3)
    write_mnist(tmp_path / "home" / ".cache" / "coreaug" / "mnist", n_train=4)
    monkeypatch.setenv("COREAUG_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", tmp_path / "given").train_labels) == 2
    assert len(load_dataset("mnist").train_labels) == 3


def test_not_found_error_lists_every_place_and_how_to_get_it(tmp_path, system_dir, monkeypatch):
    monkeypatch.setenv("COREAUG_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("mnist")
    message = str(caught.value)
    for place in (tmp_path / "env" / "MNIST" / "raw", tmp_path / "env" / "mnist", tmp_path / "env",
                  tmp_path / "home" / ".cache" / "coreaug", system_dir / "mnist"):
        assert f"  {place}\n" in message or f"  {place}.\n" in message  # the last one ends the list
    assert "train-images-idx3-ubyte.gz" in message
    assert "download=True" in message and "--download" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message


def test_dataset_not_found_is_a_file_not_found_error():
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "mnist", "fashion-mnist"])
def test_every_file_dataset_reports_missing_files(tmp_path, system_dir, name):
    with pytest.raises(DatasetNotFoundError, match=f"dataset '{name}' not found"):
        load_dataset(name, tmp_path)
