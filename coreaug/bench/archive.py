"""A grid's runs in one compressed file, and back into run folders.

The archive is xz-compressed JSON Lines, one line per run in name order:
``{"name": ..., "config": {config.json}, "metrics": [metrics.jsonl rows], "summary": {summary.json}}``;
`summary` is null for a run that never finished, and a run whose files could not be read
carries a `problem` string instead of the figures it lacks. Checkpoints and models are not kept.
The same runs give the same bytes (sorted runs, fixed key order, xz has no timestamp), so an
unchanged grid is an unchanged file in git.
"""
import gzip
import json
import lzma
import os
import re
from dataclasses import dataclass

from coreaug.errors import UsageError, first_line
from coreaug.files import atomic_write

SUFFIX = ".runs.jsonl.xz"
PLAN = "grid.json"  # {"runs": [name, ...]}: every run a bench of the grid planned, started or not
FILES = ("config.json", "metrics.jsonl", "summary.json")
_XZ_MAGIC, _GZIP_MAGIC = b"\xfd7zXZ\x00", b"\x1f\x8b"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,=+-]*$")  # a folder name, never a path


@dataclass
class RunRecord:
    """One run of a grid as its files hold it.

    name: the run's folder name. config: config.json (None if missing or unreadable).
    metrics: the metrics.jsonl rows, in epoch order. summary: summary.json, None while the run
    is unfinished (or after a crash). problem: why a file could not be read, else None.
    """

    name: str
    config: dict
    metrics: list
    summary: dict = None
    problem: str = None

    @property
    def finished(self):
        """True when the run wrote its summary and every file was readable."""
        return self.summary is not None and self.config is not None and self.problem is None

    def as_json(self):
        """The run as one archive line (no newline)."""
        record = {"name": self.name, "config": self.config, "metrics": self.metrics, "summary": self.summary}
        if self.problem:
            record["problem"] = self.problem
        return json.dumps(record, separators=(",", ":"))


@dataclass
class ArchiveResult:
    """What `archive_grid` wrote: the file, its size in bytes, the runs and the finished ones."""

    path: str
    size: int
    runs: int
    finished: int


@dataclass
class RestoreResult:
    """What `restore_grid` did: run folders written, kept (already finished there) and left out
    (unfinished or unreadable in the archive), and the grid's runs folder."""

    runs_folder: str
    written: list
    kept: list
    left_out: list


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
    """The RunRecords of every run folder in `folder` (a grid's runs/), in name order."""
    return [read_record(os.path.join(folder, name), name) for name in sorted(os.listdir(folder))
            if os.path.isdir(os.path.join(folder, name))]


def read_archive(path):
    """The RunRecords of an archive written by `archive_grid` (xz, gzip or plain JSON Lines).

    Raises UsageError naming `path` when it is not such a file.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    opener = lzma.open if head.startswith(_XZ_MAGIC) else gzip.open if head.startswith(_GZIP_MAGIC) else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
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
    run folders, or an archive written by `archive_grid`. Raises UsageError when it is none of
    these or holds no runs.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        records = read_archive(path)
    elif os.path.isdir(path):
        folder = runs_folder(path)
        if folder is None and os.path.isfile(os.path.join(path, "config.json")):
            grid = os.path.dirname(os.path.abspath(path))
            grid = os.path.dirname(grid) if os.path.basename(grid) == "runs" else grid
            raise UsageError(f"{path} is a run folder, not a grid; give its grid, {grid} (the folder holding runs/)")
        if folder is None:
            raise UsageError(f"{path} is neither a grid folder (with a runs/ subfolder) nor a grid archive; "
                             "give the --out folder of `coreaug bench` or a file written by `coreaug archive`")
        records = read_folder(folder)
    else:
        raise UsageError(f"{path} does not exist; give a grid folder or a grid archive ({SUFFIX})")
    if not records:
        raise UsageError(f"{path} holds no runs; give a grid folder whose runs/ has run folders, or a non-empty archive")
    return records


def record_plan(grid, names):
    """Add `names` to the runs `grid`'s PLAN file lists (written before any run starts, so that a
    report made while the grid trains can name the runs not started yet)."""
    names = sorted(set(planned_runs(grid)) | set(names))
    atomic_write(os.path.join(grid, PLAN), lambda f: json.dump({"runs": names}, f, indent=1))


def planned_runs(path):
    """The run names `path`'s PLAN file lists ([] for an archive, a grid bench wrote none for,
    or a file that cannot be read)."""
    try:
        with open(os.path.join(path, PLAN)) as f:
            names = json.load(f)["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def archive_grid(grid, *, to=None):
    """Write every run of `grid` into one compressed file and return an ArchiveResult.

    grid: a grid folder (or its runs/ folder). to: the file to write; default
    `<grid>.runs.jsonl.xz` beside the grid folder. Keeps each run's config.json, metrics.jsonl
    rows and summary.json (unfinished runs too, with no summary); leaves checkpoints and
    models out. The bytes depend only on the runs' contents. Raises UsageError when `grid`
    holds no runs, or `to` is not writable.
    """
    grid = os.fspath(grid)
    if not os.path.isdir(grid):
        raise UsageError(f"GRID {grid} is not a folder; give the --out folder of `coreaug bench`")
    records = load_runs(grid)
    if to is None:
        to = os.path.abspath(grid) + SUFFIX  # abspath first: "." is the grid's own name, not a hidden ".."
    to = os.fspath(to)
    if os.path.isdir(to):
        raise UsageError(f"--to {to} is a folder; give a file name such as "
                         f"{os.path.basename(os.path.abspath(grid))}{SUFFIX}")
    text = "".join(record.as_json() + "\n" for record in records).encode("utf-8")
    data = lzma.compress(text, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9 | lzma.PRESET_EXTREME)
    try:
        atomic_write(to, lambda f: f.write(data), mode="wb")
    except OSError as exc:
        raise UsageError(f"--to {to} cannot be written ({exc.strerror or exc}); choose another file") from None
    return ArchiveResult(to, len(data), len(records), sum(r.finished for r in records))


def restore_grid(archive, *, out):
    """Write the finished runs of `archive` back as run folders under `out/runs/`.

    Each run gets config.json, metrics.jsonl and summary.json as `coreaug train` writes them,
    so that `coreaug bench --out OUT` with the grid's flags skips it. A run whose folder already
    holds a summary.json is kept as it is; unfinished or unreadable runs of the archive are left
    out. Returns a RestoreResult. Raises UsageError for a file that is not an archive, or a run
    name that is not a plain folder name.
    """
    if not os.path.isfile(os.fspath(archive)):
        raise UsageError(f"--restore {archive} is not a file; give an archive written by `coreaug archive`")
    records = load_runs(archive)
    folder = os.path.join(os.fspath(out), "runs")
    for record in records:
        if not _SAFE_NAME.match(record.name):
            raise UsageError(f"{archive} names a run {record.name!r}, which is not a plain folder name; "
                             "it was not written by `coreaug archive`")
    written, kept, left_out = [], [], []
    for record in records:
        run = os.path.join(folder, record.name)
        if not record.finished:
            left_out.append(record.name)
        elif os.path.exists(os.path.join(run, "summary.json")):
            kept.append(record.name)
        else:
            _write_run(run, record)
            written.append(record.name)
    return RestoreResult(folder, written, kept, left_out)


def _write_run(folder, record):
    os.makedirs(folder, exist_ok=True)
    # summary.json last: a run counts as finished only once its other files are in place
    atomic_write(os.path.join(folder, "config.json"), lambda f: json.dump(record.config, f, indent=2))
    atomic_write(os.path.join(folder, "metrics.jsonl"),
                 lambda f: f.writelines(json.dumps(m) + "\n" for m in record.metrics))
    atomic_write(os.path.join(folder, "summary.json"), lambda f: json.dump(record.summary, f, indent=2))


def read_record(folder, name):
    """The RunRecord of run folder `folder` named `name`; its `problem` says which file could
    not be read (or is missing) and why."""
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
    return RunRecord(name, config, metrics or [], summary, "; ".join(problems) or None)


def _record(data, number):
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"line {number} is not a run record")
    return RunRecord(data["name"], data.get("config"), list(data.get("metrics") or []), data.get("summary"),
                     data.get("problem"))
