"""Speed-ups that can be trusted: the grid's settings timed back to back on a quiet machine.

Usage:
    python experiments/bench_timing.py [--augment randaugment] [--epochs 5] [--repeats 3]
        [--max-load 0.5] [--out experiments/results/fashion-mnist-500/timing-randaugment.md]
        [--runs none,full,coreset:0.1,...] [coreaug train settings as KEY=VALUE ...]

Trains each of `--runs` (by default none, full, and coreset / random / max-loss at 10% and 30%;
append mode, seed 0) for a few epochs, `--repeats` times, round-robin so that a slow spell of the machine touches every
setting alike. Before each run it waits (up to 10 minutes) for the 1-minute load average to fall
under `--max-load` and records it. Reports the median training seconds per epoch (selection
included, evaluation excluded) and the speed-up against `full`, with every repeat's figure.
Accuracy is not the point here (few epochs); the accuracy tables come from `coreaug bench`.
With `--out X.md` it also writes X.csv, the medians as `coreaug report --epoch-seconds` reads them
(strategy,subset,seconds_per_epoch).
"""
import argparse
import os
import platform
import statistics
import time

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch


SETTING = dict(dataset="fashion-mnist", model="cnn", train_limit=500, test_limit=2000, quiet=True)
RUNS = "none,full,coreset:0.1,random:0.1,maxloss:0.1,coreset:0.3,random:0.3,maxloss:0.3"


def parse_runs(text):
    """[(strategy, fraction or None)] from "none,full,coreset:0.1,..."."""
    runs = []
    for item in text.split(","):
        strategy, _, fraction = item.strip().partition(":")
        try:
            runs.append((strategy, float(fraction) if fraction else None))
        except ValueError:
            raise ValueError(f"--runs {item.strip()!r}: the fraction after ':' must be a number") from None
    return runs


def wait_for_quiet(max_load, patience=600):
    """The 1-minute load average once it is under `max_load` (or after `patience` seconds)."""
    deadline = time.time() + patience
    if os.getloadavg()[0] > max_load:
        print(f"waiting up to {patience} s for the load average ({os.getloadavg()[0]:.2f}) to fall under "
              f"--max-load {max_load:g}", flush=True)
    while os.getloadavg()[0] > max_load and time.time() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def parse_settings(pairs):
    """{setting: value} of KEY=VALUE pairs: a value Python reads as a literal (3, 0.1, True, None,
    0.5,0.75 as a tuple) is taken as that, any other as its text. ValueError names a key that is
    no TrainConfig setting, or a pair without "="."""
    import ast
    import dataclasses

    fields = {field.name for field in dataclasses.fields(coreaug.TrainConfig)}
    settings = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or key not in fields:
            raise ValueError(f"{pair!r} is no KEY=VALUE of a TrainConfig setting ({', '.join(sorted(fields))})")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # text: a strategy's name, a path
        settings[key] = value
    return settings


def epoch_seconds_csv(per_epoch, source):
    """The median seconds per epoch of each run as the CSV `coreaug report --epoch-seconds` reads;
    `per_epoch`: {(strategy, fraction or None): [seconds per epoch of each repeat]}, `source`: the
    Markdown file they came from (named in a comment line)."""
    repeats = max(len(seconds) for seconds in per_epoch.values())
    lines = [f"# Quiet-machine seconds per epoch (training + selection, evaluation excluded; median of {repeats} "
             f"repeat{'s' if repeats != 1 else ''})",
             f"# from {source} (experiments/bench_timing.py; its command and load are there), for "
             "`coreaug report --epoch-seconds`.",
             "strategy,subset,seconds_per_epoch"]
    for (strategy, fraction), seconds in per_epoch.items():
        lines.append(f"{strategy},{'' if fraction is None else fraction},{statistics.median(seconds):.2f}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--augment", default="randaugment",
                        help="strong augmentation policy of every run (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="round-robin passes over --runs, median kept (default: %(default)s)")
    parser.add_argument("--max-load", type=float, default=0.5,
                        help="before each run, wait up to 10 minutes for the 1-minute load average to fall "
                             "under this (default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="also write the table to this X.md and the medians to X.csv beside it "
                             "(default: printed only)")
    parser.add_argument("--runs", default=RUNS, help="strategies to time, STRATEGY[:FRACTION] comma-separated")
    parser.add_argument("settings", nargs="*", help="more TrainConfig settings, KEY=VALUE")
    args = parser.parse_args()
    if args.out and args.out.endswith(".csv"):
        parser.error(f"--out {args.out}: give the Markdown file (X.md); the CSV for coreaug report goes beside it")
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be 1 or more")
    try:
        base = dict(SETTING, augment=args.augment, epochs=args.epochs, **parse_settings(args.settings))
        runs = parse_runs(args.runs)
    except ValueError as error:
        parser.error(str(error))
    if ("full", None) not in runs:
        parser.error("--runs must include full (the speed-ups are against it)")
    per_epoch = {run: [] for run in runs}
    loads = []
    # Warm-up, not timed: loads the greedy kernel (numba) and the data once.
    coreaug.train(coreaug.TrainConfig(**dict(base, epochs=1), strategy="coreset", subset=0.1))
    for repeat in range(args.repeats):
        for strategy, fraction in runs:
            loads.append(wait_for_quiet(args.max_load))
            result = coreaug.train(coreaug.TrainConfig(**base, strategy=strategy, **({"subset": fraction} if fraction else {})))
            per_epoch[(strategy, fraction)].append(result.total_seconds / len(result.history))
            print(f"repeat {repeat + 1}: {strategy} {fraction or ''} {per_epoch[(strategy, fraction)][-1]:.2f} s/epoch "
                  f"(load {loads[-1]:.2f})", flush=True)
    full = statistics.median(per_epoch[("full", None)])
    lines = ["| strategy | subset | s / epoch (median) | speed-up vs full | every repeat (s / epoch) |", "|---|---|---|---|---|"]
    for (strategy, fraction), seconds in per_epoch.items():
        median = statistics.median(seconds)
        lines.append(f"| {strategy} | {fraction or '—'} | {median:.2f} | {full / median:.2f}x | "
                     + ", ".join(f"{s:.2f}" for s in seconds) + " |")
    command = (f"python experiments/bench_timing.py --augment {args.augment} --epochs {args.epochs} "
               f"--repeats {args.repeats} --max-load {args.max_load}"
               + ("" if args.runs == RUNS else f" --runs {args.runs}") + "".join(f" {s}" for s in args.settings)
               + (f" --out {args.out}" if args.out else ""))
    text = "\n\n".join([
        "# Timing on a quiet machine", f"Command: `{command}`",
        f"Setting: {base}. Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. 1-minute load average before each run: "
        f"{min(loads):.2f} to {max(loads):.2f} (median {statistics.median(loads):.2f}).",
        "\n".join(lines),
        "Seconds per epoch: training plus selection (gradient estimates and facility location), evaluation "
        "excluded, averaged over the run's epochs; the median over repeats is shown."]) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        csv = os.path.splitext(args.out)[0] + ".csv"
        with open(csv, "w") as f:
            f.write(epoch_seconds_csv(per_epoch, os.path.basename(args.out)))
        print(f"Wrote {args.out} and {csv} (for coreaug report --epoch-seconds).")


if __name__ == "__main__":
    main()
