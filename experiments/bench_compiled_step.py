"""The compiled training step (`--compile`) against the eager one, on the CPU target of issue 26.

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_compiled_step.py [--dataset digits] [--model cnn]
        [--batch-size 32] [--augment randaugment] [--strategy random] [--subset 0.25] [--epochs 5]
        [--select-every 1] [--threads 1] [--repeats 3] [--baseline DIR] [--out experiments/results/compiled_step.md]

Trains the same run with `coreaug.train`, eager and with ``compile=True`` (augmentation, forward,
loss and update compiled, fixed shapes: coreaug.training.compiled_step), alternating, `--repeats`
times (the fastest run of each mode is compared), each run in a fresh process as a user's run is
(speed differs from process to process on a virtual machine: several runs of each mode in fresh
processes are what can be compared), and writes one table: epoch seconds (median of epochs 2 to
`--epochs`: selection included, evaluation (every epoch, so that its graphs are built in epoch
1) not), ms per step, compile seconds (the compiled run's first epoch minus its median later
epoch), graphs compiled in epoch 1 and after it, examples trained per epoch, and the final test
accuracy. With `--baseline DIR` (a checkout of an earlier coreaug, e.g. `git worktree add
/tmp/before REV`), that code's eager run joins each repeat, in a fresh process with DIR first on
the Python path: the compiled step against the eager one as it was. The command and the
machine's load (/proc/loadavg, before and after) are written with it; the `## ` sections of an
earlier `--out` file (its reading, written by hand) are kept below the table.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch
from script_checks import checked, run_child



def run_arguments(parser):
    """The run's options, issue 26's CPU target case by default (also bench_step_guards.py's)."""
    parser.add_argument("--dataset", default="digits",
                        help="the run's dataset, a registered name or a folder of images (default: %(default)s)")
    parser.add_argument("--model", default="cnn", help="the run's model (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="the run's batch size (default: %(default)s)")
    parser.add_argument("--augment", default="randaugment",
                        help="the run's strong augmentation policy (default: %(default)s)")
    parser.add_argument("--strategy", default="random",
                        help="the run's selection rule, or full or none (default: %(default)s)")
    parser.add_argument("--subset", type=float, default=0.25,
                        help="the selection's fraction of the training set (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default: %(default)s)")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_arguments(parser)
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs of each run; its figures are the median of epochs 2 on (default: %(default)s)")
    parser.add_argument("--select-every", type=int, default=1, help="re-select every R epochs (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="eager and compiled runs alternate this many times (the machine's load drifts)")
    parser.add_argument("--baseline", default=None,
                        help="a checkout of an earlier coreaug whose eager run joins each repeat")
    parser.add_argument("--out", default="experiments/results/compiled_step.md",
                        help="the markdown table's path; an earlier file's ## sections are kept below it "
                             "(default: %(default)s)")
    parser.add_argument("--one", choices=["eager", "compiled"], help=argparse.SUPPRESS)  # a run, in its own process
    return checked(parser, parser.parse_args(argv), min_epochs=2)


def inductor_cache_files():
    """Files in torch inductor's on-disk cache: graphs it holds compile in seconds, not minutes."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return sum(len(files) for _, _, files in os.walk(cache_dir()))


def load():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def run(args, compile):
    config = coreaug.TrainConfig(dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                                 augment=args.augment, strategy=args.strategy, subset=args.subset,
                                 epochs=args.epochs, select_every=args.select_every, quiet=True,
                                 compile=compile, eval_every=1)  # evaluation graphs: epoch 1
    started = time.perf_counter()
    result = coreaug.train(config)
    history = result.history
    later = [m["epoch_seconds"] for m in history[1:]]
    typical = statistics.median(later)
    steps = -(-history[-1]["n_trained"] // args.batch_size)
    return {
        "mode": "compiled" if compile else "eager", "epoch_s": typical, "ms_step": 1000 * typical / steps,
        "first_s": history[0]["epoch_seconds"], "compile_s": history[0]["epoch_seconds"] - typical if compile else None,
        "graphs_first": history[0].get("graphs_compiled"),
        "graphs_after": sum(m.get("graphs_compiled", 0) for m in history[1:]) if compile else None,
        "n_trained": history[-1]["n_trained"], "n_augmented": history[-1]["n_augmented"],
        "accuracy": result.final_test_accuracy, "wall_s": time.perf_counter() - started,
    }


def run_in_process(argv, compile, baseline=None):
    """`run` in a fresh Python process (this script with --one): its row. With `baseline` (a
    checkout's folder) the process imports that checkout's coreaug."""
    env = dict(os.environ)
    if baseline:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(baseline), env.get("PYTHONPATH")) if p)
    done = run_child([sys.executable, os.path.abspath(__file__), *argv, "--one", "compiled" if compile else "eager"],
                     env=env)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if baseline:
        row["mode"], row["baseline"] = f"eager at {revision(baseline)}", True
    return row


def revision(folder):
    """The short commit a checkout is at (its folder's name where git cannot tell)."""
    done = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else os.path.basename(os.path.normpath(folder))


def kept_sections(path):
    """The `## ` sections of an earlier `path` (the reading of the table, written by hand):
    kept below a regenerated table. Empty if there is no such file or section."""
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        text = f.read()
    start = text.find("\n## ")
    return text[start + 1:] if start >= 0 else ""


def table(rows):
    head = ("| mode | epoch s (median, epochs 2+) | ms / step | first epoch s | compile s | graphs epoch 1 | "
            "graphs after | trained / epoch | augmented / epoch | final test acc |")
    lines = [head, "|" + "---|" * 10]
    shown = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        lines.append(f"| {r['mode']} | {r['epoch_s']:.2f} | {r['ms_step']:.1f} | {r['first_s']:.1f} | "
                     f"{shown(r['compile_s'], '.1f')} | {shown(r['graphs_first'], 'd')} | "
                     f"{shown(r['graphs_after'], 'd')} | {r['n_trained']} | {r['n_augmented']} | {r['accuracy']:.3f} |")
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run(args, args.one == "compiled")))
        return
    command = "OMP_NUM_THREADS=%s python experiments/bench_compiled_step.py %s" % (
        os.environ.get("OMP_NUM_THREADS", "?"), " ".join(argv))
    load_before, cached = load(), inductor_cache_files()
    runs = [(False, None), (True, None)] + ([(False, args.baseline)] if args.baseline else [])
    rows = []
    for repeat in range(args.repeats):
        for compile, baseline in runs:
            rows.append(run_in_process(argv, compile, baseline))
            rows[-1]["mode"] += f" #{repeat + 1}"
    fastest = lambda rows: min(rows, key=lambda r: r["epoch_s"])  # noqa: E731
    eager = fastest(r for r in rows if r["mode"].startswith("eager") and not r.get("baseline"))
    compiled = fastest(r for r in rows if r["mode"].startswith("compiled"))
    before = fastest(r for r in rows if r.get("baseline")) if args.baseline else None
    lines = [
        "# The compiled training step against the eager one (CPU)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); load (/proc/loadavg) before: `{load_before}`, after: `{load()}`.",
        "",
        f"Run: {args.dataset}, {args.model}, batch {args.batch_size}, {args.augment}, {args.strategy} "
        f"{args.subset:.0%} (append), {args.epochs} epochs, selection every {args.select_every}.",
        "",
        f"torch inductor's cache held {cached} files before the run: compile seconds are far shorter when it "
        "already holds these graphs (a cold compile builds C++ for each graph).",
        "",
        *table(rows),
        "",
        f"Compiled / eager epoch seconds, fastest run of each: {compiled['epoch_s']:.2f} / {eager['epoch_s']:.2f} = "
        f"{compiled['epoch_s'] / eager['epoch_s']:.2f} (target of issue 26: at most 0.5). Runs alternate, "
        "eager then compiled, because other work on the machine changes the load from minute to minute; "
        "each run is a fresh process (as a user's run is), so every compiled run traces its graphs again "
        "(dynamo) and reads them from inductor's cache when it holds them.",
        *(["", f"Against the eager run at {revision(args.baseline)} (`--baseline`), fastest run: "
           f"{compiled['epoch_s']:.2f} / {before['epoch_s']:.2f} = {compiled['epoch_s'] / before['epoch_s']:.2f}; "
           f"today's eager against it: {eager['epoch_s'] / before['epoch_s']:.2f}."] if before else []),
        "",
        "The compiled run trains a few more entries per epoch: every batch is full and carries the same "
        "number of copies (coreaug.training.plan.fixed_step_plan tops up the last batch and the copies).",
    ]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    notes = kept_sections(args.out)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n" + (f"\n{notes}" if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
