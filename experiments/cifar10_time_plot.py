"""Accuracy against training time per strategy (issue 16, item 7).

The grid's runs give each strategy's test accuracy after every epoch (mean over the seeds); the
time axis is the epoch count times the strategy's median seconds per epoch measured on a quiet
machine by `experiments/bench_timing.py` (selection included, evaluation excluded). The grid's
own timings are not used: its runs shared the two cores with each other and other jobs.

Usage: python experiments/cifar10_time_plot.py GRID TIMING.md OUT.png [--subset 0.1] [--title TEXT]
           [--also GRID2=SUFFIX ...]     (runs of another length, labelled e.g. "full, 8 epochs")
Beside OUT.png it writes OUT.md: per strategy, seconds per epoch, the mean final accuracy, and
the time at which the mean curve first reaches 95% of full augmentation's final accuracy.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar10_tables import finished_runs  # noqa: E402  (a script beside this one)

from coreaug.bench import time_to_target  # noqa: E402

PAPER_RULES = ("coreset", "random", "maxloss")


def read_timing(path):
    """{(strategy, subset or None): median seconds per epoch} from bench_timing.py's table."""
    rates = {}
    row = re.compile(r"^\| ([\w-]+) \| ([\d.]+|—) \| ([\d.]+) \|")
    with open(path) as f:
        for line in f:
            match = row.match(line)
            if match:
                subset = None if match.group(2) == "—" else float(match.group(2))
                rates[(match.group(1), subset)] = float(match.group(3))
    return rates


def mean_curves(grid, subset):
    """{(strategy, subset or None): [mean test accuracy % after epoch e, None where the runs did
    not evaluate (--eval-every)]} over the finished runs at `subset` (and the references), with
    the seed counts."""
    curves, seeds = defaultdict(list), defaultdict(int)
    for _, folder, summary in finished_runs(grid):
        config = summary["config"]
        strategy = config["strategy"]
        key = (strategy, None) if strategy in ("full", "none") else (strategy, config["subset"])
        if key[1] not in (None, subset):
            continue
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            curves[key].append([json.loads(line)["test_accuracy"] for line in f if line.strip()])
        seeds[key] += 1
    return {key: [None if None in epoch else 100 * statistics.fmean(epoch) for epoch in zip(*runs)]
            for key, runs in curves.items()}, seeds


def first_time(curve, rate, target):
    """Seconds until the mean curve first reaches `target` (None if it never does): the bench's
    `time_to_target` on the curve's epochs placed at the quiet rate."""
    rows = [{"test_accuracy": accuracy, "training_seconds": (epoch + 1) * rate} for epoch, accuracy in enumerate(curve)]
    seconds = time_to_target(rows, target)
    return None if math.isnan(seconds) else seconds


def series_of(grid, subset, rates, suffix=None):
    """[(label, rate, mean curve, seeds, line style)] of the grid's strategies that have a quiet
    rate; `suffix` (when given) is added to the labels of a grid given by --also ("full, 8 epochs").
    Styles: references solid, the paper's rules dashed, the others dotted."""
    curves, seeds = mean_curves(grid, subset)
    keys = sorted((k for k in curves if k in rates), key=lambda k: (k[1] is not None, k[0]))
    out = []
    for key in keys:
        label = key[0] if key[1] is None else f"{key[0]} {key[1]:g}"
        label = f"{label}, {suffix}" if suffix else label
        style = "-" if key[1] is None else ("--" if key[0] in PAPER_RULES else ":")
        out.append((label, rates[key], curves[key], seeds[key], style))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grid")
    parser.add_argument("timing")
    parser.add_argument("out")
    parser.add_argument("--subset", type=float, default=0.1)
    parser.add_argument("--title", default="")
    parser.add_argument("--also", action="append", default=[], metavar="GRID=SUFFIX",
                        help="another grid's runs (another epoch count) at the same quiet rates, labelled "
                             "'<strategy>, SUFFIX'")
    args = parser.parse_args()
    rates = read_timing(args.timing)
    series = series_of(args.grid, args.subset, rates)
    full = next((curve for label, _, curve, _, _ in series if label == "full"), None)
    if full is None:
        raise SystemExit("the plot needs full's runs and timing (the target is 95% of its final accuracy)")
    target = 0.95 * full[-1]
    for item in args.also:
        folder, _, suffix = item.partition("=")
        series += series_of(folder, args.subset, rates, suffix or os.path.basename(os.path.normpath(folder)))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: the default cycle repeats after 10
    for (label, rate, curve, _, style), colour in zip(series, colours[::2] + colours[1::2]):
        evaluated = [(e, a) for e, a in enumerate(curve) if a is not None]
        ax.plot([(e + 1) * rate for e, _ in evaluated], [a for _, a in evaluated], style, marker=".", label=label,
                color=colour)
    ax.axhline(target, color="grey", linewidth=0.8)
    ax.text(0, target, " 95% of full's final accuracy", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("training seconds at the quiet rate (one thread; selection included, evaluation excluded)")
    ax.set_ylabel("test accuracy % (mean over seeds)")
    ax.set_title(args.title or f"{os.path.basename(os.path.normpath(args.grid))}: accuracy against training time",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)

    command = " ".join(["python experiments/cifar10_time_plot.py", args.grid, args.timing, args.out,
                        f"--subset {args.subset:g}", *(f"--also '{e}'" for e in args.also)])
    lines = [f"Accuracy against training time: `{os.path.basename(args.out)}`, made by `{command}`.",
             "", f"Target: 95% of full's mean final accuracy = {target:.2f}%.", "",
             "| strategy | seeds | s / epoch (quiet) | epochs | final accuracy % (mean) | seconds to the target | "
             "seconds in all |", "|---|---|---|---|---|---|---|"]
    for label, rate, curve, seeds, _ in series:
        reached = first_time(curve, rate, target)
        lines.append(f"| {label} | {seeds} | {rate:.2f} | {len(curve)} | {curve[-1]:.2f} | "
                     + ("not reached" if reached is None else f"{reached:.0f}") + f" | {len(curve) * rate:.0f} |")
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
