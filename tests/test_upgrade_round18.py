"""What coreaug 0.2 (and any other version) left, used after an upgrade (explore18-upgrade): a grid of
0.2 continued by bench is checked against its folder through its checkpoints (0.2 recorded the hash
there alone); a run resumed, or a grid pooled, across versions is warned about and said in the
records; an older run's relative data folder is found from its parents. Files of 0.2's form are made
by hand from tiny runs of today's (no grid.json, no "coreaug" or "data" in summary.json, no "rng"
in checkpoint.pt)."""
import json
import shutil
import warnings

import pytest
import torch

import coreaug
from coreaug.bench.report import write_report
from coreaug.errors import UsageError
from coreaug.training.run_files import OLDER, RunFolder

from test_compat_round9 import as_older, image_folder

FOLDER_RUN = dict(model="cnn", image_size=8, epochs=1, batch_size=8, quiet=True, workers=0)


def grid_of_older(tmp_path, keep_checkpoints=True):
    """(image folder, grid folder): a one-seed grid (random 0.5 and none) on a folder of 3 classes, made to look
    as coreaug 0.2 left it."""
    root = image_folder(tmp_path / "imgs")
    config = coreaug.TrainConfig(dataset=str(root), cache_dir=str(tmp_path / "cache"), **FOLDER_RUN)
    coreaug.bench.run_grid(config, tmp_path / "grid", subsets=[0.5], strategies=["random"], references=["none"],
                           seeds=1)
    (tmp_path / "grid" / "grid.json").unlink()
    for run in (tmp_path / "grid" / "runs").iterdir():
        summary = json.loads((run / "summary.json").read_text())
        for key in ("data", "coreaug", "inputs"):
            summary.pop(key, None)
        (run / "summary.json").write_text(json.dumps(summary))
        as_older(run)
        if not keep_checkpoints:  # as 0.2's archive restores a grid
            (run / "checkpoint.pt").unlink()
    return root, tmp_path / "grid"


def continue_grid(root, grid, tmp_path):
    config = coreaug.TrainConfig(dataset=str(root), cache_dir=str(tmp_path / "cache"), **FOLDER_RUN)
    return coreaug.bench.run_grid(config, grid, subsets=[0.5], strategies=["random"], references=["none"], seeds=2)


def test_bench_refuses_to_continue_an_older_grid_on_a_folder_this_version_reads_otherwise(tmp_path):
    root, grid = grid_of_older(tmp_path)
    shutil.copy(root / "c0" / "0.png", root / "c0" / "extra.jfif")  # 0.2 left .jfif files out
    with pytest.raises(UsageError, match="trained by coreaug 0.2, which read .* otherwise: this version also reads "
                                         r"1 \.jfif/\.jpe/\.apng files"):
        continue_grid(root, grid, tmp_path)
    assert not (grid / "runs" / "none-seed1").exists()


def test_bench_refuses_to_continue_an_older_grid_whose_images_changed(tmp_path):
    root, grid = grid_of_older(tmp_path)
    shutil.copy(root / "c1" / "0.png", root / "c1" / "added.png")
    with pytest.raises(UsageError, match="the images in .* changed"):
        continue_grid(root, grid, tmp_path)


def test_an_older_grid_without_checkpoints_is_said_to_be_unchecked(tmp_path):
    root, grid = grid_of_older(tmp_path, keep_checkpoints=False)
    with pytest.warns(UserWarning, match="record no hash of the images they trained on"):
        continue_grid(root, grid, tmp_path)


def test_a_grid_pooling_versions_warns_and_its_tables_and_report_say_so(tmp_path):
    root, grid = grid_of_older(tmp_path)
    with pytest.warns(UserWarning, match=f"2 finished runs of this grid were trained by coreaug {OLDER}, and this "
                                         f"is {coreaug.__version__}"):
        continue_grid(root, grid, tmp_path)
    results = (grid / "results.md").read_text()
    assert f"runs of several coreaug versions pooled: {OLDER} (2 runs), {coreaug.__version__} (2 runs)" in results
    write_report(str(grid), out=str(tmp_path / "report"))
    assert f"{OLDER} (2 runs), {coreaug.__version__} (2 runs)" in (tmp_path / "report" / "report.md").read_text()


def test_a_grid_of_one_version_says_nothing_of_versions(tmp_path):
    root = image_folder(tmp_path / "imgs")
    config = coreaug.TrainConfig(dataset=str(root), cache_dir=str(tmp_path / "cache"), **FOLDER_RUN)
    coreaug.bench.run_grid(config, tmp_path / "grid", subsets=[0.5], strategies=["random"], references=["none"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        continue_grid(root, tmp_path / "grid", tmp_path)
    assert "versions" not in (tmp_path / "grid" / "results.md").read_text()


def interrupted_run(tmp_path, monkeypatch):
    """The config of a two-epoch digits run stopped after its first epoch."""
    config = dict(dataset="digits", model="cnn", epochs=2, train_limit=200, test_limit=100, quiet=True,
                  out=str(tmp_path / "run"))
    real_save = RunFolder.save_epoch

    def stopped(self, checkpoint, history):
        real_save(self, checkpoint, history)
        raise KeyboardInterrupt
    monkeypatch.setattr(RunFolder, "save_epoch", stopped)
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config))
    monkeypatch.setattr(RunFolder, "save_epoch", real_save)
    return config


def test_a_resume_of_an_older_versions_checkpoint_warns_and_the_run_records_both(tmp_path, monkeypatch):
    config = interrupted_run(tmp_path, monkeypatch)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    del checkpoint["rng"]  # as 0.2 wrote it (its rows name no version)
    for row in checkpoint["history"]:
        del row["coreaug"]
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    with pytest.warns(UserWarning, match=f"epochs up to 1 with coreaug {OLDER} and goes on with "
                                         f"{coreaug.__version__}.*--overwrite"):
        coreaug.train(coreaug.TrainConfig(**config, resume=True))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["coreaug"] for row in rows] == [OLDER, coreaug.__version__]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["coreaug"] == [OLDER, coreaug.__version__]


def test_a_resume_by_another_version_warns_and_one_by_the_same_does_not(tmp_path, monkeypatch):
    config = interrupted_run(tmp_path, monkeypatch)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["history"][0]["coreaug"] == coreaug.__version__  # each epoch names its version
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
        shutil.copytree(tmp_path / "run", tmp_path / "same")
        coreaug.train(coreaug.TrainConfig(**{**config, "out": str(tmp_path / "same")}, resume=True))
    assert json.loads((tmp_path / "same" / "summary.json").read_text())["coreaug"] == coreaug.__version__
    checkpoint["history"][0]["coreaug"] = "0.9.1"
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    with pytest.warns(UserWarning, match="epochs up to 1 with coreaug 0.9.1 and goes on with"):
        coreaug.train(coreaug.TrainConfig(**config, resume=True))


def test_an_older_runs_relative_data_dir_is_found_from_its_parents_or_named(tmp_path, monkeypatch):
    from test_data_locate import write_mnist  # the real files' format, small

    write_mnist(tmp_path / "fm", 40)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "run"
    coreaug.train(coreaug.TrainConfig(dataset="mnist", data_dir="fm", model="cnn", epochs=1, quiet=True, out=str(run)))
    model = torch.load(run / "model.pt", weights_only=True)
    assert model["config"]["data_dir"] == str(tmp_path / "fm")  # this version records it whole
    as_older(run, dataset="mnist")
    model = torch.load(run / "model.pt", weights_only=True)
    model["config"]["data_dir"] = "fm"  # 0.2 kept it as typed
    torch.save(model, run / "model.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    found = coreaug.load_run(run).evaluate()  # fm/ sits beside runs/
    assert 0 <= found.accuracy <= 1
    (tmp_path / "fm").rename(tmp_path / "gone")
    with pytest.raises(UsageError, match="the run's data_dir was recorded as the relative path fm .*give the "
                                         "folder's path as data_dir"):
        coreaug.load_run(run).evaluate()


def test_an_older_run_of_a_dataset_that_reads_no_files_ignores_its_recorded_data_dir(tmp_path, monkeypatch):
    """0.2 took --data-dir beside --dataset digits and recorded it; evaluate refused the run from elsewhere
    (review24)."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "run"
    coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=100, test_limit=50,
                                      quiet=True, out=str(run)))
    as_older(run)
    model = torch.load(run / "model.pt", weights_only=True)
    model["config"]["data_dir"] = "data"  # as typed, naming no folder
    torch.save(model, run / "model.pt")
    assert coreaug.load_run(run).evaluate().total > 0
