"""Models at the edges of what `coreaug.train` takes: layouts, training-mode outputs, batches of one,
import paths, checkpoints and names from elsewhere."""
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import coreaug
from coreaug.models import create_model, load_pretrained, registry
from coreaug.training.inputs import Normalize
from coreaug.training.trainer import check_batch_of_one, training_output
from test_compile_support import needs_compile

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1, quiet=True)


class ViewNet(nn.Module):
    """PyTorch's tutorial CIFAR net: `.view` of its convolutions' features, which channels_last refuses."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc = nn.Linear(16 * 5 * 5, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.view(-1, 16 * 5 * 5))


def test_a_model_that_views_its_features_trains_and_predicts_on_contiguous_inputs(tmp_path):
    """It was "fails on a batch of the run's inputs ... view size is not compatible with input
    tensor's size and stride": every input was channels_last, on every device."""
    model = ViewNet()
    coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=model)
    assert model.conv1.weight.is_contiguous()
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["channels_last"] is False
    trained = coreaug.load_run(tmp_path / "run", model=ViewNet())
    assert len(trained.predict(torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8))) == 3


def test_a_model_that_takes_channels_last_is_still_fed_it_and_train_gives_back_the_callers_random_state(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["channels_last"] is True
    assert torch.equal(torch.get_rng_state(), before)  # was left seeded with config.seed (0)


class TrainingTuple(nn.Module):
    """Aux logits when training, as torchvision's GoogLeNet and Inception3 return them."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Dropout(0.5))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        logits = self.head(self.body(x))
        return (logits, logits) if self.training else logits


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=needs_compile)])
def test_a_model_that_returns_a_tuple_when_training_is_refused_before_writing(tmp_path, compile):
    """It was `AttributeError: 'tuple' object has no attribute 'float'` in the first step (and an
    80-line dynamo traceback under compile), after the run folder was written."""
    model = TrainingTuple().eval()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(coreaug.UsageError, match=r"^the model passed to train in training mode must return floating "
                                                 r"logits .* it returned a tuple for a batch of 2; wrap it"):
        coreaug.train(coreaug.TrainConfig(**TINY, compile=compile, out=str(tmp_path / "run")), model=model)
    assert not (tmp_path / "run").exists()
    assert not model.training and all(torch.equal(value, state[name]) for name, value in model.state_dict().items())


def test_the_training_mode_probe_leaves_statistics_random_state_and_mode_as_they_were():
    model = TrainingTuple().eval()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    inputs = torch.randn(2, 3, 8, 8) + 5
    before = torch.get_rng_state()
    logits, _ = training_output(model, inputs)  # its dropout draws
    assert logits.shape == (2, 10) and not logits.requires_grad
    assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())  # running stats, count
    assert torch.equal(torch.get_rng_state(), before) and not model.training


def run_data(size, channels=3):
    """What the trainer's model checks read of a run's data (RunData), for images of `size` px."""
    return types.SimpleNamespace(in_channels=channels, test_images=torch.zeros(1, channels, size, size),
                                 train_labels=torch.zeros(1, dtype=torch.long),
                                 preprocess=Normalize((0.5,) * channels, (0.25,) * channels, "cpu"))


def test_a_batch_of_one_that_batchnorm_cannot_train_on_is_refused_before_writing(tmp_path):
    """It was torch's `ValueError: Expected more than 1 value per channel when training` in the
    first step, after config.json was written."""
    with pytest.raises(coreaug.UsageError, match=r"^model 'resnet18_imagenet' cannot train on batches of one image "
                                                 r"\(--batch-size 1\): ValueError: Expected more than 1 value per "
                                                 r"channel .* use --batch-size 2 or more$"):
        coreaug.train(coreaug.TrainConfig(dataset="digits", model="resnet18_imagenet", batch_size=1, epochs=1,
                                          train_limit=9, test_limit=8, quiet=True, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    resnet = create_model("resnet18_imagenet", 3, 10)
    with pytest.raises(coreaug.UsageError, match=r"--batch-size 2 over 2 processes .* use --batch-size 4 or more"):
        check_batch_of_one(resnet, run_data(8), 2, "resnet", processes=2)
    check_batch_of_one(resnet, run_data(8), 2, "resnet")  # two images a batch: trains
    check_batch_of_one(create_model("resnet20", 3, 10), run_data(8), 1, "resnet20")  # its last maps are 2x2


@pytest.mark.parametrize("path", ["./my_nets.py:small", ".my_nets:small", "my_nets.py:small", "../x/my_nets.py:small"])
def test_a_model_path_given_as_a_file_or_relative_module_is_a_usage_error_naming_the_module(path):
    """`./my_nets.py:small` and `.my_nets:small` were importlib's TypeError traceback."""
    with pytest.raises(coreaug.UsageError, match=r"give a module name, not a file path or a relative one: "
                                                 r"my_nets:small \(run from the folder that holds it"):
        create_model(path, 3, 10)


def test_create_model_takes_numpy_integers_and_passes_python_ints_on(monkeypatch):
    """`labels.max() + 1` was refused: "num_classes must be a positive integer, got np.int64(5)"."""
    seen = []
    monkeypatch.setitem(registry._MODELS, "edge-types", lambda c, k: seen.append((c, k)) or nn.Linear(c, k))
    model = create_model("edge-types", np.int64(3), np.array([0, 4]).max() + 1)
    assert seen == [(3, 5)] and all(type(value) is int for value in seen[0]) and model.out_features == 5
    with pytest.raises(coreaug.UsageError, match="num_classes must be a positive integer, got 2.0"):
        create_model("cnn", 3, 2.0)


def test_a_torchvision_resnet_checkpoint_for_the_cifar_resnet18_names_the_model_to_build(tmp_path):
    path = tmp_path / "resnet18-torchvision.pth"
    torch.save(create_model("resnet18_imagenet", 3, 1000).state_dict(), path)
    with pytest.raises(coreaug.UsageError, match=r"does not fit ResNet \(missing from the file: .*\); it holds a "
                                                 r"torchvision ResNet's weights: build the model as resnet18_imagenet "
                                                 r"\(--model resnet18_imagenet\)$"):
        load_pretrained(create_model("resnet18", 3, 10), path)
    with pytest.raises(coreaug.UsageError, match=r"shape mismatch: conv1.weight .*; build the model the checkpoint "
                                                 r"was saved from \(same name and in_channels\)$"):
        load_pretrained(create_model("resnet18_imagenet", 1, 10), path)  # the layout fits: no other model to name


def test_a_folder_of_large_images_with_a_cifar_stem_model_gets_a_note(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (128, 128), (40 * i, 90, 200 if name == "a" else 10)).save(
                tmp_path / "images" / name / f"{i}.png")
    coreaug.train(coreaug.TrainConfig(dataset=str(tmp_path / "images"), model="resnet20", epochs=1, batch_size=2,
                                      workers=0, cache_dir=str(tmp_path / "cache"), val_fraction=0.34))
    err = capsys.readouterr().err
    assert "note: resnet20 has a CIFAR stem" in err and "--model resnet18_imagenet" in err


def test_load_run_of_a_model_registered_in_another_process_says_so(tmp_path, monkeypatch):
    """It read as a wrong choice: "unknown model 'edge-registered'; choose one of: cnn, ..."."""
    monkeypatch.setitem(registry._MODELS, "edge-registered", lambda c, k: create_model("cnn", c, k))  # register_model
    coreaug.train(coreaug.TrainConfig(**TINY, model="edge-registered", out=str(tmp_path / "run")))
    monkeypatch.delitem(registry._MODELS, "edge-registered")  # as a later process finds it
    with pytest.raises(coreaug.UsageError, match=r"trained model 'edge-registered', a name this process does not "
                                                 r"know: one registered with coreaug.models.register_model .* "
                                                 r"--model package.module:function$"):
        coreaug.load_run(tmp_path / "run")
