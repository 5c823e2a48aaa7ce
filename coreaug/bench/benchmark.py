"""`run_grid`: train a benchmark grid (in this process or in worker processes, all of it or one
shard) and write results.csv, results.md, accuracy_vs_time.png over its finished runs."""
import contextlib
import dataclasses
import inspect
import json
import os
from dataclasses import dataclass, field

from coreaug.data import is_folder_dataset, load_dataset
from coreaug.data.image_folder import folder_fingerprint
from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError, path_given
from coreaug.files import atomic_write, markdown_of, warn_at_caller
from coreaug.training import TrainConfig
from coreaug.training.distributed import launched_world_size
from coreaug.training.inputs import load_folder
from coreaug.training.run_files import (CHECKPOINT, INPUT_FILES, checkpoint_fingerprint, input_files, read_otherwise,
                                        recorded_fingerprint, recorded_version, same_files)

from .archive import PLAN, plan_lock, planned_runs, read_plan, read_record, record_plan
from .grid import (REFERENCES, GridRun, check_deal, check_out, check_settings, check_target, check_writable,
                   grid_settings, parse_shard, plan_grid, run_grid_runs, shard_runs)
from .plot import plot_accuracy_vs_time
from .tables import add_timings, group_rows, markdown_table, read_runs, write_csv
from .workers import UNGUARDED, check_spawnable, exit_if_bootstrapping, plan_workers, run_in_workers, sigterm_raises


@dataclass
class BenchResult:
    """A grid after a bench: per-run rows and per-group rows of its finished runs, the target,
    the files written, and what this bench did.

    The grid is every run grid.json lists: this bench's and those of earlier commands on the
    same folder (a narrower rerun does not shrink the tables). trained: runs trained (or
    resumed) by this bench. outcomes: a RunOutcome per run this bench handled (its shard), in
    the order they ended. rows, groups: the tables' rows, one per finished run and one per cell
    (strategy and subset); target_rule: how the target was chosen, in words. missing: the names
    of the grid's runs that the tables leave out; why: {name: kind} for those, with the kinds of
    tables.LEFT_OUT (failed here, unreadable, trained by another process, left to other shards,
    planned by an earlier command, not finished). failed:
    {name: error in one line} for the runs that failed here. unreadable: {name: why} for
    finished runs whose files cannot be read (left out, as `coreaug report` leaves them out;
    remove such a run's folder to train it again).
    """

    rows: list = field(repr=False)  # every run's row and history: a notebook showed megabytes
    groups: list = field(repr=False)
    target: float
    target_rule: str
    trained: int
    files: dict
    outcomes: list = field(default_factory=list, repr=False)
    missing: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    unreadable: dict = field(default_factory=dict)
    why: dict = field(default_factory=dict)

    def _repr_markdown_(self):
        """The tables written (`files["md"]`), shown by a notebook for a result that ends a cell."""
        return markdown_of(self.files.get("md"))


def _check_report(report):
    """Refuse a report callback that cannot take what run_grid passes it: found at the first run
    that ends (or the first that fails) it would stop the grid there."""
    if report is None:
        return
    if not callable(report):
        raise UsageError(f"report must be a function called as report(run, status, position, total, error=None), "
                         f"got {type(report).__name__}")
    try:
        signature = inspect.signature(report)
    except (TypeError, ValueError):  # a builtin without a signature: taken as it is
        return
    try:
        signature.bind(None, "trained", 1, 1)
        signature.bind(None, "failed", 1, 1, error="")
    except TypeError as exc:
        raise UsageError(f"report must take (run, status, position, total, error=None): a run that ends is reported "
                         f"with four arguments, a failed one with error=<the error in one line> too ({exc})") from None


@keyword_only  # subsets, strategies, ... by position: warned until 0.3
def run_grid(config, out, *, subsets=(0.1, 0.3, 0.5), strategies=("coreset", "random", "maxloss"),
             references=("none", "full"), seeds=3, target=None, report=None, jobs=None, devices=None, shard=None):
    """Train every run of a grid in `out/runs/<name>` and write the result tables to `out`.

    config: the base coreaug.TrainConfig (or a dict of its settings, as train takes); its settings
        apply to every run (strategy, subset, seed, out and resume are set per run; seeds are
        config.seed, config.seed + 1, ...).
    subsets, strategies, references, seeds: the grid (see grid.plan_grid); a single value for an
        axis is one value.
    target: the accuracy for time-to-target, in (0, 1]; None means 99% of full's final
        accuracy (mean over seeds), or 99% of the grid's best final accuracy without full.
    report: called as report(run, status, position, total, error=None) as each run ends (status:
        "trained", "resumed", "skipped", "elsewhere": another process holds its folder, or
        "failed", then with error=<the error in one line>); position counts the runs
        reported so far, total the runs this bench handles. A report that cannot be called so is
        refused before the first run starts.
    jobs: worker processes (see workers.plan_workers); None means one per device in
        `devices`, else 1. With 1 the runs train here, one after another.
    devices: "cuda:0,cuda:1" (or a list): the devices the workers take round-robin; None
        means every visible GPU when config.device is "cuda" or "auto" and CUDA is available.
    shard: "I/N" or (I, N): train only the I-th of N deterministic parts of the grid (the
        runs sorted by name and dealt round-robin), so that N processes or machines share
        one `out`; a run another process holds is left to it ("elsewhere").
    Finished runs (summary.json present, same config) are skipped; interrupted ones resume
    from their checkpoint. A run that fails with an error of its own (a damaged checkpoint
    included) is reported and the others go on (a UsageError or OSError that does not name the
    run's folder stops the grid, with any number of jobs: it would stop every run). The tables
    cover the finished runs (all shards', and earlier commands' that grid.json lists) whose
    files can be read; BenchResult.missing names the others and results.md says how many
    they are and why. Every check (unknown strategy, empty grid, subsets out of range or
    sharing a run name, bad settings, bad jobs, devices or shard, an `out` that cannot be
    written, is a run folder or lies inside a folder dataset's images, missing data, a launch by
    torchrun) raises UsageError before the first run starts and before grid.json lists the
    runs. config.loss_filter goes to the runs of the loss-filtered coresets only. With jobs >= 2
    the workers are spawned processes that import the calling script again: from a script,
    call run_grid under `if __name__ == "__main__":` (without it, a UsageError says so).
    KeyboardInterrupt stops the workers and propagates; so does SIGTERM while the runs
    train, here or in workers, or while the tables are written (raised as workers.Terminated, a
    KeyboardInterrupt, where SIGTERM has no handler of the caller's; one raised while the tables
    are written has `writing_tables` True), and the workers stop by themselves if this process is
    killed outright. A command whose settings (or, with shard, whose runs) differ from those
    grid.json records for `out` is refused before anything trains, even one started together.
    Returns a BenchResult.
    """
    exit_if_bootstrapping()  # a worker importing a script without the __main__ guard: its parent says so
    if launched_world_size() > 1:
        raise UsageError("coreaug bench runs its grid in one process and cannot be launched by torchrun "
                         f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); run it without torchrun, or launch "
                         "each run as its own `torchrun ... coreaug train --out DIR` into the grid's runs/ folder, "
                         "every run in the same number of processes (the tables compare their seconds)")
    if not isinstance(config, TrainConfig) and hasattr(config, "keys"):  # a dict of its settings, as train takes
        from coreaug.training.trainer import _settings

        config = TrainConfig(**_settings(config))  # a misspelt setting named, as train names it
    elif not isinstance(config, TrainConfig):
        raise UsageError(f"config must be a coreaug.TrainConfig or a dict of its settings, got {type(config).__name__}")
    target = check_target(target)
    _check_report(report)
    if shard is not None:
        shard = parse_shard(shard)
    out = path_given(out, "out", "the grid's folder (--out)")  # ("" would be the working folder)
    workers = plan_workers(config.device, jobs=jobs, devices=devices)
    out = os.path.abspath(os.path.expanduser(out))  # ~/grids as the shell would expand it
    runs = plan_grid(config, out, subsets, strategies, references, seeds)
    mine = shard_runs(runs, shard) if shard else runs
    if len(workers) > 1:
        check_spawnable(run.config for run in mine)
    check_out(out, runs[0].config.dataset)
    check_writable(out)
    todo = [run for run in mine if run.state() != "finished"]
    if todo:
        check_inputs(out, runs, todo[0].config)
    # missing data stops the grid here, before grid.json plans runs that cannot train
    if todo and is_folder_dataset(todo[0].config.dataset) and not todo[0].config.skip_bad_images:
        # files changed since the grid's runs trained: refused before a new cache is decoded (minutes), from their
        # listing (the hash the decoding records too where no bad image is skipped)
        check_data(read_plan(out), folder_fingerprint(todo[0].config.dataset, todo[0].config.val_fraction), runs, out)
    fingerprint = _load_data(todo[0].config) if todo else None
    before = _grid_files(out)
    record_grid(out, runs, config, shard, fingerprint)
    written = _grid_files(out)
    if todo:
        _warn_other_versions(runs + _earlier_runs(out, runs))

    def report_with_total(outcome, position):
        if report:
            error = {"error": outcome.error} if outcome.status == "failed" else {}
            report(outcome.run, outcome.status, position, len(mine), **error)
    if len(workers) == 1:
        if devices is not None:  # one job on a chosen device: here, with that device
            mine = [dataclasses.replace(r, config=dataclasses.replace(r.config, device=workers[0].device)) for r in mine]
        with sigterm_raises():  # SIGTERM unwinds the run here as with workers (`coreaug bench` exits 143)
            outcomes = run_grid_runs(mine, report_with_total)
    else:
        try:
            outcomes = run_in_workers(mine, workers, report_with_total)
        except UsageError as error:
            if str(error) == UNGUARDED:  # found only once the workers import the script: no run started
                _forget_plan(out, before, written)
            raise
    trained = sum(o.status in ("trained", "resumed") for o in outcomes)
    grid = runs + _earlier_runs(out, runs)
    grid.sort(key=lambda run: run.subset is not None)  # references first, as plan_grid lists them
    finished = [run for run in grid if run.state() == "finished"]
    done, ours, kinds = {run.name for run in finished}, {run.name for run in mine}, {}
    for outcome in outcomes:
        kinds[outcome.run.name] = {"failed": "failed", "elsewhere": "elsewhere"}.get(outcome.status)
    planned = {run.name for run in runs}
    unfinished = {run.name: kinds.get(run.name) or ("unfinished" if run.name in ours else
                                                    "shard" if run.name in planned else "earlier")
                  for run in grid if run.name not in done}
    with sigterm_raises():  # a stop while the tables are written: said as such (`coreaug bench` exits 143)
        try:
            result = write_results(finished, out, target, trained, unfinished=unfinished)
        except KeyboardInterrupt as stop:
            stop.writing_tables = True  # every run had ended: only the tables are left to write
            raise
    result.outcomes = outcomes
    result.failed = {o.run.name: o.error for o in outcomes if o.status == "failed"}
    return result


def record_grid(out, runs, config, shard=None, data=None):
    """List the `runs` (planned by plan_grid from the base TrainConfig `config`) in `out`'s grid.json
    with the grid's settings and, for a shard (I, N), the runs the shards deal. UsageError, with
    nothing written, when grid.json records other settings (another command of the grid, maybe
    started at the same moment: the file is read and written under a lock) or, for a shard, when
    the unfinished shards of the grid deal other runs (`grid.check_settings`, `grid.check_deal`),
    or when `data`, the hash of the folder dataset's files now, is not the one grid.json records
    (`check_data`)."""
    names, shard = [run.name for run in runs], parse_shard(shard) if shard else None

    def check(plan):
        check_settings(plan.get("settings"), runs, out)
        if shard:
            check_deal(plan.get("shards"), runs, shard, out)
        if data is not None:
            check_data(plan, data, runs, out)
    record_plan(out, names, settings=grid_settings(config, runs), check=check,
                shards={"count": shard[1], "runs": sorted(names)} if shard else None, data=data)


def check_data(plan, data, runs, out):
    """UsageError where the folder dataset's files hash to `data` now and the grid's runs (grid.json's, and
    this command's `runs`) trained on files of another hash (files added, removed or modified): the cells
    would pool runs on two sets of images. The hash is grid.json's, else (a grid restored from an
    archive, which keeps the runs' files alone) a finished run's summary.json's, else (a grid of
    coreaug 0.2, which recorded it in checkpoint.pt alone) a run's checkpoint's; a grid with no run
    finished or interrupted
    has nothing to keep apart, and its plan records the hash of now (`plan`'s "data" is dropped for record_plan to
    write again). The folder reached through a link at the path the grid recorded (moved,
    `run_files.dataset_note`) is the same data."""
    names = list(dict.fromkeys([name for name in plan.get("runs") or [] if isinstance(name, str)]
                               + [run.name for run in runs]))  # (coreaug 0.2 wrote no grid.json)
    config = runs[0].config
    summaries = [os.path.join(out, "runs", name, "summary.json") for name in names]
    trained = summaries + [os.path.join(out, "runs", name, CHECKPOINT) for name in names]  # finished or interrupted
    if not any(os.path.exists(path) for path in trained):
        plan.pop("data", None)
        return
    stored = plan.get("data")
    for path in summaries if not isinstance(stored, str) else []:
        stored = _data_fingerprint(path)
        if stored is not None:
            break
    older = stored is None  # coreaug 0.2's grid: its runs' checkpoints hold the hash
    for name in names if older else []:
        stored = checkpoint_fingerprint(os.path.join(out, "runs", name))
        if stored is not None:
            break
    if stored is None:
        warn_at_caller(f"the grid's runs in {out} record no hash of the images they trained on (coreaug 0.2 kept it "
                       f"in checkpoint.pt, which an archive leaves out): if the files in {config.dataset} changed "
                       "since, its cells will pool runs on two sets of images")
    if stored is None or stored == data:
        return
    recorded = (plan.get("settings") or {}).get("dataset")
    if same_files(stored, config.dataset, config.val_fraction, [recorded]):
        return
    other = read_otherwise(os.path.realpath(os.path.expanduser(str(config.dataset))), config.val_fraction) \
        if older else ""
    if other:
        raise UsageError(f"the grid's runs were trained by coreaug 0.2, which read {config.dataset} otherwise: this "
                         f"version also reads {other}, and its cells would pool runs on two sets of images; move "
                         "those out of the folder while the grid trains, or give this grid another --out")
    raise UsageError(f"the images in {config.dataset} changed (files added, removed or modified, or copied without "
                     "their modification times) since the grid's runs trained on them, and its cells would pool "
                     "runs on two sets of images; restore them, or give this grid another --out")


def check_inputs(out, runs, config):
    """UsageError where a file the grid's runs started from (`--pretrained` weights, a module:function
    model's module: `run_files.input_files`) hashes otherwise than a finished run's summary.json records:
    the weights at the same path, the module wherever it is imported from now (another folder's copy
    under the same module name). The cells would pool runs from two. Nothing is hashed for a grid
    without such a run."""
    for run in runs:
        summary = _summary_at(os.path.join(out, "runs", run.name, "summary.json"))
        recorded = summary.get("inputs") if isinstance(summary, dict) else None
        if isinstance(recorded, dict) and recorded:
            break
    else:
        return
    now = input_files(config)
    for key, was in recorded.items():
        if not isinstance(was, dict) or key not in now:
            continue
        same_file = key == "model" or now[key]["path"] == was.get("path")  # (a module: wherever it is imported from)
        if same_file and now[key]["sha256"] != was.get("sha256"):
            raise UsageError(f"{INPUT_FILES.get(key, key)} {now[key]['path']} is not the file the grid's runs "
                             f"started from (run {run.name} records another sha256: changed since, or another copy), "
                             "and its cells would pool runs from the two; restore it, or give this grid another --out")


def _warn_other_versions(runs):
    """Warn where the grid's finished `runs` include some another coreaug version trained: this
    command's runs will be pooled with them (results.md and report say so too)."""
    from coreaug import __version__

    summaries = [_summary_at(os.path.join(run.folder, "summary.json")) for run in runs]
    versions = [recorded_version(summary) for summary in summaries if summary is not None]
    others = sorted(set(versions) - {__version__})
    if others:
        n = sum(version != __version__ for version in versions)
        were = "were" if n != 1 else "was"
        warn_at_caller(f"{n} finished run{'s' * (n != 1)} of this grid {were} trained by coreaug "
                      f"{' and '.join(others)}, and this is {__version__}, which may draw augmentations and compute "
                      "settings otherwise (see the changelog): the tables will pool the versions' runs; give this grid "
                      "another --out to compare them")


def _data_fingerprint(path):
    """The hash of a folder dataset's files that the summary.json at `path` records, else None."""
    return recorded_fingerprint(_summary_at(path))


def _summary_at(path):
    """The run summary.json at `path` as read (any JSON value), None where it cannot be read: check_inputs,
    check_data and the version warning each read the grid's summaries."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _grid_files(out):
    """grid.json's bytes in `out` before this command planned its runs (None for none)."""
    try:
        with open(os.path.join(out, PLAN), "rb") as f:
            return f.read()
    except OSError:
        return None


def _forget_plan(out, plan, written):
    """Put grid.json back as `_grid_files` found it (`plan`) while it still holds what this
    command `written` (under the lock record_plan takes; another command of the grid may have
    planned since, and its plan is kept): a plan of this command, for runs that never started
    (the calling script lacks the `__main__` guard), would refuse the corrected script's other
    settings as a grid "which may be training now"."""
    with plan_lock(out):
        if _grid_files(out) != written:
            return
        if plan is None:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(out, PLAN))
        else:
            atomic_write(os.path.join(out, PLAN), lambda f: f.write(plan), mode="wb", through_links=False)


def _load_data(config):
    """Load the grid's data once here (its runs share the data settings): missing data is one
    error before anything is planned. A folder dataset is decoded into its cache here, with its
    own worker processes: bench's workers may start none (they are daemons), and would each
    decode it. Returns the hash of a folder dataset's files (None for a registered dataset)."""
    if is_folder_dataset(config.dataset):
        return load_folder(config, progress=not config.quiet).fingerprint
    load_dataset(config.dataset, config.data_dir, download=config.download, progress=not config.quiet)
    return None


@dataclass
class _ListedRun:
    """A run that grid.json lists from an earlier command on the same folder but this command's
    flags do not plan: named by its folder's config.json (strategy, subset and seed are None
    where it cannot be read: such a run is unfinished, or unreadable once finished)."""

    name: str
    strategy: str
    subset: float
    seed: int
    folder: str

    state = GridRun.state


def _earlier_runs(out, runs):
    """The runs grid.json lists that `runs` (this command's) lack, in name order."""
    ours = {run.name for run in runs}
    listed = []
    for name in planned_runs(out):
        if name in ours:
            continue
        folder = os.path.join(out, "runs", name)
        config = read_record(folder, name).config if os.path.isdir(folder) else None
        try:
            strategy = config["strategy"]
            subset = None if strategy in REFERENCES else float(config["subset"])
            listed.append(_ListedRun(name, strategy, subset, int(config["seed"]), folder))
        except (KeyError, TypeError, ValueError):  # not started, or its config.json is damaged
            listed.append(_ListedRun(name, None, None, None, folder))
    return listed


def write_results(runs, out, target=None, trained=0, *, unfinished=()):
    """Read the finished `runs` and write results.csv, results.md and (with matplotlib) the plot.

    unfinished: the grid's other runs, as {name: why} (a key of tables.LEFT_OUT) or a list of
    names; results.md says how many of the grid's runs the tables leave out and why (these and
    the finished runs whose files cannot be read).
    Each file is replaced whole (written beside it, then renamed), so shards finishing at the
    same time into one `out` never leave a mixed file. Returns a BenchResult; without a
    readable run, no file is written.
    """
    rows, unreadable = read_runs(runs)
    why = dict(unfinished) if isinstance(unfinished, dict) else dict.fromkeys(unfinished)
    why.update(dict.fromkeys(unreadable, "unreadable"))
    missing = list(why)
    if not rows:
        return BenchResult([], [], float("nan"), "", trained, {}, missing=missing, unreadable=unreadable, why=why)
    target, rule = add_timings(rows, target)
    groups = group_rows(rows)
    files = {"csv": os.path.join(out, "results.csv"), "md": os.path.join(out, "results.md")}
    write_csv(rows, files["csv"])
    text = markdown_table(groups, target, rule, runs=len(rows) + len(missing), missing=why,
                          versions=[row["coreaug"] for row in rows], intervals=[row["eval_every"] for row in rows],
                          compiled=[row["compiled"] for row in rows], threads=[row["threads"] for row in rows])
    atomic_write(files["md"], lambda f: f.write(text), through_links=False)  # a grid's own file, as a run's
    png = os.path.join(out, "accuracy_vs_time.png")
    if plot_accuracy_vs_time(rows, target, png):  # written beside it and renamed, as the tables are
        files["png"] = png
    return BenchResult(rows, groups, target, rule, trained, files, missing=missing, unreadable=unreadable, why=why)
