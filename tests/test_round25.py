"""Round 25: tests where a plausible bug went uncaught, and fixes found by the round's reviews."""
import numpy as np

import coreaug
from coreaug.selection.rules import select_ccs


def test_dropping_singletons_keeps_the_plain_coreset_when_no_replacement_is_less_alone():
    # three points far apart, two picks: every set of two leaves one pick alone, so the earliest
    # set with the fewest singletons, the plain greedy coreset, is the answer
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 20, size=(3, 2)).astype(np.float32)
        y = np.zeros(3, dtype=np.int64)
        plain = coreaug.select_coreset(x, y, 2 / 3)
        dropped = coreaug.select_coreset(x, y, 2 / 3, drop_singletons=True)
        if np.unique(x, axis=0).shape[0] == 3:
            assert sorted(dropped.indices.tolist()) == sorted(plain.indices.tolist())


def test_ccs_spreads_the_budget_over_the_strata_smallest_first():
    # five equal-width strata of difficulty holding 2, 2, 30, 30, 30 examples and 40 picks: the two
    # small strata are taken whole and the rest is shared evenly, 12 each
    norms = np.concatenate([[0.0, 0.5], [1.2, 1.5], np.linspace(2.1, 2.9, 30), np.linspace(3.1, 3.9, 30),
                            np.linspace(4.1, 5.0, 30)])
    x = np.stack([norms, np.zeros_like(norms)], axis=1).astype(np.float32)
    y = np.zeros(norms.size, dtype=np.int64)
    for seed in range(5):
        chosen = select_ccs(y, 40 / norms.size, estimates=x, hard_cut=0.0, strata=5, seed=seed).indices
        counts = np.bincount(np.minimum(norms[chosen], 4.99).astype(int), minlength=5)
        assert counts.tolist() == [2, 2, 12, 12, 12]
