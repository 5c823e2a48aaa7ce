"""Trainer benchmark: coreaug's strategies beside a hand-written loop of the same model, one table.

Usage:
    python experiments/bench_trainer.py [--dataset fashion-mnist] [--model cnn] [--epochs 2]
        [--train-limit N] [--test-limit N] [--batch-size B] [--image-size S] [--augment randaugment]
        [--device cpu|cuda] [--precision auto] [--compile | --modes eager,compiled]
        [--compile-mode MODE] [--fallback-mode MODE] [--rows hand,none,full,random:0.1,...]
        [--select-every 1] [--count-steps 8] [--count-modes eager,compiled] [--quick]
        [--out experiments/results/trainer_side_by_side.md] [--json PATH]

Each row of `--rows` is trained in each mode of `--modes` (eager; compiled: coreaug's
``--compile``, and the hand loop's compiled step) for `--epochs` epochs on the same data:

- ``hand``: experiments/hand_loop.py, a plain loop of the same model (``coreaug.create_model``),
  uint8 data on the device, batched pad-crop + flip, bf16 autocast on CUDA, channels_last,
  SGD Nesterov, the dataset's batch size, last partial batch dropped; weak augmentation only.
- ``STRATEGY[:FRACTION[:ESTIMATES]][@AUGMENT][/K]``: ``coreaug.train`` in append mode with R =
  ``--select-every`` (1: selection every epoch), e.g. ``none`` (weak only), ``full`` (every example
  strongly augmented too), ``random:0.1``, ``coreset:0.3:training``, ``maxloss:0.1@maxloss`` (the
  max-loss rule with max-loss transforms); AUGMENT defaults to ``--augment``. ``/K``: with
  ``--augment-steps K`` (one weak and one strong call augment K steps' batches), e.g. ``full/8``;
  eager only (``--compile`` refuses it, so its compiled row is skipped with the reason).

Columns (means over epochs 2 to `--epochs`, evaluation excluded):
examples/s and ms per step count training only (selection seconds apart; a coreaug step trains
`--batch-size` examples, originals and copies together); epoch s includes the selection.
aten ops / step: every op dispatched (views included) under a ``TorchDispatchMode``, eager only
(torch.compile runs compiled code eagerly under such a mode). launches / step: under
torch.profiler, eager and compiled: on CUDA the device's kernels, copies and fills; on the CPU
the outermost aten ops plus inductor's C++ kernels (hand_loop.count_launches; a compiled
coreaug step with inductor's Python wrapper, as on CUDA, not the C++ one it uses on the CPU,
whose calls the profiler does not show one aten op per launch). For coreaug
both are counted inside ``coreaug.train`` on a tiny run of the same settings (`--count-steps`
batches of the training set, 1 epoch against 2, no evaluation or selection between: the
difference is one epoch of steps, as coreaug.training.sync_audit counts syncs); only rows of the
modes in `--count-modes` are counted (a compiled coreaug row's count compiles its step three times
more: on a GPU with a short lease, `--count-modes eager`). syncs / step:
coreaug.training.sync_audit on a small synthetic run of the row's settings (eager; 0: the step
never waits on the device). compile s: the first epoch's extra seconds over the later ones,
compiled rows only. graphs after epoch 1: graphs torch.compile built after the first epoch
(0: no recompilation). CUDA graph skips: compiled rows that ask for CUDA graphs (``--compile-mode``
reduce-overhead or max-autotune; ``auto`` gives both loops reduce-overhead on CUDA):
the graphs inductor ran without them (0: every graph replays; torch logs why it skips,
"skipping cudagraphs due to ..."). augmentation share (eager rows): the weak policy timed at the trainer's
own call size (one call per step on `--batch-size` images) and the strong policy at its own
(one call per step on the step's copies: n_augmented / steps images, e.g. about f x B in append
mode), times the steps, over the training seconds; for ``hand`` its pad_crop_flip at B.
On CUDA a second table gives each row's host time per step in CUDA runtime and driver calls
(cudaLaunchKernel, cudaMemcpyAsync, cudaGraphLaunch, allocations...), from the counting runs'
profiles: a step's ms less that is Python and torch's dispatch.

The table and `--json` are rewritten after every row, so a run cut short keeps what it measured
(the JSON and the progress lines also give every epoch's seconds, `epochs_s`, the first included:
a one-off cost in one epoch shows there); a row that raises is named under the table ("Failed:
...") and the rows after it still run (the exit status is then 1); with ``--fallback-mode MODE`` a
compiled row that raised is measured again once in that compile mode (``default``: compiled
kernels without CUDA graphs), its mode written "compiled (default mode)"; the `## ` sections of an
earlier `--out` file (its reading, written by hand) are kept below the table.
``--quick``: 2 epochs, 4 counted steps (small datasets such as ``digits`` finish in minutes on a CPU).
"""
import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from coreaug.augment import RandomSource, create_policy
from coreaug.models import create_model
from coreaug.training.config import DATASET_DEFAULTS, FALLBACK_DEFAULTS
from coreaug.selection.rules import RULES
from coreaug.training.inputs import load_run_data
from coreaug.training.sync_audit import syncs_per_step
from coreaug.training.trainer import augment_call_steps
from coreaug.training.compiled_step import (COMPILE_MODES, CUDA_GRAPH_MODES, CudaGraphSkips, check_compilable,
                                            compile_mode)
from coreaug.errors import UsageError, one_line

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compiled_step import kept_sections  # noqa: E402
from hand_loop import OpCounter, count_launches, pad_crop_flip, record_compiled_kernels, run_hand_loop  # noqa: E402
from script_checks import checked  # noqa: E402

AUDIT = dict(dataset="synthetic", train_limit=96, test_limit=32, epochs=1, quiet=True, candidates=2)
ROWS = "hand,none,full,random:0.1,random:0.3,maxloss:0.1@maxloss"
MODES = ("eager", "compiled")


@dataclass
class Row:
    """One row's settings: the hand loop, or a coreaug strategy with its fraction, estimates and policy."""

    strategy: str
    fraction: float = None
    estimates: str = "clean"
    augment: str = None
    augment_steps: int = None

    @property
    def hand(self):
        return self.strategy == "hand"

    def settings(self):
        """TrainConfig fields of a coreaug row (`none` trains no strong policy: any name will do)."""
        augment = "randaugment" if self.augment == "weak" else self.augment
        return dict(strategy=self.strategy, estimates=self.estimates, augment=augment,
                    **({"subset": self.fraction} if self.fraction else {}),
                    **({"augment_steps": self.augment_steps} if self.augment_steps else {}))

    def label(self):
        text = self.strategy + (f" {self.fraction:g}" if self.fraction else "")
        text += " (training estimates)" if self.estimates == "training" else ""
        return text + (f", {self.augment_steps} steps a call" if self.augment_steps else "")


def parse_rows(text, augment):
    """[Row] from "hand,none,random:0.1,coreset:0.3:training,maxloss:0.1@maxloss,full/8"."""
    rows = []
    for item in text.split(","):
        spec, slash, steps = item.strip().partition("/")
        spec, _, policy = spec.partition("@")
        strategy, fraction, estimates = (spec.split(":") + [None, None])[:3]
        if slash and not (steps.isdigit() and int(steps) >= 1):
            raise SystemExit(f"--rows: {item!r}: /K takes a whole number of steps a call, like /8")
        if strategy == "hand":
            if slash:
                raise SystemExit(f"--rows: {item!r}: the hand loop augments each step's batch (no /K)")
            rows.append(Row("hand", augment="weak"))
            continue
        try:
            fraction = float(fraction) if fraction else None
        except ValueError:
            raise SystemExit(f"--rows: {item!r}: the fraction must be a number like 0.1") from None
        rows.append(Row(strategy, fraction, estimates or "clean", "weak" if strategy == "none" else policy or augment,
                        int(steps) if slash else None))
    return rows


def train_config(args, **fields):
    """The TrainConfig of a benchmark run: the command line's settings, then `fields`."""
    config = dict(dataset=args.dataset, model=args.model, epochs=args.epochs, train_limit=args.train_limit,
                  test_limit=args.test_limit, batch_size=args.batch_size, image_size=args.image_size,
                  device=args.device, quiet=True, select_every=args.select_every, precision=args.precision,
                  stream="never")
    config.update(fields)
    return coreaug.TrainConfig(**config)


def coreaug_compile(args, compiled):
    """TrainConfig's compile fields of a row: `--compile-mode` (resolved for the device) in
    coreaug's terms, as the hand loop is compiled."""
    if not compiled:
        return {"compile": False}
    return {"compile": True, "compile_mode": "default" if args.compile_mode is None else args.compile_mode}


def measure_coreaug(args, row, compiled):
    """Timing of a coreaug row: coreaug.train for `--epochs`, the steady epochs' means."""
    result = coreaug.train(train_config(args, **coreaug_compile(args, compiled), **row.settings()))
    history = result.history
    steady = history[1:] or history
    mean = lambda key: statistics.fmean(m[key] for m in steady)  # noqa: E731
    epoch, selection = mean("epoch_seconds"), mean("selection_seconds")
    n_trained = steady[0]["n_trained"]
    steps = math.ceil(n_trained / args.batch_size)
    training = epoch - selection
    return {
        "epoch_seconds": epoch, "selection_seconds": selection, "training_seconds": training,
        "n_trained": n_trained, "n_augmented": steady[0]["n_augmented"], "steps": steps,
        "examples_per_s": n_trained / training, "ms_per_step": 1000 * training / steps,
        "compile_seconds": history[0]["epoch_seconds"] - epoch if compiled and len(history) > 1 else None,
        "graphs_after_first": sum(m.get("graphs_compiled", 0) for m in history[1:]) if compiled else None,
        "graph_skips": sum(m["cudagraph_skips"] for m in history) if "cudagraph_skips" in history[0] else None,
        "accuracy": result.final_test_accuracy, "epochs_s": [m["epoch_seconds"] for m in history],
    }


def compile_refusal(args, row):
    """Why `--compile` refuses `row` (coreaug.training.compiled_step.check_compilable), or None."""
    try:
        check_compilable(train_config(args, compile=True, **row.settings()).resolved())
    except UsageError as error:
        return str(error)
    return None


def count_coreaug(args, row, compiled):
    """(aten ops or None, launches, runtime calls) per coreaug training step (the calls as
    `calls_per_step` gives them; none on the CPU), counted inside coreaug.train: a
    tiny run of `--count-steps` batches for 1 epoch and for 2 (selection only at the start,
    evaluation only at the end), the difference over the second epoch's steps. A compiled step
    on the CPU is counted with inductor's Python wrapper, as CUDA runs it: under the C++
    wrapper (the CPU's) the profiler does not see its calls one aten op per launch (it shows
    allocations and conversions in their place)."""
    if compiled and torch.device(args.device).type == "cpu":
        from unittest import mock

        from coreaug.training import compiled_step

        def python_wrapper(fn, *, device, fullgraph, mode="auto"):
            return torch.compile(fn, fullgraph=fullgraph)

        with mock.patch.object(compiled_step, "compile_unit", python_wrapper):
            return _count_coreaug(args, row, compiled)
    return _count_coreaug(args, row, compiled)


def _count_coreaug(args, row, compiled):
    fields = dict(row.settings(), **coreaug_compile(args, compiled), train_limit=args.count_steps * args.batch_size,
                  test_limit=args.batch_size, select_every=10 ** 6, eval_every=10 ** 6)
    if compiled:
        coreaug.train(train_config(args, **fields, epochs=2))  # compiled once, outside the counts

    def run(epochs, holder):
        holder.append(coreaug.train(train_config(args, **fields, epochs=epochs)))

    ops = None
    if not compiled:
        counts = []
        for epochs in (1, 2):
            with OpCounter() as counter:
                run(epochs, [])
            counts.append(counter.total)
        ops = counts[1] - counts[0]
    launches, results, calls = [], [], [{}, {}]
    for epochs, host in zip((1, 2), calls):
        launches.append(count_launches(lambda: run(epochs, results), args.device, host))
    steps = math.ceil(results[1].history[1]["n_trained"] / args.batch_size)
    return (None if ops is None else ops / steps), (launches[1] - launches[0]) / steps, \
        calls_per_step(calls[0], calls[1], steps)


def calls_per_step(one, two, steps):
    """{name: (microseconds, calls) per step} of the runtime calls of an epoch of `steps` steps:
    a two-epoch run's `two` less a one-epoch run's `one` (start-up and evaluation cancel)."""
    names = set(one) | set(two)
    per_step = {}
    for name in names:
        (micros_one, count_one), (micros_two, count_two) = one.get(name, (0.0, 0)), two.get(name, (0.0, 0))
        if count_two > count_one:
            per_step[name] = (max(0.0, micros_two - micros_one) / steps, (count_two - count_one) / steps)
    return per_step


def seconds_per_call(policy, images, context=None, repeats=5):
    """Best seconds of one `policy` call on `images` on their device, drawing as the trainer
    does: from a key per image, their first numbers made ahead (`DevicePlan.draws`)."""
    keys = RandomSource.image_keys(torch.arange(len(images), device=images.device), 0)
    numbers = RandomSource.ahead(keys)
    sync = torch.cuda.synchronize if images.device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats + 1):
        sync()
        start = time.perf_counter()
        policy(images, RandomSource(keys, numbers), **(context or {}))
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def augmentation_share(args, row, measured, images, labels, num_classes):
    """The weak and strong policies' seconds per epoch at the trainer's call sizes, over the
    epoch's training seconds: weak on `batch_size` images and strong on the step's copies
    (n_augmented / steps), once per step each; with a row's /K, once per K steps on K times
    as many (max-loss transforms stay at one step a call, as the trainer keeps them)."""
    device = torch.device(args.device)
    flip = DATASET_DEFAULTS.get(args.dataset, FALLBACK_DEFAULTS)["flip"]
    if row.hand:
        batch = images[:args.batch_size].to(device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        best = float("inf")
        for _ in range(6):
            sync()
            start = time.perf_counter()
            pad_crop_flip(batch, flip=flip)
            sync()
            best = min(best, time.perf_counter() - start)
        return measured["steps"] * best / measured["training_seconds"]
    steps = measured["steps"]
    policy = create_policy(row.augment, **({"candidates": 4} if "maxloss" in row.augment else {}))
    per_call = augment_call_steps(row.augment_steps, policy, getattr(RULES.get(row.strategy), "mixup", False), device,
                                  images.shape[-1])  # the trainer's default on this device and image size
    calls = math.ceil(steps / per_call)
    weak = seconds_per_call(create_policy("weak", flip=flip), images[:per_call * args.batch_size].to(device))
    copies = round(measured["n_augmented"] / steps) * per_call
    strong = 0.0
    if copies:
        context = None
        if policy.needs_model:
            model = create_model(args.model, images.shape[1], num_classes).to(device, memory_format=torch.channels_last)
            bf16 = device.type == "cuda" and args.precision in ("auto", "bf16")
            context = {"model": model, "labels": labels[:copies].to(device),
                       "preprocess": lambda x: (x.float() / 255).contiguous(memory_format=torch.channels_last),
                       "autocast": lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)}
        strong = seconds_per_call(policy, images[:copies].to(device), context)
    return calls * (weak + strong) / measured["training_seconds"]


def hand_row(args, compiled, images, labels, num_classes):
    """Timing and counts of the hand loop, in the dict shape of a coreaug row."""
    defaults = DATASET_DEFAULTS.get(args.dataset, FALLBACK_DEFAULTS)
    skips = CudaGraphSkips() if compiled and args.compile_mode in CUDA_GRAPH_MODES else None
    with skips or contextlib.nullcontext():
        r = run_hand_loop(images, labels, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                          device=args.device, compile=compiled, compile_mode=args.compile_mode if compiled else None,
                          lr=defaults["lr"], weight_decay=defaults["weight_decay"], flip=defaults["flip"],
                          precision="auto" if args.precision == "auto" else args.precision,
                          count_steps=counted_steps(args, compiled), num_classes=num_classes)
    steady = r["epoch_seconds"][1:] or r["epoch_seconds"]
    epoch = statistics.fmean(steady)
    return dict(r, epoch_seconds=epoch, selection_seconds=0.0, training_seconds=epoch,
                n_trained=r["steps_per_epoch"] * args.batch_size, n_augmented=0, steps=r["steps_per_epoch"],
                graphs_after_first=None, graph_skips=None if skips is None else skips.count, accuracy=None,
                epochs_s=r["epoch_seconds"])


def host_table(rows, top=4):
    """[a heading and the markdown table of the rows' host time in CUDA runtime calls per step], or []
    when no row has any (the CPU): against a row's ms / step, what the host spends in the driver
    (launches, copies, allocations, event queries) rather than in Python and torch's dispatch."""
    rows = [(row, mode, r) for row, mode, r in rows if r.get("host_calls")]
    if not rows:
        return []
    lines = ["| loop | mode | strategy | augment | ms / step | runtime calls ms / step | calls / step "
             f"| the {top} longest: µs and calls a step |", "|" + "---|" * 8]
    for row, mode, r in rows:
        calls = r["host_calls"]
        longest = sorted(calls.items(), key=lambda item: -item[1][0])[:top]
        lines.append(
            f"{row_cells(row, mode, r)} "
            f"| {r['ms_per_step']:.1f} | {sum(m for m, _ in calls.values()) / 1000:.2f} "
            f"| {sum(c for _, c in calls.values()):.0f} "
            f"| {', '.join(f'{name} {micros:.0f} µs x{count:.0f}' for name, (micros, count) in longest)} |")
    return ["Host time per step in CUDA runtime and driver calls (torch.profiler, the counted steps):",
            "\n".join(lines)]


def _fmt(value, spec, none="—"):
    return none if value is None else format(value, spec)


def mode_label(mode, r):
    """"eager", "compiled", or "compiled (default mode)" for a row measured in `--fallback-mode`."""
    return f"{mode} ({r['fallback_mode']} mode)" if r.get("fallback_mode") else mode


def row_cells(row, mode, r):
    """A row's first four cells in both tables: loop, mode, strategy, augment."""
    return f"| {'hand' if row.hand else 'coreaug'} | {mode_label(mode, r)} | {'—' if row.hand else row.label()} " \
        f"| {row.augment}"


def table(rows):
    """The markdown table of the measured rows."""
    lines = ["| loop | mode | strategy | augment | trained / epoch | epoch s | examples/s | ms / step "
             "| aten ops / step | launches / step | syncs / step | compile s | graphs after epoch 1 "
             "| CUDA graph skips | augmentation share | selection s | test acc |", "|" + "---|" * 17]
    for row, mode, r in rows:
        lines.append(
            f"{row_cells(row, mode, r)} "
            f"| {r['n_trained']} | {r['epoch_seconds']:.2f} | {r['examples_per_s']:.0f} | {r['ms_per_step']:.1f} "
            f"| {_fmt(r.get('ops_per_step'), '.0f')} | {_fmt(r.get('launches_per_step'), '.0f')} "
            f"| {_fmt(r.get('syncs'), '.2g')} | {_fmt(r.get('compile_seconds'), '.1f')} "
            f"| {_fmt(r.get('graphs_after_first'), 'd')} | {_fmt(r.get('graph_skips'), 'd')} "
            f"| {_fmt(r.get('augment_share'), '.1%')} "
            f"| {r['selection_seconds']:.2f} | {_fmt(r.get('accuracy'), '.2%')} |")
    return "\n".join(lines)


def command_line(args):
    """The command that reproduces the table."""
    parts = ["python experiments/bench_trainer.py", f"--dataset {args.dataset}", f"--model {args.model}",
             f"--epochs {args.epochs}", f"--batch-size {args.batch_size}"]
    for flag, value in (("--train-limit", args.train_limit), ("--test-limit", args.test_limit),
                        ("--image-size", args.image_size), ("--compile-mode", args.compile_mode),
                        ("--fallback-mode", args.fallback_mode)):
        if value is not None:
            parts.append(f"{flag} {value}")
    parts += [f"--augment {args.augment}", f"--device {args.device}", f"--precision {args.precision}",
              f"--modes {','.join(args.modes)}", f"--rows {args.rows}", f"--select-every {args.select_every}",
              f"--count-steps {args.count_steps}"]
    if args.count_modes != list(MODES):
        parts.append(f"--count-modes {','.join(args.count_modes) or repr('')}")
    parts.append(f"--out {args.out}")
    return " ".join(parts)


def write(args, rows, device_name, started_load, notes="", failed=()):
    """Write the table so far (and the JSON) to `--out`, `notes` (hand-written `## ` sections) below
    it; `failed` lists the rows that raised, with their errors, under the table."""
    text = "\n\n".join([
        "# Trainer benchmark: coreaug beside a hand-written loop",
        f"Command: `{command_line(args)}`  \nDevice: {device_name}, torch {torch.__version__}. "
        f"Load average (1, 5, 15 min) at the start: {started_load}; at the last row: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}. Mode append, R = {args.select_every}; seconds are "
        + (f"means over epochs 2 to {args.epochs} (the first also compiles and loads kernels)" if args.epochs > 1 else
           "epoch 1's, compiling and loading kernels included (--epochs 1)") + ", evaluation excluded; "
        "the columns are defined in experiments/bench_trainer.py's docstring.",
        table(rows), *host_table(rows), *([f"Failed: {'; '.join(failed)}."] if failed else [])]) + "\n"
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    _replace(args.out, text + (f"\n{notes}" if notes else ""))
    if args.json:
        _replace(args.json, json.dumps({"command": command_line(args), "device": device_name, "rows": [
            dict(row=row.label(), hand=row.hand, strategy=row.strategy, fraction=row.fraction,
                 augment=row.augment, augment_steps=row.augment_steps, mode=mode, **r)
            for row, mode, r in rows], "failed": list(failed)}, indent=1))
    return text


def _replace(path, text):
    """Write `text` to `path` whole or not at all (a run killed mid-write leaves the previous file)."""
    with open(f"{path}.part", "w") as f:
        f.write(text)
    os.replace(f"{path}.part", path)


def parse_args(argv=None, check=False):
    """The command line, with the dataset's defaults (model, batch size) filled in; with `check`,
    checked as the scripts check theirs (script_checks.checked: a CUDA device needs one)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="a registered dataset or a folder of images (default: %(default)s)")
    parser.add_argument("--model", default=None, help="default: the dataset's")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of each row; figures are means over epochs 2 on (default: 2)")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="train on a fixed random sample of this many examples (default: all)")
    parser.add_argument("--test-limit", type=int, default=None,
                        help="evaluate on a fixed random sample of this many examples (default: all)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the dataset's")
    parser.add_argument("--image-size", type=int, default=None, help="for a folder dataset")
    parser.add_argument("--augment", default="randaugment",
                        help="strong policy of the coreaug rows without @AUGMENT (default: %(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N, or auto: cuda when available (default: %(default)s)")
    parser.add_argument("--precision", default="auto",
                        help="auto, bf16, fp16 or fp32, as coreaug's --precision (the hand loop takes no fp16; "
                             "default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="the compiled mode only (same as --modes compiled)")
    parser.add_argument("--modes", default=None, help="eager,compiled (default both)")
    parser.add_argument("--compile-mode", default="auto",
                        help="torch.compile mode of the compiled rows, the hand loop's and coreaug's "
                             "(--compile-mode); auto: reduce-overhead (CUDA graphs) on CUDA, the default on the "
                             "CPU; default: torch's default")
    parser.add_argument("--fallback-mode", default=None, choices=[m for m in COMPILE_MODES if m != "auto"],
                        help="a compiled row that fails is measured again once in this --compile-mode (e.g. "
                             "default: compiled kernels without CUDA graphs), named so in the table")
    parser.add_argument("--rows", default=ROWS,
                        help="rows, comma-separated: hand or STRATEGY[:FRACTION[:ESTIMATES]][@AUGMENT][/K] "
                             "(default: %(default)s)")
    parser.add_argument("--select-every", type=int, default=1,
                        help="the coreaug rows re-select every R epochs (default: %(default)s)")
    parser.add_argument("--count-steps", type=int, default=None,
                        help="batches of the counting runs (0: no counts; default: 8, 4 with --quick)")
    parser.add_argument("--count-modes", default=",".join(MODES),
                        help="the modes whose rows are counted (eager,compiled): a compiled coreaug row's counts "
                             "train three more tiny runs, each compiling its step again")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 4 counted steps")
    parser.add_argument("--out", default="experiments/results/trainer_side_by_side.md",
                        help="the markdown table's path; an earlier file's ## sections are kept below it "
                             "(default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    # --quick fills what was not given (an --epochs given beside it, abbreviated or not, is kept)
    args.epochs = 2 if args.epochs is None else args.epochs
    args.count_steps = (4 if args.quick else 8) if args.count_steps is None else args.count_steps
    defaults = DATASET_DEFAULTS.get(args.dataset, FALLBACK_DEFAULTS)
    args.model = args.model or defaults["model"]
    args.batch_size = args.batch_size or defaults["batch_size"]
    modes = args.modes or ("compiled" if args.compile else ",".join(MODES))
    args.modes = [m.strip() for m in modes.split(",")]
    if any(m not in MODES for m in args.modes):
        parser.error(f"--modes takes eager and/or compiled, comma-separated, got {modes!r}")
    count_modes = args.count_modes
    args.count_modes = [m.strip() for m in count_modes.split(",") if m.strip()]
    if any(m not in MODES for m in args.count_modes):
        parser.error(f"--count-modes takes eager and/or compiled, comma-separated, got {count_modes!r}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.compile_mode == "auto":
        args.compile_mode = compile_mode(args.device)
    elif args.compile_mode == "default":
        args.compile_mode = None
    return checked(parser, args) if check else args


def main(argv=None):
    args = parse_args(argv, check=True)
    record_compiled_kernels()
    started_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes = kept_sections(args.out)  # the reading of an earlier table, written by hand: kept below the new one
    rows = parse_rows(args.rows, args.augment)
    data = load_run_data(train_config(args).resolved(), torch.device("cpu"))
    images, labels = data.train_images.read(slice(None)), data.train_labels
    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    done, syncs, failed = [], {}, []
    for row in rows:
        for mode in args.modes:
            compiled = mode == "compiled"
            refused = None if row.hand or not compiled else compile_refusal(args, row)
            if refused:  # e.g. crust: the row stays eager-only, and the run goes on
                print(f"{row.label()} @{row.augment} compiled: skipped, {refused}", flush=True)
                continue
            start = time.perf_counter()
            name = f"{'hand' if row.hand else row.label()} @{row.augment} {mode}"
            r = attempt_row(args, row, compiled, name, failed, images, labels, data.num_classes, syncs)
            again = fallback_args(args) if compiled and r is None else None
            if again is not None:  # e.g. CUDA graph trees failed: compiled kernels without them still measure
                print(f"{failed[-1]}: failed, trying again with --compile-mode {args.fallback_mode}", flush=True)
                write(args, done, device_name, started_load, notes, failed)
                r = attempt_row(again, row, compiled, f"{name} ({args.fallback_mode} mode)", failed, images, labels,
                                data.num_classes, syncs)
                if r is not None:
                    r["fallback_mode"] = args.fallback_mode
            if r is None:
                print(f"{failed[-1]}: failed, going on", flush=True)
                write(args, done, device_name, started_load, notes, failed)
                continue
            done.append((row, mode, r))
            write(args, done, device_name, started_load, notes, failed)
            print(f"{'hand' if row.hand else row.label()} @{row.augment} {mode}: {r['epoch_seconds']:.2f} s/epoch, "
                  f"{r['ms_per_step']:.1f} ms/step, epochs {', '.join(f'{x:.2f}' for x in r['epochs_s'])} s "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(write(args, done, device_name, started_load, notes, failed))
    if failed:
        raise SystemExit(f"{len(failed)} row(s) failed: {'; '.join(failed)}")


def attempt_row(args, row, compiled, name, failed, *data):
    """`measure_row(args, row, compiled, *data)`, or None after naming its error in `failed`
    (one row's failure must not cost the rows after it); torch.compile's state reset after a
    compiled row either way (`fresh_compile_state`)."""
    try:
        return measure_row(args, row, compiled, *data)
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        failed.append(f"{name} ({one_line(error)})")
        return None
    finally:
        fresh_compile_state(compiled)


def fallback_args(args):
    """`args` with `--fallback-mode` as the compile mode, for a compiled row that failed in
    another mode; None without a fallback or when it is the mode that failed."""
    if args.fallback_mode is None:
        return None
    mode = None if args.fallback_mode == "default" else args.fallback_mode
    if mode == args.compile_mode:
        return None
    return argparse.Namespace(**dict(vars(args), compile_mode=mode))


def fresh_compile_state(compiled):
    """After a compiled row, forget its graphs and CUDA graph trees (`torch._dynamo.reset`), as a new
    process would start: a row that fails inside a tree leaves it mid-warm-up, and every compiled
    row after it failed on that tree (experiments/results/gpu.md, 2026-12-04). Kernels built stay
    in inductor's cache on disk."""
    if compiled:
        torch._dynamo.reset()


def counted_steps(args, compiled):
    """`--count-steps` for a row of this mode; 0 for a mode not in `--count-modes`."""
    return args.count_steps if ("compiled" if compiled else "eager") in args.count_modes else 0


def measure_row(args, row, compiled, images, labels, num_classes, syncs):
    """One row's measurements (`syncs` caches the sync audit by strategy and policy)."""
    if row.hand:
        r = hand_row(args, compiled, images, labels, num_classes)
    else:
        r = measure_coreaug(args, row, compiled)
        if counted_steps(args, compiled):
            r["ops_per_step"], r["launches_per_step"], r["host_calls"] = count_coreaug(args, row, compiled)
        key = row.label() + row.augment
        if key not in syncs:
            syncs[key], _ = syncs_per_step(dict(AUDIT, device=args.device), **row.settings())
        r["syncs"] = syncs[key]
    if not compiled:
        r["augment_share"] = augmentation_share(args, row, r, images, labels, num_classes)
    return r


if __name__ == "__main__":
    main()
