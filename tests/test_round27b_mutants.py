"""Round 27 mutation gaps, second batch: each test fails with its mutant applied."""
import warnings

import numpy as np
import pytest
import torch

import coreaug
from coreaug.selection import Selection

LABELS = torch.arange(40) % 4


def picked(indices, n=len(LABELS)):
    """A Selection of `indices` (weights 1) of a training set of `n`."""
    indices = np.asarray(indices, dtype=np.int64)
    return Selection(indices=indices, weights=np.ones(len(indices), np.float32), strategy="random",
                     classes=np.arange(1), class_counts=np.array([len(indices)]),
                     class_objectives=np.full(1, np.nan), n_total=n)


def test_a_sharded_samplers_total_size_counts_every_ranks_items():
    """Mutant: PlanSampler.total_size is this rank's items alone, not num_replicas times them."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25, seed=3)
    method.start_epoch(0)
    sampler = method.sampler(num_replicas=3, rank=1)
    assert len(sampler) == len(method.plan) // 3
    assert sampler.total_size == 3 * len(sampler) == len(method.plan) - len(method.plan) % 3


def test_an_item_drawn_before_the_selection_changed_is_refused_by_the_dataset():
    """Mutant: the dataset serves an item drawn under an older selection (its version below the method's)."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25, seed=1)
    dataset = method.dataset(torch.utils.data.TensorDataset(torch.zeros(len(LABELS), 1, 2, 2), LABELS))
    method.start_epoch(0)
    items = list(method.sampler())  # drawn under epoch 0's selection
    assert len(dataset[items[0]]) == 3
    method.use(picked(np.arange(10)), 0)
    with pytest.raises(coreaug.UsageError, match=r"the selection changed \(start_epoch, use or load_state_dict\)"):
        dataset[items[0]]


def test_a_held_out_rule_remembers_no_loss_taken_inside_the_selection_in_use():
    """Mutant: remember_losses adds the selected examples' losses to a held-out rule's sums."""
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset-heldout", fraction=0.25)
    method.remember_losses(torch.full((len(LABELS),), 2.0))  # nothing selected yet: every example held out
    method.use(picked(np.arange(10)), 0)
    method.remember_losses(torch.full((len(LABELS),), 0.5))  # 0-9 trained: their losses do not count
    assert method.loss_sums[:10].tolist() == [2.0] * 10 and method.loss_sums[10:].tolist() == [2.5] * 30
    means = method.mean_losses(torch.full((len(LABELS),), 1.0))
    assert torch.allclose(means[:10], torch.tensor(2.0)) and torch.allclose(means[10:], torch.tensor(3.5 / 3))


def test_a_held_out_mean_is_the_current_loss_where_no_loss_was_taken_outside_the_selection():
    """Mutant: the held-out mean is 0 (not the current loss) for an example never held out."""
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset-heldout", fraction=0.25)
    method.use(picked(np.arange(10)), 0)  # a selection before any loss was remembered (a warm-up's, say)
    means = method.mean_losses(torch.arange(len(LABELS), dtype=torch.float32))
    assert torch.equal(means, torch.arange(len(LABELS), dtype=torch.float32))


def test_a_selection_forgotten_and_made_again_at_its_epoch_is_not_told_the_model_is_untrained():
    """Mutant: start_epoch warns of an untrained model where it scored these parameters at this same epoch."""
    images = torch.rand(len(LABELS), 1, 2, 2, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4))
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method.start_epoch(0, model, images)
        method.use(None, None)  # forgotten: the next start_epoch selects again, at the same epoch
        method.start_epoch(0, model, images)
    assert method.selected_at == 0


def test_a_state_whose_fraction_was_saved_as_a_float32s_value_loads_into_that_fraction():
    """Mutant: a state's fraction must be the method's exactly (a float32's 0.30000001192092896 is refused)."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.3, seed=4)
    method.start_epoch(0)
    state = method.state_dict()
    state["settings"]["fraction"] = float(np.float32(0.3))  # as a coreaug of 2026-12-05 saved np.float32(0.3)
    restored = coreaug.CoresetAugmentation(LABELS, fraction=0.3, seed=4)
    restored.load_state_dict(state)
    assert restored.selection.indices.tolist() == method.selection.indices.tolist()
