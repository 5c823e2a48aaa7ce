"""`coreaug train` from the command line: a run, and user mistakes as one line + exit 2."""
import json
import subprocess
import sys

import pytest

TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--epochs", "1"]


def coreaug(*args, env_home=None):
    return subprocess.run([sys.executable, "-m", "coreaug", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_python_m_coreaug_train_writes_a_run(tmp_path):
    proc = coreaug("train", "--subset", "0.3", *TINY, "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "final test accuracy" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["dataset"] == "synthetic" and summary["epochs"] == 1
    assert summary["config"]["strategy"] == "random"  # the default, set by the CIFAR-10 grids


def test_progress_bar_and_epoch_line_unless_quiet(tmp_path):
    proc = coreaug("train", *TINY, "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "img/s" in proc.stderr and "epoch 1/1" in proc.stdout + proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--augment", "mixup"], "unknown augment 'mixup'"),
    (["--strategy", "craig"], "'craig' is not one of 'coreset', 'random'"),
    (["--subset", "1.5"], "subset must be a fraction in (0, 1]"),
    (["--subset", "abc"], "'abc' is not a valid float"),
    (["--select-every", "0"], "select_every must be an integer >= 1"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/nowhere"], "dataset 'cifar10' not found"),
    (["--compile-mode", "default"], "compile_mode 'default' applies to a compiled step; add compile (--compile)"),
    (["--compile", "--compile-mode", "fast"], "'fast' is not one of 'auto', 'default'"),
    (["--dataset", "{tmp}/typo"], "dataset folder {tmp}/typo does not exist"),
    (["--dataset", "{tmp}/typo", "--image-size", "32"], "dataset folder {tmp}/typo does not exist"),
    (["--schedule", "multistep", "--milestones", ""], "schedule 'multistep' divides the learning rate at its "
                                                     "milestones and none were given"),
    (["--device", "cuda:x"], "device must be 'auto', 'cpu' or 'cuda[:N]', got 'cuda:x'"),
])
def test_user_mistakes_are_one_line_exit_2_nothing_written(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = coreaug("train", *TINY, *args, "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert message.format(tmp=tmp_path) in proc.stderr and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_out_with_a_different_config_needs_another_folder(tmp_path):
    assert coreaug("train", *TINY, "--out", tmp_path / "run", "--quiet").returncode == 0
    proc = coreaug("train", *TINY, "--subset", "0.5", "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 2 and "different config" in proc.stderr


def test_cifar10_trains_from_files_in_the_real_format(tmp_path):
    from test_data_cifar import write_cifar10
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", per_batch=20)
    proc = coreaug("train", "--subset", "0.3", "--dataset", "cifar10", "--data-dir", tmp_path / "data",
                   "--epochs", "1", "--batch-size", "32", "--quiet", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["n_trained"] == 100 + 30 and metrics["n_augmented"] == 30
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["model"] == "resnet20"  # the CIFAR default


def test_out_starting_with_a_tilde_is_in_the_home_folder_not_a_folder_named_tilde(tmp_path):
    import os

    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *TINY, "--quiet", "--out", "~/runs/x"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path / "cwd",
                          env={**os.environ, "HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "home" / "runs" / "x" / "summary.json").exists()
    assert not (tmp_path / "cwd" / "~").exists() and str(tmp_path / "home" / "runs" / "x") in proc.stdout
