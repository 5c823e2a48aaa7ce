"""The trainer's numbers mean what the docs say: the coreset's weights, crust's default warm-up, seeds
past 2**29 and 2**32, the selection losses, --gradient-dim, the momentum refusal, milestones within the warm-up."""
import os
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import coreaug
from coreaug.augment.sampling import MASK32, RandomSource, mix32, source_key
from coreaug.cli.train import train as train_command
from coreaug.errors import UsageError
from coreaug.selection.gradients import GradientSketch
from coreaug.selection.rules import select_by_rule
from coreaug.training.config import default_selection_warmup
from coreaug.training.method import epoch_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def page(name):
    with open(os.path.join(ROOT, *name.split("/")), encoding="utf-8") as f:
        return f.read()


def test_the_coreset_weights_reach_the_loss_in_subset_mode_or_with_weight_augmented_as_the_docs_say():
    """how-it-works said "The training loss weights each example by it", and append mode (the default)
    trains every entry at weight 1."""
    labels = np.repeat(np.arange(2), 30)
    estimates = torch.from_numpy(np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32))
    plans = {}
    for name, settings in (("append", {}), ("weighted", dict(weight_augmented=True)), ("subset", dict(mode="subset"))):
        method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.2, **settings)
        method.select(0, estimates=estimates)
        plans[name] = method.plan_for(0)
    assert torch.equal(plans["append"].weights, torch.ones_like(plans["append"].weights))
    weighted = plans["weighted"]
    assert weighted.weights[~weighted.augmented].eq(1).all() and not weighted.weights[weighted.augmented].eq(1).all()
    assert not plans["subset"].weights[~plans["subset"].augmented].eq(1).all()
    step = re.search(r"4\. \*\*Weights\*\*.*?\n5\. ", page("docs/how-it-works.md"), re.S).group(0)
    assert "subset mode" in step and "--weight-augmented" in step and "append" in step and "no loss" in step
    assert "weights reach no loss" in page("docs/training.md")


def test_infobatch_weights_sum_in_proportion_to_class_size_as_documented():
    labels = np.repeat(np.arange(3), [100, 50, 30])
    losses = np.random.default_rng(1).random(180).astype(np.float32)
    selection = select_by_rule("infobatch", labels, 0.2, losses=losses, seed=0)
    sums = np.array([selection.weights[labels[selection.indices] == c].sum() for c in range(3)])
    assert np.allclose(sums / sums[0], [1, 0.5, 0.3]) and np.isclose(sums.sum(), len(selection.indices))
    row = next(line for line in page("docs/training.md").splitlines() if line.startswith("| `infobatch`"))
    assert "in proportion to its size" in row and "sum to its size" not in row


def test_crusts_default_warm_up_stops_at_the_runs_last_selection():
    """crust over 5 epochs selecting every 5 took a warm-up of 1 (20%), past its one selection, which was
    random; the same value given explicitly is refused."""
    labels = np.repeat(np.arange(4), 10)
    one = coreaug.CoresetAugmentation(labels, strategy="crust", fraction=0.2, epochs=5, select_every=5)
    assert one.selection_warmup == 0 and one.needs_model_at(0)
    assert coreaug.CoresetAugmentation(labels, strategy="crust", epochs=5, select_every=2).selection_warmup == 1
    assert coreaug.CoresetAugmentation(labels, strategy="crust", epochs=10).selection_warmup == 2
    assert default_selection_warmup("crust", 3, 3) == 0 and default_selection_warmup("coreset", 10) == 0
    assert default_selection_warmup("none", 10) == 0
    settings = dict(dataset="synthetic", strategy="crust", epochs=5, select_every=5)
    assert coreaug.TrainConfig(**settings).resolved().selection_warmup is None
    with pytest.raises(UsageError, match=r"selection_warmup \(1\) must be at most 0"):
        coreaug.TrainConfig(**settings, selection_warmup=1).resolved()


def old_plan_generator(seed, epoch, stream):
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 8 + stream) % 2 ** 32)


def old_source_key(*numbers):
    key = 0x2545F491
    for number in numbers:
        key = mix32((key ^ mix32(int(number) & MASK32)) & MASK32)
    return key


def test_seeds_2_29_and_2_32_apart_draw_their_own_plans_and_augmentations_and_small_seeds_draw_as_before():
    """The plans' generator repeated every 2**29 seeds, the augmentation keys every 2**32."""
    order = lambda generator: torch.randperm(64, generator=generator).tolist()  # noqa: E731
    for seed in (0, 7, 123_456_789, 2 ** 29 - 1):  # committed runs keep their plans and augmentations
        for epoch, stream in ((0, 0), (3, 2), (1000, 0)):
            assert order(epoch_generator(seed, epoch, stream)) == order(old_plan_generator(seed, epoch, stream))
    for numbers in ((0,), (5, 3), (2 ** 32 - 1, 7, 2), (123_456_789, 0, 11)):
        assert source_key(*numbers) == old_source_key(*numbers)
    for a, b in ((0, 2 ** 29), (5, 3 * 2 ** 29 + 5), (0, 2 ** 32), (7, 2 ** 64 - 2 ** 32 + 7)):
        for epoch in range(3):
            assert order(epoch_generator(a, epoch, 0)) != order(epoch_generator(b, epoch, 0)), (a, b, epoch)
    examples = torch.arange(16)
    for a, b in ((0, 2 ** 32), (5, 2 ** 33 + 5), (2 ** 40, 2 ** 41)):
        assert not torch.equal(RandomSource.image_keys(examples, a, 2), RandomSource.image_keys(examples, b, 2))
    full = [coreaug.CoresetAugmentation(np.zeros(40, dtype=np.int64), strategy="full", seed=s).plan_for(3).indices
            for s in (0, 2 ** 29)]
    assert not torch.equal(*full)


def test_the_selection_losses_are_documented_as_training_losses_with_estimates_training():
    """They were documented as the mean clean loss; with --estimates training no clean pass runs."""
    text = page("docs/training.md")
    start = text.index("`selection_loss_selected` and `selection_loss_rest`")
    assert "--estimates training" in text[start:start + 400]


def test_last_layer_estimates_are_projected_to_at_most_gradient_dim_as_help_and_docs_say():
    g, h = torch.randn(4, 10), torch.randn(4, 128)
    assert GradientSketch(10, 128, 512)(g, h).shape == (4, 510) and GradientSketch(10, 128, 8)(g, h).shape == (4, 6)
    help_text = " ".join(CliRunner().invoke(train_command, ["--help"]).output.split())
    assert "projected to at most this size" in help_text
    assert "projected to at most that many numbers" in " ".join(page("docs/training.md").split())


def test_momentum_0_with_nesterov_on_the_command_line_names_the_flag(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_command, ["--dataset", "digits", "--epochs", "1", "--momentum", "0",
                                                "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--no-nesterov" in result.output and "nesterov=False" not in result.output
    assert len(result.output.splitlines()) == 1 and not out.exists()


def test_a_multistep_milestone_within_the_learning_rate_warm_up_is_refused():
    """The warm-up ramped past it to the full rate, which then dropped 10x at once."""
    base = dict(dataset="synthetic", epochs=4, warmup_epochs=2, schedule="multistep")
    for milestones in ((0.25,), (0.5, 0.75)):  # epoch 1, and epoch 2: the warm-up's last
        with pytest.raises(UsageError, match=r"milestone 0\.(25|5) .*warmup_epochs 2.*--milestones.*--warmup-epochs"):
            coreaug.TrainConfig(**base, milestones=milestones).resolved()
    coreaug.TrainConfig(**base, milestones=(0.6, 0.75)).resolved()
    coreaug.TrainConfig(**dict(base, schedule="cosine"), milestones=(0.25,)).resolved()  # unused by cosine
    coreaug.TrainConfig(**dict(base, warmup_epochs=0), milestones=(0.25,)).resolved()
