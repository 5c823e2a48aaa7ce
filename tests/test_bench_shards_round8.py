"""Several bench commands on one --out: grid.json records the grid's settings and the shards' deal,
so that a command of another grid is refused even when it starts together with the first; SIGTERM
with --jobs 1; messages about runs that are training right now."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import coreaug
from coreaug.bench.archive import planned_runs, read_plan
from coreaug.bench.benchmark import record_grid
from coreaug.bench.grid import plan_grid
from coreaug.bench.report import write_report
from coreaug.errors import UsageError
from coreaug.training.run_files import RunFolder
from coreaug.training.trained import read_model_file

GRID = dict(subsets=(0.5,), strategies=("random",), references=("none",))


def config(**changes):
    return coreaug.TrainConfig(**{**dict(dataset="synthetic", epochs=1, train_limit=32, test_limit=16, quiet=True),
                                  **changes})


def record(out, cfg, seeds=1, shard=None):
    """What a bench command does before its first run: plan the grid and list it in grid.json."""
    runs = plan_grid(cfg, str(out), GRID["subsets"], GRID["strategies"], GRID["references"], seeds)
    os.makedirs(out / "runs", exist_ok=True)
    record_grid(str(out), runs, cfg, shard)
    return runs


def test_a_second_bench_of_other_settings_is_refused_while_the_first_has_no_run_folder_yet(tmp_path):
    out = tmp_path / "g"
    record(out, config(epochs=1))  # the first command: planned, its runs not started yet
    assert read_plan(str(out))["settings"]["epochs"] == 1
    with pytest.raises(UsageError, match=r"other settings \(epochs: 1 -> 2, lr: .*-> 0.2: the grid's -> this"):
        coreaug.run_grid(config(epochs=2, lr=0.2), out, seeds=1, jobs=1, **GRID)
    assert os.listdir(out / "runs") == []  # nothing trained
    record(out, config(epochs=1, quiet=False, device="cpu"), seeds=2)  # how and where a run goes: the same grid
    assert planned_runs(str(out)) == ["none-seed0", "none-seed1", "random-0.5-seed0", "random-0.5-seed1"]


def test_a_grid_json_without_settings_is_read_and_gains_them(tmp_path):
    out = tmp_path / "g"
    (out / "runs").mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps({"runs": ["coreset-0.5-seed0"]}))  # an older coreaug's
    record(out, config(epochs=1))
    plan = read_plan(str(out))
    assert plan["runs"] == ["coreset-0.5-seed0", "none-seed0", "random-0.5-seed0"] == planned_runs(str(out))
    assert plan["settings"]["epochs"] == 1 and "strategy" not in plan["settings"] and "seed" not in plan["settings"]


def test_shards_dealing_other_runs_are_refused_until_the_first_deal_is_finished(tmp_path):
    out = tmp_path / "g"
    first = record(out, config(), seeds=1, shard="1/2")
    with pytest.raises(UsageError, match=r"--shard commands that deal other runs \(this command alone plans "
                                         r"none-seed1, random-0.5-seed1\), and 2 of their runs are not finished"):
        record(out, config(), seeds=2, shard="2/2")
    with pytest.raises(UsageError, match=r"other shards \(2 -> 3\)"):
        record(out, config(), seeds=1, shard="2/3")
    record(out, config(), seeds=1, shard="2/2")  # the same deal: the other half
    assert read_plan(str(out))["shards"] == {"count": 2, "runs": ["none-seed0", "random-0.5-seed0"]}
    for run in first:  # the first deal done: a grid grown by a seed may be dealt anew
        os.makedirs(run.folder)
        open(os.path.join(run.folder, "summary.json"), "w").close()
    record(out, config(), seeds=2, shard="1/2")
    assert read_plan(str(out))["shards"]["runs"] == ["none-seed0", "none-seed1", "random-0.5-seed0",
                                                     "random-0.5-seed1"]


def test_sigterm_with_one_job_stops_the_bench_with_its_line_and_143(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, time
        import coreaug.__main__  # finds coreaug.cli, in a checkout too
        import coreaug.bench.benchmark as benchmark
        from coreaug.cli.bench import bench

        def run_grid_runs(runs, report=None):  # SIGTERM while the first run trains
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        benchmark.run_grid_runs = run_grid_runs
        bench.main(["--dataset", "synthetic", "--train-limit", "32", "--test-limit", "16", "--epochs", "1",
                    "--subsets", "0.5", "--strategies", "random", "--references", "none", "--seeds", "1",
                    "--jobs", "1", "--out", {str(tmp_path / "g")!r}])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert "terminated (SIGTERM): the runs not finished keep no summary" in done.stderr


def test_a_run_or_grid_still_training_is_said_to_be_training(tmp_path):
    out = tmp_path / "g"
    run = out / "runs" / "none-seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config(strategy="none", out=str(run)).resolved().identity()))
    (out / "grid.json").write_text(json.dumps({"runs": ["none-seed0", "random-0.5-seed0"]}))
    live = RunFolder(str(run))
    live._take_lock()  # as the training process holds it
    try:
        with pytest.raises(UsageError, match=r"still training .*another coreaug process holds its folder"):
            read_model_file(run)
        with pytest.raises(UsageError, match=r"holds no finished runs yet: its 2 runs are in progress \(1 training"):
            write_report(out, out=tmp_path / "rep")
    finally:
        live.release()
    with pytest.raises(UsageError, match=r"not finished .*--resume"):
        read_model_file(run)
    with pytest.raises(UsageError, match=r"in progress \(none training now; run its bench command again"):
        write_report(out, out=tmp_path / "rep")
