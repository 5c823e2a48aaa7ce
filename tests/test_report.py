"""`coreaug report` on grids of fake runs written as coreaug writes them (config.json,
metrics.jsonl, summary.json): the figures it must give, what it says about missing and
unfinished runs, and one line with exit code 2 for a path it cannot read."""
import csv
import json
import math
import sys

import pytest

from coreaug.bench import paired_differences, write_report
from coreaug.errors import UsageError

T_975_2 = 4.302652729911275  # t(0.975) with 2 degrees of freedom, from a t table
T_975_4 = 2.7764451051977987  # ... with 4


def write_run(grid, strategy, seed, curve, subset=None, epoch_seconds=2.0, selection=0.5, metrics=None):
    """A finished run's three files; `curve` is the test accuracy after each epoch (fractions)."""
    name = f"{strategy}-seed{seed}" if subset is None else f"{strategy}-{subset:g}-seed{seed}"
    folder = grid / "runs" / name
    folder.mkdir(parents=True)
    config = {"dataset": "synthetic", "strategy": strategy, "subset": 1.0 if subset is None else subset,
              "epochs": len(curve), "seed": seed}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    rows = [{"epoch": e, "train_loss": 1.0, "test_accuracy": a, "epoch_seconds": epoch_seconds,
             "selection_seconds": selection if e == 0 else 0.0, "training_seconds": (e + 1) * epoch_seconds,
             **(metrics or {})} for e, a in enumerate(curve)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"config": dict(config, out=str(folder)), "final_test_accuracy": curve[-1],
               "best_test_accuracy": max(a for a in curve if a is not None), "epochs": len(curve),
               "total_seconds": len(curve) * epoch_seconds, "selection_seconds": selection}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


@pytest.fixture
def grid(tmp_path):
    """References and two strategies at 10% over three seeds; random also at 30%."""
    grid = tmp_path / "A"
    for seed, (none, full, random, coreset) in enumerate([(40, 50, 42, 44), (41, 51, 43, 46), (42, 52, 44, 49)]):
        write_run(grid, "none", seed, [0.30, none / 100], epoch_seconds=1.0)
        write_run(grid, "full", seed, [0.45, full / 100], epoch_seconds=4.0)
        write_run(grid, "random", seed, [0.30, random / 100], subset=0.1)
        write_run(grid, "coreset", seed, [0.35, coreset / 100], subset=0.1, epoch_seconds=3.0)
        write_run(grid, "random", seed, [0.30, 0.45], subset=0.3)
    return grid


def table_row(text, start):
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert rows, f"no row starting {start!r}"
    return rows


def cells_csv(result):
    with open(result.files["cells_csv"], newline="") as f:
        return {(r["strategy"], r["label"], r["subset"]): r for r in csv.DictReader(f)}


def test_paired_differences_and_interval_match_a_hand_computation():
    # coreset - random over seeds 0, 1, 2: 2, 3, 5 (seed 7 has no partner and is left out)
    figures = paired_differences({0: 44.0, 1: 46.0, 2: 49.0, 7: 60.0}, {0: 42.0, 1: 43.0, 2: 44.0})
    mean = 10 / 3
    std = math.sqrt(((2 - mean) ** 2 + (3 - mean) ** 2 + (5 - mean) ** 2) / 2)
    half = T_975_2 * std / math.sqrt(3)
    assert figures["n"] == 3
    assert figures["mean"] == pytest.approx(mean) and figures["std"] == pytest.approx(std)
    assert (figures["low"], figures["high"]) == pytest.approx((mean - half, mean + half))


def test_one_common_seed_gives_no_interval():
    figures = paired_differences({0: 44.0, 1: 46.0}, {1: 40.0})
    assert figures["n"] == 1 and figures["mean"] == 6.0 and math.isnan(figures["low"])


def test_report_tables_give_accuracy_paired_intervals_and_shares(grid, tmp_path):
    result = write_report(grid, out=tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    # coreset 44, 46, 49: mean 46.33; none 41 and full 51 -> share (46.33 - 41) / 10 = 53%
    assert table_row(text, "| coreset | 10% | 3 | 46.33 ± 2.52 | 46.33 | 53% |")
    mean, std = 10 / 3, math.sqrt(7 / 3)
    low, high = mean - T_975_2 * std / math.sqrt(3), mean + T_975_2 * std / math.sqrt(3)
    paired = table_row(text, "| coreset | 10% | 3 |")[1]  # the second table: paired differences
    assert paired == f"| coreset | 10% | 3 | +{mean:.2f} ± {std:.2f} | {low:+.2f} to {high:+.2f} | no |"
    row = cells_csv(result)[("coreset", "", "0.1")]
    assert float(row["vs_random_low"]) == pytest.approx(low) and float(row["vs_random_high"]) == pytest.approx(high)
    assert float(row["share_of_full_gain"]) == pytest.approx((46 + 1 / 3 - 41) / 10)
    assert not any(line.startswith("| random | 10% | 3 | +") for line in text.splitlines())  # not against itself


def test_an_interval_that_excludes_zero_says_so(tmp_path):
    grid = tmp_path / "B"
    for seed, (random, coreset) in enumerate([(40, 42), (41, 43), (42, 45), (40, 42), (43, 45)]):
        write_run(grid, "random", seed, [random / 100], subset=0.05)
        write_run(grid, "coreset", seed, [coreset / 100], subset=0.05)
    write_report(grid, out=tmp_path / "out")
    diffs = [2, 2, 3, 2, 2]
    mean = sum(diffs) / 5
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    half = T_975_4 * std / math.sqrt(5)
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"| coreset | 5% | 5 | +{mean:.2f} ± {std:.2f} | +{mean - half:.2f} to +{mean + half:.2f} | yes, above |" in text


def test_references_as_baselines_pair_every_selecting_cell(grid, tmp_path):
    result = write_report(grid, out=tmp_path / "out", baseline="random,full")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Paired differences against full" in text
    # random at 30%: 45 against full 50, 51, 52 -> -6 on average, spread 1
    row = cells_csv(result)[("random", "", "0.3")]
    assert float(row["vs_full_mean"]) == pytest.approx(-6.0) and float(row["vs_full_std"]) == pytest.approx(1.0)


def test_time_per_epoch_time_to_target_and_speedups(grid, tmp_path):
    result = write_report(grid, out=tmp_path / "out", target=0.44)
    rows = cells_csv(result)
    full, coreset, random = rows[("full", "", "")], rows[("coreset", "", "0.1")], rows[("random", "", "0.1")]
    # full: 4 s per epoch, coreset 3 s, each with 0.5 s of selection over its 2 epochs
    assert float(full["seconds_per_epoch"]) == 3.75 and float(full["selection_per_epoch"]) == 0.25
    assert float(coreset["seconds_per_epoch"]) == pytest.approx(2.75)
    # every seed: full reaches 44% after its first epoch (45%) at 4 s, coreset after its second at 6 s
    assert float(full["time_to_target"]) == 4.0 and float(coreset["time_to_target"]) == 6.0
    assert float(coreset["target_speedup"]) == pytest.approx(4 / 6) and float(coreset["speedup"]) == pytest.approx(8 / 6)
    # random: only its seed 2 reaches 44%, so the cell has no time
    assert random["time_to_target"] == "" and random["reached"] == "1"
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| random | 10% | 3 | 1.75 | 0.25 | 4.0 | 2.00x | not by every seed | 1/3 | — |" in text  # 4 s: 1 decimal


def test_epoch_seconds_from_a_file_replace_the_runs_own(grid, tmp_path):
    rates = tmp_path / "rates.csv"
    rates.write_text("# measured on a quiet machine\nstrategy,subset,seconds_per_epoch\nfull,,10\ncoreset,0.1,5\n")
    result = write_report(grid, out=tmp_path / "out", target=0.44, epoch_seconds=rates)
    rows = cells_csv(result)
    assert float(rows[("full", "", "")]["time_to_target"]) == 10.0 and float(rows[("coreset", "", "0.1")]["seconds"]) == 10
    assert rows[("none", "", "")]["seconds"] == ""  # no rate given: no time


def test_another_grid_is_compared_with_its_own_baseline_and_references(grid, tmp_path):
    longer = tmp_path / "A-40"
    for seed in range(2):
        write_run(longer, "coreset", seed, [0.4, 0.60 + 0.01 * seed], subset=0.1)
        write_run(longer, "random", seed, [0.4, 0.59], subset=0.1)
        write_run(longer, "none", seed, [0.4, 0.55])
        write_run(longer, "full", seed, [0.4, 0.65])
    weighted = tmp_path / "A-weighted"
    write_run(weighted, "coreset", 0, [0.4, 0.40], subset=0.1)
    result = write_report(grid, out=tmp_path / "out", also=[(longer, "40 epochs"), (weighted, "weighted")])
    rows = cells_csv(result)
    longer_row = rows[("coreset", "40 epochs", "0.1")]
    assert float(longer_row["vs_random_mean"]) == pytest.approx(1.5)  # 60 - 59, 61 - 59
    assert float(longer_row["share_of_full_gain"]) == pytest.approx((60.5 - 55) / 10)  # its own none and full
    weighted_row = rows[("coreset", "weighted", "0.1")]
    assert float(weighted_row["vs_random_mean"]) == pytest.approx(-2.0)  # the first grid's random: 40 - 42
    assert float(weighted_row["share_of_full_gain"]) == pytest.approx(-0.1)  # the first grid's references
    text = (tmp_path / "out" / "report.md").read_text()
    assert table_row(text, "| coreset, 40 epochs | 10% | 2 | 60.50 ± 0.71 |")


def test_paper_figures_give_a_column_and_their_share(grid, tmp_path):
    paper = tmp_path / "paper.csv"
    paper.write_text("# a table of a paper\nstrategy,subset,accuracy\nnone,,89.46\nfull,,93.50\ncoreset,0.1,91.54\n")
    write_report(grid, out=tmp_path / "out", paper_figures=paper)
    text = (tmp_path / "out" / "report.md").read_text()
    assert table_row(text, "| coreset | 10% | 3 | 46.33 ± 2.52 | 46.33 | 53% | 91.54 | 51% |")
    assert table_row(text, "| random | 10% | 3 | 43.00 ± 1.00 | 43.00 | 20% |  |  |")


def test_paper_figures_that_name_no_cell_are_refused_as_epoch_seconds_are(grid, tmp_path):
    """flags27 #4: a CSV whose rows named no cell (Random for random) gave an empty paper column, exit 0."""
    paper = tmp_path / "paper.csv"
    paper.write_text("strategy,subset,accuracy\nRandom,0.5,50\n")
    with pytest.raises(UsageError, match=r"^--paper-figures .*: no row names a cell of the runs reported \(rows "
                                         r"Random 0\.5; the runs have "):
        write_report(grid, out=tmp_path / "out", paper_figures=paper)
    assert not (tmp_path / "out").exists()


def test_a_missing_seed_and_a_crashed_run_are_reported_and_the_rest_written(grid, tmp_path):
    for file in ("summary.json", "metrics.jsonl", "config.json"):
        (grid / "runs" / "coreset-0.1-seed1" / file).unlink()
    (grid / "runs" / "coreset-0.1-seed1").rmdir()  # seed 1 never ran
    (grid / "runs" / "random-0.3-seed2" / "summary.json").unlink()  # crashed before its summary
    (grid / "runs" / "none-seed1" / "metrics.jsonl").write_text("{not json\n")  # damaged
    result = write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    section = text.split("## Missing or unfinished runs", 1)[1]
    assert "`random-0.3-seed2`: no summary.json (unfinished, or crashed)" in section
    assert "`none-seed1`: metrics.jsonl unreadable" in section
    assert "coreset 10%: 2 seeds, lacks seed 1 that other cells at this subset have" in section
    assert "random 30%: 2 seeds" not in section  # the crash is listed once, as a crash ...
    assert "none (reference): 2 seeds, lacks seed 1" in section  # ... the damaged run left its cell short
    assert table_row(text, "| coreset | 10% | 2 | 46.50 ± 3.54 |")  # the rest is still there
    assert len(result.problems) == 4 and (tmp_path / "out" / "report-runs.csv").exists()


def test_runs_a_running_grid_has_not_started_are_named_from_its_plan(grid, tmp_path):
    from coreaug.bench.archive import planned_runs, record_plan

    names = sorted(p.name for p in (grid / "runs").iterdir())
    record_plan(grid, names + ["maxloss-0.1-seed0"])  # as bench writes it before its first run
    record_plan(grid, ["maxloss-0.1-seed1"])  # a later command's runs are added
    assert planned_runs(grid) == sorted(names + ["maxloss-0.1-seed0", "maxloss-0.1-seed1"])
    result = write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    section = text.split("## Missing or unfinished runs", 1)[1]
    assert "`maxloss-0.1-seed0`: not started" in section and "`maxloss-0.1-seed1`: not started" in section
    assert f"15 finished runs of {len(names) + 2}" in text and len(result.problems) == 2


def _file(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "does not exist"),
    (lambda tmp: tmp, "is neither a grid folder"),
    (lambda tmp: write_run(tmp / "g", "full", 0, [0.5]), "is a run folder, not a grid; give its grid, {tmp}/g "
                                                         "(the folder holding runs/)"),
    (lambda tmp: (tmp / "g" / "runs").mkdir(parents=True) or tmp / "g", "holds no runs"),
    (lambda tmp: _file(tmp / "x.runs.jsonl.xz", b"not an archive"), "is not a grid archive"),
    (lambda tmp: _file(tmp / "y.runs.jsonl.xz", b"\xfd7zXZ\x00 and then no xz stream"), "is not a grid archive"),
])
def test_a_path_that_is_no_grid_is_one_line_exit_2(tmp_path, capsys, make, message):
    from coreaug.cli.main import main
    (tmp_path / "empty").mkdir()
    path = make(tmp_path / "empty")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.format(tmp=tmp_path / "empty") in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_grid_without_finished_runs_is_refused(tmp_path):
    folder = write_run(tmp_path / "g", "random", 0, [0.5], subset=0.1)
    (folder / "summary.json").unlink()
    with pytest.raises(UsageError, match="no finished runs"):
        write_report(tmp_path / "g", out=tmp_path / "out")


def test_cli_records_its_command_and_labels_other_grids(grid, tmp_path, capsys):
    from coreaug.cli.main import main
    other = tmp_path / "A-8"
    write_run(other, "full", 0, [0.3, 0.40])
    main(["report", str(grid), f"{other}=8 epochs", "--out", str(tmp_path / "out"), "--name", "A",
          "--target", "0.5"])
    text = (tmp_path / "out" / "A.md").read_text()
    assert f"coreaug report {grid} '{other}=8 epochs' --out {tmp_path / 'out'} --target 0.5 --name A" in text
    assert table_row(text, "| full, 8 epochs |  | 1 | 40.00 ± — |")
    assert "16 runs in 6 cells" in capsys.readouterr().out


def test_cli_asks_a_label_for_another_grid(grid, tmp_path, capsys):
    from coreaug.cli.main import main
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(grid), str(grid), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "needs a label" in capsys.readouterr().err


def test_the_plot_is_written_with_matplotlib(grid, tmp_path):
    pytest.importorskip("matplotlib")
    result = write_report(grid, out=tmp_path / "out", name="A")
    assert open(result.files["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "![accuracy against training time](A.png)" in (tmp_path / "out" / "A.md").read_text()


def test_selection_diagnostics_are_shown_where_runs_logged_them(tmp_path):
    grid = tmp_path / "C"
    for seed in range(2):
        write_run(grid, "random", seed, [0.3], subset=0.3, metrics={"selection_noisy_fraction": 0.5})
        write_run(grid, "maxloss", seed, [0.3], subset=0.3, metrics={"selection_noisy_fraction": 0.6 + 0.1 * seed})
    write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Selections" in text and "| maxloss | 30% | 65.0% |" in text  # the subset as every table writes it


@pytest.mark.parametrize("args, message", [
    (["--target", "1.5"], "target must be an accuracy in (0, 1]"),
    (["--subsets", "ten"], "--subsets must be a comma-separated list"),
    (["--paper-figures", "{tmp}/paper.csv"], "row 2 needs columns strategy,subset,accuracy"),
    (["--epoch-seconds", "{tmp}/missing.csv"], "--epoch-seconds {tmp}/missing.csv cannot be read"),
    (["--baseline", ","], "baseline is empty"),
    (["--baseline", "Random"], "--baseline 'Random' is no strategy or reference of the runs reported; "
                               "choose from: coreset, full, none, random"),
    (["--subsets", "0.1,0.5"], "--subsets 0.5: no grid has finished runs at that fraction; the grids have 0.1,0.3"),
    (["--name", ""], "name must be a file stem such as report"),
    (["--epoch-seconds", "{tmp}/garbage.csv"], "--epoch-seconds {tmp}/garbage.csv needs a header line "
                                               "strategy,subset,seconds_per_epoch (got garbage)"),
    (["--epoch-seconds", "{tmp}/header.csv"], "--epoch-seconds {tmp}/header.csv has a header but no rows"),
    (["--epoch-seconds", "{tmp}/typo.csv"], "--epoch-seconds {tmp}/typo.csv: no row names a cell of the runs "
                                            "reported (rows coresett 0.1; the runs have full, none, coreset 0.1, "
                                            "random 0.1, random 0.3)"),
])
def test_bad_options_are_one_line_exit_2(grid, tmp_path, capsys, args, message):
    from coreaug.cli.main import main
    (tmp_path / "paper.csv").write_text("strategy,subset,accuracy\ncoreset,0.1,ninety\n")
    (tmp_path / "garbage.csv").write_text("garbage\n")
    (tmp_path / "header.csv").write_text("strategy,subset,seconds_per_epoch\n")
    (tmp_path / "typo.csv").write_text("strategy,subset,seconds_per_epoch\ncoresett,0.1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(grid), "--out", str(tmp_path / "out"), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.format(tmp=tmp_path) in err and err.count("\n") == 1


def test_subsets_keep_those_fractions_and_the_references(grid, tmp_path):
    result = write_report(grid, out=tmp_path / "out", subsets=[0.3])
    assert sorted((r["strategy"], r["subset"]) for r in result.cells) == [("full", None), ("none", None), ("random", 0.3)]


def test_the_runs_line_counts_the_runs_reported_not_the_runs_read(grid, tmp_path):
    write_report(grid, out=tmp_path / "out", subsets=[0.3])
    text = (tmp_path / "out" / "report.md").read_text()
    assert ": 9 finished runs at the subsets asked for and the references (of 15 finished, 15 in all)." in text


def test_a_cell_without_a_rate_says_so_and_still_counts_the_seeds_reaching_the_target(grid, tmp_path):
    rates = tmp_path / "rates.csv"
    rates.write_text("strategy,subset,seconds_per_epoch\nfull,,2\nnone,,1\nrandom,0.1,1.2\nrandom,0.3,1.2\n")
    write_report(grid, out=tmp_path / "out", target=0.44, epoch_seconds=rates)
    text = (tmp_path / "out" / "report.md").read_text()
    # coreset's seeds end at 44%, 46%, 49%: all three reach 44%, and the CSV has no rate for coreset
    assert "| coreset | 10% | 3 | — | — | — | — | no rate in the CSV | 3/3 | — |" in text
    assert "no rate in the CSV: `" in text


def test_seconds_under_ten_keep_decimals(tmp_path):
    grid = tmp_path / "S"
    for seed in range(2):
        write_run(grid, "full", seed, [0.3, 0.5], epoch_seconds=0.2, selection=0.0)
        write_run(grid, "random", seed, [0.3, 0.5], subset=0.3, epoch_seconds=2.4, selection=0.0)
    write_report(grid, out=tmp_path / "out", target=0.5)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| full |  | 2 | 0.20 | 0.00 | 0.40 | 1.00x | 0.40 | 2/2 | 1.00x |" in text
    assert "| random | 30% | 2 | 2.40 | 0.00 | 4.8 | 0.08x | 4.8 | 2/2 | 0.08x |" in text


def test_a_difference_that_rounds_to_zero_prints_without_a_minus(tmp_path):
    grid = tmp_path / "Z"
    for seed, (random, coreset) in enumerate([(0.5, 0.49998), (0.5, 0.5)]):
        write_run(grid, "random", seed, [random], subset=0.3)
        write_run(grid, "coreset", seed, [coreset], subset=0.3)
    write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "-0.00" not in text and "| coreset | 30% | 2 | +0.00 ± 0.00 |" in text


def test_a_labels_baseline_comes_first_among_its_cells(grid, tmp_path):
    other = tmp_path / "B"
    for seed in range(2):
        for strategy in ("random", "coreset", "ccs"):
            write_run(other, strategy, seed, [0.3, 0.4], subset=0.1)
    result = write_report(grid, out=tmp_path / "out", also=[(other, "lbl")])
    at_10 = [(r["strategy"], r["label"]) for r in result.cells if r["subset"] == 0.1]
    assert at_10 == [("random", ""), ("coreset", ""), ("random", "lbl"), ("ccs", "lbl"), ("coreset", "lbl")]


def test_without_random_the_default_report_has_no_paired_table(tmp_path):
    grid = tmp_path / "N"
    for seed in range(2):
        write_run(grid, "coreset", seed, [0.4], subset=0.3)
        write_run(grid, "full", seed, [0.5])
    result = write_report(grid, out=tmp_path / "out")
    assert "Paired differences" not in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(UsageError, match="--baseline 'random' is no strategy or reference of the runs reported"):
        write_report(grid, out=tmp_path / "out", baseline="random")
    assert len(result.cells) == 2


def test_plotting_leaves_the_callers_matplotlib_backend_alone(grid, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from coreaug.bench.plot import plot_accuracy_vs_time
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's inline or an interactive backend
    try:
        write_report(grid, out=tmp_path / "out", name="A")
        history = [{"test_accuracy": 0.5, "training_seconds": 1.0}]
        row = {"strategy": "random", "history": history, "total_seconds": 1.0, "final_accuracy": 0.5, "subset": 0.3}
        assert plot_accuracy_vs_time([row], 0.4, tmp_path / "a.png") == tmp_path / "a.png"
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_tables_and_the_report_give_one_time_to_target_each_seeds_own_mean_over_seeds(tmp_path):
    from types import SimpleNamespace

    from coreaug.bench import write_results
    grid = tmp_path / "A"
    # full's seeds reach 80% at 4 s and 2 s (mean 3 s), though their mean curve (67.5%, 75%, 90%) does only at 6 s
    runs = [("full", None, 0, [0.5, 0.9, 0.9], 2.0), ("full", None, 1, [0.85, 0.6, 0.9], 2.0),
            ("coreset", 0.1, 0, [0.82, 0.9], 1.0), ("coreset", 0.1, 1, [0.81, 0.9], 1.0),
            ("random", 0.1, 0, [0.9, 0.9], 1.0), ("random", 0.1, 1, [0.5, 0.6], 1.0)]  # one seed of two reaches it
    listed = []
    for strategy, subset, seed, curve, seconds in runs:
        folder = write_run(grid, strategy, seed, curve, subset=subset, epoch_seconds=seconds)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps(dict(summary, eval_seconds=0.0, n_trained=1, n_augmented=1)))
        listed.append(SimpleNamespace(name=folder.name, strategy=strategy, subset=subset, seed=seed,
                                      folder=str(folder)))
    (tmp_path / "bench").mkdir()
    bench = {(g["strategy"], g["subset"]): g for g in write_results(listed, str(tmp_path / "bench"), 0.8).groups}
    report = cells_csv(write_report(grid, out=tmp_path / "out", target=0.8))
    for key, strategy, subset in [(("full", "", ""), "full", None), (("coreset", "", "0.1"), "coreset", 0.1)]:
        assert float(report[key]["time_to_target"]) == pytest.approx(bench[(strategy, subset)]["time_to_target"])
        assert float(report[key]["target_speedup"]) == pytest.approx(bench[(strategy, subset)]["target_speedup"])
    assert bench[("full", None)]["time_to_target"] == pytest.approx(3.0)
    assert bench[("coreset", 0.1)]["target_speedup"] == pytest.approx(3.0)
    assert report[("random", "", "0.1")]["time_to_target"] == "" and report[("random", "", "0.1")]["reached"] == "1"
    assert math.isnan(bench[("random", 0.1)]["time_to_target"]) and bench[("random", 0.1)]["reached"] == 1
    assert "| random | 10% | 2 | 0.75 | 0.25 | 2.0 | 3.00x | not by every seed | 1/2 | — |" in \
        (tmp_path / "out" / "report.md").read_text()


def test_the_cli_counts_missing_runs_apart_from_cells_lacking_a_seed(grid, tmp_path, capsys):
    from coreaug.cli.main import main
    (grid / "runs" / "coreset-0.1-seed1" / "summary.json").write_text("{bad")  # unreadable
    (grid / "runs" / "random-0.3-seed1" / "summary.json").unlink()  # unfinished
    main(["report", str(grid), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "13 runs in 5 cells; 2 runs missing or unfinished, 1 cell lacks a seed (listed in the report)" in out


def test_a_repeated_baseline_gives_one_table(grid, tmp_path):
    write_report(grid, out=tmp_path / "out", baseline="random,random, random")
    assert (tmp_path / "out" / "report.md").read_text().count("## Paired differences against random") == 1


def test_without_a_plot_to_draw_an_earlier_plot_goes_and_the_cli_says_why(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from coreaug.cli.main import main
    grid = tmp_path / "E"
    metrics = write_run(grid, "full", 0, [0.4, 0.5]) / "metrics.jsonl"
    rows = [dict(json.loads(line), test_accuracy=None) for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))  # no evaluated epoch: no curve to draw
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.png").write_bytes(b"an earlier call's plot")
    main(["report", str(grid), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "(no plot: nothing to draw)" in out and "for the plot" not in out
    assert not (tmp_path / "out" / "report.png").exists()


def test_without_matplotlib_the_report_names_the_extra_to_install(grid, tmp_path, capsys, monkeypatch):
    from coreaug.cli.main import main
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    main(["report", str(grid), "--out", str(tmp_path / "out")])
    assert "(pip install 'coreaug[plot]' (or matplotlib) for the plot)" in capsys.readouterr().out
    assert not (tmp_path / "out" / "report.png").exists()
