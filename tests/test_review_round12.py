"""Round 12 of review: what it found, each pinned by a test that fails without its fix."""
import coreaug
from coreaug.data import image_folder


def _folder(root, splits):
    from PIL import Image

    for split, count in splits:
        for label, name in enumerate("xy"):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                Image.new("RGB", (8, 8), (40 + 150 * label, 9 * k, 90)).save(folder / f"{k}.png")
    return root


def test_evaluating_a_run_on_its_own_unchanged_folder_lists_the_folder_once(tmp_path, monkeypatch):
    """The check that the folder's files are the run's, then the cache lookup, each walked the whole
    folder (one more listing of ImageNet's 1.28 M files on every evaluate)."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    listed = []
    real = image_folder._listed_files
    monkeypatch.setattr(image_folder, "_listed_files", lambda *args: listed.append(args[0]) or real(*args))
    for name, splits in (("split", [("train", 6), ("val", 3)]), ("whole", [("", 12)])):
        root = _folder(tmp_path / name, splits)
        coreaug.train(coreaug.TrainConfig(dataset=str(root), model="cnn", epochs=1, batch_size=6, image_size=8,
                                          quiet=True, out=str(tmp_path / f"run-{name}")))
        run = coreaug.load_run(tmp_path / f"run-{name}")
        listed.clear()
        result = run.evaluate()
        assert result.total == (6 if name == "split" else 2) and result.scored == "test split"
        assert listed == [str(root.resolve())], name
        listed.clear()
        image_folder.folder_fingerprint(root)  # outside evaluate, every call lists the folder now
        image_folder.folder_fingerprint(root)
        assert len(listed) == 2
