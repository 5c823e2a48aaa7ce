"""The training step never waits on the device: counted on the CPU, at two batch sizes."""
import pytest
import torch

import coreaug
from coreaug.training.sync_audit import syncs_per_step as audited_syncs_per_step
from test_training_precision import needs_fused_cpu_update

BASE = dict(dataset="synthetic", train_limit=96, test_limit=32, epochs=1, quiet=True, subset=0.25, candidates=2,
            strategy="coreset")


def syncs_per_step(**settings):
    return audited_syncs_per_step(BASE, **settings)


@pytest.mark.parametrize("augment", ["weak", "randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet",
                                     "cutout", "maxloss", "randaugment+cutout"])
def test_no_sync_per_step_for_any_policy(augment):
    per_step, counts = syncs_per_step(augment=augment)
    assert per_step == 0, counts


@pytest.mark.parametrize("settings", [
    dict(strategy="random"), dict(strategy="maxloss"), dict(strategy="full"), dict(strategy="none"),
    dict(strategy="coreset", mode="subset"), dict(strategy="coreset", estimates="training"),
    dict(strategy="coreset", copies=2, weight_augmented=True), dict(weak="resized-crop"),
    dict(strategy="crust", selection_warmup=0), dict(strategy="infobatch"), dict(strategy="coreset-lowloss"),
    dict(strategy="coreset-history"), dict(strategy="coreset-heldout", mode="subset"),
    dict(strategy="full", augment_steps=4), dict(strategy="coreset", augment_steps=3, copies=2),
    # GradScaler hands its inf flag to the fused update: nothing read on the host (torch 2.3 has no fused
    # update for CPU parameters, and the scaler reads the flag each step); on 8x8 digits: fp16 convolutions are
    # slow on a CPU
    pytest.param(dict(precision="fp16", dataset="digits"), marks=needs_fused_cpu_update),
])
def test_no_sync_per_step_for_any_strategy_or_mode(settings):
    per_step, counts = syncs_per_step(**settings)
    assert per_step == 0, counts


def test_the_audit_sees_a_sync_in_a_step(monkeypatch):
    """The audit can fail: a policy that reads a value from every batch is caught."""
    real = coreaug.training.trainer.create_policy

    class Reading:
        needs_model = False

        def __init__(self, policy):
            self.policy = policy

        def __call__(self, images, generator=None, **context):
            float(images.float().mean())
            return self.policy(images, generator, **context)

    monkeypatch.setattr(coreaug.training.trainer, "create_policy", lambda name, **k: Reading(real(name, **k)))
    per_step, counts = syncs_per_step(augment="randaugment")
    assert per_step >= 1, counts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_raise_on_any_sync(monkeypatch):
    """On a GPU, torch itself raises on a sync inside the training steps (from the second step,
    after the plan's move to the device, to the end-of-epoch read of the totals)."""
    import coreaug.training.trainer as trainer

    real_update, real_read = trainer.ProgressBar.update, trainer.EpochTotals.read

    def update(self, count, totals):
        real_update(self, count, totals)
        torch.cuda.set_sync_debug_mode("error")

    def read(self):
        torch.cuda.set_sync_debug_mode("default")
        return real_read(self)
    monkeypatch.setattr(trainer.ProgressBar, "update", update)
    monkeypatch.setattr(trainer.EpochTotals, "read", read)
    try:
        for augment in ("randaugment", "autoaugment", "maxloss", "weak+randaugment+cutout"):
            coreaug.train(coreaug.TrainConfig(**BASE, batch_size=16, augment=augment, device="cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
