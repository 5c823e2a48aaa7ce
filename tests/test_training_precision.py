"""--precision: resolved per device, recorded, and every choice trains on the CPU."""
import json

import pytest
import torch

import coreaug
from coreaug.training.distributed import check_world_size
from coreaug.training.precision import resolve_precision
from coreaug.training.trainer import has_fused_step
from test_compile_support import needs_compile

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1, quiet=True,
            strategy="coreset")


def test_auto_is_fp32_on_the_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.parametrize("capability, chosen", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_is_bf16_only_on_gpus_with_bf16_arithmetic(monkeypatch, capability, chosen):
    """torch.cuda.is_bf16_supported() says yes on a V100 or T4 (emulated): auto chose slow bf16 there."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", torch.device("cuda", 0)) == chosen


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
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)  # as torchrun launches it (WORLD_SIZE alone is no launch: refused otherwise)
    with pytest.raises(ValueError, match="cannot be launched by torchrun"):
        coreaug.run_grid(coreaug.TrainConfig(**TINY), str(tmp_path / "grid"), subsets=(0.5,))
    assert not (tmp_path / "grid").exists()


class FusedOnlyOnCuda(torch.optim.SGD):
    """SGD as torch 2.3 has it for CPU parameters: fused=True is taken, and its first step fails."""

    def step(self, closure=None):
        if self.defaults.get("fused") and self.param_groups[0]["params"][0].device.type != "cuda":
            raise NotImplementedError("Could not run 'aten::_fused_sgd_' with arguments from the 'CPU' backend")
        return super().step(closure)


def test_an_fp16_run_where_torch_has_no_fused_update_for_the_device_trains_unfused(tmp_path, monkeypatch):
    assert not has_fused_step(FusedOnlyOnCuda, torch.device("cpu"))
    built = []

    class Recorded(FusedOnlyOnCuda):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self.defaults.get("fused"))

    monkeypatch.setattr(torch.optim, "SGD", Recorded)
    result = coreaug.train(coreaug.TrainConfig(**dict(TINY, epochs=2), precision="fp16"))
    assert built == [True, None] and len(result.history) == 2  # the one-element probe, then the run's: unfused
    assert result.history[-1]["train_loss"] == result.history[-1]["train_loss"]  # not NaN


needs_fused_cpu_update = pytest.mark.skipif(not has_fused_step(torch.optim.SGD, torch.device("cpu")),
                                            reason="this torch has no fused SGD for CPU parameters (2.4 and later do)")


@needs_compile
@needs_fused_cpu_update
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_an_eager_fp16_run_resumed_compiled_updates_as_a_compiled_run_does(tmp_path, monkeypatch, optimizer):
    """A checkpoint holds what the optimizer has learnt, not how this run updates: an eager fp16
    run's fused optimizer (for its gradient scaler), cut and resumed with `compile`, becomes the
    compiled step's own (one graph, AdamW's step counts where its form keeps them)."""
    from unittest import mock

    from coreaug.training import compiled_step, trainer

    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)  # the same Python, eagerly
    seen, real_epoch, real_new_epoch = [], trainer._train_epoch, compiled_step.CompiledStep.new_epoch

    def new_epoch(self):
        seen.append((self.one_graph, any(group.get("fused") for group in self.optimizer.param_groups),
                     {state["step"].device.type for state in self.optimizer.state.values() if "step" in state}))
        return real_new_epoch(self)

    def cut(config, run, data, plan, strong, weak, epoch, *args, **kwargs):
        assert all(group["fused"] for group in run.optimizer.param_groups)  # the eager fp16 run's
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(config, run, data, plan, strong, weak, epoch, *args, **kwargs)

    settings = dict(dataset="digits", train_limit=64, test_limit=16, batch_size=16, epochs=2, quiet=True,
                    precision="fp16", optimizer=optimizer, out=str(tmp_path / "run"))  # 8x8: fp16 convs are slow
    with mock.patch.object(trainer, "_train_epoch", cut), pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**settings))
    monkeypatch.setattr(compiled_step.CompiledStep, "new_epoch", new_epoch)
    result = coreaug.train(coreaug.TrainConfig(**settings, resume=True, compile=True))
    assert [m["epoch"] for m in result.history] == [0, 1]
    assert seen == [(True, False, {"cpu"} if optimizer == "adamw" else set())], seen


@needs_fused_cpu_update
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_first_fp16_step_skipped_for_an_inf_leaves_the_fused_update_training_as_fp32_would(optimizer):
    """GradScaler skips a step whose gradients overflow (its scale starts at 65536); torch's fused
    SGD had made its momentum buffers with empty_like in that step and left them unwritten, so
    the next steps read leftover memory as momentum: NaN weights from the first epoch."""
    from coreaug.training.trainer import make_optimizer

    config = coreaug.TrainConfig(dataset="synthetic", optimizer=optimizer).resolved()
    models = [torch.nn.Linear(3, 2) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    scaled, plain = make_optimizer(config, models[0], scaled=True), make_optimizer(config, models[1])
    assert scaled.defaults["fused"]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    x = torch.ones(4, 3)
    for step, factor in enumerate([float("inf"), 1.0, 1.0]):
        scaler.scale(models[0](x).sum() * factor).backward()
        scaler.step(scaled)
        scaler.update()
        scaled.zero_grad()
        if step:  # the skipped step is no step for the plain one
            models[1](x).sum().backward()
            plain.step()
            plain.zero_grad()
    for mine, theirs in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(mine, theirs, atol=1e-6), (mine, theirs)
