"""Large images and ImageNet-style training: resized-crop weak augmentation, pretrained weights,
fine-tuning weight decay, and a folder of 128 px images streamed through an ImageNet ResNet."""
import subprocess
import sys

import pytest
import torch

import coreaug
from coreaug.models import create_model
from coreaug.training.trainer import parameter_groups, weak_policy_name

from test_data_image_folder import write_split


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
                           "autoaugment-imagenet", "--gradients", "last_layer", "--workers", "0",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "classifier freshly initialised" in proc.stdout + proc.stderr
    assert "streaming 15 images" in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "summary.json").exists()
