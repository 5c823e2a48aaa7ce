"""Max-loss transforms keep, per example, the candidate augmentation with the highest loss."""
import pytest
import torch

import coreaug.augment as A


class AddRandomLevel(A.Policy):
    """A base policy whose candidates differ only in brightness: adds 0-99 levels per example."""

    def __call__(self, images, generator=None, **context):
        shift = torch.randint(0, 100, (images.shape[0], 1, 1, 1), generator=generator)
        return (images.int() + shift).clamp(0, 255).to(images.dtype)


class BrightnessScorer(torch.nn.Module):
    """Two classes; the class-1 logit is 10 x mean brightness, so for label 0 the loss grows
    with brightness and for label 1 it shrinks."""

    def __init__(self):
        super().__init__()
        self.modes_seen = []

    def forward(self, x):
        self.modes_seen.append(self.training)
        brightness = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(brightness), 10 * brightness], dim=1)


def test_maxloss_picks_the_brightest_candidate_for_label_0_and_darkest_for_label_1():
    images = torch.full((6, 1, 8, 8), 100, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    policy = A.MaxLossAugment(AddRandomLevel(), candidates=5)
    out = policy(images, torch.Generator().manual_seed(0), model=BrightnessScorer(), labels=labels)
    candidates = AddRandomLevel()(images.repeat(5, 1, 1, 1), torch.Generator().manual_seed(0))
    levels = candidates[:, 0, 0, 0].view(5, 6)
    expected = torch.where(labels == 0, levels.max(dim=0).values, levels.min(dim=0).values)
    assert torch.equal(out[:, 0, 0, 0], expected)


def test_maxloss_over_randaugment_returns_the_highest_loss_candidate():
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 2, (8,))
    model = BrightnessScorer()
    policy = A.create_policy("maxloss", base="randaugment", candidates=4)
    out = policy(images, torch.Generator().manual_seed(3), model=model, labels=labels)
    candidates = A.RandAugment()(images.repeat(4, 1, 1, 1),
                                 torch.Generator().manual_seed(3)).view(4, 8, 3, 16, 16)
    losses = torch.stack([torch.nn.functional.cross_entropy(
        model(c.float() / 255), labels, reduction="none") for c in candidates])
    best = candidates[losses.argmax(dim=0), torch.arange(8)]
    assert torch.equal(out, best)


def test_maxloss_evaluates_in_eval_mode_without_grad_and_restores_training_mode():
    model = BrightnessScorer()
    model.train()
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    policy = A.create_policy("maxloss", base="randaugment", candidates=3)
    with torch.enable_grad():
        out = policy(images, model=model, labels=torch.zeros(4, dtype=torch.long))
    assert model.training and model.modes_seen and not any(model.modes_seen)
    assert not out.requires_grad


def test_maxloss_uses_preprocess_for_the_model_input():
    seen = []
    model = BrightnessScorer()
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    policy = A.MaxLossAugment(AddRandomLevel(), candidates=2)
    policy(images, model=model, labels=torch.zeros(2, dtype=torch.long),
           preprocess=lambda x: seen.append(x.dtype) or (x.float() - 128) / 64)
    assert seen and set(seen) == {torch.uint8}  # small candidates are scored in one pass


def test_maxloss_needs_a_model_and_says_how_to_pass_it():
    policy = A.create_policy("maxloss")
    assert policy.needs_model and A.Compose([A.Weak(), policy]).needs_model
    assert not A.create_policy("weak+randaugment").needs_model
    with pytest.raises(ValueError, match="model=model, labels=labels"):
        policy(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_maxloss_rejects_labels_of_the_wrong_shape():
    policy = A.create_policy("maxloss")
    with pytest.raises(ValueError, match=r"labels must be an integer tensor of shape \(2,\)"):
        policy(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), model=BrightnessScorer(),
               labels=torch.zeros(3, dtype=torch.long))


def test_compose_passes_the_model_to_maxloss_inside_it():
    images = torch.full((4, 1, 8, 8), 50, dtype=torch.uint8)
    policy = A.create_policy("weak+maxloss", flip=False, padding=0)
    out = policy(images, torch.Generator().manual_seed(0), model=BrightnessScorer(),
                 labels=torch.zeros(4, dtype=torch.long))
    assert out.shape == images.shape


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_maxloss_takes_labels_of_any_integer_dtype(dtype):
    """numpy's default int32 labels, for one: cross_entropy wants int64, so they are converted."""
    images = torch.full((4, 1, 2, 2), 100, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    policy = A.MaxLossAugment(AddRandomLevel(), candidates=5)
    expected = policy(images, torch.Generator().manual_seed(0), model=BrightnessScorer(), labels=labels)
    out = policy(images, torch.Generator().manual_seed(0), model=BrightnessScorer(), labels=labels.to(dtype))
    assert torch.equal(out, expected)


def test_maxloss_refuses_float_labels_naming_their_dtype():
    policy = A.MaxLossAugment(AddRandomLevel(), candidates=2)
    with pytest.raises(ValueError, match=r"integer tensor of shape \(4,\).*got a torch.float32 tensor"):
        policy(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), model=BrightnessScorer(), labels=torch.zeros(4))
