"""Augmenting several steps' batches per call: the same examples trained and augmented, the
calls divided, the rule for how many steps, and wrong values refused."""
import dataclasses
import types

import pytest
import torch

import coreaug
import coreaug.training.trainer as trainer
from coreaug.errors import UsageError

BASE = dict(dataset="synthetic", train_limit=200, test_limit=100, epochs=2, batch_size=16, quiet=True,
            subset=0.3, augment="randaugment", seed=0, strategy="coreset")


def counting_policies(monkeypatch):
    """Count the calls of every policy the trainer creates, by name."""
    calls = {}
    real = trainer.create_policy

    def create(name, **kwargs):
        policy = real(name, **kwargs)

        class Counted:
            needs_model = policy.needs_model

            def __call__(self, images, generator=None, **context):
                calls[name] = calls.get(name, 0) + 1
                return policy(images, generator, **context)
        return Counted()
    monkeypatch.setattr(trainer, "create_policy", create)
    return calls


@pytest.mark.parametrize("strategy", ["full", "coreset"])
def test_a_block_of_steps_trains_the_same_examples_in_fewer_calls(monkeypatch, strategy):
    calls = counting_policies(monkeypatch)
    one = coreaug.train(coreaug.TrainConfig(**dict(BASE, strategy=strategy), augment_steps=1))
    per_step = dict(calls)
    calls.clear()
    block = coreaug.train(coreaug.TrainConfig(**dict(BASE, strategy=strategy), augment_steps=4))
    for a, b in zip(one.history, block.history):
        assert (a["n_trained"], a["n_augmented"]) == (b["n_trained"], b["n_augmented"])
    steps = [-(-m["n_trained"] // 16) for m in one.history]  # the plan's batches per epoch
    blocks = sum(-(-s // 4) for s in steps)
    assert per_step["weak"] == sum(steps) and calls["weak"] == blocks
    if strategy == "full":  # every batch holds copies
        assert per_step["randaugment"] == sum(steps) and calls["randaugment"] == blocks
    else:  # a batch without copies makes no strong call
        assert calls["randaugment"] <= blocks < per_step["randaugment"] <= sum(steps)
    assert block.final_test_accuracy > 0.2  # it learns (chance is 0.1)


def test_maxloss_and_crust_stay_one_step_per_call(monkeypatch):
    calls = counting_policies(monkeypatch)
    result = coreaug.train(coreaug.TrainConfig(**dict(BASE, strategy="full", augment="maxloss", candidates=2,
                                                      augment_steps=4)))
    steps = sum(-(-m["n_trained"] // 16) for m in result.history)
    assert calls["maxloss"] == steps  # every batch holds copies: scored with the model as it is at each step
    calls.clear()
    result = coreaug.train(coreaug.TrainConfig(**dict(BASE, strategy="crust", selection_warmup=0, augment_steps=4)))
    steps = sum(-(-m["n_trained"] // 16) for m in result.history)
    assert calls["weak"] >= steps  # a weak call per step (and more for the partners), not one per 4 steps


def test_how_many_steps_per_call():
    batches = types.SimpleNamespace(partners=None, batch_size=128)
    plain, scoring = types.SimpleNamespace(needs_model=False), types.SimpleNamespace(needs_model=True)
    given = coreaug.TrainConfig(dataset="synthetic", augment_steps=5).resolved()
    default = coreaug.TrainConfig(dataset="synthetic").resolved()  # 32 px
    large = dataclasses.replace(default, store_size=96)
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)  # a device object: nothing runs on it
    assert trainer.steps_per_augment_call(default, plain, batches, cpu) == 1
    assert trainer.steps_per_augment_call(default, plain, batches, cuda) == trainer.GPU_AUGMENT_STEPS == 8
    assert trainer.steps_per_augment_call(large, plain, batches, cuda) == 1  # K batches' copies held at once
    for device in (cpu, cuda):
        assert trainer.steps_per_augment_call(given, plain, batches, device) == 5
        assert trainer.steps_per_augment_call(given, scoring, batches, device) == 1
        assert trainer.steps_per_augment_call(default, scoring, batches, device) == 1
        mixed = types.SimpleNamespace(partners=torch.zeros(4), batch_size=128)
        assert trainer.steps_per_augment_call(given, plain, mixed, device) == 1
        assert trainer.steps_per_augment_call(default, plain, mixed, device) == 1
    with pytest.raises(UsageError, match="augment_steps must be an integer >= 1"):
        coreaug.TrainConfig(dataset="synthetic", augment_steps=0).resolved()


@pytest.mark.parametrize("augment", ["weak", "resized-crop", "randaugment+weak", "maxloss+weak"])
@pytest.mark.parametrize("flip", [None, False, True])
def test_a_strong_policy_that_flips_follows_the_flip_setting(augment, flip):
    config = coreaug.TrainConfig(dataset="digits", augment=augment, flip=flip).resolved()  # digits: no flip
    strong = trainer._strong_policy(config)
    flipping = [p for p in getattr(strong, "policies", [strong]) if hasattr(p, "flip")]
    assert len(flipping) == 1 and flipping[0].flip is bool(flip)
