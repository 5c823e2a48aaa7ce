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


def _cifar10_folder_in_the_cwd(tmp_path, monkeypatch):
    """A folder of images named cifar10/ in the working directory, where no CIFAR-10 files are."""
    from test_data_image_folder import write_split

    write_split(tmp_path / "cifar10", "train", per_class=2)
    write_split(tmp_path / "cifar10", "val", per_class=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")


def test_a_registered_name_wins_over_a_folder_of_that_name_unless_written_as_a_path(tmp_path, monkeypatch):
    from pathlib import Path

    from coreaug.data import is_folder_dataset

    _cifar10_folder_in_the_cwd(tmp_path, monkeypatch)
    (tmp_path / "pets").mkdir()
    assert not is_folder_dataset("cifar10") and not is_folder_dataset("CIFAR10")
    assert is_folder_dataset("./cifar10") and is_folder_dataset(str(tmp_path / "cifar10"))
    assert is_folder_dataset(Path("cifar10")) and is_folder_dataset("~/cifar10")
    assert is_folder_dataset("pets")  # a folder under a name nothing is registered as
    assert not is_folder_dataset("./missing") and not is_folder_dataset("synthetic") and not is_folder_dataset(None)


def test_loading_and_training_follow_the_one_rule_with_a_cifar10_folder_in_the_cwd(tmp_path, monkeypatch):
    import coreaug

    _cifar10_folder_in_the_cwd(tmp_path, monkeypatch)
    with pytest.raises(FileNotFoundError, match="dataset 'cifar10' not found"):
        load_dataset("cifar10")
    folder = load_dataset("./cifar10", progress=False, cache_dir=str(tmp_path / "cache"))
    assert folder.class_names == ["cat", "dog", "fox"] and len(folder.train_labels) == 6
    with pytest.raises(ValueError, match="stream 'always' reads a folder of images"):
        coreaug.TrainConfig(dataset="cifar10", stream="always").resolved()
    config = coreaug.TrainConfig(dataset="./cifar10", stream="always").resolved()
    assert config.image_size == 30  # the folder's images' own size
    assert coreaug.TrainConfig(dataset="cifar10").resolved().image_size != 30


@pytest.mark.parametrize("spelled", ["data/typo", "./typo", ".typo", "~/coreaug-no-such-folder/typo", "{tmp}/typo"])
def test_a_dataset_written_as_a_path_that_names_no_folder_is_a_missing_folder_not_an_unknown_name(
        tmp_path, monkeypatch, spelled):
    import os
    from pathlib import Path

    import coreaug

    monkeypatch.chdir(tmp_path)
    spelled = spelled.format(tmp=tmp_path)
    where = os.path.abspath(os.path.expanduser(spelled))
    for load in (lambda: load_dataset(spelled), lambda: coreaug.TrainConfig(dataset=spelled).resolved(),
                 lambda: coreaug.TrainConfig(dataset=spelled, image_size=32).resolved()):
        with pytest.raises(FileNotFoundError, match="does not exist") as error:
            load()
        assert where in str(error.value) and "unknown dataset" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(Path(spelled))


def test_a_name_that_is_not_a_path_is_still_an_unknown_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'typo'; choose one of"):
        load_dataset("typo")
