"""Round 15 (explore15-selection): crust's replacement of singleton picks, select_random's
leftovers with a Generator or None, narrow-float fractions, and select's --losses help."""
import numpy as np
import pytest

import coreaug
from coreaug.selection.rules import select_by_rule
from coreaug.selection.weights import cluster_sizes


def _outliers(seed=13, clean=200, far=10):
    """One class of `clean` points around 0 and `far` outliers, each far from everything."""
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(size=(clean, 10)),
                   rng.normal(size=(far, 10)) + 8 * rng.choice([-1, 1], size=(far, 10))]).astype(np.float32)
    return x, np.zeros(len(x), dtype=np.int64), np.arange(clean, clean + far)


@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.4])
def test_crust_replaces_the_outliers_the_coreset_picks(fraction):
    """crust lengthened the greedy order and counted non-singletons in that longer order, which
    only fall as it grows: from 30% on it returned the plain coreset, outliers and all."""
    x, y, outliers = _outliers()
    coreset = select_by_rule("coreset", y, fraction, estimates=x)
    crust = select_by_rule("crust", y, fraction, estimates=x)
    assert np.isin(coreset.indices, outliers).sum() == 10  # each outlier is its own cluster: the greedy takes it
    assert len(crust) == len(coreset) and len(np.unique(crust.indices)) == len(crust)
    assert np.isin(crust.indices, outliers).sum() == 0
    alone = (cluster_sizes(x, crust.indices) == 1).sum()
    assert alone < (cluster_sizes(x, coreset.indices) == 1).sum()
    assert np.allclose(crust.weights.sum(), len(crust))


def test_crust_on_noisy_digits_drops_mislabelled_singletons():
    """On digits with 20% of the labels flipped, crust at 30% picked the coreset's examples
    (singletons and flipped labels included)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    labels = digits.target.copy()
    flipped = rng.random(len(labels)) < 0.2
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    x = (digits.data / 16).astype(np.float32)
    coreset = select_by_rule("coreset", labels, 0.3, estimates=x)
    crust = select_by_rule("crust", labels, 0.3, estimates=x)
    assert not np.array_equal(np.sort(coreset.indices), np.sort(crust.indices))
    assert flipped[crust.indices].sum() < flipped[coreset.indices].sum()
    assert len(crust) == len(coreset)


def test_crust_keeps_the_coreset_where_nothing_is_alone_and_all_at_fraction_one():
    x, y, _ = _outliers(far=0)
    coreset = select_by_rule("coreset", y, 0.05, estimates=x)
    if (cluster_sizes(x, coreset.indices) > 1).all():
        assert np.array_equal(select_by_rule("crust", y, 0.05, estimates=x).indices, coreset.indices)
    everyone = select_by_rule("crust", y, 1.0, estimates=x)  # every pick alone, none to replace it with
    assert np.array_equal(np.sort(everyone.indices), np.arange(len(y)))


@pytest.mark.parametrize("seed", [None, "generator"])
def test_select_random_without_an_integer_seed_hands_the_leftovers_to_every_class(seed):
    """With a Generator or None the budget's leftover examples went to the lowest class ids:
    at 6 picks of 10 classes, classes 6-9 were never drawn."""
    labels = np.repeat(np.arange(10), 10)
    rng = np.random.default_rng(0)
    seen = np.zeros(10, dtype=int)
    for _ in range(60):
        selection = coreaug.select_random(labels, 0.06, seed=rng if seed else None)
        seen[np.unique(labels[selection.indices])] += 1
    assert (seen > 0).all(), seen
    assert np.array_equal(coreaug.select_random(labels, 0.06, seed=3).indices,
                          coreaug.select_random(labels, 0.06, seed=3).indices)


def test_a_narrow_float_fraction_selects_the_budget_of_its_decimal():
    """np.float32(0.29) of 50 examples selected 14 where 0.29 selects 15 (its repr,
    0.28999999165534973, was the fraction "as written")."""
    import torch

    labels = np.repeat(np.arange(2), 25)
    sizes = {len(coreaug.select_random(labels, f, seed=0))
             for f in (0.29, np.float32(0.29), torch.tensor(0.29), np.float16(0.29), torch.tensor(0.29).half())}
    assert sizes == {15}


def test_select_help_says_the_history_rules_read_the_losses_as_given():
    from click.testing import CliRunner

    from coreaug.cli.main import app

    text = " ".join(CliRunner().invoke(app, ["select", "--help"]).output.split())
    assert "for coreset-history and coreset-heldout, each example's mean loss over earlier selections" in text


def _replaced_by_hand(x, budget, knn=20):
    """crust's picks for one class the plain way: each round recomputes every cluster."""
    from coreaug.selection.facility_location import lazy_greedy
    from coreaug.selection.knn import knn_graph

    order, _ = lazy_greedy(knn_graph(x, knn), len(x))
    held, after, dropped, best = list(order[:budget]), budget, [], None
    while True:
        alone = cluster_sizes(x, np.array(held)) == 1
        if best is None or alone.sum() < best[0]:
            best = (alone.sum(), list(held))
        new = list(order[after:after + alone.sum()])
        if not alone.any() or not new:
            break
        after += len(new)
        dropped += [p for p, a in zip(held, alone) if a]
        held = [p for p, a in zip(held, alone) if not a] + new
        held += dropped[:budget - len(held)]
    return sorted(best[1])


@pytest.mark.parametrize("seed", range(6))
def test_crust_keeps_its_clusters_up_to_date_as_a_full_recount_would(seed):
    """Each round searches the class against the new picks only: the picks must be those of
    recomputing every cluster each round (outliers and duplicates included)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 200))
    x = rng.normal(size=(n, 1 + seed)).astype(np.float32)
    x[: n // 6] *= 12
    x[n // 2:n // 2 + 4] = x[1]
    y = np.zeros(n, dtype=np.int64)
    for fraction in (0.2, 0.5, 0.9):
        crust = select_by_rule("crust", y, fraction, estimates=x)
        assert sorted(crust.indices.tolist()) == _replaced_by_hand(x, len(crust)), fraction
