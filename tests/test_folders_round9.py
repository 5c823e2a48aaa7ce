"""Folders of images in the forms users give them: splits spelt otherwise, links shared by two classes, a class
named train, a val/ of one class, Unicode forms, formats not read, large photos, and options of the wrong kind."""
import os
import shutil
import unicodedata

import numpy as np
import pytest
from PIL import Image

import coreaug
from coreaug.data.image_folder import folder_fingerprint, image_size_note, load_image_folder
from coreaug.errors import UsageError
from coreaug.models import create_model
from coreaug.training.trained import TrainedModel


def write_png(path, value=100, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def write_split(root, train="train", val="val", classes=("a", "b"), per_class=3):
    for c in classes:
        for i in range(per_class):
            write_png(root / train / c / f"{i}.png", 40 * i)
        write_png(root / val / c / "0.png")


def load(root, **options):
    return load_image_folder(root, progress=False, workers=0, cache_dir=str(root.parent / "cache"), **options)


def refusal(root):
    """The one-line UsageError that listing `root` gives (nothing is decoded)."""
    with pytest.raises(UsageError) as error:
        folder_fingerprint(root)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_splits_spelt_otherwise_are_refused_not_trained_as_two_classes(tmp_path):
    write_split(tmp_path / "caps", "Train", "Val")
    write_split(tmp_path / "long", "training", "validation")
    assert "holds Train/ and Val/, named like the splits of a train/val layout" in refusal(tmp_path / "caps")
    assert "holds training/ and validation/" in refusal(tmp_path / "long")
    write_split(tmp_path / "mixed", "train", "Val")  # train/ is read: the Val/ beside it is named
    assert "no val/ or test/ folder (Val/ is not read: name it val/)" in refusal(tmp_path / "mixed")
    # a folder wrapping a whole dataset (as unzipping leaves it), alone or beside another
    write_split(tmp_path / "zipped" / "split")
    wrapped = tmp_path / "zipped" / "split"
    assert f"{wrapped} holds train/ and val/: a dataset of its own" in refusal(tmp_path / "zipped")
    write_split(tmp_path / "two" / "split")
    write_split(tmp_path / "two" / "split_copy")
    assert "--dataset " + str(tmp_path / "two" / "split") in refusal(tmp_path / "two")
    # a class's own train/ and test/ folders of images are a class, as before
    for c in ("cat", "dog"):
        for split in ("train", "test"):
            write_png(tmp_path / "own" / c / split / "0.png")
    assert len(load(tmp_path / "own").class_names) == 2


def test_a_class_named_train_among_class_folders_is_named_in_the_message(tmp_path):
    for c in ("bus", "car", "train"):
        for i in range(2):
            write_png(tmp_path / "voc" / c / f"{i}.png")
    message = refusal(tmp_path / "voc")
    assert "train holds images but no class folders" in message and "a class named train" in message


def test_a_val_folder_of_one_class_is_read_as_that_class(tmp_path):
    write_split(tmp_path / "s3", classes=("a", "b", "c"))
    shutil.rmtree(tmp_path / "s3" / "val" / "a")
    shutil.rmtree(tmp_path / "s3" / "val" / "c")
    data = load(tmp_path / "s3")
    assert data.class_names == ["a", "b", "c"] and data.test_labels.tolist() == [1]


def test_a_folder_reached_from_two_class_folders_is_refused_naming_both(tmp_path):
    for c in ("a", "b"):
        for i in range(3):
            write_png(tmp_path / "dup" / c / f"{i}.png", 40 * i)
    os.symlink(tmp_path / "dup" / "b", tmp_path / "dup" / "a" / "more")
    message = refusal(tmp_path / "dup")
    assert f"{tmp_path / 'dup' / 'b'} and {tmp_path / 'dup' / 'a' / 'more'} are one folder (through a link)" in message
    write_split(tmp_path / "lv")  # val/ a link to train/: the test split would be the training split
    shutil.rmtree(tmp_path / "lv" / "val")
    os.symlink(tmp_path / "lv" / "train", tmp_path / "lv" / "val")
    assert f"{tmp_path / 'lv' / 'val' / 'a'} and {tmp_path / 'lv' / 'train' / 'a'} are one folder" \
        in refusal(tmp_path / "lv")
    os.unlink(tmp_path / "dup" / "a" / "more")  # a link within one class is read once, as before
    os.symlink(tmp_path / "dup" / "a", tmp_path / "dup" / "a" / "again")
    assert load(tmp_path / "dup").train_labels.tolist().count(0) == 2


def test_val_class_folders_match_the_training_ones_in_either_unicode_form(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "été"), unicodedata.normalize("NFD", "été")
    for c in ("b", nfc):
        for i in range(2):
            write_png(tmp_path / "nfd" / "train" / c / f"{i}.png")
    write_png(tmp_path / "nfd" / "val" / "b" / "0.png")
    write_png(tmp_path / "nfd" / "val" / nfd / "0.png", 7)  # as macOS's zip writes it
    data = load(tmp_path / "nfd")
    assert data.class_names == ["b", nfc] and data.test_labels.tolist() == [0, 1]


def test_files_of_image_formats_not_read_are_counted_in_the_listing(tmp_path, capsys):
    write_split(tmp_path / "phone")
    for name in ("x.HEIC", "y.heic", "z.avif", "notes.txt", "Thumbs.db"):
        (tmp_path / "phone" / "train" / "a" / name).write_bytes(b"")
    before = folder_fingerprint(tmp_path / "phone")
    with pytest.warns(UserWarning, match=r"left out 3 files of image formats not read \(.heic, .avif\)"):
        load_image_folder(tmp_path / "phone", workers=0, cache_dir=str(tmp_path / "cache"))
    assert folder_fingerprint(tmp_path / "phone") == before  # what is read is unchanged


def test_a_large_own_size_suggests_image_size(tmp_path):
    for c in ("a", "b"):
        write_png(tmp_path / "photos" / c / "0.png", size=(600, 700))
        write_png(tmp_path / "small" / c / "0.png", size=(500, 520))
    assert "--image-size 224, say, trains and stores them smaller" in image_size_note(tmp_path / "photos", 600)
    assert image_size_note(tmp_path / "small", 500) == "the images' own size"


@pytest.mark.parametrize("options, message", [
    (dict(skip_bad_images="no"), "skip_bad_images must be True or False, got 'no'"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(seed=1.5), "seed must be an integer >= 0, got 1.5"),
])
def test_folder_options_of_the_wrong_kind_are_one_line_errors(tmp_path, options, message):
    write_split(tmp_path / "data")
    with pytest.raises(UsageError, match=message):
        load(tmp_path / "data", **options)
    trained = TrainedModel(create_model("cnn", 3, 2), ["a", "b"], 8, 3, (0.5,) * 3, (0.25,) * 3, {"dataset": "x"})
    if "skip_bad_images" in options:  # evaluate's too
        with pytest.raises(UsageError, match="skip_bad_images must be True, False or None, got 'no'"):
            trained.evaluate(str(tmp_path / "data"), skip_bad_images="no")


def test_train_refuses_data_dir_and_download_with_a_folder_and_a_data_dir_of_images(tmp_path):
    write_split(tmp_path / "pets")
    folder = str(tmp_path / "pets")
    for options, flags in ((dict(data_dir=str(tmp_path)), "data_dir applies"),
                           (dict(download=True), "download applies"),
                           (dict(data_dir=str(tmp_path), download=True), "data_dir and download apply")):
        with pytest.raises(UsageError, match=f"{flags} to a built-in dataset; .* is a folder of images"):
            coreaug.TrainConfig(dataset=folder, **options).resolved()
    with pytest.raises(UsageError) as error:  # "my data" as --data-dir, with the default cifar10
        coreaug.TrainConfig(data_dir=folder).resolved()
    assert "holds class folders of images, not the files of cifar10 (the default dataset)" \
        in str(error.value) and f"--dataset {folder}" in str(error.value)
    coreaug.TrainConfig(data_dir=folder, download=True).resolved()  # the files are asked for there
    shared = tmp_path / "data"  # a data folder shared with one folder of images, cifar10 not there yet
    (shared / "my-photos").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(shared / "my-photos" / "a.png")
    (shared / "notes").mkdir()
    coreaug.TrainConfig(data_dir=str(shared)).resolved()
