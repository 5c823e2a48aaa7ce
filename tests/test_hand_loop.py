"""experiments/hand_loop.py: the hand-written reference loop trains, times and counts its steps."""

import pytest
import torch

from test_compile_support import needs_compile


@pytest.fixture(scope="module")
def hand_loop(experiment):
    return experiment("hand_loop")


def _data(n=64, size=8, classes=3):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, labels


def _crops(image, pad):
    """Every pad-crop of `image` (C, H, W), unmirrored and mirrored: {(top, left, flipped): crop}."""
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    crops = {}
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[:, top:top + height, left:left + width]
            crops[(top, left, False)], crops[(top, left, True)] = crop, crop.flip(-1)
    return crops


def test_pad_crop_flip_gives_each_example_one_of_its_crops(hand_loop):
    torch.manual_seed(0)
    images = torch.randint(1, 256, (48, 3, 8, 8), dtype=torch.uint8)
    out = hand_loop.pad_crop_flip(images, pad=4, flip=True)
    assert out.shape == images.shape and out.dtype == torch.uint8
    chosen = []
    for image, result in zip(images, out):
        matches = [key for key, crop in _crops(image, 4).items() if torch.equal(crop, result)]
        assert matches, "the output is no pad-crop of its own input"
        chosen.append(matches[0])
    assert 5 < sum(flipped for _, _, flipped in chosen) < 43  # about half mirrored
    assert len({(top, left) for top, left, _ in chosen}) > 10  # offsets drawn per example


def test_pad_crop_flip_without_flip_never_mirrors(hand_loop):
    torch.manual_seed(1)
    images = torch.randint(1, 256, (16, 1, 8, 8), dtype=torch.uint8)
    out = hand_loop.pad_crop_flip(images, pad=2, flip=False)
    for image, result in zip(images, out):
        assert any(torch.equal(crop, result) for (_, _, flipped), crop in _crops(image, 2).items() if not flipped)


def test_run_hand_loop_trains_times_and_counts(hand_loop):
    images, labels = _data()
    result = hand_loop.run_hand_loop(images, labels, model="cnn", epochs=2, batch_size=16, device="cpu",
                                     lr=0.05, count_steps=2)
    assert result["steps_per_epoch"] == 4 and len(result["epoch_seconds"]) == 2
    assert result["examples_per_s"] > 0 and result["ms_per_step"] > 0
    # A step dispatches the model's forward and backward and an SGD update: dozens of ops at least.
    assert result["ops_per_step"] > 30 and result["launches_per_step"] > 10
    assert result["compile_seconds"] is None and result["optimizer"] == "foreach" and result["precision"] == "fp32"
    assert torch.isfinite(torch.tensor(result["train_loss"]))


def test_run_hand_loop_drops_the_last_partial_batch(hand_loop):
    images, labels = _data(n=40)
    result = hand_loop.run_hand_loop(images, labels, epochs=1, batch_size=16, count_steps=0)
    assert result["steps_per_epoch"] == 2 and result["ops_per_step"] is None


def test_the_schedule_is_coreaugs_cosine(hand_loop):
    rates = hand_loop.cosine_rates(0.1, 10, 2)
    assert len(rates) == 20 and rates[0] == pytest.approx(0.1) and rates[10] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(rates, rates[1:]))


@pytest.mark.parametrize("kwargs, named", [
    (dict(batch_size=0), "batch_size"), (dict(epochs=0), "epochs"), (dict(precision="fp16"), "precision"),
    (dict(optimizer="adam"), "optimizer"),
])
def test_bad_settings_name_the_argument(hand_loop, kwargs, named):
    images, labels = _data(n=16)
    with pytest.raises(ValueError, match=named):
        hand_loop.run_hand_loop(images, labels, **{"epochs": 1, "batch_size": 8, **kwargs})


def test_float_images_are_refused(hand_loop):
    with pytest.raises(ValueError, match="uint8"):
        hand_loop.run_hand_loop(torch.zeros(8, 3, 8, 8), torch.zeros(8, dtype=torch.long), epochs=1, batch_size=4)


def test_runtime_calls_sum_the_host_time_of_cuda_api_calls_only(hand_loop):
    from types import SimpleNamespace

    events = [SimpleNamespace(name=name, cpu_time_total=micros) for name, micros in (
        ("cudaLaunchKernel", 5.0), ("aten::add", 40.0), ("cudaLaunchKernel", 7.0), ("cuMemAlloc_v2", 30.0),
        ("cudnn::convolution", 9.0), ("custom_op", 1.0), ("cudaGraphLaunch", 3.0))]
    calls = hand_loop.runtime_calls(events)
    assert calls == {"cudaLaunchKernel": (12.0, 2), "cuMemAlloc_v2": (30.0, 1), "cudaGraphLaunch": (3.0, 1)}


def test_a_cpu_run_reports_no_runtime_calls(hand_loop):
    images, labels = _data()
    r = hand_loop.run_hand_loop(images, labels, model="cnn", epochs=1, batch_size=16, count_steps=2)
    assert r["host_calls"] == {} and r["launches_per_step"] > 10


@needs_compile
def test_the_compiled_hand_loop_marks_every_step_and_trains_as_eager(hand_loop, monkeypatch):
    """Compiled (forward + loss, and the update with a tensor rate): each step marked as one for
    CUDA graph trees before its units run (on a GPU the update reads the backward's gradients),
    and about the eager loop's loss (inductor draws its own random numbers for the crops)."""
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    images, labels = _data()
    settings = dict(model="cnn", epochs=2, batch_size=16, lr=0.05, count_steps=0, flip=False)
    torch.manual_seed(0)
    compiled = hand_loop.run_hand_loop(images, labels, compile=True, **settings)
    assert compiled["optimizer"] == "compiled" and len(marks) == 2 * compiled["steps_per_epoch"]
    eager = hand_loop.run_hand_loop(images, labels, optimizer="foreach", **settings)
    assert marks == [1] * 8  # the eager loop marks nothing
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=0.05)
