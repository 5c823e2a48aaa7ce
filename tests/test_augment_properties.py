"""Property tests: any batch shape, dtype and magnitude keeps shape, dtype and value range."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import coreaug.augment as A

POLICIES = ["randaugment", "trivialaugment", "autoaugment", "autoaugment-imagenet", "weak", "resized-crop", "cutout",
            "weak+randaugment+cutout"]


@st.composite
def batches(draw):
    """A small random batch: 0-5 examples, 1 or 3 channels, 4-20 pixels a side, uint8 or float."""
    n = draw(st.integers(0, 5))
    channels = draw(st.sampled_from([1, 3]))
    height, width = draw(st.integers(4, 20)), draw(st.integers(4, 20))
    seed = draw(st.integers(0, 2**31 - 1))
    images = torch.randint(0, 256, (n, channels, height, width), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    if draw(st.booleans()):
        return images.to(draw(st.sampled_from([torch.float32, torch.float64]))) / 255
    return images


def assert_same_kind(out, images):
    assert out.shape == images.shape and out.dtype == images.dtype
    if images.is_floating_point() and images.numel():
        assert out.min().item() >= 0.0 and out.max().item() <= 1.0


@settings(max_examples=40, deadline=None)
@given(images=batches(), name=st.sampled_from(POLICIES), seed=st.integers(0, 1000))
def test_policy_preserves_shape_dtype_and_range(images, name, seed):
    out = A.create_policy(name)(images, torch.Generator().manual_seed(seed))
    assert_same_kind(out, images)


@settings(max_examples=30, deadline=None)
@given(images=batches(), name=st.sampled_from(POLICIES), seed=st.integers(0, 1000))
def test_policy_is_reproducible_from_the_seed(images, name, seed):
    policy = A.create_policy(name)
    first = policy(images, torch.Generator().manual_seed(seed))
    assert torch.equal(first, policy(images, torch.Generator().manual_seed(seed)))


@settings(max_examples=40, deadline=None)
@given(images=batches(), data=st.data())
def test_ops_with_per_example_magnitudes_preserve_shape_dtype_and_range(images, data):
    n = images.shape[0]
    unit = 255.0 if images.dtype == torch.uint8 else 1.0
    floats = lambda low, high: torch.tensor(  # noqa: E731
        data.draw(st.lists(st.floats(low, high), min_size=n, max_size=n)), dtype=torch.float32)
    whole = lambda low, high: torch.tensor(  # noqa: E731
        data.draw(st.lists(st.integers(low, high), min_size=n, max_size=n)), dtype=torch.float32)
    outputs = [
        A.auto_contrast(images), A.equalize(images), A.invert(images),
        A.solarize(images, floats(0, unit)), A.posterize(images, whole(0, 8)),
        A.color(images, floats(0, 3)), A.contrast(images, floats(0, 3)),
        A.brightness(images, floats(0, 3)), A.sharpness(images, floats(0, 3)),
        A.rotate(images, floats(-180, 180)), A.shear_x(images, floats(-1, 1)),
        A.shear_y(images, floats(-1, 1), interpolation="bilinear"),
        A.translate_x(images, floats(-30, 30), fill=unit), A.translate_y(images, floats(-30, 30)),
        A.horizontal_flip(images, floats(0, 1)), A.random_crop(images, whole(0, 6)),
        A.cutout(images, whole(0, 25)),
    ]
    for out in outputs:
        assert_same_kind(out, images)


@settings(max_examples=25, deadline=None)
@given(images=batches())
def test_involutions_undo_themselves(images):
    assert torch.equal(A.horizontal_flip(A.horizontal_flip(images, 1.0), 1.0), images)
    if images.dtype == torch.uint8:
        assert torch.equal(A.invert(A.invert(images)), images)
        assert torch.equal(A.rotate(A.rotate(images, 180.0), 180.0), images)
