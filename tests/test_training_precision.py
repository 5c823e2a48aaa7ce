"""--precision: resolved per device, recorded, and every choice trains on the CPU."""
import json

import pytest
import torch

import coreaug
from coreaug.training.distributed import check_world_size
from coreaug.training.precision import resolve_precision

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1, quiet=True,
            strategy="coreset")


def test_auto_is_fp32_on_the_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "fp32"])
def test_each_precision_trains_and_is_recorded(tmp_path, precision):
    result = coreaug.train(coreaug.TrainConfig(**TINY, precision=precision, out=str(tmp_path / "run")))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == ("fp32" if precision == "auto" else precision)
    assert summary["config"]["precision"] == precision
    assert result.history[0]["train_loss"] == result.history[0]["train_loss"]  # not NaN


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        coreaug.train(coreaug.TrainConfig(**TINY, precision="fp8"))


def test_sync_bn_on_cpu_processes_is_refused():
    config = coreaug.TrainConfig(**TINY, sync_bn=True, device="cpu").resolved()
    with pytest.raises(ValueError, match="--sync-bn .* needs CUDA"):
        check_world_size(config, 64, 2)


def test_bench_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="cannot be launched by torchrun"):
        coreaug.run_grid(coreaug.TrainConfig(**TINY), str(tmp_path / "grid"), subsets=(0.5,))
    assert not (tmp_path / "grid").exists()
