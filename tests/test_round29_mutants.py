"""Round 29 mutation gaps (explore29 mutation29): each test fails with its mutant of coreaug's
statistics, reporting or augmentation code applied, and passes on the code as it is."""
import math

import pytest
import torch

import coreaug
import coreaug.bench.report as report_module
from coreaug.augment import autoaugment
from coreaug.augment.sampling import RandomSource, integers_from, positive_from, uniform_from
from coreaug.bench import paired_differences, write_report
from coreaug.bench.tables import add_timings, group_rows
from coreaug.errors import UsageError

from test_bench_timing import row as timing_row
from test_report import write_run


def test_a_zero_mean_difference_with_a_spread_of_rounding_error_is_tied():
    """M R05 (report.py paired_differences): the tie test compared the std with TIED * |mean| alone, so a
    cell equal to its baseline on every seed but for float rounding (0.1 + 0.2 against 0.3) had a mean of 0,
    any spread counted, and an interval of width 1e-16 was drawn (its "excludes zero" a coin toss)."""
    figures = paired_differences({0: 0.1 + 0.2, 1: 0.3}, {0: 0.3, 1: 0.1 + 0.2})
    assert figures["n"] == 2 and figures["mean"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(figures["low"]) and math.isnan(figures["high"])


def test_the_plots_curve_is_at_the_mean_training_seconds_of_the_seeds(tmp_path, monkeypatch):
    """M R31 (report.py _mean_curve): the plot put each cell's mean accuracy at its first seed's seconds; a cell
    whose seeds ran at 2 s and 4 s an epoch was drawn at 2, 4 s instead of the mean, 3, 6 s (the plot alone
    shows it: no table holds the curve)."""
    grid = tmp_path / "A"
    write_run(grid, "full", 0, [0.40, 0.60], epoch_seconds=2.0)
    write_run(grid, "full", 1, [0.50, 0.80], epoch_seconds=4.0)
    drawn = []
    monkeypatch.setattr(report_module, "plot_mean_curves", lambda series, *rest: drawn.extend(series))
    write_report(grid, out=tmp_path / "out")
    (panel, label, seconds, accuracies, style), = drawn
    assert label == "full" and seconds == pytest.approx([3.0, 6.0]) and accuracies == pytest.approx([45.0, 70.0])


def test_bench_tables_speedups_divide_the_mean_of_every_full_seed():
    """M B05 (tables.py group_rows): full's seconds taken from its first seed alone; with full's seeds at 120 s
    and 60 s a 30 s group is 3.00x faster (mean 90 s), not 4.00x."""
    rows = [timing_row("full", None, 0, [0.80, 0.90], 60.0), timing_row("full", None, 1, [0.80, 0.90], 30.0),
            timing_row("random", 0.1, 0, [0.80, 0.90], 15.0)]
    add_timings(rows, target=0.85)
    groups = {g["strategy"]: g for g in group_rows(rows)}
    assert groups["random"]["speedup"] == pytest.approx(3.0)
    assert groups["full"]["speedup"] == pytest.approx(1.0)
    assert groups["random"]["target_speedup"] == pytest.approx(90 / 30)


def test_a_runs_time_to_target_speedup_divides_fulls_time_to_target_not_its_seconds():
    """M B10 (tables.py add_timings): results.csv's per-run target_speedup divided full's training seconds
    (120 s) by the run's time to target (30 s): 4.00x instead of full's time to target (60 s) over it, 2.00x.
    The tests' grids had full reach the target in its last epoch, where the two figures agree."""
    rows = [timing_row("full", None, 0, [0.90, 0.90], 60.0), timing_row("random", 0.1, 0, [0.80, 0.90], 15.0)]
    add_timings(rows, target=0.85)
    full, random = rows
    assert full["time_to_target"] == 60.0 and random["time_to_target"] == 30.0
    assert random["speedup"] == pytest.approx(4.0) and random["target_speedup"] == pytest.approx(2.0)
    group = {g["strategy"]: g for g in group_rows(rows)}["random"]
    assert group["speedup"] == pytest.approx(4.0) and group["target_speedup"] == pytest.approx(2.0)


def test_one_paired_seed_shows_no_interval_without_calling_the_seeds_tied(tmp_path):
    """M R22 (report.py _paired_table): a cell paired over one seed was said to have "no spread: add seeds", the
    words for seeds whose differences tie; one seed has no spread to speak of: its row shows dashes."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.40], subset=0.1)
    write_run(grid, "coreset", 0, [0.42], subset=0.1)
    write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| coreset | 10% | 1 | +2.00 ± — | — | — |" in text


def test_a_published_accuracy_of_1_is_refused_as_a_fraction(tmp_path):
    """M R26 (report.py _bad_percent): a paper figure of exactly 1 (100% written as a fraction) was refused as
    "no percentage" rather than told to be given as 100, as every other fraction is."""
    grid = tmp_path / "A"
    write_run(grid, "full", 0, [0.50])
    figures = tmp_path / "paper.csv"
    figures.write_text("strategy,subset,accuracy\nfull,,1\n")
    with pytest.raises(UsageError, match=r"row 2 \(full\): accuracy 1 reads as a fraction; give percent \(100 for 1\)"):
        write_report(grid, out=tmp_path / "out", paper_figures=figures)


def _keyed(n):
    """A source keyed per image, as the trainer draws (test_round24's)."""
    return RandomSource(RandomSource.image_keys(torch.arange(n), 0, 0))


@pytest.mark.parametrize("keyed", [False, True])
def test_autoaugment_applies_each_step_with_its_own_probability_and_draws_every_sub_policy(monkeypatch, keyed):
    """M A12 (autoaugment.py AutoAugment.__init__): each sub-policy's two probabilities taken in the other order
    (the first step at the second's probability) passed every test; M A15: the torch.Generator branch never
    drawing the last sub-policy passed too. A table of two sub-policies tells them apart: (invert always,
    solarize at 255 never) and (identity, identity): every image comes out inverted or unchanged, each of
    them for some images."""
    table = ((("invert", 1.0, None), ("solarize", 0.0, 0)), (("identity", 1.0, None), ("identity", 1.0, None)))
    monkeypatch.setitem(autoaugment.AUTOAUGMENT_POLICIES, "cifar10", table)
    policy, n = autoaugment.AutoAugment(), 64
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(n, 3, 1, 1)  # every level, 255 too
    out = policy(images, _keyed(n) if keyed else torch.Generator().manual_seed(0))
    inverted = (out == 255 - images).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((inverted | kept).all()) and bool(inverted.any()) and bool(kept.any())


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment"])
def test_keyed_draws_give_every_op_both_signs(name):
    """M A06 (randaugment.py _OneOpPerLayer._draws): with the trainer's per-image keys the sign was read from the
    hash that chose the op, so ops 0-6 (shear, translate, rotate, brightness) always went one way and the others
    the other; the signs' overall share stayed one half, which is all test_round24 checks."""
    policy, n = coreaug.create_policy(name), 20_000
    kind, bins, sign = policy._draws(_keyed(n), 2, n, torch.device("cpu"))
    positive = (sign > 0).flatten().double()
    for k in range(len(policy._ops.names)):
        share = positive[kind.flatten() == k].mean()
        assert abs(share - 0.5) < 0.05, (policy._ops.names[k], share)


def test_keyed_autoaugment_signs_are_apart_from_either_steps_coin(monkeypatch):
    """M A11 (autoaugment.py AutoAugment.__call__): the first step's signs read from the hashes of the second
    step's apply-coin (hashed[2:4]) passed: test_round24 compares each step's sign with its own coin only. Then
    a rotation or shear of the first step turned one way whenever the second step was skipped."""
    policy, n, seen = autoaugment.AutoAugment(), 20_000, {}
    monkeypatch.setattr(policy._ops, "apply_layers", lambda x, kind, bins, sign, *a, **k: seen.update(
        kind=kind, sign=sign) or x)
    policy(torch.zeros(n, 3, 4, 4, dtype=torch.uint8), _keyed(n))
    applied, positive = seen["kind"] != policy._identity, (seen["sign"] > 0).double()
    for step in range(2):
        for coin in range(2):
            for taken in (applied[coin], ~applied[coin]):
                assert abs(positive[step][taken].mean() - 0.5) < 0.03, (step, coin)


def test_keyed_integers_are_the_top_bits_of_the_hash_as_documented():
    """M A30 (sampling.py integers_from): integers drawn as hash % high, not floor(hash * high / 2 ** 32) as
    `integers` documents, passed every test: each keyed draw of an op, bin or sub-policy would change for the
    same seed (and an integer in [0, 2) would no longer agree with the sign that `signs` reads from the
    same hash's top bit)."""
    hashes = torch.tensor([0, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1], dtype=torch.int64)
    assert integers_from(hashes, 10).tolist() == [0, 4, 5, 9]
    assert integers_from(hashes, 2).bool().tolist() == positive_from(hashes).tolist()
    assert torch.equal(integers_from(hashes, 14), (uniform_from(hashes) * 14).floor().long())
