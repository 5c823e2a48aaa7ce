"""coreaug.augment ops match Pillow image by image, with a different magnitude per example."""
import pytest
import torch

import coreaug.augment as A

R = pytest.importorskip("coreaug.augment.pillow_reference")


def sample_images(n=6, channels=3, height=32, width=32, seed=0):
    """Structured uint8 images: gradients, a bright square, and noise (all levels used)."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(1, 1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, 1, width)
    weights = torch.rand(n, channels, 1, 1, generator=g)
    base = 40 + 150 * (weights * ys + (1 - weights) * xs)
    base[:, :, height // 4: height // 2, width // 3: width // 2] += 60
    noise = torch.randn(n, channels, height, width, generator=g) * 25
    return (base + noise).clamp(0, 255).round().to(torch.uint8)


def mean_level_difference(ours, reference):
    return (ours.float() - reference.float()).abs().mean().item()


COLOR_CASES = [
    # (op name, batched op, one magnitude per example)
    ("auto_contrast", lambda x, v: A.auto_contrast(x), [0] * 6),
    ("equalize", lambda x, v: A.equalize(x), [0] * 6),
    ("invert", lambda x, v: A.invert(x), [0] * 6),
    ("solarize", A.solarize, [0, 64, 100, 128, 200, 255]),
    ("posterize", A.posterize, [1, 2, 4, 6, 7, 8]),
    ("color", A.color, [0.0, 0.1, 0.7, 1.0, 1.5, 1.9]),
    ("contrast", A.contrast, [0.0, 0.1, 0.7, 1.0, 1.5, 1.9]),
    ("brightness", A.brightness, [0.0, 0.1, 0.7, 1.0, 1.5, 1.9]),
    ("sharpness", A.sharpness, [0.0, 0.1, 0.7, 1.0, 1.5, 1.9]),
]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name, op, values", COLOR_CASES, ids=[c[0] for c in COLOR_CASES])
def test_color_op_matches_pillow_within_one_level(name, op, values, channels):
    images = sample_images(channels=channels, height=28 if channels == 1 else 32,
                           width=28 if channels == 1 else 32)
    ours = op(images, torch.tensor(values, dtype=torch.float32))
    reference = R.apply_each(name, images, values)
    assert mean_level_difference(ours, reference) <= 1.0
    # In practice it is exact: same rounding and truncation as Pillow's 8-bit arithmetic.
    assert (ours.int() - reference.int()).abs().max().item() <= 1


def test_equalize_and_auto_contrast_leave_a_flat_image_unchanged():
    flat = torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(A.equalize(flat), flat)
    assert torch.equal(A.auto_contrast(flat), flat)


GEOMETRIC_CASES = [
    ("rotate", A.rotate, [-135.0, -30.0, -7.5, 0.0, 23.0, 90.0]),
    ("shear_x", A.shear_x, [-0.99, -0.3, -0.1, 0.0, 0.15, 0.3]),
    ("shear_y", A.shear_y, [-0.3, -0.12, 0.0, 0.05, 0.3, 0.99]),
    ("translate_x", A.translate_x, [-14.5, -5.0, 0.0, 3.0, 7.3, 32.0]),
    ("translate_y", A.translate_y, [-9.0, -2.0, 0.0, 1.0, 4.6, 14.5]),
]

# Nearest interpolation picks the same source pixel as Pillow except where float32 and
# Pillow's double arithmetic put a sampling position on different sides of a pixel edge.
MAX_FRACTION_OF_PIXELS_DIFFERING = 0.01


@pytest.mark.parametrize("fill", [0, 128])
@pytest.mark.parametrize("name, op, values", GEOMETRIC_CASES, ids=[c[0] for c in GEOMETRIC_CASES])
def test_geometric_op_matches_pillow_affine_transform_with_nearest(name, op, values, fill):
    images = sample_images()
    ours = op(images, torch.tensor(values), fill=fill)
    reference = R.apply_each(name, images, values, fill=fill)
    differing = (ours != reference).any(dim=1).float().mean().item()
    assert differing <= MAX_FRACTION_OF_PIXELS_DIFFERING


def test_horizontal_flip_matches_pillow_mirror_per_example():
    images = sample_images()
    flip = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    ours = A.horizontal_flip(images, p=flip)
    assert torch.equal(ours, R.apply_each("horizontal_flip", images, flip.tolist()))


def test_rotate_by_a_quarter_turn_is_counter_clockwise():
    image = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    assert torch.equal(A.rotate(image, 90.0), torch.rot90(image, 1, dims=(2, 3)))


def test_translate_uncovers_fill_per_channel():
    images = sample_images(n=1)
    moved = A.translate_x(images, 3.0, fill=[10, 20, 30])
    assert moved[0, :, :, :3].flatten(1).unique(dim=1).tolist() == [[10], [20], [30]]
    assert torch.equal(moved[..., 3:], images[..., :-3])


def test_bilinear_integer_translation_equals_nearest():
    images = sample_images(n=2)
    nearest = A.translate_y(images, torch.tensor([2.0, -3.0]), fill=50)
    bilinear = A.translate_y(images, torch.tensor([2.0, -3.0]), fill=50, interpolation="bilinear")
    assert (nearest.int() - bilinear.int()).abs().max().item() <= 1


@pytest.mark.parametrize("op, magnitude", [
    (A.rotate, 0.0), (A.shear_x, 0.0), (A.shear_y, 0.0), (A.translate_x, 1.0), (A.translate_y, -2.0),
])
def test_bilinear_warp_by_whole_pixels_keeps_uint8_levels_exactly(op, magnitude):
    """grid_sample's float32 error (199.99998 for 200) is rounded, not truncated to a level darker."""
    images = sample_images(n=4, height=33, width=17)
    assert torch.equal(op(images, magnitude, interpolation="bilinear"), op(images, magnitude))
    flat = torch.full((2, 3, 33, 17), 200, dtype=torch.uint8)
    assert op(flat, 10.0, interpolation="bilinear", fill=200).unique().tolist() == [200]


@pytest.mark.parametrize("height, width", [(33, 17), (70, 66)])  # the dense path and the CPU's kind by kind
def test_randaugment_at_magnitude_zero_is_the_same_bilinear_or_nearest(height, width):
    images = sample_images(n=40, height=height, width=width)
    results = [A.RandAugment(magnitude=0, num_ops=1, interpolation=interpolation)(
        images, torch.Generator().manual_seed(0)) for interpolation in ("nearest", "bilinear")]
    assert torch.equal(*results)


def test_random_crop_is_a_whole_pixel_shift_within_the_padding():
    images = sample_images(n=8)
    g = torch.Generator().manual_seed(3)
    cropped = A.random_crop(images, padding=4, generator=g)
    for image, crop in zip(images, cropped):
        shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                  if torch.equal(torch.roll(image, (dy, dx), (1, 2))[:, 4:-4, 4:-4],
                                 crop[:, 4:-4, 4:-4])]
        assert len(shifts) == 1


def test_random_crop_with_zero_padding_is_identity():
    images = sample_images(n=3)
    assert torch.equal(A.random_crop(images, padding=0), images)


def test_cutout_blanks_one_square_per_example_clipped_at_the_border():
    images = torch.full((64, 1, 32, 32), 200, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = A.cutout(images, size=8, fill=0, generator=g)
    blanked = (out == 0).sum(dim=(1, 2, 3))
    assert blanked.max().item() == 64 and blanked.min().item() >= 16  # 8x8, at least a corner 4x4
    rows = (out[:, 0] == 0).any(dim=2).sum(dim=1)
    assert (rows <= 8).all()


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_cutout_square_is_the_fill_whatever_was_there(value):
    """The square is fill (it was inf * 0 = NaN); pixels outside it are left as they are."""
    images = torch.full((8, 2, 6, 6), value)
    out = A.cutout(images, size=4, fill=0.5, generator=torch.Generator().manual_seed(0))
    policy = A.create_policy("cutout", size=4, fill=255)(images, torch.Generator().manual_seed(0))
    for result, fill in ((out, 0.5), (policy, 1.0)):
        square = result == fill
        assert square.flatten(1).sum(1).min() >= 2 * 2 * 2  # at least a clipped corner in each channel
        assert torch.equal(result[~square].isnan(), images[~square].isnan())  # the rest kept


def test_float_images_give_the_uint8_result_within_one_level():
    images = sample_images()
    as_float = images.float() / 255
    for name, op, values in COLOR_CASES:
        magnitudes = torch.tensor(values, dtype=torch.float32)
        if name == "solarize":
            magnitudes = magnitudes / 255
        ours_float = (op(as_float, magnitudes) * 255).round()
        ours_uint8 = op(images, torch.tensor(values, dtype=torch.float32)).float()
        assert (ours_float - ours_uint8).abs().mean().item() <= 1.0, name


@pytest.mark.parametrize("op, magnitude", [
    (A.rotate, 0.0), (A.shear_x, 0.0), (A.shear_y, 0.0), (A.translate_x, 0.0),
    (A.translate_y, 0.0), (A.brightness, 1.0), (A.color, 1.0), (A.contrast, 1.0),
    (A.sharpness, 1.0), (A.posterize, 8),
])
def test_op_at_neutral_magnitude_is_identity(op, magnitude):
    images = sample_images()
    assert torch.equal(op(images, magnitude), images)
    as_float = images.float() / 255  # blends round in float arithmetic
    torch.testing.assert_close(op(as_float, magnitude), as_float, rtol=0, atol=1e-6)


def test_auto_contrast_gives_pillows_levels_exactly_for_any_darkest_and_brightest_level():
    """Pillow's table is int(level * scale - low * scale) in double precision: where the exact
    stretch is a whole number it can land a level under (the brightest at 254 for (0, 25)). A
    float32 stretch missed it by a level on about one image in five."""
    g = torch.Generator().manual_seed(0)
    low, high = torch.triu_indices(256, 256, offset=1)
    pick = torch.randperm(low.shape[0], generator=g)[:3000]
    low, high = low[pick], high[pick]
    between = low.unsqueeze(1) + (torch.rand(3000, 6, generator=g) * (high - low + 1).unsqueeze(1)).long()
    levels = torch.cat([low.unsqueeze(1), high.unsqueeze(1), between.minimum(high.unsqueeze(1))], dim=1)
    images = levels.to(torch.uint8).view(-1, 1, 1, 8)
    assert torch.equal(A.auto_contrast(images), R.apply_each("auto_contrast", images, [0] * 3000))
    assert torch.equal(A.auto_contrast(images.expand(-1, 3, -1, -1)),
                       R.apply_each("auto_contrast", images.expand(-1, 3, -1, -1), [0] * 3000))
