"""Draws keyed per entry: an example's augmentation is a function of (seed, epoch, example,
slot) only, so it is the same alone or in any batch, in any block of steps, in the eager or the
compiled layout and in any process's share."""
import types

import pytest
import torch

import coreaug
from coreaug.augment import create_policy
from coreaug.augment.sampling import RandomSource, integers, uniform
from coreaug.data.images import TensorImages
from coreaug.training import compiled_step
from coreaug.training.plan import REPEAT_SLOTS, epoch_plan
from coreaug.training.sync_audit import SyncAudit
from coreaug.training.trainer import augmented_steps


def keys_for(n, *numbers):
    return RandomSource.image_keys(torch.arange(n), *numbers)


def test_each_image_draws_from_its_own_stream_whatever_the_batch_and_the_draw_sizes():
    keys = keys_for(6, 0, 1)
    source = RandomSource(keys)
    first = uniform(3 * 6, source, "cpu").view(3, 6)  # three values per image, value-major
    second = uniform(15 * 6, source, "cpu").view(15, 6)  # past the first block of numbers
    together = torch.cat([first, second])
    assert len(set(together.flatten().tolist())) == 18 * 6
    for image in range(6):
        alone = RandomSource(keys[image:image + 1])
        assert torch.equal(uniform(18, alone, "cpu"), together[:, image])  # one draw or two: the same stream
    assert not torch.equal(uniform(3 * 6, RandomSource(keys_for(6, 0, 2)), "cpu").view(3, 6), first)


def test_select_continues_at_the_same_draw_number():
    keys = keys_for(8, 1)
    whole = RandomSource(keys)
    uniform(8, whole, "cpu")
    second = uniform(8 * 20, whole, "cpu").view(20, 8)
    for made_ahead in (True, False):  # the numbers hashed ahead handed on, or not
        source = RandomSource(keys)
        uniform(8, source, "cpu")
        if not made_ahead:
            source._block = None
        rows = torch.tensor([1, 6])
        assert torch.equal(uniform(2 * 20, source.select(rows), "cpu").view(20, 2), second[:, rows])
        assert torch.equal(uniform(3 * 20, source.select(slice(5, None)), "cpu").view(20, 3), second[:, 5:])
    with pytest.raises(ValueError, match="one key per image"):
        RandomSource(torch.tensor(3)).select(rows)


def test_image_keys_tell_apart_examples_slots_and_runs_and_never_wait_on_the_device():
    indices = torch.arange(1000).repeat(3)
    slots = torch.arange(3).repeat_interleave(1000)
    with SyncAudit() as audit:
        keys = RandomSource.image_keys(indices, 0, 5, slots=slots)
    assert sum(audit.counts.values()) == 0
    assert keys.dtype == torch.int64 and 0 <= keys.min() and keys.max() < 2 ** 32
    assert len(set(keys.tolist())) == 3000
    assert torch.equal(keys, RandomSource.image_keys(indices, 0, 5, slots=slots))
    assert not torch.equal(keys, RandomSource.image_keys(indices, 0, 6, slots=slots))  # another epoch
    assert torch.equal(keys[:1000], RandomSource.image_keys(torch.arange(1000), 0, 5))  # slot 0 = no slots


class ScoringModel(torch.nn.Module):
    """A tiny scorer for max-loss: per-example logits (no batch statistics)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(3 * 16 * 16, 10)

    def forward(self, x):
        return self.layer(x.flatten(1))


@pytest.mark.parametrize("name", ["weak", "randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet",
                                  "cutout", "resized-crop", "weak+randaugment+cutout", "maxloss"])
def test_an_image_is_augmented_the_same_alone_or_in_any_batch(name):
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    labels = torch.randint(0, 10, (12,))
    policy = create_policy(name)
    keys = keys_for(12, 3, 0)

    def context(rows):
        if not policy.needs_model:
            return {}
        return {"model": ScoringModel(), "labels": labels[rows], "preprocess": lambda x: x.float() / 255}

    everyone = torch.arange(12)
    together = policy(images, RandomSource(keys), **context(everyone))
    for rows in (torch.tensor([4]), torch.tensor([9, 2, 7]), everyone.flip(0)):
        apart = policy(images[rows], RandomSource(keys[rows]), **context(rows))
        assert torch.equal(apart, together[rows])
    assert not torch.equal(together, policy(images, RandomSource(keys_for(12, 3, 1)), **context(everyone)))


def plan_of(n=40, copies=2):
    return epoch_plan(n, strategy="coreset", mode="append", selected=torch.arange(0, n, 3),
                      weights=torch.ones(len(range(0, n, 3))), copies=copies, weight_augmented=False,
                      generator=torch.Generator().manual_seed(0))


def entries(plan):
    return list(zip(plan.indices.tolist(), plan.entry_slots().tolist()))


def test_every_entry_of_a_plan_has_its_own_slot_also_when_a_compiled_layout_repeats_entries():
    plan = plan_of()
    assert len(set(entries(plan))) == len(plan)
    originals = ~plan.augmented
    assert plan.slots[originals].eq(0).all() and set(plan.slots[plan.augmented].tolist()) == {1, 2}
    fixed = plan.fixed_steps(16, generator=torch.Generator().manual_seed(1))
    assert len(fixed) > len(plan) and len(set(entries(fixed))) == len(fixed)  # repeats draw their own
    assert sorted(e for e in entries(fixed) if e[1] < REPEAT_SLOTS) == sorted(entries(plan))
    shares = [plan.shard(rank, 2) for rank in range(2)]
    assert sorted(entries(shares[0]) + entries(shares[1])) == sorted(entries(plan))


def augmented_entries(plan, images, weak, strong, batch_size, per_call=1, compiled_layout=False):
    """{(index, slot): the augmented image} of one pass over `plan`, as the trainer's eager step
    (`augmented_steps`) or its compiled step's eager twin augments them."""
    data = types.SimpleNamespace(train_images=TensorImages(images), train_labels=torch.zeros(len(images)).long())
    batches = plan.on_device(batch_size, "cpu")
    draws = batches.draws(7, 2, chunk_steps=2)  # numbers made ahead two batches at a time
    found = {}
    if compiled_layout:
        copies = batches.bounds[1] - batches.bounds[0]
        step = compiled_step.CompiledStep(torch.nn.Linear(1, 1), torch.optim.SGD([torch.zeros(1)], lr=0.1),
                                          weak, strong, None, None, None, label_smoothing=0.0,
                                          copies_per_step=copies, device="cpu", compile=False)
        labels = torch.zeros(batch_size, dtype=torch.int64)
        stream = ((s, step._augment(x, labels, *draws.rows(batches.batch(s)[0])))
                  for s, x in enumerate(batches.step_images(data.train_images)))
    else:
        stream = augmented_steps(batches, data, weak, strong, draws, {}, per_call)
    for s, augmented in stream:
        take = batches.batch(s)[0]
        for entry, image in zip(zip(batches.indices[take].tolist(), batches.slots[take].tolist()), augmented):
            found[entry] = image
    return found


def test_eager_blocks_of_steps_the_compiled_layout_and_each_process_augment_an_entry_alike():
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    weak, strong = create_policy("weak"), create_policy("randaugment+cutout")
    plan = plan_of()
    eager = augmented_entries(plan, images, weak, strong, 16)
    assert len(eager) == len(plan)
    for other in (augmented_entries(plan, images, weak, strong, 16, per_call=3),
                  augmented_entries(plan, images, weak, strong, 10),
                  {**augmented_entries(plan.shard(0, 2), images, weak, strong, 8),
                   **augmented_entries(plan.shard(1, 2), images, weak, strong, 8)},
                  augmented_entries(plan.fixed_steps(16, generator=torch.Generator().manual_seed(1)), images, weak,
                                    strong, 16, compiled_layout=True)):
        shared = set(eager) & set(other)
        assert len(shared) == len(plan)
        assert all(torch.equal(eager[entry], other[entry]) for entry in shared)
    copies = [(i, s) for i, s in eager if s > 0]
    assert not all(torch.equal(eager[(i, s)], eager[(i, 0)]) for i, s in copies)  # a copy is not its original


def test_a_run_trains_the_same_whatever_the_steps_per_augmentation_call():
    base = dict(dataset="synthetic", train_limit=120, test_limit=40, epochs=2, batch_size=16, quiet=True,
                subset=0.3, augment="randaugment", seed=0, strategy="random")
    one = coreaug.train(coreaug.TrainConfig(**base, augment_steps=1))
    block = coreaug.train(coreaug.TrainConfig(**base, augment_steps=3))
    assert [m["train_loss"] for m in one.history] == [m["train_loss"] for m in block.history]
    for a, b in zip(one.model.state_dict().values(), block.model.state_dict().values()):
        assert torch.equal(a, b)


def test_compiled_draws_with_a_key_per_image_equal_eager_ones_and_new_keys_do_not_recompile():
    from torch._dynamo.utils import counters

    def draws(keys):
        source = RandomSource(keys)
        first = uniform(3 * 8, source, keys.device)
        copies = source.select(slice(5, None))  # the last 3 rows go on, past the first block
        return first, uniform(20 * 3, copies, keys.device), integers(7, 2 * 3, copies, keys.device)

    compiled = torch.compile(draws, fullgraph=True, backend="aot_eager")  # traced as inductor sees it
    before = counters["stats"]["unique_graphs"]
    for epoch in range(3):
        keys = RandomSource.image_keys(torch.arange(8) + 8 * epoch, 0, epoch)
        for got, want in zip(compiled(keys), draws(keys)):
            assert torch.equal(got, want)
    assert counters["stats"]["unique_graphs"] - before == 1


def test_the_numbers_hashed_ahead_are_reused_until_used_up(monkeypatch):
    import coreaug.augment.sampling as sampling

    made = []
    real = sampling.mix32
    source = RandomSource(keys_for(5, 2))
    monkeypatch.setattr(sampling, "mix32", lambda x: made.append(1) or real(x))
    for draw in range(RandomSource.BLOCK // 2):  # two numbers per image a draw: one block in all
        uniform(2 * 5, source, ("cpu", torch.device("cpu"))[draw % 2])
    assert len(made) == 1
    uniform(2 * 5, source, "cpu")
    assert len(made) == 2
    # A block made on cuda:0 serves draws asked for on "cuda" (a policy passes its batch's device).
    assert sampling._same_device(torch.device("cuda", 0), torch.device("cuda"))
    assert not sampling._same_device(torch.device("cuda", 0), torch.device("cuda", 1))
    assert not sampling._same_device(torch.device("cpu"), torch.device("cuda"))


def test_plan_draws_hand_each_slice_its_entries_keys_and_first_numbers_across_chunks():
    batches = plan_of().on_device(8, "cpu")
    draws = batches.draws(1, 4, chunk_steps=3)
    keys = batches.image_keys(1, 4)
    for take in (slice(0, 8), slice(8, 16), slice(16, 24), slice(20, 36), slice(0, 8), slice(48, 56)):
        got_keys, numbers = draws.rows(take)
        assert torch.equal(got_keys, keys[take])
        assert torch.equal(numbers, RandomSource.ahead(keys[take]))
    assert draws.source(slice(0, 8)).key.shape == (8,)
