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
