"""Time-to-target and speed-up arithmetic on a run's per-epoch metrics.

Times are training seconds: the `training_seconds` of metrics.jsonl, which sums the epochs'
training and selection time and leaves evaluation out (runs written before it existed carry
the same figure as `elapsed_seconds`).
"""
import math

NAN = float("nan")
TARGET_FRACTION = 0.99


def time_to_target(history, target):
    """Training seconds until a run first reaches `target` test accuracy.

    Takes the run's metrics rows (dicts with `test_accuracy` and `training_seconds`, in epoch
    order) and an accuracy in [0, 1]. Returns the `training_seconds` of the first epoch whose
    test accuracy is >= target, or NaN when no epoch reaches it. Epochs without an evaluation
    (`--eval-every`) are passed over.
    """
    for row in history:
        if row.get("test_accuracy") is not None and row["test_accuracy"] >= target:
            return training_seconds(row)
    return NAN


def cell_time_to_target(histories, target):
    """A cell's time to `target`, the one rule of results.md and `coreaug report`: each seed's
    first time reaching it (`time_to_target`), mean over the seeds.

    Takes one metrics history per seed. Returns (seconds, reached): seconds is NaN unless every
    seed reached the target (a mean over the seeds that got there would flatter the cell), and
    reached counts the seeds that did.
    """
    times = [time_to_target(history, target) for history in histories]
    reached = sum(not math.isnan(t) for t in times)
    return (mean(times) if reached == len(times) else NAN), reached


def training_seconds(row):
    """A metrics row's cumulative training + selection seconds (evaluation excluded)."""
    return float(row["training_seconds"] if "training_seconds" in row else row["elapsed_seconds"])


def speedup(reference_seconds, seconds):
    """How many times faster a run is than the reference: reference_seconds / seconds.

    NaN when either time is NaN (a run that never reached its target) or `seconds` is not > 0.
    """
    if math.isnan(reference_seconds) or math.isnan(seconds) or seconds <= 0:
        return NAN
    return reference_seconds / seconds


def mean(values):
    """The mean of `values`; NaN if there are none or any is NaN."""
    values = list(values)
    return sum(values) / len(values) if values else NAN


def std(values):
    """The sample standard deviation (n - 1); NaN for fewer than two values (one seed has none)."""
    values = list(values)
    if len(values) < 2:
        return NAN
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def default_target(final_accuracies, full_final_accuracies):
    """The default target accuracy of a grid, and the rule that chose it.

    99% of the `full` reference's final test accuracy (mean over its seeds); without a finished
    `full` run in the grid, 99% of the best final accuracy of any run of the grid.
    Returns (target, rule) where rule is a short sentence for the tables.
    """
    if full_final_accuracies:
        return TARGET_FRACTION * mean(full_final_accuracies), "99% of full's final accuracy (mean over seeds)"
    return TARGET_FRACTION * max(final_accuracies), "99% of the best final accuracy in the grid (no finished full run)"
