"""Issue 16's tables: a CIFAR-10 grid's runs beside the paper's figures, as shares of full
augmentation's gain over weak augmentation.

Reads every finished run under GRID/runs/ (summary.json, metrics.jsonl, config.json), so a
grid that is still running gives a partial table (the seed counts say how partial). Writes
OUT (markdown). The paper's figures are Liu & Mirzasoleiman 2022's appendix (ResNet20, full
CIFAR-10, 200 epochs, 5 runs); ours are at CPU scale (see experiments/cifar10_evidence.sh),
on the JPEG copy of CIFAR-10 (quality 75), so only the shares compare.

Usage: python experiments/cifar10_tables.py GRID OUT [--paper table4|noise|tiny|none] [--command TEXT]
           [--also GRID2=SUFFIX ...]   (another grid's runs as rows "<strategy>, SUFFIX")
           [--against none|full ...]   (a column of paired differences with that reference too)
Beside OUT (x.md) it writes x-runs.csv: one row per finished run (the figures behind the table).
"""
import argparse
import csv
import json
import math
import os
import statistics
from collections import defaultdict

# Liu & Mirzasoleiman 2022, all data + augmented subsets, max-loss transforms (appendix tables 4/7).
PAPER_TABLE4 = {"none": 89.46, "full": 93.50,
                ("random", 0.05): 90.34, ("random", 0.1): 91.07, ("random", 0.3): 92.11,
                ("maxloss", 0.05): 90.79, ("maxloss", 0.1): 91.39, ("maxloss", 0.3): 92.43,
                ("coreset", 0.05): 90.87, ("coreset", 0.1): 91.54, ("coreset", 0.3): 92.49}
# Same, 50% symmetric label noise (appendix table 5), RandAugment-style strong augmentation.
PAPER_NOISE = {"none": 70.72, "full": 75.87,
               ("random", 0.1): 72.32, ("random", 0.3): 74.46, ("random", 0.5): 75.36,
               ("maxloss", 0.1): 71.83, ("maxloss", 0.3): 72.45, ("maxloss", 0.5): 73.23,
               ("coreset", 0.1): 73.02, ("coreset", 0.3): 74.67, ("coreset", 0.5): 76.20}
# Same paper, tiny subsets trained alone (subset mode, R = 1, no none/full references), keyed by
# grid B's fractions of its 10,000-image sample at the same number of images: 0.5% (50 images) is
# the paper's 0.1% of CIFAR-10, 1% its 0.2%, 5% its 1%; 2% (200 images) stands beside its 0.5% (250).
PAPER_TINY = {("random", 0.005): 33.5, ("coreset", 0.005): 37.8, ("random", 0.01): 42.7, ("coreset", 0.01): 45.1,
              ("random", 0.02): 58.7, ("coreset", 0.02): 63.9, ("random", 0.05): 74.4, ("coreset", 0.05): 74.7}
PAPERS = {"table4": PAPER_TABLE4, "noise": PAPER_NOISE, "tiny": PAPER_TINY, "none": {}}


def finished_runs(grid):
    """(name, folder, summary) of each finished run under GRID/runs/ (one with a summary.json),
    in name order."""
    runs = os.path.join(grid, "runs")
    for name in sorted(os.listdir(runs)):
        folder = os.path.join(runs, name)
        if os.path.exists(os.path.join(folder, "summary.json")):
            with open(os.path.join(folder, "summary.json")) as f:
                yield name, folder, json.load(f)


def read_runs(grid, rows=None):
    """{(strategy, subset or None): {seed: final accuracy in %}} over the grid's finished runs;
    appends one dict per run to `rows` when given."""
    cells = defaultdict(dict)
    for name, _, summary in finished_runs(grid):
        config = summary["config"]
        strategy = config["strategy"]
        subset = None if strategy in ("full", "none") else config["subset"]
        cells[(strategy, subset)][config["seed"]] = 100 * summary["final_test_accuracy"]
        if rows is not None:
            rows.append({"run": name, "strategy": strategy, "subset": subset, "seed": config["seed"],
                         "final_accuracy": summary["final_test_accuracy"], "best_accuracy": summary["best_test_accuracy"],
                         "training_seconds": summary["total_seconds"], "selection_seconds": summary["selection_seconds"]})
    return cells


def _mean_std(values):
    values = list(values)
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _share(accuracy, none, full):
    return 100 * (accuracy - none) / (full - none) if full - none > 0 else math.nan


def _paired(runs, reference):
    """'d ± s over n' for the paired differences runs - reference over their common seeds ('' if none)."""
    paired = [runs[k] - reference[k] for k in runs if k in reference]
    if not paired:
        return ""
    d, ds = _mean_std(paired)
    beyond = " (beyond one std)" if len(paired) >= 3 and abs(d) > ds else ""
    return f"{d:+.2f} ± {ds:.2f} over {len(paired)}{beyond}"


def table(cells, paper, against=()):
    """Markdown lines: one row per (strategy, subset), references first; `against` names
    references (none, full) that get a column of paired differences too."""
    none, _ = _mean_std(cells.get(("none", None), {}).values())
    full, _ = _mean_std(cells.get(("full", None), {}).values())
    lines = ["| strategy | subset | seeds | final accuracy % (mean ± std) | share of full's gain | "
             "vs random, same seeds (mean ± std of the paired differences) | "
             + "".join(f"vs {name} (all data), same seeds | " for name in against) + "paper | paper's share |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(against)]
    order = sorted(cells, key=lambda k: (k[1] is not None, k[1] or 0, k[0] != "random", k[0]))
    for strategy, subset in order:
        runs = cells[(strategy, subset)]
        m, s = _mean_std(runs.values())
        versus = ""
        # a row of another grid (--also: "<strategy>, SUFFIX") pairs with that grid's random if it has one
        suffix = strategy.partition(", ")[2]
        random = cells.get((f"random, {suffix}", subset)) if suffix else None
        random = random if random is not None else cells.get(("random", subset), {})
        if subset is not None and not strategy.startswith("random"):
            versus = _paired(runs, random)
        references = "".join(f"{_paired(runs, cells.get((name, None), {})) if subset is not None else ''} | "
                             for name in against)
        key = strategy if subset is None else (strategy, subset)
        theirs = paper.get(key)
        their_share = (_share(theirs, paper["none"], paper["full"]) if theirs is not None and "none" in paper
                       else math.nan)
        # ... and takes its shares from that grid's own references when both are there (a longer
        # run against weak-only and full runs of the same length)
        own = [cells.get((f"{name}, {suffix}", None)) for name in ("none", "full")] if suffix else [None]
        share = (_share(m, *(_mean_std(ref.values())[0] for ref in own)) if all(own)
                 else _share(m, none, full))
        lines.append(f"| {strategy} | {'' if subset is None else f'{100 * subset:g}%'} | {len(runs)} | {m:.2f} ± {s:.2f} | "
                     f"{'' if math.isnan(share) else f'{share:.0f}%'} | {versus} | {references}{'' if theirs is None else f'{theirs:.2f}'} | "
                     f"{'' if math.isnan(their_share) else f'{their_share:.0f}%'} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid")
    parser.add_argument("out")
    parser.add_argument("--paper", choices=sorted(PAPERS), default="table4")
    parser.add_argument("--title", default=None)
    parser.add_argument("--command", default="", help="the command that produced the grid, for the record")
    parser.add_argument("--also", action="append", default=[], metavar="GRID=SUFFIX",
                        help="another grid's runs as more rows, '<strategy>, SUFFIX' (paired with this grid's random)")
    parser.add_argument("--against", action="append", default=[], choices=["none", "full"],
                        help="a column of paired differences with this reference as well")
    args = parser.parse_args()
    rows = []
    cells = read_runs(args.grid, rows)
    for item in args.also:
        folder, _, suffix = item.partition("=")
        more = []
        for (strategy, subset), runs in read_runs(folder, more).items():
            cells[(f"{strategy}, {suffix}", subset)] = runs
        rows += [dict(row, strategy=f"{row['strategy']}, {suffix}") for row in more]
    lines = [f"# {args.title or os.path.basename(os.path.normpath(args.grid))}", ""]
    if args.command:
        lines += ["Produced by:", "", "```", args.command, " ".join([f"python experiments/cifar10_tables.py {args.grid} {args.out} --paper {args.paper}",
                                                       *(f"--also '{item}'" for item in args.also),
                                                       *(f"--against {name}" for name in args.against)]),
                  "```", ""]
    lines += table(cells, PAPERS[args.paper], args.against)
    lines += ["", "Final test accuracy after the last epoch, on the fixed 2,000-image test sample; real CIFAR-10 "
              "re-encoded as JPEG (quality 75), which costs a little accuracy against the original files. "
              "Share of full's gain: (accuracy - none) / (full - none), with the none and full rows of the "
              "same suffix where both exist (e.g. 40 epochs against 40 epochs), else with the first two rows. "
              "Paired differences compare runs "
              "with the same seed (same initialisation and data order)."]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + "-runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows(rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
