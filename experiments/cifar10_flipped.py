"""Issue 16, grid C: the share of flipped labels in each selection, over the epochs, per strategy.

Reads `selection_noisy_fraction` (logged at every selection of a run with --label-noise; the
record of flipped labels is used to measure selections, never by a rule) from every run under
GRID/runs/, averages it over seeds per (strategy, subset) and epoch, and writes a PNG and a
markdown table of the mean share over the run.

Usage: python experiments/cifar10_flipped.py GRID OUT_PREFIX
"""
import json
import os
import statistics
import sys
from collections import defaultdict


def flipped_shares(grid):
    """{(strategy, subset): {epoch: [share per seed]}} over the grid's runs (finished or not)."""
    out = defaultdict(lambda: defaultdict(list))
    runs = os.path.join(grid, "runs")
    for name in sorted(os.listdir(runs)):
        metrics = os.path.join(runs, name, "metrics.jsonl")
        if not os.path.exists(metrics):
            continue
        with open(os.path.join(runs, name, "config.json")) as f:
            config = json.load(f)
        with open(metrics) as f:
            for line in f:
                m = json.loads(line)
                if m.get("selection_noisy_fraction") is not None:
                    out[(config["strategy"], config["subset"])][m["epoch"]].append(m["selection_noisy_fraction"])
    return out


def main():
    grid, prefix = sys.argv[1], sys.argv[2]
    shares = flipped_shares(grid)
    lines = ["| strategy | subset | seeds | flipped share of the selections (mean over epochs) | first | last |",
             "|---|---|---|---|---|---|"]
    for (strategy, subset), by_epoch in sorted(shares.items()):
        epochs = sorted(by_epoch)
        means = [statistics.fmean(by_epoch[e]) for e in epochs]
        seeds = max(len(v) for v in by_epoch.values())
        lines.append(f"| {strategy} | {subset:.0%} | {seeds} | {statistics.fmean(means):.1%} | {means[0]:.1%} | {means[-1]:.1%} |")
    with open(prefix + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
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
