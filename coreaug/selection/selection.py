"""`Selection`: the result of any selection strategy, with save/load."""
import dataclasses
import json
import math
import numbers
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from coreaug.errors import UsageError, path_given
from coreaug.files import atomic_write

from .checks import to_numpy

LISTED_CLASSES = 20  # more classes than this are summarised in `Selection.summary`, not listed


@dataclass
class Selection:
    """A weighted subset of a training set.

    Attributes:
        indices: int64 (k,), unique example indices in selection order (per class,
            classes in ascending order; within a class, the greedy order for coresets).
        weights: float32 (k,), per-example weights with mean 1 (the paper's gamma:
            the size of the cluster each selected example stands for); 1 for baselines.
        strategy: the rule's name ("coreset", "random", "maxloss", or another of coreaug.selection.rules.RULES).
        classes: int64 (c,), the class ids present in the labels.
        class_counts: int64 (c,), how many examples each class contributed.
        class_objectives: float64 (c,), the facility-location value F(S) per class on the
            similarity graph (NaN for strategies that optimise no objective).
        timings: seconds spent per stage, e.g. {"knn": .., "greedy": .., "weights": .., "total": ..}.
        n_total: size of the set the selection was taken from (0: not known).
    """

    indices: np.ndarray
    weights: np.ndarray
    strategy: str
    classes: np.ndarray
    class_counts: np.ndarray
    class_objectives: np.ndarray
    timings: dict = field(default_factory=dict)
    n_total: int = 0

    def __len__(self):
        return int(self.indices.shape[0])

    def __eq__(self, other):
        """Equal when both pick the same examples, in the same order, with the same weights, by the
        same strategy from the same set (classes, counts, objectives: NaN equals NaN); the timings
        are not compared. (The generated comparison raised numpy's "truth value ... ambiguous".)"""
        if not isinstance(other, Selection):
            return NotImplemented
        arrays = [(self.indices, other.indices), (self.weights, other.weights), (self.classes, other.classes),
                  (self.class_counts, other.class_counts)]
        return (self.strategy == other.strategy and self.n_total == other.n_total
                and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in arrays)
                and np.array_equal(np.asarray(self.class_objectives, dtype=np.float64),
                                   np.asarray(other.class_objectives, dtype=np.float64), equal_nan=True))

    __hash__ = None  # mutable arrays: unhashable, as a dataclass with eq is

    @property
    def objective(self):
        """Total facility-location value over classes (NaN for baselines, and where not known)."""
        return float(np.sum(self.class_objectives)) if np.size(self.class_objectives) else float("nan")

    @property
    def fraction(self):
        """The share of the training set selected: len(self) / n_total (NaN for an empty set)."""
        return len(self) / self.n_total if self.n_total else float("nan")

    def summary(self):
        """A few human-readable lines: size, per-class counts (up to `LISTED_CLASSES` classes, else
        their least, median and most, and how many classes got none), objective, seconds."""
        if self.classes.size == 0:  # a selection file that kept only indices and weights
            counts = "not known"
        elif self.classes.size <= LISTED_CLASSES:
            counts = ", ".join(f"{c}:{n}" for c, n in zip(self.classes.tolist(), self.class_counts.tolist()))
        else:
            n = self.class_counts
            counts = (f"{n.size} classes, least {int(n.min())}, median {float(np.median(n)):g}, "
                      f"most {int(n.max())}, {int((n == 0).sum())} with none")
        times = ", ".join(f"{k} {v:.3f}s" for k, v in self.timings.items()) or "not known"
        objective = (f"{self.objective:.6g}" if math.isfinite(self.objective)
                     else "none (this rule optimises none)" if self.classes.size else "not known")
        of = (f"of {self.n_total} examples ({self.fraction:.1%})" if self.n_total
              else "examples (of a set of unknown size)")
        return (f"{self.strategy}: {len(self)} {of}\n"
                f"per class: {counts}\n"
                f"objective: {objective}\n"
                f"seconds: {times}")

    def save(self, path):
        """Write the selection to `path` as .npz (keys indices, weights, ...), atomically."""
        atomic_write(os.path.expanduser(path_given(path, "path", "the selection file's path")), lambda f: np.savez(
            f, indices=self.indices, weights=self.weights, strategy=np.array(self.strategy),
            classes=self.classes, class_counts=self.class_counts, class_objectives=self.class_objectives,
            timings=np.array(json.dumps(self.timings)), n_total=np.array(self.n_total)), mode="wb")

    @classmethod
    def load(cls, path):
        """Read a selection written by `save` (only `indices` and `weights` are required). A file
        that is not one (another .npy/.npz, text, object arrays, optional arrays of other types or
        shapes than `save` writes) is a UsageError; a missing one a FileNotFoundError."""
        path = os.path.expanduser(path_given(path, "path", "the selection file's path"))
        not_one = f"{path} is not a selection file (an .npz written by Selection.save)"
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile):  # not numpy's advice to unpickle it
            raise UsageError(f"{not_one}: numpy reads no arrays from it") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise UsageError(f"{not_one}: it holds a single array, not arrays 'indices' and 'weights'")
        with data:
            if "indices" not in data or "weights" not in data:
                raise UsageError(f"{not_one}: it needs arrays 'indices' and 'weights'")
            try:
                indices, weights = data["indices"], data["weights"]
            except ValueError:  # object arrays, which allow_pickle=False refuses
                raise UsageError(f"{not_one}: its 'indices' or 'weights' hold Python objects, not numbers") from None
            problem = _bad_selection(indices, weights)
            if problem:
                raise UsageError(f"{path} is not a usable selection: {problem}")
            try:
                get = lambda key, default: data[key] if key in data else default  # noqa: E731
                extras = {"strategy": get("strategy", np.array("unknown")),
                          "classes": get("classes", np.zeros(0, np.int64)),
                          "class_counts": get("class_counts", np.zeros(0, np.int64)),
                          "class_objectives": get("class_objectives", np.zeros(0)),
                          "timings": get("timings", np.array("{}")),
                          "n_total": get("n_total", np.array(0))}  # 0: not known
                timings = json.loads(str(extras["timings"]))
            except (ValueError, TypeError):  # object arrays (which allow_pickle=False refuses), bad JSON in timings
                problem = "they hold Python objects, or timings is not JSON"
            else:
                problem = _bad_extras(extras, timings, indices)
            if problem:
                raise UsageError(f"{not_one}: its optional arrays (strategy, classes, class_counts, class_objectives, "
                                 f"timings, n_total) are not what Selection.save writes: {problem}")
            return cls(indices=indices.astype(np.int64), weights=weights.astype(np.float32),
                       strategy=str(extras["strategy"]), classes=extras["classes"].astype(np.int64),
                       class_counts=extras["class_counts"].astype(np.int64),
                       class_objectives=extras["class_objectives"].astype(np.float64),
                       timings=timings, n_total=int(extras["n_total"]))


def check_selection(selection, n, what):
    """`selection` if it is a `Selection` of unique indices in [0, `n`) with finite weights >= 0
    (indices then int64, weights float32), else a UsageError "`what` ...", e.g. "rule 'x'
    returned": for selections made outside coreaug (a registered rule's, a user's)."""
    if not isinstance(selection, Selection):
        raise UsageError(f"{what} an object of type {type(selection).__name__}, not a coreaug.Selection; "
                         "return one, e.g. from select_random or select_coreset")
    indices = to_numpy(selection.indices, "the selection's indices")
    weights = to_numpy(selection.weights, "the selection's weights")
    problem = _bad_selection(indices, weights)
    if problem is None and indices.size and int(indices.max()) >= n:
        problem = f"indices must be < {n}, the number of examples, got {int(indices.max())}"
    if problem:
        raise UsageError(f"{what} an unusable selection: {problem}")
    if indices.dtype == np.int64 and weights.dtype == np.float32 and indices is selection.indices \
            and weights is selection.weights:
        return selection
    return dataclasses.replace(selection, indices=indices.astype(np.int64), weights=weights.astype(np.float32))


def _bad_extras(extras, timings, indices):
    """What is wrong with the optional arrays of a selection file (as `Selection.save` writes them), or None."""
    strategy, classes, counts, objectives, n_total = (extras[key] for key in (
        "strategy", "classes", "class_counts", "class_objectives", "n_total"))
    if strategy.ndim != 0 or strategy.dtype.kind != "U":
        return f"strategy must be one string, got {strategy.dtype} of shape {strategy.shape}"
    for name, array in (("classes", classes), ("class_counts", counts)):  # floats: a hand-built Selection's lists
        if array.ndim != 1 or array.dtype.kind not in "iuf" or not _whole(array) or (array.size and array.min() < 0):
            return f"{name} must be 1-D integers >= 0, got {array.dtype} of shape {array.shape}"
    if counts.shape != classes.shape or objectives.ndim != 1 or objectives.dtype.kind not in "iuf" \
            or objectives.size not in (0, classes.size):
        return (f"classes, class_counts and class_objectives must be 1-D numbers, one per class, got shapes "
                f"{classes.shape}, {counts.shape} and {objectives.shape}")
    if not isinstance(timings, dict) or not all(  # NaN or inf: a hand-built Selection's, saved as JSON NaN
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in timings.values()):
        return f"timings must be a JSON object of seconds, got {str(extras['timings'])[:60]!r}"
    if n_total.ndim != 0 or n_total.dtype.kind not in "iu" or n_total < 0 or (n_total and n_total <= indices.max(
            initial=-1)):
        return f"n_total must be 0 (not known) or an integer above every index, got {n_total.tolist()!r}"
    return None


def _whole(array):
    """Whether every entry of the number array `array` is a whole number (floats such as 3.0 included)."""
    return array.dtype.kind in "iu" or bool(np.all(np.isfinite(array)) and np.all(array == np.floor(array)))


def _bad_selection(indices, weights):
    """What is wrong with a selection's `indices` and `weights` arrays, or None."""
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        return f"indices must be 1-D integers, got {indices.dtype} of shape {indices.shape}"
    if weights.shape != indices.shape or weights.dtype.kind not in "iuf":
        return f"weights must be numbers, one per index ({indices.size}), got {weights.dtype} of shape {weights.shape}"
    if indices.size and indices.min() < 0:
        return f"indices must be >= 0, got {indices.min()}"
    if np.unique(indices).size != indices.size:
        return "indices repeat an example"
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        return "weights must be finite and >= 0"
    if weights.size and weights.max() > np.finfo(np.float32).max:  # kept as float32: it would be inf
        return f"weights must be at most {np.finfo(np.float32).max:.4g} (float32's largest), got {weights.max():.4g}"
    return None
