"""Policies: found by name, composed, per-example random choices, reproducible."""
import pytest
import torch

import coreaug.augment as A
from coreaug.augment.autoaugment import CIFAR10_SUBPOLICIES
from coreaug.augment.op_kinds import OP_KINDS
from coreaug.augment.op_set import OpSet
from coreaug.augment.randaugment import randaugment_ranges
from test_compile_support import needs_compile

ORDINARY = ["randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet", "cutout", "weak", "resized-crop"]


def sample_images(n=8, channels=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(30, 220, size).view(1, 1, 1, size)
    noise = torch.randn(n, channels, size, size, generator=g) * 30
    return (ramp + noise).clamp(0, 255).round().to(torch.uint8)


def test_available_policies_lists_every_registered_name():
    assert set(A.available_policies()) >= set(ORDINARY) | {"maxloss"}


@pytest.mark.parametrize("name", ORDINARY)
def test_policy_keeps_shape_dtype_and_device(name):
    policy = A.create_policy(name)
    for images in (sample_images(), sample_images(channels=1, size=28),
                   sample_images().float() / 255):
        out = policy(images, torch.Generator().manual_seed(0))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert out.device == images.device


@pytest.mark.parametrize("name", ORDINARY)
def test_same_seed_gives_the_same_batch(name):
    policy, images = A.create_policy(name), sample_images(n=32)
    first = policy(images, torch.Generator().manual_seed(7))
    again = policy(images, torch.Generator().manual_seed(7))
    other = policy(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_unknown_policy_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown policy 'randaug'.*randaugment"):
        A.create_policy("randaug")


def test_plus_composes_in_order_and_routes_keywords():
    policy = A.create_policy("weak+randaugment+cutout", flip=False, magnitude=5)
    assert isinstance(policy, A.Compose)
    weak, randaugment, cutout = policy.policies
    assert isinstance(weak, A.Weak) and not weak.flip
    assert isinstance(randaugment, A.RandAugment) and randaugment.magnitude == 5
    assert isinstance(cutout, A.Cutout)
    images = sample_images()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    by_hand = A.Compose([A.Weak(flip=False), A.RandAugment(magnitude=5), A.Cutout()])
    assert torch.equal(policy(images, g1), by_hand(images, g2))


def test_keyword_no_chained_policy_takes_is_an_error():
    expected = "no policy in 'weak.cutout' takes the keyword 'magnitude'"
    with pytest.raises(ValueError, match=expected):
        A.create_policy("weak+cutout", magnitude=3)


def test_register_policy_makes_a_new_name_available():
    @A.register_policy("test-invert-all")
    class InvertAll(A.Policy):
        def __call__(self, images, generator=None, **context):
            return A.invert(images)

    images = sample_images(n=2)
    assert torch.equal(A.create_policy("test-invert-all")(images), 255 - images)
    assert "test-invert-all" in A.available_policies()


def _randaugment_candidates(image, magnitude_bin=9, bins=31):
    """Every output one RandAugment op can give ``image`` (both signs), computed op by op."""
    ops = OpSet(randaugment_ranges(), bins)
    table = ops.magnitude_table(32, 32, 255.0)
    functions = {
        "identity": lambda x, v: x, "auto_contrast": lambda x, v: A.auto_contrast(x),
        "equalize": lambda x, v: A.equalize(x), "rotate": A.rotate, "solarize": A.solarize,
        "color": A.color, "posterize": A.posterize, "contrast": A.contrast,
        "brightness": A.brightness, "sharpness": A.sharpness, "shear_x": A.shear_x,
        "shear_y": A.shear_y, "translate_x": A.translate_x, "translate_y": A.translate_y,
    }
    candidates = {}
    for name, row in zip(ops.names, table):
        kind = OP_KINDS[name]
        for sign in ((1.0, -1.0) if kind.signed else (1.0,)):
            value = torch.tensor(kind.base) + sign * torch.tensor(row[magnitude_bin])
            candidates[(name, sign)] = functions[name](image[None], value)[0]
    return candidates


def test_randaugment_gives_each_example_its_own_op():
    image = sample_images(n=1)[0]
    batch = image.expand(96, -1, -1, -1).contiguous()
    out = A.RandAugment(num_ops=1)(batch, torch.Generator().manual_seed(0))
    candidates = _randaugment_candidates(image)
    used = set()
    for example in out:
        matches = [key for key, candidate in candidates.items() if torch.equal(example, candidate)]
        assert matches, "every example is one op applied to the image"
        used.add(matches[0][0])
    assert len(used) >= 10  # 96 examples draw nearly all 14 ops; one op per batch would give 1


def test_trivialaugment_draws_magnitudes_per_example():
    image = sample_images(n=1)[0]
    batch = image.expand(64, -1, -1, -1).contiguous()
    out = A.create_policy("trivialaugment")(batch, torch.Generator().manual_seed(0))
    assert len({tuple(example.flatten().tolist()) for example in out}) >= 40


def test_randaugment_without_ops_is_identity():
    images = sample_images()
    assert torch.equal(A.RandAugment(num_ops=0)(images), images)


def test_randaugment_at_magnitude_zero_leaves_most_examples_unchanged():
    # At magnitude 0 every op is the identity except auto-contrast, equalize and solarize
    # (threshold 255 still inverts pure white), which have no magnitude-0 identity.
    images = sample_images(n=200).clamp(max=254)
    out = A.RandAugment(num_ops=1, magnitude=0)(images, torch.Generator().manual_seed(0))
    unchanged = (out == images).flatten(1).all(dim=1).float().mean().item()
    assert unchanged >= 11 / 14 - 0.1


def test_autoaugment_table_is_the_cifar10_policy():
    assert len(CIFAR10_SUBPOLICIES) == 25
    assert all(len(sub) == 2 for sub in CIFAR10_SUBPOLICIES)
    assert CIFAR10_SUBPOLICIES[0] == (("invert", 0.1, None), ("contrast", 0.2, 6))
    assert CIFAR10_SUBPOLICIES[-1] == (("translate_y", 0.7, 9), ("auto_contrast", 0.9, None))


def test_weak_without_flip_only_shifts():
    images = sample_images(n=16)
    out = A.create_policy("weak", flip=False, padding=0)(images)
    assert torch.equal(out, images)


def test_weak_crops_at_every_offset_and_flips_independently():
    """Each output is the padded image cropped at one of the (2p + 1)^2 offsets, mirrored or not,
    and all 2 (2p + 1)^2 outcomes come up about equally often."""
    height, width, padding, n = 5, 6, 2, 5000
    image = (torch.arange(height * width).view(1, 1, height, width) + 1).to(torch.uint8)  # every pixel distinct
    out = A.create_policy("weak", padding=padding)(image.expand(n, -1, -1, -1), torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(image, (padding,) * 4)[0, 0]
    starts = range(2 * padding + 1)
    crops = [padded[t:t + height, l:l + width] for t in starts for l in starts]
    outcomes = torch.stack(crops + [c.flip(-1) for c in crops])  # (50, H, W)
    matches = (out[:, 0].unsqueeze(1) == outcomes.unsqueeze(0)).flatten(2).all(2)  # (n, 50)
    assert torch.equal(matches.sum(1), torch.ones(n, dtype=torch.long))  # exactly one outcome each
    counts = matches.sum(0).float()
    expected = n / len(outcomes)
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected, counts


def test_weak_flips_about_half_the_examples():
    image = sample_images(n=1)
    out = A.create_policy("weak", padding=0)(image.expand(200, -1, -1, -1),
                                             torch.Generator().manual_seed(0))
    flipped = (out == image.flip(-1)).flatten(1).all(dim=1).float().mean().item()
    assert 0.35 < flipped < 0.65


@pytest.mark.parametrize("size, expected", [(32, 16), (28, 14)])
def test_cutout_default_size_scales_with_the_image(size, expected):
    images = torch.full((4, 1, size, size), 255, dtype=torch.uint8)
    out = A.create_policy("cutout")(images, torch.Generator().manual_seed(0))
    assert (out == 0).sum(dim=(1, 2, 3)).max().item() <= expected * expected


# TrivialAugment-Wide shifts and rotates far enough to uncover fill in some of 64 examples.
@pytest.mark.parametrize("name, settings", [("weak", {"padding": 4}), ("cutout", {}),
                                            ("trivialaugment", {})])
def test_fill_is_a_0_255_level_scaled_for_float_images(name, settings):
    policy = A.create_policy(name, fill=102, **settings)
    images = torch.full((64, 3, 8, 8), 9, dtype=torch.uint8)
    assert (policy(images, torch.Generator().manual_seed(0)) == 102).any()
    as_float = policy(images.float() / 255, torch.Generator().manual_seed(0))
    assert (as_float == 0.4).any()


@pytest.mark.parametrize("name, settings", [("randaugment", {"num_ops": 1}), ("trivialaugment", {})])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size, dtype", [(20, torch.uint8), (20, torch.float32), (70, torch.uint8)])
def test_a_fill_per_channel_gives_each_channel_what_its_level_alone_gives(name, settings, interpolation, size, dtype):
    """As torchvision's policies take: fill=[124, 116, 104] (one op per example, so channels stay apart)."""
    images = sample_images(n=64, size=size)
    images = images if dtype is torch.uint8 else images.float() / 255
    levels = [124, 116, 104]
    per_channel = A.create_policy(name, fill=levels, interpolation=interpolation, **settings)
    out = per_channel(images, torch.Generator().manual_seed(1))
    assert per_channel.fill == (124.0, 116.0, 104.0)
    for channel, level in enumerate(levels):
        alone = A.create_policy(name, fill=level, interpolation=interpolation, **settings)
        assert torch.equal(out[:, channel], alone(images, torch.Generator().manual_seed(1))[:, channel])
    assert (out[:, 0] == (124 if dtype is torch.uint8 else 124 / 255)).any()  # some fill was uncovered


def test_a_fill_per_channel_must_match_the_channels():
    assert A.create_policy("autoaugment", fill=[7]).fill == 7.0
    with pytest.raises(ValueError, match=r"fill has 3 levels \(one per channel\) but the images have 1 channel,"):
        A.create_policy("autoaugment", fill=[1, 2, 3])(sample_images(n=2, channels=1))
    with pytest.raises(ValueError, match=r"one per channel, got \[300, 1, 1\]"):
        A.create_policy("randaugment", fill=[300, 1, 1])


def test_float_policy_result_is_close_to_the_uint8_one():
    images = sample_images(n=64)
    policy = A.create_policy("randaugment")
    ours_uint8 = policy(images, torch.Generator().manual_seed(0)).float()
    ours_float = policy(images.float() / 255, torch.Generator().manual_seed(0)) * 255
    assert (ours_uint8 - ours_float).abs().mean().item() < 2.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ORDINARY)
def test_cuda_batch_with_cpu_generator_matches_cpu(name):
    images = sample_images(n=32)
    policy = A.create_policy(name)
    on_cpu = policy(images, torch.Generator().manual_seed(0))
    on_cuda = policy(images.cuda(), torch.Generator().manual_seed(0))
    assert on_cuda.device.type == "cuda"
    assert (on_cuda.cpu().float() - on_cpu.float()).abs().mean().item() < 1.0


@pytest.mark.parametrize("name", ORDINARY)
def test_channels_last_and_strided_batches_give_the_contiguous_result(name):
    images = sample_images(n=8)
    policy = A.create_policy(name)
    expected = policy(images, torch.Generator().manual_seed(0))
    channels_last = images.contiguous(memory_format=torch.channels_last)
    assert torch.equal(policy(channels_last, torch.Generator().manual_seed(0)), expected)
    strided = torch.cat([images, images], dim=3)[..., ::2]
    assert torch.equal(policy(strided, torch.Generator().manual_seed(0)),
                       policy(strided.contiguous(), torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment"])
def test_bilinear_policies_keep_shape_dtype_and_range(name):
    policy = A.create_policy(name, interpolation="bilinear", fill=128)
    for images in (sample_images(n=32), sample_images(n=32).float() / 255):
        out = policy(images, torch.Generator().manual_seed(0))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert 0 <= out.min().item() and out.max().item() <= (255 if out.dtype == torch.uint8 else 1)


@pytest.mark.parametrize("name", ["randaugment", "autoaugment-imagenet"])
def test_large_float64_images_on_the_cpu_are_computed_in_float64_as_on_the_dense_path(monkeypatch, name):
    """Kind by kind computed float64 images in float32: up to 21 levels off the dense result with bilinear."""
    images = sample_images(40, size=67).double() / 255
    policy = A.create_policy(name, interpolation="bilinear", fill=77)
    assert not OpSet.use_dense(images)
    by_kind = policy(images, torch.Generator().manual_seed(4))
    monkeypatch.setattr(OpSet, "use_dense", staticmethod(lambda images: True))
    assert torch.equal(policy(images, torch.Generator().manual_seed(4)), by_kind)


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_large_images_on_the_cpu_get_the_dense_paths_result_alone_or_in_any_batch(monkeypatch, name, dtype):
    """Above 64x64 pixels the CPU runs each op kind on the examples that drew it: every example
    gets what the whole-batch (dense) path gives it, and an image is augmented the same alone
    as in its batch (a key per image)."""
    from coreaug.augment.sampling import RandomSource

    images = sample_images(24, size=72)
    images = images if dtype is torch.uint8 else images.float() / 255
    keys = RandomSource.image_keys(torch.arange(24), 0)
    policy = A.create_policy(name)
    assert not OpSet.use_dense(images)
    by_kind = policy(images, RandomSource(keys))
    assert by_kind.dtype == dtype and not torch.equal(by_kind, images)
    alone = torch.cat([policy(images[i:i + 1], RandomSource(keys[i:i + 1])) for i in (0, 11, 23)])
    assert torch.equal(alone, by_kind[[0, 11, 23]])
    monkeypatch.setattr(OpSet, "use_dense", staticmethod(lambda images: True))
    assert torch.equal(policy(images, RandomSource(keys)), by_kind)


@pytest.mark.parametrize("name", ["randaugment", "autoaugment"])
def test_the_cpu_runs_calls_of_many_pixels_kind_by_kind_and_counters_see_the_gpus_dense_path(monkeypatch, name):
    """Dense spent every op kind's arithmetic on every image: on the CPU 1.1-1.7x kind by kind's
    time at 38 CIFAR images (a step's copies at 30%), 2.5-5.2x at 128-512, 1.8-2.8x at 13 images
    of 64x64 (experiments/results/augment_ops.md). A TorchDispatchMode (the op counters, the sync
    audit: stand-ins for a GPU) sees the dense path, which reads nothing on the host."""
    from coreaug.augment.dense_layers import DenseLayers
    from coreaug.augment.sampling import RandomSource
    from coreaug.training.sync_audit import SyncAudit

    assert OpSet.use_dense(sample_images(28, size=24)) and OpSet.use_dense(sample_images(256, size=8))
    assert not OpSet.use_dense(sample_images(1, size=25)) and not OpSet.use_dense(sample_images(257, size=8))
    assert OpSet.use_dense(sample_images(62, channels=1, size=28))  # values, not pixels: MNIST's 28x28 in one
    assert not OpSet.use_dense(sample_images(63, channels=1, size=28))
    layers = []
    real = DenseLayers._layer_by_kind
    monkeypatch.setattr(DenseLayers, "_layer_by_kind", lambda self, *args: layers.append(1) or real(self, *args))
    images = sample_images(38)
    keys = RandomSource.image_keys(torch.arange(38), 0)
    policy = A.create_policy(name)
    by_kind = policy(images, RandomSource(keys))
    assert len(layers) == 2
    with SyncAudit() as audit:
        assert OpSet.use_dense(images)
        dense = policy(images, RandomSource(keys))
    assert audit.total == 0 and len(layers) == 2 and torch.equal(dense, by_kind)


@needs_compile
def test_large_images_on_the_cpu_trace_into_one_graph_with_the_same_result():
    """Inside a compiled graph (a compiled step) large CPU images take the dense path (kind by
    kind reads its block sizes on the host, which a graph cannot): no graph break, the same
    images, and one trace after an eager call (a compiled step's warm-up), which made the dense
    path's tables too (had the trace made them, the next call would trace again)."""
    from torch._dynamo.utils import counters

    from coreaug.augment.sampling import RandomSource

    images = sample_images(12, size=72)
    keys = RandomSource.image_keys(torch.arange(12), 0)
    policy = A.create_policy("randaugment")
    eager = policy(images, RandomSource(keys))  # kind by kind
    before = counters["stats"]["unique_graphs"]
    traced = torch.compile(lambda x, k: policy(x, RandomSource(k)), fullgraph=True, backend="eager")
    assert torch.equal(traced(images, keys), eager) and torch.equal(traced(images, keys), eager)
    assert counters["stats"]["unique_graphs"] - before == 1


LEVEL_POLICIES = ["randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet", "resized-crop"]


@pytest.mark.parametrize("name", LEVEL_POLICIES)
@pytest.mark.parametrize("low, high", [(0.0, 1.01), (-0.6, 1.9)])  # a bicubic resize's overshoot; normalised data
def test_float_images_outside_0_1_are_clamped_into_it(name, low, high):
    images = sample_images(n=16).float() / 255
    images[0, 0, 0, 0], images[1, 1, 2, 3] = high, low
    policy = A.create_policy(name)
    out = policy(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, policy(images.clamp(0, 1), torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", LEVEL_POLICIES)
def test_nan_and_infinite_float_values_become_0_and_the_bounds(name):
    """A NaN once became an out-of-bounds index in equalize (on CUDA a device-side assert)."""
    images = sample_images(n=16).float() / 255
    images[0, 0, 0, 0], images[1, 1, 2, 3], images[2, 2, 1, 1] = float("nan"), float("inf"), -float("inf")
    policy = A.create_policy(name)
    out = policy(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, policy(torch.nan_to_num(images, nan=0.0).clamp(0, 1), torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_images_outside_0_1_are_clamped_into_it(dtype):
    images = (sample_images(n=16).float() / 255).to(dtype)
    images[0, 0, 0, 0] = 1.5
    policy = A.create_policy("trivialaugment")
    out = policy(images, torch.Generator().manual_seed(0))
    assert out.dtype == dtype
    assert torch.equal(out, policy(images.clamp(0, 1), torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("op", [A.equalize, lambda x: A.posterize(x, 3), A.auto_contrast])
def test_level_ops_clamp_float_images_outside_0_1(op):
    images = sample_images(n=4).float() / 255
    images[0, 0, 0, 0] = 1.01
    assert torch.equal(op(images), op(images.clamp(0, 1)))


PICKLED = [name for name in A.available_policies() if not name.startswith("test-")] + ["weak+randaugment+cutout"]


@pytest.mark.parametrize("name", PICKLED)
def test_every_policy_pickles_and_the_copy_gives_the_same_batch(name):
    """DataLoader workers started by spawn (macOS, Windows, Linux from Python 3.14) get the
    policy pickled; its caches are left behind and made again."""
    import pickle

    policy, images = A.create_policy(name), sample_images(n=8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    context = {"model": model, "labels": torch.arange(8) % 4} if policy.needs_model else {}
    first = policy(images, torch.Generator().manual_seed(3), **context)  # fills the caches
    copy = pickle.loads(pickle.dumps(policy))
    assert type(copy) is type(policy)
    assert torch.equal(copy(images, torch.Generator().manual_seed(3), **context), first)


def test_trivialaugment_translates_up_to_32_pixels_at_any_size():
    """As torchvision's TrivialAugmentWide and the paper: 32 px whatever the size (at 32x32 the
    shifts are what they were, a fraction of the size, 0 to 1)."""
    from coreaug.augment.randaugment import trivialaugment_ranges

    ops = OpSet(trivialaugment_ranges(), 31)
    wanted = torch.linspace(0.0, 32.0, 31).trunc().tolist()  # torchvision's table, shifted by int(magnitude)
    for height, width in ((32, 32), (28, 28), (224, 224), (17, 300)):
        table = ops.magnitude_table(height, width, 255.0)
        assert table[ops.index("translate_x")] == wanted and table[ops.index("translate_y")] == wanted
    assert wanted == (torch.linspace(0.0, 1.0, 31) * 32).trunc().tolist()  # what 32x32 images got before


@pytest.mark.parametrize("axis", ["x", "y"])
def test_a_translation_of_half_a_pixel_more_than_whole_is_a_clean_shift(axis):
    """A range in fractions of the size gives 23 * 15 / 30 = 11.5 px on a 23-px side: every
    pixel moves by the same whole number (Pillow's nearest pixel: floor(x + 0.5 - 11.5)), not
    some by 11 and others by 12 (float32 bins gave 11.499999)."""
    import math
    from fractions import Fraction

    from coreaug.augment.op_set import linear

    height, width = (17, 23) if axis == "x" else (23, 17)
    side = width if axis == "x" else height
    ops = OpSet({f"translate_{axis}": linear(0.0, 1.0, "width" if axis == "x" else "height")}, 31)
    along = torch.arange(1, side + 1, dtype=torch.float32)  # level = position + 1; fill 0
    image = along.view(1, 1, 1, side).expand(1, 1, height, side) if axis == "x" else \
        along.view(1, 1, side, 1).expand(1, 1, side, width)
    bins = torch.arange(31).repeat(2)
    sign = torch.tensor([1.0] * 31 + [-1.0] * 31)
    x = image.expand(62, 1, height, width).contiguous()
    out = ops.apply_layers(x, torch.zeros(1, 62, dtype=torch.long), bins.view(1, 62), sign.view(1, 62), 0.0,
                           "nearest", 255.0)
    for i in range(62):
        shift = Fraction(side * int(bins[i]), 30) * int(sign[i])
        source = [p + math.floor(Fraction(1, 2) - shift) for p in range(side)]
        expected = torch.tensor([s + 1.0 if 0 <= s < side else 0.0 for s in source])
        line = out[i, 0, 0] if axis == "x" else out[i, 0, :, 0]
        assert torch.equal(line, expected), (int(bins[i]), int(sign[i]))


@pytest.mark.parametrize("name", PICKLED)
@pytest.mark.parametrize("shape", [(3, 3, 0, 5), (3, 3, 5, 0)])
def test_images_of_no_pixels_come_back_unchanged(name, shape):
    policy, images = A.create_policy(name), torch.zeros(shape, dtype=torch.uint8)
    context = {"model": torch.nn.Flatten(), "labels": torch.zeros(3, dtype=torch.long)} if policy.needs_model else {}
    out = policy(images, torch.Generator().manual_seed(0), **context)
    assert out.shape == shape and out.dtype == images.dtype


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet"])
def test_policies_are_differentiable_in_float_images_that_require_grad(name):
    images = (sample_images(n=16).float() / 255).requires_grad_()
    out = A.create_policy(name)(images, torch.Generator().manual_seed(0))
    out.square().sum().backward()
    assert images.grad is not None and bool(images.grad.isfinite().all()) and images.grad.abs().sum() > 0


def test_tables_first_made_under_inference_mode_serve_later_calls_that_require_grad():
    """A fresh process, so the first call makes the tables (under inference_mode they would be
    inference tensors, which autograd cannot save)."""
    import subprocess
    import sys

    script = (
        "import torch, coreaug.augment as A\n"
        "images = torch.rand(4, 3, 32, 32)\n"
        "for name in ('randaugment', 'trivialaugment', 'autoaugment'):\n"
        "    policy = A.create_policy(name)\n"
        "    with torch.inference_mode():\n"
        "        policy(images, torch.Generator().manual_seed(0))\n"
        "    x = images.clone().requires_grad_()\n"
        "    policy(x, torch.Generator().manual_seed(0)).sum().backward()\n"
        "    assert x.grad is not None\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_caches_keep_a_bounded_number_of_sizes_and_results_do_not_change_after_eviction():
    from coreaug.augment import color_ops, dense_layers, geometric
    from coreaug.augment.constants import CACHE_ENTRIES

    policy = A.RandAugment()
    first = sample_images(n=3, size=9)
    before = policy(first, torch.Generator().manual_seed(1))
    for k in range(3 * CACHE_ENTRIES):  # ever new image sizes and batch sizes
        policy(torch.zeros(1 + k % 5, 3, 4 + k, 5, dtype=torch.uint8), torch.Generator().manual_seed(k))
        policy(torch.zeros(k + 1, 3, 4, 4, dtype=torch.uint8), torch.Generator().manual_seed(k))
    caches = [geometric._GRIDS, color_ops._TABLES, dense_layers._POSITIONS, dense_layers._ZERO_ROWS,
              policy._ops._dense._tables_cache]
    assert all(len(cache) <= CACHE_ENTRIES for cache in caches)
    assert torch.equal(policy(first, torch.Generator().manual_seed(1)), before)


def test_a_name_registered_with_capitals_or_spaces_is_created_by_its_listed_name(monkeypatch):
    import coreaug
    from coreaug.augment import registry
    monkeypatch.setattr(registry, "_POLICIES", dict(registry._POLICIES))  # leave the real registry as it was

    @A.register_policy(" Test-MixedCase ")
    class Inverted(A.Policy):
        def __call__(self, images, generator=None, **context):
            return A.invert(images)

    assert "test-mixedcase" in A.available_policies() and "Test-MixedCase" not in A.available_policies()
    images = sample_images(n=2)
    for name in ("test-mixedcase", "Test-MixedCase", " test-mixedcase"):
        assert torch.equal(A.create_policy(name)(images), 255 - images)
    assert isinstance(A.create_policy("weak+Test-MixedCase"), A.Compose)
    coreaug.TrainConfig(dataset="digits", augment="test-mixedcase").resolved()  # the listed name trains


@pytest.mark.parametrize("height, width", [(28, 28), (32, 32), (23, 41), (224, 224)])
def test_translations_shift_by_the_magnitude_truncated_to_whole_pixels_as_torchvision(height, width):
    """torchvision's policies shift by int(magnitude): RandAugment's default bin on 28x28 is 3.8 px, a 3-px shift."""
    from coreaug.augment.autoaugment import AUTOAUGMENT_BINS, AUTOAUGMENT_RANGES
    from coreaug.augment.randaugment import trivialaugment_ranges

    for ranges, bins, high in ((randaugment_ranges(), 31, 150 / 331), (AUTOAUGMENT_RANGES, AUTOAUGMENT_BINS, 150 / 331),
                               (trivialaugment_ranges(), 31, None)):
        ops = OpSet(ranges, bins)
        table = ops.magnitude_table(height, width, 255.0)
        for name, side in (("translate_x", width), ("translate_y", height)):
            steps = torch.linspace(0.0, 32.0 if high is None else high * side, bins)  # torchvision's float32 table
            assert table[ops.index(name)] == [float(int(v)) for v in steps.tolist()], name
    if (height, width) == (28, 28):
        ops = OpSet(randaugment_ranges(), 31)
        assert ops.magnitude_table(28, 28, 255.0)[ops.index("translate_x")][9] == 3.0
