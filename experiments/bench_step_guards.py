"""dynamo's guard checks in the compiled step: epochs that skip them after their first step
against epochs that check them at every step, paired in one process.

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_step_guards.py [--dataset digits] [--model cnn]
        [--batch-size 32] [--augment randaugment] [--strategy random] [--subset 0.25]
        [--epochs 41] [--threads 1] [--out experiments/results/step_guards.md]

One `coreaug.train(compile=True)` run; after the first epoch (which compiles, and checks the
guards at every step either way) the epochs alternate: even ones with
`CompiledStep.skip_guards` True (the default: guards checked at the epoch's first step only),
odd ones with it False. On this kind of virtual machine a process runs at one of two speeds, so
a change of a few percent is only measurable within one process: each skipping epoch is
compared with the checking epoch after it, and the table gives the epochs' seconds and the
median of the pairs' differences. The command and the load (/proc/loadavg) are written with it.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from coreaug.training import compiled_step, trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compiled_step import load, run_arguments  # noqa: E402
from script_checks import checked  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--epochs", type=int, default=41, help="the first compiles; the rest make pairs")
    parser.add_argument("--out", default="experiments/results/step_guards.md",
                        help="the markdown table's path (default: %(default)s)")
    return checked(parser, parser.parse_args(argv), min_epochs=3)


def paired_epochs(args):
    """Train; return ({True: [seconds of skipping epochs], False: [checking ones]}, in order;
    steps per epoch)."""
    seconds, epochs, real = {True: [], False: []}, [0], trainer._train_epoch_compiled

    def timed_epoch(*a, **k):
        epochs[0] += 1
        skip = epochs[0] % 2 == 0
        compiled_step.CompiledStep.skip_guards = skip
        started = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            if epochs[0] > 1:
                seconds[skip].append(time.perf_counter() - started)
            compiled_step.CompiledStep.skip_guards = True

    trainer._train_epoch_compiled = timed_epoch
    try:
        result = coreaug.train(coreaug.TrainConfig(dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                                          augment=args.augment, strategy=args.strategy, subset=args.subset,
                                          epochs=args.epochs, select_every=1, quiet=True, compile=True))
    finally:
        trainer._train_epoch_compiled = real
    return seconds, -(-result.history[-1]["n_trained"] // args.batch_size)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch.set_num_threads(args.threads)
    before = load()
    seconds, steps = paired_epochs(args)
    skip, check = seconds[True], seconds[False]
    pairs = list(zip(skip, check))
    gains = [c - s for s, c in pairs]
    median = lambda xs: 1000 * statistics.median(xs)  # noqa: E731 (ms)
    lines = [
        "# Guard checks in the compiled step: skipped after an epoch's first step, or checked every step",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python experiments/bench_step_guards.py "
        f"{' '.join(argv)}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); load (/proc/loadavg) before: `{before}`, after: `{load()}`.",
        "",
        f"Run: {args.dataset}, {args.model}, batch {args.batch_size}, {args.augment}, {args.strategy} "
        f"{args.subset:.0%}, `--compile`, {args.epochs} epochs (the first compiles and is left out).",
        "",
        "| guards | epochs | median epoch ms | fastest epoch ms |",
        "|---|---|---|---|",
        f"| skipped after the epoch's first step (the default) | {len(skip)} | {median(skip):.1f} | "
        f"{1000 * min(skip):.1f} |",
        f"| checked every step | {len(check)} | {median(check):.1f} | {1000 * min(check):.1f} |",
        "",
        f"Pairs (a skipping epoch and the checking epoch after it): {len(pairs)}; the checking epoch took "
        f"{median(gains):.1f} ms longer (median of the pairs' differences; {sum(g > 0 for g in gains)} of "
        f"{len(pairs)} pairs longer): {median(gains) / steps:.2f} ms a step over {steps} steps an epoch.",
        "",
        "Epoch ms in order (skipped, checked): " + ", ".join(f"{1000 * s:.0f}/{1000 * c:.0f}" for s, c in pairs) + ".",
    ]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
