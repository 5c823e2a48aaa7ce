"""A user's own data in memory: a registered loader's ImageDataset, checked once where it is
loaded; TrainedModel.evaluate on in-memory data; the synthetic sets made in chunks."""
import os

import numpy as np
import pytest
import torch

import coreaug
from coreaug.data import ImageDataset, load_dataset, registry, synthetic
from coreaug.errors import UsageError
from coreaug.models import create_model
from coreaug.training.trained import TrainedModel


def _tiny(**changes):
    """A valid 3-class dataset of 12 + 6 uint8 RGB 8x8 images, with `changes` applied."""
    images = torch.randint(0, 256, (18, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(18) % 3
    fields = dict(name="mine", train_images=images[:12], train_labels=labels[:12], test_images=images[12:],
                  test_labels=labels[12:], num_classes=3, class_names=["a", "b", "c"], mean=(0.5,) * 3,
                  std=(0.25,) * 3, source="memory")
    return ImageDataset(**{**fields, **changes})


def _register(monkeypatch, data):
    monkeypatch.setitem(registry._LOADERS, "mine", lambda data_dir=None, *, download=False, progress=True: data)


def test_a_registered_dataset_unlike_what_image_dataset_describes_is_refused_in_one_line(monkeypatch):
    """Float images trained silently on near-black inputs (training divides by 255 again); mismatched
    lengths paired images and labels by position; fractional labels were truncated; numpy arrays,
    NHWC or RGBA images failed deep inside the first step; wrong class_names broke predict later."""
    valid = _tiny()
    images = valid.train_images
    cases = [
        (dict(train_images=images.float() / 255), r"train images are float32 in \[0, 1\]; .*uint8.*"
         r"convert them with \(images \* 255\)\.round\(\)\.to\(torch\.uint8\)"),
        (dict(train_images=images.float()), r"float32 in \[0, 255\].*images\.round\(\)\.to\(torch\.uint8\)"),
        (dict(test_images=valid.test_images.long()), r"test images are int64 .*images\.to\(torch\.uint8\)"),
        (dict(train_images=images.numpy()), r"train images are a numpy array; .*torch\.from_numpy"),
        (dict(train_labels=valid.train_labels.numpy()), r"train labels are a numpy array"),
        (dict(train_labels=valid.train_labels[:-2]), r"10 train labels for 12 train images"),
        (dict(test_labels=valid.test_labels[:-1]), r"5 test labels for 6 test images"),
        (dict(train_labels=valid.train_labels.float() + 0.5), r"train labels are float32 values that are not all "
         "whole numbers"),
        (dict(test_labels=valid.test_labels.float() * 3), r"test labels in \[0, 6\], outside \[0, num_classes\)"),
        (dict(class_names=["a", "b"]), r"2 class names for 3 classes"),
        (dict(train_images=images.permute(0, 2, 3, 1)), r"8 channels .*permute\(0, 3, 1, 2\)"),
        (dict(train_images=torch.cat([images, images[:, :1]], 1)), r"4 channels .*1 \(grayscale\) or 3 \(RGB\)"),
        (dict(test_images=valid.test_images[:, :, :6]), r"test images are \(C, H, W\) = \(3, 6, 8\), train "
         r"images \(3, 8, 8\)"),
        (dict(test_images=valid.test_images[:, :1]), r"test images are \(C, H, W\) = \(1, 8, 8\)"),
        (dict(mean=(0.5,), std=(0.25,)), r"1 mean and 1 std values for 3-channel images"),
        (dict(num_classes=1, class_names=None, train_labels=valid.train_labels * 0,
              test_labels=valid.test_labels * 0), r"num_classes is 1; a classifier needs two or more"),
    ]
    for changes, message in cases:
        _register(monkeypatch, _tiny(**changes))
        with pytest.raises(UsageError, match=r"^dataset 'mine'.*" + message) as caught:
            load_dataset("mine")
        assert "\n" not in str(caught.value), changes
    _register(monkeypatch, _tiny(train_labels=valid.train_labels.float()))  # whole-number floats are labels
    assert load_dataset("mine").num_classes == 3


def test_a_run_on_a_registered_dataset_of_float_images_is_refused_before_its_folder_is_written(monkeypatch,
                                                                                                tmp_path):
    _register(monkeypatch, _tiny(train_images=_tiny().train_images.float() / 255))
    with pytest.raises(UsageError, match="uint8"):
        coreaug.train(coreaug.TrainConfig(dataset="mine", model="cnn", epochs=1, quiet=True, out=str(tmp_path / "r")))
    assert not os.path.exists(tmp_path / "r")


def test_a_registered_dataset_without_test_images_is_refused_before_training(monkeypatch, tmp_path):
    """It trained an epoch, then divided by the empty test split's size (ZeroDivisionError)."""
    valid = _tiny()
    _register(monkeypatch, _tiny(test_images=valid.test_images[:0], test_labels=valid.test_labels[:0]))
    with pytest.raises(UsageError, match="dataset 'mine' has no test images"):
        coreaug.train(coreaug.TrainConfig(dataset="mine", model="cnn", epochs=1, quiet=True, out=str(tmp_path / "r")))
    assert not os.path.exists(tmp_path / "r" / "config.json")


def test_evaluate_scores_an_image_dataset_or_images_and_labels_and_refuses_other_objects_in_one_line():
    """A tensor gave "Boolean value of Tensor ... is ambiguous"; (images, labels) a 151-line message
    printing both; load_dataset's own ImageDataset "unknown dataset ImageDataset(...)"."""
    torch.manual_seed(0)
    run = TrainedModel(create_model("cnn", 3, 3), ["c", "a", "b"], 8, 3, (0.5,) * 3, (0.25,) * 3,
                       {"dataset": "elsewhere"})
    data = _tiny()
    predicted = run.probabilities(data.test_images).argmax(1)
    by_name = torch.tensor([1, 2, 0])[data.test_labels]  # the dataset's a, b, c are the run's classes 1, 2, 0
    result = run.evaluate(data)
    assert (result.correct, result.total) == (int((predicted == by_name).sum()), 6)
    pair = run.evaluate((data.test_images, by_name))
    assert (pair.correct, pair.total) == (result.correct, 6)
    for given, message in [
        (data.test_images, r"dataset must be a registered name, a folder path, an ImageDataset or \(images, "
                           r"labels\), got Tensor; images without labels: predict\(images\)"),
        ((data.test_images, by_name, by_name), r"got tuple"),
        ((data.test_images, by_name + 1), r"labels in \[1, 3\], outside the run's classes \[0, 3\)"),
        ((data.test_images, by_name[:4]), r"6 images but 4 labels"),
        ((data.test_images, by_name.tolist()), r"labels must be a tensor .*got list"),
        (_tiny(test_images=data.test_images.float()), r"dataset 'mine': test images are float32"),
    ]:
        with pytest.raises(UsageError, match=message) as caught:
            run.evaluate(given)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_synthetic_images_are_made_in_chunks_with_the_values_of_the_whole_split_at_once(monkeypatch):
    """synthetic-cifar took ~2.35 GB of float temporaries for 176 MB of images."""
    prototypes = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)  # the split made at once, as before
    labels = (torch.arange(50) % 3)[torch.randperm(50, generator=generator)]
    brightness = (torch.rand(50, 1, 1, 1, generator=generator) * 2 - 1) * synthetic.BRIGHTNESS_JITTER
    noise = torch.randn((50, 1, 5, 5), generator=generator) * synthetic.PIXEL_NOISE
    expected = ((prototypes[labels] + brightness + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    sizes, randn = [], torch.randn
    monkeypatch.setattr(torch, "randn", lambda shape, **kw: sizes.append(shape[0]) or randn(shape, **kw))
    monkeypatch.setattr(synthetic, "CHUNK", 16)
    images, made_labels = synthetic.sample_examples(prototypes, 50, torch.Generator().manual_seed(2))
    assert sizes == [16, 16, 16, 2]
    assert torch.equal(made_labels, labels) and images.dtype == torch.uint8
    assert np.array_equal(images.numpy(), expected.numpy())


def test_one_number_as_mean_and_std_stands_for_every_channel(monkeypatch):
    """A grayscale loader's MNIST-style mean=0.5, std=0.25 trained before the checks: still taken, per channel."""
    gray = _tiny(train_images=_tiny().train_images[:, :1], test_images=_tiny().test_images[:, :1], mean=0.5, std=0.25)
    _register(monkeypatch, gray)
    data = load_dataset("mine")
    assert data.mean == (0.5,) and data.std == (0.25,)
    rgb = _tiny(mean=0.5, std=1)
    _register(monkeypatch, rgb)
    assert load_dataset("mine").std == (1.0, 1.0, 1.0)
