"""Round 14: what the left-alone lists of earlier stops held, each pinned by a test that fails
without its fix."""
import os

from coreaug.data import image_folder, load_dataset


def _folder(root, count, names="xy"):
    from PIL import Image

    for label, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            Image.new("RGB", (8, 8), (40 + 150 * label, 9 * k, 90)).save(folder / f"{k}.png")
    return root


def test_a_link_that_loops_is_counted_as_gone_not_an_oserror(tmp_path, capsys):
    """A link to itself (``ln -s loop loop``) among the class folders, inside one, or named like an
    image beside them, was an OSError traceback ("Too many levels of symbolic links") from the
    listing; it is a link that leads nowhere, counted with the links to nothing."""
    root = _folder(tmp_path / "pets", 4)
    os.symlink("loop", root / "loop")
    os.symlink("inner", root / "x" / "inner")
    os.symlink("self.png", root / "self.png")
    assert image_folder.listed_folders(str(root)) == ["x", "y"]
    assert len(image_folder.images_under(str(root / "x"))) == 4
    data = load_dataset(str(root), image_size=8, cache_dir=str(tmp_path / "cache"), workers=0)
    assert len(data.train_labels) + len(data.test_labels) == 8 and data.num_classes == 2
    out = capsys.readouterr().out
    assert f"left out 3 links to files or folders that are gone (first: {root / 'loop'} -> loop)" in out
    assert f"left out 1 image file beside the class folders (first: {root / 'self.png'})" in out


def test_a_train_limit_that_draws_one_class_is_refused_before_training(tmp_path):
    """A registered dataset or a folder of one class is refused, but a --train-limit drawing one
    class trained on (100% accuracy with nothing to tell apart)."""
    import pytest

    import coreaug
    from coreaug.errors import UsageError

    root = _folder(tmp_path / "pets", 6)
    config = dict(dataset=str(root), model="cnn", epochs=1, batch_size=4, image_size=8, quiet=True,
                  cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=r"--train-limit 1 drew training examples of one class only \([xy]\) from "
                                         r"\d+; a classifier needs two classes or more: raise the limit"):
        coreaug.train(coreaug.TrainConfig(train_limit=1, **config))
    assert len(coreaug.train(coreaug.TrainConfig(train_limit=8, **config)).history) == 1
