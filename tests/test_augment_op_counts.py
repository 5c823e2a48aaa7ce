"""The dense policies dispatch few ops, none syncing, and give each example its own op's result."""
import pytest
import torch

import coreaug.augment as A
from coreaug.augment.op_kinds import OP_KINDS
from coreaug.augment.op_set import OpSet
from coreaug.augment.randaugment import randaugment_ranges, trivialaugment_ranges
from coreaug.augment.sampling import RandomSource, integers, signs
from coreaug.training.sync_audit import OpCounter, SyncAudit

# Ops per call with a torch.Generator: the dense path dispatched 250, 146 and 250 when it was written,
# the grouped path before it 559, 280 and 525 (experiments/results/augment_ops.md; 212, 118 and 214
# under torch 2.13 now, 16 views more under 2.5, which dispatches a slice for every leading `:`).
MOST_OPS = {"randaugment": 260, "trivialaugment": 152, "autoaugment": 260}
# Of those, the ops that launch a kernel on a GPU (all but views): 137, 76 and 141 under torch 2.13
# since each example's numbers are looked up in a table of every draw (189, 109 and 189 before).
MOST_KERNELS = {"randaugment": 140, "trivialaugment": 79, "autoaugment": 144}
def ops_and_syncs(policy, images, randomness=lambda seed: torch.Generator().manual_seed(seed), kernels=False):
    """(ops, syncing ops) of one call after a warm-up call (which fills the caches); ``kernels``:
    (ops that launch a kernel, syncing ops)."""
    policy(images, randomness(0))
    second = randomness(1)
    with SyncAudit() as audit, OpCounter() as counter:
        policy(images, second)
    return counter.kernels if kernels else counter.total, audit.total


def cifar_batch(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(MOST_OPS))
def test_a_call_dispatches_a_bounded_number_of_ops_whatever_the_batch_and_none_syncs(name):
    policy = A.create_policy(name)
    counted = [ops_and_syncs(policy, cifar_batch(n)) for n in (13, 64)]
    assert counted[0] == counted[1], "the number of ops depends on the batch"
    ops, syncs = counted[0]
    assert ops <= MOST_OPS[name]
    assert syncs == 0
    kernels = [ops_and_syncs(policy, cifar_batch(n), kernels=True)[0] for n in (13, 64)]
    assert kernels[0] == kernels[1] <= MOST_KERNELS[name]


@pytest.mark.parametrize("name", sorted(MOST_OPS))
def test_drawing_from_a_key_per_image_costs_a_few_ops_more_than_a_generator_whatever_the_batch(name):
    """As the trainer calls a policy: a `RandomSource` with a key per image (made once an epoch)
    and its first numbers hashed ahead for many steps at once, in place of a generator: the
    call's one draw cuts each image's numbers (a slice, a transpose and a copy) and converts
    them (a shift or two each). Without numbers made ahead, the call hashes them itself (about
    14 ops more)."""
    ahead, own = [], []
    for n in (13, 64):
        keys = {seed: RandomSource.image_keys(torch.arange(n), seed) for seed in (0, 1)}
        ahead.append(ops_and_syncs(A.create_policy(name), cifar_batch(n),
                                   lambda seed: RandomSource(keys[seed], RandomSource.ahead(keys[seed]))))  # noqa: B023
        own.append(ops_and_syncs(A.create_policy(name), cifar_batch(n), lambda seed: RandomSource(keys[seed])))  # noqa: B023
    assert ahead[0] == ahead[1] and own[0] == own[1], "the number of ops depends on the batch"
    # 3 to 5 ops more under torch 2.13 (14 for AutoAugment when each draw was its own hash call)
    assert ahead[0][0] <= ops_and_syncs(A.create_policy(name), cifar_batch(13))[0] + 8
    assert ahead[0][0] < own[0][0] <= ahead[0][0] + 20
    assert ahead[0][1] == own[0][1] == 0


def test_randaugment_dispatches_at_most_half_the_ops_of_the_grouped_path():
    ops, _ = ops_and_syncs(A.RandAugment(), cifar_batch(64))
    assert ops <= 559 // 2


PUBLIC_OPS = {
    "identity": lambda x, v: x, "auto_contrast": lambda x, v: A.auto_contrast(x),
    "equalize": lambda x, v: A.equalize(x), "invert": lambda x, v: A.invert(x),
    "rotate": A.rotate, "solarize": A.solarize, "color": A.color, "posterize": A.posterize,
    "contrast": A.contrast, "brightness": A.brightness, "sharpness": A.sharpness,
    "shear_x": A.shear_x, "shear_y": A.shear_y, "translate_x": A.translate_x,
    "translate_y": A.translate_y,
}


def structured_batch(n, channels=3, size=32, seed=0):
    """Gradients, a bright square and noise: every op changes such an image."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(30, 220, size).view(1, 1, 1, size)
    base = ramp + torch.randn(n, channels, size, size, generator=g) * 30
    base[:, :, size // 4: size // 2, size // 3: size // 2] += 50
    return base.clamp(0, 255).round().to(torch.uint8)


def one_op_each(images, names, kind, bins, sign, ranges, num_bins):
    """Each example through the public single op it drew, one call per example."""
    table = OpSet(ranges, num_bins).magnitude_table(images.shape[2], images.shape[3],
                                                    255.0 if images.dtype == torch.uint8 else 1.0)
    out = []
    for i, image in enumerate(images):
        name = names[kind[i]]
        op = OP_KINDS[name]
        magnitude = table[kind[i]][bins[i]]
        value = op.base + (sign[i] if op.signed else 1.0) * magnitude
        out.append(PUBLIC_OPS[name](image[None], torch.tensor([value]))[0])
    return torch.stack(out)


@pytest.mark.parametrize("channels", [3, 1])
def test_trivialaugment_gives_each_example_the_result_of_its_own_op(channels):
    images = structured_batch(96, channels=channels, size=32 if channels == 3 else 28)
    n, seed = images.shape[0], 5
    out = A.TrivialAugmentWide()(images, torch.Generator().manual_seed(seed))
    # The same draws, in the policy's order: an op, a magnitude bin and a sign per example.
    g = torch.Generator().manual_seed(seed)
    ranges = trivialaugment_ranges()
    kind, bins, sign = integers(len(ranges), n, g, "cpu"), integers(31, n, g, "cpu"), signs(n, g, "cpu")
    expected = one_op_each(images, list(ranges), kind.tolist(), bins.tolist(), sign.tolist(), ranges, 31)
    assert torch.equal(out, expected)
    assert len(set(kind.tolist())) == len(ranges)  # 96 examples drew every op


def test_randaugment_layers_compose_each_examples_own_ops():
    images = structured_batch(32)
    n, seed = images.shape[0], 3
    out = A.RandAugment(num_ops=2)(images, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    ranges = randaugment_ranges()
    kind, sign = integers(len(ranges), 2 * n, g, "cpu").view(2, n), signs(2 * n, g, "cpu").view(2, n)
    expected = images
    for layer in range(2):
        expected = one_op_each(expected, list(ranges), kind[layer].tolist(), [9] * n, sign[layer].tolist(),
                               ranges, 31)
    assert torch.equal(out, expected)


def test_float_batches_get_their_own_op_within_float_error():
    images = structured_batch(48).float() / 255
    seed = 2
    out = A.TrivialAugmentWide()(images, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    ranges = trivialaugment_ranges()
    n = images.shape[0]
    kind, bins, sign = integers(len(ranges), n, g, "cpu"), integers(31, n, g, "cpu"), signs(n, g, "cpu")
    expected = one_op_each(images, list(ranges), kind.tolist(), bins.tolist(), sign.tolist(), ranges, 31)
    # Posterize and equalize round float levels; a level apart at most, on few pixels.
    assert (out - expected).abs().max().item() <= 1.0 / 255 + 1e-6
    assert (out - expected).abs().mean().item() < 1e-3

