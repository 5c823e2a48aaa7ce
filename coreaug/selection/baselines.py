"""Baseline selections with the coreset's budgets and weight 1: random and max-loss."""
import time

import numpy as np

from .budgets import class_members
from .checks import BALANCES, check_choice, check_fraction, check_labels, check_losses
from .selection import Selection


def _per_class(labels, fraction, balance, strategy, rank):
    """Take each class's first `budget` members in the order `rank(members)` gives."""
    start = time.perf_counter()
    y = check_labels(labels)
    fraction = check_fraction(fraction)
    check_choice(balance, "balance", BALANCES)
    classes, budgets, members_of = class_members(y, fraction, balance)
    indices = np.concatenate([rank(m)[:b] for m, b in zip(members_of, budgets)]).astype(np.int64)
    return Selection(
        indices=indices, weights=np.ones(indices.size, dtype=np.float32), strategy=strategy,
        classes=classes.astype(np.int64), class_counts=budgets.astype(np.int64),
        class_objectives=np.full(classes.size, np.nan),
        timings={"total": time.perf_counter() - start}, n_total=int(y.size),
    )


def select_random(labels, fraction, *, balance="equal", seed=0):
    """A uniformly random subset per class with the coreset's budgets; weights 1.

    Takes integer `labels` (n,), `fraction` in (0, 1], `balance` and a `seed`.
    Returns a `Selection` (strategy "random").
    """
    rng = np.random.default_rng(seed)
    return _per_class(labels, fraction, balance, "random", rng.permutation)


def select_maxloss(losses, labels, fraction, *, balance="equal"):
    """The highest-loss examples of each class with the coreset's budgets; weights 1.

    Takes per-example `losses` (n,), integer `labels` (n,), `fraction` and `balance`.
    Ties go to the lower index. Returns a `Selection` (strategy "maxloss").
    """
    y = check_labels(labels)
    loss = check_losses(losses, y.size)
    return _per_class(y, fraction, balance, "maxloss", lambda m: m[np.argsort(-loss[m], kind="stable")])
