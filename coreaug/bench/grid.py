"""The runs of a benchmark grid: one `coreaug.train` run per (strategy, subset, seed), each in
its own folder, with finished runs skipped and interrupted ones resumed."""
import dataclasses
import json
import math
import numbers
import os
import tempfile
from dataclasses import dataclass

from coreaug.errors import UsageError
from coreaug.training import TrainConfig, train
from coreaug.training.config import SELECTING
from coreaug.training.run_files import same_settings

REFERENCES = ("full", "none")


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
        """"finished" (summary.json written), "interrupted" (a checkpoint, no summary) or "new"."""
        if os.path.exists(os.path.join(self.folder, "summary.json")):
            return "finished"
        return "interrupted" if os.path.exists(os.path.join(self.folder, "checkpoint.pt")) else "new"


def plan_grid(config, out, subsets, strategies, references, seeds):
    """The runs of a grid, validated before anything is trained.

    Takes the base TrainConfig (every field applies to every run; `strategy`, `subset`,
    `seed`, `out` and `resume` are set per run), the grid's folder `out`, the selection
    `subsets` (fractions in (0, 1]), the selecting `strategies` (coreset, random, maxloss),
    the `references` (full, none) and the number of `seeds` (config.seed, config.seed + 1, ...).
    Returns a list of GridRun, references first. Raises UsageError for an unknown strategy,
    an empty grid, a subset out of range, a bad config, or a run folder that holds a run
    with another config.
    """
    strategies, references = _unique(strategies), _unique(references)
    subsets = _unique(_check_subset(s) for s in subsets)
    for name in strategies:
        if name in REFERENCES:
            raise UsageError(f"{name!r} is a reference, not a selecting strategy; pass it with --references {name}")
        if name not in SELECTING:
            raise UsageError(f"unknown strategy {name!r}; choose from: {', '.join(SELECTING)}")
    for name in references:
        if name not in REFERENCES:
            raise UsageError(f"unknown reference {name!r}; choose from: {', '.join(REFERENCES)}")
    if strategies and not subsets:
        raise UsageError(f"--subsets is empty but strategies {', '.join(strategies)} need selection "
                         "fractions; give e.g. --subsets 0.1,0.3")
    if isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral) or seeds < 1:
        raise UsageError(f"seeds must be an integer >= 1, got {seeds!r}")
    cells = [(r, None) for r in references] + [(s, f) for s in strategies for f in subsets]
    if not cells:
        raise UsageError("the grid is empty: give at least one of --strategies (with --subsets) or --references")

    runs = []
    for strategy, subset in cells:
        for k in range(seeds):
            seed = config.seed + k
            name = f"{strategy}-seed{seed}" if subset is None else f"{strategy}-{subset:g}-seed{seed}"
            # References train everyone (full) or no one (none) strongly; subset is unused there,
            # so it is pinned to 1 to keep their config (and folder identity) one per seed.
            run_config = dataclasses.replace(config, strategy=strategy, subset=1.0 if subset is None else subset,
                                             seed=seed, out=os.path.join(out, "runs", name), resume=True).resolved()
            runs.append(GridRun(name, strategy, subset, seed, run_config))
    for run in runs:
        _check_folder_matches(run)
    return runs


def check_writable(out):
    """Create `out/runs` and prove a file can be written there; UsageError naming the folder if not."""
    try:
        os.makedirs(os.path.join(out, "runs"), exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"--out {out} is not a writable folder ({reason}); choose another --out") from None


def run_grid_runs(runs, report=None):
    """Train every run that has no summary yet (resuming from its checkpoint); skip the others.

    `report(run, status, position)` is called after each run with status "trained",
    "resumed" (continued from its checkpoint) or "skipped". Returns the number of runs trained.
    """
    trained = 0
    for position, run in enumerate(runs, 1):
        state = run.state()
        if state == "finished":
            status = "skipped"
        else:
            train(run.config)  # resume=True: continues from checkpoint.pt when there is one
            trained += 1
            status = "resumed" if state == "interrupted" else "trained"
        if report:
            report(run, status, position)
    return trained


def _check_folder_matches(run):
    path = os.path.join(run.folder, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = json.load(f)
    if not same_settings(stored, run.config.identity()):
        raise UsageError(f"{run.folder} holds a run with other settings than this grid's; "
                         "use the same flags as before, another --out, or remove that folder")


def _check_subset(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 < value <= 1:
        raise UsageError(f"subsets must be fractions in (0, 1], got {value!r}")
    return float(value)


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
