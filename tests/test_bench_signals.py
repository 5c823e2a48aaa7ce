"""`coreaug bench --jobs N` stopped from outside: SIGTERM (`kill`, `timeout`, systemd) stops its
workers as Ctrl-C does, a parent killed outright takes its workers with it, the workers exit
cleanly (no semaphore left to multiprocessing's resource tracker), and the same command then
finishes every run."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

import coreaug
from coreaug.bench import workers
from coreaug.bench.grid import folder_in_use, plan_grid

from test_bench_parallel import bench, progress

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")

# A model whose forward pass sleeps while a file `slow` is in the current folder: runs that are
# still training when the test signals bench, and a quick rerun once the file is gone. With a file
# `stubborn` too, a stopped worker ignores the stop (it is killed after workers.STOP_SECONDS).
MODEL = '''
import os, time, torch

class Slow(torch.nn.Sequential):
    def forward(self, x):
        if os.path.exists("slow"):
            try:
                time.sleep(0.2)
            except SystemExit:  # the worker stopped: with a file `stubborn`, it does not unwind
                if os.path.exists("stubborn"):
                    time.sleep(60)
                raise
        return super().forward(x)

def make(in_channels, num_classes):
    return Slow(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * in_channels, num_classes))
'''
ARGS = ["bench", "--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
        "--epochs", "40", "--quiet", "--model", "bench_slow_model:make", "--strategies", "random", "--subsets", "0.5",
        "--references", "none", "--seeds", "1", "--jobs", "2", "--out", "grid"]
RUNS = ["none-seed0", "random-0.5-seed0"]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A folder holding the slow model, made the current folder."""
    (tmp_path / "bench_slow_model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def children(pid):
    """The live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(entry))
    return found


def alive(pids):
    return [pid for pid in pids if _running(pid)]


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def start_bench(here):
    """Start `python -m coreaug bench` (slow runs, 2 jobs) in its own session, its output in
    files, and return once both workers train: (the process, its children). Whatever of it
    is left at the end of the test is killed."""
    started = []

    def start():
        (here / "slow").write_text("")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(here / "out.txt", "w") as out, open(here / "err.txt", "w") as err:
            process = subprocess.Popen([sys.executable, "-m", "coreaug", *ARGS], cwd=here, env=env,
                                       start_new_session=True, stdout=out, stderr=err)
        started.append(process.pid)
        wait_for(lambda: all((here / "grid" / "runs" / run / "metrics.jsonl").exists() for run in RUNS)
                 or process.poll() is not None, 90, "both workers to finish an epoch")
        assert process.poll() is None, (here / "err.txt").read_text()
        started.extend(children(process.pid))
        return process, started[1:]
    yield start
    for pid in alive(started):  # a test that failed: no process of its bench goes on
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
            if b"coreaug" in command or b"multiprocessing" in command:
                os.kill(pid, signal.SIGKILL)


def assert_stopped_then_rerun_finishes_every_run(here, started):
    wait_for(lambda: not alive(started), 10, "the workers to stop")  # each run sleeps 20 s more if not stopped
    assert not any((here / "grid" / "runs" / run / "summary.json").exists() for run in RUNS)
    (here / "slow").unlink()
    assert not any(folder_in_use(here / "grid" / "runs" / run) for run in RUNS)  # no worker holds a run
    code, out, err = bench(*ARGS[1:])
    lines = progress(out)
    assert code == 0 and err == "", err
    assert sorted(lines) == RUNS and all(line.startswith("resumed, final") for line in lines.values()), out


def test_sigterm_stops_the_workers_exits_143_and_the_rerun_resumes_every_run(here, start_bench):
    process, started = start_bench()
    assert len(started) >= 2  # the workers (and multiprocessing's resource tracker)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert_stopped_then_rerun_finishes_every_run(here, started)
    err = (here / "err.txt").read_text()
    assert err.startswith("terminated (SIGTERM): the runs not finished keep no summary")
    assert "leaked" not in err  # the workers unwound and exited cleanly: no semaphore left to the tracker


# Loaded into bench and its workers (sitecustomize): a queue's feeder thread that ends late, as under load,
# while the process exits, and a semaphore freed slowly by a thread other than the main one (the interpreter's
# exit stops such a thread wherever it is).
SLOW_FEEDER = '''
import atexit, threading, time
from multiprocessing import queues, synchronize

_feed, _cleanup = queues.Queue._feed, synchronize.SemLock._cleanup
exiting = threading.Event()

def feed(*args):
    try:
        return _feed(*args)
    finally:
        exiting.wait(1.0)  # the thread still holds the queue's lock and semaphore (args)

def cleanup(name):
    if threading.current_thread() is not threading.main_thread():
        time.sleep(2)
    return _cleanup(name)

def exit():  # before multiprocessing's exit function (registered first, runs last)
    exiting.set()
    time.sleep(0.3)

queues.Queue._feed, synchronize.SemLock._cleanup = staticmethod(feed), staticmethod(cleanup)
atexit.register(exit)
'''


def test_a_stopped_grid_frees_its_queues_semaphores_in_the_main_thread(here, start_bench, monkeypatch):
    """The runs' queue's feeder thread holds two of its semaphores: when it ended after the queue was freed
    (a stopped grid under load), it freed them and the exit stopped it before it told the resource tracker,
    which warned of "1 leaked semaphore" and "[Errno 2]" (two CI runs of the signal tests)."""
    (here / "sitecustomize.py").write_text(SLOW_FEEDER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")])))
    process, started = start_bench()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    wait_for(lambda: not alive(started), 15, "the workers and the resource tracker to end")
    err = (here / "err.txt").read_text()
    assert err.startswith("terminated (SIGTERM)")
    assert "leaked" not in err and "Errno" not in err, err


def test_a_hangup_of_the_whole_group_stops_bench_as_sigterm_does_and_the_rerun_resumes(here, start_bench):
    """A dropped SSH session sends SIGHUP to every process of the group: bench and its workers died without a
    word, and the resource tracker too (its successor printed a KeyError for each semaphore)."""
    process, started = start_bench()
    os.killpg(process.pid, signal.SIGHUP)
    assert process.wait(timeout=30) == 129
    assert_stopped_then_rerun_finishes_every_run(here, started)
    err = (here / "err.txt").read_text()
    assert err == "terminated (SIGHUP): the runs not finished keep no summary; run the same command to resume them\n"


def test_a_worker_killed_for_not_stopping_leaves_no_semaphore_to_the_tracker(here, start_bench):
    """A worker that does not unwind within STOP_SECONDS (a slow exit under load) is killed, so its
    exit handlers never run: it must hold no named semaphore (tqdm's lock was one), or the resource
    tracker warns of a leak when bench ends."""
    process, started = start_bench()
    (here / "stubborn").write_text("")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    (here / "stubborn").unlink()
    assert_stopped_then_rerun_finishes_every_run(here, started)
    err = (here / "err.txt").read_text()
    assert err.startswith("terminated (SIGTERM):") and "leaked" not in err, err


def test_workers_stop_when_bench_is_killed_outright(here, start_bench):
    process, started = start_bench()
    process.kill()  # SIGKILL: bench runs no code of its own
    process.wait(timeout=30)
    assert_stopped_then_rerun_finishes_every_run(here, started)


def test_workers_end_by_themselves_after_the_last_run(here, monkeypatch):
    """Each worker ends at its stop sign (exit code 0), not terminated once the last run is
    reported: a terminated worker leaves its semaphores to the resource tracker, which warns."""
    started = []
    start = workers._start

    def recorded(*args):
        started.append(start(*args))
        return started[-1]
    monkeypatch.setattr(workers, "_start", recorded)
    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1,
                                 quiet=True, model="bench_slow_model:make")
    runs = plan_grid(config, str(here / "grid"), [0.5], ["random"], ["none"], 1)
    outcomes = workers.run_in_workers(runs, [workers.Worker(None, 1)] * 2)
    assert sorted(o.status for o in outcomes) == ["trained", "trained"]
    assert [p.exitcode for p in started] == [0, 0]


def test_sigterm_exits_143_with_one_line(monkeypatch):
    def terminated(*args, **kwargs):
        raise workers.Terminated
    monkeypatch.setattr(coreaug.bench, "run_grid", terminated)
    code, _, err = bench("--dataset", "synthetic", "--out", "unused")
    assert code == 143 and err.count("\n") == 1 and err.startswith("terminated (SIGTERM):")


def test_sighup_and_sigusr1_stop_as_sigterm_does_where_their_action_is_the_default():
    """A dropped SSH session's SIGHUP, or Slurm's SIGUSR1 before a time limit, killed bench and train
    without a word (explore22-scripts #5); nohup's ignored SIGHUP stays ignored."""
    saved = {signum: signal.signal(signum, signal.SIG_DFL) for signum in (signal.SIGHUP, signal.SIGUSR1)}
    for signum, code in ((signal.SIGHUP, 129), (signal.SIGUSR1, 138), (signal.SIGTERM, 143)):
        with pytest.raises(workers.Terminated) as stopped, workers.sigterm_raises():
            os.kill(os.getpid(), signum)
            time.sleep(5)
        assert (stopped.value.signal_name, stopped.value.exit_code) == (signal.Signals(signum).name, code)
        assert signal.getsignal(signum) is signal.SIG_DFL  # given back
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
    try:
        with workers.sigterm_raises():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_the_queues_are_freed_as_the_workers_stop_not_left_to_the_exceptions_frames(here, monkeypatch):
    """A stop (Ctrl-C, SIGTERM) left bench's two queues to the frames of the exception: a garbage collection
    at exit freed them inside the resource tracker's lock, and unregistering their semaphores failed
    ("1 leaked semaphore", "[Errno 2]": the rare CI failure of the SIGTERM test above)."""
    import gc
    import multiprocessing
    import weakref

    made, real = [], multiprocessing.get_context

    class Recording:
        def __init__(self, context):
            self.context = context

        def Queue(self):
            made.append(self.context.Queue())
            return made[-1]

        def __getattr__(self, name):
            return getattr(self.context, name)
    monkeypatch.setattr(workers.multiprocessing, "get_context", lambda method: Recording(real(method)))
    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1,
                                 quiet=True, model="bench_slow_model:make")
    runs = plan_grid(config, str(here / "grid"), [0.5], ["random"], ["none"], 1)

    def stop(outcome, position):
        raise KeyboardInterrupt
    gc.disable()  # only references count: what a collection would free is not freed
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:  # held, as the exit's exception holds it
            workers.run_in_workers(runs, [workers.Worker(None, 1)] * 2, stop)
        queues = [weakref.ref(q) for q in made]
        del made[:]
        assert stopped.value.__traceback__ is not None
        assert len(queues) == 2 and [q() for q in queues] == [None, None]
    finally:
        gc.enable()
