"""Epoch plans: exact example counts per strategy and mode, weights where they belong."""
import pytest
import torch

import coreaug
from coreaug.errors import UsageError
from coreaug.selection import budget_size
from coreaug.training import epoch_plan
from coreaug.training.schedule import learning_rate
from coreaug.training import TrainConfig
from coreaug.training.compiled_step import check_compilable
from coreaug.training.plan import fixed_step_layout

N = 103


def plan_for(strategy, mode="append", fraction=0.3, copies=1, weight_augmented=False):
    k = budget_size(fraction, N)
    selected = torch.arange(0, N, 2)[:k] if strategy not in ("full", "none") else None
    weights = torch.linspace(0.5, 1.5, k) if selected is not None else None
    return epoch_plan(N, strategy=strategy, mode=mode, selected=selected, weights=weights, copies=copies,
                      weight_augmented=weight_augmented, generator=torch.Generator().manual_seed(0)), k


@pytest.mark.parametrize("strategy", ["coreset", "random", "maxloss"])
@pytest.mark.parametrize("copies", [1, 3])
def test_append_trains_everyone_plus_copies_of_the_selection(strategy, copies):
    plan, k = plan_for(strategy, copies=copies)
    assert len(plan) == N + copies * k and plan.n_augmented == copies * k
    assert torch.bincount(plan.indices[~plan.augmented], minlength=N).eq(1).all()
    assert (plan.weights[~plan.augmented] == 1).all()


@pytest.mark.parametrize("strategy", ["coreset", "random", "maxloss"])
def test_subset_trains_the_weighted_selection_plus_its_copies(strategy):
    plan, k = plan_for(strategy, mode="subset")
    assert len(plan) == 2 * k and plan.n_augmented == k
    originals = plan.indices[~plan.augmented]
    assert sorted(originals.tolist()) == list(range(0, 2 * k, 2))
    expected = dict(zip(range(0, 2 * k, 2), torch.linspace(0.5, 1.5, k).tolist()))
    assert all(abs(w - expected[i]) < 1e-6 for i, w in zip(originals.tolist(), plan.weights[~plan.augmented].tolist()))
    assert (plan.weights[plan.augmented] == 1).all()


def test_weight_augmented_gives_copies_the_coreset_weights():
    plan, k = plan_for("coreset", weight_augmented=True)
    assert sorted(plan.weights[plan.augmented].tolist()) == pytest.approx(torch.linspace(0.5, 1.5, k).tolist())


def test_full_and_none_references():
    full, _ = plan_for("full", copies=2)
    none, _ = plan_for("none")
    assert len(full) == 3 * N and full.n_augmented == 2 * N
    assert len(none) == N and none.n_augmented == 0


def test_plan_is_shuffled_and_seeded():
    a, _ = plan_for("coreset")
    b, _ = plan_for("coreset")
    assert a.indices.tolist() == b.indices.tolist()
    assert a.augmented[:20].any() and not a.augmented[: len(a) - 31].all()  # copies are mixed in


def test_shards_are_disjoint_and_cover_the_plan():
    plan, _ = plan_for("coreset")
    usable = len(plan) - len(plan) % 2
    shards = [plan.shard(r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == usable // 2
    # Interleaving the shards' entries gives back the plan's first `usable` entries, each once.
    for field in ("indices", "weights", "augmented"):
        woven = torch.stack([getattr(s, field) for s in shards], dim=1).flatten()
        assert torch.equal(woven, getattr(plan, field)[:usable]), field


def test_cosine_schedule_with_warmup_and_multistep():
    c = TrainConfig(dataset="synthetic", epochs=10, lr=0.1, warmup_epochs=2).resolved()
    assert learning_rate(c, 1) == pytest.approx(0.05)
    assert learning_rate(c, 2) == pytest.approx(0.1)
    assert learning_rate(c, 6) == pytest.approx(0.05)
    assert learning_rate(c, 10) == pytest.approx(0.0)
    m = TrainConfig(dataset="synthetic", epochs=10, lr=0.1, schedule="multistep", milestones=(0.5, 0.8)).resolved()
    assert [round(learning_rate(m, e), 6) for e in (0, 5, 8)] == [0.1, 0.01, 0.001]


@pytest.mark.parametrize("batch_size, world_size", [(1, 1), (2, 2), (4, 4), (4, 8)])
def test_a_compiled_layout_too_small_for_copies_and_an_original_is_refused_not_a_hang(batch_size, world_size):
    """Each batch holds a multiple of world_size copies and at least one original: a batch of
    world_size or fewer entries cannot (the layout's search never ended)."""
    plan = epoch_plan(20, strategy="random", mode="append", selected=torch.arange(10), weights=torch.ones(10),
                      copies=1, weight_augmented=False, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=f"a batch of {batch_size} cannot hold"):
        plan.fixed_steps(batch_size, generator=torch.Generator().manual_seed(0), world_size=world_size) \
            if batch_size % world_size == 0 else fixed_step_layout(10, 10, batch_size, world_size)


def test_a_compiled_layout_needs_a_batch_that_the_processes_divide():
    plan = epoch_plan(20, strategy="none", mode="append", selected=None, weights=None, copies=1,
                      weight_augmented=False, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="multiple of world_size"):
        plan.fixed_steps(32, generator=torch.Generator().manual_seed(0), world_size=3)
    assert len(plan.fixed_steps(1, generator=torch.Generator().manual_seed(0))) == 20  # no copies: any batch


def test_compile_with_a_batch_no_larger_than_the_processes_is_refused_before_anything_is_written(tmp_path):
    config = TrainConfig(dataset="digits", epochs=1, compile=True, batch_size=1, train_limit=20, test_limit=20,
                         out=str(tmp_path / "run"), quiet=True)
    with pytest.raises(UsageError, match=r"batch_size \(1\) must exceed the processes' count \(1\)"):
        check_compilable(config.resolved())
    with pytest.raises(UsageError, match="must exceed"):
        coreaug.train(config)
    assert not (tmp_path / "run").exists()


def test_a_last_batch_of_one_joins_the_batch_before():
    """BatchNorm cannot train on one example (resnet18_imagenet on 32 px, any BatchNorm1d), so the
    batches of 129 entries at 64 are 64 and 65, every entry once, the copies' rows where they are."""
    plan = epoch_plan(99, strategy="random", mode="append", selected=torch.arange(30), weights=torch.ones(30),
                      copies=1, weight_augmented=False, generator=torch.Generator().manual_seed(0))
    batches = plan.on_device(64, "cpu")
    takes = [batches.batch(step) for step in range(batches.steps)]
    assert [t.stop - t.start for t, _ in takes] == [64, 65]
    rows = torch.cat([rows + t.start for t, rows in takes])
    assert torch.equal(rows, torch.nonzero(plan.augmented).flatten())
    assert [b.steps for b in (plan.on_device(65, "cpu"), plan.on_device(128, "cpu"), plan.on_device(200, "cpu"))] \
        == [2, 1, 1]


def test_a_model_with_batchnorm1d_trains_when_one_example_is_left_over(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8), torch.nn.BatchNorm1d(8),
                                torch.nn.ReLU(), torch.nn.Linear(8, 10))
    result = coreaug.train(TrainConfig(dataset="synthetic", train_limit=99, test_limit=20, batch_size=64, epochs=1,
                                       quiet=True), model=model)
    assert result.history[0]["n_trained"] == 99 + 30


def test_a_plans_batches_and_shares_refuse_sizes_and_ranks_that_make_no_batches():
    plan = epoch_plan(10, strategy="none", mode="append", selected=None, weights=None, copies=1,
                      weight_augmented=False, generator=torch.Generator().manual_seed(0))
    for size in (0, -1):
        with pytest.raises(UsageError, match="batch_size must be an integer >= 1"):
            plan.on_device(size, "cpu")
    with pytest.raises(UsageError, match=r"rank must be in \[0, world_size\), got rank 5 of 2"):
        plan.shard(5, 2)
    assert sorted(torch.cat([plan.shard(r, 2).indices for r in range(2)]).tolist()) == list(range(10))
