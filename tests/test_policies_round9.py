"""Policies of one's own in training (the RandomSource the trainer passes, their first output
checked), registration and create_policy's errors, chains naming their member, and the bounds and
checks of RandAugment's settings and RandomSource's helpers."""
import multiprocessing
import re

import pytest
import torch

import coreaug
import coreaug.training.trainer as trainer
from coreaug.augment import Policy, RandomSource, create_policy, register_policy, uniform
from coreaug.augment.contract import CheckedPolicy
from coreaug.augment.registry import _POLICIES
from coreaug.errors import UsageError

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, epochs=1, batch_size=16, quiet=True,
            strategy="random", subset=0.5, seed=0)


@pytest.fixture(autouse=True)
def registrations():
    """Remove the policies a test registers."""
    before = dict(_POLICIES)
    yield
    _POLICIES.clear()
    _POLICIES.update(before)


def brightening(draw):
    """A policy of one's own that brightens each image by a random amount drawn by `draw`."""
    class Brighten(Policy):
        def __call__(self, images, generator=None, **context):
            amount = draw(images.shape[0], generator, images.device).view(-1, 1, 1, 1) * 40
            return (images.float() + amount).clamp_(0, 255).to(images.dtype)
    return Brighten


def test_a_policy_drawing_with_the_exported_helpers_trains_and_one_using_torch_rng_is_one_line(tmp_path):
    register_policy("mybright")(brightening(uniform))
    result = coreaug.train(coreaug.TrainConfig(**TINY, augment="weak+mybright", out=str(tmp_path / "good")))
    assert result.history[-1]["n_augmented"] > 0
    register_policy("mynoise")(brightening(lambda n, generator, device: torch.rand(n, generator=generator)))
    assert create_policy("mynoise")(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.Generator()).shape[0] == 2
    with pytest.raises(UsageError, match=r"^policy 'mynoise' failed on the coreaug.augment.RandomSource .*"
                                         r"coreaug.augment.uniform, integers, signs or permutation") as error:
        coreaug.train(coreaug.TrainConfig(**TINY, augment="mynoise", out=str(tmp_path / "bad")))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, made, wrong", [
    ("tofloat", lambda images: images.float() / 255, "returned float32 images of shape (4, 1, 8, 8) on cpu for uint8"),
    ("shrink", lambda images: images[..., 1:, 1:], "returned uint8 images of shape (4, 1, 7, 7)"),
    ("dropone", lambda images: images[1:], "returned uint8 images of shape (3, 1, 8, 8)"),
    ("tolist", lambda images: images.tolist(), "returned a list"),
])
def test_a_policy_breaking_the_contract_is_named_at_its_first_call_in_training(name, made, wrong):
    register_policy(name)(lambda: lambda images, generator=None, **context: made(images))
    images, source = torch.zeros(4, 1, 8, 8, dtype=torch.uint8), RandomSource(torch.arange(4))
    strong = trainer._strong_policy(coreaug.TrainConfig(**TINY, augment=name).resolved())
    assert strong.needs_model is False  # a plain callable: the trainer reads needs_model of the wrapper
    with pytest.raises(UsageError, match=rf"^policy '{name}' {re.escape(wrong)}"):
        strong(images, source)
    chained = trainer._strong_policy(coreaug.TrainConfig(**TINY, augment=f"weak+{name}").resolved())
    with pytest.raises(UsageError, match=rf"^policy '{name}' in 'weak\+{name}' {re.escape(wrong)}"):
        chained(images, source)


def test_built_in_policies_reach_the_trainer_unwrapped_and_own_ones_once_checked():
    for augment in ("randaugment", "weak+randaugment+cutout", "maxloss"):
        strong = trainer._strong_policy(coreaug.TrainConfig(**TINY, augment=augment).resolved())
        members = getattr(strong, "policies", [strong])
        assert not any(isinstance(member, CheckedPolicy) for member in members), augment
    register_policy("mybright")(brightening(uniform))
    strong = trainer._strong_policy(coreaug.TrainConfig(**TINY, augment="randaugment+mybright").resolved())
    assert [type(member).__name__ for member in strong.policies] == ["RandAugment", "CheckedPolicy"]


def test_a_factory_that_makes_no_policy_and_a_non_callable_are_refused_at_once():
    with pytest.raises(UsageError, match=r"register_policy\('five'\) takes a Policy class"):
        register_policy("five")(5)
    register_policy("astring")(lambda: "not a policy")
    with pytest.raises(UsageError, match=r"^policy 'astring' was made as a str, not a policy"):
        create_policy("astring")


def test_an_error_inside_a_policy_constructor_keeps_its_own_type_and_a_wrong_keyword_is_one_line():
    class Buggy(Policy):
        def __init__(self, amount=3):
            self.table = len(amount)  # the user's own bug
    register_policy("buggy")(Buggy)
    with pytest.raises(TypeError, match="has no len"):
        create_policy("buggy")
    with pytest.raises(UsageError, match=r"^policy 'buggy' takes \(amount\); .*unexpected keyword argument 'size'"):
        create_policy("buggy", size=3)


def test_a_chain_names_the_member_that_refused_a_setting():
    with pytest.raises(UsageError, match=r"^policy 'cutout' in 'randaugment\+cutout': fill must be a level"):
        create_policy("randaugment+cutout", fill=[1, 2, 3])
    with pytest.raises(UsageError, match=r"^policy 'weak' in 'weak\+randaugment': padding must be"):
        create_policy("weak+randaugment", padding=-1)
    with pytest.raises(UsageError, match=r"^augment 'randaugment\+' has an empty part"):
        coreaug.TrainConfig(**TINY, augment="randaugment+").resolved()


def test_candidates_go_only_to_a_chained_maxloss_not_to_names_containing_it():
    class Lite(Policy):
        def __call__(self, images, generator=None, **context):
            return images.flip(-1)
    register_policy("maxloss-lite")(Lite)
    assert isinstance(trainer._strong_policy(coreaug.TrainConfig(**TINY, augment="maxloss-lite").resolved()),
                      CheckedPolicy)
    strong = trainer._strong_policy(coreaug.TrainConfig(**TINY, augment="weak+maxloss", candidates=3).resolved())
    assert strong.policies[1].candidates == 3


def test_a_name_unknown_in_a_bench_worker_says_where_registrations_must_sit(monkeypatch):
    config = coreaug.TrainConfig(**TINY, augment="latepol")
    with pytest.raises(UsageError) as here:
        config.resolved()
    assert "worker" not in str(here.value)
    monkeypatch.setattr(multiprocessing.current_process(), "name", "coreaug-bench-worker-1")
    for settings in (dict(augment="latepol"), dict(model="latenet")):
        with pytest.raises(UsageError, match=r"This worker process \(run_grid with jobs >= 2\) knows only the names "
                                             r"registered when it imports .*not under `if __name__"):
            coreaug.TrainConfig(**{**TINY, **settings}).resolved()


def test_magnitude_bins_and_ops_have_an_upper_bound():
    with pytest.raises(UsageError, match=r"num_magnitude_bins must be in \[2, 10000\], got 10000000"):
        create_policy("randaugment", num_magnitude_bins=10 ** 7)
    with pytest.raises(UsageError, match=r"num_magnitude_bins must be in \[2, 10000\]"):
        create_policy("trivialaugment", num_magnitude_bins=10 ** 9)
    with pytest.raises(UsageError, match=r"num_ops must be in \[0, 100\]"):
        create_policy("randaugment", num_ops=1000)
    create_policy("randaugment", num_ops=100, num_magnitude_bins=10_000, magnitude=9_999)


@pytest.mark.parametrize("call, message", [
    (lambda: RandomSource(torch.tensor([True, False])), r"key must be an int64 tensor.*torch.bool"),
    (lambda: RandomSource(torch.arange(4.0)), r"key must be an int64 tensor \(or another integer.*torch.float32"),
    (lambda: RandomSource(torch.arange(4), torch.zeros(2, 3, dtype=torch.int64)), r"numbers must be RandomSource\."),
    (lambda: RandomSource(torch.arange(4), torch.zeros(4, 3)), r"numbers must be .*float32"),
    (lambda: RandomSource.keys(1, 2, steps=2.5), r"steps must be a whole number"),
    (lambda: RandomSource.keys(1, 2, steps=-1), r"steps must be >= 0"),
    (lambda: RandomSource.keys("a", steps=2), r"RandomSource.keys's numbers .* must be a whole number"),
    (lambda: RandomSource.keys(1.7, steps=2), r"must be a whole number.*1.7"),
    (lambda: RandomSource.image_keys([0, 1, 2], 0), r"image_keys: indices must be a 1-dim integer tensor"),
    (lambda: RandomSource.image_keys(torch.arange(4.0), 0), r"indices must be a 1-dim integer tensor.*float32"),
    (lambda: RandomSource.image_keys(torch.arange(4), 0, slots=torch.zeros(4)), r"slots must be"),
])
def test_random_source_refuses_wrong_keys_numbers_and_helper_arguments_in_one_line(call, message):
    with pytest.raises(UsageError, match=message):
        call()


def test_random_source_still_takes_what_training_gives_it():
    keys = RandomSource.image_keys(torch.arange(6), 0, 1, slots=torch.zeros(6, dtype=torch.int64))
    ahead = RandomSource(keys, RandomSource.ahead(keys))
    assert torch.equal(uniform(6, ahead, torch.device("cpu")), uniform(6, RandomSource(keys), torch.device("cpu")))
    assert RandomSource.keys(2 ** 40, 3, steps=2).shape == (2,)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    policy = create_policy("randaugment")
    for dtype in (torch.int32, torch.uint8, torch.int16):  # other integer keys, as before round 9: made int64
        source = RandomSource(keys.to(dtype) if dtype == torch.int32 else torch.arange(6, dtype=dtype))
        assert source.key.dtype == torch.int64
        assert torch.equal(policy(images, source), policy(images, RandomSource(source.key.clone())))
    assert torch.equal(policy(images, RandomSource(keys.int())), policy(images, RandomSource(keys)))


def test_a_policy_of_ones_own_drawing_with_the_helpers_adds_no_sync_to_a_step():
    from coreaug.training.sync_audit import syncs_per_step
    register_policy("mybright")(brightening(uniform))
    base = dict(TINY, train_limit=96, subset=0.25)
    per_step, counts = syncs_per_step(base, augment="weak+mybright")
    assert per_step == 0, counts
