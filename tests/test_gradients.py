"""Gradient estimates equal autograd's gradients, for any model ending in nn.Linear."""
import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import coreaug


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3))


def data(n=10):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_logit_gradients_equal_autograd_of_cross_entropy():
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    F.cross_entropy(logits, labels, reduction="sum").backward()
    torch.testing.assert_close(coreaug.logit_gradients(logits, labels), logits.grad)
    as_numpy = coreaug.logit_gradients(logits.detach().numpy(), labels.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, logits.grad.numpy(), atol=1e-6)


def test_last_layer_estimates_equal_per_example_weight_gradients():
    net, (x, y) = model(), data(4)
    net.eval()
    est = coreaug.estimate_gradients(net, x, y, kind="last_layer", batch_size=3)
    for i in range(4):
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(est[i], net[-1].weight.grad.flatten(), rtol=1e-4, atol=1e-5)


def test_estimates_run_in_eval_mode_and_restore_training_mode():
    net, (x, y) = model(), data()
    net.train()
    a = coreaug.estimate_gradients(net, x, y, batch_size=4)
    b = coreaug.estimate_gradients(net, x, y, batch_size=7)  # dropout/batchnorm off: batching is irrelevant
    assert net.training
    torch.testing.assert_close(a, b)
    net.eval()
    torch.testing.assert_close(a, coreaug.logit_gradients(net(x), y))


def test_projection_is_seeded_and_keeps_distances_roughly():
    g = torch.Generator().manual_seed(0)
    logits, h, y = torch.randn(50, 5, generator=g), torch.randn(50, 40, generator=g), torch.randint(0, 5, (50,), generator=g)
    full = coreaug.last_layer_gradients(logits, h, y)
    a = coreaug.last_layer_gradients(logits, h, y, dim=128, seed=3)
    b = coreaug.last_layer_gradients(logits, h, y, dim=128, seed=3, chunk=7)
    assert a.shape == (50, 5 * 25)  # the 5 classes kept whole, the 40 embedding dims cut to 128 // 5
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    ratio = torch.pdist(a) / torch.pdist(full)
    assert 0.6 < ratio.median() < 1.4
    assert not torch.allclose(a, coreaug.last_layer_gradients(logits, h, y, dim=128, seed=4))


def test_projection_of_many_classes_cuts_both_sides_and_keeps_distances_roughly():
    g = torch.Generator().manual_seed(1)
    logits, h = torch.randn(60, 300, generator=g) * 3, torch.randn(60, 200, generator=g)
    y = torch.randint(0, 300, (60,), generator=g)
    full = coreaug.last_layer_gradients(logits, h, y)  # 60,000 numbers per example
    small = coreaug.last_layer_gradients(logits, h, y, dim=1024)
    assert small.shape == (60, 32 * 32)
    ratio = torch.pdist(small) / torch.pdist(full)
    assert 0.6 < ratio.median() < 1.4


def test_estimates_stream_the_projection_batch_by_batch():
    net, (x, y) = model(), data(10)
    net.eval()
    batched = coreaug.estimate_gradients(net, x, y, kind="last_layer", batch_size=3, dim=16, seed=2)
    with torch.no_grad():
        captured = []
        hook = net[-1].register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        logits = net(x)
        hook.remove()
    whole = coreaug.last_layer_gradients(logits, captured[0], y, dim=16, seed=2)
    assert batched.shape[1] <= 16
    torch.testing.assert_close(batched, whole, rtol=1e-4, atol=1e-5)


def test_logit_estimates_of_many_classes_are_projected_and_can_be_half_precision():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 40))
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 40, (12,))
    full = coreaug.estimate_gradients(net, x, y)
    cut = coreaug.estimate_gradients(net, x, y, dim=8, dtype=torch.float16)
    assert full.shape == (12, 40) and full.dtype == torch.float32
    assert cut.shape == (12, 8) and cut.dtype == torch.float16
    assert coreaug.estimate_gradients(net, x, y, dim=64).shape == (12, 40)  # nothing to cut


def test_model_without_linear_layer_is_rejected():
    with pytest.raises(ValueError, match="nn.Linear"):
        coreaug.estimate_gradients(nn.Conv2d(1, 3, 8), *data(), kind="last_layer")


def test_clean_losses_rank_hard_examples_that_their_gradients_cannot():
    import coreaug

    class Fixed(torch.nn.Module):  # the label's logit 30, 40, 50 below the other: p_y underflows float32
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return torch.stack([torch.zeros(len(x)), self.scale * x.flatten(1)[:, 0]], 1)

    images = torch.tensor([30.0, 40.0, 50.0]).view(3, 1, 1, 1)
    labels = torch.zeros(3, dtype=torch.long)
    method = coreaug.CoresetAugmentation(labels.numpy(), strategy="maxloss", fraction=0.5)
    losses = method.estimate(Fixed(), images)
    assert losses.tolist() == pytest.approx([30.0, 40.0, 50.0], rel=1e-4)


def test_the_projection_runs_in_float32_under_an_autocast():
    from coreaug.selection import estimate_gradients
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 40)
    images = torch.randn(32, 6)
    labels = torch.arange(32) % 40
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = estimate_gradients(model, images, labels, dim=8)
    # the model's own pass runs in bfloat16; its float32 gradients must be projected in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images).float()
    from coreaug.selection.gradients import GradientSketch, _gradients
    exact = GradientSketch(40, dim=8)(_gradients(logits, labels))
    torch.testing.assert_close(autocast, exact, rtol=1e-5, atol=1e-6)
