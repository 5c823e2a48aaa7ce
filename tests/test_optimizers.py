"""Optimizers: SGD (the default) or AdamW with its betas, over the same no-decay parameter groups."""
import subprocess
import sys

import pytest
import torch

import coreaug
from coreaug.models import create_model
from coreaug.training.trainer import make_optimizer

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1, quiet=True)


def test_sgd_with_nesterov_momentum_is_the_default():
    optimizer = make_optimizer(coreaug.TrainConfig(**TINY).resolved(), create_model("cnn", 3, 10))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]


def test_nesterov_without_momentum_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="nesterov=True needs a momentum above 0.*nesterov=False"):
        coreaug.train(coreaug.TrainConfig(**TINY, momentum=0.0, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    plain = coreaug.TrainConfig(**TINY, momentum=0.0, nesterov=False).resolved()  # plain SGD is fine
    assert make_optimizer(plain, create_model("cnn", 3, 10)).defaults["momentum"] == 0.0


def test_adamw_takes_its_betas_and_leaves_1d_parameters_undecayed_without_norm_decay():
    config = coreaug.TrainConfig(**TINY, optimizer="adamw", betas=(0.8, 0.95), norm_decay=False).resolved()
    decayed, plain = make_optimizer(config, create_model("resnet20", 3, 10)).param_groups
    assert isinstance(make_optimizer(config, create_model("cnn", 3, 10)), torch.optim.AdamW)
    assert decayed["betas"] == (0.8, 0.95) and decayed["weight_decay"] == config.weight_decay > 0
    assert plain["weight_decay"] == 0.0 and all(p.ndim == 1 for p in plain["params"])


def test_adamw_defaults_to_its_own_learning_rate_and_weight_decay_unless_given():
    config = coreaug.TrainConfig(**TINY, optimizer="adamw").resolved()
    assert (config.lr, config.weight_decay) == (1e-3, 0.05)
    given = coreaug.TrainConfig(**TINY, optimizer="adamw", lr=3e-4, weight_decay=0.0).resolved()
    assert (given.lr, given.weight_decay) == (3e-4, 0.0)


def test_a_run_trains_with_adamw_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", "synthetic", "--train-limit", "64",
                           "--test-limit", "32", "--batch-size", "32", "--epochs", "1", "--quiet", "--optimizer",
                           "adamw", "--betas", "0.85,0.98", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["optimizer"]
    assert state["param_groups"][0]["betas"] == (0.85, 0.98)
    assert "exp_avg_sq" in next(iter(state["state"].values()))  # Adam's moments, not SGD's momentum


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adam"], "'adam' is not one of 'sgd', 'adamw'"),
    (["--optimizer", "adamw", "--betas", "0.9"], "betas must be two numbers in [0, 1)"),
    (["--optimizer", "adamw", "--betas", "0.9,x"], "--betas must be comma-separated numbers"),
])
def test_a_bad_optimizer_setting_is_one_line_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", "synthetic", *args,
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not (tmp_path / "run").exists()
