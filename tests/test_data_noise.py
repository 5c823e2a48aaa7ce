"""Symmetric label noise: exactly round(fraction * N) labels move to a different class."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from coreaug.data import apply_label_noise


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), fraction=st.floats(0, 1), num_classes=st.integers(2, 12),
       seed=st.integers(0, 2**31))
def test_exactly_round_fraction_n_labels_flip_to_another_class(n, fraction, num_classes, seed):
    labels = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed))
    noisy, flipped = apply_label_noise(labels, fraction, num_classes, seed=seed)
    assert int(flipped.sum()) == round(fraction * n)
    assert bool((noisy[flipped] != labels[flipped]).all())
    assert torch.equal(noisy[~flipped], labels[~flipped])
    assert noisy.dtype == torch.int64 and flipped.dtype == torch.bool
    assert n == 0 or (noisy.min() >= 0 and noisy.max() < num_classes)


def test_same_seed_same_noise_other_seed_other_noise():
    labels = torch.arange(1000) % 10
    first = apply_label_noise(labels, 0.3, 10, seed=5)
    again = apply_label_noise(labels, 0.3, 10, seed=5)
    other = apply_label_noise(labels, 0.3, 10, seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_new_labels_are_uniform_over_the_other_classes():
    labels = torch.zeros(20000, dtype=torch.long)
    noisy, flipped = apply_label_noise(labels, 1.0, 5, seed=0)
    counts = torch.bincount(noisy, minlength=5)
    assert counts[0] == 0
    assert counts[1:].min() > 4700 and counts[1:].max() < 5300


def test_input_labels_are_not_modified_and_numpy_is_accepted():
    labels = np.array([0, 1, 2, 3] * 5)
    noisy, _ = apply_label_noise(labels, 0.5, 4)
    assert labels.tolist() == [0, 1, 2, 3] * 5 and isinstance(noisy, torch.Tensor)


@pytest.mark.parametrize("arguments, message", [
    (dict(fraction=1.5, num_classes=10), "fraction must be in"),
    (dict(fraction=0.1, num_classes=1), "num_classes must be"),
    (dict(fraction=0.1, num_classes=3), r"labels must lie in \[0, 3\)"),
])
def test_invalid_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        apply_label_noise(torch.arange(10), **arguments)
