"""Fewer launches, the same images: a call looks its examples' numbers up in a table of every
(kind, bin, sign) draw, draws each image's numbers in one hash call, and the weak policy and the
normalisation skip work; each gives bit for bit what the per-call arithmetic gave."""
import math

import pytest
import torch

import coreaug.augment as A
from coreaug.augment import dense_layers
from coreaug.augment.sampling import (RandomSource, integers, integers_from, per_image_hashes, positive_from, signs,
                                      uniform, uniform_from)
from coreaug.training.compiled_step import compile_supported
from coreaug.training.inputs import Normalize


def batch(n, channels=3, size=32, seed=0):
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    images[: n // 3] = images[: n // 3] // 64 * 3 + 100  # few levels: auto-contrast's and equalize's edge cases
    return images


def randomness(n):
    """The four kinds of randomness a policy takes: a generator, a key per image with its numbers
    made ahead (the trainer's) or not, and one key for the call."""
    keys = RandomSource.image_keys(torch.arange(n), 5, 2)
    return [lambda: torch.Generator().manual_seed(3), lambda: RandomSource(keys, RandomSource.ahead(keys)),
            lambda: RandomSource(keys), lambda: RandomSource(torch.tensor(11))]


@pytest.mark.parametrize("name, settings", [
    ("randaugment", {}), ("trivialaugment", {}), ("autoaugment", {}), ("autoaugment-imagenet", {}),
    ("randaugment", dict(num_ops=3, magnitude=29)),
    ("trivialaugment", dict(interpolation="bilinear", fill=[9, 99, 199]))])
@pytest.mark.parametrize("channels, size, floats", [(3, 32, False), (1, 8, False), (3, 32, True), (3, 72, False)])
def test_numbers_looked_up_in_the_draw_table_are_those_computed_for_the_call(monkeypatch, name, settings, channels,
                                                                             size, floats):
    """72 px: the CPU's kind-by-kind path takes the same numbers; floats: the [0, 1] working copy."""
    if channels == 1 and "fill" in settings:
        settings = dict(settings, fill=9)
    images = batch(13, channels, size)
    images = images.float() / 255 if floats else images

    def calls():
        policy = A.create_policy(name, **settings)
        return [policy(images, make()) for make in randomness(13)]

    looked_up = calls()
    monkeypatch.setattr(dense_layers, "DRAW_TABLE_MAX_BINS", 0)  # every op set computes its numbers
    computed = calls()
    for a, b in zip(looked_up, computed):
        assert torch.equal(a, b)
    assert not torch.equal(looked_up[0], images)


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment"])
def test_the_draw_tables_op_values_are_the_magnitude_tables_signed_as_each_draw_says(name):
    """The lookup test above compares the table with the same arithmetic run per call; this one
    reads the op values, posterize's steps and solarize's offsets against the op set's own
    magnitude table (what the per-image reference pipelines use)."""
    from coreaug.augment.op_kinds import OP_KINDS
    ops = A.create_policy(name)._ops
    magnitudes = ops.magnitude_table(32, 32, 255.0)
    table = ops._dense._draw_table(32, 32, 255.0, torch.float32, torch.device("cpu"))
    value, step, offset = table[:, 4], table[:, 6], table[:, 7]
    for k, op_name in enumerate(ops.names):
        op = OP_KINDS[op_name]
        for b in range(ops.num_bins):
            for positive in (0, 1):
                row = (k * ops.num_bins + b) * 2 + positive
                expected = op.base + ((1.0 if positive else -1.0) if op.signed else 1.0) * magnitudes[k][b]
                assert value[row].item() == pytest.approx(expected, rel=1e-6, abs=1e-6), (op_name, b, positive)
                if op_name == "posterize":
                    assert step[row].item() == 2.0 ** (8 - int(expected))
                if op_name == "solarize":
                    assert offset[row].item() == 1 - math.ceil(value[row].item())


def test_an_op_set_of_more_bins_than_the_table_takes_computes_its_numbers_and_still_draws_each_image_alike():
    images = batch(13)
    policy = A.RandAugment(num_magnitude_bins=dense_layers.DRAW_TABLE_MAX_BINS + 1, magnitude=100)
    keys = RandomSource.image_keys(torch.arange(13), 1)
    whole = policy(images, RandomSource(keys))
    assert not policy._ops._dense._draw_tables._entries
    alone = policy(images[4:5], RandomSource(keys[4:5]))  # an image is augmented the same alone
    assert torch.equal(alone, whole[4:5])


@pytest.mark.parametrize("copies", [1, 3])
@pytest.mark.parametrize("ahead", [False, True])
def test_one_draw_of_each_images_next_numbers_holds_the_successive_draws_numbers(copies, ahead):
    keys = RandomSource.image_keys(torch.arange(6), 8)
    joint, apart = (RandomSource(keys, RandomSource.ahead(keys) if ahead else None) for _ in range(2))
    joint.copies = apart.copies = copies  # max-loss's candidates: several images a key
    n = 6 * copies
    assert torch.equal(per_image_hashes(joint, 5, n, "cpu"), torch.stack([apart.hashes(n, "cpu") for _ in range(5)]))
    assert torch.equal(joint.hashes(n, "cpu"), apart.hashes(n, "cpu"))  # and both go on from the same number


def test_only_a_key_per_image_draws_jointly_and_the_conversions_match_the_draws():
    assert per_image_hashes(torch.Generator().manual_seed(0), 2, 4, "cpu") is None
    assert per_image_hashes(None, 2, 4, "cpu") is None
    assert per_image_hashes(RandomSource(torch.tensor(7)), 2, 4, "cpu") is None  # a call's key: numbers by position
    keys = RandomSource.image_keys(torch.arange(50), 4)
    hashes = RandomSource(keys).hashes(150, "cpu").view(3, 50)
    assert torch.equal(uniform_from(hashes[0]), uniform(50, RandomSource(keys), "cpu"))
    drawn = RandomSource(keys)
    drawn.hashes(50, "cpu")
    assert torch.equal(integers_from(hashes[1], 14), integers(14, 50, drawn, "cpu"))
    assert torch.equal(positive_from(hashes[2]), signs(50, drawn, "cpu") > 0)
    assert 0 < int(positive_from(hashes[2]).sum()) < 50


def test_the_weak_policy_without_flips_crops_as_the_flipping_one_does_where_it_does_not_flip():
    images = batch(64)
    flipping = A.create_policy("weak")(images, RandomSource(RandomSource.image_keys(torch.arange(64), 1)))
    still = A.create_policy("weak", flip=False)(images, RandomSource(RandomSource.image_keys(torch.arange(64), 1)))
    flipped = [i for i in range(64) if not torch.equal(still[i], flipping[i])]
    assert 10 < len(flipped) < 54
    assert all(torch.equal(still[i].flip(-1), flipping[i]) for i in flipped)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_normalize_gives_the_same_values_in_the_memory_format_with_exact_strides(channels, memory_format):
    images = batch(5, channels, 9).contiguous(memory_format=torch.channels_last)
    mean, std = (0.25, 0.5, 0.75)[:channels], (0.2, 0.3, 0.4)[:channels]
    out = Normalize(mean, std, "cpu", memory_format=memory_format)(images)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    assert torch.equal(out, expected)
    # One channel: plain strides, which both formats take (channels_last's own made torch's
    # convolutions answer in channels_last to the trainer's contiguous fallback)
    layout = memory_format if channels > 1 else torch.contiguous_format
    assert out.stride() == torch.empty(out.shape, memory_format=layout).stride()
    assert out.is_contiguous(memory_format=memory_format)


def test_the_nearest_warp_finds_pixels_past_two_to_the_24_in_the_framed_image():
    """The flat index was float32 arithmetic: past 2 ** 24 (a 4,096 x 4,096 image) it rounded to
    a neighbouring pixel (a 4,100 px image translated by 1 px had 32,635 pixels wrong)."""
    from coreaug.augment.geometric import _framed_index
    width = 4100
    x = torch.tensor([4099.0, 4098.0, -1.0, 7.0])
    y = torch.tensor([4099.0, 4099.0, 4099.0, 2.0])
    index = _framed_index(torch.stack([x, y]).unsqueeze(0), width)
    assert index.dtype == torch.int64
    assert index.tolist() == [[int(a) + 1 + (int(b) + 1) * (width + 2) for a, b in zip(x, y)]]


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment"])
def test_a_turned_batch_whose_pixels_cannot_be_viewed_flat_is_augmented_as_its_copy(name):
    """Auto-contrast viewed the int64 levels it shares with equalize flat, which a batch turned by
    a transpose (strides of H and W swapped, as torch.rot90 gives) cannot be."""
    turned = batch(9, 3, 12).transpose(2, 3)
    keys = RandomSource.image_keys(torch.arange(9), 3)
    policy = A.create_policy(name)
    assert torch.equal(policy(turned, RandomSource(keys)), policy(turned.contiguous(), RandomSource(keys)))


def test_a_policy_pickles_as_its_settings_and_one_an_older_coreaug_pickled_still_runs():
    import pickle
    policy, images = A.RandAugment(), batch(5)
    expected = policy(images, torch.Generator().manual_seed(1))
    copy = pickle.loads(pickle.dumps(policy))
    assert not copy._ops._dense._draw_tables._entries
    assert torch.equal(copy(images, torch.Generator().manual_seed(1)), expected)
    older = dict(policy._ops._dense.__dict__)  # as an older coreaug pickled it: its caches, not today's
    del older["_rows_cache"], older["_draw_tables"]
    copy._ops._dense = dense_layers.DenseLayers.__new__(dense_layers.DenseLayers)
    copy._ops._dense.__setstate__(older)
    assert torch.equal(copy(images, torch.Generator().manual_seed(1)), expected)


@pytest.mark.skipif(not compile_supported(), reason="compile needs torch 2.9 or later")
def test_the_weak_policy_compiled_without_an_eager_call_first_compiles_once():
    graphs = []

    def backend(graph, inputs):
        graphs.append(graph)
        return graph.forward

    weak = A.create_policy("weak")
    step = torch.compile(lambda x, keys: weak(x, RandomSource(keys)), backend=backend, fullgraph=True, dynamic=False)
    for seed in range(3):
        step(batch(5, 3, 12, seed), RandomSource.image_keys(torch.arange(5), seed))
    assert len(graphs) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment"])
def test_on_cuda_the_draw_table_gives_the_numbers_computed_for_the_call(monkeypatch, name):
    """The table is made by the device's own kernels; a call's numbers computed there (where
    triton or cuBLAS may fuse differently from the CPU) must be what the lookup finds."""
    images = batch(38).cuda()
    keys = RandomSource.image_keys(torch.arange(38, device="cuda"), 5)

    def calls():
        policy = A.create_policy(name)
        return [policy(images, RandomSource(keys, RandomSource.ahead(keys))),
                policy(images, torch.Generator(device="cuda").manual_seed(3))]

    looked_up = calls()
    monkeypatch.setattr(dense_layers, "DRAW_TABLE_MAX_BINS", 0)
    for a, b in zip(looked_up, calls()):
        assert torch.equal(a, b)
