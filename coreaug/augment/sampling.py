"""Random draws for batched augmentation that work with any generator/device pairing.

Numbers are drawn on the generator's device (CPU when there is none for a CPU batch) and moved
to the batch's device, so a CPU generator can drive a CUDA batch and results are reproducible.

Every function also takes a `RandomSource` in place of the generator: counter-based numbers
(a hash of a key and a counter: with a key per image, each image's own stream) made by integer
tensor ops on the batch's device, which torch.compile traces into its graph (a torch.Generator
breaks the graph at every draw) and which eager and compiled code compute alike.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from coreaug.errors import UsageError

from .validation import check_whole

MASK32 = 0xFFFFFFFF
# Odd multipliers below 2 ** 31: a 32-bit value times one stays below 2 ** 63, so int64 tensor
# arithmetic never overflows (on any device, eager or compiled).
_MULTIPLIERS = (0x7FEB352D, 0x5BD1E995)
_GOLDEN = 0x61C88647  # spreads consecutive positions (2 ** 32 / phi, below 2 ** 31)
_POSITION_BITS = 21  # permutation keys: hash << 21 | position, unique below 2 ** 21 entries
_HIGH_BITS = 0x3C6EF372  # salts the folds of a number's bits past the 32nd (source_key)


def mix32(x):
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 values in [0, 2 ** 32): a
    tensor (elementwise, the same ops eager and compiled) or a Python int."""
    for multiplier in _MULTIPLIERS:
        x = x ^ (x >> 16)
        x = (x * multiplier) & MASK32
    return x ^ (x >> 15)


def source_key(*numbers: int) -> int:
    """The 32-bit key of a `RandomSource` for a tuple of whole numbers (seed, epoch, step, ...):
    each number is folded into the hash in turn, 32 bits at a time: a number below 2 ** 32 in one
    fold (the keys coreaug always made), a larger one (a seed up to 2 ** 64) in one more fold per
    further 32 bits, so that seeds 2 ** 32 apart draw differently."""
    key = 0x2545F491
    for number in numbers:
        number = int(number)
        key = mix32((key ^ mix32(number & MASK32)) & MASK32)
        while number > MASK32:  # salted, so that (2 ** 32 + a, b) is not (a, 1, b)
            number >>= 32
            key = mix32((key ^ mix32((number & MASK32) ^ _HIGH_BITS)) & MASK32)
    return key


class RandomSource:
    """Random numbers for augmentation that torch.compile can trace: pass one to a policy in
    place of a `torch.Generator` (`policy(images, RandomSource(key))`), e.g. inside a training
    step you compile yourself (a generator breaks the graph at every draw).

    ``key`` is an int64 tensor of 32-bit values on the batch's device (another integer dtype is
    converted to int64), made of a few elementwise integer ops there (eager and compiled code draw
    the same, and no draw waits on the host); it may change from call to call without a recompile.
    Only a key's low 32 bits count (keys 2 ** 32 apart draw the same; a key is not checked, which
    would wait on the device): fold a seed into keys with `image_keys` (indices, seed), not
    ``(seed << 32) | index``; raw indices as keys (``torch.arange(n)``) draw poorly mixed first numbers
    (key 0's first is always 0.0): make them with `image_keys`. Either:

    - one key per image, (n,) (e.g. `RandomSource.image_keys`, or `DevicePlan.image_keys` in a
      training loop): image r has its own stream of numbers, number c being
      mix32((key[r] + c * golden) mod 2 ** 32). A draw of k values per image (a call of `uniform`,
      `integers`, `signs` or `permutation` for k * n values; policies lay them out value-major,
      viewed (k, n)) takes each image's next k numbers. So an image is augmented the same alone
      or in any batch, split or joined, on any device; `select` hands some images' streams to
      the next call. A policy called with such a source needs one key per image of its batch
      (it raises a UsageError otherwise: another count would hand images other images' numbers).
    - one 0-dim key for the call (e.g. one per step from `RandomSource.keys`): draw number d
      (a host counter) gives position j the number mix32(mix32(key ^ salt(d)) + j * golden), so
      an image's numbers depend on its position in the batch.

    With a key per image, a source hashes its images' numbers `BLOCK` at a time (about 14 ops
    for the block); ``numbers`` passes the first numbers made ahead (`RandomSource.ahead`, e.g.
    for many steps' images at once), so the draws only cut them. A new source (or `restart`)
    starts again at the first number.
    """

    BLOCK = 32  # per-image numbers hashed at once: a step's draws (max-loss's candidates too) fit in one

    def __init__(self, key: torch.Tensor, numbers: Optional[torch.Tensor] = None):
        if (not isinstance(key, torch.Tensor) or key.dim() > 1 or key.dtype == torch.bool or key.dtype.is_floating_point
                or key.dtype.is_complex):
            shown = f"shape {tuple(key.shape)} {key.dtype}" if isinstance(key, torch.Tensor) else type(key).__name__
            raise UsageError(f"RandomSource key must be an int64 tensor (or another integer dtype), 0-dim (one key for "
                             f"the call) or (n,) (one per image), got {shown}")
        if key.dtype != torch.int64:  # int32 keys and the like: the hashes compute in int64 (no sync)
            key = key.long()
        if numbers is not None and (not isinstance(numbers, torch.Tensor) or key.dim() != 1 or numbers.dim() != 2
                                    or numbers.shape[0] != key.shape[0] or numbers.dtype != torch.int64):
            shown = (f"shape {tuple(numbers.shape)} {numbers.dtype}" if isinstance(numbers, torch.Tensor)
                     else type(numbers).__name__)
            raise UsageError(f"RandomSource numbers must be RandomSource.ahead(key): int64 (n, count) for a key "
                             f"of shape (n,), got {shown} for a key of shape {tuple(key.shape)}")
        self.key = key
        # Images of a policy's batch per key: max-loss draws an image's K candidates from its stream.
        self.copies = 1
        self.draws = 0  # a 0-dim key's draw counter
        self.drawn = 0  # with a key per image: the numbers each image has drawn
        # With a key per image: (number of the block's first column, hashes (images, count)).
        self._block = None if numbers is None else (0, numbers)

    @staticmethod
    def ahead(keys: torch.Tensor, count: int = BLOCK, first: int = 0) -> torch.Tensor:
        """int64 (n, count) on ``keys``' device: numbers ``first`` to ``first + count - 1`` of
        each image's stream, for ``RandomSource(keys, numbers)`` (numbers 0 on; ``count`` 32, BLOCK)."""
        numbers = torch.arange(first * _GOLDEN, (first + count) * _GOLDEN, _GOLDEN, device=keys.device)
        return mix32((keys.unsqueeze(1) + numbers.unsqueeze(0)) & MASK32)

    @staticmethod
    def keys(*numbers: int, steps: int, device=None) -> torch.Tensor:
        """int64 (steps,) on ``device``: key s is `source_key(*numbers, s)`, e.g. with numbers
        (seed, epoch) one key per step of an epoch, reproducible by seed. Built on the host and
        moved at once: make them once an epoch, and index them per step (``keys[step]``)."""
        numbers = _whole_numbers(numbers, "RandomSource.keys")
        steps = check_whole("steps", steps, 0)
        keys = [source_key(*numbers, step) for step in range(steps)]  # a loop over steps, not examples
        return torch.tensor(keys, dtype=torch.int64).to(device or "cpu", non_blocking=True)

    def restart(self) -> "RandomSource":
        """Start again at the first number (the same numbers again); returns self."""
        self.draws = self.drawn = 0
        return self

    @staticmethod
    def image_keys(indices: torch.Tensor, *numbers: int, slots: Optional[torch.Tensor] = None) -> torch.Tensor:
        """int64 keys, one per image, for a source keyed per image: a hash of (numbers, the
        image's index, its slot), computed on ``indices``' device without waiting on it.
        ``numbers`` are host integers such as (seed, epoch); ``indices`` int64 (n,) identify
        the images (positions in the training set); ``slots`` int64 (n,) tell apart several
        appearances of one image (0 for the image itself, j for its j-th augmented copy), or
        None for all 0."""
        _check_indices("indices", indices)
        if slots is not None:
            _check_indices("slots", slots)
        base = source_key(*_whole_numbers(numbers, "RandomSource.image_keys"))
        image = (indices.long() & MASK32) * _GOLDEN
        if slots is not None:
            image = image + slots.long()
        return mix32(mix32(image & MASK32) ^ base)

    def select(self, rows) -> "RandomSource":
        """A source for some of this one's images (``rows``: a slice or an int64 index tensor of
        positions), each continuing its own stream: their next draws are what they would have
        drawn in a call on all the images. Needs a key per image."""
        if self.key.dim() != 1:
            raise UsageError(f"RandomSource.select needs one key per image (a 1-dim key, e.g. from "
                             f"RandomSource.image_keys), got a key of shape {tuple(self.key.shape)}")
        if not isinstance(rows, slice) and not (isinstance(rows, torch.Tensor) and rows.dim() == 1
                                                and rows.dtype in (torch.int64, torch.int32)):
            shown = f"shape {tuple(rows.shape)} {rows.dtype}" if isinstance(rows, torch.Tensor) else repr(rows)
            raise UsageError(f"RandomSource.select takes a slice or a 1-dim int64 tensor of positions, got {shown}")
        pick = (lambda t: t[rows]) if isinstance(rows, slice) else (lambda t: t.index_select(0, rows))
        try:
            key = pick(self.key)
        except IndexError:  # on the CPU; a GPU index is not read back to check it (that would wait on the device)
            raise UsageError(f"RandomSource.select: positions must be in [0, {self.key.shape[0]}) "
                             "(one per image of the source)") from None
        source = RandomSource(key)
        source.drawn = self.drawn
        if self._block is not None:
            source._block = (self._block[0], pick(self._block[1]))
        return source

    def check_batch(self, images: int) -> None:
        """Raise UsageError unless a policy call on ``images`` images can draw from this source:
        any number with a 0-dim key, else one key per image (``copies`` per key). Reads shapes
        only, so it never waits on the device."""
        if self.key.dim() == 1 and images != self.key.shape[0] * self.copies:
            keys = self.key.shape[0]
            each = f" x {self.copies} copies" if self.copies != 1 else ""
            raise UsageError(f"the RandomSource has {keys} keys{each} (one per image) but the batch has {images} "
                             "images; give one key per image (e.g. RandomSource(keys[take]) for the rows of the "
                             "batch) or one 0-dim key for the whole call")

    def hashes(self, n: int, device: torch.device) -> torch.Tensor:
        """The next draw: n int64 hashes in [0, 2 ** 32) on ``device``."""
        if self.key.dim() == 0:
            salt = mix32((self.draws * _GOLDEN + 1) & MASK32)  # a host integer: a constant in a graph
            self.draws += 1
            start = mix32((self.key.to(device) & MASK32) ^ salt)  # low 32 bits, as a key per image
            positions = torch.arange(n, device=device, dtype=torch.int64)
            return mix32((start + positions * _GOLDEN) & MASK32)
        images = self.key.shape[0]  # position j: image j mod images, its number j div images
        if images == 0:
            return torch.zeros(n, dtype=torch.int64, device=device)
        each = -(-n // images)
        first, block = self._block if self._block is not None else (0, None)
        if block is None or not _same_device(block.device, torch.device(device)) or first > self.drawn \
                or first + block.shape[1] < self.drawn + each:
            first = self.drawn
            block = self.ahead(self.key.to(device), max(self.BLOCK, each), first)
            self._block = (first, block)
        start = self.drawn - first
        self.drawn += each
        drawn = block[:, start:start + each].t().reshape(-1)  # value-major: image r's k-th at k * images + r
        return drawn if drawn.shape[0] == n else drawn[:n]


def _whole_numbers(numbers, where: str) -> list:
    """``numbers`` (seed, epoch, ...) as Python ints, else a UsageError (a float would be truncated)."""
    return [check_whole(f"{where}'s numbers (seed, epoch, ...)", number, -(2 ** 63)) for number in numbers]


def _check_indices(name: str, tensor) -> None:
    """UsageError unless ``tensor`` (image_keys' indices or slots) is a 1-dim integer tensor."""
    if not (isinstance(tensor, torch.Tensor) and tensor.dim() == 1 and tensor.dtype in _INTEGER_DTYPES):
        shown = f"shape {tuple(tensor.shape)} {tensor.dtype}" if isinstance(tensor, torch.Tensor) else repr(tensor)
        raise UsageError(f"RandomSource.image_keys: {name} must be a 1-dim integer tensor, got {shown}")


_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _same_device(held: torch.device, wanted: torch.device) -> bool:
    """Whether a tensor on ``held`` is on ``wanted`` ("cuda" without an index: any CUDA device)."""
    return held.type == wanted.type and (wanted.index is None or held.index == wanted.index)


Randomness = Union[torch.Generator, RandomSource, None]


def check_randomness(generator: Randomness, images: int) -> None:
    """Raise UsageError unless ``generator`` is a torch.Generator, None (the global generator) or
    a `RandomSource` that fits a batch of ``images`` images (`RandomSource.check_batch`)."""
    if isinstance(generator, RandomSource):
        generator.check_batch(images)
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise UsageError(f"generator must be a torch.Generator, a coreaug.RandomSource or None, "
                         f"got {type(generator).__name__}")


def _draw_device(generator: Optional[torch.Generator], device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def per_image_hashes(generator: Randomness, count: int, n: int, device: torch.device) -> Optional[torch.Tensor]:
    """int64 hashes (count, n): the n images' next ``count`` numbers (image r's j-th at [j, r]) in
    one draw, where ``generator`` is a `RandomSource` with a key per image: the numbers that
    ``count`` successive draws of n give, in fewer ops (convert them with `uniform_from`,
    `integers_from`, `positive_from`). None for a torch.Generator or a 0-dim key, whose successive
    draws are not one draw cut up: draw from those one by one."""
    if isinstance(generator, RandomSource) and generator.key.dim() == 1:
        return generator.hashes(count * n, device).view(count, n)
    return None


def uniform_from(hashes: torch.Tensor) -> torch.Tensor:
    """float32 in [0, 1) from hashes, as `uniform` draws from a `RandomSource`."""
    # The top 24 bits: exactly representable in float32, so the value is < 1.
    return (hashes >> 8).to(torch.float32) * (1.0 / (1 << 24))


def integers_from(hashes: torch.Tensor, high: int) -> torch.Tensor:
    """int64 in [0, high) from hashes, as `integers` draws from a `RandomSource`."""
    return (hashes * high) >> 32  # below 2 ** 63: no overflow (span < 2 ** 31)


def positive_from(hashes: torch.Tensor) -> torch.Tensor:
    """bool: True where `signs` draws +1 from the same hashes (the top bit)."""
    return hashes >= 1 << 31


def _check_count(n, name: str) -> None:
    """UsageError where ``n`` (values to draw) is a shape: torch's own draws take one, which a
    policy of one's own then passed its test with a torch.Generator and failed in training, with the
    trainer's `RandomSource`, on a bare TypeError (explore23-newcomer F2)."""
    if isinstance(n, (tuple, list, torch.Size)):
        raise UsageError(f"{name} draws n values, a number, got the shape {tuple(n)}: for k values per image of a "
                         f"batch of B, {name}(k * B, generator, device).view(k, B) gives image r column r (the "
                         f"same in any batch); for another shape, {name}(math.prod(shape), ...).view(shape)")


def uniform(n: int, generator: Randomness, device: torch.device) -> torch.Tensor:
    """Return n float32 draws from U[0, 1) on ``device`` (from a torch.Generator, None for the
    global one, or a `RandomSource`).

    For a policy of one's own: with the trainer's `RandomSource` (a key per image of a batch of
    B), draw n = k * B values for k per image; value j of image r is at j * B + r, so
    ``uniform(k * B, generator, images.device).view(k, B)`` gives image r column r, the same
    whether it is augmented alone or in any batch. `integers` and `signs` alike."""
    _check_count(n, "uniform")
    if isinstance(generator, RandomSource):
        return uniform_from(generator.hashes(n, device))
    draws = torch.rand(n, generator=generator, device=_draw_device(generator, device))
    return draws.to(device)


def integers(
    high: int, n: int, generator: Randomness, device: torch.device, low: int = 0
) -> torch.Tensor:
    """Return n int64 draws uniform on [low, high) on ``device`` (high - low from 1, and at most 2 ** 31 from
    a RandomSource, whose 32-bit hashes span no more)."""
    _check_count(n, "integers")
    if high - low < 1:  # (torch's own error names no argument)
        raise UsageError(f"integers draws from [low, high) with high above low, got low {low} and high {high}")
    if isinstance(generator, RandomSource) and high - low > 1 << 31:
        raise UsageError(f"integers draws from a RandomSource span at most 2 ** 31 values (its hashes have 32 bits), "
                         f"got low {low} and high {high}")
    if isinstance(generator, RandomSource):  # floor(hash * span / 2 ** 32): a bias below span / 2 ** 32
        drawn = integers_from(generator.hashes(n, device), high - low)
        return drawn + low if low else drawn
    draws = torch.randint(
        low, high, (n,), generator=generator, device=_draw_device(generator, device)
    )
    return draws.to(device)


def signs(n: int, generator: Randomness, device: torch.device) -> torch.Tensor:
    """Return n float32 draws of -1 or +1 with equal probability on ``device``."""
    _check_count(n, "signs")
    if isinstance(generator, RandomSource):  # the hash's top bit
        return positive_from(generator.hashes(n, device)).to(torch.float32).mul_(2.0).sub_(1.0)
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
