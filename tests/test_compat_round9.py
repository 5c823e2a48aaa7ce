"""Runs, caches and grids left by coreaug 0.2, read after the upgrade: files of that form are made by
hand from a tiny run of today's (a model.pt without data_fingerprint, a config.json with the folder as
typed, a checkpoint.pt whose fingerprint hashed a link's paths, a cache meta.json naming a link)."""
import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import coreaug
from coreaug.data.cache_key import files_digest
from coreaug.data.image_cache import caches_in, clear_caches
from coreaug.data.image_folder import _find_files, folder_fingerprint
from coreaug.errors import UsageError
from coreaug.training.run_files import check_same_data, differences

CLASSES = ("c0", "c1", "c2")


def write_png(path, value, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 40, (8, 8, 3)) + value
    Image.fromarray(pixels.astype(np.uint8)).save(path, format="PNG")


def image_folder(root, per_class=6):
    for k, name in enumerate(CLASSES):
        for i in range(per_class):
            write_png(root / name / f"{i}.png", 80 * k, seed=10 * k + i)
    return root


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(image folder, run folder) of a one-epoch run of today's on a 3-class folder of 8 px images."""
    base = tmp_path_factory.mktemp("compat")
    root = image_folder(base / "imgs")
    coreaug.train(coreaug.TrainConfig(dataset=str(root), out=str(base / "runs" / "run"), image_size=8, model="cnn",
                                      epochs=1, batch_size=8, quiet=True, workers=0, strategy="random",
                                      cache_dir=str(base / "cache")))
    return root, base / "runs" / "run"


def as_older(run, dataset=None):
    """Rewrite the run folder `run` as coreaug 0.2 left it: model.pt without data_fingerprint, no "rng"
    in checkpoint.pt, and, given `dataset`, the folder recorded as that text in config.json and model.pt."""
    model = torch.load(run / "model.pt", weights_only=True)
    del model["data_fingerprint"]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    del checkpoint["rng"]
    if dataset is not None:
        model["config"]["dataset"] = checkpoint["config"]["dataset"] = dataset
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "dataset": dataset}))
    torch.save(model, run / "model.pt")
    torch.save(checkpoint, run / "checkpoint.pt")
    return checkpoint


def copy_run(finished, tmp_path):
    """A copy of the finished run and of its folder of images, under `tmp_path`."""
    root, run = finished
    shutil.copytree(root, tmp_path / "imgs")
    shutil.copytree(run, tmp_path / "runs" / "run")
    for name in ("model.pt", "checkpoint.pt"):  # the fingerprint of the copy's files
        state = torch.load(tmp_path / "runs" / "run" / name, weights_only=True)
        state["data_fingerprint"] = folder_fingerprint(tmp_path / "imgs")
        state["config"]["dataset"] = str(tmp_path / "imgs")
        torch.save(state, tmp_path / "runs" / "run" / name)
    return tmp_path / "imgs", tmp_path / "runs" / "run"


def test_an_older_runs_split_is_checked_from_its_checkpoint_and_a_folder_read_otherwise_is_named(finished, tmp_path,
                                                                                                monkeypatch):
    from coreaug.training.trained import TrainedModel

    monkeypatch.setattr(TrainedModel, "_kept_cache", lambda *args: None)  # the run's cache gone (kept: test_round18)
    root, run = copy_run(finished, tmp_path)
    checkpoint = as_older(run)
    own = coreaug.load_run(run).evaluate()
    assert own.scored == "test split"
    write_png(root / "c1" / "web.jfif", 80, seed=99)  # read since 0.3: the split drawn again differs
    config = SimpleNamespace(dataset=str(root), val_fraction=0.1)
    with pytest.raises(UsageError, match=r"older coreaug.* also reads 1 \.jfif/\.jpe/\.apng files.*[Mm]ove those out"):
        coreaug.load_run(run).evaluate()
    with pytest.raises(UsageError, match=r"older coreaug.* also reads 1 \.jfif.*--resume"):
        check_same_data(checkpoint, config)
    with pytest.raises(UsageError, match="changed .files added"):  # a checkpoint of today's: the user's files
        check_same_data({**checkpoint, "rng": {}}, config)
    (root / "c1" / "web.jfif").unlink()  # moved out, as the message says: the run's own split again
    assert coreaug.load_run(run).evaluate().correct == own.correct
    check_same_data(checkpoint, config)
    write_png(root / "c0" / "new.png", 0, seed=98)  # a file added: refused as for a run of today's
    with pytest.raises(UsageError, match=r"images in .*imgs changed .files added"):
        coreaug.load_run(run).evaluate()


def test_a_checkpoint_hashed_under_a_links_path_is_the_same_data(finished, tmp_path):
    root, _ = finished
    (tmp_path / "link").symlink_to(root)
    _, train, test = _find_files(str(root), 0.1, 0)[:3]
    as_typed = [[(str(tmp_path / "link" / os.path.relpath(p, root)), label) for p, label in files]
                for files in (train, test)]
    checkpoint = {"data_fingerprint": files_digest([("train", as_typed[0]), ("test", as_typed[1])]),
                  "config": {"dataset": str(tmp_path / "link")}}
    assert checkpoint["data_fingerprint"] != folder_fingerprint(root)
    check_same_data(checkpoint, SimpleNamespace(dataset=str(tmp_path / "link"), val_fraction=0.1))
    check_same_data(checkpoint, SimpleNamespace(dataset=str(root), val_fraction=0.1))  # its real path given now
    with pytest.raises(UsageError, match="changed"):
        check_same_data({**checkpoint, "data_fingerprint": "0" * 24, "rng": {}},
                        SimpleNamespace(dataset=str(tmp_path / "link"), val_fraction=0.1))


def test_a_cache_whose_meta_names_a_link_is_the_real_folders(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=2)
    (tmp_path / "link").symlink_to(root)
    coreaug.load_dataset(str(root), image_size=8, progress=False, cache_dir=str(tmp_path / "cache"))
    [cache] = caches_in(str(tmp_path / "cache"), str(root))
    meta = json.loads((tmp_path / "cache" / os.path.basename(cache.folder) / "meta.json").read_text())
    (tmp_path / "cache" / os.path.basename(cache.folder) / "meta.json").write_text(
        json.dumps({**meta, "source": str(tmp_path / "link")}))  # as coreaug 0.2 wrote it
    assert [c.folder for c in caches_in(str(tmp_path / "cache"), str(root))] == [cache.folder]
    assert clear_caches(str(tmp_path / "cache"), str(tmp_path / "link"))[0] == 1
    assert not os.path.exists(cache.folder)


def test_a_folder_recorded_relative_is_found_from_the_runs_parents_or_named_as_such(finished, tmp_path, monkeypatch):
    root, run = copy_run(finished, tmp_path)
    expected = coreaug.load_run(run).evaluate()
    as_older(run, dataset="imgs")  # typed in tmp_path, the working folder of the time
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert coreaug.load_run(run).evaluate().total == expected.total  # tmp_path/runs/run's parents hold imgs
    identity = json.loads((run / "config.json").read_text())
    now = {**identity, "dataset": str(root)}
    assert [k for k, _, _ in differences(identity, now)] == ["dataset"]
    assert differences(identity, now, str(run)) == []  # train --resume and bench continue it
    deep = tmp_path / "a" / "b" / "c" / "d"
    shutil.copytree(run, deep / "run")  # no parent of its holds imgs
    with pytest.raises(UsageError, match="recorded as the relative path imgs .coreaug 0.2.*run evaluate from"):
        coreaug.load_run(deep / "run").evaluate()
    given = coreaug.load_run(deep / "run").evaluate(str(root))  # the files it trained on: its own test split
    assert (given.scored, given.total, given.correct) == ("test split", expected.total, expected.correct)
    with pytest.raises(UsageError, match="relative path imgs .coreaug 0.2"):
        coreaug.train(coreaug.TrainConfig(**{**identity, "dataset": str(root), "out": str(deep / "run"),
                                             "quiet": True, "workers": 0, "resume": True}))


def test_evaluate_says_it_decodes_a_new_cache(finished, tmp_path, capsys, monkeypatch):
    _, run = copy_run(finished, tmp_path)
    as_older(run)
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "env-cache"))
    model = coreaug.load_run(run)
    model.config["cache_dir"] = None  # coreaug 0.2, where COREAUG_CACHE_DIR chose the cache
    model.evaluate()
    err = capsys.readouterr().err
    assert f"decoding the images of {tmp_path / 'imgs'} into a new cache in {tmp_path / 'env-cache'}" in err
    assert "recorded no cache folder" in err and "--cache-dir" in err
    model.evaluate()
    assert "decoding" not in capsys.readouterr().err  # the cache is there now


def test_an_older_built_in_dataset_run_reads_back_at_its_images_size(tmp_path):
    from coreaug.bench.report import _settings
    from coreaug.models import create_model
    from coreaug.training.trained import FORMAT

    (tmp_path / "run").mkdir()
    config = {"dataset": "digits", "model": "cnn", "image_size": 64, "strategy": "random", "epochs": 1}
    torch.save({"format": FORMAT, "version": 1, "model": "cnn", "in_channels": 1, "num_classes": 10,
                "state_dict": create_model("cnn", 1, 10).state_dict(), "class_names": [str(i) for i in range(10)],
                "image_size": 64, "store_size": 8, "mean": [0.3], "std": [0.4], "config": config, "epochs": 1},
               tmp_path / "run" / "model.pt")  # as coreaug 0.2 wrote it: the folder default, 64
    model = coreaug.load_run(tmp_path / "run")
    assert model.image_size == 8 and "image_size=8" in repr(model)
    with pytest.raises(UsageError, match=r"\(N, 1, 8, 8\) as the run trained on"):
        model.predict(torch.zeros(2, 1, 64, 64, dtype=torch.uint8))
    assert "image_size=8" in _settings([SimpleNamespace(config=config)])


def test_report_of_a_grid_without_plan_says_unstarted_runs_cannot_be_listed(tmp_path):
    from coreaug.bench import write_report
    from test_report import write_run

    grid = tmp_path / "grid"
    write_run(grid, "none", 0, [0.3, 0.4])
    write_run(grid, "random", 0, [0.3, 0.45], subset=0.2)
    (grid / "runs" / "random-0.2-seed1").mkdir()  # interrupted: its config alone
    (grid / "runs" / "random-0.2-seed1" / "config.json").write_text(json.dumps({"dataset": "synthetic"}))
    write_report(grid, out=tmp_path / "out")
    assert "runs that never started cannot be listed" in (tmp_path / "out" / "report.md").read_text()
    from coreaug.bench.archive import record_plan

    record_plan(grid, ["none-seed0", "random-0.2-seed0", "random-0.2-seed1"])
    write_report(grid, out=tmp_path / "out2")
    assert "never started" not in (tmp_path / "out2" / "report.md").read_text()
