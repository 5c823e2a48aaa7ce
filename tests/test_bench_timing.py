"""Time-to-target, speed-ups and the grouped table, on hand-made metrics."""
import math

import pytest

from coreaug.bench import default_target, speedup, time_to_target
from coreaug.bench.tables import add_timings, group_rows, markdown_table


def history(accuracies, seconds_per_epoch=10.0):
    return [{"epoch": e, "test_accuracy": a, "elapsed_seconds": seconds_per_epoch * (e + 1)}
            for e, a in enumerate(accuracies)]


def row(strategy, subset, seed, accuracies, seconds_per_epoch, selection_seconds=0.0):
    h = history(accuracies, seconds_per_epoch)
    return {"name": f"{strategy}-{subset}-seed{seed}", "strategy": strategy, "subset": subset, "seed": seed,
            "final_accuracy": accuracies[-1], "best_accuracy": max(accuracies),
            "total_seconds": h[-1]["elapsed_seconds"], "selection_seconds": selection_seconds, "history": h}


def test_time_to_target_is_the_elapsed_seconds_of_the_first_epoch_at_or_above_it():
    assert time_to_target(history([0.5, 0.7, 0.8, 0.75]), 0.7) == 20.0
    assert time_to_target(history([0.5, 0.7, 0.8]), 0.71) == 30.0


def test_time_to_target_is_nan_when_never_reached_or_no_epochs():
    assert math.isnan(time_to_target(history([0.5, 0.6]), 0.9))
    assert math.isnan(time_to_target([], 0.5))


def test_time_to_target_uses_cumulative_training_seconds_not_epoch_count():
    rows = [{"test_accuracy": 0.2, "elapsed_seconds": 3.5}, {"test_accuracy": 0.9, "elapsed_seconds": 4.25}]
    assert time_to_target(rows, 0.9) == 4.25


def test_speedup_is_reference_over_run_and_nan_for_missing_times():
    assert speedup(60.0, 12.0) == 5.0
    assert speedup(10.0, 20.0) == 0.5
    assert math.isnan(speedup(float("nan"), 2.0))
    assert math.isnan(speedup(10.0, float("nan")))
    assert math.isnan(speedup(10.0, 0.0))


def test_default_target_is_99_percent_of_full_mean_else_of_the_best_run():
    target, rule = default_target([0.5, 0.9, 0.8], [0.8, 0.9])
    assert target == pytest.approx(0.99 * 0.85) and "full" in rule
    target, rule = default_target([0.5, 0.9, 0.8], [])
    assert target == pytest.approx(0.99 * 0.9) and "best" in rule


@pytest.fixture
def grid_rows():
    return [
        row("full", None, 0, [0.70, 0.80, 0.90], 40.0),       # 120 s, target 0.99 * 0.9 reached at 120 s
        row("full", None, 1, [0.75, 0.85, 0.90], 40.0),       # 120 s, reached at 120 s
        row("coreset", 0.1, 0, [0.80, 0.90, 0.90], 10.0, 6.0),  # 30 s, reached at 20 s
        row("coreset", 0.1, 1, [0.80, 0.895, 0.90], 10.0, 6.0),  # 30 s, reached at 20 s
        row("random", 0.1, 0, [0.60, 0.70, 0.80], 8.0),       # 24 s, never
        row("random", 0.1, 1, [0.60, 0.70, 0.90], 8.0),       # 24 s, at 24 s
    ]


def test_add_timings_fills_target_and_speedups_per_run(grid_rows):
    target, rule = add_timings(grid_rows)
    assert target == pytest.approx(0.891) and "full" in rule
    coreset = grid_rows[2]
    assert coreset["time_to_target"] == 20.0
    assert coreset["speedup"] == pytest.approx(120 / 30)
    assert coreset["target_speedup"] == pytest.approx(120 / 20)
    assert math.isnan(grid_rows[4]["time_to_target"]) and math.isnan(grid_rows[4]["target_speedup"])


def test_given_target_overrides_the_default(grid_rows):
    target, rule = add_timings(grid_rows, target=0.75)
    assert target == 0.75 and "--target" in rule
    assert grid_rows[0]["time_to_target"] == 80.0 and grid_rows[2]["time_to_target"] == 10.0


def test_groups_average_seeds_and_compare_with_full_and_random(grid_rows):
    add_timings(grid_rows)
    groups = {(g["strategy"], g["subset"]): g for g in group_rows(grid_rows)}
    coreset, random = groups["coreset", 0.1], groups["random", 0.1]
    assert coreset["seeds"] == 2 and coreset["accuracy"] == pytest.approx(0.90)
    assert coreset["speedup"] == pytest.approx(4.0)
    assert coreset["gain_over_random"] == pytest.approx(0.90 - 0.85)
    assert coreset["selection_share"] == pytest.approx(6 / 30)
    assert coreset["target_speedup"] == pytest.approx(6.0)
    assert random["reached"] == 1 and math.isnan(random["time_to_target"]) and math.isnan(random["gain_over_random"])
    assert groups["full", None]["speedup"] == pytest.approx(1.0)


def test_markdown_shows_dashes_for_missing_figures(grid_rows):
    target, rule = add_timings(grid_rows)
    text = markdown_table(group_rows(grid_rows), target, rule)
    random_line = next(line for line in text.splitlines() if line.startswith("| random"))
    coreset_line = next(line for line in text.splitlines() if line.startswith("| coreset"))
    assert "| 1/2 | — | — |" in random_line
    assert "4.00x" in coreset_line and "+5.00" in coreset_line and "6.00x" in coreset_line


def test_without_full_speedups_are_missing_and_target_uses_best_run(grid_rows):
    rows = [r for r in grid_rows if r["strategy"] != "full"]
    target, _ = add_timings(rows)
    assert target == pytest.approx(0.99 * 0.90)
    assert all(math.isnan(r["speedup"]) for r in rows)


def test_time_to_target_passes_over_epochs_without_an_evaluation():
    rows = history([0.5, 0.9, 0.8])
    rows[1]["test_accuracy"] = None  # not evaluated (--eval-every): its 0.9 was never seen
    assert time_to_target(rows, 0.7) == 30.0


@pytest.mark.parametrize("strategy", ["coreset-lowloss", "coreset-history", "coreset-heldout", "crust", "infobatch",
                                      "ccs", "maxloss"])
def test_every_selecting_strategy_has_a_gain_over_random(grid_rows, strategy):
    rows = grid_rows + [row(strategy, 0.1, 0, [0.7, 0.95], 10.0)]
    add_timings(rows)
    groups = {(g["strategy"], g["subset"]): g for g in group_rows(rows)}
    assert groups[strategy, 0.1]["gain_over_random"] == pytest.approx(0.95 - 0.80)  # paired: random's seed 0
    assert math.isnan(groups["full", None]["gain_over_random"])


def test_one_seed_has_no_std(grid_rows):
    rows = [r for r in grid_rows if r["seed"] == 0]
    target, rule = add_timings(rows)
    assert math.isnan(group_rows(rows)[0]["accuracy_std"])
    coreset_line = next(line for line in markdown_table(group_rows(rows), target, rule).splitlines()
                        if line.startswith("| coreset"))
    assert "| 90.00% ± — | 90.00% ± — | 30.0 ± — |" in coreset_line


def test_markdown_says_how_many_of_the_grids_runs_are_missing(grid_rows):
    target, rule = add_timings(grid_rows)
    text = markdown_table(group_rows(grid_rows), target, rule, runs=8, missing=["none-seed0", "none-seed1"])
    assert ("Runs: 6 of the grid's 8; 2 missing from the table (not finished: another shard still going, failed or "
            "interrupted; or unreadable): none-seed0, none-seed1.") in text
    assert "Runs: all 6 of the grid's runs are in the table." in markdown_table(group_rows(grid_rows), target, rule,
                                                                                runs=6)


def test_a_gain_that_rounds_to_zero_has_no_minus(grid_rows):
    rows = grid_rows + [row("ccs", 0.1, 0, [0.7, 0.84999], 10.0)]
    rows[4]["final_accuracy"] = rows[5]["final_accuracy"] = 0.85
    target, rule = add_timings(rows)
    ccs_line = next(line for line in markdown_table(group_rows(rows), target, rule).splitlines()
                    if line.startswith("| ccs"))
    assert "| +0.00 |" in ccs_line
