"""`Selection`: the result of any selection strategy, with save/load."""
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from coreaug.errors import UsageError
from coreaug.files import atomic_write

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

    @property
    def objective(self):
        """Total facility-location value over classes (NaN for baselines)."""
        return float(np.sum(self.class_objectives))

    @property
    def fraction(self):
        return len(self) / self.n_total if self.n_total else float("nan")

    def summary(self):
        """A few human-readable lines: size, per-class counts (up to `LISTED_CLASSES` classes, else
        their least, median and most, and how many classes got none), objective, seconds."""
        if self.classes.size <= LISTED_CLASSES:
            counts = ", ".join(f"{c}:{n}" for c, n in zip(self.classes.tolist(), self.class_counts.tolist()))
        else:
            n = self.class_counts
            counts = (f"{n.size} classes, least {int(n.min())}, median {float(np.median(n)):g}, "
                      f"most {int(n.max())}, {int((n == 0).sum())} with none")
        times = ", ".join(f"{k} {v:.3f}s" for k, v in self.timings.items())
        objective = f"{self.objective:.6g}" if math.isfinite(self.objective) else "none (this rule optimises none)"
        return (f"{self.strategy}: {len(self)} of {self.n_total} examples ({self.fraction:.1%})\n"
                f"per class: {counts}\n"
                f"objective: {objective}\n"
                f"seconds: {times}")

    def save(self, path):
        """Write the selection to `path` as .npz (keys indices, weights, ...), atomically."""
        atomic_write(path, lambda f: np.savez(
            f, indices=self.indices, weights=self.weights, strategy=np.array(self.strategy),
            classes=self.classes, class_counts=self.class_counts, class_objectives=self.class_objectives,
            timings=np.array(json.dumps(self.timings)), n_total=np.array(self.n_total)), mode="wb")

    @classmethod
    def load(cls, path):
        """Read a selection written by `save` (only `indices` and `weights` are required)."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if "indices" not in data or "weights" not in data:
                raise UsageError(f"{path} is not a selection file: it needs arrays 'indices' and 'weights'")
            indices, weights = data["indices"], data["weights"]
            problem = _bad_selection(indices, weights)
            if problem:
                raise UsageError(f"{path} is not a usable selection: {problem}")
            get = lambda key, default: data[key] if key in data else default  # noqa: E731
            return cls(
                indices=indices.astype(np.int64),
                weights=weights.astype(np.float32),
                strategy=str(get("strategy", "unknown")),
                classes=get("classes", np.zeros(0, np.int64)),
                class_counts=get("class_counts", np.zeros(0, np.int64)),
                class_objectives=get("class_objectives", np.zeros(0)),
                timings=json.loads(str(get("timings", "{}"))),
                n_total=int(get("n_total", 0)),  # 0: not known
            )


def _bad_selection(indices, weights):
    """What is wrong with a selection file's `indices` and `weights` arrays, or None."""
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
    return None
