"""Specification of coreaug.models: every model by name, any channels/classes/size >= 8."""
import pytest
import torch
from torch import nn

from coreaug.models import available_models, create_model, register_model

@pytest.fixture(autouse=True)
def one_thread():
    """Two-image batches gain nothing from threads, and on a busy 2-core machine OpenMP threads
    spin-waiting on each other make a forward pass ~50x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# The models the contract tests below build and run. The bigger ImageNet ResNets are specified
# in test_models_imagenet.py, which counts their parameters without building them in memory.
ALL_MODELS = ["cnn", "resnet18", "resnet18_imagenet", "resnet20", "resnet32", "resnet56", "wrn-16-8"]
BIG_IMAGENET_MODELS = ["resnet101", "resnet34", "resnet50", "wide_resnet50_2"]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_available_models_lists_every_model():
    assert available_models() == sorted(ALL_MODELS + BIG_IMAGENET_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_model_maps_a_batch_to_logits(name, channels, size):
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, num_classes=7)
    logits = model(torch.randn(2, channels, size, size))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["cnn", "resnet20", "wrn-16-8"])
def test_model_accepts_8x8_images(name):
    model = create_model(name, in_channels=1, num_classes=10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_last_linear_module_is_the_classifier(name):
    model = create_model(name, in_channels=3, num_classes=5).eval()
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert list(model.modules())[-1] is last_linear
    seen = {}
    last_linear.register_forward_hook(lambda module, inputs, output: seen.update(out=output))
    logits = model(torch.randn(2, 3, 16, 16))
    assert torch.equal(seen["out"], logits)
    assert last_linear.out_features == 5


@pytest.mark.parametrize("name, low, high", [
    ("resnet20", 0.26e6, 0.28e6),
    ("resnet32", 0.45e6, 0.48e6),
    ("resnet56", 0.84e6, 0.87e6),
    ("resnet18", 11.0e6, 11.3e6),
    ("wrn-16-8", 10.8e6, 11.1e6),
])
def test_parameter_count_matches_the_paper(name, low, high):
    assert low <= parameter_count(create_model(name)) <= high


def test_names_are_case_insensitive():
    assert type(create_model("ResNet20")) is type(create_model("resnet20"))


def test_unknown_name_lists_available_models():
    with pytest.raises(ValueError, match="unknown model 'resnet99'.*resnet20"):
        create_model("resnet99")


@pytest.mark.parametrize("argument", ["in_channels", "num_classes"])
def test_nonpositive_sizes_are_rejected_with_the_argument_name(argument):
    with pytest.raises(ValueError, match=argument):
        create_model("cnn", **{argument: 0})


def test_register_model_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn")(lambda in_channels, num_classes: nn.Linear(1, 1))


def test_convolutions_are_kaiming_initialised():
    torch.manual_seed(0)
    conv = create_model("resnet56").blocks[-1].conv2
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)
