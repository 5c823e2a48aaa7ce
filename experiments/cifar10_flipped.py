"""Issue 16, grid C: the share of flipped labels in each selection, over the epochs, per strategy.

Reads `selection_noisy_fraction` (logged at every selection of a run with --label-noise; the
record of flipped labels is used to measure selections, never by a rule) from every run of GRID
(a grid folder or its archive, e.g. experiments/results/cifar10/runs/C.runs.jsonl.xz), averages
it over seeds per (strategy, subset) and epoch, and writes a PNG and a markdown table of the mean
share over the run and at the first and last selection (`coreaug report` gives the mean over
every selection only).

Usage: python experiments/cifar10_flipped.py GRID OUT_PREFIX
"""
import argparse
import statistics
import sys
from collections import defaultdict

from coreaug.bench import load_runs
from coreaug.errors import UsageError


def flipped_shares(grid):
    """{(strategy, subset): {epoch: [share per seed]}} over the grid's runs (finished or not);
    GRID is a grid folder or its archive (`coreaug archive`)."""
    out = defaultdict(lambda: defaultdict(list))
    for run in load_runs(grid):
        if run.config is None:
            continue
        for m in run.metrics:
            if m.get("selection_noisy_fraction") is not None:
                out[(run.config["strategy"], run.config["subset"])][m["epoch"]].append(m["selection_noisy_fraction"])
    return out


def parse_args(argv=None):
    """GRID and OUT_PREFIX from the command line (argparse's usage line and exit 2 when missing)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\nUsage:")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", metavar="GRID", help="a grid folder or its archive")
    parser.add_argument("prefix", metavar="OUT_PREFIX", help="writes OUT_PREFIX.md and OUT_PREFIX.png")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    grid, prefix = args.grid, args.prefix
    try:
        shares = flipped_shares(grid)
    except UsageError as error:  # no such grid
        sys.exit(f"cifar10_flipped.py: error: {error}")
    if not shares:
        sys.exit(f"cifar10_flipped.py: error: no run of {grid} logged selection_noisy_fraction (it is logged for "
                 "runs trained with --label-noise only)")
    lines = ["| strategy | subset | seeds | flipped share of the selections (mean over epochs) | first | last |",
             "|---|---|---|---|---|---|"]
    for (strategy, subset), by_epoch in sorted(shares.items()):
        epochs = sorted(by_epoch)
        means = [statistics.fmean(by_epoch[e]) for e in epochs]
        seeds = max(len(v) for v in by_epoch.values())
        lines.append(f"| {strategy} | {subset:.0%} | {seeds} | {statistics.fmean(means):.1%} | {means[0]:.1%} | {means[-1]:.1%} |")
    command = f"python experiments/cifar10_flipped.py {grid} {prefix}"
    with open(prefix + ".md", "w") as f:
        f.write(f"Produced by `{command}`.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from coreaug.bench.plot import COLOURS
    figure, axes = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    subsets = sorted({s for _, s in shares})
    for (strategy, subset), by_epoch in sorted(shares.items()):
        epochs = sorted(by_epoch)
        axes.plot(epochs, [100 * statistics.fmean(by_epoch[e]) for e in epochs], marker="o", markersize=3,
                  color=COLOURS.get(strategy, "tab:olive"), linestyle=styles[subsets.index(subset) % 4],
                  label=f"{strategy} {subset:.0%}")
    axes.set_xlabel("epoch of the selection")
    axes.set_ylabel("flipped labels among the selected (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(prefix + ".png", dpi=120)


if __name__ == "__main__":
    main()
