"""`coreaug bench` end to end on a tiny synthetic grid: files, numbers, resuming, user mistakes."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from coreaug.training.compiled_step import compile_supported

needs_compile = pytest.mark.skipif(not compile_supported(), reason=f"compile needs torch 2.9 or later, "
                                                                    f"this is {torch.__version__}")
TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
        "--epochs", "2", "--quiet"]
GRID = ["--subsets", "0.3", "--strategies", "coreset,random", "--references", "full", "--seeds", "1"]
RUNS = ("full-seed0", "coreset-0.3-seed0", "random-0.3-seed0")


def coreaug(*args):
    return subprocess.run([sys.executable, "-m", "coreaug", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One tiny grid, trained once for the tests that only read it."""
    out = tmp_path_factory.mktemp("bench") / "grid"
    proc = coreaug("bench", *TINY, *GRID, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def summary(out, name):
    return json.loads((out / "runs" / name / "summary.json").read_text())


def test_bench_trains_each_run_in_its_folder_and_writes_the_tables(grid):
    out, proc = grid
    for name in RUNS:
        assert (out / "runs" / name / "summary.json").exists()
        assert (out / "runs" / name / "metrics.jsonl").exists()
    assert (out / "results.csv").exists() and (out / "results.md").exists()
    pytest.importorskip("matplotlib")
    assert (out / "accuracy_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_progress_line_per_run(grid):
    _, proc = grid
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [f"[{i}/3] {name}" for i, name in enumerate(RUNS, 1)]
    assert all("final" in line and "s training" in line for line in lines)


def test_runs_take_the_grid_settings(grid):
    out, _ = grid
    coreset = summary(out, "coreset-0.3-seed0")["config"]
    full = summary(out, "full-seed0")["config"]
    assert (coreset["strategy"], coreset["subset"], coreset["epochs"], coreset["dataset"]) == ("coreset", 0.3, 2, "synthetic")
    assert full["strategy"] == "full"


def test_csv_rows_match_the_run_summaries(grid):
    out, _ = grid
    rows = {r["name"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == set(RUNS)
    full_seconds = summary(out, "full-seed0")["total_seconds"]
    for name in RUNS:
        s = summary(out, name)
        assert float(rows[name]["final_accuracy"]) == s["final_test_accuracy"]
        assert float(rows[name]["best_accuracy"]) == s["best_test_accuracy"]
        assert float(rows[name]["total_seconds"]) == s["total_seconds"]
        assert float(rows[name]["selection_seconds"]) == s["selection_seconds"]
        assert float(rows[name]["speedup"]) == pytest.approx(full_seconds / s["total_seconds"])
    assert rows["full-seed0"]["subset"] == "" and rows["coreset-0.3-seed0"]["subset"] == "0.3"


def _table_rows(text):
    return {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}


def test_markdown_rows_show_the_summaries_figures(grid):
    out, _ = grid
    lines = _table_rows((out / "results.md").read_text().split("\nSelections")[0])
    full, coreset = summary(out, "full-seed0"), summary(out, "coreset-0.3-seed0")
    assert f"| {coreset['final_test_accuracy']:.2%} ± — |" in lines["coreset"]  # one seed: no std
    assert f"| {coreset['total_seconds']:.1f} ± — |" in lines["coreset"]
    assert f"| {full['total_seconds'] / coreset['total_seconds']:.2f}x |" in lines["coreset"]
    assert "| 1.00x |" in lines["full"]
    target = 0.99 * full["final_test_accuracy"]
    assert f"Target accuracy: {target:.2%}" in (out / "results.md").read_text()


def test_markdown_shows_the_selections_diagnostics(grid):
    out, _ = grid
    selections = _table_rows((out / "results.md").read_text().split("\nSelections")[1])
    with open(out / "runs" / "coreset-0.3-seed0" / "metrics.jsonl") as f:
        picked = [json.loads(line) for line in f if json.loads(line)["selected"]]
    loss = sum(m["selection_loss_selected"] for m in picked) / len(picked)
    assert f"| {loss:.3f} |" in selections["coreset"]
    assert "full" not in selections  # references select nothing


@pytest.fixture
def copied_grid(grid, tmp_path):
    out = tmp_path / "grid"
    shutil.copytree(grid[0], out)
    return out


@pytest.fixture
def train_calls(monkeypatch):
    """Count the trainer's calls from the grid (and still train)."""
    import coreaug.bench.grid
    calls = []
    real_train = coreaug.bench.grid.train

    def counting_train(config):
        calls.append(config)
        return real_train(config)
    monkeypatch.setattr(coreaug.bench.grid, "train", counting_train)
    return calls


def test_rerun_skips_finished_runs_without_training(copied_grid, train_calls, capsys):
    from coreaug.cli.main import main
    before = {name: os.stat(copied_grid / "runs" / name / "summary.json").st_mtime_ns for name in RUNS}
    main(["bench", *TINY, *GRID, "--out", str(copied_grid)])
    out = capsys.readouterr().out
    assert train_calls == []
    assert out.count("skipped") == 3 and "(0 trained now)" in out
    assert before == {name: os.stat(copied_grid / "runs" / name / "summary.json").st_mtime_ns for name in RUNS}


def test_a_finished_run_from_before_a_new_trainer_setting_is_still_skipped(copied_grid, train_calls, capsys):
    from coreaug.cli.main import main
    config_path = copied_grid / "runs" / "coreset-0.3-seed0" / "config.json"
    stored = json.loads(config_path.read_text())
    del stored["knn"]  # as if TrainConfig gained `knn` (default 10) after this run was written
    config_path.write_text(json.dumps(stored))
    main(["bench", *TINY, *GRID, "--out", str(copied_grid)])
    assert train_calls == [] and capsys.readouterr().out.count("skipped") == 3


def test_a_run_with_a_checkpoint_but_no_summary_is_resumed(copied_grid, train_calls, capsys):
    from coreaug.cli.main import main
    run = copied_grid / "runs" / "random-0.3-seed0"
    (run / "summary.json").unlink()
    metrics = (run / "metrics.jsonl").read_text()
    main(["bench", *TINY, *GRID, "--out", str(copied_grid)])
    assert [(c.strategy, c.resume) for c in train_calls] == [("random", True)]
    assert (run / "summary.json").exists() and (run / "metrics.jsonl").read_text() == metrics
    assert "[3/3] random-0.3-seed0: resumed, final" in capsys.readouterr().out


def test_rerun_with_other_settings_is_refused_before_training(copied_grid, train_calls, capsys):
    stored = json.loads((copied_grid / "runs" / "full-seed0" / "config.json").read_text())
    stderr = bench_in_process(capsys, *TINY, "--lr", "0.01", *GRID, "--out", copied_grid)
    assert "other settings" in stderr and stderr.count("\n") == 1 and train_calls == []
    assert f"(lr: {stored['lr']!r} -> 0.01)" in stderr  # the setting, stored -> now, as train --resume says it


@needs_compile
def test_a_grid_rerun_compiled_refuses_the_runs_it_finished_eagerly(copied_grid, train_calls, capsys):
    """compile is not part of a run's identity (a run may go on compiled), so the grid counted its eager
    runs as finished and would have timed one cell's runs two ways."""
    stderr = bench_in_process(capsys, *TINY, "--compile", *GRID, "--out", copied_grid)
    assert "(compile: False -> True)" in stderr and stderr.count("\n") == 1 and train_calls == []


def test_a_damaged_checkpoint_fails_its_run_alone_and_the_others_train(copied_grid, train_calls, capsys):
    from coreaug.cli.main import main
    damaged = copied_grid / "runs" / "random-0.3-seed0"
    (damaged / "summary.json").unlink()
    (damaged / "checkpoint.pt").write_bytes((damaged / "checkpoint.pt").read_bytes()[:500])
    shutil.rmtree(copied_grid / "runs" / "full-seed0")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *TINY, *GRID, "--out", str(copied_grid)])
    out, err = capsys.readouterr()
    line = next(line for line in out.splitlines() if "random-0.3-seed0: failed: " in line)
    assert exit_info.value.code == 1 and err.strip().endswith(f"error: 1 run(s) failed: random-0.3-seed0: "
                                                              f"{line.split(': failed: ')[1]}")
    assert not (damaged / "error.txt").exists()  # a refusal, not a crash: its line says it all
    assert f"random-0.3-seed0: failed: {damaged}/checkpoint.pt is truncated or corrupt" in line
    # bench's advice, not train's --overwrite (bench has none) or another --out (another grid)
    assert "--overwrite" not in line and line.endswith("remove the run's folder (its results with it) to train it "
                                                      "again from the start")
    assert (copied_grid / "runs" / "full-seed0" / "summary.json").exists()  # trained after the damaged run
    assert "2 runs (1 trained now)" in out


def test_a_narrower_rerun_keeps_every_run_of_the_grid_in_the_tables(copied_grid, train_calls, capsys):
    from coreaug.cli.main import main
    narrower = [arg if arg != "coreset,random" else "coreset" for arg in GRID]
    main(["bench", *TINY, *narrower, "--out", str(copied_grid)])
    out = capsys.readouterr().out
    assert train_calls == [] and "3 runs (0 trained now)" in out and "missing" not in out
    assert sorted(row["name"] for row in csv.DictReader((copied_grid / "results.csv").open())) == sorted(RUNS)
    text = (copied_grid / "results.md").read_text()
    assert "Runs: all 3 of the grid's runs are in the table." in text and "| random | 0.3 | 1 |" in text
    (copied_grid / "runs" / "random-0.3-seed0" / "summary.json").unlink()  # the earlier command's run, unfinished
    main(["bench", *TINY, *narrower, "--out", str(copied_grid)])
    assert train_calls == [] and ("1 of the grid's 3 runs are missing from the tables: 1 not finished, planned by "
                                  "an earlier command of this grid (that command trains them): random-0.3-seed0"
                                  ) in capsys.readouterr().out


def test_a_failed_run_and_another_shards_run_are_counted_apart_and_said_what_finishes_them(copied_grid, train_calls,
                                                                                           capsys):
    from coreaug.cli.main import main
    failing = copied_grid / "runs" / "random-0.3-seed0"  # shard 1 of 2 (runs sorted by name, dealt in turn)
    (failing / "summary.json").unlink()
    (failing / "checkpoint.pt").write_text("junk\n")
    (copied_grid / "runs" / "full-seed0" / "summary.json").unlink()  # shard 2's, not finished
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *TINY, *GRID, "--shard", "1/2", "--out", str(copied_grid)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1 and [config.out for config in train_calls] == [str(failing)]
    assert "checkpoint.pt is truncated or corrupt and cannot be resumed (not a file torch.save wrote)" in out
    assert ("2 of the grid's 3 runs are missing from the tables: 1 failed (fix the error, or remove the run's "
            "folder, and run the command again): random-0.3-seed0; 1 left to the other shards (their --shard commands "
            "train them): full-seed0") in out
    assert "the same command" not in out
    text = (copied_grid / "results.md").read_text()
    assert ("Runs: 1 of the grid's 3; 2 missing from the table: 1 failed (fix the error, or remove the run's folder, "
            "and run the command again): random-0.3-seed0; 1 left to the other shards") in text
    assert "(no finished full run)" in text


@pytest.mark.parametrize("damage", [
    ("coreset-0.3-seed0", "metrics.jsonl", lambda text: text[:-40], "metrics.jsonl unreadable"),
    ("full-seed0", "summary.json", lambda text: "", "summary.json unreadable"),
    ("random-0.3-seed0", "config.json", lambda text: '{"data', "config.json unreadable"),
    ("full-seed0", "summary.json", lambda text: "{}", "summary.json or metrics.jsonl lacks a usable 'total_seconds'"),
])
def test_a_finished_run_with_an_unreadable_file_is_named_and_left_out_of_the_tables(copied_grid, train_calls,
                                                                                    capsys, damage):
    from coreaug.cli.main import main
    name, file, cut, problem = damage
    (copied_grid / "runs" / name / "checkpoint.pt").unlink()  # with it, the files are written again from it
    path = copied_grid / "runs" / name / file
    path.write_text(cut(path.read_text()))
    main(["bench", *TINY, *GRID, "--out", str(copied_grid)])  # exit 0: nothing failed now
    out, err = capsys.readouterr()
    assert train_calls == [] and "Traceback" not in err
    assert err.startswith(f"warning: {name} finished, but {problem}") and err.count("\n") == 1
    assert name not in [row["name"] for row in csv.DictReader((copied_grid / "results.csv").open())]
    assert ("1 of the grid's 3 runs are missing from the tables: 1 unreadable (remove its folder to train it "
            f"again): {name}") in out
    assert "Runs: 2 of the grid's 3; 1 missing from the table" in (copied_grid / "results.md").read_text()


def test_an_unfinished_run_with_an_unreadable_config_fails_alone(copied_grid, train_calls, capsys):
    from coreaug.cli.main import main
    run = copied_grid / "runs" / "random-0.3-seed0"
    (run / "summary.json").unlink()
    (run / "config.json").write_text('{"data')
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *TINY, *GRID, "--out", str(copied_grid)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1 and train_calls == []
    assert f"random-0.3-seed0: failed: {run} holds a config.json that cannot be read" in out
    assert "--overwrite" not in out


def test_an_error_names_a_run_by_its_folder_not_by_a_sibling_sharing_its_start(tmp_path):
    from coreaug.bench.grid import names_run, plan_grid
    from coreaug.errors import UsageError
    from coreaug.training import TrainConfig
    runs = {r.name: r for r in plan_grid(TrainConfig(dataset="synthetic"), str(tmp_path), [], [], ["none"], 11)}
    error = UsageError(f"{runs['none-seed10'].folder}/checkpoint.pt is truncated or corrupt")
    assert names_run(error, runs["none-seed10"]) and not names_run(error, runs["none-seed1"])
    assert names_run(FileNotFoundError(2, "No such file", runs["none-seed1"].folder + "/x"), runs["none-seed1"])
    assert not names_run(UsageError("--dataset ./x does not exist"), runs["none-seed1"])


@pytest.mark.parametrize("args, message", [
    (["--strategies", "coreset,craig"], "unknown strategy 'craig'"),
    (["--strategies", "full"], "'full' is a reference"),
    (["--references", "half"], "unknown reference 'half'"),
    (["--strategies", "", "--references", ""], "the grid is empty"),
    (["--subsets", ""], "--subsets is empty"),
    (["--subsets", "0.3,1.5"], "subsets must be fractions in (0, 1], got 1.5"),
    (["--subsets", "0"], "subsets must be fractions in (0, 1], got 0.0"),
    (["--subsets", "0.3,0.3000001"], "--subsets 0.3 and 0.3000001 would share the run folders <strategy>-0.3-seed<k>"),
    (["--subsets", "ten"], "--subsets must be a comma-separated list"),
    (["--seeds", "0"], "seeds must be an integer in [1, 10000] (runs per cell), got 0"),
    (["--seeds", "99999999999999"], "seeds must be an integer in [1, 10000]"),
    (["--target", "1.5"], "target must be an accuracy in (0, 1]"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
])
def test_user_mistakes_are_one_line_exit_2_nothing_run(tmp_path, capsys, args, message):
    stderr = bench_in_process(capsys, *TINY, *GRID, *args, "--out", tmp_path / "grid")
    assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "grid").exists()


def test_unwritable_out_is_one_line_exit_2_nothing_run(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    stderr = bench_in_process(capsys, *TINY, *GRID, "--out", blocker / "grid")
    assert "not a writable folder" in stderr and stderr.count("\n") == 1
    assert blocker.read_text() == "not a folder"


def bench_in_process(capsys, *args):
    """Run `coreaug bench` in this process (no interpreter start-up); expect exit 2, return stderr."""
    from coreaug.cli.main import main
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *map(str, args)])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_grid_evaluating_every_other_epoch_writes_its_tables_and_plot(tmp_path):
    out = tmp_path / "grid"
    proc = coreaug("bench", *TINY, "--eval-every", "2", "--subsets", "0.3", "--strategies", "random",
                   "--references", "full", "--seeds", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    metrics = [json.loads(line) for line in (out / "runs" / "random-0.3-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["test_accuracy"] is None for m in metrics] == [True, False]
    assert (out / "results.md").exists() and (out / "results.csv").exists()
    assert summary(out, "random-0.3-seed0")["final_test_accuracy"] == metrics[-1]["test_accuracy"]


FOLDER = ["--val-fraction", "0.25", "--model", "cnn", "--epochs", "1", "--batch-size", "8", "--quiet",
          "--strategies", "", "--references", "none", "--seeds", "1"]


@pytest.fixture
def image_folder(tmp_path, monkeypatch):
    """work/imgs: two classes of eight 8x8 PNGs; work/ is the current folder."""
    from PIL import Image
    import numpy as np
    rng = np.random.default_rng(0)
    for label in range(2):
        (tmp_path / "work" / "imgs" / f"c{label}").mkdir(parents=True)
        for k in range(8):
            pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "work" / "imgs" / f"c{label}" / f"{k}.png")
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "work" / "imgs"


def test_a_folder_dataset_is_one_grid_however_its_path_is_spelled(image_folder, tmp_path, monkeypatch, capsys):
    from coreaug.cli.main import main
    main(["bench", "--dataset", "./imgs", *FOLDER, "--out", "grid"])
    stored = json.loads((tmp_path / "work" / "grid" / "runs" / "none-seed0" / "config.json").read_text())
    assert stored["dataset"] == os.path.realpath(image_folder)
    capsys.readouterr()
    main(["bench", "--dataset", str(image_folder), *FOLDER, "--out", "grid"])
    assert "none-seed0: finished before, skipped" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # another working folder, another spelling
    main(["bench", "--dataset", "work/imgs", *FOLDER, "--out", "work/grid"])
    assert "none-seed0: finished before, skipped" in capsys.readouterr().out


def test_a_run_that_stored_its_folder_relative_resumes_under_an_absolute_spelling(image_folder, tmp_path, capsys):
    from coreaug.cli.main import main
    main(["bench", "--dataset", "imgs", *FOLDER, "--out", "grid"])
    run = tmp_path / "work" / "grid" / "runs" / "none-seed0"
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, dataset="imgs")))  # as coreaug 0.2 stored it
    (run / "summary.json").unlink()
    capsys.readouterr()
    main(["bench", "--dataset", str(image_folder), *FOLDER, "--out", "grid"])
    assert "none-seed0: resumed, final" in capsys.readouterr().out and (run / "summary.json").exists()


@needs_compile
def test_a_compiled_grid_run_forgets_its_graphs_after_it_ends_failed_or_not(tmp_path, monkeypatch):
    """A compiled run that failed inside torch's CUDA graph trees left them mid-warm-up, and every later
    compiled run in the process failed on them (the trainer benchmark's GPU log, 2026-12-04)."""
    import torch

    import coreaug.bench.grid as grid
    from coreaug import TrainConfig

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))

    def failing(config):
        raise RuntimeError("a CUDA graph tree failed")
    monkeypatch.setattr(grid, "train", failing)
    runs = grid.plan_grid(TrainConfig(dataset="synthetic", epochs=1, compile=True), str(tmp_path / "g"),
                          subsets=[0.3], strategies=["random"], references=[], seeds=2)
    outcomes = grid.run_grid_runs(runs)
    assert [o.status for o in outcomes] == ["failed", "failed"] and len(resets) == 2
    eager = grid.plan_grid(TrainConfig(dataset="synthetic", epochs=1), str(tmp_path / "e"), subsets=[0.3],
                           strategies=["random"], references=[], seeds=1)
    grid.run_grid_runs(eager)
    assert len(resets) == 2  # an eager run leaves torch's compiled state alone


@needs_compile
def test_a_compiled_grid_refuses_a_strategy_compile_cannot_trace_before_any_run_trains(tmp_path, train_calls,
                                                                                       capsys):
    """The refusal came from train() when crust's turn came, after the grid's other cells had trained."""
    stderr = bench_in_process(capsys, *TINY, "--compile", "--strategies", "random,crust", "--subsets", "0.3",
                              "--references", "none", "--seeds", "1", "--out", tmp_path / "grid")
    assert "compile does not take strategy 'crust'" in stderr and stderr.count("\n") == 1 and train_calls == []
    assert not (tmp_path / "grid").exists()
