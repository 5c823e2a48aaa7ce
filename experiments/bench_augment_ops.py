"""Benchmark: aten ops dispatched per augmentation policy call, and CPU seconds per call.

On a GPU every aten op is at least one kernel launch, and a small batch's augmentation is bound
by launches, not arithmetic; so the measure of a policy's cost there is how many ops one call
dispatches. They are counted here on the CPU with a ``TorchDispatchMode`` (every op, views
included), at the sizes the trainer calls the strong policy with (a step's copies: 13 and 38 are
batch 128 at 10% and 30%), on 3x32x32 uint8 images, grouped by op name and by the coreaug module
that issued them. The syncing ops of ``coreaug.training.sync_audit.SyncAudit`` are counted too
(they must stay 0). Each call draws from a ``torch.Generator``; the "key per image" column counts
the call as the trainer makes it, drawing from a ``RandomSource`` with a key per image and its
first numbers made ahead (``RandomSource.ahead``, outside the call). Max-loss transforms are
counted with their candidates' forward passes through a registry model (``cnn``), and without
the model's share (the ops issued while the model's forward runs). Seconds per call are the
best of several repeats on one thread.

    OMP_NUM_THREADS=1 python experiments/bench_augment_ops.py --save-before
    OMP_NUM_THREADS=1 python experiments/bench_augment_ops.py --before-code DIR

The first form records the counts and timings as the "before" figures
(experiments/results/augment_ops_before.json); the second writes the table
(experiments/results/augment_ops.md) with those figures beside the current ones, and with
``--before-code`` times the old code again beside the new, in the same run (DIR holds the old
``coreaug`` package, e.g. from ``git archive COMMIT coreaug | tar -x -C DIR``): the machine is
shared, so timings taken at different moments compare badly.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import coreaug  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from coreaug.augment import create_policy
from coreaug.models import create_model
from script_checks import checked, run_child, these_counters

COUNTERS = these_counters()  # the same counters for this tree and a --before-code one

POLICIES = ("randaugment", "trivialaugment", "autoaugment", "maxloss", "weak", "resized-crop",
            "cutout", "weak+randaugment+cutout")
COUNT_SIZES = (13, 38, 64, 128)
TIME_SIZES = (64, 512)
TIMED_POLICIES = ("randaugment", "trivialaugment", "autoaugment", "maxloss")
LARGE = (32, 3, 224, 224)  # a timing row on ImageNet-sized images: the dense trade-off
PATH_POLICIES = ("randaugment", "trivialaugment", "autoaugment")
PATH_SHAPES = ((3, 8), (3, 24), (3, 28), (3, 32), (3, 64), (1, 28))  # (channels, side)
PATH_SIZES = (13, 38, 128, 512)
RESULTS = Path(__file__).resolve().parent / "results"  # from any working folder
AUGMENT_DIR = str(Path("coreaug") / "augment")


class OpCounter(COUNTERS.OpCounter):
    """OpCounter's counts by op name, and by the coreaug module (file) whose code issued each op;
    ops issued inside a model's forward go to ``model``."""

    def __init__(self):
        super().__init__()
        self.by_module = collections.Counter()
        self.in_model = 0  # depth of model forwards running now

    def count(self, name):
        super().count(name)
        self.by_module["model" if self.in_model else _issuing_module()] += 1


def _issuing_module() -> str:
    """The innermost coreaug/augment file on the Python stack (its stem), or "other"."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if AUGMENT_DIR in filename:
            return Path(filename).stem
        frame = frame.f_back
    return "other"


class CountedModel(torch.nn.Module):
    """Wraps a model so that the ops of its forward are counted as the model's."""

    def __init__(self, model: torch.nn.Module, counter: OpCounter):
        super().__init__()
        self.model, self.counter = model, counter

    def forward(self, x):
        self.counter.in_model += 1
        try:
            return self.model(x)
        finally:
            self.counter.in_model -= 1


def sample_batch(n: int, shape=(3, 32, 32), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)


def make_call(name: str, images: torch.Tensor, counter=None, keyed: bool = False):
    """A zero-argument function making one call of policy ``name`` on ``images``; ``keyed``: drawing
    from a key per image with its numbers made ahead (a new source each call, as the trainer's steps)."""
    generator = torch.Generator().manual_seed(0)
    if keyed:
        from coreaug.augment.sampling import RandomSource  # (not in --before-code's older trees)
        keys = RandomSource.image_keys(torch.arange(images.shape[0]), 0)
        numbers = RandomSource.ahead(keys)
        policy = create_policy(name)
        return lambda: policy(images, RandomSource(keys, numbers))
    if name != "maxloss":
        policy = create_policy(name)
        return lambda: policy(images, generator)
    policy = create_policy("maxloss")  # randaugment, 4 candidates
    model = create_model("cnn", in_channels=images.shape[1], num_classes=10)
    if counter is not None:
        model = CountedModel(model, counter)
    labels = torch.randint(0, 10, (images.shape[0],), generator=torch.Generator().manual_seed(1))
    return lambda: policy(images, generator, model=model, labels=labels)


def count(name: str, n: int) -> dict:
    """Ops of one call (after a warm-up call that fills the policy's caches)."""
    counter = OpCounter()
    call = make_call(name, sample_batch(n), counter)
    call()
    with COUNTERS.SyncAudit() as audit, counter:
        call()
    modules = dict(counter.by_module.most_common())
    counted = {"ops": counter.total, "model_ops": modules.get("model", 0), "syncs": audit.total,
               "by_name": dict(counter.counts.most_common()), "by_module": modules}
    if name != "maxloss":  # (max-loss scores through the trainer's model: counted by bench_trainer)
        keyed, call = OpCounter(), make_call(name, sample_batch(n), keyed=True)
        call()
        with COUNTERS.SyncAudit() as audit, keyed:
            call()
        counted.update(keyed_ops=keyed.total, keyed_syncs=audit.total)
    return counted


def best_seconds(call, repeats: int, clock=time.perf_counter) -> float:
    call()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        call()
        best = min(best, clock() - start)
    return best


def cpu_seconds(repeats: int) -> dict:
    """CPU seconds (this process's, not the wall clock: robust to a loaded machine) per call,
    best of ``repeats``, for the timed policies at the timed sizes."""
    seconds = {}
    for name in TIMED_POLICIES:
        for n in TIME_SIZES:
            seconds[f"{name}@{n}"] = best_seconds(make_call(name, sample_batch(n)),
                                                  repeats if n <= 64 else max(3, repeats // 3), time.process_time)
    large = sample_batch(LARGE[0], LARGE[1:])
    for name in ("randaugment", "trivialaugment", "autoaugment"):
        seconds[f"{name}@{LARGE[0]}x{LARGE[2]}px"] = best_seconds(make_call(name, large), 3, time.process_time)
    return seconds


def cpu_seconds_of(code_dir: str, repeats: int) -> dict:
    """``cpu_seconds`` of the coreaug package in ``code_dir``, in a subprocess."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(code_dir))
    done = run_child([sys.executable, os.path.abspath(__file__), "--cpu-seconds-only", "--repeats", str(repeats)],
                     env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def path_seconds(repeats: int) -> dict:
    """CPU seconds per call of each timed policy with its layers forced dense, then forced kind
    by kind (`OpSet.use_dense`), and the path the CPU takes unforced: the data behind
    ``coreaug.augment.dense_layers.DENSE_MAX_VALUES`` and ``DENSE_MAX_BATCH_VALUES``."""
    from coreaug.augment.op_set import OpSet  # (not in --before-code's older trees)

    kept = OpSet.__dict__["use_dense"]  # the staticmethod itself: put back as it was
    chooses = OpSet.use_dense
    rows = {}
    try:
        for name in PATH_POLICIES:
            for channels, side in PATH_SHAPES:
                for n in PATH_SIZES:
                    images = sample_batch(n, (channels, side, side))
                    row = {"default": "dense" if chooses(images) else "kind by kind"}
                    for path, dense in (("dense", True), ("by_kind", False)):
                        OpSet.use_dense = staticmethod(lambda images, dense=dense: dense)
                        row[path] = best_seconds(make_call(name, images), repeats if n * side <= 38 * 32 else 3,
                                                 time.process_time)
                    OpSet.use_dense = kept
                    rows[f"{name}@{channels}x{side}px@{n}"] = row
                    print(f"{name} {n} x {channels}x{side}px: dense {row['dense'] * 1e3:.2f} ms, kind by kind "
                          f"{row['by_kind'] * 1e3:.2f} ms", flush=True)
    finally:
        OpSet.use_dense = kept
    return rows


def measure(repeats: int) -> dict:
    counts = {f"{name}@{n}": count(name, n) for name in POLICIES for n in COUNT_SIZES}
    seconds = {}
    for name in TIMED_POLICIES:
        for n in TIME_SIZES:
            seconds[f"{name}@{n}"] = best_seconds(make_call(name, sample_batch(n)),
                                                  repeats if n <= 64 else max(3, repeats // 3))
            print(f"{name} at {n}: {seconds[f'{name}@{n}'] * 1e3:.2f} ms", flush=True)
    large = sample_batch(LARGE[0], LARGE[1:])
    for name in ("randaugment", "trivialaugment", "autoaugment"):
        key = f"{name}@{LARGE[0]}x{LARGE[2]}px"
        seconds[key] = best_seconds(make_call(name, large), 3)
        print(f"{key}: {seconds[key] * 1e3:.1f} ms", flush=True)
    return {"counts": counts, "seconds": seconds, "paths": path_seconds(repeats), "load": _load(),
            "commit": _commit(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


def _cell(table: dict, key: str, field: str, fmt="{}") -> str:
    return fmt.format(table[key][field]) if key in table else "n/a"


def _ms(seconds: dict, key: str) -> str:
    return f"{seconds[key] * 1e3:.2f}" if key in seconds else "n/a"


def _where(by_module: dict, top: int = 6) -> str:
    return ", ".join(f"{module} {ops}" for module, ops in list(by_module.items())[:top])


def _names(by_name: dict, top: int = 8) -> str:
    return ", ".join(f"{name} {ops}" for name, ops in list(by_name.items())[:top])


def render(now: dict, before: dict, command: str) -> str:
    old, new = before.get("counts", {}), now["counts"]
    lines = [
        "# Ops dispatched per augmentation call, before and after (issue 26, part 2)",
        "",
        f"Command: `{command}`",
        "",
        "Counted on the CPU with a `TorchDispatchMode` (every aten op, views included; on CUDA "
        "each op is at least one kernel launch except views), one call on 3x32x32 uint8 images "
        "after a warm-up call, at a step's copies (13 and 38: batch 128 at 10% and 30%). "
        "maxloss: randaugment, 4 candidates, scored by the registry's `cnn` (its forward passes "
        "are the \"model\" column; \"policy\" is the rest). syncs: ops counted by "
        "`coreaug.training.sync_audit.SyncAudit` (must be 0; \"after\": both forms of the call). "
        f"Before: commit {before.get('commit', 'n/a')}; after: commit {now['commit']} "
        "(the working tree at that commit).",
        "",
        "| policy | images | ops before | ops after | ops after, key per image | policy ops before | "
        "policy ops after | model ops | syncs before | syncs after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in POLICIES:
        for n in COUNT_SIZES:
            key = f"{name}@{n}"
            policy_old = (old[key]["ops"] - old[key]["model_ops"]) if key in old else "n/a"
            policy_new = new[key]["ops"] - new[key]["model_ops"]
            keyed = new[key].get("keyed_ops", "—")
            syncs = new[key]["syncs"] + new[key].get("keyed_syncs", 0)
            lines.append(f"| {name} | {n} | {_cell(old, key, 'ops')} | {new[key]['ops']} | {keyed} | "
                         f"{policy_old} | {policy_new} | {new[key]['model_ops']} | "
                         f"{_cell(old, key, 'syncs')} | {syncs} |")
    lines += [
        "",
        "## Where the ops go (64 images)",
        "",
        "By the coreaug.augment module whose code dispatched them (\"other\": torch or the "
        "policy's caller), and the most frequent op names.",
        "",
        "| policy | when | by module | by op name |",
        "|---|---|---|---|",
    ]
    for name in POLICIES:
        key = f"{name}@64"
        for when, table in (("before", old), ("after", new)):
            if key in table:
                lines.append(f"| {name} | {when} | {_where(table[key]['by_module'])} | "
                             f"{_names(table[key]['by_name'])} |")
    old_s, new_s = before.get("seconds", {}), now["seconds"]
    old_cpu, new_cpu = now.get("cpu_before", {}), now.get("cpu", {})
    lines += [
        "",
        "## Milliseconds per call on the CPU",
        "",
        f"Best of several repeats, {now['threads']} torch thread(s) (OMP_NUM_THREADS=1), torch "
        f"{now['torch']}, a shared 2-core machine. \"wall\": wall-clock, before from the first run "
        f"(load `{before.get('load', 'n/a')}`), after from this one (load `{now['load']}`, "
        "`/proc/loadavg`): other processes' load inflates it. \"CPU\": this process's CPU time, "
        "less sensitive to load, "
        + (f"the old code (`--before-code`: commit {before.get('commit', 'n/a')}'s `coreaug`) and the new "
           "timed in the same run, alternating. " if old_cpu else "of the new code (no `--before-code`: no "
           "old CPU times). ")
        + "The "
        f"{LARGE[0]}x{LARGE[2]}px rows are {LARGE[0]} images of 3x{LARGE[2]}x{LARGE[3]}. Calls above "
        "`coreaug.augment.dense_layers.DENSE_MAX_VALUES` values an image or `DENSE_MAX_BATCH_VALUES` in all run "
        "kind by kind on the CPU (the new code; 2026e7d had no dense path).",
        "",
        "| policy | images | wall ms before | wall ms after | CPU ms before | CPU ms after |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key in new_s:
        name, size = key.split("@")
        lines.append(f"| {name} | {size} | {_ms(old_s, key)} | {_ms(new_s, key)} | "
                     f"{_ms(old_cpu, key)} | {_ms(new_cpu, key)} |")
    paths = now.get("paths", {})
    if paths:
        lines += [
            "",
            "## Dense or kind by kind on the CPU",
            "",
            "CPU ms per call (this process's CPU time, best of several repeats, one thread, the new code) with "
            "every layer forced dense (each op kind on the whole batch), then forced kind by kind (each kind on "
            "the examples that drew it; the same images, bit for bit), on uint8 images of C x side x side; "
            "\"default\": "
            "the path the CPU takes (`OpSet.use_dense`). On a GPU every call is dense.",
            "",
            "| policy | image (C x side) | images | dense ms | kind by kind ms | dense / kind by kind | default |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for key, row in paths.items():
            name, side, n = key.split("@")
            lines.append(f"| {name} | {side} | {n} | {row['dense'] * 1e3:.2f} | {row['by_kind'] * 1e3:.2f} | "
                         f"{row['dense'] / row['by_kind']:.2f} | {row['default']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9, help="timing repeats (best kept)")
    parser.add_argument("--save-before", action="store_true",
                        help="record this run as the before figures")
    parser.add_argument("--before", default=str(RESULTS / "augment_ops_before.json"),
                        help="the before figures' JSON file, read (written with --save-before); default: "
                        "%(default)s")
    parser.add_argument("--out", default=str(RESULTS / "augment_ops.md"),
                        help="the table written (default: %(default)s)")
    parser.add_argument("--before-code", help="a folder holding the old coreaug package, timed beside")
    parser.add_argument("--cpu-seconds-only", action="store_true", help=argparse.SUPPRESS)
    args = checked(parser, parser.parse_args(argv))
    if args.repeats < 1:
        parser.error(f"--repeats must be 1 or more (the best of them is kept), got {args.repeats}")
    if args.cpu_seconds_only:  # the subprocess of --before-code
        print(json.dumps(cpu_seconds(args.repeats)))
        return
    now = measure(args.repeats)
    if args.before_code:
        rounds = [(cpu_seconds_of(args.before_code, args.repeats), cpu_seconds(args.repeats)) for _ in range(2)]
        now["cpu_before"] = {k: min(r[0][k] for r in rounds) for k in rounds[0][0]}
        now["cpu"] = {k: min(r[1][k] for r in rounds) for k in rounds[0][1]}
    before_path = Path(args.before)
    if args.save_before:
        before_path.parent.mkdir(parents=True, exist_ok=True)
        before_path.write_text(json.dumps(now, indent=1) + "\n")
    before = json.loads(before_path.read_text()) if before_path.exists() else {}
    threads = os.environ.get("OMP_NUM_THREADS")
    command = " ".join(([f"OMP_NUM_THREADS={threads}"] if threads else []) +
                       ["python", "experiments/bench_augment_ops.py",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(now, before, command))
    for name in POLICIES:
        print(name, [now["counts"][f"{name}@{n}"]["ops"] for n in COUNT_SIZES],
              "syncs", [now["counts"][f"{name}@{n}"]["syncs"] for n in COUNT_SIZES])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
