"""Selection rules by name: every rule keeps the budgets, and each one does what its line says."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import coreaug
from coreaug.selection import class_budgets, facility_location_value, knn_graph, logit_gradients
from coreaug.selection.rules import RULES, low_loss_mask, select_by_rule, upper_group_size
from coreaug.training.config import SELECTING
from coreaug.training.plan import same_class_partners


def scores(n=400, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    logits = torch.from_numpy(rng.normal(size=(n, classes)).astype(np.float32) * 2)
    y = torch.from_numpy(labels)
    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    return labels, logit_gradients(logits, y), losses


def test_every_rule_is_a_strategy_of_the_trainer_and_the_bench():
    assert set(RULES) == set(SELECTING)
    assert {"coreset", "random", "maxloss", "coreset-lowloss", "coreset-history", "crust", "infobatch", "ccs"} <= set(RULES)


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_every_rule_takes_each_class_budget_once_with_mean_one_weights(name, fraction):
    labels, g, losses = scores()
    selection = select_by_rule(name, labels, fraction, estimates=g, losses=losses, seed=3)
    picked = np.asarray(selection.indices)
    assert len(np.unique(picked)) == len(picked)
    budgets = class_budgets(np.bincount(labels), round(fraction * len(labels)))
    assert np.bincount(labels[picked], minlength=4).tolist() == budgets.tolist()
    assert selection.strategy == name
    assert np.isclose(np.asarray(selection.weights).mean(), 1.0)


def test_a_rule_without_its_scores_says_what_it_needs():
    labels, g, _ = scores()
    with pytest.raises(ValueError, match="coreset-lowloss.*losses"):
        select_by_rule("coreset-lowloss", labels, 0.1, estimates=g)
    with pytest.raises(ValueError, match="strategy must be one of"):
        select_by_rule("nearest", labels, 0.1, estimates=g)


def test_loss_filtered_coreset_never_picks_the_cut_share():
    labels, g, losses = scores()
    keep = low_loss_mask(losses, labels, 0.1, share=0.5)
    selection = select_by_rule("coreset-lowloss", labels, 0.1, estimates=g, losses=losses)
    for c in range(4):  # the estimated share here (loss > ln 4) is at least half of each class
        members = np.flatnonzero(labels == c)
        median = np.median(losses.numpy()[members])
        assert keep[members].sum() == 50 and (losses.numpy()[members][keep[members]] <= median).all()
    assert (losses.numpy()[selection.indices] <= math.log(4)).all()


def test_loss_filter_keeps_at_least_the_budget():
    labels, _, losses = scores()
    keep = low_loss_mask(losses, labels, 0.5, share=0.9)
    assert np.bincount(labels[keep]).tolist() == [50, 50, 50, 50]


def test_crust_replaces_picks_that_stand_only_for_themselves():
    rng = np.random.default_rng(1)
    tight = rng.normal(scale=0.01, size=(60, 2)) + np.repeat([[0, 0], [1, 0], [0, 1]], 20, axis=0)
    outliers = np.array([[50.0, 50.0], [-50.0, 50.0], [50.0, -50.0]])
    features = np.vstack([tight, outliers]).astype(np.float32)
    labels = np.zeros(len(features), dtype=np.int64)
    plain = coreaug.select_coreset(features, labels, 6 / len(features))
    crust = select_by_rule("crust", labels, 6 / len(features), estimates=features)
    assert set(range(60, 63)) <= set(plain.indices.tolist())  # facility location covers the far points
    assert not set(range(60, 63)) & set(crust.indices.tolist())
    assert len(crust) == 6
    # Its objective is F of the picks it returns (it summed their gains in the longer greedy order).
    assert crust.class_objectives[0] == pytest.approx(facility_location_value(knn_graph(features, 20), crust.indices))


def test_infobatch_takes_everyone_above_the_class_mean_and_reweights_the_rest():
    labels = np.zeros(100, dtype=np.int64)
    losses = np.r_[np.full(10, 5.0), np.linspace(0.0, 0.5, 90)]
    selection = select_by_rule("infobatch", labels, 0.3, losses=losses, seed=0)
    picked, weights = selection.indices, selection.weights
    assert set(range(10)) <= set(picked.tolist())
    high, low = weights[picked < 10], weights[picked >= 10]
    assert np.allclose(high, high[0]) and np.allclose(low, low[0])
    assert np.isclose(low[0] / high[0], (90 / 20) / (10 / 10))  # inverse sampling rates


def test_infobatch_weights_of_a_class_whose_high_group_fills_the_budget_stand_for_the_whole_class():
    # class 0: 100 examples, 40 above its mean loss; class 1: 10 examples, 2 above; a budget of 5 in all (3 + 2)
    labels = np.r_[np.zeros(100, dtype=np.int64), np.ones(10, dtype=np.int64)]
    losses = np.r_[np.full(40, 5.0), np.zeros(60), np.full(2, 5.0), np.zeros(8)]
    selection = select_by_rule("infobatch", labels, 5 / 110, losses=losses, balance="equal", seed=0)
    totals = [selection.weights[labels[selection.indices] == c].sum() for c in (0, 1)]
    assert totals[0] / totals[1] == pytest.approx(100 / 10)  # was 40 / 2: each class its high group alone


def test_ccs_cuts_the_hardest_and_covers_the_rest_of_the_range():
    labels = np.zeros(1000, dtype=np.int64)
    norms = np.linspace(0.01, 1.0, 1000, dtype=np.float32)
    estimates = np.stack([norms, np.zeros_like(norms)], axis=1)
    selection = select_by_rule("ccs", labels, 0.1, estimates=estimates, seed=0)
    picked = np.sort(selection.indices)
    assert picked.max() < 900  # the hardest 10% (largest gradient norm) is cut
    assert np.histogram(picked, bins=9, range=(0, 900))[0].min() >= 8  # every band of difficulty is covered


def test_partners_are_selected_examples_of_the_same_class():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2])
    pool = torch.tensor([0, 2, 3, 5, 6])
    partners = same_class_partners(torch.tensor([0, 2, 3, 5, 6] * 20), labels, pool, torch.Generator().manual_seed(0))
    assert torch.equal(labels[partners], labels[torch.tensor([0, 2, 3, 5, 6] * 20)])
    assert set(partners.tolist()) <= set(pool.tolist()) and set(partners.tolist()) > {6}
    examples = torch.tensor([0, 2, 3, 5, 6] * 20)
    # Never itself while its class has another member of the pool (class 2 has one: 6 is its own partner).
    assert ((partners != examples) | (examples == 6)).all()
    drawn = same_class_partners(torch.zeros(3000, dtype=torch.int64), labels, torch.tensor([0, 2, 4, 3]),
                                torch.Generator().manual_seed(1))
    assert sorted(set(drawn.tolist())) == [2, 4] and abs((drawn == 2).float().mean() - 0.5) < 0.05  # uniform


def test_crust_selects_at_random_during_its_warm_up_then_reads_the_model():
    labels, g, losses = scores()
    method = coreaug.CoresetAugmentation(labels, strategy="crust", fraction=0.1, epochs=10)
    assert method.selection_warmup == 2
    assert not method.needs_model_at(0) and not method.needs_model_at(1) and method.needs_model_at(2)
    method.select(0)  # no scores needed during the warm-up
    assert method.selection.strategy == "random"
    method.select(2, estimates=g, losses=losses)
    assert method.selection.strategy == "crust"
    plan = method.plan_for(2)
    copies = plan.augmented
    assert torch.equal(torch.as_tensor(labels)[plan.partners[copies]], torch.as_tensor(labels)[plan.indices[copies]])


def test_method_accepts_scores_as_tensors_on_any_device_and_logits():
    labels, g, losses = scores()
    method = coreaug.CoresetAugmentation(labels, strategy="coreset-lowloss", fraction=0.1)
    logits = torch.log(g + torch.nn.functional.one_hot(torch.as_tensor(labels), 4).float()).clamp(min=-30)
    by_logits = method.choose(0, logits=logits)[0]
    by_scores = method.choose(0, estimates=g, losses=losses)[0]
    assert np.array_equal(by_logits.indices, by_scores.indices)


def test_crust_trains_end_to_end_with_mixed_copies():
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", model="cnn", train_limit=96, test_limit=64,
                                               batch_size=32, quiet=True, strategy="crust", subset=0.25, epochs=3,
                                               selection_warmup=1))
    assert [m["selected"] for m in result.history] == [True, True, True]
    assert all(m["n_augmented"] == 24 for m in result.history)


@pytest.mark.parametrize("settings", [dict(), dict(estimates="training"), dict(gradients="last_layer"),
                                      dict(strategy="maxloss"), dict(strategy="coreset-lowloss")])
def test_more_classes_than_gradient_dim_select_and_log_clean_losses(settings):
    config = dict(dataset="synthetic", model="cnn", train_limit=96, test_limit=64, batch_size=32, quiet=True,
                  subset=0.25, epochs=2, gradient_dim=4,  # synthetic has 10 classes: estimates are projected
                  strategy="coreset")
    result = coreaug.train(coreaug.TrainConfig(**{**config, **settings}))
    first = result.history[0]
    assert first["selected"] and first["selection_loss_selected"] > 0 and first["selection_loss_rest"] > 0


def test_the_cli_selects_with_more_classes_than_gradient_dim(tmp_path):
    from click.testing import CliRunner

    from coreaug.cli.main import app
    out = CliRunner().invoke(app, ["train", "--dataset", "synthetic", "--train-limit", "96", "--test-limit", "64",
                                   "--epochs", "1", "--strategy", "coreset", "--gradient-dim", "4", "--quiet",
                                   "--out", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_select_takes_scores_on_the_gpu():
    labels, g, losses = scores()
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.1)
    on_gpu = method.choose(0, estimates=g.cuda(), losses=losses.cuda())[0]
    assert np.array_equal(on_gpu.indices, method.choose(0, estimates=g, losses=losses)[0].indices)
    assert method.choose(0, logits=torch.randn(len(labels), 4, device="cuda"))[0] is not None


def test_a_given_loss_filter_share_is_cut_before_facility_location():
    labels, g, losses = scores()
    method = coreaug.CoresetAugmentation(labels, strategy="coreset-lowloss", fraction=0.1, loss_filter=0.8)
    selection = method.choose(0, estimates=g, losses=losses)[0]
    kept = low_loss_mask(losses, labels, 0.1, share=0.8)
    assert kept.sum() == 80 and kept[selection.indices].all()
    with pytest.raises(ValueError, match="loss_filter applies to strategies 'coreset-lowloss', 'coreset-history', 'coreset-heldout' only"):
        coreaug.TrainConfig(dataset="synthetic", strategy="coreset", loss_filter=0.2).resolved().validate()
    with pytest.raises(ValueError, match=r"loss_filter must be a share in \[0, 1\)"):
        coreaug.CoresetAugmentation(labels, strategy="coreset-lowloss", loss_filter=1.5)


def test_the_two_group_split_finds_the_high_group():
    assert upper_group_size([0.1, 0.15, 0.2, 1.9, 2.0, 2.1, 2.2]) == 4
    assert upper_group_size(np.r_[np.full(30, 0.5), np.full(10, 3.0)]) == 10
    assert upper_group_size(np.r_[np.zeros(5), np.full(45, 1.0)]) == 45
    assert upper_group_size(np.full(8, 1.0)) == 0 and upper_group_size([4.0]) == 0


def test_history_rule_selects_on_the_mean_loss_over_the_selections():
    """An example that was hard at every selection is cut; one that is hard only now is not."""
    labels = np.zeros(100, dtype=np.int64)
    estimates = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    method = coreaug.CoresetAugmentation(labels, strategy="coreset-history", fraction=0.2)
    always = np.r_[np.full(30, 3.0), np.full(70, 0.2)]  # examples 0-29 hard at the first selection
    method.select(0, estimates=estimates, losses=always)
    assert not set(method.selection.indices.tolist()) & set(range(30))
    now = np.r_[np.full(30, 1.0), np.full(30, 2.0), np.full(40, 0.2)]  # 30-59 hard now, 0-29 easier now
    before = (method.loss_sums.clone(), method.loss_count)
    chosen = method.choose(5, estimates=estimates, losses=now)[0]
    assert torch.equal(method.loss_sums, before[0]) and method.loss_count == 1  # choose keeps the state
    means = (always + now) / 2  # 0-29: 2.0, 30-59: 1.1, 60-99: 0.2 -> the split cuts 0-29 and 30-59
    assert np.allclose(method.mean_losses(torch.as_tensor(now)).numpy(), means)
    assert set(chosen.indices.tolist()) <= set(range(60, 100))
    by_current = low_loss_mask(now, labels, 0.2, estimate="split")
    assert by_current[:30].all() and not by_current[30:60].any()  # on the current losses alone 0-29 look clean
    method.select(5, estimates=estimates, losses=now)
    assert method.loss_count == 2 and np.allclose(method.loss_sums.numpy(), always + now)


def test_heldout_rule_averages_only_the_losses_taken_outside_the_selection_in_use():
    """A flipped label trained on in subset mode loses its high loss; the held-out mean keeps
    the high losses it had while it was left out, where the mean over every selection does not."""
    labels = np.zeros(100, dtype=np.int64)
    estimates = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    first = np.r_[np.full(20, 3.0), np.full(80, 0.2)]  # 0-19 hard (nothing selected yet: all held out)
    method = coreaug.CoresetAugmentation(labels, strategy="coreset-heldout", fraction=0.5, mode="subset")
    method.select(0, estimates=estimates, losses=first)
    assert method.loss_held.tolist() == [1.0] * 100 and not set(method.selection.indices.tolist()) & set(range(20))
    # Force 0-9 into the selection in use, as if an earlier selection had taken them and the
    # model then fit them: their current losses fall to 0.1.
    method.use(dataclasses.replace(method.selection, indices=np.r_[np.arange(10), method.selection.indices[10:]]), 0)
    inside = set(method.selection.indices.tolist())
    now = first.copy()
    now[:10] = 0.1
    means = method.mean_losses(torch.as_tensor(now)).numpy()
    assert np.allclose(means[:10], 3.0)  # their losses now were taken inside the selection: not counted
    outside = np.array(sorted(set(range(100)) - inside))
    assert np.allclose(means[outside], first[outside])  # (first + now) / 2 with now == first there
    history = coreaug.CoresetAugmentation(labels, strategy="coreset-history", fraction=0.5, mode="subset")
    history.select(0, estimates=estimates, losses=first)
    assert np.allclose(history.mean_losses(torch.as_tensor(now)).numpy()[:10], 1.55)  # every selection counts
    chosen = method.choose(2, estimates=estimates, losses=now)[0]
    assert not set(chosen.indices.tolist()) & set(range(20))
    method.select(2, estimates=estimates, losses=now)
    held = np.ones(100)
    held[sorted(inside)] = 0
    assert np.array_equal(method.loss_held.numpy(), 1 + held) and method.loss_count == 2
    restored = coreaug.CoresetAugmentation(labels, strategy="coreset-heldout", fraction=0.5, mode="subset")
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.loss_held, method.loss_held) and torch.equal(restored.loss_sums, method.loss_sums)


def test_history_survives_a_checkpoint_and_logits_count_once():
    labels, g, losses = scores()
    method = coreaug.CoresetAugmentation(labels, strategy="coreset-history", fraction=0.1)
    logits = torch.log(g + torch.nn.functional.one_hot(torch.as_tensor(labels), 4).float()).clamp(min=-30)
    method.select(0, logits=logits)
    assert method.loss_count == 1 and torch.allclose(method.loss_sums.float(), losses, atol=1e-4)
    restored = coreaug.CoresetAugmentation(labels, strategy="coreset-history", fraction=0.1)
    restored.load_state_dict(method.state_dict())
    assert restored.loss_count == 1 and torch.equal(restored.loss_sums, method.loss_sums)
    assert np.array_equal(restored.choose(2, estimates=g, losses=losses)[0].indices,
                          method.choose(2, estimates=g, losses=losses)[0].indices)
    plain = coreaug.CoresetAugmentation(labels, strategy="coreset-lowloss", fraction=0.1)
    plain.select(0, estimates=g, losses=losses)
    assert plain.loss_sums is None  # only a loss_history rule keeps sums


def test_the_trainer_keeps_the_history_in_its_checkpoint(tmp_path):
    config = dict(dataset="synthetic", model="cnn", train_limit=96, test_limit=64, batch_size=32, quiet=True,
                  strategy="coreset-history", subset=0.25, epochs=4, select_every=1)
    whole = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "whole")))
    checkpoint = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    assert checkpoint["method"]["loss_count"] == 4 and checkpoint["method"]["loss_sums"].shape == (96,)
    assert all(m["selected"] for m in whole.history)


@pytest.mark.parametrize("strategy", ["full", "none", "coreset"])
def test_mean_losses_of_a_strategy_without_history_are_the_current_losses(strategy):
    method = coreaug.CoresetAugmentation(np.zeros(6, dtype=np.int64), strategy=strategy, fraction=0.5)
    losses = torch.arange(6, dtype=torch.float32)
    assert torch.equal(method.mean_losses(losses), losses)


def test_a_rule_registered_after_import_works_in_train_and_the_own_loop_object():
    """TrainConfig and CoresetAugmentation checked names against a tuple frozen at import."""
    from coreaug.selection.rules import register_rule

    @register_rule("every-other", [], "the even positions of each class")
    def every_other(labels, fraction, *, estimates=None, losses=None, balance="equal", seed=0, knn=20):
        return coreaug.select_random(labels, fraction, balance=balance, seed=seed)

    try:
        method = coreaug.CoresetAugmentation(torch.arange(40) % 2, strategy="every-other", fraction=0.25)
        method.start_epoch(0)
        assert method.selects and len(method.selection) == 10
        result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", model="cnn", train_limit=64, test_limit=32,
                                                   batch_size=32, epochs=1, quiet=True, strategy="every-other"))
        assert result.history[0]["selected"]
    finally:
        del RULES["every-other"]


@pytest.mark.parametrize("name, loss_filter", [(name, None) for name in sorted(RULES)] + [("coreset-lowloss", 0.2)])
def test_every_rule_gives_a_budget_below_the_class_count_to_classes_its_seed_draws(name, loss_filter):
    """The 3 examples of 4 classes went to classes 0-2 at every selection, whatever the seed."""
    labels, g, losses = scores()
    chosen = [select_by_rule(name, labels, 3 / 400, estimates=g, losses=losses, seed=seed, loss_filter=loss_filter)
              for seed in range(12)]
    assert all(len(selection) == 3 == len(set(labels[selection.indices])) for selection in chosen)
    assert set(np.concatenate([labels[selection.indices] for selection in chosen]).tolist()) == {0, 1, 2, 3}
