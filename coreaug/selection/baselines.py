"""Baseline selections with the coreset's budgets and weight 1: random and max-loss."""
import numbers
import time

import numpy as np

from coreaug.errors import UsageError

from .budgets import class_members
from .checks import BALANCES, check_choice, check_fraction, check_int, check_labels, check_losses
from .selection import Selection
from .weights import normalise_weights


def per_class_selection(labels, fraction, balance, strategy, pick, seed=None):
    """A `Selection` built class by class: `pick(members, budget)` returns the class's picks and
    their raw weights (normalised to mean 1 over the selection, `normalise_weights`); `seed` breaks
    ties between classes for the budget's leftover examples (`class_budgets`)."""
    start = time.perf_counter()
    y = check_labels(labels)
    fraction = check_fraction(fraction)
    check_choice(balance, "balance", BALANCES)
    classes, budgets, members_of = class_members(y, fraction, balance, seed)
    picked = [pick(m, int(b)) for m, b in zip(members_of, budgets)]
    return Selection(
        indices=np.concatenate([i for i, _ in picked]).astype(np.int64),
        weights=normalise_weights(np.concatenate([w for _, w in picked])), strategy=strategy,
        classes=classes.astype(np.int64), class_counts=budgets.astype(np.int64),
        class_objectives=np.full(classes.size, np.nan),
        timings={"total": time.perf_counter() - start}, n_total=int(y.size),
    )


def _per_class(labels, fraction, balance, strategy, rank, seed=None):
    """Take each class's first `budget` members in the order `rank(members)` gives; weights 1."""
    return per_class_selection(labels, fraction, balance, strategy, lambda m, b: (rank(m)[:b], np.ones(b)), seed)


def select_random(labels, fraction, *, balance="equal", seed=0):
    """A uniformly random subset per class with the coreset's budgets; weights 1.

    Takes integer `labels` (n,), `fraction` in (0, 1], `balance` and a `seed`: an integer >= 0,
    which also breaks ties between classes for the budget's leftover examples (`class_budgets`),
    a `np.random.Generator` to draw from, or None for a different selection at every call (both
    also draw the order in which classes get the leftover examples).
    Returns a `Selection` (strategy "random").
    """
    if not isinstance(seed, np.random.Generator) and seed is not None \
            and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise UsageError(f"seed must be an integer >= 0, a np.random.Generator or None, got {seed!r}")
    rng = np.random.default_rng(seed)
    # a Generator or None draws the classes' order for the leftovers too: None handed them to the lowest ids
    ties = int(rng.integers(2**31)) if seed is None or isinstance(seed, np.random.Generator) else int(seed)
    return _per_class(labels, fraction, balance, "random", rng.permutation, ties)


def select_maxloss(losses, labels, fraction, *, balance="equal", tie_seed=None):
    """The highest-loss examples of each class with the coreset's budgets; weights 1.

    Takes per-example `losses` (n,) (finite, of any float dtype, bfloat16 included), integer
    `labels` (n,), `fraction` and `balance`. Ties within a class go to the lower index; ties
    between classes for the budget's leftover examples to the lower class positions, or with
    `tie_seed` (an integer >= 0) in an order drawn from it (`class_budgets`).
    Returns a `Selection` (strategy "maxloss").
    """
    y = check_labels(labels)
    loss = check_losses(losses, y.size)
    check_int(tie_seed, "tie_seed", 0, optional=True)
    return _per_class(y, fraction, balance, "maxloss", lambda m: m[np.argsort(-loss[m], kind="stable")], tie_seed)
