"""RandomSource: counter-based draws that a policy takes in place of a torch.Generator."""
import pytest
import torch

from coreaug.augment import create_policy
from coreaug.augment.sampling import RandomSource, integers, permutation, signs, source_key, uniform


def source(*numbers):
    return RandomSource(torch.tensor(source_key(*numbers)))


def test_the_same_key_gives_the_same_draws_and_the_next_draw_differs():
    a, b = source(0, 1, 2), source(0, 1, 2)
    first = uniform(100, a, torch.device("cpu"))
    assert torch.equal(first, uniform(100, b, torch.device("cpu")))
    assert not torch.equal(first, uniform(100, a, torch.device("cpu")))  # draw 1, not draw 0 again
    assert torch.equal(first, uniform(100, a.restart(), torch.device("cpu")))


def test_another_key_gives_other_draws():
    assert not torch.equal(uniform(50, source(0, 1, 2), "cpu"), uniform(50, source(0, 1, 3), "cpu"))


def test_a_draw_at_a_position_does_not_depend_on_the_draw_size():
    assert torch.equal(uniform(10, source(5), "cpu"), uniform(40, source(5), "cpu")[:10])


def test_uniform_integers_and_signs_have_the_right_ranges_and_spread():
    s, n = source(7), 20_000
    u = uniform(n, s, "cpu")
    assert u.dtype == torch.float32 and 0 <= u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    k = integers(13, n, s, "cpu", low=3)
    assert k.dtype == torch.int64 and k.min() == 3 and k.max() == 12
    counts = torch.bincount(k - 3, minlength=10).float()
    assert (counts / n - 0.1).abs().max() < 0.015
    sign = signs(n, s, "cpu")
    assert set(sign.unique().tolist()) == {-1.0, 1.0} and abs(sign.mean().item()) < 0.03


def test_permutation_is_a_permutation_and_each_value_lands_anywhere():
    perms = torch.stack([permutation(8, source(i), "cpu") for i in range(4000)])
    assert torch.equal(perms.sort(1).values, torch.arange(8).expand(4000, 8))
    where_zero = (perms == 0).float().argmax(1)
    share = torch.bincount(where_zero, minlength=8).float() / 4000
    assert (share - 1 / 8).abs().max() < 0.03


def test_generators_still_work_as_before():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(uniform(5, g1, "cpu"), torch.rand(5, generator=g2))
    assert torch.equal(permutation(6, g1, "cpu"), torch.randperm(6, generator=g2))


@pytest.mark.parametrize("name", ["weak", "randaugment", "trivialaugment", "autoaugment", "cutout"])
def test_policies_take_a_source_reproducibly(name):
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    policy = create_policy(name)
    out = policy(images, source(1, 2))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, policy(images, source(1, 2)))
    assert not torch.equal(out, policy(images, source(1, 3)))


def test_compiled_draws_equal_eager_draws_and_a_new_key_does_not_recompile():
    from torch._dynamo.utils import counters

    def draws(key):
        s = RandomSource(key)
        return uniform(9, s, key.device), integers(5, 9, s, key.device), permutation(9, s, key.device)

    compiled = torch.compile(draws, fullgraph=True)
    before = counters["stats"]["unique_graphs"]
    for step in range(3):
        key = torch.tensor(source_key(0, step))
        for got, want in zip(compiled(key), draws(key)):
            assert torch.equal(got, want)
    assert counters["stats"]["unique_graphs"] - before == 1
