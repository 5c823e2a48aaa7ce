"""Random draws for batched augmentation that work with any generator/device pairing.

Numbers are drawn on the generator's device (CPU when there is none for a CPU batch) and moved
to the batch's device, so a CPU generator can drive a CUDA batch and results are reproducible.

Every function also takes a `RandomSource` in place of the generator: counter-based numbers
(a hash of a key tensor, the draw's number and the position within the draw) made by integer
tensor ops on the batch's device, which torch.compile traces into its graph (a torch.Generator
breaks the graph at every draw) and which eager and compiled code compute alike.
"""
from __future__ import annotations

from typing import Optional, Union

import torch


MASK32 = 0xFFFFFFFF
# Odd multipliers below 2 ** 31: a 32-bit value times one stays below 2 ** 63, so int64 tensor
# arithmetic never overflows (on any device, eager or compiled).
_MULTIPLIERS = (0x7FEB352D, 0x5BD1E995)
_GOLDEN = 0x61C88647  # spreads consecutive positions (2 ** 32 / phi, below 2 ** 31)
_POSITION_BITS = 21  # permutation keys: hash << 21 | position, unique below 2 ** 21 entries


def mix32(x):
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 values in [0, 2 ** 32): a
    tensor (elementwise, the same ops eager and compiled) or a Python int."""
    for multiplier in _MULTIPLIERS:
        x = x ^ (x >> 16)
        x = (x * multiplier) & MASK32
    return x ^ (x >> 15)


def source_key(*numbers: int) -> int:
    """The 32-bit key of a `RandomSource` for a tuple of whole numbers (seed, epoch, step, ...):
    each number is folded into the hash in turn."""
    key = 0x2545F491
    for number in numbers:
        key = mix32((key ^ mix32(int(number) & MASK32)) & MASK32)
    return key


class RandomSource:
    """Random numbers for augmentation that torch.compile can trace: pass one to a policy in
    place of a `torch.Generator` (`policy(images, RandomSource(key))`), e.g. inside a training
    step you compile yourself (a generator breaks the graph at every draw).

    ``key`` is an int64 tensor holding a 32-bit value (0-dim, on the batch's device; one per
    step from `RandomSource.keys`); it may change from call to call without a recompile.
    Draw number d (the d-th call of `uniform`, `integers`, `signs` or `permutation` on this
    source, a host counter) gives position j the number mix32(mix32(key ^ salt(d)) + j * golden):
    a function of (key, d, j) only, computed by a few elementwise integer ops on the device, so
    eager and compiled code draw the same numbers and no draw waits on the host. A new source
    (or `restart`) starts again at draw 0.
    """

    def __init__(self, key: torch.Tensor):
        self.key = key
        self.draws = 0

    @staticmethod
    def keys(*numbers: int, steps: int, device=None) -> torch.Tensor:
        """int64 (steps,) on ``device``: key s is `source_key(*numbers, s)`, e.g. with numbers
        (seed, epoch) one key per step of an epoch, reproducible by seed. Built on the host and
        moved at once: make them once an epoch, and index them per step (``keys[step]``)."""
        keys = [source_key(*numbers, step) for step in range(steps)]  # a loop over steps, not examples
        return torch.tensor(keys, dtype=torch.int64).to(device or "cpu", non_blocking=True)

    def restart(self) -> "RandomSource":
        """Start again at draw 0 (the same numbers again); returns self."""
        self.draws = 0
        return self

    def hashes(self, n: int, device: torch.device) -> torch.Tensor:
        """The next draw: n int64 hashes in [0, 2 ** 32) on ``device``."""
        salt = mix32((self.draws * _GOLDEN + 1) & MASK32)  # a host integer: a constant in a graph
        self.draws += 1
        start = mix32(self.key.to(device) ^ salt)
        positions = torch.arange(n, device=device, dtype=torch.int64)
        return mix32((start + positions * _GOLDEN) & MASK32)


Randomness = Union[torch.Generator, RandomSource, None]


def _draw_device(generator: Optional[torch.Generator], device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _uniform_from(source: RandomSource, n: int, device: torch.device) -> torch.Tensor:
    # The top 24 bits: exactly representable in float32, so the value is < 1.
    return (source.hashes(n, device) >> 8).to(torch.float32) * (1.0 / (1 << 24))


def uniform(n: int, generator: Randomness, device: torch.device) -> torch.Tensor:
    """Return n float32 draws from U[0, 1) on ``device`` (from a torch.Generator, None for the
    global one, or a `RandomSource`)."""
    if isinstance(generator, RandomSource):
        return _uniform_from(generator, n, device)
    draws = torch.rand(n, generator=generator, device=_draw_device(generator, device))
    return draws.to(device)


def integers(
    high: int, n: int, generator: Randomness, device: torch.device, low: int = 0
) -> torch.Tensor:
    """Return n int64 draws uniform on [low, high) on ``device``."""
    if isinstance(generator, RandomSource):  # floor(u * span): a bias below span / 2 ** 24
        span = high - low
        return (_uniform_from(generator, n, device) * span).long().clamp_(max=span - 1) + low
    draws = torch.randint(
        low, high, (n,), generator=generator, device=_draw_device(generator, device)
    )
    return draws.to(device)


def signs(n: int, generator: Randomness, device: torch.device) -> torch.Tensor:
    """Return n float32 draws of -1 or +1 with equal probability on ``device``."""
    return integers(2, n, generator, device).to(torch.float32).mul_(2.0).sub_(1.0)


def permutation(n: int, generator: Randomness, device: torch.device) -> torch.Tensor:
    """Return a uniformly random permutation of 0..n-1 (int64) on ``device``.

    From a `RandomSource`: the argsort of n hashes, each made unique by its position in the
    low bits (no ties, so any sort gives the same order; n below 2 ** 21)."""
    if isinstance(generator, RandomSource):
        keys = (generator.hashes(n, device) << _POSITION_BITS) | torch.arange(n, device=device)
        return torch.argsort(keys)
    draws = torch.randperm(n, generator=generator, device=_draw_device(generator, device))
    return draws.to(device)
