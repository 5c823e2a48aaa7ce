"""A run's folder: config.json, metrics.jsonl, summary.json, checkpoint.pt and, at the end,
model.pt, written atomically; with `tensorboard`, the metrics as TensorBoard scalars too.

Nothing in a run folder runs code when read: a folder may come from someone else's archive.
checkpoint.pt holds only CHECKPOINT_TYPES and is read with torch.load(weights_only=True), which
unpickles no other class or function; model.pt is read the same way (coreaug.training.trained).

A folder belongs to one live run at a time: the run holds an OS lock on it (flock), which the
OS drops when the process ends however it ends, so `--resume` after a crash still works.
"""
import collections
import contextlib
import errno
import functools
import hashlib
import json
import math
import os
import pickle
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

from coreaug.errors import TrainingDiverged, UsageError, first_line
from coreaug.files import DISK_ERRORS, atomic_write, lock_folder, make_folder, saved_by_torch, size_text

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
TENSORBOARD = "tensorboard"
RESULTS = ("metrics.jsonl", "summary.json", CHECKPOINT, MODEL)  # what a fresh start deletes
# Seconds a run waits for its folder's lock before calling the folder in use: another command's look
# (folder_in_use: bench, report, evaluate) holds it for microseconds, and a run starting then was refused.
LOCK_PATIENCE = 0.25
RUN_KEYS = {"dataset", "model", "strategy", "epochs"}  # settings every coreaug run's config.json holds
# The allow-list of what a checkpoint holds (trainer._checkpoint: the model's, optimizer's, method's
# and scaler's state dicts, the history, the config): exact types, no subclasses.
CHECKPOINT_TYPES = (dict, collections.OrderedDict, list, tuple, str, int, float, bool, type(None), torch.Tensor)


class RunFolder:
    """The files of one run in `path`; nothing is written until `start` is called (`check` creates a
    new folder, empty, to hold its lock; `abandon` removes it again)."""

    def __init__(self, path, tensorboard=False):
        self.path = os.path.abspath(path)
        self._lock = None
        self._locked = True  # False where the file system took no lock (lock_folder warned)
        self.tensorboard, self._scalars = tensorboard, None
        self._checked = None  # the results `check` found (and overwrite), which a fresh `start` may delete
        self._made = []  # the folders `check` created, deepest last
        self.done = False  # a finished run that a resume only reports (`finished`)

    def file(self, name):
        return os.path.join(self.path, name)

    def _write(self, name, write, **options):
        """`atomic_write` of the run's file `name`: a link in its place (a folder unpacked from someone
        else's archive) is replaced by the file, never written through to where it points."""
        atomic_write(self.file(name), write, through_links=False, **options)

    def check(self, identity, resume, overwrite=False):
        """Refuse a folder holding another run; return its checkpoint when resuming it.

        Raises UsageError when `path` is a file, holds a run whose config differs from
        `identity` or a config.json that is not a coreaug run's, or holds a run's results
        (checkpoint, metrics, summary, model) that neither `resume` nor `overwrite` says what
        to do with: a rerun that forgot --resume must not empty the folder, nor may a resume
        that finds no checkpoint.pt beside them, nor a run into a folder whose results have no
        config.json to say which run they are. Returns the checkpoint dict if `resume` and one
        exists, else None.
        """
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UsageError(f"--out {self.path} is a file; give a folder for the run's outputs")
        kept = [name for name in RESULTS if os.path.exists(self.file(name))] if os.path.isdir(self.path) else []
        self._checked = (set(kept), overwrite)
        if not os.path.isdir(self.path):
            _check_can_make(self.path)  # now, not after the dataset is decoded
            self._make_and_lock()
            return None
        try:
            self._take_lock()
        except FileNotFoundError:  # removed meanwhile, empty, by a run refused before its first file
            self._make_and_lock()
            return None
        config_path = self.file("config.json")
        if not os.path.exists(config_path):
            if kept and not overwrite:
                raise UsageError(f"--out {self.path} holds a run's results ({', '.join(kept)}) but no config.json "
                                 "saying which run they are; pass --overwrite to replace them, or choose another --out")
            return None
        try:
            with open(config_path) as f:
                previous = json.load(f)
            if not isinstance(previous, dict):
                raise ValueError(f"a JSON {type(previous).__name__}, not an object")
            if not RUN_KEYS <= set(previous):
                raise ValueError("not a coreaug run's settings")
        except (OSError, ValueError) as exc:
            if overwrite:
                return None
            what = f"a run ({', '.join(kept)}) whose config.json" if kept else "a config.json that"
            raise UsageError(f"--out {self.path} holds {what} cannot be read as a coreaug run's ({first_line(exc)}); "
                             "pass --overwrite to start the run there anyway (replacing it), or choose another "
                             "--out") from None
        if not kept:
            return None  # a run stopped before its first epoch ended: nothing to keep or resume
        diverged = self._diverged_first_epoch() if resume and not overwrite and not os.path.exists(
            self.file(CHECKPOINT)) else None
        if diverged:  # its epoch's row kept, no checkpoint (the weights were NaN): nothing to go on from
            raise TrainingDiverged(f"--out {self.path} holds a run whose first epoch diverged (metrics.jsonl: "
                                   f"{diverged}): there is nothing to resume; lower --lr and start the run again "
                                   "with --overwrite")
        changed = [] if overwrite else differences(previous, identity, self.path)
        if changed:
            diff = ", ".join(f"{k}: {was!r} -> {now!r}" for k, was, now in changed)
            note = dataset_note(previous, changed)
            if resume:  # --overwrite would delete the run the user asked to continue
                raise UsageError(f"--out {self.path} holds a run of other settings than these ({diff}{note}); "
                                 "a run of these needs another --out; a --resume continues it with the settings it "
                                 f"started with: {run_flags(changed, previous)}")
            raise UsageError(f"--out {self.path} already holds a run with a different config ({diff}{note}); "
                             "choose another --out, or pass --overwrite to replace that run")
        if not resume and not overwrite:
            raise UsageError(f"--out {self.path} already holds a run ({', '.join(kept)}); pass --resume to continue "
                             "it, --overwrite to start it again (deleting those files), or choose another --out")
        if resume and os.path.exists(self.file(CHECKPOINT)):
            checkpoint = self._load_checkpoint()
            settings = checkpoint.get("config")
            mixed = [] if self._locked or not isinstance(settings, dict) else differences(previous, settings, self.path)
            # two runs at once where nothing kept them apart: config.json of one, the results of the other (each
            # side read as stored too: a relative dataset an older coreaug recorded is placed from the run folder)
            if mixed and differences(settings, previous, self.path):
                shown = ", ".join(f"{k}: {was!r} in config.json, {now!r} in {CHECKPOINT}" for k, was, now in mixed)
                raise UsageError(f"--out {self.path} holds the {CHECKPOINT} of another run than its config.json "
                                 f"says ({shown}): two runs wrote into it at once, which its file system's missing "
                                 "locks did not prevent; pass --overwrite to start the run again, or choose another "
                                 "--out")
            return checkpoint
        if resume and not overwrite and self._readable_results():  # checkpoint.pt removed to save space, say
            raise UsageError(f"--out {self.path} holds a finished run (summary.json, {MODEL}) without its "
                             f"{CHECKPOINT}: there is nothing to resume; its results are in summary.json, and "
                             f"`coreaug evaluate {self.path}` tests its model (--overwrite would train it again, "
                             f"deleting {MODEL})")
        if resume and not overwrite:
            raise UsageError(f"--out {self.path} holds a run's results ({', '.join(kept)}) but no {CHECKPOINT} to "
                             "resume from; pass --overwrite to train it again from the start (deleting them), or "
                             "choose another --out")
        return None

    def _diverged_first_epoch(self):
        """"train loss nan, test loss nan" (or "diverged") where metrics.jsonl holds one row, marked diverged
        or with a loss that is not finite (an epoch that diverged keeps its row, not its checkpoint); else None."""
        try:
            with open(self.file("metrics.jsonl"), encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return None
        losses = {key: rows[0].get(key) for key in ("train_loss", "test_loss")} if len(rows) == 1 else {}
        broken = [f"{key.replace('_', ' ')} {value}" for key, value in losses.items()
                  if isinstance(value, float) and not math.isfinite(value)]
        return ", ".join(broken) or ("diverged" if len(rows) == 1 and rows[0].get("diverged") is True else None)

    def _load_checkpoint(self):
        """The checkpoint, read without running code; UsageError (one line) for a damaged file or
        one holding anything outside CHECKPOINT_TYPES."""
        path = self.file(CHECKPOINT)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" not in str(exc) or not saved_by_torch(path):
                raise _corrupt(path, exc) from None
            found = re.search(r"(?:GLOBAL|Unsupported class) ([\w.]+)", str(exc))  # torch 2.5 and later; 2.3
            raise _foreign(path, found.group(1) if found else "pickled Python objects") from None
        except Exception as exc:  # noqa: BLE001 - zip and EOF errors all mean a damaged file
            raise _corrupt(path, exc) from None
        odd = _foreign_type(checkpoint)
        if odd is not None:
            raise _foreign(path, f"a {odd[1]} at {odd[0]}")
        return checkpoint

    def _make_and_lock(self):
        """Create the folder (and the folders above it that are missing) and take its lock, so that
        a second run into it is refused now, not once its data has loaded. Only the folders this
        process's mkdir created are `abandon`'s to remove: one another process made first is theirs."""
        self._made = []
        for folder in _missing_folders(self.path):
            try:
                os.mkdir(folder)
                self._made.append(folder)
            except FileExistsError:
                pass
        make_folder(self.path)  # (where the folder was a link's, or raced: exists now either way)
        self._take_lock()

    def _take_lock(self, patience=LOCK_PATIENCE):
        """Hold the folder's lock for this process; UsageError if another process holds it for
        `patience` seconds (a run holds it all along; a look, folder_in_use, for a moment). The
        lock is of the folder at the path when taken: one removed while this waited is let go and
        the path opened again (FileNotFoundError where nothing is there any more)."""
        if self._lock is not None:
            return
        deadline, moved = time.monotonic() + patience, 0
        while True:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                self._locked = lock_folder(fd, self.path, wait=False)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise UsageError(f"--out {self.path} is in use by another coreaug run that is still going; "
                                 "wait for it to end or choose another --out") from None
            if _is_at(fd, self.path) or moved == 3:  # (a disk whose folders' numbers change: kept, as before)
                self._lock = fd
                return
            moved += 1
            os.close(fd)

    def release(self):
        """Let another run use the folder (the OS also does this when the process ends)."""
        if self._scalars is not None:
            self._scalars.close()
            self._scalars = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def abandon(self):
        """Remove the folders `check` created where nothing was written in them (a run refused, or
        stopped, before its first file), then `release`: removed while still locked, so that no run
        waiting for the lock takes it in between. Only while this process holds the lock of the
        folder at the path: a run refused because another took it first (both made folders of the
        path at once) leaves them to that one."""
        if self._lock is not None and _is_at(self._lock, self.path):
            for folder in reversed(self._made):
                try:
                    os.rmdir(folder)
                except OSError:
                    break
        self._made = []
        self.release()

    def start(self, identity, fresh):
        """Create the folder and write config.json; a fresh start removes an old run's files,
        those `check` found (and allowed) only: results another run wrote in the meantime (the
        folder was free when checked, the lock is taken here) are refused, not deleted."""
        make_folder(self.path)
        self._take_lock()
        found, overwrite = self._checked or (set(), False)
        arrived = [name for name in RESULTS if os.path.exists(self.file(name)) and name not in found]
        if fresh and arrived and not overwrite:
            raise UsageError(f"--out {self.path} received a run's results ({', '.join(arrived)}) from another "
                             "coreaug run while this one was preparing; choose another --out")
        for entry in os.scandir(self.path):  # a write a killed run left half done (atomic_write's temporaries)
            if entry.name.startswith(".tmp-") and entry.is_file():
                os.unlink(entry.path)
        if fresh:
            for name in RESULTS:
                if os.path.exists(self.file(name)):
                    os.unlink(self.file(name))
            shutil.rmtree(self.file(TENSORBOARD), ignore_errors=True)
        self._write("config.json", lambda f: json.dump(identity, f, indent=2))

    def save_epoch(self, checkpoint, history):
        """Checkpoint first, then the metrics it contains, so the two never disagree. numpy scalars
        are saved as Python numbers; any other type outside CHECKPOINT_TYPES is a TypeError (a
        bug: `--resume` would refuse the file)."""
        checkpoint = _plain(checkpoint)
        odd = _foreign_type(checkpoint)
        if odd is not None:
            raise TypeError(f"the checkpoint would hold a {odd[1]} at {odd[0]}, which --resume does not load; "
                            "save it as a tensor, number, string, list or dict")
        self._write(CHECKPOINT, lambda f: torch.save(checkpoint, f), mode="wb", durable=True)
        self._write_metrics(history)
        self._write_scalars(history[-1])

    def save_metrics(self, history):
        """The metrics of an epoch whose checkpoint is not saved (it diverged: the checkpoint stays at the
        epoch before, and a `--resume` trains from there, its row replaced by `sync_metrics`)."""
        self._write_metrics(history)
        self._write_scalars(history[-1])

    def _write_metrics(self, history):
        self._write("metrics.jsonl", lambda f: f.writelines(json.dumps(m) + "\n" for m in history))

    def check_room(self, checkpoint, epochs):
        """The error the run's next write would raise, now, before the data loads (a large folder
        decodes for hours) and an epoch trains again: PermissionError for an existing folder this
        process may not write in, OSError(ENOSPC) for a disk without room for a checkpoint beside
        the old one (it is written beside it, then renamed: a resume on a nearly full disk trained
        an epoch and failed the same way, saying only "free some space"). A finished run, which only
        reports, needs neither."""
        ended = checkpoint is not None and checkpoint["epoch"] >= epochs
        if ended and self._readable_results():
            return
        if ended:  # only model.pt (and summary.json) to write again: about the weights' size
            need, what = sum(t.nbytes for t in checkpoint["model"].values() if isinstance(t, torch.Tensor)), MODEL
        else:
            need, what = (os.path.getsize(self.file(CHECKPOINT)) if checkpoint is not None else 0), CHECKPOINT
        _check_room_in(self.path, need, what)

    def finished(self, checkpoint, epochs):
        """Whether `checkpoint` ends the run (all `epochs` done) and its model.pt and summary.json
        were written and read back: a `--resume` then only reports the run, writing nothing (`done`
        says so afterwards). A missing or damaged one is written again from the checkpoint."""
        self.done = checkpoint is not None and checkpoint["epoch"] >= epochs and self._readable_results()
        return self.done

    def _readable_results(self):
        try:
            with open(self.file("summary.json")) as f:
                if not isinstance(json.load(f), dict):
                    return False
            torch.load(self.file(MODEL), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - missing, truncated or foreign files all mean "write them again"
            return False
        return True

    def sync_metrics(self, history):
        """Write metrics.jsonl from a resumed checkpoint's `history` when it holds another number of
        epochs: a run stopped between the two writes of `save_epoch` kept a checkpoint one epoch ahead,
        and after its last epoch no later `save_epoch` would write that epoch's row; so is one with a row
        that is not JSON (a copy cut short, an edit)."""
        if metrics_rows(self.path) != len(history) or damaged_results(self.path, summary=False):
            self._write_metrics(history)

    def resume_scalars(self, history):
        """A resumed run writes the scalars of every epoch its checkpoint holds again, over whatever
        the stopped runs wrote (TensorBoard drops their steps from the first on): a run killed
        between its checkpoint and its scalars would otherwise miss that epoch for good, and one
        trained without `tensorboard` until this resume would show only the epochs from here on.
        The earlier starts' event files, whose epochs this one's now holds, are then removed (a
        job resumed 50 times kept 50 files that TensorBoard read and purged at every load)."""
        folder = self.file(TENSORBOARD)
        earlier = [os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(
            "events.out.tfevents.")] if self.tensorboard and history and os.path.isdir(folder) else []
        for metrics in history:
            self._write_scalars(metrics, purge_step=history[0]["epoch"] + 1)
        if history and history[0]["epoch"] == 0 and self._scalars is not None:  # every epoch written again
            for path in earlier:
                with contextlib.suppress(OSError):
                    os.remove(path)

    def _write_scalars(self, metrics, purge_step=None):
        """A disk that cannot take the event file is an OSError naming it, as for the other files: TensorBoard's
        writer thread raises it without a path (and its traceback is silenced: `_quiet_event_writer_threads`)."""
        if not self.tensorboard:
            return
        try:
            if self._scalars is None:
                from .scalars import TensorBoardScalars

                _quiet_event_writer_threads()
                self._scalars = TensorBoardScalars(self.file(TENSORBOARD), purge_step)
            self._scalars.write(metrics)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS or exc.filename:
                raise
            self._drop_scalars()
            raise OSError(exc.errno, exc.strerror, _events_file(self.file(TENSORBOARD))) from exc

    def _drop_scalars(self):
        """Close the event writer after its disk refused it: its final flush fails the same way, said already."""
        scalars, self._scalars = self._scalars, None
        if scalars is not None:
            try:
                scalars.close()
            except OSError:
                pass

    def save_model(self, contents):
        """model.pt: the final weights with what using them needs (coreaug.training.trained)."""
        self._write(MODEL, lambda f: torch.save(contents, f), mode="wb", durable=True)

    def save_summary(self, summary):
        self._write("summary.json", lambda f: json.dump(summary, f, indent=2))


LIBRARIES = {"numpy": "numpy", "faiss": "faiss", "PIL": "pillow"}  # module: the name summary.json gives it


def provenance(data, config=None):
    """What produced a run besides its settings, for summary.json: `commit`, the coreaug checkout's
    (`checkout_commit`); `versions`, Python's and those of the libraries the run loaded whose releases
    can change its numbers (numpy's draws, faiss' neighbours, Pillow's decoding); `data`, the folder
    `data` (an ImageDataset) was read from and, for a folder of images, the hash of its files; `inputs`,
    the other files the run of `config` started from (`input_files`)."""
    loaded = {name: getattr(sys.modules[module], "__version__", None)
              for module, name in LIBRARIES.items() if module in sys.modules}
    if data.fingerprint is not None and "pillow" not in loaded:  # a folder decoded by worker processes alone
        import PIL
        loaded["pillow"] = PIL.__version__
    return {"commit": checkout_commit(), "versions": {"python": platform.python_version(), **loaded},
            "data": {"source": data.source, "fingerprint": data.fingerprint},
            **({"inputs": input_files(config)} if config is not None else {})}


INPUT_FILES = {"pretrained": "--pretrained weights", "model": "--model's module"}  # input_files' keys, named


def input_files(config):
    """The files a run starts from besides its data, each {"path", "sha256"}: `pretrained` weights and
    `model`, the module file of a package.module:function model (weights exported again under the same
    path, a model edited or imported from another folder's copy would start a grid's later runs from
    others: `coreaug bench` compares them)."""
    from coreaug.models.registry import import_factory, is_import_path

    from .config import INSTANCE

    files = {"pretrained": config.pretrained}
    if is_import_path(config.model) and not config.model.startswith(INSTANCE):
        with contextlib.suppress(UsageError):  # (imported by the run already; bench's parent imports it here)
            import_factory(config.model)
        files["model"] = getattr(sys.modules.get(config.model.partition(":")[0]), "__file__", None)
    return {key: {"path": os.path.realpath(path), "sha256": _sha256(path)} for key, path in files.items()
            if isinstance(path, str) and os.path.isfile(path)}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def checkout_commit():
    """`git describe --always --dirty` of the git work tree coreaug is imported from (a checkout, or an
    editable install of one): the release number stays the same over many commits. None for an
    installed package, a tree that is not git's, or no git."""
    import coreaug

    top = os.path.dirname(os.path.dirname(os.path.abspath(coreaug.__file__)))
    if not os.path.exists(os.path.join(top, ".git")):  # the package's own tree, not a project around a venv
        return None
    try:
        # --no-optional-locks: --dirty refreshes the index, which would take index.lock under a commit in progress
        done = subprocess.run(["git", "--no-optional-locks", "-C", top, "describe", "--always", "--dirty",
                               "--abbrev=12"], timeout=10, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _events_file(folder):
    """The event file this process writes in `folder` (TensorBoard names it
    events.out.tfevents.<time>.<host>.<pid>.<n>), or `folder` when none was created."""
    try:
        names = sorted(name for name in os.listdir(folder)
                       if name.startswith("events.out.tfevents.") and f".{os.getpid()}." in name)
    except OSError:
        names = []
    return os.path.join(folder, names[-1]) if names else folder


def _quiet_event_writer_threads():
    """Leave out the traceback of TensorBoard's writer thread dying of an OSError: the thread keeps the error for
    the main thread, which raises it at its next write or flush (every epoch's write flushes), so it is said once, in
    one line. Installed once for the process; any other thread's exception goes to the hook that was there."""
    if getattr(threading.excepthook, "coreaug_quiet", False):
        return
    previous = threading.excepthook

    def hook(args):
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)
    hook.coreaug_quiet = True
    threading.excepthook = hook


def _plain(obj):
    """`obj` with numpy scalars as Python numbers: dicts and lists changed in place (a state
    dict keeps its `_metadata`), tuples rebuilt, tensors untouched."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _plain(value)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            obj[i] = _plain(value)
    elif type(obj) is tuple:
        return tuple(_plain(value) for value in obj)
    return obj.item() if isinstance(obj, np.generic) else obj


OLDER = "0.2.0 or older"  # the version of a run record that names none (coreaug 0.2 recorded no version)


def recorded_version(summary):
    """Which coreaug trained a run, as its summary.json (`summary`, as read) records it: "0.3.0", "0.2.0
    or older then 0.3.0" for a run resumed by another version, OLDER where it names none (0.2's)."""
    value = summary.get("coreaug") if isinstance(summary, dict) else None
    if isinstance(value, list) and value and all(isinstance(version, str) for version in value):
        return " then ".join(value)
    return value if isinstance(value, str) else OLDER


def several_versions(versions):
    """A sentence for results.md and report where the runs pooled were trained by other coreaug versions
    (`versions`: recorded_version of each run), else ""."""
    counts = {}
    for version in versions:
        counts[version] = counts.get(version, 0) + 1
    if len(counts) < 2:
        return ""
    order = sorted(counts, key=lambda version: version != OLDER)  # the oldest first, then as the runs came
    listed = ", ".join(f"{version} ({counts[version]} run{'s' * (counts[version] != 1)})" for version in order)
    return (f"runs of several coreaug versions pooled: {listed}; versions may draw augmentations and compute "
            "settings otherwise (see the changelog), so train the grid again in a folder of its own to compare")


def recorded_fingerprint(summary):
    """The hash of a folder dataset's files that a run's summary.json (`summary`, as read) records
    (`provenance`'s `data`), else None (a registered dataset, an older coreaug, anything unreadable)."""
    data = summary.get("data") if isinstance(summary, dict) else None
    fingerprint = data.get("fingerprint") if isinstance(data, dict) else None
    return fingerprint if isinstance(fingerprint, str) else None


def damaged_results(folder, summary=True):
    """Whether the run folder `folder`'s metrics.jsonl (where there is one) holds a row that is not a
    JSON object, or (with `summary`) its summary.json is not one: files a resume writes again from
    the checkpoint."""
    names = ["metrics.jsonl"] + (["summary.json"] if summary else [])
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                rows = [line for line in f if line.strip()] if name == "metrics.jsonl" else [f.read()]
            if not all(isinstance(json.loads(row), dict) for row in rows):
                return True
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return True
    return False


def epochs_kept(out):
    """The epochs a resume of the run folder `out` would not train again: its checkpoint.pt's history (a run
    stopped between the checkpoint and its metrics.jsonl row kept one more epoch than the rows), else
    metrics.jsonl's rows beside a checkpoint.pt (none without one: a resume starts from the first)."""
    history = _checkpoint_entry(out, "history")
    if isinstance(history, list):
        return len(history)
    return (metrics_rows(out) or 0) if os.path.exists(os.path.join(out, CHECKPOINT)) else 0


def metrics_rows(folder):
    """The epochs the metrics.jsonl of the run folder `folder` holds (its non-blank lines), None
    without a readable one."""
    try:
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None


def _foreign_type(obj):
    """(where, type name) of the first object in `obj` whose type is not in CHECKPOINT_TYPES, else None."""
    stack = [("checkpoint", obj)]
    while stack:
        where, value = stack.pop()
        if type(value) not in CHECKPOINT_TYPES:
            return where, f"{type(value).__module__}.{type(value).__qualname__}"
        if isinstance(value, dict):
            stack.extend((f"{where} key", key) for key in value)
            stack.extend((f"{where}[{key!r}]", item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _corrupt(path, exc):
    # torch.load's KeyError on a file it did not write is a bare number (a magic number it looked up)
    reason = "not a file torch.save wrote" if isinstance(exc, KeyError) else first_line(exc)
    return UsageError(f"{path} is truncated or corrupt and cannot be resumed ({reason}); pass --overwrite to "
                      "train the run again from the start (deleting its results), or choose another --out")


def _foreign(path, what):
    return UsageError(f"{path} holds objects coreaug does not load ({what}); it may be from an older coreaug or "
                      "someone else's archive, and reading it could run code. Train the run again (--overwrite), "
                      "or, if you trust the file, convert it to tensors, numbers, strings, lists and dicts "
                      "(torch.load(..., weights_only=False), then torch.save)")


def check_same_data(checkpoint, config):
    """Refuse to resume from `checkpoint` when config's folder of images has changed since it
    was written (files added, removed or modified): the run would go on training on other data
    than it started with. Checked from the folder's listing, before a changed folder is decoded
    into a cache of its own. Checkpoints of built-in datasets, and ones written before coreaug
    recorded this, carry no fingerprint and pass."""
    from coreaug.data import is_folder_dataset

    stored = (checkpoint or {}).get("data_fingerprint")
    if stored is None or not is_folder_dataset(config.dataset):
        return
    typed = [config.dataset, ((checkpoint or {}).get("config") or {}).get("dataset")]
    if not same_files(stored, config.dataset, config.val_fraction, typed):
        source = os.path.realpath(os.path.expanduser(str(config.dataset)))
        other = read_otherwise(source, config.val_fraction) if "rng" not in checkpoint else ""  # by 0.2 or older
        if other:
            raise UsageError(f"the run's checkpoint was written by an older coreaug, which read {source} "
                             f"otherwise: this version also reads {other}, so --resume would continue on other "
                             "data; move those out of the folder while the run trains to resume it, or start the "
                             "run again with --overwrite")
        raise UsageError(f"the images in {source} changed (files added, removed or modified) since the run's "
                         "checkpoint was written, so --resume would continue on other data; restore them, or "
                         "start the run again with --overwrite")


def checkpoint_fingerprint(run):
    """The data fingerprint in the checkpoint.pt of the run folder `run` (None: none, or unreadable): a
    model.pt of coreaug 0.2 lacks it, and without it evaluate and bench could not tell a folder changed since."""
    return _checkpoint_entry(run, "data_fingerprint")


def _checkpoint_entry(run, key):
    """The entry `key` of the checkpoint.pt of the run folder `run` (its tensors mapped, not read), or None."""
    try:
        checkpoint = torch.load(os.path.join(os.path.expanduser(os.fspath(run)), CHECKPOINT), map_location="cpu",
                                weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - missing, damaged, or pickled by a coreaug before weights_only
        return None
    return checkpoint.get(key) if isinstance(checkpoint, dict) else None


def same_files(stored, root, val_fraction, typed=()):
    """Whether `stored` (a run's data fingerprint) is the fingerprint of the folder `root`'s files
    now: hashed under its real path, as this version does, or under a path in `typed` (the
    folder as given, made absolute), as coreaug 0.2 hashed a folder reached through a link."""
    from coreaug.data.cache_key import files_digest
    from coreaug.data.image_folder import _find_files, folder_fingerprint

    if stored == folder_fingerprint(root, val_fraction):
        return True
    real = os.path.realpath(os.path.expanduser(str(root)))
    given = {os.path.abspath(os.path.expanduser(str(path))) for path in typed if isinstance(path, str)}
    for path in sorted(given):
        if path != real and os.path.realpath(path) == real:
            train, test = _find_files(path, val_fraction, 0)[1:3]
            if stored == files_digest([("train", train), ("test", test)]):
                return True
    return False


def read_otherwise(root, val_fraction):
    """What this coreaug reads in the folder `root` that coreaug 0.2 left out ("N images in linked
    subfolders and M .jfif/.jpe/.apng files"), or "" when nothing: a run of 0.2 on such a folder
    has another fingerprint, and another split, though no file changed."""
    from coreaug.data.image_folder import _find_files

    root = os.path.realpath(root)
    train, test = _find_files(root, val_fraction, 0)[1:3]
    linked, new, folders = 0, 0, {}
    for path, _ in train + test:
        parent = os.path.dirname(path)
        if parent not in folders:  # a file under a link inside the folder: its folder's real path is elsewhere
            folders[parent] = os.path.realpath(parent) != parent
        linked += folders[parent]
        new += path.lower().endswith(NEW_EXTENSIONS)
    found = ([f"{linked} images in linked subfolders"] if linked else []) + \
        ([f"{new} {'/'.join(NEW_EXTENSIONS)} files"] if new else [])
    return " and ".join(found)


def relative_note(stored):
    """For a run config `stored` whose folder dataset is a relative path (coreaug 0.2 recorded it as
    typed), a note saying so, to add to a message about its dataset; else ""."""
    if not relative_folder(stored.get("dataset")):
        return ""
    dataset = stored["dataset"]
    return (f"; the run recorded its folder as the relative path {dataset} (coreaug 0.2 kept paths as typed), "
            "which names it from the working folder the run was started in: run the command from there")


def dataset_note(stored, changed):
    """A note to add to a message listing `changed` ([(setting, stored, now)]) for a run whose config is
    `stored`, when the dataset is among them: `relative_note`'s, or, where the run's folder dataset is
    gone and the dataset now is a folder, how to have the runs read it as theirs; else ""."""
    now = next((value for key, _, value in changed if key == "dataset"), None)
    if now is None:
        return ""
    was = stored.get("dataset")
    if relative_folder(was):
        return relative_note(stored)
    if isinstance(was, str) and isinstance(now, str) and os.path.isabs(was) and not os.path.lexists(was) \
            and os.path.isdir(now):
        return (f"; {was} is gone: if {now} holds the same images moved there, a link at the old path "
                f"(ln -s {now} {was}) makes them the runs' folder again")
    return ""


def relative_folder(dataset):
    """Whether a run config's `dataset` is a folder recorded as a relative path (not a registered name)."""
    from coreaug.data.registry import names_registered_dataset

    return isinstance(dataset, str) and not os.path.isabs(os.path.expanduser(dataset)) \
        and not names_registered_dataset(dataset)


NEW_EXTENSIONS = (".jfif", ".jpe", ".apng")  # image files coreaug 0.2 left out


def recorded_folder(value, run, like=None):
    """The folder a run's config recorded as `value`: itself unless it is a relative path, as coreaug
    0.2 recorded the folder as typed in the working folder of the time; then the folder it names from
    here, else from the run folder `run`'s parents (up to four levels up): the first found, or the
    one that is `like` (a folder given now). None where none is."""
    if not isinstance(value, str) or os.path.isabs(os.path.expanduser(value)):
        return value
    folder, found = os.path.abspath(run), []
    for _ in range(4):
        folder = os.path.dirname(folder)
        found.append(os.path.join(folder, value))
    found = [path for path in [os.path.abspath(value)] + found if os.path.isdir(path)]
    if like is not None:
        match = [path for path in found if os.path.realpath(path) == os.path.realpath(os.path.expanduser(str(like)))]
        return match[0] if match else None
    return found[0] if found else None


def _as_stored(identity):
    return json.loads(json.dumps(identity))  # tuples -> lists, as config.json stores them


def _default_identity():
    from .config import TrainConfig

    return _as_stored(TrainConfig().identity())


DEFAULT_IDENTITY = _default_identity()


def same_settings(stored, identity):
    """Whether a run folder's config.json (`stored`) describes the run of `identity`: the one
    rule for `--resume` and `coreaug bench`.

    A setting that TrainConfig gained after the run was written is missing from `stored`; it
    counts as matching when `identity` holds that setting's default, so a run stays
    resumable (and a finished bench run finished) when the trainer grows an option it did not
    use. A setting stored with another value, a changed default included, is another run;
    values that mean the same run are the same (`_meaning`).
    """
    return not differences(stored, identity)


def folder_in_use(folder):
    """Whether another process holds the lock of run folder `folder` (a run trains in it now; a
    missing folder is free): the lock a training run takes (flock), taken and let go at once."""
    if not os.path.isdir(folder):
        return False
    probe = RunFolder(folder)
    try:
        probe._take_lock(patience=0)
    except UsageError:
        return True
    except FileNotFoundError:  # removed since the look above
        return False
    finally:
        probe.release()
    return False


ONE_WAY_FLAGS = {"weight_augmented", "skip_bad_images", "sync_bn"}  # stored settings whose CLI flag has no --no- form


def run_flags(changed, stored=None):
    """What a command must give to name the stored run of `changed` ([(setting, stored, now)], from
    `differences`) whose config.json is `stored`: "give --dataset digits --seed 3 and leave --train-limit
    out" (CLI flags; in Python the settings of the same names). Settings that run never read (--betas of
    an SGD run) are to be left out: given, they would be refused."""
    from .config import unused_settings

    unread = unused_settings(stored) if stored else set()
    give, leave = [], []
    for key, stored_value, _ in changed:
        name = key.lstrip("-").replace("-", "_")
        flag = "--" + name.replace("_", "-")
        if name in unread or stored_value is None or (stored_value is False and name in ONE_WAY_FLAGS):
            leave.append(flag)
        elif isinstance(stored_value, bool):
            give.append(flag if stored_value else f"--no-{flag[2:]}")
        else:
            value = ",".join(map(str, stored_value)) if isinstance(stored_value, (list, tuple)) else str(stored_value)
            give.append(f"{flag} {shlex.quote(value)}")
    parts = ([f"give {' '.join(give)}"] if give else []) + ([f"leave {', '.join(leave)} out"] if leave else [])
    return " and ".join(parts)


MEASURED_ONLY = {"eval_every"}  # recorded settings that change what a run measures, not what it trains


def differences(stored, identity, where=None):
    """[(setting, stored value, value now)] where `stored` (a config.json) and `identity` differ
    (see `same_settings`); `where`, the run folder of `stored`, places a folder dataset that an
    older coreaug recorded relative (`recorded_folder`)."""
    from .config import unused_settings

    current = _as_stored(identity)
    dataset = stored.get("dataset")
    if where is not None and relative_folder(dataset) and isinstance(current.get("dataset"), str):
        found = recorded_folder(dataset, where, like=current["dataset"])
        stored = {**stored, "dataset": found} if found else stored
    unused = unused_settings(current) | MEASURED_ONLY  # never read (knn for random, ...) or only measuring
    return [(key, stored.get(key), value) for key, value in current.items() if key not in unused
            and _meaning(key, stored.get(key, DEFAULT_IDENTITY.get(key)), stored) != _meaning(key, value, current)]


def _meaning(key, value, settings):
    """A setting's value as the run reads it: a folder dataset's, data_dir's and pretrained's real
    path (they were stored as typed: "data/pets/" and "./data/pets" are one folder), selection_warmup 0 and
    None alike for rules without a warm-up of their own, and a registered dataset's image_size not at all."""
    from coreaug.data import is_folder_dataset
    from coreaug.data.registry import names_registered_dataset
    from coreaug.selection.rules import RULES

    if (key == "dataset" and isinstance(value, str) and is_folder_dataset(value)) or \
            (key in ("data_dir", "pretrained") and isinstance(value, str)):
        return os.path.realpath(os.path.expanduser(value))
    if key == "selection_warmup" and value == 0:
        rule = RULES.get(settings.get("strategy"))
        return None if rule is None or not rule.warmup_share else value
    dataset = settings.get("dataset")
    if key == "image_size" and isinstance(dataset, str) and names_registered_dataset(dataset):
        return None  # a registered dataset's images keep their own size (older runs recorded the folder default, 64)
    if isinstance(value, (list, tuple)):
        return [_float32_digits(item) for item in value]
    return _float32_digits(value)


def _float32_digits(value):
    """A float that float32 holds exactly, by its shortest float32 digits: earlier coreaug recorded a numpy
    float32 setting by all its digits (0.30000001192092896), which is 0.3 as typed again and as recorded now."""
    if type(value) is not float or not abs(value) < 3e38 or float(np.float32(value)) != value:
        return value
    return float(str(np.float32(value)))


def _is_at(fd, path):
    """Whether the open folder `fd` is the one at `path` now (not one removed, or replaced, since)."""
    try:
        here = os.stat(path)
    except OSError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _missing_folders(path):
    """The folders that creating `path` (through links, as make_folder does) would create, outermost first."""
    missing, folder = [], os.path.realpath(os.path.expanduser(path))
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing[::-1]


def _check_can_make(path):
    """PermissionError naming the nearest existing folder above `path` when this process may not
    create folders in it, OSError(ENOSPC) when its disk is full (the errors the first write would
    raise, after the data was loaded: decoding a large folder takes hours)."""
    missing = _missing_folders(path)  # through a link to a folder gone, as make_folder goes
    _check_room_in(os.path.dirname(missing[0] if missing else os.path.realpath(path)))


def _check_room_in(folder, need=0, what=CHECKPOINT):
    """PermissionError when this process may not write in the folder `folder`, OSError(ENOSPC) when
    its disk has not FULL_DISK bytes free, nor `need` for the next `what` (the message gives both)."""
    if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # not known: the first write tells
        return
    if free >= max(need, FULL_DISK):
        return
    if need > FULL_DISK and free > 0:  # (a disk that reports 0 free, some network ones, is tried below)
        beside = " beside the last" if what == CHECKPOINT else ""
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (the next {what} needs {size_text(need)}"
                                    f"{beside}; {size_text(free)} free)", folder)
    if not _takes_a_write(folder):  # (some network and FUSE disks report 0 free and write)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), folder)


def _takes_a_write(folder):
    """Whether FULL_DISK bytes can be written in `folder` (a file written, synced and removed), for a disk that
    reports it has less free: False only on a full disk or quota."""
    try:
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(bytes(FULL_DISK))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc.errno not in (errno.ENOSPC, errno.EDQUOT)
    return True


FULL_DISK = 64 * 1024  # free bytes under which an --out's disk is taken as full before a run starts
