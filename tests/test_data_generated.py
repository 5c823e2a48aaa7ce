"""Datasets that need no files: scikit-learn's digits and the generated synthetic set."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from coreaug.data import load_dataset


def test_digits_are_1x8x8_uint8_scaled_to_255():
    data = load_dataset("digits")
    assert data.train_images.shape == (1438, 1, 8, 8) and data.test_images.shape == (359, 1, 8, 8)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert int(data.train_images.max()) == 255 and int(data.train_images.min()) == 0
    assert data.source == "scikit-learn:load_digits" and data.num_classes == 10


def test_digits_split_is_a_seeded_partition_of_all_images():
    bunch = load_digits()
    data = load_dataset("digits", seed=3)
    images = torch.cat([data.train_images, data.test_images]).reshape(-1, 64).double()
    expected = torch.from_numpy(np.rint(bunch.data * 255 / 16))
    # Same multiset of images: sort rows lexicographically via a stable key.
    key = lambda rows: sorted(map(tuple, rows.tolist()))
    assert key(images) == key(expected)
    again = load_dataset("digits", seed=3)
    assert torch.equal(again.test_images, data.test_images)
    assert not torch.equal(load_dataset("digits", seed=4).test_labels, data.test_labels)


def test_digits_test_fraction_is_validated():
    with pytest.raises(ValueError, match="test_fraction must be in"):
        load_dataset("digits", test_fraction=1.5)


def test_synthetic_shapes_dtypes_and_balanced_labels():
    data = load_dataset("synthetic", n_train=40, n_test=20, num_classes=4, channels=1, size=12)
    assert data.train_images.shape == (40, 1, 12, 12) and data.test_images.shape == (20, 1, 12, 12)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.equal(torch.bincount(data.train_labels), torch.full((4,), 10))
    assert data.source == "generated" and data.num_classes == 4 and len(data.mean) == 1


def test_synthetic_is_deterministic_per_seed():
    first, again = load_dataset("synthetic", n_train=50), load_dataset("synthetic", n_train=50)
    assert torch.equal(first.train_images, again.train_images)
    assert not torch.equal(load_dataset("synthetic", n_train=50, seed=1).train_images,
                           first.train_images)


@pytest.mark.parametrize("option, value", [("n_train", 0), ("num_classes", 1), ("size", 2),
                                           ("channels", 1.5)])
def test_synthetic_options_are_validated_by_name(option, value):
    with pytest.raises(ValueError, match=option):
        load_dataset("synthetic", **{option: value})


@pytest.fixture
def one_thread():
    """Small batches gain nothing from threads, and on a busy 2-core machine OpenMP threads
    spin-waiting on each other slow them ~50x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_small_cnn_learns_synthetic_well_above_chance_in_two_epochs(one_thread):
    from coreaug.models import create_model

    torch.manual_seed(0)
    data = load_dataset("synthetic", n_train=600, n_test=200, size=16)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    normalise = lambda images: (images.float() / 255 - mean) / std
    model = create_model("cnn", in_channels=3, num_classes=10)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        for batch in torch.randperm(600).split(50):
            loss = torch.nn.functional.cross_entropy(model(normalise(data.train_images[batch])),
                                                     data.train_labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        predictions = model.eval()(normalise(data.test_images)).argmax(1)
    assert (predictions == data.test_labels).float().mean() > 0.5  # chance is 0.1
