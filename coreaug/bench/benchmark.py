"""`run_grid`: train a benchmark grid and write results.csv, results.md, accuracy_vs_time.png."""
import os
from dataclasses import dataclass

from coreaug.errors import UsageError

from .grid import check_writable, plan_grid, run_grid_runs
from .plot import plot_accuracy_vs_time
from .tables import add_timings, group_rows, markdown_table, read_run, write_csv


@dataclass
class BenchResult:
    """A finished grid: per-run rows, per-group rows, the target and the files written."""

    rows: list
    groups: list
    target: float
    target_rule: str
    trained: int
    files: dict


def run_grid(config, out, subsets=(0.1, 0.3, 0.5), strategies=("coreset", "random", "maxloss"),
             references=("none", "full"), seeds=3, target=None, report=None):
    """Train every run of a grid in `out/runs/<name>` and write the result tables to `out`.

    config: the base coreaug.TrainConfig; its settings apply to every run (strategy, subset,
        seed, out and resume are set per run; seeds are config.seed, config.seed + 1, ...).
    subsets, strategies, references, seeds: the grid (see grid.plan_grid).
    target: the accuracy for time-to-target, in (0, 1]; None means 99% of full's final
        accuracy (mean over seeds), or 99% of the grid's best final accuracy without full.
    report: called as report(run, status, position, total) after each run (status: "trained",
        "resumed" or "skipped").
    Finished runs (summary.json present, same config) are skipped; interrupted ones resume
    from their checkpoint. Every check (unknown strategy, empty grid, subsets out of range,
    bad settings, unwritable `out`, a launch by torchrun) raises UsageError before the first
    run starts.
    Returns a BenchResult.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("coreaug bench runs its grid in one process and cannot be launched by torchrun "
                         f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); run it without torchrun, or launch "
                         "each run as its own `torchrun ... coreaug train --out DIR` into the grid's runs/ folder")
    if target is not None and (not isinstance(target, (int, float)) or not 0 < target <= 1):
        raise UsageError(f"target must be an accuracy in (0, 1], got {target!r}")
    out = os.path.abspath(out)
    runs = plan_grid(config, out, subsets, strategies, references, seeds)
    check_writable(out)

    def report_with_total(run, status, position):
        if report:
            report(run, status, position, len(runs))
    trained = run_grid_runs(runs, report_with_total)
    return write_results(runs, out, target, trained)


def write_results(runs, out, target=None, trained=0):
    """Read the finished `runs` and write results.csv, results.md and (with matplotlib) the plot."""
    rows = [read_run(run) for run in runs]
    target, rule = add_timings(rows, target)
    groups = group_rows(rows)
    files = {"csv": os.path.join(out, "results.csv"), "md": os.path.join(out, "results.md")}
    write_csv(rows, files["csv"])
    with open(files["md"], "w") as f:
        f.write(markdown_table(groups, target, rule))
    plot = plot_accuracy_vs_time(rows, target, os.path.join(out, "accuracy_vs_time.png"))
    if plot:
        files["png"] = plot
    return BenchResult(rows, groups, target, rule, trained, files)
