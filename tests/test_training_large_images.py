"""Large images and ImageNet-style training: resized-crop weak augmentation, pretrained weights,
fine-tuning weight decay, and a folder of 128 px images streamed through an ImageNet ResNet."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import coreaug
from coreaug.models import create_model
from coreaug.training.trainer import parameter_groups, weak_policy_name

from test_data_image_folder import write_split

CPU = torch.device("cpu")


@pytest.mark.parametrize("weak, size, folder, expected", [
    ("auto", 128, True, "resized-crop"), ("auto", 64, True, "weak"), ("auto", 128, False, "weak"),
    ("pad-crop", 224, True, "weak"), ("resized-crop", 32, False, "resized-crop"),
])
def test_weak_augmentation_follows_the_image_size(tmp_path, weak, size, folder, expected):
    dataset = str(tmp_path) if folder else "synthetic"
    assert weak_policy_name(coreaug.TrainConfig(dataset=dataset, weak=weak, image_size=size)) == expected


def test_without_norm_decay_only_weights_of_two_or_more_dims_decay():
    model = create_model("resnet20", 3, 10)
    decayed, plain = parameter_groups(model, 5e-4, norm_decay=False)
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert plain["weight_decay"] == 0.0 and "weight_decay" not in decayed
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert len(parameter_groups(model, 5e-4)) == 1


def test_without_norm_decay_no_normalisation_layer_or_bias_decays_whatever_its_shape():
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.norm = torch.nn.LayerNorm([4, 8, 8])  # 3-D weight and bias: they decayed
            self.head = torch.nn.Linear(256, 10)
            self.bias = torch.nn.Parameter(torch.zeros(1, 10))  # a bias of its own, 2-D

    net = Net()
    decayed, plain = parameter_groups(net, 5e-4, norm_decay=False)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decayed["params"]) == ["conv.weight", "head.weight"]
    assert sorted(names[id(p)] for p in plain["params"]) == ["bias", "conv.bias", "head.bias", "norm.bias",
                                                             "norm.weight"]


def test_a_run_starts_from_the_pretrained_weights(tmp_path):
    settings = dict(dataset="synthetic", train_limit=64, test_limit=64, epochs=3, batch_size=16, quiet=True,
                    strategy="none")
    trained = coreaug.train(coreaug.TrainConfig(**settings))
    torch.save(trained.model.state_dict(), tmp_path / "weights.pt")
    # With a vanishing learning rate the run keeps the weights it started from.
    resumed = coreaug.train(coreaug.TrainConfig(**{**settings, "epochs": 1, "lr": 1e-12},
                                                pretrained=str(tmp_path / "weights.pt")))
    fresh = coreaug.train(coreaug.TrainConfig(**{**settings, "epochs": 1, "lr": 1e-12}))
    weights = {n: t for n, t in trained.model.state_dict().items() if t.is_floating_point() and "running" not in n}
    for name, tensor in weights.items():  # (BatchNorm's running statistics move with the data)
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=1e-6, atol=1e-6)
    assert not all(torch.allclose(fresh.model.state_dict()[n], t) for n, t in weights.items())


def test_a_missing_pretrained_file_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", "synthetic", "--pretrained",
                           str(tmp_path / "absent.pt"), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "absent.pt" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_folder_of_large_images_fine_tunes_an_imagenet_resnet_streamed(tmp_path):
    write_split(tmp_path / "data", "train", per_class=4)
    write_split(tmp_path / "data", "val", per_class=1)
    torch.save(create_model("resnet18_imagenet", 3, 1000).state_dict(), tmp_path / "imagenet.pt")
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", str(tmp_path / "data"),
                           "--image-size", "128", "--model", "resnet18_imagenet", "--pretrained",
                           str(tmp_path / "imagenet.pt"), "--no-norm-decay", "--lr", "0.001", "--stream", "always",
                           "--epochs", "1", "--batch-size", "6", "--subset", "0.5", "--augment",
                           "autoaugment-imagenet", "--strategy", "coreset", "--gradients", "last_layer",
                           "--workers", "0",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "classifier freshly initialised" in proc.stdout + proc.stderr
    assert "streaming 15 images" in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "summary.json").exists()


def _pets(root, per_class=2):
    write_split(root, "train", per_class=per_class)
    write_split(root, "val", per_class=1)
    return str(root)


@pytest.mark.parametrize("weak, size, folder, store", [
    ("auto", 224, True, 256), ("auto", 128, True, 146), ("auto", 64, True, 64), ("resized-crop", 56, True, 64),
    ("pad-crop", 224, True, 224), ("resized-crop", None, False, 32),  # a registered dataset keeps its own size
])
def test_resized_crop_runs_store_256_for_224_and_other_runs_the_image_size(tmp_path, weak, size, folder, store):
    dataset = str(tmp_path) if folder else "synthetic"
    assert coreaug.TrainConfig(dataset=dataset, weak=weak, image_size=size).resolved().store_size == store


def test_a_store_size_above_the_image_size_needs_the_resized_crop(tmp_path):
    with pytest.raises(coreaug.UsageError, match="needs the resized-crop .*--weak resized-crop"):
        coreaug.TrainConfig(dataset=str(tmp_path), image_size=16, store_size=20, weak="pad-crop").resolved()


def test_a_folder_is_stored_at_the_store_size_and_trained_at_the_image_size(tmp_path):
    from coreaug.training.inputs import load_run_data
    from coreaug.training.trainer import _weak_policy

    config = coreaug.TrainConfig(dataset=_pets(tmp_path / "pets"), image_size=128, model="cnn", quiet=True,
                                 workers=0, cache_dir=str(tmp_path / "cache")).resolved()
    data = load_run_data(config, torch.device("cpu"))
    assert data.train_images.shape[1:] == (3, 146, 146) and data.test_images.shape[1:] == (3, 146, 146)
    crops = _weak_policy(config, True)(data.train_images.read(slice(0, 4)), torch.Generator().manual_seed(0))
    assert crops.shape == (4, 3, 128, 128)
    assert data.preprocess(data.test_images.read(slice(0, 2))).shape == (2, 3, 128, 128)


def test_evaluation_resizes_to_the_store_size_then_takes_the_centre_crop(tmp_path):
    """As torchvision's Resize(20) then CenterCrop(16) on a 40 x 30 image (here store 20, size 16)."""
    from PIL import Image

    from coreaug.data.image_folder import load_image_folder
    from coreaug.training.inputs import Normalize

    _pets(tmp_path / "pets")
    data = load_image_folder(tmp_path / "pets", image_size=16, store_size=20, progress=False,
                             cache_dir=tmp_path / "cache")
    image = Image.open(tmp_path / "pets" / "val" / "cat" / "0.jpg").convert("RGB")  # 40 x 30
    resized = image.resize((27, 20), Image.BILINEAR)  # shorter side 20, as the cache does
    expected = torch.from_numpy(np.array(resized.crop((5, 2, 21, 18)))).permute(2, 0, 1)
    seen = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu", crop=16)(data.test_images[:1])[0] * 255
    assert torch.equal(seen.round().to(torch.uint8), expected)


def test_pretrained_runs_are_normalised_as_imagenet_weights_expect(tmp_path):
    from coreaug.training.inputs import load_run_data

    torch.save({"w": torch.zeros(1)}, tmp_path / "weights.pt")
    base = dict(dataset=_pets(tmp_path / "pets"), image_size=16, model="cnn", quiet=True, workers=0,
                cache_dir=str(tmp_path / "cache"))
    pretrained = load_run_data(coreaug.TrainConfig(**base, pretrained=str(tmp_path / "weights.pt")).resolved(), CPU)
    assert pretrained.preprocess.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert pretrained.preprocess.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    own = load_run_data(coreaug.TrainConfig(**base, pretrained=str(tmp_path / "weights.pt"), norm="dataset").resolved(),
                        CPU)
    fresh = load_run_data(coreaug.TrainConfig(**base).resolved(), CPU)
    assert own.preprocess.mean.tolist() == fresh.preprocess.mean.tolist() != pretrained.preprocess.mean.tolist()


def test_imagenet_norm_on_grayscale_data_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", "digits", "--norm", "imagenet",
                           "--epochs", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--norm dataset" in proc.stderr
