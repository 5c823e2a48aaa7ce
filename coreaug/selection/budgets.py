"""How many examples a selection takes, in total and per class."""
import math
from fractions import Fraction

import numpy as np

from .checks import check_int


def budget_size(fraction, n):
    """Examples in a subset of `fraction` of `n`: round(fraction * n) (halves up), at least 1.

    The product is taken of the fraction as written in decimal (its shortest repr), exactly:
    0.29 * 50 is 14.5, so 15, where floats make it 14.499999999999998."""
    exact = Fraction(repr(float(fraction))) * n
    return min(n, max(1, math.floor(exact + Fraction(1, 2))))


def class_budgets(class_sizes, total, balance="equal", *, seed=None):
    """Split `total` examples over classes of the given sizes, exactly.

    `equal` gives every class the same share (the paper's setting); `proportional`
    gives each class a share proportional to its size (largest remainders). In both,
    a class smaller than its share takes all of its examples and the remainder goes
    to the other classes, so the budgets always sum to min(total, sum(class_sizes)).
    Leftover single examples go to the classes that can take one (`equal`: every class not
    capped by its size, large or small) or with the largest remainders (`proportional`). Ties
    among those go to the lower class positions, or, with a `seed` (an integer >= 0), to classes
    in an order drawn from it: with a budget below the number of classes, selections of other
    seeds leave out other classes, small ones included. With a seed, `proportional` draws who
    takes a leftover example, each class with the chance its remainder gives (systematic
    sampling): a class whose share is under one example (one image of 237 at 10%) gets a pick at
    that rate over the selections, where the largest remainders left it out of every one.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    total = int(min(total, sizes.sum()))
    check_int(seed, "seed", 0, optional=True)
    rng = None if seed is None else np.random.default_rng(seed)
    ties = np.arange(sizes.size) if rng is None else rng.permutation(sizes.size)
    if balance == "proportional":
        whole = int(sizes.sum())
        budgets, remainders = np.divmod(total * sizes, whole)  # in integers: equal remainders tie exactly
        extra = int(total - budgets.sum())
        if rng is None or extra == 0:
            order = np.lexsort((ties, -remainders))
            budgets[order[:extra]] += 1
            return budgets
        # `extra` points `whole` apart over the remainders laid end to end (they sum to extra * whole,
        # each under whole): each class is hit at most once, with chance remainder / whole
        ends = np.cumsum(remainders[ties])
        hit = np.searchsorted(ends, int(rng.integers(whole)) + whole * np.arange(extra), side="right")
        budgets[ties[hit]] += 1
        return budgets
    budgets = np.zeros_like(sizes)
    open_ = np.ones(sizes.size, dtype=bool)
    remaining = total
    while remaining > 0:
        share = remaining // open_.sum()
        capped = open_ & (sizes - budgets <= share)
        if capped.any():  # small classes take everything; their remainder is re-split
            remaining -= int((sizes - budgets)[capped].sum())
            budgets[capped] = sizes[capped]
            open_ &= ~capped
            continue
        budgets[open_] += share
        remaining -= share * int(open_.sum())
        # every open class has room for one more (it held more than its share): all of them tie,
        # whatever their sizes, so that a seed hands the leftover to small classes too
        order = np.lexsort((ties, ~open_))
        budgets[order[:remaining]] += 1
        remaining = 0
    return budgets


def class_members(labels, fraction, balance, seed=None):
    """Per-class budgets of a selection: (classes, budgets, members of each class).

    Takes validated int64 `labels`, the fraction, the balance and the seed of ties between classes
    (`class_budgets`); `members` lists each class's example indices in ascending order, aligned
    with `classes` and `budgets`.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    budgets = class_budgets(sizes, budget_size(fraction, labels.size), balance, seed=seed)
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])
    return classes, budgets, members
