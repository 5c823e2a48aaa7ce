"""A run folder belongs to one live run; damaged checkpoints and changed settings are named."""
import json
import signal
import subprocess
import sys
import time

import pytest

import coreaug
from coreaug.data.image_cache import caches_in
from coreaug.training.run_files import RunFolder, same_settings

TINY = dict(dataset="synthetic", model="cnn", train_limit=64, test_limit=32, batch_size=32, quiet=True,
            strategy="coreset")
CLI_TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--quiet",
            "--strategy", "coreset"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "coreaug", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def start_long_run(out):
    """A `coreaug train` that runs for minutes; returns once it has checkpointed an epoch."""
    proc = subprocess.Popen([sys.executable, "-m", "coreaug", "train", *CLI_TINY, "--epochs", "5000",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return wait_until_written(proc, out / "checkpoint.pt")


def wait_until_written(proc, path, seconds=120):
    """`proc` once the run it is has written `path` (failing if it exits or takes `seconds`)."""
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, f"the run wrote no {path.name} in {seconds} s"
        time.sleep(0.1)
    return proc


def test_a_second_run_into_a_live_runs_folder_is_refused_and_a_killed_one_frees_it(tmp_path):
    out = tmp_path / "run"
    proc = start_long_run(out)
    try:
        second = cli("train", *CLI_TINY, "--epochs", "5000", "--out", out, "--resume")
        assert second.returncode == 2 and "in use by another coreaug run" in second.stderr, second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # kill -9 leaves no lock behind: the folder can be resumed (its checkpoint is read).
    folder = RunFolder(out)
    try:
        checkpoint = folder.check(json.loads((out / "config.json").read_text()), resume=True)
    finally:
        folder.release()
    assert checkpoint is not None and checkpoint["epoch"] >= 1


def test_the_lock_is_released_when_a_run_ends(tmp_path):
    out = str(tmp_path / "run")
    first = coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=out))
    again = coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=out, resume=True))  # same process, new lock
    assert again.history == first.history


def test_a_truncated_checkpoint_is_named_in_one_line_exit_2(tmp_path):
    out = tmp_path / "run"
    assert cli("train", *CLI_TINY, "--epochs", "1", "--out", out).returncode == 0
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[:len(data) // 3])
    proc = cli("train", *CLI_TINY, "--epochs", "1", "--out", out, "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "checkpoint.pt is truncated or corrupt" in proc.stderr


def test_resume_and_bench_share_one_rule_for_new_and_changed_settings(tmp_path):
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    stored = json.loads((out / "config.json").read_text())
    del stored["precision"]  # as if written before TrainConfig had it: its default matches
    (out / "config.json").write_text(json.dumps(stored))
    identity = coreaug.TrainConfig(**TINY, epochs=1).resolved().identity()
    assert same_settings(stored, identity)
    assert len(coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), resume=True)).history) == 1
    stored["knn"] = 10  # a default that changed since the run was written: another run
    (out / "config.json").write_text(json.dumps(stored))
    assert not same_settings(stored, identity)
    with pytest.raises(ValueError, match="other settings than these.*knn: 10 -> 20.*started with: give --knn 10$"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), resume=True))


def _run_files(out):
    return {name: (out / name).read_bytes() for name in ("checkpoint.pt", "metrics.jsonl", "summary.json")}


def test_a_rerun_without_resume_is_refused_in_one_line_and_deletes_nothing(tmp_path):
    out = tmp_path / "run"
    assert cli("train", *CLI_TINY, "--epochs", "1", "--out", out).returncode == 0
    before = _run_files(out)
    proc = cli("train", *CLI_TINY, "--epochs", "1", "--out", out)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "already holds a run" in proc.stderr and "--resume" in proc.stderr and "--overwrite" in proc.stderr
    assert _run_files(out) == before


def test_the_api_refuses_a_rerun_without_resume_too(tmp_path):
    out = str(tmp_path / "run")
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=out))
    with pytest.raises(coreaug.UsageError, match="already holds a run"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=out))


def test_overwrite_starts_the_run_again(tmp_path):
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=2, out=str(out)))
    again = coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), overwrite=True))
    assert len(again.history) == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_and_overwrite_together_are_refused():
    with pytest.raises(coreaug.UsageError, match="pass one of them"):
        coreaug.TrainConfig(**TINY, resume=True, overwrite=True).resolved()


def _folder_run(data, out, **settings):
    return coreaug.TrainConfig(dataset=str(data), image_size=8, model="cnn", epochs=1, batch_size=8, quiet=True,
                               out=str(out), **settings)


def test_resume_after_the_folders_files_changed_is_refused(tmp_path):
    from test_data_image_folder import COLOURS, write_image, write_split

    write_split(tmp_path / "data", "train", per_class=4)
    write_split(tmp_path / "data", "val", per_class=1)
    coreaug.train(_folder_run(tmp_path / "data", tmp_path / "run"))
    write_image(tmp_path / "data" / "train" / "cat" / "new.jpg", COLOURS["cat"])
    with pytest.raises(coreaug.UsageError, match="changed .* since the run's checkpoint"):
        coreaug.train(_folder_run(tmp_path / "data", tmp_path / "run", resume=True))
    # Refused from the folder's listing, before the changed folder was decoded into a cache of its own.
    assert len(caches_in(source=str(tmp_path / "data"))) == 1


def test_resume_on_the_same_folder_files_continues(tmp_path):
    from test_data_image_folder import write_split

    write_split(tmp_path / "data", "train", per_class=4)
    write_split(tmp_path / "data", "val", per_class=1)
    coreaug.train(_folder_run(tmp_path / "data", tmp_path / "run"))
    assert len(coreaug.train(_folder_run(tmp_path / "data", tmp_path / "run", resume=True)).history) == 1


def test_a_folder_left_before_the_first_epoch_ended_does_not_block_the_next_run(tmp_path):
    """Only config.json (a run stopped by an error or a kill in its first epoch): nothing to keep."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**coreaug.TrainConfig(**TINY).resolved().identity(), "lr": 9.0}))
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    assert json.loads((out / "config.json").read_text())["lr"] != 9.0 and (out / "model.pt").exists()


@pytest.mark.parametrize("text", ["", '{"data', "[1, 2]"])
def test_a_runs_unreadable_config_is_one_line_and_overwrite_replaces_it(tmp_path, text):
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    (out / "config.json").write_text(text)
    proc = cli("train", *CLI_TINY, "--epochs", "1", "--out", out, "--resume")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "config.json cannot be read" in proc.stderr
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), overwrite=True))
    assert json.loads((out / "config.json").read_text())["dataset"] == "synthetic"


def test_settings_that_mean_the_same_run_resume_it(tmp_path, monkeypatch):
    """A folder dataset typed another way (a trailing slash, from another working folder), and the
    documented defaults given explicitly (augment_steps 1, selection_warmup 0 for a rule without
    a warm-up), are the run's own settings."""
    from test_data_image_folder import write_split

    write_split(tmp_path / "data", "train", per_class=6)
    write_split(tmp_path / "data", "test", per_class=2)
    monkeypatch.chdir(tmp_path)
    base = dict(model="cnn", batch_size=8, quiet=True, strategy="coreset", cache_dir=str(tmp_path / "cache"))
    coreaug.train(coreaug.TrainConfig(dataset="data", epochs=2, out="run", **base))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset"] == str(tmp_path / "data")
    monkeypatch.chdir(tmp_path / "data")
    result = coreaug.train(coreaug.TrainConfig(dataset="../data/", epochs=2, out="../run", resume=True,
                                               augment_steps=1, selection_warmup=0, **base))
    assert [m["epoch"] for m in result.history] == [0, 1]
    stored = {**json.loads((tmp_path / "run" / "config.json").read_text()), "dataset": "data"}  # an older run's
    monkeypatch.chdir(tmp_path)
    assert same_settings(stored, coreaug.TrainConfig(dataset="./data/", epochs=2, **base).resolved().identity())
    assert not same_settings(stored, coreaug.TrainConfig(dataset="./data/", epochs=2, selection_warmup=1,
                                                         **base).resolved().identity())


def test_data_dir_and_pretrained_are_recorded_by_their_real_paths(tmp_path, monkeypatch):
    """evaluate reads the run's data_dir from whatever folder it is run in; resume compares pretrained."""
    import torch

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    torch.save(coreaug.models.create_model("cnn", 3, 10).state_dict(), tmp_path / "w.pt")
    config = coreaug.TrainConfig(dataset="cifar10", data_dir="data/", pretrained="./w.pt").resolved()
    assert (config.data_dir, config.pretrained) == (str(tmp_path / "data"), str(tmp_path / "w.pt"))
    stored = json.loads(json.dumps({**config.identity(), "pretrained": "w.pt"}))  # as config.json holds it
    assert same_settings(stored, config.identity())


def _finished(out, **settings):
    return coreaug.train(coreaug.TrainConfig(**{**TINY, "epochs": 1, **settings}, out=str(out)))


def test_a_resume_that_finds_results_but_no_checkpoint_is_refused_with_nothing_deleted(tmp_path):
    """It retrained from epoch 0, replacing model.pt, summary.json and metrics.jsonl."""
    out = tmp_path / "run"
    _finished(out)
    (out / "checkpoint.pt").unlink()
    before = {name: (out / name).read_bytes() for name in ("model.pt", "summary.json", "metrics.jsonl")}
    with pytest.raises(coreaug.UsageError, match="holds a finished run .* without its checkpoint.pt: there is "
                                                 "nothing to resume"):
        _finished(out, resume=True)
    assert {name: (out / name).read_bytes() for name in before} == before
    (out / "model.pt").unlink()  # an unfinished run's results
    with pytest.raises(coreaug.UsageError, match="no checkpoint.pt to resume from; pass --overwrite"):
        _finished(out, resume=True)
    assert len(_finished(out, overwrite=True).history) == 1


def test_results_without_a_config_json_are_not_emptied_by_another_run(tmp_path):
    """Any run into the folder deleted them, whatever its settings, without --resume or --overwrite."""
    out = tmp_path / "run"
    _finished(out)
    (out / "config.json").unlink()
    with pytest.raises(coreaug.UsageError, match=r"holds a run's results \(.*\) but no config.json"):
        _finished(out, seed=3)
    assert (out / "model.pt").exists() and (out / "checkpoint.pt").exists()


def test_a_config_json_that_is_not_a_coreaug_runs_is_refused_not_replaced(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"my": "project settings"}')
    with pytest.raises(coreaug.UsageError, match="config.json that cannot be read as a coreaug run's"):
        _finished(out)
    assert json.loads((out / "config.json").read_text()) == {"my": "project settings"}


def test_a_resume_with_no_run_says_it_starts_one(tmp_path):
    proc = cli("train", *[a for a in CLI_TINY if a != "--quiet"], "--epochs", "1", "--out", tmp_path / "rnu",
               "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"--resume: no run in {tmp_path / 'rnu'} yet; starting it" in proc.stdout


def test_results_that_arrive_between_check_and_start_are_refused_not_deleted(tmp_path):
    """Two runs into one new --out: the second, checked before the first made the folder, deleted its results."""
    out = tmp_path / "run"
    late = RunFolder(str(out))
    late.check(coreaug.TrainConfig(**TINY).identity(), resume=False)  # the folder does not exist yet: made, locked
    with pytest.raises(coreaug.UsageError, match="is in use by another coreaug run that is still going"):
        _finished(out)  # another run into it is refused at once
    late.release()  # as where the file system takes no locks: nothing keeps the other run out
    _finished(out)  # another run takes the folder meanwhile and finishes
    try:
        with pytest.raises(coreaug.UsageError, match="received a run's results .* from another coreaug run"):
            late.start(coreaug.TrainConfig(**TINY).identity(), fresh=True)
    finally:
        late.release()
    assert (out / "model.pt").exists()


def test_a_run_resumes_with_another_augment_steps(tmp_path):
    """K steps augmented in one call are the same images: the setting was refused as another run."""
    out = tmp_path / "run"
    _finished(out)
    assert len(_finished(out, augment_steps=2, resume=True).history) == 1


def test_a_resume_with_a_model_that_does_not_fit_the_checkpoint_is_one_usage_error(tmp_path):
    """It was load_state_dict's size-mismatch traceback."""
    import torch

    def model(*hidden):
        sizes = [3 * 32 * 32, *hidden, 10]
        return torch.nn.Sequential(torch.nn.Flatten(), *[torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])

    config = {**TINY, "model": None, "strategy": "random", "out": str(tmp_path / "own")}
    coreaug.train(coreaug.TrainConfig(**config, epochs=1), model=model(16))
    before = (tmp_path / "own" / "checkpoint.pt").read_bytes()
    with pytest.raises(coreaug.UsageError, match="the model does not fit the checkpoint of .*size mismatch"):
        coreaug.train(coreaug.TrainConfig(**config, epochs=1, resume=True), model=model(24))
    assert (tmp_path / "own" / "checkpoint.pt").read_bytes() == before


def test_a_temporary_file_a_killed_run_left_is_removed_when_the_run_goes_on(tmp_path):
    """A SIGTERM inside checkpoint.pt's write left a checkpoint-sized .tmp-* file that nothing removed."""
    out = tmp_path / "run"
    _finished(out)
    (out / "summary.json").unlink()  # killed before its last write: the resume completes the run
    (out / ".tmp-abc123").write_bytes(b"half a checkpoint")
    _finished(out, resume=True)
    assert not (out / ".tmp-abc123").exists()


def test_a_damaged_model_pt_beside_its_checkpoint_says_resume_writes_it_again_and_it_does(tmp_path):
    """It said "train the run again", where --resume rewrites model.pt from checkpoint.pt in a second."""
    out = tmp_path / "run"
    _finished(out)
    good = (out / "model.pt").read_bytes()
    (out / "model.pt").write_bytes(good[:100])
    with pytest.raises(coreaug.UsageError, match="--resume writes it again from checkpoint.pt"):
        coreaug.load_run(out)
    _finished(out, resume=True)
    assert coreaug.load_run(out).class_names


@pytest.mark.parametrize("weights", ["extra key", "other channels", "not a checkpoint"])
def test_a_pretrained_file_that_does_not_fit_leaves_no_run_folder_behind(tmp_path, weights):
    """It was read only after config.json was written, leaving a run that predict called unfinished."""
    import torch

    path = tmp_path / "w.pt"
    if weights == "not a checkpoint":
        path.write_text("not weights\n")
    else:
        state = coreaug.models.create_model("cnn", 1 if weights == "other channels" else 3, 10).state_dict()
        torch.save({**state, "extra.weight": torch.zeros(1)} if weights == "extra key" else state, path)
    with pytest.raises(coreaug.UsageError, match=r"w\.pt (does not fit|is not a readable torch checkpoint)"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, pretrained=str(path), out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # nor is an existing folder written to
    with pytest.raises(coreaug.UsageError):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, pretrained=str(path), out=str(tmp_path / "run")))
    assert list((tmp_path / "run").iterdir()) == []


def test_a_resume_of_a_finished_run_reports_it_and_writes_nothing(tmp_path, monkeypatch):
    """It rewrote config.json, model.pt and summary.json (recording the new process's threads and device),
    and failed on a read-only folder."""
    import coreaug.training.run_files as run_files

    out = tmp_path / "run"
    first = _finished(out, epochs=2)
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}

    def read_only(path, *args, **kwargs):
        raise OSError(30, "Read-only file system", path)
    monkeypatch.setattr(run_files, "atomic_write", read_only)
    again = _finished(out, epochs=2, resume=True)
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
    assert again.history == first.history and again.final_test_accuracy == first.final_test_accuracy


def _stop_at_last_metrics(monkeypatch, epochs):
    """save_epoch that, at the last epoch, replaces checkpoint.pt and is killed before metrics.jsonl."""
    real = RunFolder.save_epoch

    def save_epoch(self, checkpoint, history):
        if len(history) < epochs:
            return real(self, checkpoint, history)
        import torch
        from coreaug.files import atomic_write

        atomic_write(self.file("checkpoint.pt"), lambda f: torch.save(checkpoint, f), mode="wb")
        raise KeyboardInterrupt  # where a kill -9 between the two writes stops the run
    monkeypatch.setattr(RunFolder, "save_epoch", save_epoch)


def test_a_run_stopped_between_its_last_checkpoint_and_metrics_finishes_with_every_epoch(tmp_path, monkeypatch):
    """The resume ran no epoch and wrote model.pt and summary.json, leaving metrics.jsonl an epoch short for good."""
    whole = _finished(tmp_path / "whole", epochs=2)
    out = tmp_path / "run"
    _stop_at_last_metrics(monkeypatch, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        _finished(out, epochs=2)
    monkeypatch.undo()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = _finished(out, epochs=2, resume=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == resumed.history and len(rows) == 2
    assert [m["test_accuracy"] for m in rows] == [m["test_accuracy"] for m in whole.history]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_a_finished_run_whose_metrics_lack_its_last_epoch_gets_them_back_on_resume(tmp_path):
    """(as a resume before this fix left it): the checkpoint's history is written, nothing else."""
    out = tmp_path / "run"
    first = _finished(out, epochs=2)
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    (out / "metrics.jsonl").write_text(lines[0])
    summary = (out / "summary.json").read_bytes()
    _finished(out, epochs=2, resume=True)
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == first.history
    assert (out / "summary.json").read_bytes() == summary


def test_a_resume_that_finds_no_checkpoint_says_it_starts_from_the_first_epoch(tmp_path):
    """Only a missing folder was announced: a run stopped in its first epoch began again silently."""
    out = tmp_path / "run"
    assert cli("train", *CLI_TINY, "--epochs", "1", "--out", out).returncode == 0
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "config.json").write_bytes((out / "config.json").read_bytes())  # all a first-epoch stop keeps
    (tmp_path / "empty").mkdir()
    loud = [a for a in CLI_TINY if a != "--quiet"]
    proc = cli("train", *loud, "--epochs", "1", "--out", stopped, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"--resume: the run in {stopped} stopped before its first epoch ended (nothing to resume); " \
           "starting it again" in proc.stdout
    proc = cli("train", *loud, "--epochs", "1", "--out", tmp_path / "empty", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"--resume: no run in {tmp_path / 'empty'} yet; starting it" in proc.stdout
