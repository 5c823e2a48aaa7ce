"""Specification of the ImageNet ResNets and load_pretrained: torchvision's keys, shapes and
parameter counts, so that its checkpoints (and ours) load, and clear errors when one does not fit."""
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import coreaug
from coreaug.models import available_models, create_model, load_pretrained
from coreaug.models.imagenet_resnet import ImageNetResNet
from coreaug.selection.gradients import final_linear

IMAGENET_MODELS = ["resnet18_imagenet", "resnet34", "resnet50", "resnet101", "wide_resnet50_2"]


def shapes(name, in_channels=3, num_classes=1000):
    """State-dict shapes of a model built on the meta device: no memory, no init, instant."""
    with torch.device("meta"):
        model = create_model(name, in_channels=in_channels, num_classes=num_classes)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def trained_looking(name="resnet18_imagenet", num_classes=10, seed=0):
    """A model whose every parameter and BN statistic differs from a fresh one's, in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key else torch.randn_like(value) * 0.05)
    return model.eval()


def images(n=2, size=64, channels=3):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(1))


def test_imagenet_resnets_are_registered_beside_the_cifar_ones():
    assert set(IMAGENET_MODELS) <= set(available_models())
    assert {"resnet18", "resnet20", "resnet32", "resnet56"} <= set(available_models())
    assert not isinstance(create_model("resnet18"), ImageNetResNet)


@pytest.mark.parametrize("name, count", [
    ("resnet18_imagenet", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("wide_resnet50_2", 68_883_240),
])
def test_parameter_count_equals_torchvisions(name, count):
    with torch.device("meta"):
        model = create_model(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("name, key, shape", [
    ("resnet18_imagenet", "conv1.weight", (64, 3, 7, 7)),
    ("resnet18_imagenet", "bn1.running_mean", (64,)),
    ("resnet18_imagenet", "layer1.0.conv1.weight", (64, 64, 3, 3)),
    ("resnet18_imagenet", "layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    ("resnet18_imagenet", "layer4.1.bn2.num_batches_tracked", ()),
    ("resnet18_imagenet", "fc.weight", (1000, 512)),
    ("resnet34", "layer3.5.conv2.weight", (256, 256, 3, 3)),
    ("resnet50", "layer1.0.downsample.0.weight", (256, 64, 1, 1)),
    ("resnet50", "layer1.0.downsample.1.running_var", (256,)),
    ("resnet50", "layer1.1.conv1.weight", (64, 256, 1, 1)),
    ("resnet50", "layer4.2.conv3.weight", (2048, 512, 1, 1)),
    ("resnet50", "fc.weight", (1000, 2048)),
    ("resnet101", "layer3.22.bn3.weight", (1024,)),
    ("wide_resnet50_2", "layer1.0.conv1.weight", (128, 64, 1, 1)),
    ("wide_resnet50_2", "layer4.0.conv2.weight", (1024, 1024, 3, 3)),
    ("wide_resnet50_2", "layer4.0.conv3.weight", (2048, 1024, 1, 1)),
])
def test_state_dict_key_has_torchvisions_shape(name, key, shape):
    assert shapes(name)[key] == shape


@pytest.mark.parametrize("name, last_block", [("resnet18_imagenet", "layer4.1"), ("resnet34", "layer4.2"),
                                              ("resnet50", "layer4.2"), ("resnet101", "layer4.2")])
def test_no_keys_beyond_the_last_block_and_fc(name, last_block):
    keys = list(shapes(name))
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert keys[-3].startswith(last_block + ".")
    assert all(k.split(".")[0] in {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"} for k in keys)


def test_bottleneck_strides_on_its_3x3_convolution_as_torchvision_v1_5():
    with torch.device("meta"):
        model = create_model("resnet50")
    block = model.layer2[0]
    assert (block.conv1.stride, block.conv2.stride, block.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))


def test_in_channels_changes_only_the_stems_convolution():
    one, three = shapes("resnet50", in_channels=1), shapes("resnet50", in_channels=3)
    assert one["conv1.weight"] == (64, 1, 7, 7)
    assert {k: v for k, v in one.items() if k != "conv1.weight"} == \
        {k: v for k, v in three.items() if k != "conv1.weight"}


@pytest.mark.parametrize("size, feature_map", [(64, 2), (224, 7)])
def test_resnet18_maps_images_to_logits_through_a_stride_32_trunk(size, feature_map):
    model = create_model("resnet18_imagenet", num_classes=7).eval()
    seen = {}
    model.layer4.register_forward_hook(lambda module, inputs, output: seen.update(shape=output.shape))
    with torch.no_grad():
        logits = model(images(n=2 if size == 64 else 1, size=size))
    assert logits.shape == (2 if size == 64 else 1, 7)
    assert torch.isfinite(logits).all()
    assert seen["shape"][1:] == (512, feature_map, feature_map)


@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_deeper_models_map_small_one_channel_images_to_logits(name):
    model = create_model(name, in_channels=1, num_classes=5)
    logits = model(images(size=32, channels=1))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


def test_fc_is_the_last_linear_and_takes_the_pooled_features():
    model = create_model("resnet18_imagenet", num_classes=5).eval()
    assert final_linear(model) is model.fc
    assert list(model.modules())[-1] is model.fc
    seen = {}
    model.fc.register_forward_hook(lambda module, inputs, output: seen.update(features=inputs[0]))
    with torch.no_grad():
        model(images())
        pooled = model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(images()))))))))).flatten(1)
    torch.testing.assert_close(seen["features"], pooled)


def test_last_layer_gradient_estimates_equal_autograd_on_resnet18():
    model = trained_looking(num_classes=4)
    x, y = images(n=3), torch.tensor([0, 3, 1])
    estimates = coreaug.estimate_gradients(model, x, y, kind="last_layer", batch_size=2)
    assert estimates.shape == (3, 4 * 512)
    for i in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(estimates[i], model.fc.weight.grad.flatten(), rtol=1e-4, atol=1e-6)


def test_a_saved_state_dict_loads_into_a_fresh_model_with_identical_outputs(tmp_path):
    source, fresh = trained_looking(seed=0), create_model("resnet18_imagenet", num_classes=10).eval()
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    with torch.no_grad():
        assert not torch.allclose(fresh(images()), source(images()))
        report = load_pretrained(fresh, tmp_path / "weights.pt")
        assert torch.equal(fresh(images()), source(images()))
    assert report.loaded == len(source.state_dict())
    assert not report.classifier_reset
    assert str(tmp_path / "weights.pt") in str(report)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_training_script_and_ddp_checkpoints_load(tmp_path, wrap):
    source = trained_looking()
    weights = source.state_dict()
    if wrap == "module.":
        content = {"module." + k: v for k, v in weights.items()}
    else:
        content = {wrap: weights, "epoch": 90, "arch": "resnet18"}
    torch.save(content, tmp_path / "checkpoint.pth")
    model = create_model("resnet18_imagenet", num_classes=10)
    load_pretrained(model, str(tmp_path / "checkpoint.pth"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_a_checkpoint_for_another_number_of_classes_keeps_only_the_fresh_classifier(tmp_path):
    source = trained_looking(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "imagenet.pth")
    torch.manual_seed(5)
    model = create_model("resnet18_imagenet", num_classes=10)
    fresh_fc = {k: v.clone() for k, v in model.fc.state_dict().items()}
    report = load_pretrained(model, tmp_path / "imagenet.pth")
    assert report.classifier_reset
    assert report.loaded == len(source.state_dict()) - 2
    assert "classifier" in str(report)
    for key, value in model.state_dict().items():
        expected = fresh_fc[key[len("fc."):]] if key.startswith("fc.") else source.state_dict()[key]
        assert torch.equal(value, expected), key


def test_a_checkpoint_without_batch_norm_step_counters_still_loads(tmp_path):
    source = trained_looking()
    old_style = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "old.pth")
    model = create_model("resnet18_imagenet", num_classes=10).eval()
    assert load_pretrained(model, tmp_path / "old.pth").loaded == len(old_style)
    with torch.no_grad():
        assert torch.equal(model(images()), source(images()))


def test_a_checkpoint_of_another_architecture_is_refused_naming_keys_and_file(tmp_path):
    torch.save(create_model("resnet18_imagenet").state_dict(), tmp_path / "r18.pth")
    model = create_model("resnet50")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"r18\.pth does not fit.*missing from the file: layer1\.0\.conv3\.weight"
                                         r".*shape mismatch: layer1\.0\.conv1\.weight \(64, 64, 3, 3\)"):
        load_pretrained(model, tmp_path / "r18.pth")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_for_other_input_channels_is_refused_naming_conv1(tmp_path):
    torch.save(create_model("resnet18_imagenet").state_dict(), tmp_path / "rgb.pth")
    with pytest.raises(ValueError, match=r"conv1\.weight \(64, 3, 7, 7\) in the file, \(64, 1, 7, 7\) in the model"):
        load_pretrained(create_model("resnet18_imagenet", in_channels=1), tmp_path / "rgb.pth")


def test_unexpected_keys_are_refused(tmp_path):
    weights = create_model("resnet18_imagenet").state_dict()
    weights["head.extra"] = torch.zeros(3)
    torch.save(weights, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"not in the model: head\.extra"):
        load_pretrained(create_model("resnet18_imagenet"), tmp_path / "extra.pth")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(create_model("cnn"), tmp_path / "nowhere.pth")


def test_a_file_that_is_not_a_checkpoint_is_a_value_error(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"this is not a torch checkpoint\n" * 10)
    with pytest.raises(ValueError, match=r"garbage\.pth is not a readable torch checkpoint"):
        load_pretrained(create_model("cnn"), tmp_path / "garbage.pth")


def test_a_checkpoint_holding_no_state_dict_is_a_value_error(tmp_path):
    torch.save({"epoch": 3, "weights": [1, 2, 3]}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd\.pth does not hold a state dict"):
        load_pretrained(create_model("cnn"), tmp_path / "odd.pth")


class Pickled(nn.Module):
    """Pickled by class reference: torch.load(weights_only=True) must refuse it."""


def test_a_checkpoint_holding_pickled_objects_is_refused_not_run(tmp_path):
    torch.save({"state_dict": create_model("cnn").state_dict(), "extra": Pickled()}, tmp_path / "code.pth")
    with pytest.raises(ValueError, match=r"code\.pth is not a readable torch checkpoint \(it holds pickled"):
        load_pretrained(create_model("cnn"), tmp_path / "code.pth")


def test_a_file_of_another_kind_is_not_said_to_hold_pickled_objects(tmp_path):
    """torch says "Weights only load failed" for a PNG or a script too; they hold no pickled objects."""
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "photo.png")
    (tmp_path / "mynets.py").write_text("import torch\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    for name, reason in (("photo.png", "not a file torch.save writes"), ("mynets.py", "not a file torch.save writes"),
                         ("empty.pth", "the file is empty")):
        with pytest.raises(coreaug.UsageError) as caught:
            load_pretrained(create_model("cnn"), tmp_path / name)
        assert f"{name} is not a readable torch checkpoint ({reason}" in str(caught.value)
        assert "pickled" not in str(caught.value)


def test_a_backbone_file_without_a_classifier_loads_and_keeps_the_fresh_classifier(tmp_path):
    """It was refused ("missing from the file: fc.weight, fc.bias") though a head of another size loads."""
    source = create_model("resnet18_imagenet")
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}, tmp_path / "backbone.pth")
    model = create_model("resnet18_imagenet", num_classes=3)
    fresh = model.fc.weight.detach().clone()
    report = load_pretrained(model, tmp_path / "backbone.pth")
    assert report.classifier_reset and report.classifier_absent and "the file has none" in str(report)
    assert torch.equal(model.fc.weight, fresh) and torch.equal(model.conv1.weight, source.conv1.weight)


def test_load_pretrained_fits_the_cifar_models_too(tmp_path):
    source = create_model("resnet20", num_classes=100)
    torch.save(source.state_dict(), tmp_path / "cifar100.pth")
    report = load_pretrained(create_model("resnet20", num_classes=10), tmp_path / "cifar100.pth")
    assert report.classifier_reset and report.loaded == len(source.state_dict()) - 2
