"""Folders of images at their edges: odd image shapes and depths, linked and empty folders,
TinyImageNet annotations, and a built-in dataset's files given as a folder."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from coreaug.data import load_dataset
from coreaug.data.image_folder import decode_square, load_image_folder, own_image_size
from coreaug.errors import UsageError

from test_data_image_folder import COLOURS, write_image, write_split


def test_a_long_thin_image_is_resized_no_larger_than_its_square(tmp_path, monkeypatch):
    """A 5000 x 1 banner was resized whole to 320000 x 64 (a GB at 224 px) before its crop."""
    Image.new("RGB", (5000, 1), (255, 0, 0)).save(tmp_path / "banner.png")
    sizes, resize = [], Image.Image.resize

    def recorded(self, size, *args, **kwargs):
        sizes.append(size)
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recorded)
    square = decode_square(tmp_path / "banner.png", 64)
    assert square.shape == (64, 64, 3) and (square == [255, 0, 0]).all()
    assert sizes and all(width <= 64 and height <= 64 for width, height in sizes)


@pytest.mark.parametrize("shape", [(50, 37), (37, 50), (640, 480), (9, 300), (64, 64)])
def test_the_square_is_the_centre_crop_of_the_whole_image_resized(tmp_path, shape):
    """Cropping first keeps the pixels of resizing the whole image and then cropping (up to a level
    of floating-point rounding in the filter's positions)."""
    pixels = np.random.default_rng(0).integers(0, 256, (shape[1], shape[0], 3), dtype=np.uint8)
    image, size = Image.fromarray(pixels), 32
    scale = size / min(shape)
    resized = image.resize((max(size, round(shape[0] * scale)), max(size, round(shape[1] * scale))), Image.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    expected = np.asarray(resized.crop((left, top, left + size, top + size))).astype(int)
    assert np.abs(decode_square(image, size).astype(int) - expected).max() <= 1


def test_the_default_size_reads_the_images_of_linked_class_folders(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            write_image(tmp_path / "real" / c / f"{i}.png", COLOURS[c], size=(32, 32), seed=i)
        (tmp_path / "linked").mkdir(exist_ok=True)
        os.symlink(tmp_path / "real" / c, tmp_path / "linked" / c)
    assert own_image_size(tmp_path / "linked") == 32


def tiny_imagenet(root, annotations):
    for c in ("cat", "dog"):
        for i in range(2):
            write_image(root / "train" / c / "images" / f"{c}_{i}.JPEG", COLOURS[c], seed=i)
    for j in range(2):
        write_image(root / "val" / "images" / f"val_{j}.JPEG", COLOURS["dog"], seed=j)
    (root / "val" / "val_annotations.txt").write_bytes(annotations)


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_a_two_column_val_annotations_file_labels_the_images(tmp_path, line_end):
    tiny_imagenet(tmp_path, b"val_0.JPEG\tdog" + line_end + b"val_1.JPEG\tcat" + line_end)
    assert load_image_folder(tmp_path, image_size=8, progress=False).test_labels.tolist() == [1, 0]


def test_an_empty_val_annotations_file_is_named_before_any_image_is_decoded(tmp_path, monkeypatch):
    tiny_imagenet(tmp_path, b"")
    monkeypatch.setattr("coreaug.data.image_folder.open_or_build", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(UsageError, match=r"val_annotations.txt lists no images"):
        load_image_folder(tmp_path, image_size=8, progress=False)


def test_an_empty_class_folder_under_val_is_named_as_one_under_train_is(tmp_path, monkeypatch):
    write_split(tmp_path, "train", per_class=2)
    write_split(tmp_path, "val", per_class=1)
    for image in (tmp_path / "val" / "dog").iterdir():
        image.unlink()
    monkeypatch.setattr("coreaug.data.image_folder.open_or_build", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(UsageError, match=r"class folder .*val/dog holds no images"):
        load_image_folder(tmp_path, image_size=8, progress=False)


@pytest.mark.parametrize("pixels, kind", [(np.linspace(0, 1, 600, dtype=np.float32), "floating-point"),
                                          (np.arange(600, dtype=np.int32) % 256, "32-bit integer")])
def test_32_bit_and_float_images_are_refused_not_turned_black(tmp_path, pixels, kind):
    Image.fromarray(pixels.reshape(20, 30)).save(tmp_path / "scan.tif")
    with pytest.raises(ValueError, match=f"{kind} pixels"):
        decode_square(tmp_path / "scan.tif", 8)


def test_a_16_bit_image_still_keeps_its_top_8_bits(tmp_path):
    Image.fromarray(np.full((20, 30), 0x8000, np.uint16)).save(tmp_path / "deep.png")
    assert (decode_square(tmp_path / "deep.png", 8) == 0x80).all()


def test_palette_images_with_transparency_decode_without_a_warning_each(tmp_path):
    path = tmp_path / "icon.png"
    Image.new("RGB", (20, 20), (10, 200, 30)).convert("P").save(path, transparency=bytes([0] * 10 + [255] * 246))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        square = decode_square(path, 8)
    assert not [w for w in caught if "Palette" in str(w.message)] and square.shape == (8, 8, 3)


def test_skip_bad_images_emptying_a_class_is_an_error_naming_it(tmp_path):
    write_split(tmp_path, "train", per_class=2)
    write_split(tmp_path, "val", per_class=1)
    for image in (tmp_path / "train" / "fox").iterdir():
        image.write_bytes(b"not an image")
    with pytest.raises(UsageError, match=r"left class fox with no readable training image"):
        load_image_folder(tmp_path, image_size=8, progress=False, skip_bad_images=True)


def test_a_built_in_datasets_folder_given_as_a_folder_hints_at_the_name(tmp_path):
    from test_data_cifar import write_cifar10

    write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    for given in (tmp_path / "data", tmp_path / "data" / "cifar-10-batches-py"):
        with pytest.raises(UsageError, match=f"use --dataset cifar10 --data-dir {given}$"):
            load_dataset(str(given))


def test_a_split_every_image_of_which_was_skipped_names_the_count_and_the_first(tmp_path):
    """It said only "the test split has no readable images", naming no file."""
    write_split(tmp_path, "train", per_class=2)
    write_split(tmp_path, "val", per_class=1)
    for image in (tmp_path / "val").rglob("*.*"):
        image.write_bytes(b"not an image")
    with pytest.raises(UsageError, match=r"test split has no readable images: --skip-bad-images left out all \d+ "
                                         r"of them \(the first: .*val.*\)"):
        load_image_folder(tmp_path, image_size=8, progress=False, skip_bad_images=True)
