"""`coreaug train` from the command line: a run, and user mistakes as one line + exit 2."""
import json
import shlex
import subprocess
import sys

import pytest

TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--epochs", "1"]


def coreaug(*args, env_home=None):
    return subprocess.run([sys.executable, "-m", "coreaug", *map(str, args)], capture_output=True, text=True, timeout=300)


def coreaug_here(*args):
    """The console script's `main` (usage mistakes in one line, as `python -m coreaug` prints them) in
    this process, for a command that stops before training: (exit code, stdout, stderr). A process
    start costs about 2 s."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from coreaug.cli.main import main

    with CliRunner().isolation() as (stdout, stderr, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def test_python_m_coreaug_train_writes_a_run(tmp_path):
    proc = coreaug("train", "--subset", "0.3", *TINY, "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "final test accuracy" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["dataset"] == "synthetic" and summary["epochs"] == 1
    assert summary["config"]["strategy"] == "random"  # the default, set by the CIFAR-10 grids


def test_epoch_lines_without_carriage_return_frames_when_stderr_is_not_a_terminal(tmp_path):
    """A log file (`> log 2>&1`, nohup, sbatch) gets the per-epoch lines, not a bar's endless \\r frames."""
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *TINY, "--epochs", "2", "--out",
                           str(tmp_path / "run")], capture_output=True, timeout=300)  # bytes: text mode drops \r
    assert proc.returncode == 0, proc.stderr
    assert b"epoch 1/2" in proc.stdout and b"epoch 2/2" in proc.stdout
    assert b"\r" not in proc.stderr + proc.stdout


def test_progress_bar_on_a_terminal(tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import termios
    import threading

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "coreaug", "train", *TINY, "--out", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    chunks = []

    def read():  # while the run writes: a full terminal buffer would block it
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the run closed its end
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=read)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=60)
    os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal
    assert "img/s" in terminal and "\r" in terminal and "epoch 1/1" in stdout


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--augment", "mixup"], "unknown augment 'mixup'"),
    (["--strategy", "craig"], "'craig' is not one of 'coreset', 'random'"),
    (["--subset", "1.5"], "subset must be a fraction in (0, 1]"),
    (["--subset", "abc"], "'abc' is not a valid float"),
    (["--select-every", "0"], "--select-every must be an integer >= 1"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/nowhere"], "dataset 'cifar10' not found"),
    (["--compile-mode", "default"], "--compile-mode 'default' applies to a compiled step; add --compile or leave"),
    (["--compile", "--compile-mode", "fast"], "'fast' is not one of 'auto', 'default'"),
    (["--dataset", "{tmp}/typo"], "dataset folder {tmp}/typo does not exist"),
    (["--dataset", "{tmp}/typo", "--image-size", "32"], "dataset folder {tmp}/typo does not exist"),
    (["--schedule", "multistep", "--milestones", ""], "schedule 'multistep' divides the learning rate at its "
                                                     "milestones and none were given"),
    (["--device", "cuda:x"], "device must be 'auto', 'cpu' or 'cuda[:N]', got 'cuda:x'"),
])
def test_user_mistakes_are_one_line_exit_2_nothing_written(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = coreaug_here("train", *TINY, *args, "--out", tmp_path / "run")
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


def test_a_built_in_dataset_takes_its_own_image_size_and_refuses_the_folder_default_in_one_line(tmp_path):
    """--image-size 64 (the folder default) was accepted for 32 px synthetic images and recorded; 32 was refused."""
    proc = coreaug("train", *TINY, "--image-size", "64", "--out", tmp_path / "d64", "--quiet")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and not (tmp_path / "d64").exists()
    assert "synthetic's images are 32 px, so pass 32 or leave --image-size out (got 64)" in proc.stderr
    proc = coreaug("train", *TINY, "--image-size", "32", "--out", tmp_path / "d32", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "d32" / "config.json").read_text())["image_size"] == 32


def test_a_dataset_found_nowhere_is_one_line_whose_list_of_folders_ends_before_how_to_get_it(tmp_path):
    """The searched folders ran into the advice: ".../usr/share/datasets/cifar10 To get it: ..."."""
    import os

    env = {**os.environ, "HOME": str(tmp_path / "home"), "COREAUG_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", "cifar10", "--epochs", "1",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and not (tmp_path / "run").exists()
    assert "dataset 'cifar10' not found" in proc.stderr
    assert "cifar10. To get it: pass --download (Python: " in proc.stderr


def test_dataset_help_lists_every_registered_dataset():
    """It was written out by hand and missed synthetic-cifar."""
    import coreaug as api

    proc = coreaug("train", "--help")
    text = " ".join(proc.stdout.split())
    assert all(name in text for name in api.available_datasets()) and "synthetic-cifar" in text


LONG = [("--dataset", "synthetic"), ("--train-limit", "64"), ("--test-limit", "32"), ("--batch-size", "32"),
        ("--epochs", "5000")]


def start_run(out, *extra, stdout=subprocess.DEVNULL):
    """A long `coreaug train` (Ctrl-C reaching it as in a terminal); returns once it has checkpointed an epoch."""
    import signal

    from test_training_run_folder import wait_until_written

    args = [word for pair in LONG for word in pair]
    proc = subprocess.Popen([sys.executable, "-m", "coreaug", "train", *args, *extra, "--out", str(out)],
                            stdout=stdout, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: [signal.signal(signum, signal.SIG_DFL)  # (under nohup too)
                                                for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)])
    return wait_until_written(proc, out / "metrics.jsonl")


@pytest.mark.parametrize("signal_name, code, how", [("SIGINT", 130, "interrupted"),
                                                     ("SIGTERM", 143, "terminated (SIGTERM)"),
                                                     ("SIGHUP", 129, "terminated (SIGHUP)"),  # a dropped SSH session
                                                     ("SIGUSR1", 138, "terminated (SIGUSR1)")])  # Slurm's warning
def test_a_run_stopped_by_a_signal_says_after_which_epoch_and_how_to_continue(tmp_path, signal_name, code, how):
    """Ctrl-C printed an empty line and SIGTERM nothing: not that the run stopped, nor that --resume continues it."""
    import signal

    out = tmp_path / "run"
    proc = start_run(out, "--quiet")
    proc.send_signal(getattr(signal, signal_name))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, err
    done = len((out / "metrics.jsonl").read_text().splitlines())
    line = err.strip()
    # run as `python -m coreaug` (a job script's venv, not on PATH): continued the same way, not by `coreaug`
    program = shlex.join([sys.executable, "-m", "coreaug", "train"])
    assert line.startswith(f"{how}: the run stopped after epoch {done} of 5000; continue it with: {program} ")
    words = shlex.split(line.split("continue it with: ")[1])[3:]
    assert words[-3:] == ["--out", str(out), "--resume"]
    words.remove("--quiet")  # the flags given, in the command's order
    assert set(zip(words[1:-3:2], words[2:-3:2])) == set(LONG), words


def test_a_run_whose_stdout_closes_says_so_on_stderr(tmp_path):
    """`| head` or a `| tee` that died stopped the run with exit code 1 and no word on stderr."""
    out = tmp_path / "run"
    proc = start_run(out, stdout=subprocess.PIPE)
    assert proc.stdout.readline().startswith("epoch 1/5000")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and "Traceback" not in err, err
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert err.splitlines()[-1].startswith(f"stdout closed: the run stopped after epoch {done} of 5000; "
                                           f"continue it with: {shlex.join([sys.executable, '-m', 'coreaug'])} train ")
