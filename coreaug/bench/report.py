"""`write_report`: any grid's runs (a folder or an archive) as Markdown + CSV tables and a plot.

Per cell (strategy, subset, label): accuracy over seeds, paired differences against a
baseline over the seeds both have with a 95% t-interval, the share of full augmentation's
gain, seconds per epoch and time to target, the selections' diagnostics, and which runs are
missing or unfinished. A label marks the runs of another grid given beside the first (e.g.
"40 epochs"): its cells are compared with the baseline and references of their own label
when it has them, else with the first grid's.
"""
import collections
import collections.abc
import contextlib
import csv
import dataclasses
import importlib.util
import json
import math
import os
import re
import statistics
from dataclasses import dataclass

from coreaug.errors import UsageError, path_given
from coreaug.files import atomic_write, make_folder, markdown_of
from coreaug.training.run_files import recorded_fingerprint, recorded_version, several_versions

from .archive import GRID_PATH, PER_RUN, PLAN, load_runs, planned_runs, runs_folder
from .grid import check_outside_dataset, check_target, folder_in_use
from .plot import plot_mean_curves
from .tables import DIAGNOSTICS, compiled_note, cpu_threads, diagnostics_table, evaluated_otherwise, threads_otherwise
from .timing import cell_time_to_target, default_target, speedup, time_to_target, training_seconds

NAN = float("nan")
REFERENCES = ("full", "none")
PAPER_RULES = ("coreset", "random", "maxloss")
MAX_NAME_BYTES = 200  # a file name may hold 255 (most file systems), with -cells.csv after it


@dataclass
class Run:
    """A finished run's figures (accuracies as fractions, seconds of training + selection)."""

    label: str
    name: str
    strategy: str
    subset: float
    seed: int
    epochs: int
    final: float
    best: float
    seconds: float
    selection_seconds: float
    history: list


@dataclass
class Cell:
    """The runs of one (strategy, label, subset); `subset` is None for the references."""

    strategy: str
    label: str
    subset: float
    runs: list

    @property
    def title(self):
        return f"{self.strategy}, {self.label}" if self.label else self.strategy

    def seeds(self):
        return {run.seed: run for run in self.runs}


@dataclass
class ReportResult:
    """A written report: the files (md, runs_csv, cells_csv and, with matplotlib, png), one dict
    per cell (the cells CSV's columns), the target accuracy and its rule, the finished runs read,
    one line per missing or unfinished run, the runs missing or unfinished (`problems` also
    holds a line per cell lacking a seed), why no plot was written ("" when it was), and in
    `pooled` a line for each source whose cells pool runs of other settings (besides strategy,
    subset and seed), one seed's runs twice, or runs its bench did not train, and in `pooling`
    what kinds of pooling those are, in a few words each ("runs trained on 1 and 2 CPU threads
    pooled")."""

    files: dict
    cells: list = dataclasses.field(repr=False)  # a dict of ~27 figures per cell: a notebook showed kilobytes
    target: float
    target_rule: str
    runs: int
    problems: list
    missing_runs: int = 0
    no_plot: str = ""
    pooled: list = dataclasses.field(default_factory=list)  # per source, what its cells pool (see _pooled_notes)
    pooling: list = dataclasses.field(default_factory=list)  # the kinds of `pooled`, in a few words each

    def _repr_markdown_(self):
        """The tables written (`files["md"]`), shown by a notebook for a result that ends a cell."""
        return markdown_of(self.files.get("md"))


def write_report(path, *, out, also=(), target=None, baseline=None, paper_figures=None,
                 epoch_seconds=None, subsets=None, name="report", title=None, command=None):
    """Read a grid's runs and write `<name>.md`, `<name>-runs.csv`, `<name>-cells.csv` and
    `<name>.png` (with matplotlib, the `plot` extra) to the folder `out`.

    path: a grid folder (as `coreaug bench --out` makes it) or an archive from `archive_grid`.
    also: (path, label) pairs: other grids whose runs become rows `"<strategy>, <label>"`.
    target: the accuracy in (0, 1] for time-to-target; None: 99% of full's mean final accuracy
        (without a finished full run, of the best final accuracy).
    baseline: the strategy (or reference, full/none) that paired differences are taken
        against; a comma-separated string or a list gives one table per baseline. None:
        random when the runs have it (else no such table).
    paper_figures: a CSV with columns strategy,subset,accuracy (percent in (1, 100]: a figure of
        at most 1 is refused as a fraction; subset empty for the references; lines starting with #
        are comments): a column of published figures.
    epoch_seconds: a CSV with columns strategy,subset,seconds_per_epoch measured elsewhere
        (e.g. on a quiet machine; positive seconds); times become epochs x these instead of the
        runs' own.
    subsets: keep only these fractions (and the references); None keeps every one.
    name, title, command: the files' stem, the heading, and the command recorded in the report.
    Returns a ReportResult. Raises UsageError for a path that is neither a grid folder nor an
    archive, a grid without finished runs, or a bad option: a baseline that is no strategy
    or reference of the runs reported, a subset no grid has, an empty name, a CSV row whose
    figure is out of range (naming the row).
    """
    if not isinstance(name, str) or not name.strip() or os.sep in name or name.startswith("."):
        raise UsageError(f"name must be a file stem such as report (no folder, not starting with a dot), got {name!r}")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:  # the OS's limit, with the files' suffixes
        raise UsageError(f"name must be at most {MAX_NAME_BYTES} bytes (a file name with its suffix such as "
                         f"-runs.csv), got {size}")
    if not str(os.fspath(out)).strip():  # "" would be the working folder
        raise UsageError("out is empty; give the report's folder (--out)")
    out = os.path.expanduser(os.fspath(out))  # ~ as the shell would expand it (--out=~/x reaches us as typed)
    target = check_target(target)
    baselines = None if baseline is None else _names(baseline)
    if baselines == []:
        raise UsageError("baseline is empty; give a strategy such as random")
    try:
        wanted = None if subsets is None else {round(float(s), 10) for s in subsets}
    except (TypeError, ValueError):
        raise UsageError(f"subsets must be fractions such as [0.1, 0.3], got {subsets!r}") from None
    if wanted == set():  # the references alone, without a word
        raise UsageError("subsets is empty; give the fractions to keep, such as 0.1,0.3, or leave it out for all")
    for given, columns in ((paper_figures, "paper_figures"), (epoch_seconds, "epoch_seconds")):
        if given is not None:  # ("$UNSET": no column of figures, without a word)
            path_given(given, columns, "a CSV file of strategy,subset," + (
                "accuracy" if columns == "paper_figures" else "seconds_per_epoch") + ", or leave it out")
    paper = _read_figures(paper_figures, "--paper-figures", "accuracy", _bad_percent) \
        if paper_figures is not None else {}
    rates = (_read_figures(epoch_seconds, "--epoch-seconds", "seconds_per_epoch", _bad_rate, labelled=True)
             if epoch_seconds is not None else None)

    path = path_given(path, "path", GRID_PATH)
    sources = [(os.path.expanduser(path), "")] + \
        [(os.path.expanduser(p), str(label)) for p, label in _pairs_given(also)]
    unknown = sorted({key[2] for key in rates or ()} - {label for _, label in sources})
    if unknown:  # a typo's rows unused, and its grid taking the first grid's rates
        labels = ", ".join(repr(label) for _, label in sources[1:]) or "none: no PATH=LABEL given"
        raise UsageError(f"--epoch-seconds {epoch_seconds}: label {unknown[0]!r} names no grid reported (the "
                         f"labels: {labels}); leave the label empty for the first grid's cells")
    runs, problems, described, settings, pooled, pooling = _read_sources(sources, wanted, out)
    if not runs:
        raise UsageError((not wanted and _in_progress(os.fspath(path)))
                         or f"{path} holds no finished runs" + (" of the given subsets" if wanted else "")
                         + "; give a grid whose runs wrote summary.json")
    if baselines is None:
        baselines = ["random"] if any(run.strategy == "random" for run in runs) else []
    _check_baselines(runs, baselines)

    cells = _cells(runs, baselines[0] if baselines else None)
    if rates is not None and all(math.isnan(_rate(rates, cell)) for cell in cells.values()):
        raise UsageError(f"--epoch-seconds {epoch_seconds}: no row names a cell of the runs reported (rows "
                         f"{_pairs({key[:2] for key in rates})}; the runs have "
                         f"{_pairs({(c.strategy, c.subset) for c in cells.values()})}); give rows "
                         "strategy,subset,seconds_per_epoch for them")
    if paper and not any((c.strategy, c.subset) in paper for c in cells.values() if not c.label):
        raise UsageError(f"--paper-figures {paper_figures}: no row names a cell of the runs reported (rows "
                         f"{_pairs(set(paper))}; the runs have "
                         f"{_pairs({(c.strategy, c.subset) for c in cells.values() if not c.label})}); give rows "
                         "strategy,subset,accuracy for them (subset empty for full and none)")
    missing_runs = len(problems)
    problems += _missing_seeds(cells)
    main_full = [r.final for r in runs if r.strategy == "full" and not r.label]
    if target is None:
        target, rule = default_target([r.final for r in runs if not r.label] or [r.final for r in runs], main_full)
    else:
        rule = "given with --target"
    rows = [_cell_row(cell, cells, baselines, paper, rates, target) for cell in cells.values()]

    try:
        make_folder(out)
    except (FileExistsError, NotADirectoryError):  # a file there, or above it
        raise UsageError(f"--out {out} is, or lies under, a file, not a folder; choose another --out") from None
    files = {"md": os.path.join(out, f"{name}.md"), "runs_csv": os.path.join(out, f"{name}-runs.csv"),
             "cells_csv": os.path.join(out, f"{name}-cells.csv")}
    png = _plot(cells, rates, target, os.path.join(out, f"{name}.png"), title or name)
    if png:
        files["png"] = png
    else:
        with contextlib.suppress(FileNotFoundError):  # an earlier call's plot, of other figures
            os.remove(os.path.join(out, f"{name}.png"))
    text = _markdown(title or name, command, described, settings, cells, rows, baselines,
                     paper, rates, epoch_seconds, target, rule, problems, png)
    atomic_write(files["md"], lambda f: f.write(text))
    _write_csv(files["runs_csv"], [_run_row(run, target, rates) for run in runs])
    _write_csv(files["cells_csv"], rows)
    no_plot = "" if png else ("no plot: nothing to draw" if importlib.util.find_spec("matplotlib")
                              else "pip install 'coreaug[plot]' (or matplotlib) for the plot")
    return ReportResult(files, rows, target, rule, len(runs), problems, missing_runs, no_plot, pooled, pooling)


# --- reading ---------------------------------------------------------------------------------

def _pairs_given(also):
    """`also` as (path, label) pairs, each checked: a list of paths alone would unpack a two-letter
    path as a path and a label."""
    refusal = "also must hold (path, label) pairs such as [('grids/other', 'other')] (or be a dict {path: label})"
    if isinstance(also, (str, bytes, os.PathLike)):
        raise UsageError(f"{refusal}, got {also!r}")
    if isinstance(also, collections.abc.Mapping):
        also = also.items()
    try:
        pairs = list(also or ())
    except TypeError:
        raise UsageError(f"{refusal}, got {also!r}") from None
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise UsageError(f"{refusal}, got {pair!r} in {also!r}"[:300])
    return [(path_given(path, "also", "pairs of a grid's path and its label"), label) for path, label in pairs]


def _names(value):
    if isinstance(value, str):
        items = value.split(",")
    else:
        try:
            items = list(value)
        except TypeError:
            items = None
        if items is None or not all(isinstance(item, str) for item in items):
            raise UsageError(f"baseline must be a strategy such as random, or a list of them, got {value!r}")
        if isinstance(value, (set, frozenset)):  # no order of its own: one table per name, in name order
            items = sorted(items)
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))  # each once: one table each


def _in_progress(path):
    """For a grid folder `path` without finished runs: None unless every run it holds or plans is
    unfinished (no damaged one among them), else the refusal saying so and how many train now."""
    if not os.path.isdir(path):
        return None
    records = load_runs(path)
    if any(record.summary is not None or record.problem is not None for record in records):
        return None
    folder = runs_folder(path)
    live = sum(folder_in_use(os.path.join(folder, record.name)) for record in records)
    total = len(set(planned_runs(path)) | {record.name for record in records})
    now = (f"{live} training now; report it again once some have finished" if live else
           "none training now; run its bench command again to continue them")
    return f"{path} holds no finished runs yet: its {total} runs are in progress ({now})"


def _read_sources(sources, wanted, out):
    """The finished runs of every (path, label) as Runs (only the `wanted` subsets, when given),
    one line per run that could not be read, one line describing each source, the settings
    the first source's runs share, and a line per source whose cells pool runs of other settings
    or one seed twice (`_pooled_notes`). UsageError for a wanted subset that no source has, and for an
    `out` in a folder dataset of the runs (the report's plot would be read as an image)."""
    runs, problems, described, settings, have, pooled, first, pooling = [], [], [], "", set(), [], [], []
    held = {}  # (label, strategy, subset, seed): the position of the source holding that run
    for position, (source, label) in enumerate(sources):
        records, planned = load_runs(source), planned_runs(source)
        for dataset in dict.fromkeys((record.config or {}).get("dataset") for record in records
                                     if isinstance(record.config, dict)):  # before anything is written
            check_outside_dataset(out, dataset, "the folder dataset the runs trained on", "the report's")
        not_started = sorted(set(planned) - {record.name for record in records})
        problems += [f"`{name}`" + (f" ({label})" if label else "") + ": not started" for name in not_started]
        total = len(records) + len(not_started)
        kept, read = [], []
        for record in records:
            run, problem = _run(record, label) if record.finished else (None, record.problem)
            if run is None:
                problems.append(f"`{record.name}`" + (f" ({label})" if label else "") + ": "
                                + (problem or "no summary.json (unfinished, or crashed)"))
            else:
                kept.append(record)
                read.append(run)
        have |= {round(run.subset, 10) for run in read if run.subset is not None}
        shown = [run for run in read if wanted is None or run.subset is None or round(run.subset, 10) in wanted]
        for run in shown:  # grids given one label pool their runs: not one seed from two of them
            other = held.setdefault((label, run.strategy, run.subset, run.seed), position)
            if other != position:
                cell = run.strategy if run.subset is None else f"{run.strategy} {_subset(run.subset)}"
                raise UsageError(f"label {label!r} is given to {sources[other][0]} and {source}, which both hold "
                                 f"{cell} seed {run.seed}: it would count twice; give each grid a label of its own")
        runs += shown
        settings = settings if described else _settings(kept)
        described.append(f"`{source}`" + (f" as \"{label}\"" if label else "") + f": {len(shown)} finished runs"
                         + (f" of {total}" if len(shown) == len(kept) else
                            f" at the subsets asked for and the references (of {len(kept)} finished, "
                            f"{total} in all)")
                         + ("" if planned or all(record.finished for record in records) else
                            f" ({_NO_PLAN}: runs that never started cannot be listed)"))
        ids = {id(run) for run in shown}
        shown_records = [record for record, run in zip(kept, read) if id(run) in ids]
        # a grid (or its archive) was checked by bench, but not a run its grid.json does not list (trained into
        # its runs/ by `coreaug train`, or copied there): then the source's runs are compared as loose runs
        listed_runs = set(planned)
        stray = [record.name for record in shown_records if planned and record.name not in listed_runs
                 and (record.summary or {}).get("coreaug")]  # (a run of coreaug 0.2, whose bench wrote no PLAN)
        notes = _pooled_notes(shown_records, shown, checked=bool(planned) and not stray)
        if stray:
            notes.insert(0, f"runs its {PLAN} does not list, not trained by its bench: "
                            f"{', '.join(stray[:3])}{' ...' if len(stray) > 3 else ''}")
        heads = [re.split(r": | \(", note, maxsplit=1)[0] for note in notes]  # "runs ... pooled", in a few words
        pooling += [head for head in heads if head not in pooling]
        mixed = "; ".join(notes)
        if mixed:
            pooled.append(f"`{source}`" + (f" (\"{label}\")" if label else "") + f": {mixed}")
            described[-1] += f"; {mixed}"
        compiled = compiled_note([bool(((record.summary or {}).get("config") or {}).get("compile"))
                                  for record in shown_records])
        if compiled:  # not a pooling: said where the source's runs are
            described[-1] += f"; {compiled}"
        if not label:
            first = shown_records
        else:  # another grid: what sets it apart from the first, whose baseline and references it may borrow
            unlike = _unlike(first, shown_records)
            if unlike:
                described[-1] += f"; unlike the first grid's runs: {unlike}"
    if wanted:
        _check_subsets(wanted, have)
    return runs, problems, described, settings, pooled, pooling


NOT_RESULTS = {"eval_every"}  # settings that change no run's result (only which epochs log test figures)
# Settings a source's cells must share to be compared row against row (a folder of loose runs is
# not checked by bench): the data, the model and the training length.
ACROSS_CELLS = ("dataset", "data_files", "model", "epochs", "train_limit", "test_limit", "image_size", "label_noise")


def _setting_text(value) -> str:
    """A recorded setting as the notes compare and show it: JSON, a whole float as its integer
    (label_noise 0 from Python, 0.0 from the command line, are one setting)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


def _differing(configs, keys):
    """{key: its values as shown, sorted} for each of `keys` that `configs` (dicts) record with
    more than one value."""
    found = {}
    for key in keys:
        shown = sorted({_setting_text(config.get(key)) for config in configs if key in config})
        if len(shown) > 1:
            found[key] = shown
    return found


def _listed(differing):
    """`_differing`'s settings as a note lists them: "key (a, b), other (c, d, e ...)"."""
    return ", ".join(f"{key} ({', '.join(shown[:3])}{' ...' if len(shown) > 3 else ''})"
                     for key, shown in differing.items())


def _pooled_notes(records, runs, checked=False):
    """What one source's cells pool that a grid's do not, a note each: the cells whose `runs` (with
    their `records`, in step) differ in settings besides strategy, subset and seed (those every run of
    the cell records: a setting an older coreaug did not is left out), unless the source is a grid
    bench `checked`, and the runs of one seed in a cell counted as two seeds; none for none."""
    cells = {}
    for record, run in zip(records, runs):
        cells.setdefault((run.strategy, run.subset), []).append((_with_data(record), run.seed))
    differ, repeated, within = [], [], set()
    for (strategy, subset), members in cells.items():
        name = strategy if subset is None else f"{strategy} {_subset(subset)}"
        configs = [config for config, _ in members]
        keys = sorted(set.intersection(*(set(config) for config in configs)) - set(PER_RUN) - NOT_RESULTS)
        found = _differing(configs, keys)
        within |= set(found)
        if found and not checked:
            differ.append(f"{name}: {_listed(found)}")
        seeds = collections.Counter(seed for _, seed in members)
        repeated += [f"{name}: {n} runs of seed {seed}" for seed, n in seeds.items() if n > 1]
    across = {} if checked else _differing([_with_data(record) for record in records],
                                           [key for key in ACROSS_CELLS if key not in within])  # (said per cell)
    notes = [several_versions([recorded_version(getattr(record, "summary", None)) for record in records])]
    notes.append(evaluated_otherwise([(record.config or {}).get("eval_every") for record in records]))
    notes.append(threads_otherwise([cpu_threads(getattr(record, "summary", None), getattr(record, "metrics", None))
                                    for record in records]))
    if across and len(cells) > 1:
        notes.append(f"cells of other data or training length compared ({_listed(across)}): each row's "
                     "baseline and gains subtract runs that differ in more than strategy and subset; report "
                     "them from folders of their own")
    if differ:
        more = f" and {len(differ) - 1} more cells" if len(differ) > 1 else ""
        notes.append(f"runs of other settings pooled in one cell ({differ[0]}{more}; report them from folders "
                     "of their own to compare them)")
    if repeated:
        more = f" and {len(repeated) - 1} more" if len(repeated) > 1 else ""
        notes.append(f"runs of one seed counted as several ({repeated[0]}{more})")
    return [note for note in notes if note]


def _unlike(first, records):
    """The settings in which `records` (another grid's runs) differ from `first` (the first grid's): the data
    and training length (ACROSS_CELLS), then any other that every run of both records with one value a
    grid (lr, optimizer, augment ...: a grid per learning rate was compared without a word of it; one that
    its strategies set apart, loss_filter, is not the grid's), but strategy, subset and seed:
    "dataset /data/b (first: /data/a), epochs 30 (first: 15), lr 0.2 (first: 0.05)"; "" for none."""
    parts = {}
    settings = [[_with_defaults(_with_data(record)) for record in group] for group in (records, first)]  # read once
    common = set.intersection(*(set(config) for group in settings for config in group)) if first and records \
        else set()
    for key in [*ACROSS_CELLS, *sorted(common - set(ACROSS_CELLS) - set(PER_RUN) - NOT_RESULTS)]:
        theirs, ours = ({_setting_text(config.get(key)) for config in group} for group in settings)
        if key not in ACROSS_CELLS and (len(theirs) > 1 or len(ours) > 1):
            continue
        if first and records and theirs != ours:
            parts[key] = f"{key} {', '.join(sorted(theirs))} (first: {', '.join(sorted(ours))})"
    if "dataset" in parts:  # another dataset's files differ too: their hashes say nothing more
        parts.pop("data_files", None)
    return ", ".join(parts.values())


def _with_defaults(config):
    """`config` (a config.json) with the settings it leaves out at their defaults filled in: `norm` "dataset"
    and `store_size` its image_size (a grid normalised with ImageNet's was compared with one of its data's
    own without a word; runs from before either setting computed what the defaults compute)."""
    filled = {"norm": "dataset", **config}
    if "store_size" not in filled and "image_size" in filled:
        filled["store_size"] = filled["image_size"]
    return filled


def _with_data(record):
    """A run's settings as `_pooled_notes` compares them: config.json's, and `data_files`, the hash of a folder
    dataset's files its summary.json records (runs of one folder before and after images were added)."""
    fingerprint = recorded_fingerprint(getattr(record, "summary", None))
    return {**_as_read(record.config), **({"data_files": fingerprint} if fingerprint else {})}


def _check_baselines(runs, baselines):
    """UsageError for a baseline that no run reported has as its strategy."""
    strategies = sorted({run.strategy for run in runs})
    for name in baselines:
        if name not in strategies:
            raise UsageError(f"--baseline {name!r} is no strategy or reference of the runs reported; "
                             f"choose from: {', '.join(strategies)}")


def _check_subsets(wanted, have):
    """UsageError for a wanted subset that no grid has a finished run at."""
    absent = sorted(wanted - have)
    if absent:
        raise UsageError(f"--subsets {','.join(f'{s:g}' for s in absent)}: no grid has finished runs at "
                         f"{'that fraction' if len(absent) == 1 else 'those fractions'}; "
                         f"the grids have {','.join(f'{s:g}' for s in sorted(have)) or 'none'}")


def _run(record, label):
    """(Run, None) for a finished record, or (None, why) when its files lack a figure."""
    try:
        config = dict(record.summary.get("config") or {}, **record.config)
        strategy = config["strategy"]
        summary = record.summary
        return Run(label, record.name, strategy, None if strategy in REFERENCES else float(config["subset"]),
                   int(config["seed"]), int(summary.get("epochs", len(record.metrics))),
                   float(summary["final_test_accuracy"]), float(summary["best_test_accuracy"]),
                   float(summary["total_seconds"]), float(summary["selection_seconds"]), record.metrics), None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return None, f"config.json or summary.json lacks a usable {exc}"


def _read_figures(path, flag, column, bad, labelled=False):
    """{(strategy, subset or None): float} from a CSV with columns strategy, subset, `column`
    ({(strategy, subset, label): float} if `labelled`, from an optional column label: "" where
    it is absent or empty, the first grid's); `bad(value)` says what is wrong with a figure (""
    when nothing is): a UsageError naming the row."""
    try:
        # (-sig: Excel's "CSV UTF-8" starts with a BOM)
        with open(os.path.expanduser(os.fspath(path)), newline="", encoding="utf-8-sig") as f:
            lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise UsageError(f"{flag} {path} cannot be read ({exc.strerror or exc}); give a CSV file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{flag} {path} is not UTF-8 text (byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r}); save it as CSV UTF-8") from None
    reader = csv.DictReader(lines)
    if not {"strategy", "subset", column} <= set(reader.fieldnames or ()):
        raise UsageError(f"{flag} {path} needs a header line strategy,subset,{column} (got "
                         f"{','.join(reader.fieldnames or ()) or 'none'}); give a CSV with those columns")
    figures, rows = {}, {}
    for number, row in enumerate(reader, 2):
        try:
            subset = None if not (row.get("subset") or "").strip() else float(row["subset"])
            strategy, value = row["strategy"].strip(), float(row[column])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UsageError(f"{flag} {path}: row {number} needs columns strategy,subset,{column} with numbers "
                             f"(subset empty for full and none), got {dict(row)!r}") from None
        problem = bad(value)
        if problem:
            raise UsageError(f"{flag} {path}: row {number} ({_pairs([(strategy, subset)])}): {column} {value:g} "
                             f"{problem}")
        key = (strategy, subset) + (((row.get("label") or "").strip(),) if labelled else ())
        if key in rows:  # which would count? (the last one did, silently)
            label = f" of {key[2]}" if labelled and key[2] else ""
            raise UsageError(f"{flag} {path}: rows {rows[key]} and {number} are both "
                             f"{_pairs([(strategy, subset)])}{label}; keep one")
        figures[key], rows[key] = value, number
    if not figures:
        raise UsageError(f"{flag} {path} has a header but no rows; give one row strategy,subset,{column} per cell")
    return figures


def _bad_rate(seconds):
    return "" if math.isfinite(seconds) and seconds > 0 else "is no time; give a positive number of seconds"


def _bad_percent(accuracy):
    """Published accuracies are percent: one of at most 1 reads as a fraction, and is refused."""
    if 0 < accuracy <= 1:
        return f"reads as a fraction; give percent ({100 * accuracy:g} for {accuracy:g})"
    return "" if 1 < accuracy <= 100 else "is no percentage; give a number in (1, 100] (75.3 for 75.3%)"


def _pairs(keys):
    """(strategy, subset) pairs as text: "full, coreset 0.1"."""
    return ", ".join(strategy if subset is None else f"{strategy} {subset:g}"
                     for strategy, subset in sorted(keys, key=lambda k: (k[1] is not None, k[1] or 0, k[0])))


_NO_PLAN = "it has no grid.json: runs of coreaug train, or a grid of coreaug 0.2 or older, which wrote none"


def _settings(records):
    """The config.json fields that every finished run of a grid shares, as `key=value` text, then
    the others (besides strategy, subset and seed) with the values its runs record: a grid whose runs
    read their folder from two paths (moved and linked) says so rather than leaving `dataset` out."""
    if not records:
        return ""
    configs = [_as_read(record.config) for record in records]
    first = configs[0]
    shared = [k for k in first if k not in PER_RUN and all(c.get(k) == first[k] for c in configs)]
    text = ", ".join(f"{k}={first[k]}" for k in shared)
    differing = _differing(configs, [k for k in first if k not in PER_RUN and k not in shared])
    return text + (f"; its runs differ in {_listed(differing)}" if differing else "")


def _as_read(config):
    """A run's config.json with a built-in dataset's image_size its images' own (coreaug 0.2 recorded the
    folder default, 64, for every dataset)."""
    from coreaug.training.config import IMAGE_SIZES

    size = IMAGE_SIZES.get(str(config.get("dataset")).lower().replace("_", "-"))
    return {**config, "image_size": size} if size is not None and "image_size" in config else config


# --- figures ---------------------------------------------------------------------------------

def _cells(runs, first_baseline):
    """The runs as Cells, ordered by subset (references first), then by grid (the first, then
    the labels in the order given), then the first baseline before the other strategies."""
    grids = {label: k for k, label in enumerate(dict.fromkeys(run.label for run in runs))}
    cells = {}
    for run in runs:
        cells.setdefault((run.strategy, run.label, run.subset), Cell(run.strategy, run.label, run.subset, []))
        cells[(run.strategy, run.label, run.subset)].runs.append(run)
    for cell in cells.values():
        cell.runs.sort(key=lambda r: r.seed)
    order = sorted(cells, key=lambda k: (k[2] is not None, k[2] or 0, grids[k[1]], k[0] != first_baseline, k[0]))
    return {key: cells[key] for key in order}


def _related(cells, name, label, subset):
    """The cell `name` at `subset` with this label when it exists, else the first grid's."""
    return cells.get((name, label, subset)) or cells.get((name, "", subset))


def _references(cells, label):
    """(none, full) for the share of full's gain: the label's own pair where it has both, else the
    first grid's (a share of one grid's none and another's full would measure neither)."""
    own = [cells.get((name, label, None)) for name in ("none", "full")]
    return own if all(own) else [cells.get((name, "", None)) for name in ("none", "full")]


def _no_gain(none, full):
    """True when both references exist and full's mean final accuracy is not above none's: there
    is no gain to take a share of."""
    return bool(none and full) and _mean_final(full) - _mean_final(none) <= 0  # as `_share` takes it


def _mean_std(values):
    values = list(values)
    if not values:
        return NAN, NAN
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else NAN


TIED = 1e-9  # a std of paired differences at most this (relative to their mean) is rounding: the seeds tie


def paired_differences(runs, baseline_runs):
    """Differences (run - baseline) over the seeds both have, with a 95% t-interval.

    Takes two {seed: accuracy} dicts. Returns a dict: n, mean, std (sample), low and high
    (mean -/+ t(0.975, n - 1) * std / sqrt(n); NaN for fewer than two seeds, and where every
    seed's difference is the same: accuracy moves in whole test images, so a few seeds often tie,
    and an interval of zero width would call any such difference certain).
    """
    from scipy import stats  # here: `import coreaug` (every command) would take its second or two

    diffs = [runs[seed] - baseline_runs[seed] for seed in sorted(runs) if seed in baseline_runs]
    mean, std = _mean_std(diffs)
    spread = len(diffs) > 1 and std > TIED * max(1.0, abs(mean))
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * std / math.sqrt(len(diffs)) if spread else NAN
    return {"n": len(diffs), "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def _share(accuracy, none, full):
    return (accuracy - none) / (full - none) if full - none > 0 else NAN


def _rate(rates, cell):
    """The seconds per epoch `rates` give `cell` (or a Run): its label's row, else the first
    grid's row of its strategy and subset, else NaN; None without rates."""
    if rates is None:
        return None
    return rates.get((cell.strategy, cell.subset, cell.label), rates.get((cell.strategy, cell.subset, ""), NAN))


def _borrowed(rates, cells):
    """Whether a labelled cell takes the first grid's rate (the CSV gives its label none)."""
    return rates is not None and any(cell.label and (cell.strategy, cell.subset, cell.label) not in rates
                                     and (cell.strategy, cell.subset, "") in rates for cell in cells.values())


def _mean_curve(cell, rate):
    """The cell's mean accuracy after each epoch, at the mean cumulative training seconds
    (or epoch x rate): rows for `time_to_target`. None where a run did not evaluate."""
    histories = [_rated(run.history, rate) for run in cell.runs]
    rows = []
    for epoch in range(min(len(history) for history in histories)):
        accuracies = [history[epoch].get("test_accuracy") for history in histories]
        rows.append({"test_accuracy": None if None in accuracies else statistics.fmean(accuracies),
                     "training_seconds": statistics.fmean(training_seconds(history[epoch]) for history in histories)})
    return rows


def _rated(history, rate):
    """A run's metrics rows with its training seconds taken as epochs x `rate` (None: its own)."""
    if rate is None:
        return history
    return [dict(m, training_seconds=(epoch + 1) * rate) for epoch, m in enumerate(history)]


def _timing(cell, rates, target):
    """Seconds per epoch, in all and to target of a cell, and how many of its seeds reach the
    target; time to target by bench's rule (`cell_time_to_target`: each seed's, mean over the
    seeds, NaN unless all reach it). With `rates`, a cell the CSV has no rate for has no times
    (NaN), its seeds still counted."""
    rate = _rate(rates, cell)
    if rate is not None and math.isnan(rate):
        _, reached = cell_time_to_target([r.history for r in cell.runs], target)
        return {"seconds_per_epoch": NAN, "selection_per_epoch": NAN, "seconds": NAN, "time_to_target": NAN,
                "reached": reached}
    if rate is None:
        per_epoch = statistics.fmean((r.seconds - r.selection_seconds) / r.epochs for r in cell.runs)
        selection = statistics.fmean(r.selection_seconds / r.epochs for r in cell.runs)
        seconds = statistics.fmean(r.seconds for r in cell.runs)
    else:
        per_epoch, selection = rate, NAN
        seconds = statistics.fmean(r.epochs * rate for r in cell.runs)
    to_target, reached = cell_time_to_target([_rated(r.history, rate) for r in cell.runs], target)
    return {"seconds_per_epoch": per_epoch, "selection_per_epoch": selection, "seconds": seconds,
            "time_to_target": to_target, "reached": reached}


def _cell_row(cell, cells, baselines, paper, rates, target):
    # in percent, as the tables show them (rounding the same figures the same way everywhere)
    accuracy, accuracy_std = _mean_std(100 * r.final for r in cell.runs)
    none, full = _references(cells, cell.label)
    share = _share(accuracy, statistics.fmean(100 * r.final for r in none.runs),
                   statistics.fmean(100 * r.final for r in full.runs)) if none and full else NAN
    theirs = paper.get((cell.strategy, cell.subset)) if not cell.label else None
    paper_none, paper_full = paper.get(("none", None)), paper.get(("full", None))
    paper_share = (_share(theirs, paper_none, paper_full) if None not in (theirs, paper_none, paper_full)
                   else NAN)
    row = {"strategy": cell.strategy, "label": cell.label, "subset": cell.subset, "seeds": len(cell.runs),
           "final_accuracy_percent": accuracy, "final_accuracy_std": accuracy_std,
           "best_accuracy_percent": statistics.fmean(100 * r.best for r in cell.runs), "share_of_full_gain": share,
           "paper_accuracy_percent": NAN if theirs is None else theirs, "paper_share_of_full_gain": paper_share}
    timing = _timing(cell, rates, target)
    full = _related(cells, "full", cell.label, None)  # speed-ups: the label's own full wherever it has one,
    if full is cell and cell.label:  # but a label's full against itself is always 1.00x: the first grid's full
        full = cells.get(("full", "", None))
    full_timing = _timing(full, rates, target) if full else None
    row.update(timing)
    row["speedup"] = speedup(full_timing["seconds"], timing["seconds"]) if full_timing else NAN
    row["target_speedup"] = (speedup(full_timing["time_to_target"], timing["time_to_target"])
                             if full_timing else NAN)
    for name in baselines:
        base = _baseline(cells, cell, name)
        figures = (paired_differences({s: 100 * r.final for s, r in cell.seeds().items()},
                                      {s: 100 * r.final for s, r in base.seeds().items()})
                   if base else {"n": 0, "mean": NAN, "std": NAN, "low": NAN, "high": NAN})
        row.update({f"vs_{name}_{key}": value for key, value in figures.items()})
    for key in DIAGNOSTICS:
        values = [m[key] for r in cell.runs for m in r.history if m.get(key) is not None]
        row[key] = statistics.fmean(values) if values else NAN
    return row


def _baseline(cells, cell, name):
    """The cell that `cell` is paired with for baseline `name`; None when there is none or it
    is the cell itself (or `cell` is a reference, which has no subset to match)."""
    if cell.subset is None or cell.strategy == name:
        return None
    return _related(cells, name, cell.label, None if name in REFERENCES else cell.subset)


def _missing_seeds(cells):
    """One line per cell that has fewer seeds than another cell of its grid at the same subset."""
    groups = {}
    for cell in cells.values():
        groups.setdefault((cell.label, cell.subset), []).append(cell)
    lines = []
    for members in groups.values():
        every = set().union(*(c.seeds() for c in members))
        for cell in members:
            lacking = sorted(every - set(cell.seeds()))
            if lacking:
                lines.append(f"{cell.title} {_subset(cell.subset) or '(reference)'}: {len(cell.runs)} seeds, "
                             f"lacks {_ranges(lacking)} that other cells at this subset have")
    return lines


def _ranges(seeds):
    """'seed 3' or 'seeds 0-4, 7' for a sorted list of seeds."""
    spans = []
    for seed in seeds:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
    return ("seed " if len(seeds) == 1 else "seeds ") + text


# --- writing ---------------------------------------------------------------------------------

def _subset(subset):
    return "" if subset is None else f"{100 * subset:g}%"


def _points(value, sign=False):
    if math.isnan(value):
        return "—"
    value = round(value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0: no "-0.00"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def _percent(value):
    return "" if math.isnan(value) else f"{100 * value:.0f}%"


def _seconds(value, digits=None):
    """Seconds with `digits` decimals; None: whole seconds from 10 s, one decimal from 1 s, two below."""
    if math.isnan(value):
        return "—"
    if digits is None:
        digits = 0 if value >= 10 else 1 if value >= 1 else 2
    return f"{value:.{digits}f}"


def _times(value):
    return "—" if math.isnan(value) else f"{value:.2f}x"


def _markdown(title, command, described, settings, cells, rows, baselines, paper, rates, rates_path, target,
              rule, problems, png):
    lines = [f"# {title}", ""]
    if command:
        lines += ["Produced by:", "", "```", command, "```", ""]
    lines += ["Runs: " + "; ".join(described) + ".", ""]
    if settings:
        lines += [f"Settings every run of the first grid shares: {settings}.", ""]
    lines += _accuracy_table(cells, rows, bool(paper))
    for name in baselines:
        lines += _paired_table(cells, rows, name)
    lines += _timing_table(cells, rows, rates_path, target, rule, _borrowed(rates, cells))
    groups = [dict(strategy=cell.title, subset=cell.subset, **{k: row[k] for k in DIAGNOSTICS})
              for cell, row in zip(cells.values(), rows)]
    diagnostics = diagnostics_table(groups, _subset)
    if diagnostics:
        lines += ["## Selections"] + diagnostics + [""]
    if png:
        lines += ["## Accuracy against training time", "", f"![accuracy against training time]({os.path.basename(png)})",
                  "", "Each line is a cell's mean test accuracy over its seeds after each epoch, at the mean training "
                  "seconds" + (" (epochs x the given seconds per epoch)" if rates is not None else "") + ".", ""]
    lines += ["## Missing or unfinished runs", ""]
    lines += [f"- {line}" for line in problems] or ["None: every run finished, and the cells at each subset have "
                                                    "the same seeds."]
    return "\n".join(lines) + "\n"


def _accuracy_table(cells, rows, with_paper):
    header = "| strategy | subset | seeds | final accuracy % (mean ± std) | best accuracy % (mean) | share of full's gain |"
    lines = ["## Accuracy per cell", "", header + (" paper | paper's share |" if with_paper else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if with_paper else "")]
    no_gain = {}  # label of the references -> (none, full) whose full is not above none
    unmeasured = False  # a cell without a none or a full to take its share against
    for cell, row in zip(cells.values(), rows):
        none, full = _references(cells, cell.label)
        unmeasured = unmeasured or not (none and full)
        share = _percent(row["share_of_full_gain"])
        if _no_gain(none, full):
            no_gain[none.label] = (none, full)
            share = "— (full ≤ none)"
        line = (f"| {cell.title} | {_subset(cell.subset)} | {row['seeds']} | {_points(row['final_accuracy_percent'])} ± "
                f"{_points(row['final_accuracy_std'])} | {_points(row['best_accuracy_percent'])} | {share} |")
        if with_paper:
            theirs = row["paper_accuracy_percent"]
            line += f" {'' if math.isnan(theirs) else f'{theirs:.2f}'} | {_percent(row['paper_share_of_full_gain'])} |"
        lines.append(line)
    lines += ["", "Final test accuracy after the last epoch, mean ± sample std over seeds; best: the best epoch's, "
              "mean over seeds. Share of full's gain: (accuracy - none) / (full - none), against the none and full "
              "cells of the row's own label where both exist, else of the first grid."
              + (" Blank without a finished none or full cell to measure the gain against (bench "
                 "--references none,full)." if unmeasured else "")
              + (" Paper: the published figure for the same strategy and subset, and its share of the published "
                 "full's gain." if with_paper else "")
              + "".join(f" Full ≤ none: {_grid(label)}'s full ({_points(_mean_final(full))}%) is not above its none "
                        f"({_points(_mean_final(none))}%), so there is no gain to take a share of (more seeds or "
                        "epochs may separate them)." for label, (none, full) in no_gain.items()), ""]
    return lines


def _grid(label):
    return f"the grid \"{label}\"" if label else "the first grid"


def _mean_final(cell):
    return statistics.fmean(100 * r.final for r in cell.runs)


def _paired_table(cells, rows, name):
    lines = [f"## Paired differences against {name}", "",
             "| strategy | subset | paired seeds | difference, points (mean ± std) | 95% t-interval | excludes zero |",
             "|---|---|---|---|---|---|"]
    paired = [(cell, row) for cell, row in zip(cells.values(), rows) if _baseline(cells, cell, name) is not None]
    if not paired:
        return [f"## Paired differences against {name}", "",
                f"Nothing to pair: no other strategy's cell has a {name} cell to pair with (at its subset, of its "
                "own label or the first grid's).", ""]
    for cell, row in paired:
        n, low, high = row[f"vs_{name}_n"], row[f"vs_{name}_low"], row[f"vs_{name}_high"]
        interval = "—" if math.isnan(low) else f"{_points(low, True)} to {_points(high, True)}"
        tied = math.isnan(low) and n > 1  # every seed the same difference: no spread to make an interval of
        excludes = ("— (no spread: add seeds)" if tied else "—" if math.isnan(low)
                    else "yes, above" if low > 0 else "yes, below" if high < 0 else "no")
        lines.append(f"| {cell.title} | {_subset(cell.subset)} | {n} | {_points(row[f'vs_{name}_mean'], True)} ± "
                     f"{_points(row[f'vs_{name}_std'])} | {interval} | {excludes} |")
    where = "the same subset" if name not in REFERENCES else "all data"
    lines += ["", f"Each run minus the {name} run with the same seed (same initialisation and data order) at {where}, "
              f"in points, over the seeds both have; {name} of the row's own label where it exists, else of the first "
              "grid. The interval is mean ± t(0.975, n - 1) · std / √n; where every seed gives the same difference "
              "(accuracy moves in whole test images: a few seeds often tie), there is no spread to make one of.", ""]
    return lines


def _timing_table(cells, rows, rates_path, target, rule, borrowed=False):
    source = (f"seconds per epoch from `{rates_path}` (measured elsewhere), times = epochs × those"
              if rates_path else "the runs' own seconds of training and selection (evaluation excluded)")
    per_epoch_column = ("s / epoch, training + selection (given)" if rates_path
                        else "s / epoch, training without selection")
    lines = ["## Time", "", f"Target accuracy {100 * target:.2f}% ({rule}); {source}.", "",
             f"| strategy | subset | seeds | {per_epoch_column} | s / epoch, selection "
             "| seconds, training + selection | speed-up vs full "
             "| time to target, s | seeds reaching it | time-to-target speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    unrated = False
    for cell, row in zip(cells.values(), rows):
        to_target = row["time_to_target"]
        no_rate = bool(rates_path) and math.isnan(row["seconds_per_epoch"])
        unrated |= no_rate
        when = ("no rate in the CSV" if no_rate else _seconds(to_target) if not math.isnan(to_target)
                else "not reached" if not row["reached"] else "not by every seed")
        lines.append(f"| {cell.title} | {_subset(cell.subset)} | {row['seeds']} | {_seconds(row['seconds_per_epoch'], 2)} "
                     f"| {_seconds(row['selection_per_epoch'], 2)} | {_seconds(row['seconds'])} | "
                     f"{_times(row['speedup'])} | {when} | {row['reached']}/{row['seeds']} | "
                     f"{_times(row['target_speedup'])} |")
    per_epoch = ("Seconds per epoch: the given figure (training and selection together)" if rates_path else
                 "Seconds per epoch: training without selection, and selection, mean over seeds; seconds, "
                 "training + selection: their sum over the epochs (evaluation excluded), as bench's results.md "
                 "counts a run's seconds")
    if unrated:
        per_epoch += (f"; no rate in the CSV: `{rates_path}` has no row for that strategy and subset, so the row "
                      "has no times (its seeds reaching the target are still counted)")
    if borrowed:  # right for another length of the same training, not for other settings
        per_epoch += ("; the rows of another grid (a label) that the CSV gives no row of their own (a `label` "
                      "column) take the first grid's rate of their strategy and subset")
    lines += ["", f"{per_epoch}. Time to target: each seed's seconds until its test accuracy first reaches the "
              "target, mean over the seeds (none unless every seed reaches it), as bench's results.md takes it; "
              "speed-ups divide full's figure (of the row's own label where it has one, else, and for a label's "
              "own full row, the first grid's) by the row's.", ""]
    return lines


def _plot(cells, rates, target, path, title):
    series = []
    for cell in cells.values():
        rate = _rate(rates, cell)
        if rate is not None and math.isnan(rate):
            continue
        curve = [row for row in _mean_curve(cell, rate) if row["test_accuracy"] is not None]
        style = "-" if cell.subset is None else "--" if cell.strategy in PAPER_RULES else ":"
        label = cell.title if cell.subset is None else f"{cell.strategy} {_subset(cell.subset)}" + (
            f", {cell.label}" if cell.label else "")
        panel = None if cell.subset is None else f"subset {_subset(cell.subset)}"
        series.append((panel, label, [r["training_seconds"] for r in curve], [100 * r["test_accuracy"] for r in curve],
                       style))
    return plot_mean_curves(series, target, path, title)


def _run_row(run, target, rates):
    rate = _rate(rates, run)
    history = _rated(run.history, rate)
    row = {"label": run.label, "name": run.name, "strategy": run.strategy, "subset": run.subset, "seed": run.seed,
           "epochs": run.epochs, "final_accuracy": run.final, "best_accuracy": run.best,
           "total_seconds": run.seconds, "selection_seconds": run.selection_seconds,
           "time_to_target": time_to_target(history, target)}
    for key in DIAGNOSTICS:
        values = [m[key] for m in run.history if m.get(key) is not None]
        row[key] = statistics.fmean(values) if values else NAN
    return row


def _write_csv(path, rows):
    def write(f):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(list(rows[0]))
        for row in rows:
            writer.writerow(["" if value is None or (isinstance(value, float) and math.isnan(value))
                             else repr(value) if isinstance(value, float) else value for value in row.values()])
    atomic_write(path, write)
