"""Logs where users look: TensorBoard scalars of every epoch, and a run folder even without --out."""
import json
import os
import re
import subprocess
import sys

import pytest

import coreaug
from coreaug.training.scalars import scalar_tag

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, quiet=True)
CLI_TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
            "--epochs", "1", "--quiet"]


def read_scalars(folder):
    """{tag: [(step, value), ...]} of the TensorBoard event files in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder)).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_holds_every_epochs_metrics_as_scalars(tmp_path):
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=2, out=str(tmp_path / "run"), tensorboard=True))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    for tag in ("loss/train", "loss/test", "accuracy/train", "accuracy/test", "lr", "seconds/epoch",
                "seconds/selection", "seconds/eval", "examples/augmented", "selection/overlap"):
        assert tag in scalars, sorted(scalars)
    for name in ("train_loss", "test_accuracy", "lr", "epoch_seconds", "n_augmented"):
        assert scalars[scalar_tag(name)] == [(m["epoch"] + 1, pytest.approx(m[name], rel=1e-6)) for m in history]


@pytest.mark.parametrize("name, tag", [
    ("train_loss", "loss/train"), ("test_accuracy", "accuracy/test"), ("estimate_seconds", "seconds/estimate"),
    ("selection_noisy_fraction", "selection/noisy_fraction"), ("n_trained", "examples/trained"), ("lr", "lr"),
])
def test_scalar_tags_group_like_figures(name, tag):
    assert scalar_tag(name) == tag


def test_tensorboard_needs_a_run_folder():
    with pytest.raises(ValueError, match="give out"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, tensorboard=True))


def test_without_out_a_run_writes_to_runs_and_says_where_in_its_first_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *CLI_TINY, "--subset", "0.25"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    match = re.fullmatch(r"run folder: (runs/synthetic-random-0\.25-\d{8}-\d{6}-seed0)", first)
    assert match, first
    assert os.listdir(tmp_path / "runs") == [os.path.basename(match[1])]
    assert (tmp_path / match[1] / "model.pt").exists()


def test_resume_without_out_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *CLI_TINY, "--resume"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "give --out" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_fresh_start_into_a_runs_folder_clears_its_old_events(tmp_path):
    settings = dict(**TINY, epochs=1, out=str(tmp_path / "run"), tensorboard=True)
    coreaug.train(coreaug.TrainConfig(**settings))
    coreaug.train(coreaug.TrainConfig(**settings, overwrite=True))  # the run starts again
    assert len(os.listdir(tmp_path / "run" / "tensorboard")) == 1
    assert [step for step, _ in read_scalars(tmp_path / "run" / "tensorboard")["loss/train"]] == [1]


def test_a_run_killed_between_its_checkpoint_and_its_scalars_has_every_epoch_once_after_resume(tmp_path, monkeypatch):
    """The epoch checkpointed but not yet in TensorBoard was missing for good: steps [1, 3, 4]."""
    from coreaug.training.run_files import RunFolder

    config = dict(TINY, epochs=4, out=str(tmp_path / "run"), tensorboard=True)
    real = RunFolder._write_scalars

    def killed_at_the_second(self, metrics, purge_step=None):
        if metrics["epoch"] == 1:
            raise KeyboardInterrupt
        return real(self, metrics, purge_step)
    monkeypatch.setattr(RunFolder, "_write_scalars", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config))
    monkeypatch.setattr(RunFolder, "_write_scalars", real)
    coreaug.train(coreaug.TrainConfig(**config, resume=True))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    assert scalars["loss/train"] == [(m["epoch"] + 1, pytest.approx(m["train_loss"], rel=1e-6)) for m in history]


def test_a_resumed_run_whose_scalars_were_written_keeps_each_epoch_once(tmp_path):
    from test_training_run import train_to_first_checkpoint

    config = dict(TINY, epochs=3, out=str(tmp_path / "run"), tensorboard=True)
    train_to_first_checkpoint(coreaug.TrainConfig(**config))
    coreaug.train(coreaug.TrainConfig(**config, resume=True))
    assert [step for step, _ in read_scalars(tmp_path / "run" / "tensorboard")["loss/train"]] == [1, 2, 3]


def test_a_usage_mistake_names_no_run_folder(tmp_path):
    """It printed "run folder: runs/..." for a folder that the refused run never made."""
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *CLI_TINY, "--subset", "1.5"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "subset must be a fraction" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "runs").exists()


def test_without_a_terminal_progress_is_a_plain_line_now_and_then(tmp_path, monkeypatch, capsys):
    """A log file got a bar's carriage-return frames, about 1 KB a second, as one endless line."""
    from coreaug import progress

    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 0)  # every step, here: a long epoch's every minute
    coreaug.train(coreaug.TrainConfig(**{**TINY, "quiet": False}, epochs=1))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert re.search(r"^epoch 1/1: 32/\d+ img \(\d+%\)  loss [\d.]+  acc [\d.]+%  \d+ img/s$", err, re.M), err
