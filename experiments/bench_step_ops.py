"""Benchmark: aten ops and kernel launches per eager training step, counted on the CPU.

On a GPU a small model's eager step is bound by launching kernels (experiments/results/gpu.md),
and every aten op but a view launches at least one. So the GPU cost of a step can be counted on
the CPU: a ``TorchDispatchMode`` counts every op that `coreaug.train`'s epochs dispatch, in the
second epoch of a short run (the first warms the caches), and divides by the epoch's steps (the
epoch's own set-up, a few dozen ops, is spread over them). "kernels" leaves out the ops that launch
nothing (views, empty tensors, profiler records); "strong call" is the share of the strong policy
(kernels issued from coreaug/augment code other than the weak policy's: the strong policy's, and
the epoch's draw keys spread over its steps). With ``--before-code DIR``
the coreaug package in DIR is counted beside (in a child process), e.g. the commit before a change:

    git worktree add /tmp/before COMMIT
    OMP_NUM_THREADS=1 python experiments/bench_step_ops.py --before-code /tmp/before

The counts do not depend on the machine's load; they do on the torch version (decompositions).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import coreaug  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from script_checks import checked, run_child, these_counters

COUNTERS = these_counters()  # the same counters for this tree and a --before-code one

# name: TrainConfig settings beside the shared ones (batch 128, 1,280 examples, 2 epochs, CPU)
CONFIGS = {
    "digits cnn, random 0.3, randaugment": dict(dataset="digits", model="cnn", strategy="random", subset=0.3,
                                                augment="randaugment"),
    "3x32x32 cnn, random 0.3, trivialaugment": dict(dataset="synthetic", model="cnn", strategy="random",
                                                    subset=0.3, augment="trivialaugment"),
    "3x32x32 cnn, random 0.3, autoaugment": dict(dataset="synthetic", model="cnn", strategy="random", subset=0.3,
                                                 augment="autoaugment"),
    "3x32x32 cnn, random 0.1, maxloss": dict(dataset="synthetic", model="cnn", strategy="random", subset=0.1,
                                             augment="maxloss"),
    "3x32x32 resnet20, none (weak only)": dict(dataset="synthetic", model="resnet20", strategy="none"),
    "3x32x32 resnet20, random 0.3, randaugment": dict(dataset="synthetic", model="resnet20", strategy="random",
                                                      subset=0.3, augment="randaugment"),
    "3x32x32 resnet20, random 0.3, randaugment, --augment-steps 8": dict(
        dataset="synthetic", model="resnet20", strategy="random", subset=0.3, augment="randaugment", augment_steps=8),
}
SHARED = dict(batch_size=128, train_limit=1280, test_limit=64, epochs=2, seed=0, quiet=True, device="cpu")
WEAK_MODULES = ("coreaug.augment.flip_crop", "coreaug.augment.weak_cutout")


class StepCounter(COUNTERS.OpCounter):
    """OpCounter's counts, and the strong policy's kernels (the innermost coreaug module on the
    stack is an augment one, not weak's)."""

    def __init__(self):
        super().__init__()
        self.strong = 0

    def count(self, name):
        super().count(name)
        if name not in COUNTERS.LAUNCH_FREE:
            self.strong += _strong_policy()


def _strong_policy() -> bool:
    """An augment module on the stack, and not the weak policy's (whose draws run in sampling's)."""
    frame, augment = sys._getframe(1), False
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module in WEAK_MODULES:
            return False
        augment = augment or module.startswith("coreaug.augment.")
        frame = frame.f_back
    return augment


def count(settings: dict) -> dict:
    """Per-step counts of the second epoch of a 2-epoch run with ``settings``."""
    from coreaug.training import trainer

    epochs, original = [], trainer._train_epoch

    def counted_epoch(*args, **kwargs):
        counter, audit = StepCounter(), COUNTERS.SyncAudit()
        syncs = []  # the syncs counted so far, at the end of each step
        bar_update = trainer.ProgressBar.update

        def update(self, *a, **k):  # one call a step, at its end
            syncs.append(audit.total)
            return bar_update(self, *a, **k)

        trainer.ProgressBar.update = update
        try:
            with audit, counter:
                result = original(*args, **kwargs)
        finally:
            trainer.ProgressBar.update = bar_update
        # Syncs inside the steps: from the first step's end to the last's (not the epoch's set-up and
        # end, which read the epoch's totals once, by design)
        epochs.append((counter, (syncs[-1] - syncs[0]) / max(1, len(syncs) - 1), len(syncs)))
        return result

    trainer._train_epoch = counted_epoch
    try:
        coreaug.train(coreaug.TrainConfig(**{**SHARED, **settings}))
    finally:
        trainer._train_epoch = original
    counter, syncs, steps = epochs[-1]
    return {"ops": counter.total / steps, "kernels": counter.kernels / steps, "strong": counter.strong / steps,
            "syncs": syncs, "steps": steps}


def count_all(names) -> dict:
    torch.manual_seed(0)
    return {name: count(CONFIGS[name]) for name in names}


def _commit(folder: str) -> str:
    try:
        return subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


def render(now: dict, before: dict, command: str, before_code) -> str:
    here = _commit(str(Path(__file__).resolve().parent))
    lines = [
        "# Ops and kernel launches per eager training step",
        "",
        f"Command: `{command}`",
        "",
        f"torch {torch.__version__}, CPU, `coreaug.train` runs of 2 epochs (batch 128, 1,280 examples, seed 0), "
        "counted in the second epoch and divided by its steps (experiments/bench_step_ops.py's docstring). "
        "kernels: ops that launch at least one kernel on a GPU (not views); strong call: the kernels issued by "
        "coreaug.augment outside the weak policy (the strong policy, and the epoch's draw keys: the weak-only "
        "rows' few); syncs after: host syncs a step inside the steps (SyncAudit; the epoch's end reads its "
        f"totals once, by design). After: commit {here}'s tree"
        + (f"; before: {before_code} (commit {_commit(before_code)})." if before_code else "."),
        "",
        "| step | ops before | ops after | kernels before | kernels after | strong call before | "
        "strong call after | syncs after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in now.items():
        old = before.get(name)

        def cell(field, old=old):
            return f"{old[field]:.0f}" if old else "—"

        lines.append(f"| {name} | {cell('ops')} | {row['ops']:.0f} | {cell('kernels')} | {row['kernels']:.0f} | "
                     f"{cell('strong')} | {row['strong']:.0f} | {row['syncs']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(str(i) for i in range(len(CONFIGS))),
                        help="which rows, by number (0 to %d)" % (len(CONFIGS) - 1))
    parser.add_argument("--before-code", help="a folder holding an older coreaug package, counted beside")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "step_ops.md"),
                        help="the markdown table's path (default: results/step_ops.md beside this script)")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = checked(parser, parser.parse_args(argv))
    try:
        rows = [int(i) for i in args.configs.split(",")]
        names = [list(CONFIGS)[i] for i in rows if 0 <= i < len(CONFIGS)]
    except ValueError:
        names = []
    if not names or len(names) != len(args.configs.split(",")):
        parser.error(f"--configs takes numbers from 0 to {len(CONFIGS) - 1} separated by commas, got {args.configs}")
    if args.json_only:  # the child process of --before-code
        print(json.dumps(count_all(names)))
        return
    before = {}
    if args.before_code:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(args.before_code))
        done = run_child([sys.executable, os.path.abspath(__file__), "--json-only", "--configs", args.configs],
                         "counting --before-code", env=env)
        before = json.loads(done.stdout.strip().splitlines()[-1])
    now = count_all(names)
    threads = os.environ.get("OMP_NUM_THREADS")
    command = " ".join(([f"OMP_NUM_THREADS={threads}"] if threads else []) + ["python", "experiments/bench_step_ops.py",
                       *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    Path(args.out).write_text(render(now, before, command, args.before_code))
    for name, row in now.items():
        print(f"{name}: {row['ops']:.0f} ops, {row['kernels']:.0f} kernels a step")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
