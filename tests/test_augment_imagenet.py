"""Policies for larger images: random-resized crop with flip, and AutoAugment's ImageNet table."""
import pytest
import torch

import coreaug.augment as A
from coreaug.augment.autoaugment import (AUTOAUGMENT_RANGES, CIFAR10_SUBPOLICIES,
                                         IMAGENET_SUBPOLICIES)
from coreaug.augment.op_set import no_magnitude
from coreaug.training.sync_audit import SyncAudit

NEW_POLICIES = ["resized-crop", "autoaugment-imagenet"]


def sample_images(n=8, channels=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(30, 220, size).view(1, 1, 1, size)
    noise = torch.randn(n, channels, size, size, generator=g) * 30
    return (ramp + noise).clamp(0, 255).round().to(torch.uint8)


def position_ramps(n, size):
    """Float images whose channel 0 is each pixel centre's x and channel 1 its y, as fractions
    of the side: a crop of them is again a ramp, whose slope and offset give the crop's box."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    x = centres.view(1, size).expand(size, size)
    return torch.stack([x, x.t()]).expand(n, 2, size, size).contiguous()


def measured_boxes(out):
    """(left, top, width, height, flipped) of each crop of ``position_ramps``, read from two
    interior columns and rows (away from the edges, where sampling clamps to the border)."""
    size = out.shape[-1]
    first, last = size // 4, 3 * size // 4 - 1
    middle = size // 2
    across = out[:, 0, middle, last] - out[:, 0, middle, first]
    down = out[:, 1, last, middle] - out[:, 1, first, middle]
    width, height = across.abs() * size / (last - first), down * size / (last - first)
    flipped = across < 0
    offset = width * (first + 0.5) / size
    left = torch.where(flipped, out[:, 0, middle, first] + offset - width,
                       out[:, 0, middle, first] - offset)
    top = out[:, 1, first, middle] - height * (first + 0.5) / size
    return left, top, width, height, flipped


# Every new policy: the Policy contract.

@pytest.mark.parametrize("name", NEW_POLICIES)
def test_new_policies_are_registered(name):
    assert name in A.available_policies()


@pytest.mark.parametrize("name", NEW_POLICIES)
def test_float_result_is_close_to_the_uint8_one(name):
    images = sample_images(n=32)
    policy = A.create_policy(name)
    ours_uint8 = policy(images, torch.Generator().manual_seed(0)).float()
    ours_float = policy(images.float() / 255, torch.Generator().manual_seed(0)) * 255
    assert (ours_uint8 - ours_float).abs().mean().item() < 2.0


@pytest.mark.parametrize("name", NEW_POLICIES + ["resized-crop+autoaugment-imagenet"])
def test_a_call_has_no_syncing_op(name):
    policy, images = A.create_policy(name), sample_images(n=16)
    policy(images, torch.Generator().manual_seed(0))  # tables are copied to the device once
    with SyncAudit() as audit:
        policy(images, torch.Generator().manual_seed(1))
    assert audit.total == 0, dict(audit.counts)


def test_resized_crop_has_no_syncing_op_even_on_its_first_call():
    policy, images = A.ResizedCrop(), sample_images(n=16)
    with SyncAudit() as audit:
        policy(images, torch.Generator().manual_seed(1))
    assert audit.total == 0, dict(audit.counts)


@pytest.mark.parametrize("read", [
    lambda out: float(out.float().mean()),  # a value read back
    lambda out: out[out > 128],             # a shape that depends on the values
    lambda out: out[0, 0, 0].tolist(),      # a copy to the host
])
def test_the_audit_sees_a_sync_added_to_the_policy(read):
    """The audit can fail: a resized crop followed by one syncing read is caught."""
    policy, images = A.ResizedCrop(), sample_images(n=16)
    with SyncAudit() as audit:
        read(policy(images, torch.Generator().manual_seed(1)))
    assert audit.total >= 1


# Random-resized crop.

@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_whole_image_box_without_flip_is_the_identity(interpolation):
    whole = A.ResizedCrop(scale=(1, 1), ratio=(1, 1), flip=False, interpolation=interpolation)
    images = sample_images(n=8)
    assert torch.equal(whole(images, torch.Generator().manual_seed(0)), images)
    as_float = images.float() / 255
    assert torch.allclose(whole(as_float, torch.Generator().manual_seed(0)), as_float, atol=1e-5)


def test_whole_image_box_with_flip_mirrors_about_half_the_examples():
    image = sample_images(n=1)
    batch = image.expand(200, -1, -1, -1)
    out = A.ResizedCrop(scale=(1, 1), ratio=(1, 1))(batch, torch.Generator().manual_seed(0))
    same = (out == image).flatten(1).all(dim=1)
    mirrored = (out == image.flip(-1)).flatten(1).all(dim=1)
    assert bool((same | mirrored).all())
    assert 0.35 < mirrored.float().mean().item() < 0.65


def test_small_boxes_zoom_into_one_half_of_a_two_tone_image():
    # Left half black, right half white: a box of a hundredth of the area mostly lies in one
    # half, so most outputs are a single tone; the whole image would never be.
    image = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    image[..., 32:] = 255
    policy = A.ResizedCrop(scale=(0.01, 0.01), ratio=(1, 1), flip=False)
    out = policy(image.expand(300, -1, -1, -1), torch.Generator().manual_seed(0))
    black = (out == 0).flatten(1).all(dim=1).float().mean().item()
    white = (out == 255).flatten(1).all(dim=1).float().mean().item()
    assert black + white > 0.75
    assert black > 0.3 and white > 0.3


def test_box_areas_follow_the_requested_scale_and_ratio():
    out = A.ResizedCrop()(position_ramps(1000, 48), torch.Generator().manual_seed(0))
    left, top, width, height, flipped = measured_boxes(out)
    area, tolerance = width * height, 1e-4
    assert area.min().item() >= 0.08 - tolerance and area.max().item() <= 1 + tolerance
    # s ~ U(0.08, 1); clamping only shrinks boxes drawn above 3/4, so the median stays 0.54.
    assert abs(area.median().item() - 0.54) < 0.05
    assert left.min().item() >= -tolerance and (left + width).max().item() <= 1 + tolerance
    assert top.min().item() >= -tolerance and (top + height).max().item() <= 1 + tolerance
    clamped = (width > 1 - tolerance) | (height > 1 - tolerance)
    aspect = (width / height)[~clamped]
    assert aspect.min().item() >= 0.75 - 1e-3 and aspect.max().item() <= 4 / 3 + 1e-3
    assert aspect.min().item() < 0.8 and aspect.max().item() > 1.25  # the whole range is drawn
    # About 14% of draws with the defaults are wider or taller than the image (see the module).
    assert 0.09 < clamped.float().mean().item() < 0.19
    assert 0.4 < flipped.float().mean().item() < 0.6


def test_fixed_scale_and_ratio_give_boxes_of_that_shape_at_varied_places():
    out = A.ResizedCrop(scale=(0.25, 0.25), ratio=(1, 1), flip=False)(
        position_ramps(200, 48), torch.Generator().manual_seed(0))
    left, top, width, height, flipped = measured_boxes(out)
    assert torch.allclose(width, torch.full_like(width, 0.5), atol=1e-4)
    assert torch.allclose(height, torch.full_like(height, 0.5), atol=1e-4)
    assert not bool(flipped.any())
    assert left.min().item() < 0.05 and left.max().item() > 0.45  # all of [0, 0.5]
    assert top.min().item() < 0.05 and top.max().item() > 0.45
    assert (left - top).abs().max().item() > 0.2  # drawn independently


def test_nearest_interpolation_only_copies_pixels():
    levels = torch.tensor([0, 100, 200], dtype=torch.uint8)
    images = levels[torch.randint(0, 3, (16, 3, 64, 64), generator=torch.Generator().manual_seed(0))]
    out = A.ResizedCrop(interpolation="nearest")(images, torch.Generator().manual_seed(0))
    assert bool(torch.isin(out, levels).all())
    blended = A.ResizedCrop()(images, torch.Generator().manual_seed(0))
    assert not bool(torch.isin(blended, levels).all())


def test_flip_keyword_reaches_the_crop_in_a_chain():
    chain = A.create_policy("resized-crop+autoaugment-imagenet", flip=False)
    crop, autoaugment = chain.policies
    assert isinstance(crop, A.ResizedCrop) and not crop.flip
    assert autoaugment.policy == "imagenet"


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": (0, 1)}, r"scale must be a pair \(low, high\) with 0 < low <= high <= 1"),
    ({"scale": (0.5, 0.1)}, "scale must be a pair .* got .0.5, 0.1."),
    ({"scale": (0.5, 1.5)}, "scale must be a pair"),
    ({"scale": 0.5}, "scale must be a pair"),
    ({"scale": (0.1, float("nan"))}, "scale must be a pair"),
    ({"ratio": (0, 1)}, r"ratio must be a pair \(low, high\) with 0 < low <= high"),
    ({"ratio": (4 / 3, 3 / 4)}, "ratio must be a pair"),
    ({"ratio": (1, float("inf"))}, "ratio must be a pair"),
    ({"interpolation": "bicubic"}, "interpolation must be one of"),
    ({"flip": "yes"}, "flip must be True or False"),
    ({"padding": 4}, r"policy 'resized-crop' takes \(scale, ratio, flip, interpolation, size\)"),
])
def test_resized_crop_settings_out_of_range_say_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        A.create_policy("resized-crop", **kwargs)


def test_resized_crop_checks_the_images():
    with pytest.raises(ValueError, match="4-D tensor"):
        A.ResizedCrop()(torch.zeros(3, 64, 64, dtype=torch.uint8))


def test_resized_crop_takes_any_channel_count_and_an_empty_batch():
    four = torch.zeros(2, 4, 16, 16, dtype=torch.uint8)
    assert A.ResizedCrop()(four).shape == four.shape
    assert A.ResizedCrop()(four[:0]).shape == (0, 4, 16, 16)



def test_resized_crop_to_a_size_refuses_images_without_pixels_and_keeps_an_empty_batch():
    """A `size` square cannot be cropped from no pixels (it came back as uninitialised memory)."""
    with pytest.raises(ValueError, match=r"pixels to crop 4x4 squares from, got shape \(2, 3, 0, 5\)"):
        A.ResizedCrop(size=4)(torch.zeros(2, 3, 0, 5, dtype=torch.uint8))
    assert A.ResizedCrop(size=4)(torch.zeros(0, 3, 0, 5)).shape == (0, 3, 4, 4)
    assert A.ResizedCrop()(torch.zeros(2, 3, 0, 5)).shape == (2, 3, 0, 5)  # no size: the shape kept


# AutoAugment's ImageNet policy.

def test_imagenet_table_is_the_published_one():
    assert len(IMAGENET_SUBPOLICIES) == 25
    assert all(len(sub) == 2 for sub in IMAGENET_SUBPOLICIES)
    assert IMAGENET_SUBPOLICIES[0] == (("posterize", 0.4, 8), ("rotate", 0.6, 9))
    assert IMAGENET_SUBPOLICIES[18] == (("shear_x", 0.6, 5), ("equalize", 1.0, None))
    assert IMAGENET_SUBPOLICIES[-1] == (("equalize", 0.8, None), ("equalize", 0.6, None))


@pytest.mark.parametrize("table", [IMAGENET_SUBPOLICIES, CIFAR10_SUBPOLICIES])
def test_every_step_names_a_known_op_with_a_bin_exactly_when_it_takes_one(table):
    for step in (step for sub in table for step in sub):
        name, probability, bin_index = step
        assert name in AUTOAUGMENT_RANGES, step
        assert 0 <= probability <= 1, step
        takes_magnitude = AUTOAUGMENT_RANGES[name] is not no_magnitude
        assert (bin_index is not None) == takes_magnitude, step
        assert bin_index is None or 0 <= bin_index < 10, step


def test_autoaugment_still_means_the_cifar10_policy():
    policy = A.create_policy("autoaugment")
    assert policy.policy == "cifar10" and policy.subpolicies is CIFAR10_SUBPOLICIES
    images = sample_images(n=32)
    ours = policy(images, torch.Generator().manual_seed(0))
    assert torch.equal(ours, A.AutoAugment()(images, torch.Generator().manual_seed(0)))
    imagenet = A.create_policy("autoaugment-imagenet")(images, torch.Generator().manual_seed(0))
    assert not torch.equal(ours, imagenet)


def test_autoaugment_imagenet_is_autoaugment_with_the_imagenet_table():
    policy = A.create_policy("autoaugment-imagenet", interpolation="bilinear", fill=128)
    assert isinstance(policy, A.AutoAugment) and policy.subpolicies is IMAGENET_SUBPOLICIES
    assert policy.interpolation == "bilinear" and policy.fill == 128
    images = sample_images(n=32)
    by_hand = A.AutoAugment(interpolation="bilinear", fill=128, policy="imagenet")
    assert torch.equal(policy(images, torch.Generator().manual_seed(0)),
                       by_hand(images, torch.Generator().manual_seed(0)))


def test_autoaugment_imagenet_changes_most_examples():
    # A sub-policy applies at least one step with probability 0.84 on average (color at bin 0
    # counted as no step: it is the identity), and every step changes a noisy image.
    images = sample_images(n=200)
    out = A.create_policy("autoaugment-imagenet")(images, torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert changed > 0.6


@pytest.mark.parametrize("call, message", [
    (lambda: A.AutoAugment(policy="svhn"), r"policy must be one of \('cifar10', 'imagenet'\)"),
    (lambda: A.create_policy("autoaugment-imagenet", policy="cifar10"),
     r"policy 'autoaugment-imagenet' takes \(interpolation, fill\)"),
    (lambda: A.create_policy("autoaugment-imagenet")(torch.zeros(2, 4, 8, 8, dtype=torch.uint8)),
     r"1 \(grayscale\) or 3 \(RGB\) channels, got 4"),
])
def test_autoaugment_imagenet_bad_input_says_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_resized_crop_outputs_the_size_asked_for():
    """A folder stored at 256 px trains on 224 px crops of it."""
    images = sample_images(n=4)
    out = A.ResizedCrop(size=images.shape[-1] - 4)(images, torch.Generator().manual_seed(0))
    assert out.shape == (*images.shape[:2], images.shape[-2] - 4, images.shape[-1] - 4) and out.dtype == torch.uint8


def test_the_aspect_ratio_is_in_pixels_on_non_square_images():
    """ratio=(1, 1) gives square boxes in pixels on a 24x48 image (as torchvision), resampled
    to a square output without distortion; a ratio in fractions of the sides would give boxes
    twice as wide as tall."""
    height, width = 24, 48
    xs = ((torch.arange(width, dtype=torch.float32) + 0.5) / width).view(1, width).expand(height, width)
    ys = ((torch.arange(height, dtype=torch.float32) + 0.5) / height).view(height, 1).expand(height, width)
    images = torch.stack([xs, ys]).expand(100, 2, height, width).contiguous()
    out = A.ResizedCrop(scale=(0.2, 0.3), ratio=(1, 1), flip=False, size=32)(images, torch.Generator().manual_seed(0))
    left, top, box_width, box_height, flipped = measured_boxes(out)
    assert torch.allclose(box_width * width, box_height * height, rtol=1e-3)
    area = box_width * box_height
    assert area.min().item() >= 0.2 - 1e-3 and area.max().item() <= 0.3 + 1e-3


def test_boxes_on_square_images_are_what_they_were():
    from coreaug.augment.resized_crop import random_boxes

    drawn = random_boxes(64, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0), torch.device("cpu"))
    square = random_boxes(64, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0), torch.device("cpu"),
                          32, 32)
    assert torch.equal(drawn, square)
