"""A grid's runs in one compressed file, and back into run folders.

The archive is xz-compressed JSON Lines, one line per run in name order:
``{"name": ..., "config": {config.json}, "metrics": [metrics.jsonl rows], "summary": {summary.json}}``;
`summary` is null for a run that never finished, and a run whose files could not be read
carries a `problem` string instead of the figures it lacks. Checkpoints and models are not kept.
Where the grid has a grid.json (the runs its benches planned), each run it names carries
`"planned": true`, and a planned run that never started is a record with `"started": false`
and no files, so that a report or a restore still knows the grid is incomplete (archives
written before this have neither key: no plan). Folders of runs/ that are not runs (no
config.json) or whose names are not plain folder names are left out, and named.
The same runs give the same bytes (sorted runs, fixed key order, xz has no timestamp), so an
unchanged grid is an unchanged file in git.
"""
import contextlib
import gzip
import json
import lzma
import os
import re
from dataclasses import dataclass, field

from coreaug.errors import UsageError, first_line, path_given
from coreaug.files import atomic_write, lock_folder
from coreaug.training.run_files import CHECKPOINT, MODEL, RunFolder, differences

SUFFIX = ".runs.jsonl.xz"
GRID_PATH = f"a grid folder or a grid archive ({SUFFIX})"  # what a report reads
PLAN = "grid.json"  # {"runs": [name, ...]}: every run a bench of the grid planned, started or not; see record_plan
FILES = ("config.json", "metrics.jsonl", "summary.json")
_XZ_MAGIC, _GZIP_MAGIC = b"\xfd7zXZ\x00", b"\x1f\x8b"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,=+-]*$")  # a folder name, never a path
PER_RUN = ("strategy", "subset", "seed")  # the settings a grid's runs differ in; the others are the grid's


@dataclass
class RunRecord:
    """One run of a grid as its files hold it.

    name: the run's folder name. config: config.json (None if missing or unreadable).
    metrics: the metrics.jsonl rows, in epoch order. summary: summary.json, None while the run
    is unfinished (or after a crash). problem: why a file could not be read, else None.
    planned: the grid's grid.json names the run. started: False for a planned run that had
    no folder yet (an archive's record of it; it has no files).
    """

    name: str
    config: dict
    metrics: list
    summary: dict = None
    problem: str = None
    planned: bool = False
    started: bool = True

    @property
    def finished(self):
        """True when the run wrote its summary and every file was readable."""
        return self.summary is not None and self.config is not None and self.problem is None

    def as_json(self):
        """The run as one archive line (no newline)."""
        record = {"name": self.name, "config": self.config, "metrics": self.metrics, "summary": self.summary}
        if self.problem:
            record["problem"] = self.problem
        if self.planned:
            record["planned"] = True
        if not self.started:
            record["started"] = False
        return json.dumps(record, separators=(",", ":"))


@dataclass
class ArchiveResult:
    """What `archive_grid` wrote: the file, its size in bytes, the runs and the finished ones;
    skipped: {folder name: why} for the folders of runs/ left out as no runs (no config.json,
    or a name that is not a plain folder name); not_started: runs grid.json plans that had no
    folder yet (kept in the archive's plan)."""

    path: str
    size: int
    runs: int
    finished: int
    skipped: dict = field(default_factory=dict)
    not_started: list = field(default_factory=list)


@dataclass
class RestoreResult:
    """What `restore_grid` did: run folders written, kept (already finished there) and left out,
    and the grid's runs folder. replaced: {name: what was damaged} for the written runs whose
    folder held a summary.json with unreadable files. why: {name: reason} for each run left
    out: unfinished or unreadable in the archive, a name that is not a plain folder name, or a
    folder a live coreaug run holds."""

    runs_folder: str
    written: list
    kept: list
    left_out: list
    replaced: dict = field(default_factory=dict)
    why: dict = field(default_factory=dict)


def runs_folder(path):
    """The folder holding a grid's run folders: `path/runs` for a grid folder (as `coreaug bench
    --out` makes it), `path` itself when its subfolders are runs (hold a config.json); else None."""
    nested = os.path.join(path, "runs")
    if os.path.isdir(nested):
        return nested
    if os.path.isdir(path) and any(os.path.isfile(os.path.join(path, entry, "config.json"))
                                   for entry in os.listdir(path)):
        return path
    return None


def read_folder(folder):
    """The RunRecords of every run folder in `folder` (a grid's runs/), in name order: each
    sub-folder holding a run's file (config.json, metrics.jsonl, summary.json, checkpoint.pt);
    one with none of them (.ipynb_checkpoints, notes) is no run."""
    return [read_record(os.path.join(folder, name), name) for name in sorted(os.listdir(folder))
            if any(os.path.isfile(os.path.join(folder, name, file)) for file in (*FILES, CHECKPOINT))]


# An archive unpacks to at most UNPACKS_TO times its size (coreaug's xz of JSON Lines: tens of times; a small
# file of one repeated character unpacks to thousands of times), and at least MIN_UNPACKED characters may be read
UNPACKS_TO, MIN_UNPACKED = 200, 64 << 20


def read_archive(path):
    """The RunRecords of an archive written by `archive_grid` (xz, gzip or plain JSON Lines).

    Raises UsageError naming `path` when it is not such a file.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    opener = lzma.open if head.startswith(_XZ_MAGIC) else gzip.open if head.startswith(_GZIP_MAGIC) else open
    records, left = [], max(UNPACKS_TO * os.path.getsize(path), MIN_UNPACKED)
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(iter(lambda: f.readline(left + 1), ""), 1):
                left -= len(line)
                if left < 0:  # a small compressed file can unpack to gigabytes (in one line): refused before that
                    raise ValueError(f"it unpacks to over {UNPACKS_TO} times its size (at line {number}), where "
                                     "an archive coreaug writes unpacks to tens of times")  # (named below)
                if line.strip():
                    records.append(_record(json.loads(line), number))
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        reason = first_line(exc)
        raise UsageError(f"{path} is not a grid archive ({reason}); give a file written by `coreaug archive` "
                         "or a grid folder") from None
    return records


def load_runs(path):
    """Every run of a grid folder or a grid archive, as RunRecords in name order.

    `path` is a grid folder (its runs/ subfolder, as `coreaug bench --out` makes it), a folder of
    run folders, or an archive written by `archive_grid` (its planned runs that never started
    are `planned_runs`, not runs). Raises UsageError when it is none of these or holds no runs.
    """
    path = path_given(path, "the grid's path", GRID_PATH)
    if os.path.isfile(path):
        records = [record for record in read_archive(path) if record.started]
    elif os.path.isdir(path):
        folder = runs_folder(path)
        if folder is None and os.path.isfile(os.path.join(path, "config.json")):
            raise UsageError(f"{path} is a run folder, not a grid; give {_holder(path)}")
        if folder is None:
            raise UsageError(f"{path} is neither a grid folder (with a runs/ subfolder) nor a grid archive; "
                             "give the --out folder of `coreaug bench` or a file written by `coreaug archive`")
        records = read_folder(folder)
    else:
        raise UsageError(f"{path} does not exist; give a grid folder or a grid archive ({SUFFIX})")
    if not records:
        raise UsageError(f"{path} holds no runs; give a grid folder whose runs/ has run folders, "
                         "or a non-empty archive")
    return records


def _holder(run):
    """What to give instead of the run folder `run`: its grid, or the folder of run folders holding it."""
    parent = os.path.dirname(os.path.abspath(run))
    if os.path.basename(parent) == "runs":
        return f"its grid, {os.path.dirname(parent)} (the folder holding runs/)"
    return f"the folder holding it, {parent} (a folder of run folders)"


def record_plan(grid, names, *, settings=None, shards=None, check=None, data=None):
    """Add `names` to the runs `grid`'s PLAN file lists (written before any run starts, so that a
    report made while the grid trains can name the runs not started yet).

    settings: the settings every run of the grid shares (`grid.grid_settings`), kept under
    "settings" unless the file holds some already. shards: {"count": N, "runs": [...]}, the deal
    of a --shard command, kept under "shards". data: the hash of a folder dataset's files
    (`ImageDataset.fingerprint`), kept under "data" unless the file holds one. check(plan):
    called with the file's dict as read ({} for none), to refuse (UsageError) a command of
    another grid before anything is written.
    Reading, checking and writing happen under an exclusive lock on the grid folder, so that two
    commands starting together see each other's plan.
    """
    with plan_lock(grid):  # held for a read and a write
        plan = read_plan(grid)
        if check is not None:
            check(plan)
        plan["runs"] = sorted(set(_run_names(plan)) | set(names))
        if settings is not None and not isinstance(plan.get("settings"), dict):
            plan["settings"] = settings
        if shards is not None:
            plan["shards"] = shards
        if data is not None and not isinstance(plan.get("data"), str):
            plan["data"] = data
        atomic_write(os.path.join(grid, PLAN), lambda f: json.dump(plan, f, indent=1, sort_keys=True),
                     through_links=False)


@contextlib.contextmanager
def plan_lock(grid):
    """An exclusive lock on the grid folder `grid` while the PLAN file is read and written (let go
    when its descriptor closes), so that two commands of one grid see each other's plan."""
    fd = os.open(grid, os.O_RDONLY)
    try:
        lock_folder(fd, grid)
        yield
    finally:
        os.close(fd)


def read_plan(grid):
    """The PLAN file of the grid folder `grid` as a dict ({} without one, or for one that cannot be
    read); one written before settings were recorded holds "runs" alone."""
    try:
        with open(os.path.join(grid, PLAN)) as f:
            plan = json.load(f)
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def planned_runs(path):
    """The run names the grid `path` (or its runs/ folder) planned: its PLAN file's, or an archive's
    planned runs ([] for a grid bench wrote none for, an archive without a plan, or a file that
    cannot be read)."""
    if os.path.isfile(path):
        try:
            return [record.name for record in read_archive(path) if record.planned]
        except (UsageError, OSError):
            return []
    return _run_names(read_plan(_grid_folder(path, runs_folder(path) or path)))


def _run_names(plan):
    """The run names of a PLAN file's dict (`read_plan`): the strings of its "runs" list."""
    names = plan.get("runs")
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def _grid_folder(grid, folder):
    """The grid folder of `grid` (given as the grid or as its runs/ folder `folder`), where grid.json
    lives and beside which the archive goes: `grid` itself unless it is a grid's runs/ (named runs,
    beside a grid.json or results.md)."""
    parent = os.path.dirname(os.path.abspath(grid))
    if os.path.abspath(folder) == os.path.abspath(grid) and os.path.basename(os.path.abspath(grid)) == "runs" and \
            any(os.path.isfile(os.path.join(parent, name)) for name in (PLAN, "results.md")):
        return parent
    return os.path.abspath(grid)


def archive_grid(grid, *, to=None):
    """Write every run of `grid` into one compressed file and return an ArchiveResult.

    grid: a grid folder (or its runs/ folder). to: the file to write; default
    `<grid>.runs.jsonl.xz` beside the grid folder. Keeps each run's config.json, metrics.jsonl
    rows and summary.json (unfinished runs too, with no summary), and grid.json's plan; leaves
    checkpoints and models out, and folders that are no runs (no config.json, or a name that is
    not a plain folder name: ArchiveResult.skipped names them). The bytes depend only on the
    runs' contents. Raises UsageError when `grid` holds no runs, or `to` is not writable.
    """
    # ~ as the shell would expand it (--out=~/x reaches us as typed)
    grid = os.path.expanduser(path_given(grid, "grid", "a grid's folder"))
    if not os.path.isdir(grid):
        raise UsageError(f"GRID {grid} is not a folder; give the --out folder of `coreaug bench`")
    records = load_runs(grid)
    folder = runs_folder(grid)
    skipped = {name: "not a plain folder name" if not _SAFE_NAME.match(name) else "no config.json"
               for name in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, name))
               and not (_SAFE_NAME.match(name) and os.path.isfile(os.path.join(folder, name, "config.json")))}
    records = [record for record in records if record.name not in skipped]
    if not records:
        raise UsageError(f"{grid} holds no runs (left out: {_listed(skipped)}); give the --out folder of "
                         "`coreaug bench`")
    home = _grid_folder(grid, folder)
    plan = {name for name in planned_runs(home) if _SAFE_NAME.match(name)}
    for record in records:
        record.planned = record.name in plan
    not_started = sorted(plan - {record.name for record in records})
    records = sorted(records + [RunRecord(name, None, [], planned=True, started=False) for name in not_started],
                     key=lambda record: record.name)
    if to is None:
        to = home + SUFFIX  # the absolute path: "." is the grid's own name, not a hidden ".."
    to = os.path.expanduser(path_given(to, "to", "the archive's path"))
    if os.path.isdir(to):
        raise UsageError(f"--to {to} is a folder; give a file name such as {os.path.basename(home)}{SUFFIX}")
    text = "".join(record.as_json() + "\n" for record in records).encode("utf-8")
    data = lzma.compress(text, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9 | lzma.PRESET_EXTREME)
    try:
        atomic_write(to, lambda f: f.write(data), mode="wb")
    except OSError as exc:
        raise UsageError(f"--to {to} cannot be written ({exc.strerror or exc}); choose another file") from None
    started = [record for record in records if record.started]
    return ArchiveResult(to, len(data), len(started), sum(r.finished for r in started), skipped, not_started)


def _listed(why):
    return ", ".join(f"{name!r} ({reason})" for name, reason in why.items())


def run_file_in(folder):
    """The file that makes `folder` a run's (config.json, else summary.json), or None: no grid lives there."""
    return next((name for name in ("config.json", "summary.json") if os.path.isfile(os.path.join(folder, name))),
                None)


def restore_grid(archive, *, out):
    """Write the finished runs of `archive` back as run folders under `out/runs/`, and its plan
    into `out/grid.json`.

    Each run gets config.json, metrics.jsonl and summary.json as `coreaug train` writes them,
    so that `coreaug bench --out OUT` with the grid's flags skips it. A run whose folder already
    holds a finished run is kept as it is; one whose folder holds a summary.json beside files
    that cannot be read is replaced (RestoreResult.replaced; its checkpoint.pt and model.pt,
    which are not the archived run's weights, are removed). Left out, and named in
    RestoreResult.why: unfinished or unreadable runs of the archive, names that are not plain
    folder names, and folders a live coreaug run holds (their lock is held while a run is
    written). Returns a RestoreResult. Raises UsageError, with nothing written, for a file that
    is not an archive, a run name that is a path, runs of other settings than those already in
    `out/runs/` (the grid's settings; runs differ only in strategy, subset and seed, and --weak and
    --precision auto match what they resolve to, as bench takes them), or an `out` that is a run
    folder, a grid's runs/ folder, or inside the folder dataset the runs trained on.
    """
    archive = os.path.expanduser(path_given(archive, "archive", "an archive's path"))
    out = os.path.expanduser(path_given(out, "out", "the grid's folder"))
    if not os.path.isfile(archive):
        raise UsageError(f"--restore {archive} is not a file; give an archive written by `coreaug archive`")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder; choose another --out for the runs")
    records = read_archive(archive)
    from .grid import check_out  # (grid reads archives: imported here, where both are loaded)

    datasets = [record.config.get("dataset") for record in records if isinstance(record.config, dict)]
    check_out(out, datasets[0] if datasets else None, restoring=True)  # (a live run's lock would hold it up)
    if not any(record.started for record in records):
        raise UsageError(f"{archive} holds no runs; give a non-empty archive written by `coreaug archive`")
    for record in records:
        if record.name in ("", ".", "..") or any(c in record.name for c in "/\\\0"):
            raise UsageError(f"{archive} names a run {record.name!r}, which is not a plain folder name but a path; "
                             "it was not written by `coreaug archive`")
    folder = os.path.join(os.fspath(out), "runs")
    present = {r.name: r for r in read_folder(folder)} if os.path.isdir(folder) else {}
    writes, kept, why, replaced = [], [], {}, {}
    for record in records:
        if not record.started:
            continue
        there = present.get(record.name)
        if not _SAFE_NAME.match(record.name):
            why[record.name] = "not a plain folder name"
        elif not record.finished:
            why[record.name] = record.problem or "unfinished"
        elif there is not None and there.finished:
            kept.append(record.name)
        else:
            if there is not None and os.path.exists(os.path.join(folder, record.name, "summary.json")):
                replaced[record.name] = there.problem  # a damaged run: the archive's copy replaces it
            writes.append(record)
    _check_settings(archive, out, writes + [r for r in records if r.name in kept], present)  # kept: of the grid?
    plan = [record.name for record in records if record.planned]
    if plan:
        os.makedirs(out, exist_ok=True)
        record_plan(os.fspath(out), plan)
    written = []
    for record in writes:
        outcome = _restore_run(os.path.join(folder, record.name), record)
        if outcome == "written":
            written.append(record.name)
        elif outcome == "kept":
            kept.append(record.name)
            replaced.pop(record.name, None)
        else:
            why[record.name] = outcome
            replaced.pop(record.name, None)
    why = dict(sorted(why.items()))
    return RestoreResult(folder, written, sorted(kept), list(why), replaced, why)


def _check_settings(archive, out, writes, present):
    """UsageError when a run to restore (or one kept, of the same name: its plan would be merged) has
    other settings than a run already in the grid `out` (the settings other than strategy, subset
    and seed, as `coreaug bench` compares them: --weak and --precision auto as what they resolve to)."""
    from .grid import same_recorded

    grids = {}
    for there in present.values():
        if isinstance(there.config, dict):
            grids.setdefault(json.dumps({k: v for k, v in there.config.items() if k not in PER_RUN},
                                        sort_keys=True), there)
    for record in writes:
        if not isinstance(record.config, dict):
            continue
        for there in grids.values():
            stored = {**there.config, **{k: record.config.get(k) for k in PER_RUN}}
            changed = [(key, was, now) for key, was, now in differences(stored, record.config)
                       if not same_recorded(key, there, record)]
            if changed:
                diff = ", ".join(f"{k}: {was!r} -> {now!r}" for k, was, now in changed)
                raise UsageError(f"{archive} holds run {record.name}, of other settings than {there.name} in "
                                 f"{out} ({diff}: the grid's -> the archive's), so the grid's report would mix "
                                 "the two; restore into another --out")


def _restore_run(folder, record):
    """Write `record` into `folder` holding its lock; "written", "kept" (a finished run arrived
    meanwhile) or why it was left out (a live run holds the folder)."""
    os.makedirs(folder, exist_ok=True)
    lock = RunFolder(folder)
    try:
        lock._take_lock()  # the lock a training run holds (flock): refused at once while one does
    except UsageError:
        return "in use by a live coreaug run"
    try:
        there = read_record(folder, record.name)
        if there.finished:
            return "kept"
        for stale in (CHECKPOINT, MODEL):  # an earlier, interrupted or damaged run's: not this record's weights
            if os.path.exists(os.path.join(folder, stale)):
                os.remove(os.path.join(folder, stale))
        # summary.json last: a run counts as finished only once its other files are in place
        atomic_write(os.path.join(folder, "config.json"), lambda f: json.dump(record.config, f, indent=2))
        atomic_write(os.path.join(folder, "metrics.jsonl"),
                     lambda f: f.writelines(json.dumps(m) + "\n" for m in record.metrics))
        atomic_write(os.path.join(folder, "summary.json"), lambda f: json.dump(record.summary, f, indent=2))
        return "written"
    finally:
        lock.release()


def read_record(folder, name):
    """The RunRecord of run folder `folder` named `name`; its `problem` says which file could
    not be read (or is missing, or holds no rows beside a summary) and why."""
    problems = []

    def read(file, rows=False):
        path = os.path.join(folder, file)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()] if rows else json.load(f)
        except (OSError, ValueError) as exc:
            problems.append(f"{file} unreadable ({first_line(exc)})")
            return None
    config, metrics, summary = read("config.json"), read("metrics.jsonl", rows=True), read("summary.json")
    if config is None and not problems:
        problems.append("no config.json")
    if summary is not None and metrics is None and not problems:
        problems.append("summary.json but no metrics.jsonl")
    elif summary is not None and metrics == [] and not problems:
        problems.append("summary.json but no epoch in metrics.jsonl")
    return RunRecord(name, config, metrics or [], summary, "; ".join(problems) or None)


def _record(data, number):
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"line {number} is not a run record")
    return RunRecord(data["name"], data.get("config"), list(data.get("metrics") or []), data.get("summary"),
                     data.get("problem"), data.get("planned") is True, data.get("started") is not False)
