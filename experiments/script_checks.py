"""Checks the benchmark scripts make on their arguments before measuring anything, so that a
run of minutes is not lost at its end, nor timed against the wrong code."""
import argparse
import importlib.util
import os
import subprocess
import sys


def checked(parser, args, min_epochs=1):
    """`args` (from `parser`) once checked: a CUDA `--device` needs a CUDA build of torch and a GPU,
    a `--baseline`/`--before-code` folder must hold a coreaug package (else the installed coreaug,
    this tree, would be timed as the baseline), `--epochs` at least `min_epochs` (the epochs a
    script's figures are taken from, after those it compiles or warms up in), and `--out`'s
    folder is made now."""
    epochs = getattr(args, "epochs", None)
    if isinstance(epochs, int) and epochs < min_epochs:
        parser.error(f"--epochs must be {min_epochs} or more (its figures come from epoch {min_epochs} on), "
                     f"got {epochs}")
    device = getattr(args, "device", None)
    if device and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {device} needs a CUDA build of torch and a GPU (--device cpu runs on the CPU)")
    for flag in ("baseline", "before_code"):
        folder = getattr(args, flag, None)
        if folder and not os.path.isfile(os.path.join(folder, "coreaug", "__init__.py")):
            parser.error(f"--{flag.replace('_', '-')} {folder} holds no coreaug package (coreaug/__init__.py): "
                         "give the folder of a checkout (git worktree add DIR COMMIT), not the package itself")
    out = getattr(args, "out", None)
    if isinstance(out, (str, os.PathLike)) and str(out) not in ("", "-"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return args


def run_child(argv, what="a measuring process", **kwargs):
    """subprocess.run(argv, capture_output=True, text=True, **kwargs), which ends this script in
    one line naming `what` failed (after the child's own error output) when the child fails."""
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode:
        sys.stderr.write(done.stderr)
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        sys.exit(f"{os.path.basename(sys.argv[0])}: {what} failed (exit status {done.returncode}): {last}")
    return done


def these_counters():
    """This checkout's coreaug/training/sync_audit.py (OpCounter, LAUNCH_FREE, SyncAudit), loaded
    from its file: a `--before-code` child, whose `coreaug` is an older tree, counts that tree's
    ops with the same counters as this tree's."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "coreaug", "training",
                        "sync_audit.py")
    spec = importlib.util.spec_from_file_location("coreaug_counters_of_this_tree", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def positive(text):
    """argparse type: an integer >= 1 (a count of repeats, steps, images, threads)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive integer, got {text!r}")
    return value


def positive_list(text):
    """argparse type: comma-separated integers >= 1, all parsed before the first is measured."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive integers, got {text!r}")
    return values
