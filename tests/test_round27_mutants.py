"""Round 27 mutation gaps: each test fails with its mutant applied."""
import numpy as np
import pytest
import torch

import coreaug
from coreaug.selection import Selection
from coreaug.training.plan import EpochPlan, epoch_plan

LABELS = torch.arange(40) % 4


def picked(indices, n=len(LABELS), weights=None):
    """A Selection of `indices` of a training set of `n` (weights 1 unless given)."""
    indices = np.asarray(indices, dtype=np.int64)
    weights = np.ones(len(indices), np.float32) if weights is None else np.asarray(weights, np.float32)
    return Selection(indices=indices, weights=weights, strategy="random", classes=np.arange(1),
                     class_counts=np.array([len(indices)]), class_objectives=np.full(1, np.nan), n_total=n)


def test_a_loaded_state_keeps_the_selections_diagnostics():
    """Mutant: state_dict() saves the diagnostics as {}."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25, seed=5)
    method.start_epoch(0)
    method.start_epoch(1)
    assert method.diagnostics
    restored = coreaug.CoresetAugmentation(LABELS, fraction=0.25, seed=5)
    restored.load_state_dict(method.state_dict())
    assert restored.diagnostics == method.diagnostics


def test_an_older_state_two_examples_off_the_fractions_budget_is_refused():
    """Mutant: an older state's selection size is tolerated 2 examples off the budget (not 1)."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25)  # a budget of 10
    for size, refused in ((9, False), (11, False), (8, True), (12, True)):
        state = {"selection": None, "selected_at": 0, "diagnostics": {}, "loss_sums": None, "loss_count": 0,
                 "loss_held": None}
        s = picked(np.arange(size))
        state["selection"] = {"indices": torch.from_numpy(s.indices), "weights": torch.from_numpy(s.weights),
                              "strategy": "random", "classes": torch.from_numpy(s.classes),
                              "class_counts": torch.from_numpy(s.class_counts),
                              "class_objectives": torch.from_numpy(s.class_objectives), "timings": {},
                              "n_total": len(LABELS)}
        fresh = coreaug.CoresetAugmentation(LABELS, fraction=0.25)
        if refused:
            with pytest.raises(coreaug.UsageError, match=f"a selection of {size} examples"):
                fresh.load_state_dict(state)
        else:
            fresh.load_state_dict(state)
    assert method.selection is None


def test_a_state_whose_held_out_counts_cover_another_training_set_is_refused():
    """Mutant: load_state_dict checks the length of loss_sums only, not of loss_held."""
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset-heldout", fraction=0.25)
    method.remember_losses(torch.rand(len(LABELS)))
    state = method.state_dict()
    state["loss_held"] = torch.ones(len(LABELS) + 3, dtype=torch.float64)
    fresh = coreaug.CoresetAugmentation(LABELS, strategy="coreset-heldout", fraction=0.25)
    with pytest.raises(coreaug.UsageError, match="loss_held cover 43 examples"):
        fresh.load_state_dict(state)
    assert fresh.loss_held is None and fresh.loss_count == 0



def test_a_shard_keeps_its_copies_partners():
    """Mutant: EpochPlan.shard drops the partners (None): a crust run's ranks would mix no copy."""
    labels = torch.arange(12) % 2
    selected = torch.tensor([0, 2, 4, 1, 3, 5])
    plan = epoch_plan(12, strategy="crust", mode="append", selected=selected, weights=torch.ones(6), copies=2,
                      weight_augmented=False, generator=torch.Generator().manual_seed(1), partner_labels=labels)
    for rank in range(3):
        share = plan.shard(rank, 3)
        assert share.partners is not None and torch.equal(share.partners, plan.partners[rank::3])


def test_a_plan_of_one_entry_is_one_batch():
    """Mutant: DevicePlan.build joins a last batch of one to the batch before also when it is the only batch."""
    plan = EpochPlan(torch.tensor([0]), torch.ones(1), torch.tensor([False]))
    batches = plan.on_device(4, "cpu")
    assert batches.steps == 1
    take, strong = batches.batch(0)
    assert batches.indices[take].tolist() == [0] and strong is None


def test_a_compiled_layout_that_repeats_entries_several_times_gives_each_repeat_its_own_slot():
    """Mutant: _topped_up counts every repeat as the first (1), so a second repeat draws as the first."""
    plan = EpochPlan(torch.tensor([0, 1, 0]), torch.ones(3), torch.tensor([False, False, True]),
                     slots=torch.tensor([0, 0, 1]))
    fixed = plan.fixed_steps(16, generator=torch.Generator().manual_seed(0))
    keys = list(zip(fixed.indices.tolist(), fixed.entry_slots().tolist()))
    assert len(fixed) == 16 and len(set(keys)) == 16


def test_a_shard_of_rank_world_size_is_refused():
    """Mutant: EpochPlan.shard accepts rank == world_size (an empty share)."""
    plan = EpochPlan(torch.arange(8), torch.ones(8), torch.zeros(8, dtype=torch.bool))
    with pytest.raises(coreaug.UsageError, match="rank must be in"):
        plan.shard(2, 2)


def test_a_seed_past_2_29_draws_each_epoch_its_own_plan():
    """Mutant: epoch_generator hashes a large seed without the epoch (every epoch one order)."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25, seed=2 ** 30, select_every=100)
    method.start_epoch(0)
    assert not torch.equal(method.plan_for(0).indices, method.plan_for(1).indices)
    assert torch.equal(method.plan_for(1).indices, method.plan_for(1).indices)
