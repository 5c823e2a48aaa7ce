"""A user's mistake is a coreaug.UsageError, shown in one line; any other error keeps its traceback."""
import numpy as np
import pytest
from click.testing import CliRunner

import coreaug
from coreaug.cli.main import app

TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--epochs", "1", "--quiet"]


def test_usage_error_is_a_value_error():
    assert issubclass(coreaug.UsageError, ValueError)


def test_a_bad_train_setting_raises_usage_error():
    with pytest.raises(coreaug.UsageError, match="subset must be a fraction"):
        coreaug.TrainConfig(dataset="synthetic", subset=1.5).resolved()


def test_a_bad_selection_argument_raises_usage_error():
    with pytest.raises(coreaug.UsageError, match="fraction"):
        coreaug.select_random(np.arange(10) % 2, fraction=1.5)


def test_a_bad_policy_name_raises_usage_error():
    with pytest.raises(coreaug.UsageError, match="unknown policy"):
        coreaug.create_policy("no-such-policy")


def test_the_cli_shows_a_usage_error_in_one_line_with_exit_2(monkeypatch, tmp_path):
    def mistaken(config):
        raise coreaug.UsageError("what was wrong, and what to do")
    monkeypatch.setattr(coreaug, "train", mistaken)
    result = CliRunner().invoke(app, ["train", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output == "error: what was wrong, and what to do\n"


def test_the_cli_lets_any_other_value_error_through_with_its_traceback(monkeypatch, tmp_path):
    def failing(config):
        raise ValueError("an invariant broke mid-run")
    monkeypatch.setattr(coreaug, "train", failing)
    result = CliRunner().invoke(app, ["train", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error:" not in result.output


def test_a_full_disk_under_torch_save_is_an_os_error_naming_the_file_and_the_cli_says_so_in_one_line(monkeypatch,
                                                                                                        tmp_path):
    """torch.save on a full disk raised "[enforce fail at inline_container.cc] unexpected pos", burying the reason."""
    import errno

    from coreaug.files import atomic_write

    def full(f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 389184 vs 389072")
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as caught:
        atomic_write(target, full, "wb")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert list(tmp_path.iterdir()) == []  # no temporary file left

    def writing(config):
        atomic_write(target, full, "wb")
    monkeypatch.setattr(coreaug, "train", writing)
    result = CliRunner().invoke(app, ["train", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith(f"error: No space left on device: {target}; free some space")


def test_an_out_name_too_long_for_the_disk_is_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *TINY, "--out", str(tmp_path / ("x" * 300))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "File name too long" in proc.stderr


def test_an_empty_out_is_refused_not_a_run_that_keeps_nothing():
    with pytest.raises(coreaug.UsageError, match="out is empty"):
        coreaug.TrainConfig(dataset="synthetic", out="").resolved()


def test_multistep_without_milestones_is_refused_not_a_constant_rate():
    with pytest.raises(coreaug.UsageError, match="schedule 'multistep' divides the learning rate at its milestones"):
        coreaug.TrainConfig(dataset="synthetic", schedule="multistep", milestones=()).resolved()
    assert coreaug.TrainConfig(dataset="synthetic", milestones=()).resolved().milestones == ()  # cosine reads none


def test_an_out_starting_with_a_tilde_is_expanded_once_where_the_config_is_made(monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setenv("HOME", str(tmp_path))
    assert coreaug.TrainConfig(out="~/runs/x").out == str(tmp_path / "runs" / "x")
    assert coreaug.TrainConfig(out=Path("~/runs/x")).resolved().out == str(tmp_path / "runs" / "x")
    assert coreaug.TrainConfig(out="runs/~x").out == "runs/~x"


@pytest.mark.parametrize("field, value, message", [
    ("overwrite", "False", "overwrite must be True or False, got 'False'"),  # truthy: it deleted a finished run
    ("quiet", 0, "quiet must be True or False"),
    ("flip", "x", "flip must be True or False or None"),
    ("augment", None, "augment must be a name"),
    ("dataset", ["digits"], "dataset must be a path"),
    ("out", 1, "out must be a path .* or None"),
    ("cache_dir", 1.5, "cache_dir must be a path"),
    ("milestones", 0.5, "milestones must be a list"),
])
def test_a_field_of_the_wrong_kind_is_one_usage_error_before_anything_runs(tmp_path, field, value, message):
    finished = tmp_path / "run"
    finished.mkdir()
    (finished / "summary.json").write_text("{}")
    config = {"dataset": "synthetic", "out": str(finished), **{field: value}}
    with pytest.raises(coreaug.UsageError, match=message):
        coreaug.train(coreaug.TrainConfig(**config))
    assert (finished / "summary.json").read_text() == "{}"


def test_numpy_numbers_and_a_torch_device_train_and_are_recorded_as_python_values(tmp_path):
    import json

    import torch

    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, quiet=True, out=str(tmp_path / "r"),
                                 epochs=np.int64(1), seed=np.int64(3), lr=np.float32(0.05), subset=np.float64(0.5),
                                 flip=np.bool_(False), device=torch.device("cpu"))
    assert (type(config.seed), type(config.lr), type(config.flip), config.device) == (int, float, bool, "cpu")
    coreaug.train(config)  # the seed reached torch's generators, summary.json took the device
    assert json.loads((tmp_path / "r" / "config.json").read_text())["seed"] == 3
    method = coreaug.CoresetAugmentation(torch.arange(40) % 4, seed=np.int64(3), copies=np.int64(1))
    assert torch.equal(method.start_epoch(0).indices, coreaug.CoresetAugmentation(torch.arange(40) % 4, seed=3)
                       .start_epoch(0).indices)


def test_a_compiled_module_passed_to_train_is_refused_naming_the_module_and_compile(tmp_path):
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(coreaug.UsageError, match="torch.compile's wrapper; pass the module itself .Sequential."):
        coreaug.train(coreaug.TrainConfig(dataset="synthetic", model=None, out=str(tmp_path / "r")),
                      model=torch.compile(net, backend="eager"))
    assert not (tmp_path / "r").exists()  # nothing written: its weights would have been saved as _orig_mod.*


@pytest.mark.parametrize("field", ["momentum", "label_smoothing"])
def test_a_momentum_or_label_smoothing_of_one_is_refused(field):
    # momentum 1 never forgets a gradient; label smoothing 1 trains on uniform targets
    with pytest.raises(coreaug.UsageError, match=rf"{field} must be a number in \[0, 1\), got 1"):
        coreaug.TrainConfig(dataset="synthetic", **{field: 1}).resolved()
    assert getattr(coreaug.TrainConfig(dataset="synthetic", **{field: 0.99}).resolved(), field) == 0.99
