"""A finished grid as tables: one row per run (results.csv) and per (strategy, subset) group
(results.md), with speed-ups against `full` and accuracy gains against `random`."""
import csv
import json
import math
import os

from coreaug.errors import listed
from coreaug.files import atomic_write
from coreaug.training.run_files import recorded_version, several_versions

from .archive import read_record
from .timing import cell_time_to_target, default_target, mean, speedup, std, time_to_target

# Why a run of the grid is missing from the tables (BenchResult.why), in the words of results.md
# and of bench's closing line.
LEFT_OUT = {
    "failed": "failed (fix the error, or remove the run's folder, and run the command again)",
    "unreadable": "unreadable (remove its folder to train it again)",
    "elsewhere": "being trained by another process",
    "shard": "left to the other shards (their --shard commands train them)",
    "earlier": "not finished, planned by an earlier command of this grid (that command trains them)",
    "unfinished": "not finished (the same command trains them)",
    None: "not finished (another shard still going, failed or interrupted)",
}

# Per-selection figures in metrics.jsonl (coreaug.training.diagnostics), averaged over a run's selections.
DIAGNOSTICS = ("selection_noisy_fraction", "selection_noisy_weighted", "selection_loss_selected",
               "selection_loss_rest", "selection_overlap")

CSV_COLUMNS = (
    "name", "strategy", "subset", "seed", "epochs", "final_accuracy", "best_accuracy",
    "total_seconds", "selection_seconds", "selection_share", "eval_seconds", "n_trained",
    "n_augmented", "target_accuracy", "time_to_target", "speedup", "target_speedup",
) + tuple(f"mean_{key}" for key in DIAGNOSTICS)


def read_run(run):
    """A run's figures from its summary.json and metrics.jsonl, as a dict (see CSV_COLUMNS)."""
    with open(os.path.join(run.folder, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run.folder, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f if line.strip()]
    total = summary["total_seconds"]
    return {
        "name": run.name, "strategy": run.strategy, "subset": run.subset, "seed": run.seed,
        "epochs": summary["epochs"], "final_accuracy": summary["final_test_accuracy"],
        "best_accuracy": summary["best_test_accuracy"], "total_seconds": total,
        "selection_seconds": summary["selection_seconds"],
        "selection_share": summary["selection_seconds"] / total if total > 0 else math.nan,
        "eval_seconds": summary["eval_seconds"], "n_trained": summary["n_trained"],
        "n_augmented": summary["n_augmented"], "history": history, "coreaug": recorded_version(summary),
        "eval_every": (summary.get("config") or {}).get("eval_every"),
        "compiled": bool((summary.get("config") or {}).get("compile")),
        "threads": cpu_threads(summary, history),
        **{f"mean_{key}": mean(m[key] for m in history if m.get(key) is not None) for key in DIAGNOSTICS},
    }


def read_runs(runs):
    """The figures of each finished run in `runs` that can be read (read_run dicts in `table_order`,
    then by seed), and {name: why} for those whose config.json, metrics.jsonl or summary.json
    cannot be read or lacks a figure: they are left out, as `coreaug report` leaves them out."""
    rows, unreadable = [], {}
    for run in runs:
        problem = read_record(run.folder, run.name).problem
        if problem is None and run.strategy is None:  # a run grid.json lists, of a config.json without them
            problem = "config.json lacks its strategy, subset or seed"
        if problem is None:
            try:
                rows.append(read_run(run))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                problem = f"summary.json or metrics.jsonl lacks a usable {exc}"
        if problem is not None:
            unreadable[run.name] = problem
    return sorted(rows, key=lambda r: (*table_order(r["strategy"], r["subset"]), r["seed"])), unreadable


def table_order(strategy, subset):
    """The tables' fixed row order, whatever command trained the runs: the references (full, none),
    then each subset from the smallest, random first and the other strategies by name."""
    return subset is not None, subset or 0, strategy != "random", strategy


def add_timings(rows, target=None):
    """Fill each row's target_accuracy, time_to_target, speedup and target_speedup in place.

    `target` is an accuracy in (0, 1]; None takes `default_target`. Speed-ups divide the
    `full` reference's mean over seeds (training seconds, or time to target as
    `cell_time_to_target` takes it) by the run's; NaN without a full reference, or for a run
    (or a full seed) that never reached the target.
    Returns (target, rule), the rule being a sentence saying how the target was chosen.
    """
    full = [r for r in rows if r["strategy"] == "full"]
    if target is None:
        target, rule = default_target([r["final_accuracy"] for r in rows], [r["final_accuracy"] for r in full])
    else:
        rule = "given with --target"
    for row in rows:
        row["target_accuracy"] = target
        row["time_to_target"] = time_to_target(row["history"], target)
    full_seconds = mean(r["total_seconds"] for r in full)
    full_to_target, _ = _time_to_target(full)
    for row in rows:
        row["speedup"] = speedup(full_seconds, row["total_seconds"])
        row["target_speedup"] = speedup(full_to_target, row["time_to_target"])
    return target, rule


def write_csv(rows, path):
    """One line per run with CSV_COLUMNS; NaN is written as an empty cell, subset too for references.
    Written atomically (a temporary file of a random name: shards of one grid in containers often
    share a process id), and a grid's own file: a link in its place is replaced."""
    def write(f):
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if _missing(row[c]) else _csv_value(row[c]) for c in CSV_COLUMNS])

    atomic_write(path, write, through_links=False)


def group_rows(rows):
    """Aggregate runs over seeds per (strategy, subset), in `table_order`. Returns a list of dicts."""
    groups = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["subset"]), []).append(row)
    groups = {key: groups[key] for key in sorted(groups, key=lambda key: table_order(*key))}
    full = [r for r in rows if r["strategy"] == "full"]
    full_seconds = mean(r["total_seconds"] for r in full)
    full_to_target, _ = _time_to_target(full)
    random_accuracy = {subset: {r["seed"]: r["final_accuracy"] for r in members}  # by seed: gains are paired
                       for (strategy, subset), members in groups.items() if strategy == "random"}
    summary = []
    for (strategy, subset), members in groups.items():
        accuracy = mean(r["final_accuracy"] for r in members)
        seconds = mean(r["total_seconds"] for r in members)
        to_target, reached = _time_to_target(members)  # NaN unless every seed got there
        # every selecting strategy against random at its subset (references have no subset), seed by seed over
        # the seeds both cells have: a narrower command that added seeds to one of them leaves the others out
        random_seeds = random_accuracy.get(subset, {}) if strategy != "random" else {}
        paired = [r["final_accuracy"] - random_seeds[r["seed"]] for r in members if r["seed"] in random_seeds]
        gain = mean(paired) if paired else math.nan
        summary.append({
            "strategy": strategy, "subset": subset, "seeds": len(members),
            "accuracy": accuracy, "accuracy_std": std(r["final_accuracy"] for r in members),
            "best_accuracy": mean(r["best_accuracy"] for r in members),
            "seconds": seconds, "seconds_std": std(r["total_seconds"] for r in members),
            "speedup": speedup(full_seconds, seconds), "gain_over_random": gain,
            "selection_share": mean(r["selection_seconds"] for r in members) / seconds if seconds > 0 else math.nan,
            "reached": reached,
            "time_to_target": to_target, "target_speedup": speedup(full_to_target, to_target),
            "best_accuracy_std": std(r["best_accuracy"] for r in members),
            **{key: mean(r.get(f"mean_{key}", math.nan) for r in members) for key in DIAGNOSTICS},
        })
    return summary


def _time_to_target(rows):
    """(seconds, seeds reaching it) of a cell's rows, by the rule `coreaug report` uses too."""
    if not rows:
        return math.nan, 0
    return cell_time_to_target([r["history"] for r in rows], rows[0]["target_accuracy"])


def evaluated_otherwise(intervals):
    """The note for runs evaluated at other intervals (their --eval-every; None: not recorded), or "": the
    same training, but best accuracy and time to target are read at the evaluated epochs alone."""
    shown = sorted({every for every in intervals if every is not None})
    if len(shown) < 2:
        return ""
    return (f"runs evaluated every {listed(map(str, shown))} epochs pooled: best accuracy "
            "and time to target are read at evaluated epochs only, so a sparser run's come later or lower")


def cpu_threads(summary, history):
    """The thread counts a CPU run's epochs recorded (metrics.jsonl rows); none for a run on a GPU,
    whose seconds the CPU's threads hardly touch."""
    if not str((summary or {}).get("device", "cpu")).startswith("cpu"):
        return []
    return [row["threads"] for row in history or () if isinstance(row, dict) and "threads" in row]


def threads_otherwise(threads):
    """The note for runs trained on other CPU thread counts (`threads`: each run's per-epoch counts, as
    metrics.jsonl records them), or "": a grid continued with another --jobs (1 thread a worker, or the
    cores) times its cells' runs two ways."""
    shown = sorted({count for counts in threads for count in counts})
    if len(shown) < 2:
        return ""
    return (f"runs trained on {listed(map(str, shown))} CPU threads pooled (a grid "
            "continued with another --jobs or OMP_NUM_THREADS): their seconds and speed-ups differ by the thread "
            "count; set OMP_NUM_THREADS to keep one count")


def compiled_note(compiled):
    """The note for runs trained compiled (`compiled`: one bool a run), or "": their seconds hold the
    compile (tens of seconds on a CPU, in their first epoch), which an eager run's do not."""
    count = sum(map(bool, compiled))
    if not count:
        return ""
    which = "the runs were" if count == len(compiled) else f"{count} of the {len(compiled)} runs were"
    return (f"{which} trained compiled (--compile): their seconds include compiling the step, in their first "
            "epoch")


def markdown_table(groups, target, rule, *, runs=None, missing=(), versions=(), intervals=(), compiled=(),
                   threads=()):
    """results.md: the per-group table and a legend saying what each column measures.

    runs: the number of the grid's runs; missing: those the table leaves out, counted in a line
    above the table (left out when runs is None): {name: why} with LEFT_OUT's keys, each kind
    counted and named on its own, or a list of names (unfinished or unreadable). versions: the
    coreaug version of each run in the table (`recorded_version`), named above it when they differ;
    intervals: each run's --eval-every, noted when they differ (`evaluated_otherwise`); compiled: whether
    each run was trained compiled (`compiled_note`); threads: each run's thread counts (`threads_otherwise`).
    """
    lines = [f"Target accuracy: {target:.2%} ({rule}).", ""]
    if runs is not None:
        lines += [_coverage(runs, missing), ""]
    for pooled in (several_versions(versions), evaluated_otherwise(intervals), threads_otherwise(threads),
                   compiled_note(compiled)):
        if pooled:
            lines += [f"Note: {pooled}.", ""]
    lines += [
        "| strategy | subset | seeds | final acc (mean ± std) | best acc "
        "| seconds, training + selection (mean ± std) | speed-up vs full | gain over random | selection share "
        "| reached target | time to target | time-to-target speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        lines.append(
            f"| {g['strategy']} | {_fraction(g['subset'])} | {g['seeds']} "
            f"| {g['accuracy']:.2%} ± {_spread(100 * g['accuracy_std'], 2)} "
            f"| {g['best_accuracy']:.2%} ± {_spread(100 * g['best_accuracy_std'], 2)} "
            f"| {g['seconds']:.1f} ± {_spread(g['seconds_std'], 1)} | {_times(g['speedup'])} "
            f"| {_points(g['gain_over_random'])} | {g['selection_share']:.0%} | {g['reached']}/{g['seeds']} "
            f"| {_seconds(g['time_to_target'])} | {_times(g['target_speedup'])} |")
    lines += [
        "",
        "Strategy: the rule that chose the subset strongly augmented, at the subset's size; full strongly augments",
        "every example, none no example (weak augmentation only): the two references the subsets fall between.",
        "Seconds, training + selection: the epochs' time with their selections (evaluation left out), summed",
        "over epochs, as `coreaug report`'s \"seconds, training + selection\"; ± is the sample std over seeds",
        "(— for one seed). Speed-up vs full: full's mean seconds / the group's. Gain over random: final",
        "accuracy minus random's at the same subset, in points, seed by seed over the seeds both groups have.",
        "Selection share: selection seconds / those",
        "seconds. Time to target: each seed's seconds (training + selection) until its test accuracy first",
        "reaches the target, mean over seeds (— unless every seed reached it; reached target counts those",
        "that did); its speed-up is full's time to target / the group's. `coreaug report` takes it the same way.",
    ]
    return "\n".join(lines + diagnostics_table(groups)) + "\n"


def diagnostics_table(groups, subset_text=None):
    """Markdown lines: the selections' figures per group, averaged over selections and seeds.

    Takes dicts with `strategy`, `subset` and the DIAGNOSTICS keys (NaN or None where a run
    could not know a figure: blank), and how to write a subset (default: the fraction, 0.3).
    Only groups that logged some are shown; [] when none did.
    """
    subset_text = subset_text or _fraction
    shown = [g for g in groups if any(not _missing(g[key]) for key in DIAGNOSTICS)]
    if not shown:
        return []
    lines = ["", "Selections (mean over every selection of every seed):", "",
             "| strategy | subset | flipped labels in selection | flipped, weighted | loss of selected "
             "| loss of the rest | overlap with previous |", "|---|---|---|---|---|---|---|"]
    for g in shown:
        cells = [_share(g["selection_noisy_fraction"]), _share(g["selection_noisy_weighted"]),
                 _number(g["selection_loss_selected"]), _number(g["selection_loss_rest"]),
                 _share(g["selection_overlap"])]
        lines.append(f"| {g['strategy']} | {subset_text(g['subset'])} | " + " | ".join(cells) + " |")
    lines += ["", "Flipped: share of the picks whose label --label-noise flipped (weighted: by their coreset",
              "weights). Losses: mean clean-image cross-entropy of the picks and of the other examples at",
              "selection time (from the selection's own pass; blank for random, which makes none)."]
    return lines


def _coverage(runs, missing, shown=10):
    if not missing:
        return f"Runs: all {runs} of the grid's runs are in the table."
    if isinstance(missing, dict):
        return f"Runs: {runs - len(missing)} of the grid's {runs}; {len(missing)} missing from the table: " \
            + "; ".join(left_out(missing, shown)) + "."
    missing = list(missing)
    names = ", ".join(missing[:shown]) + (f" and {len(missing) - shown} more" if len(missing) > shown else "")
    return (f"Runs: {runs - len(missing)} of the grid's {runs}; {len(missing)} missing from the table (not finished: "
            f"another shard still going, failed or interrupted; or unreadable): {names}.")


def left_out(why, shown=10):
    """The runs the tables leave out, one phrase per kind: "1 failed (...): full-seed0".

    why: {name: a key of LEFT_OUT}; at most `shown` names per kind, then "and N more".
    """
    kinds = {}
    for name, kind in why.items():
        kinds.setdefault(kind, []).append(name)
    parts = []
    for kind in sorted(kinds, key=list(LEFT_OUT).index):
        names = kinds[kind]
        listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
        parts.append(f"{len(names)} {LEFT_OUT[kind]}: {listed}")
    return parts


def _spread(value, digits):
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _share(value):
    return "" if _missing(value) else f"{value:.1%}"


def _number(value):
    return "" if _missing(value) else f"{value:.3f}"


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _csv_value(value):
    return repr(value) if isinstance(value, float) else value


def _fraction(subset):
    return "—" if subset is None else f"{subset:g}"


def _times(value):
    return "—" if math.isnan(value) else f"{value:.2f}x"


def _points(value):
    return "—" if math.isnan(value) else f"{round(100 * value, 2) + 0.0:+.2f}"  # + 0.0: no -0.00


def _seconds(value):
    return "—" if math.isnan(value) else f"{value:.1f} s"
