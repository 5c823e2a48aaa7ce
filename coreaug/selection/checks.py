"""Validation at the public boundary, done once: the selection API's inputs, and the checks
TrainConfig and CoresetAugmentation share with it (choices, integers, numbers).

Every check raises a UsageError that names the argument, says what was wrong and
what to do about it. Inside the engine the data is trusted. The choices that selection and
training both take (`BALANCES`, `GRADIENT_KINDS`) are defined here once.
"""
import math
import numbers

import numpy as np

from coreaug.errors import UsageError

BALANCES = ("equal", "proportional")
GRADIENT_KINDS = ("logits", "last_layer")


def to_numpy(array, name):
    """Return `array` (numpy array, torch tensor on any device, or sequence) as numpy. A float
    tensor of a dtype numpy lacks (bfloat16, float8) comes back as float32. A scipy.sparse matrix is
    refused: numpy would make a 0-d object array of it."""
    if hasattr(array, "toarray") and hasattr(array, "nnz"):  # scipy.sparse, without importing scipy
        raise UsageError(f"{name} must be a dense array, got a sparse {type(array).__name__}; "
                         f"pass {name}.toarray()")
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # a torch tensor, without importing torch
        array = array.detach().cpu()
        try:
            array = array.numpy()
        except TypeError:  # a dtype numpy lacks
            if not array.is_floating_point():
                raise UsageError(f"{name} must be a numeric tensor numpy can hold, got dtype {array.dtype}") from None
            array = array.float().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{name} must be an array or tensor, got {type(array).__name__}: {exc}") from None


def check_features(features):
    """Features as a C-contiguous float32 (N, D) array (float16 stays float16: callers convert
    a class at a time; bfloat16 tensors become float32) with finite values small enough for
    float32 distances (`largest_feature`) and N >= 1."""
    x = to_numpy(features, "features")
    if x.ndim != 2:
        raise UsageError(f"features must be 2-D (n_examples, n_dims), got shape {x.shape}; "
                         "reshape with features.reshape(len(features), -1)")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(f"features must be non-empty, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise UsageError(f"features must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise UsageError(f"features must be finite, but row {bad} holds NaN or inf "
                         "(check the model's outputs or drop those examples)")
    largest, limit = max(abs(float(x.max())), abs(float(x.min()))), largest_feature(x.shape[1])
    if largest > limit:
        raise UsageError(f"features must lie within +-{limit:.3g} for {x.shape[1]} dims (squared distances "
                         f"between them are computed in float32), got a value of magnitude {largest:.3g}; "
                         "rescale them, e.g. features / abs(features).max() (a common scale leaves the "
                         "picks and weights as they are)")
    if x.dtype != np.float16 and 0 < largest < SMALLEST_FLOAT32:  # float32 holds them as 0 or in a few bits
        raise UsageError(f"features are too small for float32, in which distances are computed (largest magnitude "
                         f"{largest:.3g}, below its smallest full-precision value {SMALLEST_FLOAT32:.3g}); rescale "
                         "them, e.g. features / abs(features).max() (a common scale leaves the picks and weights as "
                         "they are)")
    return np.ascontiguousarray(x, dtype=np.float16 if x.dtype == np.float16 else np.float32)


SMALLEST_FLOAT32 = float(np.finfo(np.float32).tiny)  # below it float32 is subnormal: fewer digits, then 0


def largest_feature(dims):
    """The largest feature magnitude whose squared distances fit float32 in `dims` dimensions:
    (2 * m) ** 2 * dims below float32's maximum."""
    return math.sqrt(float(np.finfo(np.float32).max) / (4 * dims))


def check_keep(keep, n):
    """`keep` as a bool (n,) mask, one entry per example; 0/1 integers are taken as bools."""
    mask = to_numpy(keep, "keep")
    if mask.ndim != 1 or mask.shape[0] != n:
        raise UsageError(f"keep must be a bool mask of shape ({n},), one entry per example, got shape "
                         f"{mask.shape}; build it as mask = np.zeros({n}, bool); mask[kept] = True")
    if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.number) and np.isin(mask, (0, 1)).all()):
        raise UsageError(f"keep must be a bool mask (True for examples that may be picked), got dtype "
                         f"{mask.dtype} with values other than 0 and 1")
    return mask.astype(bool, copy=False)


def _rows_advice(y):
    """What to do with 2-D labels: one-hot or soft rows (one largest value each) have class ids;
    multi-hot rows (several classes, or none) have none, and argmax would make them wrong ones."""
    if y.shape[1] == 0:
        return "; rows of no class"
    numeric = y.dtype.kind in "biuf"
    rows = y.astype(np.float64) if numeric else None
    if numeric and np.isfinite(rows).all() and ((rows == rows.max(axis=1, keepdims=True)).sum(axis=1) == 1).all() \
            and np.allclose(rows.sum(axis=1), 1):
        return "; one-hot or soft rows? class ids are labels.argmax(1)"
    return ("; rows that mark several classes (or none) have no class id: coreaug selects per class of one label "
            "each. For multi-label targets pass one stratifying id per example (all 0 for one pool) and select on "
            "scores of your own: select(epoch, estimates=..., losses=...)")


def check_labels(labels, n=None):
    """Labels as a 1-D int64 array of non-negative class ids (length n if given)."""
    y = to_numpy(labels, "labels")
    if y.ndim == 0 and y.dtype == object:  # a generator, dict or set, which to_numpy leaves whole
        raise UsageError(f"labels must be 1-D (n_examples,), got a {type(labels).__name__}; give a list, array "
                         "or tensor of class ids")
    if y.ndim != 1:
        advice = ("; flatten a column with labels.ravel()" if y.ndim == 2 and y.shape[1] == 1 else
                  _rows_advice(y) if y.ndim == 2 else "")
        raise UsageError(f"labels must be 1-D (n_examples,), got shape {y.shape}{advice}")
    if y.size == 0:
        raise UsageError("labels must be non-empty, got 0 labels")
    if y.dtype.kind in "USO":  # class names: a cast to int64 fails on them
        raise UsageError(f"labels must be integer class ids, got dtype {y.dtype}; number the classes "
                         "0, 1, 2, ... with np.unique(labels, return_inverse=True)[1] (np.unique(labels) "
                         "then names them back)")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        cast = ("labels.long()" if hasattr(labels, "detach") else "labels.astype('int64')"
                if isinstance(labels, np.ndarray) else "np.asarray(labels, dtype=np.int64)")  # as their type casts
        raise UsageError(f"labels must be integer class ids, got dtype {y.dtype}; "
                         f"cast them with {cast} if they are whole numbers")
    if y.min() < 0:
        raise UsageError(f"labels must be non-negative class ids, got {int(y.min())}")
    if int(y.max()) > np.iinfo(np.int64).max:  # uint64 ids that int64 would wrap to negative ones
        raise UsageError(f"labels must be class ids below 2**63, got {int(y.max())}; "
                         "number the classes 0, 1, 2, ... (np.unique(labels, return_inverse=True)[1])")
    if n is not None and y.shape[0] != n:  # named by the rows first: in the own loop the labels are right
        raise UsageError(f"the features (gradient estimates, logits) have {n} rows but there are {y.shape[0]} "
                         "labels; they must have the same length: one row per example, in the labels' order")
    return y.astype(np.int64, copy=False)


def check_losses(losses, n):
    """Per-example losses as a finite 1-D float64 array of length n."""
    x = to_numpy(losses, "losses")
    if x.ndim != 1:
        raise UsageError(f"losses must be 1-D (n_examples,), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise UsageError(f"losses must be numeric, got dtype {x.dtype}")
    if x.shape[0] != n:
        raise UsageError(f"losses has {x.shape[0]} entries but labels has {n}; "
                         "they must have the same length")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise UsageError("losses must be finite, got NaN or inf")
    return x


NARROW_FLOATS = {"float32": np.float32, "float16": np.float16}


def check_fraction(fraction):
    """The subset fraction as a float in (0, 1] (a 0-dim tensor or array holding one is taken; a
    float32 or float16 one as its shortest decimal, 0.29 for np.float32(0.29), as budgets read
    the fraction as written)."""
    if getattr(fraction, "ndim", None) == 0 and hasattr(fraction, "item"):  # torch.tensor(0.3), np.array(0.3)
        narrow = NARROW_FLOATS.get(str(getattr(fraction, "dtype", "")).removeprefix("torch."))
        fraction = fraction.item()
        if narrow is not None and isinstance(fraction, float) and math.isfinite(fraction):
            fraction = float(str(narrow(fraction)))  # 0.28999999165534973 is a float32's 0.29
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or math.isnan(fraction):
        raise UsageError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if not 0 < fraction <= 1:
        count = ""
        if fraction > 1 and float(fraction).is_integer():  # a count given as the fraction
            count = f"; to select {fraction:.0f} of n examples pass {fraction:.0f} / n (the budget rounds it back)"
        raise UsageError(f"fraction must be in (0, 1], got {fraction}{count}")
    return float(fraction)


def check_choice(value, name, choices, *, unknown=False):
    """`value` if it is one of `choices`, else a UsageError: "name must be one of 'a', 'b',
    got 'c'" (the API's wording), or with `unknown`, "unknown name 'c'; choose one of: a, b"
    (TrainConfig's and the CLI's)."""
    if value not in choices:
        if unknown:
            raise UsageError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
        raise UsageError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_positive_int(value, name):
    """`value` as an int if it is an integer >= 1 ("name must be a positive integer")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_bool(value, name):
    """`value` as a bool if it is True or False (numpy's too), else a UsageError: a string such as
    "no" from a YAML or CLI value would otherwise count as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_int(value, name, low=1, *, optional=False, unit=""):
    """`value` (an integer >= `low`, or None if `optional`) as given, else a UsageError:
    "name must be an integer >= low [(unit)] [or None], got value"."""
    if value is None and optional:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        unit = f" ({unit})" if unit else ""
        raise UsageError(f"{name} must be an integer >= {low}{unit}{' or None' if optional else ''}, got {value!r}")
    return value


def is_number(value):
    """Whether `value` is a finite real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
