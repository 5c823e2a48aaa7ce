"""Bad input gets a ValueError that names the argument."""
import numpy as np
import pytest
import torch

import coreaug

X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
Y = np.arange(20) % 2


@pytest.mark.parametrize("features, labels, fraction, match", [
    (np.where(np.eye(20, 3) > 0, np.nan, X), Y, 0.3, "features must be finite"),
    (np.where(np.eye(20, 3) > 0, np.inf, X), Y, 0.3, "features must be finite"),
    (X[:19], Y, 0.3, "same length"),
    (X, Y.astype(float), 0.3, "labels must be integer"),
    (X, Y - 1, 0.3, "non-negative"),
    (X, Y, 0.0, "fraction must be in"),
    (X, Y, 1.5, "fraction must be in"),
    (X, Y, float("nan"), "fraction must be"),
    (X, Y, "0.3", "fraction must be"),
    (X[:0], Y[:0], 0.3, "non-empty"),
    (X[:, 0], Y, 0.3, "features must be 2-D"),
    (X, Y[:, None], 0.3, "labels must be 1-D"),
])
def test_select_coreset_rejects_bad_input(features, labels, fraction, match):
    with pytest.raises(ValueError, match=match):
        coreaug.select_coreset(features, labels, fraction)


@pytest.mark.parametrize("kwargs, match", [
    ({"balance": "even"}, "balance must be one of"),
    ({"backend": "submodlib"}, "backend must be one of"),
    ({"knn": 0}, "knn must be a positive integer"),
])
def test_select_coreset_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        coreaug.select_coreset(X, Y, 0.3, **kwargs)


def test_baselines_reject_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        coreaug.select_random(Y, 2)
    with pytest.raises(ValueError, match="losses has 19"):
        coreaug.select_maxloss(np.ones(19), Y, 0.3)
    with pytest.raises(ValueError, match="losses must be finite"):
        coreaug.select_maxloss(np.full(20, np.nan), Y, 0.3)
    with pytest.raises(ValueError, match="labels must be integer"):
        coreaug.select_random(Y.astype(float), 0.3)


def test_gradient_estimates_reject_bad_input():
    with pytest.raises(ValueError, match="logits must be 2-D"):
        coreaug.logit_gradients(np.ones(5), np.zeros(5, int))
    with pytest.raises(ValueError, match="labels must be < n_classes"):
        coreaug.logit_gradients(np.ones((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        coreaug.last_layer_gradients(np.ones((2, 3)), np.ones((3, 4)), np.array([0, 1]))


def test_training_and_selection_refuse_a_balance_or_gradient_kind_from_one_list():
    from coreaug.selection.checks import BALANCES, GRADIENT_KINDS

    for balance in BALANCES:
        coreaug.TrainConfig(dataset="synthetic", balance=balance).resolved()
        coreaug.select_coreset(X, Y, 0.3, balance=balance)
    for kind in GRADIENT_KINDS:
        coreaug.CoresetAugmentation(Y, gradients=kind)
    with pytest.raises(ValueError, match="unknown balance 'even'; choose one of: equal, proportional"):
        coreaug.TrainConfig(dataset="synthetic", balance="even").resolved()
    with pytest.raises(ValueError, match="unknown gradients 'hessian'; choose one of: logits, last_layer"):
        coreaug.CoresetAugmentation(Y, gradients="hessian")
    with pytest.raises(ValueError, match=r"selection_warmup must be an integer >= 0 \(epochs\) or None, got -1"):
        coreaug.TrainConfig(dataset="synthetic", selection_warmup=-1).resolved()
    with pytest.raises(ValueError, match=r"selection_warmup must be an integer >= 0 \(epochs\), got -1"):
        coreaug.CoresetAugmentation(Y, selection_warmup=-1)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_features_and_losses_select_as_their_float32_values(dtype):
    g = torch.as_tensor(X).to(getattr(torch, dtype))
    expected = coreaug.select_coreset(g.float(), Y, 0.3)
    got = coreaug.select_coreset(g, Y, 0.3)
    assert np.array_equal(got.indices, expected.indices) and np.array_equal(got.weights, expected.weights)
    losses = torch.as_tensor(X[:, 0]).to(getattr(torch, dtype))
    assert np.array_equal(coreaug.select_maxloss(losses, Y, 0.3).indices,
                          coreaug.select_maxloss(losses.float(), Y, 0.3).indices)


@pytest.mark.parametrize("keep, match", [
    (np.ones(10, bool), r"keep must be a bool mask of shape \(20,\), one entry per example, got shape \(10,\)"),
    (np.ones((20, 1), bool), r"keep must be a bool mask of shape \(20,\)"),
    (np.arange(20), "keep must be a bool mask .* values other than 0 and 1"),
])
def test_select_coreset_refuses_a_keep_that_is_not_one_flag_per_example(keep, match):
    with pytest.raises(ValueError, match=match):
        coreaug.select_coreset(X, Y, 0.3, keep=keep)


def test_keep_may_be_a_0_1_array_or_a_tensor():
    mask = np.arange(20) % 3 != 0
    expected = coreaug.select_coreset(X, Y, 0.3, keep=mask).indices
    assert np.array_equal(coreaug.select_coreset(X, Y, 0.3, keep=mask.astype(int)).indices, expected)
    assert np.array_equal(coreaug.select_coreset(X, Y, 0.3, keep=torch.as_tensor(mask)).indices, expected)


@pytest.mark.parametrize("features", [X.astype(np.float64) * 1e300, X * 1e20])
def test_features_too_large_for_float32_distances_are_refused_with_the_fix(features):
    with pytest.raises(ValueError, match=r"features must lie within \+-.* got a value of magnitude .* rescale them"):
        coreaug.select_coreset(features, Y, 0.3)


def test_large_features_that_fit_float32_distances_select_as_rescaled_ones():
    scaled = coreaug.select_coreset(X.astype(np.float64) * 1e17, Y, 0.3)
    assert np.array_equal(scaled.indices, coreaug.select_coreset(X, Y, 0.3).indices)


def test_last_layer_gradients_refuse_a_chunk_below_one():
    with pytest.raises(ValueError, match="chunk must be a positive integer, got 0"):
        coreaug.last_layer_gradients(np.ones((2, 3)), np.ones((2, 4)), np.array([0, 1]), chunk=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_last_layer_gradients_refuse_embeddings_that_are_not_finite(bad):
    embeddings = np.ones((2, 4))
    embeddings[1, 2] = bad
    with pytest.raises(ValueError, match="embeddings must be finite"):
        coreaug.last_layer_gradients(np.ones((2, 3)), embeddings, np.array([0, 1]))


def test_estimating_with_a_model_without_parameters_needs_a_device():
    images, labels = torch.randn(6, 3, 1, 1), torch.arange(6) % 3
    with pytest.raises(ValueError, match="device must be given for a model without parameters"):
        coreaug.estimate_gradients(torch.nn.Flatten(), images, labels)
    assert coreaug.estimate_gradients(torch.nn.Flatten(), images, labels, device="cpu").shape == (6, 3)


@pytest.mark.parametrize("select, match", [
    (lambda: coreaug.select_random(Y, 0.3, seed=-1),
     "seed must be an integer >= 0, a np.random.Generator or None, got -1"),
    (lambda: coreaug.select_random(Y, 0.3, seed="a"), "seed must be an integer >= 0, a np.random.Generator or None"),
    (lambda: coreaug.select_random(Y, 0.3, seed=0.5), "seed must be an integer"),
    (lambda: coreaug.select_coreset(X, Y, 0.3, tie_seed=-2), "tie_seed must be an integer >= 0 or None, got -2"),
    (lambda: coreaug.select_maxloss(np.ones(20), Y, 0.3, tie_seed="x"), "tie_seed must be an integer"),
    (lambda: coreaug.selection.class_budgets([3, 3], 3, seed=1.5), "seed must be an integer"),
])
def test_selection_seeds_are_checked_naming_the_argument(select, match):
    """select_random(seed=-1) was numpy's "expected non-negative integer", seed="a" a TypeError."""
    with pytest.raises(coreaug.UsageError, match=match):
        select()


def test_select_random_draws_from_a_generator_or_fresh_entropy_as_numpy_does():
    from_generator = coreaug.select_random(Y, 0.3, seed=np.random.default_rng(4))
    assert np.array_equal(from_generator.indices, coreaug.select_random(Y, 0.3, seed=np.random.default_rng(4)).indices)
    assert len(coreaug.select_random(Y, 0.3, seed=None)) == 6
    assert np.array_equal(coreaug.select_random(Y, 0.3, seed=np.int64(2)).indices,
                          coreaug.select_random(Y, 0.3, seed=2).indices)


def test_uint64_labels_beyond_int64_are_refused_not_wrapped_to_negative_ids():
    labels = np.array([2 ** 63 + 5] * 5 + [3] * 5, dtype=np.uint64)
    for select in (lambda: coreaug.select_random(labels, 0.4), lambda: coreaug.select_coreset(X[:10], labels, 0.4)):
        with pytest.raises(coreaug.UsageError, match=r"class ids below 2\*\*63, got 9223372036854775813"):
            select()
    assert coreaug.select_random(labels % 2 ** 63, 0.4).classes.tolist() == [3, 5]  # uint64 ids that fit still work
