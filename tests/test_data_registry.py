"""load_dataset by name: the registry, its options, and the ImageDataset it returns."""
import pytest
import torch

from coreaug.data import (ImageDataset, locate, available_datasets, channel_stats, dataset_options,
                          load_dataset, register_dataset)


def test_available_datasets():
    assert available_datasets() == ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist",
                                    "svhn", "synthetic", "synthetic-cifar"]


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*cifar10.*synthetic"):
        load_dataset("imagenet")


def test_unknown_option_lists_the_dataset_options():
    with pytest.raises(ValueError, match="no option n_trian; its options: n_train, n_test"):
        load_dataset("synthetic", n_trian=10)
    with pytest.raises(ValueError, match="its options: none"):
        load_dataset("cifar10", seed=1)


def test_names_are_case_insensitive_and_underscore_means_dash(tmp_path, monkeypatch):
    assert load_dataset("Synthetic", n_train=10, n_test=10).name == "synthetic"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")
    with pytest.raises(FileNotFoundError, match="dataset 'fashion-mnist' not found"):
        load_dataset("Fashion_MNIST", tmp_path / "nowhere")


def test_dataset_options_are_the_loader_keywords():
    assert dataset_options("digits") == ["test_fraction", "seed"]
    assert dataset_options("cifar10") == []


def test_register_dataset_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("mnist")(lambda data_dir, download, progress: None)


def test_image_dataset_reports_its_shape():
    data = load_dataset("synthetic", n_train=10, n_test=5, channels=1, size=8)
    assert isinstance(data, ImageDataset)
    assert data.image_shape == (1, 8, 8) and data.in_channels == 1
    assert "train=10" in repr(data) and "test=5" in repr(data)


def test_channel_stats_equal_the_float_computation():
    images = torch.randint(0, 256, (20, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(images)
    pixels = images.double() / 255
    assert mean == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist())
    assert std == pytest.approx(pixels.std(dim=(0, 2, 3), unbiased=False).tolist())
