"""The runs of a benchmark grid: one `coreaug.train` run per (strategy, subset, seed), each in
its own folder, with finished runs skipped, interrupted ones resumed, and runs that another
process holds (another shard or bench on the same folder) left to it; a grid's shards."""
import dataclasses
import json
import math
import numbers
import os
import re
import tempfile
import traceback
from dataclasses import dataclass

import numpy as np

from coreaug.data import is_folder_dataset
from coreaug.data.registry import names_registered_dataset
from coreaug.data.image_folder import lies_among
from coreaug.errors import TrainingDiverged, UsageError, one_line, out_of_memory
from coreaug.files import DISK_ERRORS, make_folder
from coreaug.progress import say
from coreaug.selection.rules import LOSS_FILTERED, RULES, check_loss_filter
from coreaug.training import TrainConfig, train
from coreaug.training.compiled_step import check_compilable
from coreaug.training.config import REFERENCE_STRATEGIES as REFERENCES
from coreaug.training.config import WEAK, weak_is_resized_crop
from coreaug.training.distributed import pick_device
from coreaug.training.precision import resolve_precision
from coreaug.training.run_files import DEFAULT_IDENTITY, damaged_results, dataset_note, differences, folder_in_use

from .archive import PER_RUN, PLAN, read_record, run_file_in

# The statuses a run ends a bench with: trained now, resumed from its checkpoint and finished,
# finished before (skipped), held by another process (left to it), or failed with an error.
STATUSES = ("trained", "resumed", "skipped", "elsewhere", "failed")
# Errors that would stop every run the same way (a bad setting, missing data): one process
# running the grid stops at the first and the CLI shows it as a user's mistake. One that names
# the run's own folder (a damaged checkpoint or config.json, a folder that is a file) fails that
# run alone (`names_run`).
STOPPING = (UsageError, OSError)
ERROR_FILE = "error.txt"  # a crashed run's traceback, in its folder until it trains to its end
IN_USE = "is in use by another coreaug run"  # RunFolder's refusal of a folder another process holds
MAX_SEEDS = 10_000  # runs per cell: past this a typo, whose plan alone would fill the memory before a word


@dataclass
class GridRun:
    """One run of the grid.

    name: the folder name, `<strategy>-<subset>-seed<k>` or `<reference>-seed<k>`.
    subset: the selection's fraction, None for the references `full` and `none`.
    config: the resolved TrainConfig the run trains with (its `out` is `folder`).
    """

    name: str
    strategy: str
    subset: float
    seed: int
    config: TrainConfig

    @property
    def folder(self):
        return self.config.out

    def state(self):
        """"finished" (summary.json written), "interrupted" (a checkpoint, and no summary.json, or a
        summary.json or metrics.jsonl that cannot be read: resuming writes them again from the
        checkpoint, training nothing more) or "new"."""
        checkpoint = os.path.exists(os.path.join(self.folder, "checkpoint.pt"))
        if not os.path.exists(os.path.join(self.folder, "summary.json")):
            return "interrupted" if checkpoint else "new"
        return "interrupted" if checkpoint and damaged_results(self.folder) else "finished"


def plan_grid(config, out, subsets, strategies, references, seeds):
    """The runs of a grid, validated before anything is trained.

    Takes the base TrainConfig (every field applies to every run; `strategy`, `subset`,
    `seed`, `out` and `resume` are set per run), the grid's folder `out`, the selection
    `subsets` (fractions in (0, 1]), the selecting `strategies` (coreset, random, maxloss),
    the `references` (full, none) and the number of `seeds` (config.seed, config.seed + 1, ...).
    Returns a list of GridRun, references first. Raises UsageError for an unknown strategy,
    an empty grid, a subset out of range, two subsets that would share a run name, a bad
    config (a strategy that `compile` refuses included), or a run folder that holds a run with
    another config. A folder dataset is named by
    its absolute path, so `./pets`, `pets` and `/abs/pets` are one grid.
    """
    strategies, references = _unique(_axis(strategies, "strategies")), _unique(_axis(references, "references"))
    subsets = _unique(_check_subset(s) for s in _axis(subsets, "subsets"))
    _check_subset_names(subsets)
    for name in strategies:
        if name in REFERENCES:
            raise UsageError(f"{name!r} is a reference, not a selecting strategy; pass it with --references {name}")
        if name not in RULES:
            raise UsageError(f"unknown strategy {name!r}; choose from: {', '.join(RULES)}")
    for name in references:
        if name not in REFERENCES:
            raise UsageError(f"unknown reference {name!r}; choose from: {', '.join(REFERENCES)}")
    _check_loss_filter(config.loss_filter, strategies)
    if strategies and not subsets:
        raise UsageError(f"--subsets is empty but strategies {', '.join(strategies)} need selection "
                         "fractions; give e.g. --subsets 0.1,0.3")
    if isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral) or not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"seeds must be an integer in [1, {MAX_SEEDS}] (runs per cell), got {seeds!r}")
    cells = [(r, None) for r in references] + [(s, f) for s in strategies for f in subsets]
    if not cells:
        raise UsageError("the grid is empty: give at least one of --strategies (with --subsets) or --references")

    if config.overwrite:  # each run would be refused for resume=True and overwrite together, naming resume
        raise UsageError("overwrite does not apply to a grid: its runs are resumed, and finished ones kept; remove "
                         "a run's folder (or give another out) to train it again")
    runs = []
    for strategy, subset in cells:
        for k in range(seeds):
            seed = config.seed + k
            name = f"{strategy}-seed{seed}" if subset is None else f"{strategy}-{_subset_name(subset)}-seed{seed}"
            # References train everyone (full) or no one (none) strongly; subset is unused there,
            # so it is pinned to 1 to keep their config (and folder identity) one per seed.
            # loss_filter goes to the rules that read it only, as --knn is unread by random.
            run_config = dataclasses.replace(config, strategy=strategy, subset=1.0 if subset is None else subset,
                                             seed=seed, out=os.path.join(out, "runs", name), resume=True,
                                             loss_filter=config.loss_filter if strategy in LOSS_FILTERED else None)
            run_config = run_config.resolved()
            check_compilable(run_config)  # train() checks it too, but only when that run's turn comes
            runs.append(GridRun(name, strategy, subset, seed, run_config))
    return [_match_folder(run) for run in runs]


def _check_loss_filter(loss_filter, strategies):
    """UsageError for a loss_filter that none of the grid's `strategies` reads, or of a bad value
    (the grid's other runs, references included, train without it)."""
    if loss_filter is None:
        return
    readers = [name for name in strategies if name in LOSS_FILTERED]
    if not readers:
        raise UsageError(f"loss_filter applies to strategies {', '.join(map(repr, LOSS_FILTERED))} only, and "
                         f"this grid's strategies ({', '.join(strategies) or 'none'}) do not read it; add one of "
                         "them to --strategies, or leave --loss-filter out")
    check_loss_filter(readers[0], loss_filter)


def check_out(out, dataset, restoring=False):
    """UsageError, before anything is written, for an --out where a grid cannot live: a run
    folder (the grid's runs would nest inside another run), the runs/ folder of a grid, or a folder
    inside the folder dataset `dataset` (resolved), whose files would be read as part of it: runs/
    as a class, the plot's PNG in the sampling of the images' size (a hidden folder, `PATH/.grids`,
    is fine). A bench (not `restoring`, as archive --restore does, which writes runs and no tables)
    also refuses a folder of results tables without a grid, which its tables would replace."""
    writes = "the runs" if restoring else "the grid"
    held = run_file_in(out)
    if held:
        raise UsageError(f"--out {out} is a run folder (it holds {held}), not a grid's; choose another --out "
                         f"for {writes} (the run could not be resumed, nor the grid continued, with both in one "
                         "folder)")
    real = os.path.realpath(out)  # (a link to a grid's runs/ too)
    above = os.path.dirname(real)
    if os.path.basename(real) == "runs" and any(os.path.isfile(os.path.join(above, name))
                                                for name in (PLAN, "results.md")):  # (0.2's grids have no PLAN)
        raise UsageError(f"--out {out} is the runs/ folder of the grid {above}, where a grid would nest in it; "
                         f"give --out {above} to go on with that grid")
    tables = [name for name in ("results.md", "results.csv") if os.path.isfile(os.path.join(out, name))]
    if tables and not restoring and not os.path.isfile(os.path.join(out, PLAN)) \
            and not os.path.isdir(os.path.join(out, "runs")):
        raise UsageError(f"--out {out} holds {' and '.join(tables)} but no grid (no {PLAN}, no runs/): the grid's "
                         "tables would replace them; choose another --out for the grid")
    named, files = ("the folder dataset the runs trained on", "the runs'") if restoring else \
        ("the folder of --dataset", "the grid's")
    check_outside_dataset(out, dataset, named, files)


def check_outside_dataset(out, dataset, named, files):
    """UsageError where `out` is the folder dataset `dataset` (`named` so) or inside it: `files`'
    files would be read as part of it (a folder as a class, a plot's PNG in the sampling of the
    images' size); nothing for a registered dataset or a folder that is not here."""
    if not isinstance(dataset, str) or not is_folder_dataset(dataset) or not os.path.isdir(dataset):
        return
    if lies_among(dataset, out):  # the whole folder: the plot's PNG in its root is sampled too
        where = "" if os.path.realpath(out) == os.path.realpath(dataset) else "inside "
        raise UsageError(f"--out {out} is {where}{named}, {dataset}, where {files} files would be read as part of "
                         "the dataset (a folder of them as a class); choose an --out outside it")


def check_writable(out):
    """Create `out/runs` and prove a file can be written there; UsageError naming the folder if not."""
    try:
        make_folder(out)  # a link to a folder that is gone (purged scratch): the folder it points to
        os.makedirs(os.path.join(out, "runs"), exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"--out {out} is not a writable folder ({reason}); choose another --out") from None


@dataclass
class RunOutcome:
    """What a bench did with one run: its `status` (one of STATUSES) and, for a failed run, the
    error in one line (`error`)."""

    run: GridRun
    status: str
    error: str = None


def train_grid_run(run):
    """Train `run` unless it is finished or another process holds its folder; return its status.

    "skipped": summary.json is there. "elsewhere": another coreaug process (another shard, or
    another bench on the same folder) holds the folder's lock, so it is left to that process.
    Otherwise trains it (resuming from its checkpoint when there is one) and returns "resumed"
    or "trained". Errors of the training itself propagate, and a config.json that cannot be
    read beside a checkpoint is a UsageError naming the folder.
    """
    if run.state() == "finished":
        return "skipped"
    if folder_in_use(run.folder):
        return "elsewhere"
    state = run.state()  # again: it may have finished while the lock was looked at
    if state == "finished":
        return "skipped"
    _, problem = _stored_config(run)
    if problem and state == "interrupted":  # as RunFolder.check refuses it; without results it starts afresh
        raise UsageError(f"{run.folder} holds a {problem}, so its run cannot be resumed; remove that folder "
                         "to train the run again")
    warm_selection(run)
    _remove_error_file(run)  # an earlier try's crash: this try writes its own, if any
    try:
        train(run.config)  # resume=True: continues from checkpoint.pt when there is one
    except UsageError as exc:
        if IN_USE in str(exc):  # taken by another process between the look and the start
            return "elsewhere"
        raise
    finally:
        forget_compiled(run.config)
    return "resumed" if state == "interrupted" else "trained"


def _remove_error_file(run):
    try:
        os.remove(os.path.join(run.folder, ERROR_FILE))
    except FileNotFoundError:
        pass


def warm_selection(run):
    """Load the coreset's compiled greedy kernel (numba, ~0.5 s the first time in a process) before
    a `run` whose rule selects by gradient estimates starts its clock: else the first such run of
    each process (each worker) pays it in its selection seconds, and one seed of a cell is slower."""
    if "estimates" not in getattr(RULES.get(run.strategy), "needs", ()):
        return
    from coreaug.selection.coreset import load_selection_libraries

    load_selection_libraries()


def forget_compiled(config):
    """After a compiled run, forget its graphs and CUDA graph trees (`torch._dynamo.reset`), as the
    next run's own process would start: a run that failed inside a tree left it mid-warm-up, and
    every compiled run after it in the process failed on it (experiments/results/gpu.md,
    2026-12-04, in the trainer benchmark). Each run compiles its own step anyway; inductor's
    kernels stay cached on disk."""
    if config.compile:
        import torch

        torch._dynamo.reset()


def names_run(error, run):
    """Whether `error` is about `run`'s own files: its message or file name is the run's folder
    or a path inside it (not a sibling whose name starts the same, seed1 against seed10)."""
    texts = [str(error), os.fspath(getattr(error, "filename", None) or "")]
    pattern = re.escape(run.folder) + r"(?=$|[/\s'\",;:)])"
    return any(re.search(pattern, text) for text in texts)


def check_target(target):
    """`target` (an accuracy in (0, 1], a numpy number too) as a float, or None; UsageError for anything else
    (True included): run_grid's and write_report's one rule."""
    if target is None:
        return None
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, numbers.Real) or not 0 < target <= 1:
        raise UsageError(f"target must be an accuracy in (0, 1], got {target!r}")
    return float(target)


def fails_run_alone(error, run):
    """Whether `error` (one of STOPPING) fails `run` alone, the grid going on: it names the run's
    own files (`names_run`) and is no full, over-quota or read-only disk, which every run after it
    would meet too, each after training up to its first checkpoint."""
    return names_run(error, run) and not (isinstance(error, OSError) and error.errno in DISK_ERRORS)


def refusal_line(error):
    """A run's own refusal (`fails_run_alone`: a damaged checkpoint, another model) as bench says it:
    the first line of its message, without the class name of a UsageError, and in place of advice
    on `coreaug train`'s --overwrite (which bench lacks; another --out would be another grid),
    bench's: remove the run's folder to train it from the start."""
    text = (str(error).strip().splitlines() or [""])[0]
    if not isinstance(error, (UsageError, TrainingDiverged)):
        return one_line(error)
    cut = text.rfind("; ", 0, text.find("--overwrite")) if "--overwrite" in text else -1
    if isinstance(error, TrainingDiverged):  # the same command would resume it, and diverge again
        return one_line(error) if cut < 0 else \
            f"{type(error).__name__}: {text[:cut]}; lower --lr, in a grid of its own (another --out)"
    if cut < 0:
        return text or type(error).__name__
    return text[:cut] + "; remove the run's folder (its results with it) to train it again from the start"


def crash_line(error, run):
    """`refusal_line` of an unexpected `error` (a bug in the training, torch or a model's code), its
    traceback written to the run's folder (error.txt), where a nightly grid's log keeps no more than
    the line: named after it."""
    path = os.path.join(run.folder, ERROR_FILE)
    advice = ""
    if out_of_memory(error):
        advice = ("; out of memory: a smaller --batch-size, --stream always for an image folder, or fewer --jobs "
                  "(the runs of a process share its memory)")
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    except OSError:  # (no folder: it failed before making it; a full disk)
        return refusal_line(error) + advice
    return f"{refusal_line(error)}{advice} (traceback in {path})"


def run_grid_runs(runs, report=None):
    """Train the `runs` one after another in this process (see `train_grid_run`).

    `report(outcome, position)` is called after each run with its RunOutcome. A run that
    fails with an error of the training, or with a refusal that names its own folder (a
    damaged checkpoint, a folder taken by a file), is reported "failed" and the next run goes
    on; any other UsageError or OSError (a bad setting, missing data: every run would fail the
    same way) stops the grid. Returns the list of RunOutcome, in the runs' order.
    """
    outcomes = []
    for position, run in enumerate(runs, 1):
        state = run.state()
        if not run.config.quiet and state != "finished":  # its epoch lines follow: named first
            doing = "resuming" if state == "interrupted" else "training"
            say(f"[{position}/{len(runs)}] {run.name}: {doing} in {run.folder}")
        try:
            outcome = RunOutcome(run, train_grid_run(run))
        except STOPPING as exc:
            if not fails_run_alone(exc, run):
                raise
            outcome = RunOutcome(run, "failed", refusal_line(exc))
        except Exception as exc:  # noqa: BLE001 - one run's crash must not stop the others
            outcome = RunOutcome(run, "failed", crash_line(exc, run))
        outcomes.append(outcome)
        if report:
            report(outcome, position)
    return outcomes


def parse_shard(shard):
    """`shard` as (index, count): "I/N" text or an (I, N) pair with N >= 1 and I in 1..N.

    Raises UsageError naming --shard for anything else.
    """
    if isinstance(shard, (tuple, list)):
        text = "/".join(map(str, shard))
    else:
        text = shard if isinstance(shard, str) else repr(shard)
    index, slash, count = text.strip().partition("/")
    if slash and index.strip().isdigit() and count.strip().isdigit():
        index, count = int(index), int(count)
        if count >= 1 and 1 <= index <= count:
            return index, count
    raise UsageError(f"--shard must be I/N with N >= 1 and I in 1..N (e.g. --shard 2/4: the second of four "
                     f"shards), got {text!r}")


def shard_runs(runs, shard):
    """The runs of shard `shard` ("I/N" or (I, N)): the grid's runs sorted by name and dealt
    round-robin, the first to shard 1, the second to shard 2, ... So every run lands in exactly
    one shard, and which one depends on the run names alone, not on the order of the flags.
    Returns them in the order of `runs`.
    """
    index, count = parse_shard(shard)
    names = sorted(run.name for run in runs)
    mine = {name for k, name in enumerate(names) if k % count == index - 1}
    return [run for run in runs if run.name in mine]


def grid_settings(config, runs):
    """The settings every run of the grid `runs` (planned from the base TrainConfig `config`) shares,
    as grid.json records them: a run's identity, as config.json stores it, less the settings the
    grid's runs differ in (archive.PER_RUN), with the grid's own loss_filter."""
    settings = json.loads(json.dumps(runs[0].config.identity()))  # tuples -> lists, as config.json holds them
    settings["loss_filter"] = config.loss_filter
    return {key: value for key, value in settings.items() if key not in PER_RUN}


def check_settings(recorded, runs, out):
    """UsageError naming `setting: the grid's -> this command's` where the `runs` of this command
    differ from the settings grid.json records for the grid `out` (`recorded`; None for a grid.json
    of an older coreaug, which recorded none): another command of the grid, maybe training right
    now, made it with those. Settings a run does not read, and values that mean the same for it
    (as for a run folder's config.json), are no difference."""
    if not isinstance(recorded, dict):
        return
    changed = {}
    for run in runs:
        now = run.config.identity()
        stored = {**recorded, **{key: now.get(key) for key in PER_RUN}}
        if run.strategy not in LOSS_FILTERED:  # the grid's loss_filter goes to those runs alone
            stored["loss_filter"] = now.get("loss_filter")
        for key, was, value in differences(stored, now):
            was = stored.get(key, DEFAULT_IDENTITY.get(key))
            if key not in changed and not _same_here(key, was, value, run.config):
                changed[key] = (was, value)
    if changed:
        diff = ", ".join(f"{key}: {was!r} -> {now!r}" for key, (was, now) in changed.items())
        raise UsageError(f"--out {out} is the grid of a bench command with other settings ({diff}: the grid's -> "
                         "this command's), which may be training now; use the same flags as it, or another --out")


def check_deal(recorded, runs, shard, out):
    """UsageError when the --shard commands of the grid `out` deal other runs than this one (`runs`,
    dealt over `shard`'s N): `recorded` is the deal grid.json records ({"count": N, "runs": [...]},
    None for none) and some of its runs are unfinished. Shards dealing two lists would each leave a
    run to a shard that never trains it. Once every run of the recorded deal has finished, a new
    deal may start (a grid grown by more --seeds, say)."""
    names = sorted(run.name for run in runs)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("runs"), list):
        return
    theirs = [name for name in recorded["runs"] if isinstance(name, str)]
    if theirs == names and recorded.get("count") == shard[1]:
        return
    unfinished = [name for name in theirs if not os.path.exists(os.path.join(out, "runs", name, "summary.json"))]
    if not unfinished:
        return
    only = sorted(set(names) - set(theirs)) or sorted(set(theirs) - set(names))
    what = f"runs ({'this command alone plans' if set(names) - set(theirs) else 'they alone plan'} "
    what = (what + ", ".join(only) + ")") if only else f"shards ({recorded.get('count')!r} -> {shard[1]})"
    raise UsageError(f"--out {out} is shared by --shard commands that deal other {what}, and {len(unfinished)} of "
                     f"their runs are not finished; give every --shard command of the grid the same --subsets, "
                     "--strategies, --references, --seeds and N (--shard I/N), or run this one when theirs are done")


def _match_folder(run):
    """`run`, checked against what its folder's config.json holds.

    A stored folder dataset spelled otherwise (`hard` where the grid now says `/abs/hard`) that
    names the same folder from here is the same setting (`same_settings`). UsageError listing
    `setting: stored -> now` for a run of other settings; a config.json that cannot be read is
    left to `train_grid_run` (that run fails alone).
    """
    stored, _ = _stored_config(run)
    if stored is None:
        return run
    changed = differences(stored, run.config.identity(), run.folder) + _compiled_otherwise(run)
    same = {key: stored.get(key, DEFAULT_IDENTITY.get(key)) for key, was, now in changed
            if _same_here(key, stored.get(key, DEFAULT_IDENTITY.get(key)), now, run.config)}
    changed = [change for change in changed if change[0] not in same]
    if changed:
        diff = ", ".join(f"{k}: {was!r} -> {now!r}" for k, was, now in changed)
        note = dataset_note(stored, changed)
        raise UsageError(f"{run.folder} holds a run with other settings than this grid's ({diff}{note}); use the same "
                         "flags as before, another --out, or remove that folder")
    # the run goes on as stored, so that its own resume check (train) finds the same settings
    return dataclasses.replace(run, config=dataclasses.replace(run.config, **same)) if same else run


def same_recorded(key, one, other):
    """Whether two finished runs, known by their records (`coreaug.bench.archive.RunRecord`), that
    differ in the setting `key` trained alike, as bench counts them: --weak auto as it resolves for
    their images (where the recorded folder is here to tell: else unknown, so not alike) and
    --precision auto as the runs' summaries say it resolved (where they ran, not here)."""
    if key == "weak":
        dataset, size = one.config.get("dataset"), one.config.get("image_size") or 0
        if not isinstance(dataset, str) or not (names_registered_dataset(dataset) or os.path.isdir(dataset)):
            return False
        return {one.config.get(key), other.config.get(key)} <= set(WEAK) and \
            weak_is_resized_crop(dataset, one.config.get(key), size) == \
            weak_is_resized_crop(dataset, other.config.get(key), size)
    if key == "precision":
        resolved = [(record.summary or {}).get("precision") for record in (one, other)]
        return resolved[0] is not None and resolved[0] == resolved[1]
    return False


def _same_here(key, stored, now, config):
    """Whether a setting stored as `stored` and given now as `now` mean the same for the run of
    `config` (resolved): weak and precision as "auto" resolves for this run's images and device
    (auto is pad-crop below 128 px and fp32 on the CPU). (val_fraction, unread by a folder with its
    own train/ split, is among the settings `differences` leaves out there.)"""
    if key == "weak":
        return stored in WEAK and weak_is_resized_crop(config.dataset, stored, config.image_size) == \
            weak_is_resized_crop(config.dataset, now, config.image_size)
    if key == "precision":
        try:
            device = pick_device(config.device)
        except UsageError:
            return False
        # fp16 on the CPU is warned about when the run starts (catch_warnings here reset Python's once-registry,
        # and the warning came back at other runs)
        return resolve_precision(stored, device, warn=False) == resolve_precision(now, device, warn=False)
    return False


def _compiled_otherwise(run):
    """[("compile", finished, now)] when `run`'s folder holds a run finished compiled and the grid
    now trains eagerly, or the other way: a run may go on compiled (compile is not a setting of
    its identity), but a grid that counts it finished would time one cell's runs two ways. A
    stopped run is read from its metrics.jsonl (its rows count `graphs_compiled` when compiled):
    going on the other way would mix a compile into an eager run's seconds (or the reverse)."""
    record = read_record(run.folder, run.name)
    config = record.summary.get("config") if isinstance(record.summary, dict) else None
    if isinstance(config, dict):  # finished
        finished = config.get("compile", False)
    else:  # stopped: its epochs so far, one way or the other (none readable: nothing to compare)
        rows = [row for row in record.metrics if isinstance(row, dict)]
        if not rows:
            return []
        finished = any("graphs_compiled" in row for row in rows)
    return [] if finished == run.config.compile else [("compile", finished, run.config.compile)]


def _stored_config(run):
    """(config.json as a dict, None), (None, None) without one, or (None, why it is unreadable)."""
    path = os.path.join(run.folder, "config.json")
    if not os.path.exists(path):
        return None, None
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError) as exc:
        return None, f"config.json that cannot be read ({one_line(exc)})"
    if not isinstance(stored, dict):
        return None, "config.json that is not a run's settings"
    return stored, None


def _subset_name(subset):
    return f"{subset:g}"


def _check_subset_names(subsets):
    names = {}
    for subset in subsets:
        other = names.setdefault(_subset_name(subset), subset)
        if other != subset:
            raise UsageError(f"--subsets {other!r} and {subset!r} would share the run folders "
                             f"<strategy>-{_subset_name(subset)}-seed<k> (run names keep 6 significant digits); "
                             "give fractions that differ within 6 digits")


def _check_subset(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 < value <= 1:
        raise UsageError(f"subsets must be fractions in (0, 1], got {value!r}")
    return float(value)


def _axis(values, name):
    """A grid axis as a list: a single name or number is one value (not "random" split into letters)."""
    if isinstance(values, (str, numbers.Real)):
        return [values]
    try:
        return list(values)
    except TypeError:
        raise UsageError(f"{name} must be a list of values, got {values!r}") from None


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
