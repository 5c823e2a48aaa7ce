"""Budgets are exact: round(fraction * n) in total, split per class without overflow."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import coreaug
from coreaug.selection import budget_size, class_budgets


def test_budget_rounds_half_up_and_takes_at_least_one():
    assert budget_size(0.3, 10) == 3
    assert budget_size(0.25, 10) == 3  # 2.5 rounds up
    assert budget_size(0.001, 10) == 1
    assert budget_size(1.0, 7) == 7


def test_equal_split_gives_small_class_all_and_passes_remainder_on():
    assert class_budgets([2, 100, 100], 30, "equal").tolist() == [2, 14, 14]


def test_proportional_split_follows_class_sizes():
    assert class_budgets([10, 30, 60], 10, "proportional").tolist() == [1, 3, 6]


@pytest.mark.parametrize("sizes, budgets", [([3, 29, 29, 17], [1, 7, 6, 4]), ([29, 3, 29, 17], [7, 1, 6, 4])])
def test_proportional_remainders_that_tie_exactly_go_to_the_lower_class_position(sizes, budgets):
    """Remainders 9/13, 9/13, 9/13 computed in floats differed in their last bits: the small class lost the tie."""
    assert class_budgets(sizes, 18, "proportional").tolist() == budgets


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=8),
       fraction=st.floats(0.001, 1.0), balance=st.sampled_from(["equal", "proportional"]))
def test_budgets_sum_exactly_and_respect_class_sizes(sizes, fraction, balance):
    total = budget_size(fraction, sum(sizes))
    budgets = class_budgets(sizes, total, balance)
    assert budgets.sum() == total
    assert (budgets >= 0).all() and (budgets <= np.array(sizes)).all()
    if balance == "equal":  # no class is short while another holds more than one extra
        short = budgets < np.array(sizes)
        if short.any():
            assert budgets[short].max() - budgets[short].min() <= 1
            assert budgets[short].min() >= budgets.max() - 1


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
       fraction=st.floats(0.01, 1.0), balance=st.sampled_from(["equal", "proportional"]))
def test_every_strategy_selects_exactly_the_budget_per_class(sizes, fraction, balance):
    labels = np.repeat(np.arange(len(sizes)) * 3, sizes)  # class ids need not be contiguous
    rng = np.random.default_rng(len(labels))
    features = rng.normal(size=(labels.size, 4)).astype(np.float32)
    expected = class_budgets(sizes, budget_size(fraction, labels.size), balance, seed=1)
    for sel in (coreaug.select_coreset(features, labels, fraction, balance=balance, knn=5, tie_seed=1),
                coreaug.select_random(labels, fraction, balance=balance, seed=1),
                coreaug.select_maxloss(rng.random(labels.size), labels, fraction, balance=balance, tie_seed=1)):
        assert len(np.unique(sel.indices)) == len(sel.indices) == expected.sum()
        per_class = np.bincount(labels[sel.indices] // 3, minlength=len(sizes))
        assert per_class.tolist() == expected.tolist()
        assert sel.weights.shape == sel.indices.shape and sel.weights.dtype == np.float32
        assert sel.weights.mean() == pytest.approx(1.0, rel=1e-5)


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8), total=st.integers(1, 200),
       balance=st.sampled_from(["equal", "proportional"]), seed=st.integers(0, 2 ** 32))
@example(sizes=[6, 29, 40, 27], total=78, balance="proportional", seed=0)  # remainders 60 of 102 tie
def test_a_seed_reorders_only_classes_that_tie(sizes, total, balance, seed):
    """equal: classes tie for a leftover example when they can take one (every class its size does
    not cap); a seed changes nothing else, so without ties the budgets stay. proportional: a seed
    draws who takes the leftover examples (explore18-imbalance), each class its share's floor or
    one more, a class of a whole share exactly that."""
    sizes = np.array(sizes)
    plain, seeded = class_budgets(sizes, total, balance), class_budgets(sizes, total, balance, seed=seed)
    assert seeded.sum() == plain.sum() and (seeded <= sizes).all()
    if balance == "proportional":
        floors, remainders = np.divmod(min(total, sizes.sum()) * sizes, sizes.sum())
        assert ((seeded == floors) | ((seeded == floors + 1) & (remainders > 0))).all()
        return
    capped = plain == sizes  # the uncapped classes tie, whatever their sizes; the capped take all
    key = np.where(capped & (seeded == sizes), -1 - np.arange(sizes.size), 0)
    for k in np.unique(key):  # the extra examples of a tied group are the same, handed out in another order
        assert sorted(seeded[key == k]) == sorted(plain[key == k])
    if np.unique(key).size == key.size:
        assert seeded.tolist() == plain.tolist()


def test_proportional_leftovers_reach_each_class_at_the_rate_of_its_share():
    """The largest remainders gave the same classes nothing at every selection: a class of 1 or 2
    images of 237 at --subset 0.1 was never picked (never trained in subset mode)."""
    sizes = np.array([180, 45, 9, 2, 1])
    assert class_budgets(sizes, 24, "proportional").tolist() == [18, 5, 1, 0, 0]  # unseeded: largest remainders
    drawn = np.array([class_budgets(sizes, 24, "proportional", seed=seed) for seed in range(4000)])
    assert (drawn.sum(axis=1) == 24).all()
    assert np.allclose(drawn.mean(axis=0), 24 * sizes / sizes.sum(), atol=0.03)  # each class its share, on average


def test_the_leftover_reaches_small_classes_too_under_other_seeds():
    """With unequal classes the leftover went to the largest classes at every selection (the most
    room first): classes of 1 and 2 examples were never selected, nor trained in subset mode."""
    sizes = [380, 2, 3, 4, 5, 1]
    assert class_budgets(sizes, 4).tolist() == [1, 1, 1, 1, 0, 0]
    reached = set()
    for seed in range(20):
        budgets = class_budgets(sizes, 4, seed=seed)
        assert budgets.sum() == 4 and budgets.max() == 1
        reached |= set(np.flatnonzero(budgets).tolist())
    assert reached == set(range(6))
    labels = np.repeat(np.arange(6), sizes)
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.01, mode="subset", seed=0)
    assert set(labels[np.concatenate([method.select(epoch).indices for epoch in range(20)])]) == set(range(6))


def test_without_a_seed_leftovers_go_to_the_lower_class_positions():
    assert class_budgets([1] * 10, 6).tolist() == [1] * 6 + [0] * 4
    assert class_budgets([20] * 10, 61).tolist() == [7] + [6] * 9


def test_a_budget_below_the_class_count_goes_to_other_classes_under_other_seeds():
    """Every selection of a seeded method gave classes 0-5 the 6 examples of a 3% subset of 10
    classes: in subset mode classes 6-9 were never trained."""
    assert len({tuple(class_budgets([20] * 10, 6, seed=seed)) for seed in range(10)}) > 1
    labels = np.arange(200) % 10
    rng = np.random.default_rng(0)
    features, losses = rng.normal(size=(200, 4)).astype(np.float32), rng.random(200)
    for select in (lambda seed: coreaug.select_random(labels, 0.03, seed=seed),
                   lambda seed: coreaug.select_coreset(features, labels, 0.03, knn=5, tie_seed=seed),
                   lambda seed: coreaug.select_maxloss(losses, labels, 0.03, tie_seed=seed)):
        picked = [labels[select(seed).indices] for seed in range(20)]
        assert all(len(set(p.tolist())) == 6 for p in picked)  # one example of 6 classes each time
        assert set(np.concatenate(picked).tolist()) == set(range(10))
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.03, mode="subset", seed=5)
    trained = set()
    for epoch in range(20):
        trained |= set(labels[method.start_epoch(epoch).indices.numpy()].tolist())
    assert trained == set(range(10))
