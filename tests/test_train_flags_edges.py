"""Edges of the training flags: absurd sizes, inapplicable settings, fp16 on the CPU, the default run folder."""
import os
import warnings

import pytest
import torch
from click.testing import CliRunner

import coreaug
from coreaug.bench.grid import plan_grid
from coreaug.cli.train import claim_folder, default_out, train as train_command
from coreaug.data import ImageDataset, load_dataset, registry
from coreaug.errors import UsageError
from coreaug.training.precision import resolve_precision

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1, quiet=True)


def refusal(**settings):
    """The UsageError's message for TrainConfig(**TINY, **settings).resolved(), or None when accepted."""
    try:
        coreaug.TrainConfig(**{**TINY, **settings}).resolved()
    except UsageError as error:
        return str(error)
    return None


def test_absurd_sizes_and_seeds_are_refused_before_anything_is_written():
    """seed 2**64 overflowed torch.manual_seed; huge batch sizes, copies and candidates failed in torch."""
    assert refusal(seed=2 ** 64 - 1) is None and refusal(copies=64, candidates=64, augment="maxloss") is None
    assert "seed must be an integer in [0, " in refusal(seed=2 ** 64)
    assert "batch_size must be an integer in [1, " in refusal(batch_size=10 ** 20)
    assert "copies must be an integer in [1, 64]" in refusal(copies=65)
    assert "candidates must be an integer in [1, 64]" in refusal(candidates=9999999999, augment="maxloss")


def test_range_messages_do_not_call_infinity_valid():
    assert refusal(weight_decay=float("inf")).startswith("weight_decay must be a finite number >= 0")
    assert refusal(warmup_epochs=float("inf")).startswith("warmup_epochs must be a finite number >= 0")
    assert refusal(lr=float("inf")).startswith("lr must be a finite number > 0")
    assert refusal(momentum=1.0).startswith("momentum must be a number in [0, 1)")


def test_fp16_on_the_cpu_is_warned_about_once_resolved(monkeypatch):
    monkeypatch.setattr("coreaug.training.precision.cpu_runs_bf16", lambda: True)  # bf16 instructions: no warning
    with pytest.warns(UserWarning, match="fp16 is for GPUs"):
        assert resolve_precision("fp16", torch.device("cpu")) == "fp16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
        assert resolve_precision("auto", torch.device("cpu")) == "fp32"
        assert resolve_precision("fp16", torch.device("cpu"), warn=False) == "fp16"  # bench's comparison of settings
    monkeypatch.setattr("coreaug.training.precision.cpu_runs_bf16", lambda: False)  # emulated: 9-15x slower
    with pytest.warns(UserWarning, match="bf16 on this CPU, which lacks bf16 instructions"):
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_a_selection_warmup_that_leaves_a_model_based_rule_no_selection_is_refused():
    """A 'coreset' run whose every selection was random trained without complaint."""
    assert "selection_warmup (5) must be at most 1" in refusal(strategy="coreset", selection_warmup=5, epochs=2)
    assert "must be at most 0" in refusal(strategy="maxloss", selection_warmup=1, select_every=5, epochs=3)
    assert refusal(strategy="coreset", selection_warmup=1, epochs=2) is None
    assert refusal(strategy="random", selection_warmup=5, epochs=2) is None  # random either way (a bench grid's base)


@pytest.mark.parametrize("flags, flag", [
    (["--candidates", "8"], "--candidates"), (["--betas", "0.5,0.9"], "--betas"),
    (["--optimizer", "adamw", "--momentum", "0"], "--momentum"),
    (["--optimizer", "adamw", "--no-nesterov"], "--no-nesterov"), (["--optimizer", "adamw", "--nesterov"], "--nesterov"),
    (["--milestones", "0.3"], "--milestones"), (["--augment", "cutout", "--candidates", "2"], "--candidates")])
def test_a_flag_another_option_makes_unused_is_refused_in_one_line(tmp_path, flags, flag):
    """They were accepted with no effect, and then tied a --resume to them ("candidates: 8 -> 4")."""
    out = tmp_path / "run"
    result = CliRunner().invoke(train_command, ["--dataset", "digits", "--epochs", "2", "--out", str(out), *flags])
    assert result.exit_code == 2, result.output
    assert f"error: {flag} applies to " in result.output and f"leave {flag} out" in result.output
    assert len(result.output.splitlines()) == 1 and not out.exists()


def test_flags_for_the_chosen_options_and_settings_in_the_api_are_accepted(tmp_path):
    """The API does not refuse them: a sweep shares one base config across options (as bench's grids do)."""
    assert refusal(candidates=8, betas=(0.5, 0.9), knn=3, milestones=(0.3,)) is None
    command = ["--dataset", "digits", "--strategy", "coreset", "--augment", "randaugment+maxloss", "--candidates", "2",
               "--optimizer", "adamw", "--betas", "0.5,0.9", "--schedule", "multistep", "--milestones", "0.3",
               "--knn", "3", "--selection-warmup", "1", "--epochs", "2", "--train-limit", "64", "--test-limit", "32",
               "--batch-size", "32", "--quiet", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(train_command, command)
    assert result.exit_code == 0, result.output


def test_settings_a_strategy_never_reads_neither_are_refused_nor_tie_a_resume_to_them(tmp_path):
    """A --resume without the no-op flag was refused: "different config (knn: 3 -> 20)"."""
    tiny = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
            "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]
    first = CliRunner().invoke(train_command, [*tiny, "--strategy", "none", "--knn", "3", "--copies", "2",
                                               "--select-every", "2", "--selection-warmup", "0", "--augment", "cutout"])
    assert first.exit_code == 0, first.output  # a loop over strategies shares these flags
    again = CliRunner().invoke(train_command, [*tiny, "--strategy", "none", "--resume"])
    assert again.exit_code == 0 and "final test accuracy" in again.output, again.output
    changed = CliRunner().invoke(train_command, [*tiny, "--strategy", "none", "--lr", "0.01", "--resume"])
    assert changed.exit_code == 2 and "lr: " in changed.output  # what the run reads still is its identity


def test_the_run_folder_is_named_only_once_the_trainers_checks_pass(tmp_path, monkeypatch):
    """--norm imagenet on 1-channel images is refused in the trainer: "run folder: ..." came first."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(train_command, ["--dataset", "digits", "--epochs", "1", "--norm", "imagenet",
                                                "--quiet"])
    assert result.exit_code == 2 and "normalises RGB images" in result.output
    assert "run folder" not in result.output and not (tmp_path / "runs").exists()


def test_default_run_folders_started_in_the_same_second_differ(tmp_path, monkeypatch):
    """Two runs started in one second got one folder: the second was refused as "in use"."""
    monkeypatch.chdir(tmp_path)
    name = default_out("digits", "random", 0.3, seed=7)
    assert name.startswith(os.path.join("runs", "digits-random-0.3-")) and name.endswith("-seed7")
    first, second = claim_folder(name), claim_folder(name)
    assert (first, second) == (name, f"{name}-2") and os.path.isdir(second)
    result = CliRunner().invoke(train_command, ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32",
                                                "--batch-size", "32", "--epochs", "1", "--quiet", "--seed", "7"])
    assert result.exit_code == 0, result.output
    folder = result.output.splitlines()[0].removeprefix("run folder: ")
    assert folder.startswith(os.path.join("runs", "synthetic-random-0.3-")) and folder.endswith("-seed7")
    assert (tmp_path / folder / "model.pt").exists()


def test_run_grid_takes_a_dict_config_and_single_values_for_its_axes(tmp_path):
    """A dict config raised AttributeError; strategies="random" was split into 'r', 'a', ..."""
    config = coreaug.TrainConfig(**TINY)
    runs = plan_grid(config, str(tmp_path / "plan"), 0.5, "random", "none", 1)
    assert [run.name for run in runs] == ["none-seed0", "random-0.5-seed0"]
    result = coreaug.run_grid(TINY, str(tmp_path / "grid"), subsets=0.5, strategies="random", references=(),
                              seeds=1)
    assert [row["strategy"] for row in result.rows] == ["random"]
    with pytest.raises(UsageError, match="config must be a coreaug.TrainConfig or a dict"):
        coreaug.run_grid(["digits"], str(tmp_path / "bad"), seeds=1)


def test_a_registered_dataset_with_labels_outside_its_classes_is_refused_by_name(monkeypatch):
    """torch failed in the first step with "Target 3 is out of bounds"."""
    def loader(data_dir=None, *, download=False, progress=True):
        x = torch.zeros(12, 1, 8, 8, dtype=torch.uint8)
        y = torch.tensor([3, 7] * 6)
        return ImageDataset("lab37", x[:10], y[:10], x[10:], y[10:], 2, None, (0.5,), (0.25,), "mem")
    monkeypatch.setitem(registry._LOADERS, "lab37", loader)
    with pytest.raises(UsageError, match=r"dataset 'lab37'.*train labels in \[3, 7\], outside \[0, num_classes\)"):
        load_dataset("lab37")
