"""Round 28 mutation gaps: each test fails with its mutant applied (ids of /tmp/mutation28/mutants.py)."""
import numpy as np
import pytest
import torch

import coreaug
from coreaug.selection.rules import low_loss_mask, select_by_rule


def test_a_class_keeping_fewer_than_its_budget_is_topped_up_to_exactly_the_budget():
    # S04: _kept_members tops a short class up with a whole budget of unkept examples, not the shortfall
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    keep = np.zeros(10, dtype=bool)
    keep[5] = True  # one kept, a budget of 3: the kept one and the first two others, nothing more
    selection = coreaug.select_coreset(x, np.zeros(10, dtype=np.int64), 0.3, keep=keep)
    assert sorted(selection.indices.tolist()) == [0, 1, 5]
    np.testing.assert_array_equal(selection.weights, np.ones(3, np.float32))  # each stands for itself alone


def test_a_loss_filter_share_cuts_the_floor_of_the_share_of_each_class():
    # R04: the share of a class cut rounds up (3 of 10 at 0.25) instead of down (2)
    losses = np.concatenate([np.arange(10.0), np.arange(10.0)[::-1]])
    labels = np.repeat([0, 1], 10)
    keep = low_loss_mask(losses, labels, 0.1, share=0.25)
    assert np.flatnonzero(~keep).tolist() == [8, 9, 10, 11]  # each class's two highest losses


def test_features_whose_squared_distances_overflow_float32_are_refused():
    # K01: the features' limit allows twice the magnitude whose squared distances fit float32 (inf distances)
    limit = float(np.sqrt(np.finfo(np.float32).max / (4 * 2)))  # (2 m)**2 * dims within float32 for 2 dims
    x = np.zeros((6, 2), dtype=np.float32)
    x[0, 0], x[1, 0] = 1.5 * limit, -1.5 * limit
    with pytest.raises(coreaug.UsageError, match="features must lie within"):
        coreaug.select_coreset(x, np.zeros(6, dtype=np.int64), 0.5)
    x[0, 0], x[1, 0] = 0.9 * limit, -0.9 * limit
    assert len(coreaug.select_coreset(x, np.zeros(6, dtype=np.int64), 0.5).indices) == 3


@pytest.mark.parametrize("mode", ["subset", "append"])
def test_the_planned_length_before_the_first_epoch_is_the_length_of_its_plan(mode):
    # P10: plan_length counts the whole training set in subset mode too (n + copies * |S|, not |S| + copies * |S|)
    method = coreaug.CoresetAugmentation(torch.arange(40) % 4, strategy="random", fraction=0.25, mode=mode)
    planned = method.plan_length()
    method.start_epoch(0)
    assert planned == len(method.plan) == (10 if mode == "subset" else 40) + method.copies * 10


def test_infobatch_takes_each_classs_examples_above_the_classs_own_mean_loss():
    # R06: infobatch's high group is the examples above the mean loss of all classes, not of their own class
    labels = np.repeat([0, 1], 20)
    losses = np.concatenate([np.arange(20) / 100, 10 + np.arange(20)])  # class 0 low, class 1 high throughout
    selection = select_by_rule("infobatch", labels, 0.5, losses=losses, seed=0)
    assert sorted(selection.indices.tolist()) == list(range(10, 20)) + list(range(30, 40))  # each class's top half


def test_fp16_loss_scaling_restarts_its_growth_count_after_a_skipped_step_as_gradscaler_does():
    # C03: LossScaling.update keeps counting towards growth through a step with an inf (GradScaler restarts at 0)
    from coreaug.training.compiled_step import LossScaling

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3, growth_factor=2.0, backoff_factor=0.5)
    scaling = LossScaling(scaler, "cpu")
    scale, tracker = scaling.scale.clone(), scaling.growth.clone()  # GradScaler's own update on copies
    for inf in (0.0, 1.0, 0.0, 0.0, 0.0):
        found = torch.tensor([inf])
        scaling.update(found)
        torch._amp_update_scale_(scale, tracker, found, 2.0, 0.5, 3)
        assert (scaling.scale.item(), scaling.growth.item()) == (scale.item(), tracker.item())
    assert scaler.get_scale() == 2.0 ** 10  # backed off once, then grown after three clean steps
