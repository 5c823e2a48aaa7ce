"""Bad input gets a ValueError that names the argument."""
import numpy as np
import pytest

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
