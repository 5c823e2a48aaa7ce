"""Issue 16's evidence scripts: the noise-signal measures, and cifar10_evidence.sh runs every grid
through `coreaug bench --jobs` (checked against a stub `coreaug` that records its calls). The
tables come from `coreaug report` (tests/test_report.py)."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_noise_signal_measures_rank_separation_and_the_low_loss_halves(experiment):
    np = pytest.importorskip("numpy")
    signal = experiment("cifar10_noise_signal")
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
                "A-time-full40", "A-time-none40", "A-weighted", "B", "C", "C-subset", "C-crust"}


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
