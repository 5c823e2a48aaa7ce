"""`coreaug bench --jobs/--devices/--shard`: a grid's runs in worker processes and in shards that
share one folder, each run trained once, locked runs left to their process, failures contained."""
import contextlib
import csv
import fcntl
import io
import json
import os

import pytest

import coreaug
from coreaug.bench import workers
from coreaug.bench import grid as grid_module
from coreaug.bench.grid import folder_in_use, plan_grid, shard_runs, train_grid_run
from coreaug.errors import UsageError
from coreaug.cli.main import main

# A model that writes the run folder that built it to trained.txt (in the current folder), and
# for a run named by a file fail-<run> there raises in its first training step (its two-input probe
# passes: a crash of the run, not a model refused): a count of trainings, and a crash on demand.
MODEL = '''
import os, sys, torch

class Crashes(torch.nn.Sequential):
    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("boom in " + self.run)
        return super().forward(x)

def make(in_channels, num_classes):
    frame = sys._getframe(1)
    while not hasattr(frame.f_locals.get("config"), "out"):
        frame = frame.f_back
    run = os.path.basename(frame.f_locals["config"].out)
    layers = (torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * in_channels, num_classes))
    if os.path.exists("fail-" + run):
        model = Crashes(*layers)
        model.run = run
        return model
    with open("trained.txt", "a") as f:
        f.write(run + "\\n")
    return torch.nn.Sequential(*layers)
'''
TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--epochs", "1",
        "--quiet", "--model", "bench_marker_model:make"]
GRID = ["--strategies", "random", "--subsets", "0.3", "--references", "none"]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A folder holding the marker model, made the current folder."""
    (tmp_path / "bench_marker_model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def bench(*args):
    """`coreaug bench ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["bench", *map(str, args)])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def trained(folder):
    path = folder / "trained.txt"
    return sorted(path.read_text().split()) if path.exists() else []


def progress(out):
    """{run name: the rest of its progress line}."""
    lines = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]
    return dict(line.split(": ", 1) for line in lines)


def csv_names(grid):
    return sorted(row["name"] for row in csv.DictReader((grid / "results.csv").open()))


@contextlib.contextmanager
def holding(folder):
    """Hold run folder `folder`'s lock as another coreaug process would, while in the block."""
    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


# --- shards --------------------------------------------------------------------------------

def _plan(tmp_path, strategies=("random", "coreset", "maxloss"), subsets=(0.1, 0.3), seeds=3):
    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32)
    return plan_grid(config, str(tmp_path / "grid"), list(subsets), list(strategies), ["none", "full"], seeds)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 24, 40])
def test_every_run_lands_in_exactly_one_shard(tmp_path, count):
    runs = _plan(tmp_path)  # 24 runs
    shards = [[run.name for run in shard_runs(runs, f"{index}/{count}")] for index in range(1, count + 1)]
    names = [name for shard in shards for name in shard]
    assert sorted(names) == sorted(run.name for run in runs) and len(set(names)) == len(runs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # dealt evenly; shards past the runs are empty


def test_shards_depend_on_the_run_names_not_the_flag_order(tmp_path):
    runs = _plan(tmp_path)
    shuffled = _plan(tmp_path, strategies=("maxloss", "random", "coreset"), subsets=(0.3, 0.1))
    assert [r.name for r in runs] != [r.name for r in shuffled]
    for index in (1, 2, 3):
        assert sorted(r.name for r in shard_runs(runs, (index, 3))) == sorted(r.name for r in shard_runs(shuffled, (index, 3)))


def test_shards_share_one_out_and_the_tables_say_what_is_missing(here):
    grid = here / "grid"
    code, out, _ = bench(*TINY, *GRID, "--seeds", "2", "--shard", "2/2", "--out", grid)
    assert code == 0 and set(progress(out)) == {"none-seed1", "random-0.3-seed1"}  # sorted names, dealt 1, 2, 1, 2
    assert "2 runs (2 trained now)" in out and "2 of the grid's 4 runs are missing" in out
    assert csv_names(grid) == ["none-seed1", "random-0.3-seed1"]
    assert "Runs: 2 of the grid's 4; 2 missing from the table" in (grid / "results.md").read_text()
    code, out, _ = bench(*TINY, *GRID, "--seeds", "2", "--shard", "1/2", "--out", grid)
    assert code == 0 and set(progress(out)) == {"none-seed0", "random-0.3-seed0"}
    assert "4 runs (2 trained now)" in out and "missing" not in out
    assert "Runs: all 4 of the grid's runs are in the table." in (grid / "results.md").read_text()
    assert csv_names(grid) == sorted(["none-seed0", "none-seed1", "random-0.3-seed0", "random-0.3-seed1"])
    assert trained(here) == csv_names(grid)  # each once


# --- one job: locks and failures -------------------------------------------------------------

def test_a_locked_run_is_left_to_the_process_holding_it(here):
    grid = here / "grid"
    with holding(grid / "runs" / "none-seed0"):
        code, out, err = bench(*TINY, *GRID, "--seeds", "1", "--out", grid)
    lines = progress(out)
    assert code == 0 and err == ""
    assert lines["none-seed0"].startswith("running elsewhere") and "final" in lines["random-0.3-seed0"]
    assert "1 of the grid's 2 runs are missing" in out and trained(here) == ["random-0.3-seed0"]
    assert not (grid / "runs" / "none-seed0" / "config.json").exists()  # not touched


def test_a_run_taken_between_the_look_and_the_start_is_left_to_its_process(tmp_path, monkeypatch):
    run = _plan(tmp_path, strategies=("random",), subsets=(0.3,), seeds=1)[0]

    def refused(message):
        def train(config):
            raise UsageError(message)
        return train
    monkeypatch.setattr(grid_module, "train", refused(f"--out {run.folder} is in use by another coreaug run that is still going"))
    assert train_grid_run(run) == "elsewhere"
    monkeypatch.setattr(grid_module, "train", refused("--dataset x does not exist"))
    with pytest.raises(UsageError, match="does not exist"):  # any other refusal is the user's to see
        train_grid_run(run)


def test_a_failing_run_does_not_stop_the_others(here):
    grid = here / "grid"
    (here / "fail-none-seed1").write_text("")
    code, out, err = bench(*TINY, "--strategies", "", "--references", "none", "--seeds", "3", "--out", grid)
    lines = progress(out)
    traceback = grid / "runs" / "none-seed1" / "error.txt"
    assert code == 1 and lines["none-seed1"] == f"failed: RuntimeError: boom in none-seed1 (traceback in {traceback})"
    assert "final" in lines["none-seed0"] and "final" in lines["none-seed2"]
    assert err.strip() == f"error: 1 run(s) failed: none-seed1: RuntimeError: boom in none-seed1 (traceback in {traceback})"
    assert "Traceback (most recent call last)" in traceback.read_text() and "bench_marker_model.py" in traceback.read_text()
    assert csv_names(grid) == ["none-seed0", "none-seed2"] and "1 of the grid's 3 runs are missing" in out


# --- worker processes ------------------------------------------------------------------------

def test_workers_share_the_cores_and_take_the_devices_round_robin(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(workers, "_cores", lambda: 8)
    monkeypatch.setattr(workers, "_gpu_count", lambda: 2)
    assert [(w.device, w.threads) for w in workers.plan_workers("cpu", jobs=3)] == [(None, 2)] * 3
    assert [w.device for w in workers.plan_workers("auto")] == ["cuda:0", "cuda:1"]  # every GPU, one job each
    assert [w.device for w in workers.plan_workers("cuda", jobs=3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [w.device for w in workers.plan_workers("cpu", devices="cuda:1")] == ["cuda:1"]
    assert [(w.device, w.threads) for w in workers.plan_workers("cpu", jobs=16)] == [(None, 1)] * 16
    monkeypatch.setattr(workers, "_gpu_count", lambda: 0)
    assert [w.device for w in workers.plan_workers("auto")] == [None]


def test_workers_take_the_thread_count_the_user_set_so_jobs_change_no_result(monkeypatch):
    monkeypatch.setattr(workers, "_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # what --jobs 1 trains with, in this process
    assert [w.threads for w in workers.plan_workers("cpu", jobs=3)] == [4, 4, 4]
    assert [w.threads for w in workers.plan_workers("cpu", jobs=16)] == [4] * 16
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert [w.threads for w in workers.plan_workers("cpu", jobs=3)] == [2, 2, 2]  # cores // jobs


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory):
    """A grid of 6 runs with --jobs 2, one of them failing: the output, the runs trained and
    the table's runs; then the same command again without the failure. (A held run
    is left alone by the code the workers share with one job: tested there, to spare a worker.)"""
    here = tmp_path_factory.mktemp("two-jobs")
    (here / "bench_marker_model.py").write_text(MODEL)
    grid = here / "grid"
    args = [*TINY, *GRID, "--seeds", "3", "--jobs", "2", "--out", grid]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(here)
        patch.setattr(workers, "_cores", lambda: 6)  # each worker: 3 threads
        patch.delenv("OMP_NUM_THREADS", raising=False)
        (here / "fail-none-seed1").write_text("")
        first = bench(*args), trained(here), csv_names(grid)
        (here / "fail-none-seed1").unlink()
        second = bench(*args), trained(here), csv_names(grid)
    return grid, first, second


def test_two_jobs_train_each_run_once_and_a_failed_run_stops_no_other(two_jobs):
    grid, ((code, out, err), runs_trained, tabled), _ = two_jobs
    lines = progress(out)
    traceback = grid / "runs" / "none-seed1" / "error.txt"
    assert code == 1 and err.strip() == f"error: 1 run(s) failed: none-seed1: {lines['none-seed1'][len('failed: '):]}"
    assert lines["none-seed1"] == f"failed: RuntimeError: boom in none-seed1 (traceback in {traceback})"
    done = ["none-seed0", "none-seed2", "random-0.3-seed0", "random-0.3-seed1", "random-0.3-seed2"]
    assert runs_trained == done and tabled == done  # each trained exactly once, by one of the workers
    assert sorted(line.split("]")[0] for line in out.splitlines() if line.startswith("[")) == [f"[{k}/6" for k in range(1, 7)]
    assert "5 runs (5 trained now)" in out and "1 of the grid's 6 runs are missing" in out
    summary = json.loads((grid / "runs" / "none-seed0" / "summary.json").read_text())
    assert summary["threads"] == 3 and summary["config"]["quiet"] is True
    assert json.loads((grid / "grid.json").read_text())["runs"] == sorted(done + ["none-seed1"])  # the plan


def test_two_jobs_rerun_trains_only_what_is_missing_and_tables_every_run(two_jobs):
    grid, _, ((code, out, err), runs_trained, tabled) = two_jobs
    lines = progress(out)
    assert code == 0 and err == ""
    assert sorted(name for name, line in lines.items() if line.startswith("finished before")) == [
        "none-seed0", "none-seed2", "random-0.3-seed0", "random-0.3-seed1", "random-0.3-seed2"]
    assert "final" in lines["none-seed1"]
    everyone = sorted(["none-seed0", "none-seed1", "none-seed2", "random-0.3-seed0", "random-0.3-seed1", "random-0.3-seed2"])
    assert runs_trained == everyone and tabled == everyone  # over both calls, each run trained once
    assert "6 runs (1 trained now)" in out and "missing" not in out
    assert not (grid / "runs" / "none-seed1" / "error.txt").exists()  # the first try's crash, trained since


def test_ctrl_c_stops_the_workers_and_leaves_unfinished_runs_uncounted(here):
    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=2,
                                 model="bench_marker_model:make")
    runs = plan_grid(config, str(here / "grid"), [0.3], ["random"], [], 3)

    def interrupt(outcome, position):
        raise KeyboardInterrupt  # as Ctrl-C would, in the parent while the worker trains the next run
    with pytest.raises(KeyboardInterrupt):
        workers.run_in_workers(runs, [workers.Worker(None, 1)], report=interrupt)
    assert not any(folder_in_use(run.folder) for run in runs)  # the worker is gone, and its lock with it
    finished = [run.name for run in runs if run.state() == "finished"]
    assert 1 <= len(finished) < len(runs)  # the one reported is; the others, cut short or not begun, are not


def test_ctrl_c_exits_130_with_one_line(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(coreaug.bench, "run_grid", interrupted)
    code, _, err = bench("--dataset", "synthetic", "--out", "unused")
    assert code == 130 and err.count("\n") == 1 and "run the same command to resume" in err


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be a whole number of worker processes >= 1"),
    (["--jobs", "x"], "--jobs must be a whole number of worker processes >= 1"),
    (["--jobs", "-2"], "--jobs must be a whole number of worker processes >= 1"),
    (["--devices", "gpu0"], "--devices must list devices like cuda:0,cuda:1"),
    (["--devices", "cuda:x"], "--devices must list devices like cuda:0,cuda:1"),
    (["--devices", ","], "--devices must list devices like cuda:0,cuda:1"),
    (["--shard", "0/2"], "--shard must be I/N"),
    (["--shard", "3/2"], "--shard must be I/N"),
    (["--shard", "x"], "--shard must be I/N"),
    (["--shard", "1/0"], "--shard must be I/N"),
])
def test_bad_jobs_devices_shard_are_one_line_exit_2_nothing_run(tmp_path, args, message):
    code, _, err = bench(*TINY[:-2], *GRID, *args, "--out", tmp_path / "grid")
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "grid").exists()


def test_a_gpu_without_cuda_is_one_line_exit_2_nothing_run(tmp_path):
    if workers._gpu_count():
        pytest.skip("this machine has CUDA")
    code, _, err = bench(*TINY[:-2], *GRID, "--devices", "cuda:0", "--out", tmp_path / "grid")
    assert code == 2 and "--devices names cuda:0 but CUDA is not available" in err and err.count("\n") == 1
    code, _, err = bench(*TINY[:-2], *GRID, "--device", "cuda", "--jobs", "2", "--out", tmp_path / "grid")
    assert code == 2 and "torch sees no CUDA device" in err and err.count("\n") == 1
    assert not (tmp_path / "grid").exists()


def test_two_jobs_on_a_folder_never_decoded_decode_it_once_here_and_train(tmp_path, monkeypatch):
    from PIL import Image

    for c, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        for i in range(8):
            folder = tmp_path / "pets" / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 10), tuple(min(255, v + 7 * i) for v in colour)).save(folder / f"{i}.png")
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = bench("--dataset", tmp_path / "pets", "--image-size", "8", "--epochs", "1", "--batch-size", "8",
                           "--workers", "2", "--quiet", *GRID, "--seeds", "1", "--jobs", "2", "--out", tmp_path / "grid")
    # each worker decoded it in daemon processes, which may start none: every run failed
    assert code == 0, out + err
    lines = progress(out)
    assert "daemonic" not in out + err and sorted(lines) == ["none-seed0", "random-0.3-seed0"]
    assert all(line.startswith("final ") for line in lines.values()), lines
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1  # decoded once


def test_two_jobs_stop_the_grid_on_a_mistake_every_run_shares_exit_2_whole_message(tmp_path):
    (tmp_path / "empty").mkdir()
    args = ["--dataset", "cifar10", "--data-dir", tmp_path / "empty", "--epochs", "1", "--quiet", *GRID,
            "--seeds", "2", "--jobs", "2", "--out", tmp_path / "grid"]
    code, out, err = bench(*args)
    assert code == 2 and "failed" not in out and err.count("\n") == 1, (out, err)
    assert err.startswith("error: ") and str(tmp_path / "empty") in err  # the whole message: where it looked
    assert bench(*args[:-4], "--jobs", "1", "--out", tmp_path / "one")[::2] == (2, err)  # as one job says it
    assert not (tmp_path / "grid" / "results.md").exists()
