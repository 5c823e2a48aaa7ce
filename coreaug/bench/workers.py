"""A grid's runs in worker processes on one machine (`coreaug bench --jobs N`).

Each worker is a fresh process (spawn: nothing of the parent's CUDA or thread state is
inherited) that takes runs from one shared queue, so two workers never take the same run; the
run folder's lock is the second guard. On the CPU each worker gets its share of the cores
(threads = cores // N, set before torch starts); on CUDA each worker gets its own device, the
devices dealt round-robin when there are more workers than devices. The parent reports each
run as it finishes. Ctrl-C or SIGTERM (`kill`, `timeout`, systemd) in the parent stops the
workers, and a worker whose parent is gone however it ended (SIGKILL included) stops too; a run
they leave unfinished has no summary.json, so a rerun resumes it.
"""
import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import queue
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass

from tqdm import tqdm

from coreaug.progress import say
from coreaug.devices import usable_cores
from coreaug.errors import UsageError, one_line_warning
from coreaug.files import warn_at_caller
from coreaug.training.distributed import pick_device

from .grid import STOPPING, RunOutcome, crash_line, fails_run_alone, refusal_line, train_grid_run

DEVICE = re.compile(r"cpu|cuda(:\d+)?")
STOP_SECONDS = 10  # a stopped worker's time to unwind its run (leave a GPU kernel, close files) before it is killed
UNGUARDED_EXIT = 86  # a worker that reached run_grid while importing the calling script (see exit_if_bootstrapping)
UNGUARDED = ("run_grid with jobs >= 2 trains in worker processes, which import the calling script again (Python's "
             "spawn start method) and reached run_grid there: put the call under `if __name__ == \"__main__\":` "
             "in the script")


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another of STOP_SIGNALS) to a process waiting on bench workers, raised where
    Ctrl-C raises KeyboardInterrupt so that it stops the workers the same way (`coreaug bench`
    exits 128 + the signal's number: 143 for SIGTERM)."""

    def __init__(self, signum=signal.SIGTERM):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def signal_name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_code(self):
        return 128 + self.signum


# Signals that stop a run as SIGTERM does, where their action is the default (which ends the process without a
# word): a dropped SSH session's SIGHUP (not under nohup, which ignores it), and the SIGUSR1 that Slurm's
# --signal=USR1@SECONDS sends before a job's time limit.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGUSR1") if hasattr(signal, name))


@dataclass
class Worker:
    """One worker process's place: its device (None: the runs' own `device` setting) and the
    number of CPU threads torch may use there."""

    device: str
    threads: int


def check_jobs(jobs):
    """`jobs` as an int >= 1 (an int or its digits as text); UsageError naming --jobs if not."""
    text = str(jobs).strip()
    if isinstance(jobs, bool) or not text.isdigit() or int(text) < 1:
        raise UsageError(f"--jobs must be a whole number of worker processes >= 1 (e.g. --jobs 2), got {jobs!r}")
    return int(text)


def parse_devices(devices):
    """`devices` ("cuda:0,cuda:1" or a list of names) as a list of device names.

    Each is `cpu`, `cuda` or `cuda:N`; a CUDA device must exist on this machine. Raises
    UsageError naming --devices for an empty list, a malformed name or a GPU not present.
    """
    names = [d.strip() for d in devices.split(",") if d.strip()] if isinstance(devices, str) else [str(d) for d in devices]
    if not names:
        raise UsageError(f"--devices must list devices like cuda:0,cuda:1 (or cpu), got {devices!r}")
    for name in names:
        if not DEVICE.fullmatch(name):
            raise UsageError(f"--devices must list devices like cuda:0,cuda:1 (or cpu), got {name!r} in {devices!r}")
    cuda = [name for name in names if name.startswith("cuda")]
    if cuda:
        count = _gpu_count()
        if count == 0:
            raise UsageError(f"--devices names {cuda[0]} but CUDA is not available here; pass --devices cpu "
                             "or leave --devices out")
        for name in cuda:
            if int(name.partition(":")[2] or 0) >= count:
                raise UsageError(f"--devices names {name} but this machine shows {count} GPU(s), cuda:0 to "
                                 f"cuda:{count - 1}")
    return names


def plan_workers(device, *, jobs=None, devices=None):
    """The worker processes for runs whose config says `device` ("auto", "cpu", "cuda[:N]").

    devices: the devices to spread the workers over (see parse_devices); None means every
        visible GPU when `device` is "cuda" or "auto" and CUDA is available, else none (each
        worker uses `device`).
    jobs: the number of workers (see check_jobs); None means one per device, or 1.
    Returns a list of Worker, one per job: devices dealt round-robin, and as each one's thread
    count OMP_NUM_THREADS where the user set it (a CPU run's figures depend on the thread count:
    the same in every worker and in a run trained alone), else its share of this process's CPU
    cores, max(1, cores // jobs).
    """
    if devices is not None:
        devices = parse_devices(devices)
    elif device in ("auto", "cuda"):
        devices = [f"cuda:{k}" for k in range(_gpu_count())] or None
    if devices is None:
        pick_device(device)  # a GPU asked for where there is none: refused here, not in every worker
    jobs = check_jobs(jobs) if jobs is not None else len(devices) if devices else 1
    threads = _threads_set() or max(1, _cores() // jobs)
    return [Worker(devices[k % len(devices)] if devices else None, threads) for k in range(jobs)]


def _killed_by(exitcode):
    """" (SIGKILL: ...)" for a worker killed by a signal (multiprocessing's negative exit code), else ""."""
    if exitcode is None or exitcode >= 0:
        return ""
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        return ""
    why = ", as the kernel's out-of-memory killer does (dmesg says so): fewer --jobs, or a smaller --batch-size" \
        if -exitcode == signal.SIGKILL else ""
    return f" (killed by {name}{why})"


def _warn_if_oversubscribed(workers):
    """Warn where more of `workers` train on the CPU at once than this process has cores (its affinity: a
    Slurm job's or container's share, taskset): their runs wait for each other, and their seconds count the
    wait. Workers on GPUs have their device each."""
    on_cpu, cores = sum(worker.device in (None, "cpu") for worker in workers), _cores()
    if on_cpu > cores:
        warn_at_caller(f"{on_cpu} runs train at once on {cores} usable CPU core(s) (this process's share of the "
                       "machine): they wait for each other, and their seconds count the wait; for timings, train "
                       f"at most {cores} at once (--jobs {cores}; jobs={cores} in run_grid)")


def check_spawnable(configs):
    """UsageError, before anything is written, where spawned workers cannot train the runs of
    `configs` (TrainConfigs): the calling script was read from stdin (`python - < script.py`: the
    workers cannot import it again), or a dataset, model, policy or strategy of the runs is registered
    in a `__main__` of no file (a notebook, `python -c`), which the workers do not import."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    # python -m (from a zip too) and zipapps have a __spec__: spawn imports them by name, not by file
    if path is not None and not os.path.isfile(path) and getattr(main, "__spec__", None) is None:
        raise UsageError(f"run_grid with jobs >= 2 trains in worker processes that import the calling script again, "
                         f"and this one has no file ({path}, read from stdin?): save it as a .py file and run that, "
                         "or use jobs=1")
    if path is not None or main is None:
        return  # a script: the workers import it again, and registrations at its top level with it
    for kind, name in sorted({pair for config in configs for pair in _registered_names(config)}):
        if getattr(_registered(kind, name), "__module__", None) == "__main__":
            raise UsageError(f"{kind} {name!r} is registered in this notebook (or python -c), which run_grid's worker "
                             "processes (jobs >= 2) do not import: register it in a .py module that the notebook "
                             "imports, or use jobs=1")


def _registered_names(config):
    """(kind, name) of the registered names a TrainConfig uses: its dataset, model, strategy and policies."""
    if isinstance(config.dataset, str):
        yield "dataset", config.dataset
    yield "model", config.model
    yield "strategy", config.strategy
    for part in str(config.augment or "").split("+"):
        if part.strip():
            yield "policy", part.strip().lower()


def _registered(kind, name):
    """What `name` is registered as (a factory, a loader or a rule's choose function), or None."""
    from coreaug.augment.registry import _POLICIES
    from coreaug.data.registry import _LOADERS, _key
    from coreaug.models.registry import _MODELS
    from coreaug.selection.rules import RULES

    if kind == "strategy":
        return getattr(RULES.get(name), "choose", None)
    if kind == "dataset":
        return _LOADERS.get(_key(name))
    return (_MODELS if kind == "model" else _POLICIES).get(name)


def exit_if_bootstrapping():
    """In a worker process still importing the calling script (a script that calls run_grid
    without the `__main__` guard: spawn runs the script's top level again), exit at once with
    UNGUARDED_EXIT, so that the parent raises the one error that says so, and the worker trains,
    writes and prints nothing."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # multiprocessing's own test
        sys.exit(UNGUARDED_EXIT)


def _start_resource_tracker():
    """Start multiprocessing's resource tracker (the queues' semaphores' keeper) with SIGHUP and SIGUSR1
    ignored, as it ignores SIGINT and SIGTERM: a hangup of the terminal's process group killed it, and
    the one started again in its place printed a KeyError for each semaphore it never knew."""
    from multiprocessing import resource_tracker

    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    kept = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS[1:]}
    try:
        resource_tracker.ensure_running()  # (ignored signals stay ignored across its exec)
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def run_in_workers(runs, workers, report=None):
    """Train `runs` in one spawned process per Worker (at most one per run still to train).

    Finished runs are reported "skipped" at once, without a worker. The others go into one
    queue that the workers take runs from; each run trains with the worker's device and quiet
    (the parent reports). `report(outcome, position)` is called in this process as each run
    ends, `position` counting the runs reported so far. A run that fails with an error of its
    own is reported "failed" and the workers go on; a worker that dies (killed, out of memory)
    fails the run it held. A UsageError or OSError that does not name the run's folder (a bad
    setting, missing data: every run would fail the same way) stops the workers and is raised
    here whole, as one job raises it; so is a UsageError when the workers, importing the calling
    script again, reach run_grid there (a script without the `__main__` guard). On
    KeyboardInterrupt, or SIGTERM (raised as Terminated, from the main thread where SIGTERM has
    no handler of the caller's), the workers are stopped and the interrupt goes on: their runs
    keep a checkpoint and no summary.json. The workers also stop when this process dies without
    a word (SIGKILL). Returns the RunOutcomes, in the order reported.
    """
    outcomes = []

    def done(outcome):
        outcomes.append(outcome)
        if report:
            report(outcome, len(outcomes))

    todo, resuming = [], set()  # resuming: positions of the runs interrupted before (not by their worker's start)
    for run in runs:
        state = run.state()
        if state == "finished":
            done(RunOutcome(run, "skipped"))
        else:
            if state == "interrupted":
                resuming.add(len(todo))
            todo.append(run)
    if not todo:
        return outcomes
    _start_resource_tracker()
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for position, run in enumerate(todo):
        tasks.put((position, run))
    workers = workers[:len(todo)]
    _warn_if_oversubscribed(workers)
    for _ in workers:
        tasks.put(None)  # one stop sign per worker, after every run
    processes, holding = [], {}  # holding: worker -> position of the run it trains
    finished = False
    try:
        with sigterm_raises():
            for index, worker in enumerate(workers):
                processes.append(_start(context, index, worker, tasks, results))
            _wait(processes, todo, results, holding, done, resuming)
        finished = True
    except BaseException as stopped:
        # The frames the exception leaves (_wait's, Queue.get's) hold the queues: freed with them, their
        # semaphores would be unlinked by a garbage collection that may run inside the resource tracker's
        # lock at exit, whose unregistering then fails ("1 leaked semaphore", "[Errno 2]"). Freed below.
        traceback.clear_frames(stopped.__traceback__)
        raise
    finally:
        _stop(processes, finished=finished)
        _close_queue(tasks)
        _close_queue(results)
        del tasks, results  # their semaphores unlinked and unregistered now, in this thread
    return outcomes


FEEDER_SECONDS = 0.25  # a closed queue's feeder thread's time to flush what is left into the pipe and end
_PARKED = []  # closed queues whose feeder thread had not ended (a full pipe of runs never taken, or a slow one)


def _close_queue(channel):
    """Close `channel` so that its semaphores are freed by this thread. The queue's feeder thread
    holds two of them while it flushes: once it ended after the queue was freed (a stopped grid
    under load), it unlinked them and was stopped by the interpreter's exit before it unregistered
    them, and the resource tracker warned of "1 leaked semaphore" ("[Errno 2]"). So the thread is
    waited for, a moment; one not ended by then (blocked on a full pipe of runs a stopped grid never
    took, which must not hold this process; or slow) keeps its queue until a later close finds it
    ended, or to the exit, whose finalizers free it in the main thread."""
    _PARKED[:] = [parked for parked in _PARKED if parked._thread.is_alive()]  # the others freed here, now
    channel.cancel_join_thread()
    channel.close()
    feeder = getattr(channel, "_thread", None)  # (multiprocessing's name for it; None where nothing was put)
    if feeder is not None:
        feeder.join(FEEDER_SECONDS)
        if feeder.is_alive():
            _PARKED.append(channel)


def _wait(processes, todo, results, holding, done, resuming=()):
    """Report each of `todo` as its worker sends its status, or as failed when its worker died; a
    run is said to be resumed when its position is in `resuming` (its state before the workers
    began: by the time a worker's word arrives, it may have written the run's first checkpoint)."""
    reported = set()
    while len(reported) < len(todo):
        try:
            message = results.get(timeout=1.0)
        except queue.Empty:
            if any(process.exitcode == UNGUARDED_EXIT for process in processes):
                raise UsageError(UNGUARDED)
            for index, process in enumerate(processes):
                if not process.is_alive() and process.exitcode != 0 and index in holding:
                    position = holding.pop(index)
                    reported.add(position)
                    done(RunOutcome(todo[position], "failed",
                                    f"its worker process ended with exit code {process.exitcode}"
                                    f"{_killed_by(process.exitcode)}"))
            if not any(p.is_alive() for p in processes) and results.empty():
                # a worker that died as it took a run (before saying so: `ulimit -u`, no thread for the queue)
                codes = sorted({p.exitcode for p in processes if p.exitcode not in (0, None)})
                why = (f"a worker process ended (exit code {', '.join(map(str, codes))}; its error, if any, is "
                       "above) and none was left to train it" if codes else "no worker process was left to train it")
                for position in sorted(set(range(len(todo))) - reported):
                    reported.add(position)
                    done(RunOutcome(todo[position], "failed", why))
            continue
        if message[0] == "took":
            holding[message[1]] = message[2]
            run = todo[message[2]]
            if not run.config.quiet:  # (the workers train quiet: a run's only other line is its end)
                doing = "resuming" if message[2] in resuming else "training"
                say(f"{run.name}: {doing} in worker {message[1] + 1} ({run.folder})")
        elif message[0] == "stop":  # every run would fail the same way: the grid stops, as with one job
            raise message[3]
        else:
            _, index, position, status, error = message
            holding.pop(index, None)
            if position not in reported:
                reported.add(position)
                done(RunOutcome(todo[position], status, error))


def _start(context, index, worker, tasks, results):
    """Start worker `index`: the thread count in its environment before it imports torch, and
    SIGINT ignored from its first instruction (the parent decides what Ctrl-C stops)."""
    threads = str(worker.threads)
    short = warnings.formatwarning is one_line_warning  # the commands' one-line warnings, in their workers too
    process = context.Process(target=_work, args=(index, worker, tasks, results, short), daemon=True,
                              name=f"coreaug-bench-worker-{index}")
    with _environment(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads), _sigint_ignored():
        process.start()
    return process


def _stop(processes, *, finished):
    """End the workers. After the last run they stop at their stop signs and are waited for,
    so each exits cleanly (its exit handlers run: no semaphore left to the resource tracker);
    otherwise (an interrupt, an error here) they are terminated, which unwinds each one's run
    (see _work). A worker not gone within STOP_SECONDS is killed."""
    if not finished:
        for process in processes:
            if process.is_alive():
                process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()


def _work(index, worker, tasks, results, short_warnings=False):
    """A worker's loop: take a run, train it (train_grid_run), send its status; stop at None.

    SIGTERM (terminate(), or the parent gone) raises SystemExit, so the run unwinds as on an
    error (its lock released, a file half-written removed) and the exit handlers run."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    for signum in STOP_SIGNALS[1:]:  # a terminal's hangup reaches the whole group: the parent stops the workers
        signal.signal(signum, signal.SIG_IGN)
    _stop_with_parent()
    # tqdm's own lock is a named semaphore (spawn), unlinked by an exit handler: a worker killed after
    # STOP_SECONDS (a slow unwind under load) left it to the resource tracker, which warned of a leak
    tqdm.set_lock(threading.RLock())
    if short_warnings:
        warnings.formatwarning = one_line_warning
    torch.set_num_threads(worker.threads)
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            position, run = task
            results.put(("took", index, position))
            config = dataclasses.replace(run.config, quiet=True,
                                         **({"device": worker.device} if worker.device else {}))
            try:
                status, error = train_grid_run(dataclasses.replace(run, config=config)), None
            except STOPPING as exc:
                if not fails_run_alone(exc, run):  # not this run's own: the parent stops the grid with it
                    results.put(("stop", index, position, _portable(exc)))
                    return
                status, error = "failed", refusal_line(exc)
            except Exception as exc:  # noqa: BLE001 - one run's error must not stop the others
                status, error = "failed", crash_line(exc, run)
            results.put(("done", index, position, status, error))
    finally:  # the loop left, a SIGTERM (the parent stopping the grid) would raise inside the exit handlers
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (torch's, a traceback on stderr): the worker ends anyway


def _portable(exc):
    """`exc` as it can cross to the parent (pickled): itself, or a UsageError with its whole message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type of the training's
        return UsageError(str(exc))


def _exit_on_signal(signum, frame):
    signal.signal(signum, signal.SIG_IGN)  # once: a second one while the run unwinds would interrupt that
    raise SystemExit(128 + signum)


def _stop_with_parent():
    """SIGTERM this worker once its parent is gone, however the parent ended (SIGKILL
    included): the parent's end of the pipe it started the worker through closes then."""
    parent = multiprocessing.parent_process()

    def watch():
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="coreaug-bench-parent-watch", daemon=True).start()


def stops_ignored_once_finished():
    """Ignore SIGTERM (and the other STOP_SIGNALS whose action is the default) from now on, in the
    main thread: called at exit (atexit, the first of its callbacks to run) after a command has done
    its work (its files written, its result said), where a stop (a scheduler's time limit,
    `timeout`) landing in its last second of teardown (inductor's workers, the interpreter) killed a
    finished run with 143 and no word, so that the job read as killed. The process then ends as it
    would have, exit 0."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def sigterm_raises():
    """Raise Terminated on SIGTERM (and on the other STOP_SIGNALS whose action is the default) in
    the block, as Ctrl-C raises KeyboardInterrupt. Only from the main thread, and only where SIGTERM
    has its default action (a handler of the caller's stays): elsewhere a SIGTERM ends this process
    and the workers stop with it. The first signal to arrive names the stop: torchrun passes a
    Ctrl-C on as SIGINT and, a moment later, SIGTERM, which raised inside the KeyboardInterrupt's
    unwinding would call it a SIGTERM."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    first = []  # the signal that stopped the block

    def terminated(signum, frame):
        if first != [signal.SIGINT]:
            first[:] = first or [signum]
            raise Terminated(first[0])

    def interrupted(signum, frame):
        if not first or first == [signal.SIGINT]:
            first[:] = [signum]
            raise KeyboardInterrupt()
    own_int = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # else the caller's stays
    handled = [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is signal.SIG_DFL]
    for signum in handled:
        signal.signal(signum, terminated)
    if own_int:
        signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        for signum in handled:
            signal.signal(signum, signal.SIG_DFL)
        if own_int:
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _environment(**values):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT while a child starts: an ignored signal stays ignored across exec, so the
    child is never interrupted mid-import (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _gpu_count():
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _threads_set():
    """OMP_NUM_THREADS as a whole number >= 1, or None where it is unset or not one."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def _cores():
    return usable_cores()
