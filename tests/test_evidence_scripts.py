"""The scripts that turn issue 16's grid runs into tables and plots read runs as `coreaug bench`
writes them: fake runs with known accuracies give the means, paired differences, shares and
times to target that they must; and cifar10_evidence.sh runs every grid through `coreaug bench --jobs`
(checked against a stub `coreaug` that records its calls)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(grid, strategy, seed, curve, subset=None):
    """A finished run's files, with the test accuracy after each epoch in `curve` (fractions)."""
    name = f"{strategy}-seed{seed}" if subset is None else f"{strategy}-{subset}-seed{seed}"
    folder = grid / "runs" / name
    folder.mkdir(parents=True)
    config = {"strategy": strategy, "subset": 0.3 if subset is None else subset, "seed": seed}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "test_accuracy": a}) + "\n"
                                                  for e, a in enumerate(curve)))
    summary = {"config": config, "final_test_accuracy": curve[-1], "best_test_accuracy": max(curve),
               "total_seconds": 10.0, "selection_seconds": 1.0}
    (folder / "summary.json").write_text(json.dumps(summary))


def _main(script, *argv):
    """Run `script.main()` (a module from `_script`) with the command line `argv`."""
    saved, sys.argv = sys.argv, [f"{script.__name__}.py", *map(str, argv)]
    try:
        script.main()
    finally:
        sys.argv = saved


@pytest.fixture
def grid(tmp_path):
    grid = tmp_path / "A"
    for seed in range(3):
        _write_run(grid, "none", seed, [0.30, 0.40 + 0.01 * seed])
        _write_run(grid, "full", seed, [0.20, 0.50 + 0.01 * seed])
        _write_run(grid, "random", seed, [0.30, 0.42 + 0.01 * seed], subset=0.1)
        _write_run(grid, "coreset", seed, [0.35, 0.44 + 0.02 * seed], subset=0.1)
    _write_run(grid, "coreset", 0, [0.1, 0.9], subset=0.3)  # another fraction: kept apart
    (grid / "runs" / "random-0.1-seed9").mkdir()  # unfinished (no summary.json): skipped
    return grid


def test_tables_pair_runs_by_seed_and_give_shares(grid, tmp_path):
    tables = _script("cifar10_tables")
    rows = []
    cells = tables.read_runs(str(grid), rows)
    assert len(rows) == 13
    assert cells[("coreset", 0.1)] == pytest.approx({0: 44.0, 1: 46.0, 2: 48.0})
    lines = tables.table(cells, tables.PAPER_TABLE4)
    coreset = next(line for line in lines if line.startswith("| coreset | 10% |"))
    # none 41, full 51: coreset's mean 46 is half of full's gain; paired vs random: +2, +3, +4
    assert "| 46.00 ± 2.00 | 50% |" in coreset
    assert "+3.00 ± 1.00 over 3 (beyond one std)" in coreset
    assert "| 91.54 | 51% |" in coreset  # the paper's figure and share beside ours
    versus_all = next(line for line in tables.table(cells, tables.PAPER_TABLE4, ["none", "full"])
                      if line.startswith("| coreset | 10% |"))
    # paired with all-data training: coreset 44, 46, 48 against none 40, 41, 42 and full 50, 51, 52
    assert "| +5.00 ± 1.00 over 3 (beyond one std) | -5.00 ± 1.00 over 3 (beyond one std) | 91.54 |" in versus_all
    out = tmp_path / "A.md"
    weighted = tmp_path / "A-weighted"
    longer = tmp_path / "A-longer"
    for seed in range(2):
        _write_run(weighted, "coreset", seed, [0.4, 0.40 + 0.01 * seed], subset=0.1)
        _write_run(longer, "coreset", seed, [0.4, 0.60 + 0.01 * seed], subset=0.1)
        _write_run(longer, "random", seed, [0.4, 0.59], subset=0.1)
    _main(tables, grid, out, "--also", f"{weighted}=weighted copies", "--also", f"{longer}=40 epochs")
    text = out.read_text()
    # another grid's runs are rows of their own, paired with this grid's random: 40 - 42, 41 - 43
    assert "| coreset, weighted copies | 10% | 2 | 40.50 ± 0.71 | -5% | -2.00 ± 0.00 over 2 |" in text
    assert (tmp_path / "A-runs.csv").read_text().count("coreset, weighted copies") == 2
    # a grid with its own random pairs with it: 60 - 59, 61 - 59
    assert "| coreset, 40 epochs | 10% | 2 | 60.50 ± 0.71 | 195% | +1.50 ± 0.71 over 2 |" in text
    assert "| random, 40 epochs | 10% | 2 | 59.00 ± 0.00 | 180% |  |" in text
    # with its own references too (none 55, full 65 at 40 epochs), its shares are against them
    for seed in range(2):
        _write_run(longer, "none", seed, [0.4, 0.55])
        _write_run(longer, "full", seed, [0.4, 0.65])
    _main(tables, grid, out, "--also", f"{longer}=40 epochs")
    text = out.read_text()
    assert "| coreset, 40 epochs | 10% | 2 | 60.50 ± 0.71 | 55% | +1.50 ± 0.71 over 2 |" in text
    assert "| none, 40 epochs |  | 2 | 55.00 ± 0.00 | 0% |" in text and "| full, 40 epochs |  | 2 | 65.00 ± 0.00 | 100% |" in text
    assert "| coreset | 10% | 3 | 46.00 ± 2.00 | 50% |" in text  # this grid's rows keep this grid's references


def test_time_plot_reads_timing_and_finds_the_time_to_target(grid, tmp_path):
    pytest.importorskip("matplotlib")
    plot = _script("cifar10_time_plot")
    timing = tmp_path / "timing.md"
    timing.write_text("# Timing\n\n| strategy | subset | s / epoch (median) | speed-up vs full | every repeat |\n"
                      "|---|---|---|---|---|\n| none | — | 2.00 | 3.00x | 2.00 |\n| full | — | 6.00 | 1.00x | 6.00 |\n"
                      "| coreset | 0.1 | 3.00 | 2.00x | 3.00 |\n| random | 0.1 | 2.50 | 2.40x | 2.50 |\n")
    rates = plot.read_timing(str(timing))
    assert rates == {("none", None): 2.0, ("full", None): 6.0, ("coreset", 0.1): 3.0, ("random", 0.1): 2.5}
    curves, seeds = plot.mean_curves(str(grid), 0.1)
    assert set(curves) == {("none", None), ("full", None), ("random", 0.1), ("coreset", 0.1)}
    assert curves[("coreset", 0.1)] == pytest.approx([35.0, 46.0]) and seeds[("coreset", 0.1)] == 3
    assert plot.first_time([10.0, 40.0, 50.0], 3.0, 45.0) == 9.0
    assert plot.first_time([10.0, None, 50.0], 3.0, 45.0) == 9.0  # an epoch not evaluated is passed over
    assert plot.first_time([10.0, 40.0], 3.0, 45.0) is None
    out = tmp_path / "time.png"
    shorter = tmp_path / "A-full1"
    for seed in range(2):
        _write_run(shorter, "full", seed, [0.47])
    _main(plot, grid, timing, out, "--also", f"{shorter}=1 epoch")
    table = (tmp_path / "time.md").read_text()
    assert out.stat().st_size > 0
    # target 0.95 x 51 = 48.45: full reaches it after 2 epochs (12 s); coreset's 46 never does
    assert "| full | 3 | 6.00 | 2 | 51.00 | 12 | 12 |" in table
    assert "| coreset 0.1 | 3 | 3.00 | 2 | 46.00 | not reached | 6 |" in table
    assert "| full, 1 epoch | 2 | 6.00 | 1 | 47.00 | not reached | 6 |" in table  # at full's rate


def test_noise_signal_measures_rank_separation_and_the_low_loss_halves():
    np = pytest.importorskip("numpy")
    signal = _script("cifar10_noise_signal")
    flipped = np.array([False, False, True, True])
    assert signal.auc(np.array([1.0, 2.0, 3.0, 4.0]), flipped) == 1.0  # every flipped label scores higher
    assert signal.auc(np.array([4.0, 3.0, 2.0, 1.0]), flipped) == 0.0
    assert signal.auc(np.ones(4), flipped) == 0.5  # ties: no signal
    # two classes of four; the lower-loss half of class 0 holds one flipped label, of class 1 none
    loss = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    flips = np.array([False, True, True, False, False, False, True, True])
    assert signal.flipped_in_low_half(loss, labels, flips) == 0.25


GRID_FOLDERS = {"A-maxloss", "A-randaugment", "A-time-full8", "A-time-none30", "A-time-none60", "A-time-subsets40",
                "A-time-full40", "A-time-none40", "A-weighted", "B", "C", "C-subset"}


def _evidence(tmp_path, *grid, **environment):
    """Run experiments/cifar10_evidence.sh DATA OUT [GRID] with a stub `coreaug` on PATH that
    records each call's arguments; returns (the finished process, the calls as lists)."""
    stub_bin, log = tmp_path / "bin", tmp_path / "calls"
    stub_bin.mkdir()
    (stub_bin / "coreaug").write_text(f"#!/bin/sh\nprintf '%s\\037' \"$@\" >> '{log}'\necho >> '{log}'\n")
    (stub_bin / "coreaug").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("JOBS", "SHARD", "REPORTS")}
    env.update(PATH=f"{stub_bin}{os.pathsep}{os.environ['PATH']}", **environment)
    proc = subprocess.run(["bash", os.path.join(ROOT, "experiments", "cifar10_evidence.sh"), "DATA", str(tmp_path / "out"),
                           *grid], env=env, capture_output=True, text=True, timeout=60)
    calls = [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def _flag(call, name):
    return call[call.index(name) + 1] if name in call else None


def test_evidence_script_runs_every_grid_with_jobs_then_reports_it(tmp_path):
    proc, calls = _evidence(tmp_path)
    assert proc.returncode == 0, proc.stderr
    benches = [c for c in calls if c[0] == "bench"]
    assert {c[0] for c in calls} == {"bench", "report"} and benches
    assert all(_flag(c, "--jobs") == "2" and "--shard" not in c for c in benches)
    outs = [os.path.basename(_flag(c, "--out")) for c in benches]
    assert set(outs) == GRID_FOLDERS
    reports = [c for c in calls if c[0] == "report"]
    assert sorted(os.path.basename(c[1]) for c in reports) == sorted(GRID_FOLDERS)
    for report in reports:  # each grid's report comes after its last bench call
        folder = report[1]
        assert _flag(report, "--out") == str(tmp_path / "out" / "reports")
        last_bench = max(k for k, c in enumerate(calls) if c[0] == "bench" and _flag(c, "--out") == folder)
        assert calls.index(report) > last_bench
    # the settings that make grid A's runs what they are (their folders are reused only by the same)
    first = " ".join(benches[0])
    assert "--dataset DATA --image-size 32 --model cnn --train-limit 2000 --test-limit 2000 --epochs 20" in first
    assert "--batch-size 64 --select-every 2 --seeds 5 --quiet --augment maxloss" in first


def test_evidence_script_runs_one_grid_with_the_jobs_and_shard_it_is_given(tmp_path):
    proc, calls = _evidence(tmp_path, "C", JOBS="3", SHARD="2/4")
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["bench"] * 3 + ["report"]
    assert {_flag(c, "--out") for c in calls[:3]} == {str(tmp_path / "out" / "C")} == {calls[3][1]}
    assert all(_flag(c, "--jobs") == "3" and _flag(c, "--shard") == "2/4" for c in calls[:3])


def test_evidence_script_refuses_an_unknown_grid(tmp_path):
    proc, calls = _evidence(tmp_path, "A")
    assert proc.returncode == 2 and "unknown grid A" in proc.stderr and calls == []
