"""Nothing in a run folder runs code when read: checkpoint.pt holds an allow-list of types."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import coreaug
from coreaug.files import atomic_write
from coreaug.training.run_files import RunFolder

TINY = dict(dataset="synthetic", model="cnn", train_limit=64, test_limit=32, batch_size=32, quiet=True,
            strategy="coreset", select_every=1)
CLI_TINY = ["--dataset", "synthetic", "--model", "cnn", "--train-limit", "64", "--test-limit", "32",
            "--batch-size", "32", "--quiet", "--strategy", "coreset", "--select-every", "1"]


class MakesFolder:
    """Unpickling this calls os.mkdir(path): a stand-in for any code a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def tamper(out, change):
    """Rewrite out/checkpoint.pt after `change(checkpoint)`, as someone else's archive could."""
    path = out / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


def test_a_checkpoint_whose_unpickling_would_run_code_is_refused_and_runs_nothing(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "written-by-the-checkpoint"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    tamper(out, lambda checkpoint: checkpoint["history"][0].update(note=MakesFolder(marker)))

    with pytest.raises(coreaug.UsageError, match=r"checkpoint\.pt holds objects coreaug does not load "
                                                 r"\(posix\.mkdir\).*--overwrite.*if you trust the file"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), resume=True))
    assert not marker.exists()
    torch.load(out / "checkpoint.pt", weights_only=False)  # the payload is live: a full unpickling runs it
    assert marker.is_dir()


def test_the_cli_refuses_such_a_checkpoint_in_one_line_with_exit_2(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "written-by-the-checkpoint"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    tamper(out, lambda checkpoint: checkpoint.update(extra=MakesFolder(marker)))

    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *CLI_TINY, "--epochs", "1", "--out", str(out),
                           "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{out / 'checkpoint.pt'} holds objects coreaug does not load" in proc.stderr
    assert not marker.exists()


def test_a_checkpoint_of_random_bytes_is_named_corrupt_not_foreign(tmp_path):
    """It was called a file of foreign objects, pointing the user at torch.load(weights_only=False)."""
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    (out / "checkpoint.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(coreaug.UsageError, match=r"checkpoint\.pt is truncated or corrupt") as caught:
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), resume=True))
    assert "weights_only=False" not in str(caught.value)


def test_a_type_that_torch_would_load_but_a_checkpoint_never_holds_is_refused(tmp_path):
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    tamper(out, lambda checkpoint: checkpoint["history"][0].update(tags={1, 2}))  # weights_only allows sets

    # (torch 2.5 and older refuse the set while loading, and the message names its class only)
    where = r"a builtins\.set at checkpoint\['history'\]\[0\]\['tags'\]"
    refused = rf"holds objects coreaug does not load \(({where}|(__builtin__|builtins)\.set)\)"
    with pytest.raises(coreaug.UsageError, match=refused):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), resume=True))


def test_a_checkpoint_written_before_this_check_resumes_to_the_same_run(tmp_path, monkeypatch):
    config = dict(TINY, epochs=2, strategy="coreset-history")  # a selection and loss sums in the method state
    whole = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "whole")))

    def old_save_then_stop(self, checkpoint, history):  # save_epoch as it was: torch.save of the dict as is
        atomic_write(self.file("checkpoint.pt"), lambda f: torch.save(checkpoint, f), mode="wb")
        atomic_write(self.file("metrics.jsonl"), lambda f: f.writelines(json.dumps(m) + "\n" for m in history))
        raise KeyboardInterrupt
    monkeypatch.setattr(RunFolder, "save_epoch", old_save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "split")))
    monkeypatch.undo()
    resumed = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "split"), resume=True))

    keys = ("train_loss", "test_loss", "test_accuracy", "n_trained", "selected")
    assert [[m[k] for k in keys] for m in resumed.history] == [[m[k] for k in keys] for m in whole.history]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_numpy_scalars_are_saved_as_python_numbers(tmp_path):
    folder = RunFolder(tmp_path)
    folder.save_epoch({"epoch": 1, "history": [{"loss": np.float32(0.5)}], "weights": torch.ones(2)}, [{"epoch": 0}])
    loaded = folder._load_checkpoint()
    assert type(loaded["history"][0]["loss"]) is float and loaded["history"][0]["loss"] == 0.5


def test_saving_a_type_resume_would_refuse_is_an_error_at_once(tmp_path):
    with pytest.raises(TypeError, match=r"numpy\.ndarray at checkpoint\['selection'\]"):
        RunFolder(tmp_path).save_epoch({"epoch": 1, "selection": np.arange(3)}, [{"epoch": 0}])
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_corrupt_checkpoints_advice_is_overwrite_and_following_it_trains(tmp_path):
    """It said "remove it to train the run from the start", which a resume then refused (results, no checkpoint)."""
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    (out / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(coreaug.UsageError, match=r"truncated or corrupt .*; pass --overwrite to train the run again"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), resume=True))
    assert coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out), overwrite=True)).history


def test_a_folder_that_takes_no_file_is_named_not_the_temporary_one(tmp_path, monkeypatch):
    """A read-only --out was reported as "Read-only file system: OUT/.tmp-2kzp57pc", a file the user never made."""
    import errno
    import tempfile

    def refused(dir, prefix):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, prefix + "2kzp57pc"))
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "config.json", lambda f: f.write("{}"))
    assert caught.value.errno == errno.EROFS and caught.value.filename == str(tmp_path)
