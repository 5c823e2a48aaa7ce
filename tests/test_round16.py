"""Round 16: a grid whose folder dataset was moved (the message says how to keep its runs; the
report lists the settings its runs differ in)."""
import os
import re

import pytest

import coreaug
from coreaug.bench.report import write_report
from coreaug.errors import UsageError

from test_bench_round7 import image_folder


def test_a_grid_whose_folder_was_moved_names_the_link_that_keeps_its_runs_and_reports_both_paths(tmp_path):
    data = image_folder(tmp_path / "pets")
    grid, cache = tmp_path / "grid", str(tmp_path / "cache")

    def run(dataset, seeds=1):
        config = coreaug.TrainConfig(dataset=str(dataset), model="cnn", epochs=1, quiet=True, batch_size=4,
                                     cache_dir=cache)
        return coreaug.run_grid(config, grid, subsets=(0.5,), strategies=("random",), references=(), seeds=seeds,
                                jobs=1)

    run(data)
    moved = tmp_path / "moved"
    os.rename(data, moved)
    with pytest.raises(UsageError, match=f"{data} is gone: .*ln -s {moved} {data}"):
        run(moved)
    with pytest.raises(UsageError, match=f"other settings than these .*ln -s {moved} {data}"):  # the resume check too
        coreaug.train(coreaug.TrainConfig(dataset=str(moved), model="cnn", epochs=1, quiet=True, batch_size=4,
                                          cache_dir=cache, strategy="random", subset=0.5, resume=True,
                                          out=str(grid / "runs" / "random-0.5-seed0")))
    os.symlink(moved, data)
    assert run(moved).trained == 0  # the finished run is the grid's again, not refused
    run(moved, seeds=2)  # seed 1 trains now, and records the folder's real path
    write_report(str(grid), out=str(tmp_path / "report"))
    text = (tmp_path / "report" / "report.md").read_text()
    shared = next(line for line in text.splitlines() if line.startswith("Settings every run"))
    assert not re.search("[:,] dataset=", shared) and f'its runs differ in dataset ("{moved}", "{data}")' in shared


def test_a_message_about_another_dataset_adds_no_note_where_the_old_folder_is_still_there(tmp_path):
    from coreaug.training.run_files import dataset_note

    old, new = image_folder(tmp_path / "a"), image_folder(tmp_path / "b")
    assert dataset_note({"dataset": str(old)}, [("dataset", str(old), str(new))]) == ""
    assert dataset_note({"dataset": str(tmp_path / "gone")}, [("epochs", 1, 2)]) == ""
    assert dataset_note({"dataset": "digits"}, [("dataset", "digits", str(new))]) == ""
    assert "ln -s" in dataset_note({"dataset": str(tmp_path / "gone")}, [("dataset", "x", str(new))])


def test_a_resume_on_another_thread_count_warns_and_the_summary_lists_both_counts_and_what_produced_it(
        tmp_path, monkeypatch):
    import json
    import warnings

    import torch

    from coreaug.training.run_files import checkout_commit
    from test_upgrade_round18 import interrupted_run

    config = interrupted_run(tmp_path, monkeypatch)  # stopped after its first of two epochs
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        with pytest.warns(UserWarning, match=f"epochs up to 1 on {threads} threads? and goes on with {threads + 1}"
                                             f": .*OMP_NUM_THREADS={threads}"):
            coreaug.train(coreaug.TrainConfig(**config, resume=True))
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["threads"] == [threads, threads + 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same count: no warning, and one number
        coreaug.train(coreaug.TrainConfig(**{**config, "out": str(tmp_path / "again")}))
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["threads"] == threads
    assert summary["data"] == {"source": "scikit-learn:load_digits", "fingerprint": None}
    assert summary["versions"]["numpy"] == __import__("numpy").__version__ and "python" in summary["versions"]
    assert summary["commit"] == checkout_commit()


def test_the_commit_is_the_checkouts_and_none_outside_a_git_tree(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from coreaug.training import run_files

    if shutil.which("git") is None:
        pytest.skip("no git")
    top = os.path.dirname(os.path.dirname(os.path.abspath(coreaug.__file__)))
    run_files.checkout_commit.cache_clear()
    try:
        if os.path.exists(os.path.join(top, ".git")):
            head = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
            assert run_files.checkout_commit().startswith(head[:12])
        monkeypatch.setattr(coreaug, "__file__", str(tmp_path / "site" / "coreaug" / "__init__.py"))
        run_files.checkout_commit.cache_clear()
        assert run_files.checkout_commit() is None  # an installed package: no tree of its own
    finally:
        run_files.checkout_commit.cache_clear()


def test_a_full_disk_stops_the_grid_at_the_first_run_instead_of_failing_each_run_after_its_first_epoch(
        tmp_path, monkeypatch):
    import errno

    from coreaug.bench.grid import GridRun, fails_run_alone
    from coreaug.training.run_files import RunFolder

    saves = []

    def full(self, checkpoint, history):
        saves.append(self.path)
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.path, "checkpoint.pt"))
    monkeypatch.setattr(RunFolder, "save_epoch", full)
    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=100, test_limit=50, quiet=True)
    with pytest.raises(OSError, match="No space left"):
        coreaug.run_grid(config, tmp_path / "grid", subsets=(0.3,), strategies=("random", "coreset"),
                         references=("none",), seeds=1, jobs=1)
    assert len(saves) == 1  # the next runs would each train an epoch and meet the same disk
    import dataclasses

    run = GridRun("r", "random", 0.3, 0, dataclasses.replace(config, out=str(tmp_path / "grid" / "runs" / "r")))
    damaged = coreaug.UsageError(f"{run.folder}/checkpoint.pt is damaged")
    assert fails_run_alone(damaged, run)
    assert not fails_run_alone(OSError(errno.EDQUOT, "Disk quota exceeded", f"{run.folder}/x"), run)


def test_a_grid_continued_after_its_folders_images_changed_is_refused_before_anything_trains(tmp_path):
    import json
    import shutil

    data = image_folder(tmp_path / "pets")
    grid = tmp_path / "grid"
    config = coreaug.TrainConfig(dataset=str(data), model="cnn", epochs=1, quiet=True, batch_size=4,
                                 cache_dir=str(tmp_path / "cache"))

    def run(seeds):
        return coreaug.run_grid(config, grid, subsets=(0.5,), strategies=("random",), references=(), seeds=seeds,
                                jobs=1)

    run(1)
    recorded = json.loads((grid / "grid.json").read_text())["data"]
    shutil.copy(data / "cat" / "0.png", data / "cat" / "more.png")  # more data came in
    with pytest.raises(UsageError, match=f"the images in {data} changed .* since the grid's runs trained"):
        run(2)
    assert not (grid / "runs" / "random-0.5-seed1").exists()
    (data / "cat" / "more.png").unlink()
    assert run(2).trained == 1 and json.loads((grid / "grid.json").read_text())["data"] == recorded

    from coreaug.bench import archive_grid, restore_grid

    restored = tmp_path / "restored"  # an archive keeps the runs' files, not grid.json's hash: theirs is used
    restore_grid(archive_grid(grid).path, out=restored)
    grid = restored
    shutil.copy(data / "cat" / "0.png", data / "cat" / "more.png")
    with pytest.raises(UsageError, match="changed .* since the grid's runs trained"):
        run(3)
    shutil.rmtree(grid / "runs")  # no finished run left (failed runs removed): nothing to keep apart
    assert run(1).trained == 1 and json.loads((grid / "grid.json").read_text())["data"] != recorded


def test_a_finished_runs_damaged_summary_or_metrics_is_written_again_from_its_checkpoint(tmp_path):
    import json

    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=2, train_limit=100, test_limit=50, quiet=True)
    grid = tmp_path / "grid"

    def run():
        return coreaug.run_grid(config, grid, subsets=(0.5,), strategies=("random",), references=("none",),
                                seeds=1, jobs=1)

    first = run()
    runs = grid / "runs"
    summary, metrics = runs / "random-0.5-seed0" / "summary.json", runs / "none-seed0" / "metrics.jsonl"
    kept = summary.read_text(), metrics.read_text()
    summary.write_text(kept[0][:200])  # a copy cut short
    metrics.write_text(kept[1][:-40])
    again = run()
    assert sorted(o.status for o in again.outcomes) == ["resumed", "resumed"] and not again.unreadable
    assert json.loads(summary.read_text())["final_test_accuracy"] == json.loads(kept[0])["final_test_accuracy"]
    assert [json.loads(row) for row in metrics.read_text().splitlines()] == \
        [json.loads(row) for row in kept[1].splitlines()]
    assert [row["final_accuracy"] for row in again.rows] == [row["final_accuracy"] for row in first.rows]
    (runs / "none-seed0" / "checkpoint.pt").unlink()  # without a checkpoint: left out, as before
    metrics.write_text(kept[1][:-40])
    assert "none-seed0" in run().unreadable


def test_resuming_a_finished_run_whose_checkpoint_was_removed_says_so_and_never_advises_deleting_its_model(tmp_path):
    config = dict(dataset="digits", model="cnn", epochs=1, train_limit=100, test_limit=50, quiet=True,
                  out=str(tmp_path / "run"))
    coreaug.train(coreaug.TrainConfig(**config))
    (tmp_path / "run" / "checkpoint.pt").unlink()  # to save space
    with pytest.raises(UsageError, match="holds a finished run .* without its checkpoint.pt: there is nothing to "
                                         r"resume; .*--overwrite would train it again, deleting model.pt\)$"):
        coreaug.train(coreaug.TrainConfig(**config, resume=True))
    (tmp_path / "run" / "model.pt").unlink()  # not a finished run now: the refusal as before
    with pytest.raises(UsageError, match="but no checkpoint.pt to resume from"):
        coreaug.train(coreaug.TrainConfig(**config, resume=True))


def test_report_names_loose_runs_of_one_cell_trained_on_other_files_of_the_folder(tmp_path):
    import shutil

    data = image_folder(tmp_path / "pets")
    runs = tmp_path / "runs"
    settings = dict(dataset=str(data), model="cnn", epochs=1, quiet=True, batch_size=4, subset=0.5,
                    cache_dir=str(tmp_path / "cache"))
    coreaug.train(coreaug.TrainConfig(**settings, seed=0, out=str(runs / "a")))
    shutil.copy(data / "cat" / "0.png", data / "cat" / "more.png")
    coreaug.train(coreaug.TrainConfig(**settings, seed=1, out=str(runs / "b")))
    write_report(str(runs), out=str(tmp_path / "report"))
    text = (tmp_path / "report" / "report.md").read_text()
    assert re.search(r"runs of other settings pooled in one cell \(random 50%: data_files \(", text)


def test_stream_auto_counts_a_cgroup_memory_limit_not_only_the_hosts_free_memory(tmp_path, monkeypatch):
    from coreaug.training import inputs

    gib = 1 << 30
    v2 = tmp_path / "v2"
    (v2 / "slurm" / "job7").mkdir(parents=True)
    (v2 / "slurm" / "memory.max").write_text(f"{16 * gib}\n")  # the job's limit, set on an ancestor
    (v2 / "slurm" / "memory.current").write_text(f"{6 * gib}\n")
    (v2 / "slurm" / "job7" / "memory.max").write_text("max\n")
    (v2 / "slurm" / "job7" / "memory.current").write_text(f"{5 * gib}\n")
    (v2 / "slurm" / "job7" / "memory.stat").write_text(f"anon 1\ninactive_file {gib}\n")
    (tmp_path / "cgroup2").write_text("0::/slurm/job7\n")
    assert inputs.cgroup_memory_left(str(v2), str(tmp_path / "cgroup2")) == 10 * gib
    (v2 / "slurm" / "memory.max").write_text("max\n")
    assert inputs.cgroup_memory_left(str(v2), str(tmp_path / "cgroup2")) is None  # no limit anywhere

    v1 = tmp_path / "v1" / "memory"  # a container's view: its own cgroup at the mount's root
    v1.mkdir(parents=True)
    (v1 / "memory.stat").write_text(f"hierarchical_memory_limit {8 * gib}\ntotal_inactive_file {gib}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{3 * gib}\n")
    (tmp_path / "cgroup1").write_text("4:memory:/docker/abc\n0::/\n")
    assert inputs.cgroup_memory_left(str(tmp_path / "v1"), str(tmp_path / "cgroup1")) == 6 * gib
    (v1 / "memory.stat").write_text("hierarchical_memory_limit 9223372036854771712\n")
    assert inputs.cgroup_memory_left(str(tmp_path / "v1"), str(tmp_path / "cgroup1")) is None
    assert inputs.cgroup_memory_left(str(tmp_path), str(tmp_path / "absent")) is None  # no cgroups (macOS)

    monkeypatch.setattr(inputs, "cgroup_memory_left", lambda: 2 * gib)  # a 2 GiB job on a large host
    assert inputs.available_host_memory() <= 2 * gib


def test_a_selections_scoring_pass_shows_its_progress_and_quiet_shows_none(tmp_path, monkeypatch, capsys):
    from coreaug import progress

    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 0)  # stderr is no terminal here: a plain line a batch
    config = dict(dataset="digits", model="cnn", epochs=1, train_limit=300, test_limit=50, strategy="coreset",
                  subset=0.3, out=str(tmp_path / "run"))
    coreaug.train(coreaug.TrainConfig(**config))
    err = capsys.readouterr().err
    assert "epoch 1/1 selection: scoring: 300/300 img (100%)" in err
    coreaug.train(coreaug.TrainConfig(**{**config, "quiet": True, "out": str(tmp_path / "quiet")}))
    assert "selection" not in capsys.readouterr().err


def test_decoding_workers_default_to_the_cores_this_process_may_use(monkeypatch):
    from coreaug.data.cache_decode import default_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)  # a Slurm share of 3
    assert default_workers() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS: the machine's, up to 8
    assert default_workers() == 8


def test_bench_says_a_diverged_run_needs_a_grid_of_its_own_not_trains_overwrite():
    from coreaug.bench.grid import refusal_line
    from coreaug.errors import TrainingDiverged

    line = refusal_line(TrainingDiverged("training diverged at epoch 1: the train loss is nan, ...; lower --lr and "
                                         "start the run again with --overwrite"))
    assert line == ("TrainingDiverged: training diverged at epoch 1: the train loss is nan, ...; lower --lr, in a "
                    "grid of its own (another --out)")
    assert refusal_line(RuntimeError("boom\nmore")) == "RuntimeError: boom"


@pytest.mark.parametrize("name", ["fc", "module"])
def test_pretrained_weights_of_another_class_count_reset_the_classifier_the_model_names(tmp_path, name):
    import torch
    from torch import nn

    from coreaug.models import load_pretrained

    class Net(nn.Module):  # the classifier, then a projection head registered after it
        def __init__(self, classes):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc, self.projector = nn.Linear(4, classes), nn.Linear(4, 8)
            self.gradient_layer = "fc" if name == "fc" else self.fc

        def forward(self, x):
            return self.fc(self.features(x))

    torch.save(Net(1000).state_dict(), tmp_path / "w.pt")
    model = Net(10)
    projector = model.projector.weight.clone()
    report = load_pretrained(model, tmp_path / "w.pt")
    assert "classifier freshly initialised" in str(report)
    assert not torch.equal(model.projector.weight, projector)  # loaded from the file, not left as built
    typo = Net(10)
    if name == "fc":
        typo.gradient_layer = "fcc"
        with pytest.raises(UsageError, match="model.gradient_layer is 'fcc', which is no nn.Linear of Net"):
            load_pretrained(typo, tmp_path / "w.pt")
    unnamed = Net(10)
    del unnamed.gradient_layer
    with pytest.raises(UsageError, match="does not fit Net"):  # the last nn.Linear taken: the projection head
        load_pretrained(unnamed, tmp_path / "w.pt")


def test_a_module_trained_by_one_run_and_passed_to_another_warns_that_it_starts_trained(tmp_path):
    import warnings

    import torch

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    config = dict(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True)
    model = net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fresh module: no word
        coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "a")), model=model)
    with pytest.warns(UserWarning, match=f"trained by an earlier run \\({tmp_path / 'a'}\\), in place: .*new module"):
        coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "b")), model=model)

    from coreaug.training.run_files import RunFolder

    def stopped(self, checkpoint, history):
        raise KeyboardInterrupt
    model = net()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunFolder, "save_epoch", stopped)
        with pytest.raises(KeyboardInterrupt):  # a run stopped part-way trained it too
            coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "c")), model=model)
    with pytest.warns(UserWarning, match="trained by an earlier run"):
        coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "d")), model=model)


def test_model_import_errors_name_the_missing_dependency_the_shadowing_module_and_the_colon(tmp_path, monkeypatch):
    from coreaug.models import create_model

    (tmp_path / "needsdep.py").write_text("import not_installed_package_xyz\n")
    (tmp_path / "select.py").write_text("def seq(c, k):\n    pass\n")  # named like Python's own select module
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match="module 'needsdep' imports 'not_installed_package_xyz', which cannot be "
                                         "found here .*: install it in this environment"):
        create_model("needsdep:seq", 1, 10)
    (tmp_path / "badimport.py").write_text("from os import no_such_name_xyz\n")  # found; its own import fails
    with pytest.raises(UsageError, match="module 'badimport' was found, but importing it failed: cannot import"):
        create_model("badimport:seq", 1, 10)
    import types

    from coreaug.models.registry import _pythons_own
    mine = types.ModuleType("code")  # a package of the user's named like Python's own
    mine.__file__ = str(tmp_path / "code" / "__init__.py")
    assert not _pythons_own(mine) and _pythons_own(__import__("select"))
    with pytest.raises(UsageError, match="cannot import module 'absent_module_xyz' .* PYTHONPATH"):
        create_model("absent_module_xyz:seq", 1, 10)
    with pytest.raises(UsageError, match=r"module 'select' is Python's own \(.*\), which has no 'seq'; a module "
                                         "of yours needs a name that is not one of Python's"):
        create_model("select:seq", 1, 10)
    with pytest.raises(UsageError, match=r"package.module:function \(did you mean mynets:seq\?\)"):
        coreaug.TrainConfig(dataset="digits", model="mynets.seq").resolved()


def test_a_runs_model_function_that_now_builds_another_model_is_named_with_its_file(tmp_path, monkeypatch):
    import sys

    (tmp_path / "nets_r16.py").write_text(
        "import torch\n\ndef small(c, k):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * 64, k))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    coreaug.train(coreaug.TrainConfig(dataset="digits", model="nets_r16:small", epochs=1, train_limit=100,
                                      test_limit=50, quiet=True, out=str(tmp_path / "run")))
    (tmp_path / "nets_r16.py").write_text(  # edited since: wider
        "import torch\n\ndef small(c, k):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * 64, 2 * k))\n")
    monkeypatch.delitem(sys.modules, "nets_r16")
    with pytest.raises(UsageError, match=f"nets_r16:small \\(imported from {tmp_path / 'nets_r16.py'}\\) now builds "
                                         "another model than the run trained: restore that file"):
        coreaug.load_run(tmp_path / "run", model="nets_r16:small")


def test_checkpoints_and_models_reach_the_disk_before_they_replace_the_old_file(tmp_path, monkeypatch):
    import os as os_module

    from coreaug import files

    synced, real = [], os_module.fsync

    def fsync(fd):
        synced.append(os_module.readlink(f"/proc/self/fd/{fd}") if os_module.path.exists("/proc/self/fd") else fd)
        real(fd)
    monkeypatch.setattr(files.os, "fsync", fsync)
    coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=2, train_limit=100, test_limit=50,
                                      quiet=True, out=str(tmp_path / "run")))
    assert len(synced) == 3  # the two epochs' checkpoints and the model (metrics and summary are rewritten from them)
    assert all(os_module.path.dirname(str(path)) == str(tmp_path / "run") for path in synced)


def test_select_on_a_large_input_says_what_it_is_doing_before_the_long_part(tmp_path, monkeypatch):
    import numpy as np
    from click.testing import CliRunner

    from coreaug.cli import select as select_module
    from coreaug.cli.main import app

    np.save(tmp_path / "l.npy", np.arange(300) % 3)
    np.save(tmp_path / "f.npy", np.random.default_rng(0).random((300, 4), dtype=np.float32))
    args = ["select", "--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "l.npy"), "--fraction",
            "0.1", "--out", str(tmp_path / "s.npz")]
    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == 0 and "selecting" not in quiet.output
    monkeypatch.setattr(select_module, "LONG_SELECTION", 100)
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0 and "selecting 0.1 of 300 examples in 3 classes (coreset) ..." in shown.output


def test_dataset_names_are_one_name_in_any_case_with_underscores_or_hyphens(tmp_path):
    from coreaug.data import registry

    @registry.register_dataset("My_Data_R16", reads_files=False)
    def loader(data_dir=None, *, download=False, progress=True, **options):
        return coreaug.load_dataset("digits")
    try:
        assert "my-data-r16" in coreaug.available_datasets()
        assert coreaug.load_dataset("my_data_r16").num_classes == 10  # registered as "My_Data_R16", loaded so
        assert coreaug.TrainConfig(dataset="MY-DATA_r16").resolved().dataset == "my-data-r16"
        assert coreaug.TrainConfig(dataset="Digits").resolved().dataset == "digits"  # recorded as registered
        result = coreaug.train(coreaug.TrainConfig(dataset="Digits", epochs=1, train_limit=100, test_limit=50,
                                                   quiet=True, out=str(tmp_path / "run")))
        assert result.config.dataset == "digits"
    finally:
        registry._LOADERS.pop("my-data-r16", None)
        registry._READS_NO_FILES.discard("my-data-r16")


def test_a_leading_tilde_is_the_home_folder_in_every_command_that_takes_a_path(tmp_path, monkeypatch):
    import numpy as np
    from click.testing import CliRunner

    from coreaug.bench import archive_grid, restore_grid
    from coreaug.cli.main import app

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    config = coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True)
    coreaug.run_grid(config, "~/grid", subsets=(0.5,), strategies=("random",), references=(), seeds=1, jobs=1)
    assert (home / "grid" / "grid.json").exists() and not (tmp_path / "~").exists()
    assert archive_grid("~/grid", to="~/grid.xz").path == str(home / "grid.xz")
    restore_grid("~/grid.xz", out="~/again")
    assert (home / "again" / "runs" / "random-0.5-seed0" / "summary.json").exists()
    write = CliRunner().invoke(app, ["report", "~/grid", "--out=~/report"])  # --out=~ reaches us unexpanded
    assert write.exit_code == 0 and (home / "report" / "report.md").exists(), write.output
    np.save(home / "f.npy", np.random.default_rng(0).random((40, 4), dtype=np.float32))
    np.save(home / "l.npy", np.arange(40) % 2)
    chosen = CliRunner().invoke(app, ["select", "--features=~/f.npy", "--labels=~/l.npy", "--fraction", "0.2",
                                      "--out=~/s.npz"])
    assert chosen.exit_code == 0 and (home / "s.npz").exists(), chosen.output
    assert not (tmp_path / "~").exists()


def test_bench_refuses_flags_that_another_option_leaves_unread_as_train_does(tmp_path):
    from click.testing import CliRunner

    from coreaug.cli.main import app

    for flags, named in ((["--milestones", "0.3,0.6"], "--milestones applies to schedule 'multistep'; the grid's "
                                                        "runs have schedule 'cosine'"),
                         (["--betas", "0.9,0.99"], "--betas applies to optimizer 'adamw'"),
                         (["--candidates", "8"], "--candidates applies to augment 'maxloss'")):
        result = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--epochs", "1", "--subsets", "0.5",
                                          "--strategies", "random", "--out", str(tmp_path / "grid"), *flags])
        assert result.exit_code == 2 and named in result.output, result.output
        assert not (tmp_path / "grid").exists()  # refused before anything was planned
    knn = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--epochs", "1", "--train-limit", "100",
                                   "--subsets", "0.5", "--strategies", "random,coreset", "--references", "",
                                   "--knn", "5", "--out", str(tmp_path / "grid"), "--quiet"])
    assert knn.exit_code == 0 and "not read by" not in knn.output, knn.output  # the grid's coreset reads it


def test_run_grid_with_overwrite_says_it_does_not_apply_to_a_grid(tmp_path):
    config = coreaug.TrainConfig(dataset="digits", epochs=1, overwrite=True)
    with pytest.raises(UsageError, match="overwrite does not apply to a grid"):
        coreaug.run_grid(config, tmp_path / "grid", subsets=(0.5,), strategies=("random",), references=(), seeds=1,
                         jobs=1)
    assert not (tmp_path / "grid").exists()


def test_run_grid_and_write_report_take_and_refuse_the_same_targets(tmp_path):
    import numpy as np

    from coreaug.bench.report import write_report

    config = coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True)
    grid = tmp_path / "grid"
    result = coreaug.run_grid(config, grid, subsets=(0.5,), strategies=("random",), references=(), seeds=1, jobs=1,
                              target=np.float32(0.5))
    assert result.target == pytest.approx(0.5)
    assert write_report(str(grid), out=str(tmp_path / "r"), target=np.float64(0.5)) is not None
    for bad in (True, np.bool_(True), 0, 1.5, "0.5"):
        with pytest.raises(UsageError, match="target must be an accuracy in"):
            coreaug.run_grid(config, grid, subsets=(0.5,), strategies=("random",), references=(), seeds=1, jobs=1,
                             target=bad)
        with pytest.raises(UsageError, match="target must be an accuracy in"):
            write_report(str(grid), out=str(tmp_path / "r"), target=bad)


def test_a_model_that_fails_on_the_runs_inputs_is_named_with_the_line_of_its_code_that_raised(tmp_path):
    import torch

    class Narrow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(7, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))  # 64 values an image, not 7

    with pytest.raises(UsageError, match=r"fails on a batch of the run's inputs, .* at .*test_round16.py:\d+ in "
                                         r"forward$"):
        coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, quiet=True, out=str(tmp_path / "r")),
                      model=Narrow())


def test_a_model_function_with_its_parameters_the_other_way_round_is_called_by_name(tmp_path, monkeypatch):
    from coreaug.models import create_model

    (tmp_path / "swapped_r16.py").write_text(
        "import torch\n\ndef net(num_classes, in_channels):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.Flatten(),\n"
        "                               torch.nn.LazyLinear(num_classes))\n"
        "\ndef plain(a, b):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(a, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(b))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("swapped_r16:net", "swapped_r16:plain"):  # by keyword, and positionally as before
        model = create_model(name, 1, 10)
        assert model[0].in_channels == 1 and model(__import__("torch").zeros(2, 1, 8, 8)).shape == (2, 10)


def test_registered_wrapped_and_keyword_only_model_functions_are_called_as_they_take_their_arguments():
    import functools

    import torch

    from coreaug.models import create_model, registry

    def build(in_channels, num_classes):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.Flatten(),
                                   torch.nn.LazyLinear(num_classes))

    def swapped(num_classes, in_channels):
        return build(in_channels, num_classes)

    def keyword_only(*, in_channels, num_classes):
        return build(in_channels, num_classes)

    def logged(function):
        @functools.wraps(function)
        def wrapper(a, b):  # positional, whatever the wrapped function's names
            return function(a, b)
        return wrapper

    names = {"r16-swapped": swapped, "r16-keyword-only": keyword_only, "r16-wrapped": logged(build)}
    try:
        for name, factory in names.items():
            registry.register_model(name)(factory)
            model = create_model(name, 1, 10)
            assert model[0].in_channels == 1 and model(torch.zeros(2, 1, 8, 8)).shape == (2, 10), name
    finally:
        for name in names:
            registry._MODELS.pop(name, None)


def test_a_float64_or_bfloat16_model_is_told_to_be_float32(tmp_path):
    import torch

    for dtype in (torch.float64, torch.bfloat16):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).to(dtype)
        with pytest.raises(UsageError, match=f"its weights are {str(dtype)[6:]}: give a float32 model "
                                             r"\(model.float\(\)\), as --precision sets"):
            coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, quiet=True, out=str(tmp_path / "r")),
                          model=model)


def test_select_takes_a_loss_filter_as_the_api_and_train_do(tmp_path):
    import numpy as np
    from click.testing import CliRunner

    from coreaug.cli.main import app
    from coreaug.selection.rules import select_by_rule

    rng = np.random.default_rng(0)
    features, labels, losses = rng.random((200, 4), dtype=np.float32), np.arange(200) % 2, rng.random(200)
    for name, values in (("f", features), ("l", labels), ("lo", losses)):
        np.save(tmp_path / f"{name}.npy", values)
    args = ["select", "--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "l.npy"), "--fraction", "0.2",
            "--out", str(tmp_path / "s.npz")]
    done = CliRunner().invoke(app, [*args, "--losses", str(tmp_path / "lo.npy"), "--strategy", "coreset-history",
                                    "--loss-filter", "0.3"])
    assert done.exit_code == 0, done.output
    api = select_by_rule("coreset-history", labels, 0.2, estimates=features, losses=losses, loss_filter=0.3)
    assert np.array_equal(np.load(tmp_path / "s.npz")["indices"], np.asarray(api.indices))
    unfiltered = select_by_rule("coreset-history", labels, 0.2, estimates=features, losses=losses, loss_filter=0.0)
    assert not np.array_equal(np.asarray(unfiltered.indices), np.asarray(api.indices))  # the filter mattered
    refused = CliRunner().invoke(app, [*args, "--loss-filter", "0.3"])  # coreset: not a loss-filtered rule
    assert refused.exit_code == 2 and "--loss-filter applies to strategies" in refused.output
