"""Bad input to coreaug.augment raises ValueError saying what was expected."""
import pytest
import torch

import coreaug.augment as A

IMAGES = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)


def test_wrong_rank_names_the_expected_layout():
    with pytest.raises(ValueError, match=r"4-D tensor \(B, C, H, W\), got shape \(3, 32, 32\)"):
        A.equalize(torch.zeros(3, 32, 32, dtype=torch.uint8))


def test_integer_dtype_other_than_uint8_is_rejected():
    with pytest.raises(ValueError, match="uint8 .* or floating point .* got dtype torch.int32"):
        A.create_policy("randaugment")(torch.zeros(2, 3, 8, 8, dtype=torch.int32))


@pytest.mark.parametrize("call", [
    lambda x: A.color(x, 0.5), lambda x: A.contrast(x, 0.5),
    lambda x: A.create_policy("randaugment")(x), lambda x: A.create_policy("autoaugment")(x),
])
def test_colour_ops_need_one_or_three_channels(call):
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels, got 4"):
        call(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))


def test_per_channel_ops_accept_any_channel_count():
    four = torch.zeros(2, 4, 8, 8, dtype=torch.uint8)
    assert A.rotate(A.equalize(A.brightness(four, 1.5)), 10.0).shape == four.shape
    assert A.create_policy("weak+cutout")(four).shape == four.shape


@pytest.mark.parametrize("call, message", [
    (lambda: A.posterize(IMAGES, 9), r"bits must be in \[0.0, 8.0\], got 9.0"),
    (lambda: A.posterize(IMAGES, 2.5), "bits must be whole numbers"),
    (lambda: A.solarize(IMAGES, 300), r"threshold must be in \[0.0, 255.0\]"),
    (lambda: A.solarize(IMAGES.float(), 128), r"threshold must be in \[0.0, 1.0\]"),
    (lambda: A.brightness(IMAGES, -0.5), "factor must be in"),
    (lambda: A.rotate(IMAGES, float("nan")), "degrees must be finite"),
    (lambda: A.sharpness(IMAGES, torch.ones(3)), r"one per example\), got shape \(3,\)"),
    (lambda: A.horizontal_flip(IMAGES, p=1.5), r"p must be in \[0.0, 1.0\]"),
    (lambda: A.cutout(IMAGES, size=-1), "size must be in"),
    (lambda: A.rotate(IMAGES, 10.0, interpolation="cubic"), "interpolation must be one of"),
    (lambda: A.rotate(IMAGES, 10.0, fill=[1, 2]), "fill must be a number or 3 numbers"),
    (lambda: A.cutout(IMAGES.float(), fill=128), r"fill must be a number in \[0, 1\]"),
    (lambda: A.random_crop(IMAGES, fill=-1), r"fill must be a number in \[0, 255\]"),
])
def test_op_argument_out_of_range_says_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name, kwargs, message", [
    ("randaugment", {"magnitude": 31}, r"magnitude must be in \[0, 30\], got 31"),
    ("randaugment", {"num_ops": -1}, r"num_ops must be in \[0, 100\]"),
    ("randaugment", {"interpolation": "cubic"}, "interpolation must be one of"),
    ("trivialaugment", {"num_magnitude_bins": 1}, r"num_magnitude_bins must be in \[2, 10000\]"),
    ("autoaugment", {"fill": 300}, r"fill must be a level in \[0, 255\]"),
    ("weak", {"padding": 2.5}, "padding must be a whole number"),
    ("cutout", {"size": -3}, "size must be >= 0"),
    ("maxloss", {"candidates": 0}, "candidates must be >= 1"),
    ("weak", {"bogus": 1}, r"policy 'weak' takes \(padding, flip, fill\)"),
])
def test_policy_settings_out_of_range_say_what_was_expected(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        A.create_policy(name, **kwargs)


class ScoringModel(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


SOURCE_CALLS = {
    **{name: (lambda name: lambda x, source: A.create_policy(name)(x, source))(name)
       for name in ["randaugment", "trivialaugment", "autoaugment", "weak", "cutout", "resized-crop",
                    "weak+randaugment"]},
    "maxloss": lambda x, source: A.create_policy("maxloss")(
        x, source, model=ScoringModel(), labels=torch.zeros(len(x), dtype=torch.long)),
    "horizontal_flip": lambda x, source: A.horizontal_flip(x, generator=source),
    "random_crop": lambda x, source: A.random_crop(x, generator=source),
    "cutout op": lambda x, source: A.cutout(x, 4, generator=source),
}


@pytest.mark.parametrize("name", sorted(SOURCE_CALLS))
@pytest.mark.parametrize("keys", [3, 8])
def test_a_random_source_needs_one_key_per_image_of_the_batch(name, keys):
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(ValueError, match=rf"RandomSource has {keys} keys \(one per image\) but the batch has 4 images"):
        SOURCE_CALLS[name](images, A.RandomSource(torch.arange(keys)))


@pytest.mark.parametrize("name", sorted(SOURCE_CALLS))
def test_a_random_source_with_a_key_per_image_or_one_key_for_the_call_is_accepted(name):
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    for key in (torch.arange(4), torch.tensor(7)):
        assert SOURCE_CALLS[name](images, A.RandomSource(key)).shape == images.shape


def test_a_random_source_key_must_be_0_dim_or_one_per_image():
    with pytest.raises(ValueError, match=r"0-dim .* or \(n,\) .* got shape \(2, 2\)"):
        A.RandomSource(torch.zeros(2, 2, dtype=torch.long))


def test_a_policy_refuses_a_seed_in_place_of_a_generator():
    with pytest.raises(ValueError, match="generator must be a torch.Generator, a coreaug.RandomSource or None, "
                                         "got int"):
        A.create_policy("randaugment")(IMAGES, 0)


@pytest.mark.parametrize("name, kwargs", [
    ("randaugment", {"num_ops": "int32", "magnitude": "int64", "num_magnitude_bins": "int64"}),
    ("trivialaugment", {"num_magnitude_bins": "int16"}),
    ("cutout", {"size": "int64"}), ("weak", {"padding": "int64"}), ("maxloss", {"candidates": "int64"}),
    ("randaugment", {"magnitude": "tensor"}),
])
def test_whole_number_settings_take_numpy_integers_and_0_dim_integer_tensors(name, kwargs):
    np = pytest.importorskip("numpy")
    defaults = {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 31, "size": 8, "padding": 4, "candidates": 3}
    given = {key: torch.tensor(defaults[key]) if kind == "tensor" else getattr(np, kind)(defaults[key])
             for key, kind in kwargs.items()}
    policy = A.create_policy(name, **given)
    for key in kwargs:
        assert getattr(policy, key) == defaults[key] and type(getattr(policy, key)) is int


@pytest.mark.parametrize("value", [True, 2.0, torch.tensor(2.0), torch.tensor([2])])
def test_whole_number_settings_refuse_bools_floats_and_tensors_of_values(value):
    with pytest.raises(ValueError, match="num_ops must be a whole number"):
        A.RandAugment(num_ops=value)


def test_op_magnitudes_and_fills_take_numpy_scalars():
    np = pytest.importorskip("numpy")
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(A.rotate(images, np.int64(30)), A.rotate(images, 30))
    assert torch.equal(A.rotate(images, np.float32(30)), A.rotate(images, 30.0))
    assert torch.equal(A.posterize(images, np.int64(4)), A.posterize(images, 4))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(A.cutout(images, size=np.int64(4), fill=np.uint8(9), generator=g1),
                       A.cutout(images, size=4, fill=9, generator=g2))
    with pytest.raises(ValueError, match="degrees must be a real number or a tensor, got bool"):
        A.rotate(images, True)


@pytest.mark.parametrize("shape, hint", [
    ((1, 1, 3, 8, 8), r"frames of \(B, T, C, H, W\)\? fold them into the batch with images.flatten\(0, 1\) "
                      r"\(torch's video layout \(B, C, T, H, W\) first with images.transpose\(1, 2\)\)"),
    ((1, 1, 1, 3, 8, 8), r"fold the leading dimensions into the batch with images.flatten\(0, -4\)"),
    ((3, 8, 8), r"one image\? add a batch dimension with images.unsqueeze\(0\) \(a batch of 1-D signals"),
    ((8, 8), r"one grey image\? add channel and batch dimensions with images\[None, None\] \(a batch of rows"),
])
def test_wrong_rank_hint_fits_the_rank(shape, hint):
    with pytest.raises(ValueError, match=r"4-D tensor \(B, C, H, W\), got shape .*; " + hint):
        A.create_policy("randaugment")(torch.zeros(shape, dtype=torch.uint8))


@pytest.mark.parametrize("key, rows, message", [
    (torch.tensor(5), torch.tensor([0]), r"needs one key per image .* got a key of shape \(\)"),
    (torch.arange(4), torch.tensor([7]), r"positions must be in \[0, 4\)"),
    (torch.arange(4), torch.tensor([0.0]), r"1-dim int64 tensor of positions, got shape \(1,\) torch.float32"),
    (torch.arange(4), [0], r"a slice or a 1-dim int64 tensor of positions, got \[0\]"),
])
def test_random_source_select_misuse_is_a_usage_error(key, rows, message):
    from coreaug.errors import UsageError
    with pytest.raises(UsageError, match=message):
        A.RandomSource(key).select(rows)
