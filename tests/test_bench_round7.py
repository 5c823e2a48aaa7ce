"""`coreaug bench` / `run_grid`: where a grid may live, flags for some strategies only, settings
that mean the same, checks made before anything is planned, and a script without the guard."""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import coreaug
from coreaug.bench import grid as grid_module
from coreaug.bench.grid import plan_grid
from coreaug.errors import UsageError
from coreaug.training.run_files import differences


def image_folder(root, splits=("",), size=16, per_class=4):
    """Two classes of tiny PNGs under root (in each of `splits`: "" for a class-folder dataset)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in splits:
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for k in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    return root


def listing(root):
    return sorted(os.path.relpath(os.path.join(parent, name), root)
                  for parent, folders, files in os.walk(root) for name in folders + files)


def test_an_out_inside_the_dataset_or_in_a_run_folder_is_refused_before_anything_is_written(tmp_path):
    data = image_folder(tmp_path / "pets")
    before = listing(data)
    config = coreaug.TrainConfig(dataset=str(data), model="cnn", epochs=1, quiet=True)
    for out in (data, data / "grids" / "g1"):
        with pytest.raises(UsageError, match="folder of --dataset.*read as part of the dataset"):
            coreaug.run_grid(config, out, subsets=(0.5,), strategies=("random",), references=(), seeds=1, jobs=1)
    assert listing(data) == before  # no runs/, no grid.json: the dataset keeps its two classes
    run = tmp_path / "other" / "runs" / "random-0.5-seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="is a run folder"):
        coreaug.run_grid(config, run, subsets=(0.5,), strategies=("random",), references=(), seeds=1, jobs=1)
    assert os.listdir(run) == ["config.json"]


def test_a_train_run_folder_among_the_datasets_files_is_refused_before_anything_is_written(tmp_path):
    """`coreaug train --out pets/run1` trained, and the next run read pets/run1 as a class of no images."""
    data = image_folder(tmp_path / "pets")
    split = image_folder(tmp_path / "split", splits=("train", "test"))
    before = listing(data), listing(split)
    cache = str(tmp_path / "cache")
    for dataset, out in ((data, data / "run1"), (split, split / "train" / "runs" / "r")):
        config = coreaug.TrainConfig(dataset=str(dataset), model="cnn", epochs=1, quiet=True, out=str(out),
                                     cache_dir=cache)
        with pytest.raises(UsageError, match=r"--out .* is inside .*, the folder of the dataset, where the run folder"):
            coreaug.train(config)
    assert (listing(data), listing(split)) == before
    for out in (data / ".runs" / "r", split / "runs" / "r"):  # a hidden folder, or the root beside train/ and test/
        coreaug.train(coreaug.TrainConfig(dataset=str(data if ".runs" in str(out) else split), model="cnn", epochs=1,
                                          quiet=True, out=str(out), cache_dir=cache, batch_size=4))
        assert os.path.isfile(out / "summary.json")


def test_loss_filter_goes_to_the_loss_filtered_strategies_runs_only(tmp_path):
    config = coreaug.TrainConfig(dataset="synthetic", epochs=2, loss_filter=0.2)
    runs = plan_grid(config, str(tmp_path), (0.5,), ("coreset-lowloss", "random"), ("none", "full"), 1)
    assert {run.name: run.config.loss_filter for run in runs} == {
        "none-seed0": None, "full-seed0": None, "coreset-lowloss-0.5-seed0": 0.2, "random-0.5-seed0": None}
    with pytest.raises(UsageError, match=r"strategies \(coreset, random\) do not read it"):
        plan_grid(config, str(tmp_path), (0.5,), ("coreset", "random"), ("none",), 1)
    with pytest.raises(UsageError, match="loss_filter must be a share"):
        plan_grid(dataclasses.replace(config, loss_filter=1.5), str(tmp_path), (0.5,), ("coreset-history",), (), 1)


def test_a_conflict_a_run_finds_in_its_data_is_refused_before_the_grid_starts(tmp_path):
    data = image_folder(tmp_path / "pets")
    config = coreaug.TrainConfig(dataset=str(data), model="cnn", epochs=2, stream="always", quiet=True)
    with pytest.raises(UsageError, match=r"mixing copies with partners \(strategy crust\)"):
        coreaug.run_grid(config, tmp_path / "grid", subsets=(0.5,), strategies=("crust",), references=("none",),
                         seeds=1, jobs=1)
    assert not (tmp_path / "grid").exists()  # the none run was not started first


def test_settings_that_mean_the_same_for_the_run_continue_the_grid_as_stored(tmp_path):
    data = image_folder(tmp_path / "pets", splits=("train", "test"))
    config = coreaug.TrainConfig(dataset=str(data), model="cnn", epochs=1)
    out = str(tmp_path / "grid")
    stored, = plan_grid(config, out, (), (), ("none",), 1)
    os.makedirs(stored.folder)
    with open(os.path.join(stored.folder, "config.json"), "w") as f:
        json.dump({**stored.config.identity(), "val_fraction": 0.2}, f)  # unread beside train/ and test/ (an older
    # coreaug recorded it; it is refused now); auto is pad-crop at 16 px and fp32 on the CPU
    same = dataclasses.replace(config, weak="pad-crop", precision="fp32", device="cpu")
    run, = plan_grid(same, out, (), (), ("none",), 1)
    assert (run.config.val_fraction, run.config.weak, run.config.precision) == (0.1, "auto", "auto")
    with open(os.path.join(run.folder, "config.json")) as f:
        assert differences(json.load(f), run.config.identity()) == []  # so train's own resume check agrees
    with pytest.raises(UsageError, match="weak: 'auto' -> 'resized-crop'"):
        plan_grid(dataclasses.replace(config, weak="resized-crop"), out, (), (), ("none",), 1)
    with pytest.raises(UsageError, match="has train/ and its own test split"):
        plan_grid(dataclasses.replace(config, val_fraction=0.2), out, (), (), ("none",), 1)


def test_the_coreset_kernel_is_loaded_before_a_selecting_run_starts_its_clock(tmp_path, monkeypatch):
    import coreaug.selection.coreset

    events = []
    monkeypatch.setattr(coreaug.selection.coreset, "select_coreset", lambda *a, **k: events.append("warm"))
    monkeypatch.setattr(grid_module, "train", lambda config: events.append(config.strategy))
    config = coreaug.TrainConfig(dataset="synthetic", epochs=1, train_limit=32, test_limit=16, quiet=True)
    coreaug.run_grid(config, tmp_path / "grid", subsets=(0.5,), strategies=("coreset", "random"), references=(),
                     seeds=1, jobs=1)
    assert events == ["warm", "coreset", "random"]  # random needs no kernel


def test_missing_data_stops_the_grid_before_grid_json_plans_it(tmp_path):
    (tmp_path / "empty").mkdir()
    config = coreaug.TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "empty"), epochs=1, quiet=True)
    with pytest.raises(UsageError, match="not found"):
        coreaug.run_grid(config, tmp_path / "grid", subsets=(0.1,), strategies=("random",), seeds=1, jobs=1)
    assert not (tmp_path / "grid" / "grid.json").exists()
    assert os.listdir(tmp_path / "grid" / "runs") == []


def test_run_grid_with_workers_from_a_script_without_the_main_guard_says_so(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""\
        import coreaug
        coreaug.run_grid(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=40, test_limit=20, quiet=True),
                         "grid", subsets=(0.5,), strategies=("random",), references=(), seeds=1, jobs=2)
        print("returned")
        """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "returned" not in proc.stdout
    assert 'if __name__ == "__main__":' in proc.stderr.splitlines()[-1]
    assert "bootstrapping phase" not in proc.stderr  # the workers exit without multiprocessing's traceback
    assert os.listdir(tmp_path / "grid" / "runs") == []
    assert not (tmp_path / "grid" / "grid.json").exists()  # nothing trained: the corrected script is not refused
