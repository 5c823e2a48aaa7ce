"""What one epoch trains: which examples, with which weights, and which get strong augmentation."""
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from coreaug.augment.sampling import RandomSource
from coreaug.deprecation import keyword_only
from coreaug.devices import api_device
from coreaug.errors import UsageError
from coreaug.selection.checks import check_int



@dataclass
class EpochPlan:
    """The examples of one epoch in training order.

    indices: int64 (m,) positions in the training set (an example may appear several times).
    weights: float32 (m,) per-example loss weights.
    augmented: bool (m,) True for the strongly augmented copies.
    partners: int64 (m,) or None: for rules that mix each copy with another selected example
        of its class (crust), that example's index (meaningful at the copies only).
    slots: int64 (m,) or None: which appearance of its example an entry is (0 the example
        itself, j its j-th copy; entries repeated to fill a compiled step's batches add
        `REPEAT_SLOTS` per repeat). An entry's random draws are keyed by (seed, epoch, index,
        slot) (`RandomSource.image_keys`), so an example is augmented the same whatever the
        batch, process or layout it lands in. None: all 0.
    """

    indices: torch.Tensor
    weights: torch.Tensor
    augmented: torch.Tensor
    partners: torch.Tensor = None
    slots: torch.Tensor = None

    def __len__(self):
        return int(self.indices.shape[0])

    @property
    def n_augmented(self):
        return int(self.augmented.sum())

    def on_device(self, batch_size, device):
        """This plan cut into batches of `batch_size` and moved to `device` once (a `DevicePlan`)."""
        check_int(batch_size, "batch_size")
        return DevicePlan.build(self, batch_size, api_device(device))

    def fixed_steps(self, batch_size, *, generator, world_size=1):
        """This plan laid out for a compiled step (`fixed_step_plan`): every batch of
        `batch_size` holds the same number of strong copies, in its last rows. With
        `world_size`, that number is a multiple of it, so that every process's `shard` of the
        result is laid out the same way at batch_size / world_size (a batch_size that
        world_size divides). `generator` is a CPU torch.Generator, or None for torch's global RNG
        (which lays the batches out by whatever the model drew from it: not again on a resume); with
        world_size > 1 a generator, seeded alike on every rank: the global RNGs of ranks seeded apart
        lay out other batches, whose shards overlap (examples trained twice, others never)."""
        check_int(batch_size, "batch_size")
        check_int(world_size, "world_size")
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            got = f"one on {generator.device}" if isinstance(generator, torch.Generator) else type(generator).__name__
            raise UsageError("generator must be a CPU torch.Generator (e.g. torch.Generator().manual_seed(epoch)) "
                             f"or None, got {got}")
        if batch_size % world_size:
            raise UsageError(f"batch_size ({batch_size}) must be a positive multiple of world_size ({world_size})")
        if generator is None and world_size > 1:
            raise UsageError("with world_size > 1, pass a generator seeded alike on every rank (e.g. "
                             "torch.Generator().manual_seed(epoch)), not None: torch's global RNG draws otherwise on "
                             "ranks seeded apart, and the ranks' shards would overlap")
        return fixed_step_plan(self, batch_size, generator=generator, multiple=world_size)

    def shard(self, rank, world_size):
        """This rank's disjoint, equally sized share (the plan is cut to a multiple of world_size)."""
        check_int(world_size, "world_size")
        check_int(rank, "rank", 0)
        if not 0 <= rank < world_size:
            raise UsageError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        usable = len(self) - len(self) % world_size
        take = slice(rank, usable, world_size)
        return EpochPlan(self.indices[take], self.weights[take], self.augmented[take],
                         None if self.partners is None else self.partners[take], self.entry_slots()[take])

    def entry_slots(self):
        """`slots`, zeros when the plan has none: int64 (m,)."""
        return torch.zeros_like(self.indices) if self.slots is None else self.slots


@dataclass
class DevicePlan:
    """An epoch's plan on the training device, cut into batches, so a step reads only device tensors.

    indices, weights, augmented, slots: the plan's tensors on the device (host_indices: the
    indices, kept on the host to read streamed images by). strong_rows: int64 positions,
    within their batch, of the strongly augmented entries, batch after batch; batch b's are
    strong_rows[bounds[b]:bounds[b + 1]] (bounds are host integers, worked out on the host
    from the plan before it moved, so that a step never asks the device how many to augment).
    """

    indices: torch.Tensor
    weights: torch.Tensor
    augmented: torch.Tensor
    strong_rows: torch.Tensor
    bounds: list = field(repr=False)  # a host integer per batch: tens of KB for ImageNet
    batch_size: int
    host_indices: torch.Tensor = None
    partners: torch.Tensor = None
    slots: torch.Tensor = None

    @classmethod
    def build(cls, plan, batch_size, device):
        steps = -(-len(plan) // batch_size)
        if steps > 1 and len(plan) % batch_size == 1:
            steps -= 1  # a last batch of one joins the one before: BatchNorm cannot train on a single example
        positions = np.flatnonzero(plan.augmented.numpy())
        batch_of = np.minimum(positions // batch_size, steps - 1)
        bounds = np.searchsorted(batch_of, np.arange(steps + 1)).tolist()
        rows = torch.from_numpy(positions - batch_of * batch_size)
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return cls(move(plan.indices), move(plan.weights), move(plan.augmented), move(rows), bounds, batch_size,
                   plan.indices, None if plan.partners is None else move(plan.partners), move(plan.entry_slots()))

    def image_keys(self, *numbers):
        """int64 (m,) on the device: every entry's `RandomSource` key, a hash of (numbers, e.g.
        seed and epoch, integers; its example's index; its slot). Made once an epoch, indexed
        per step."""
        return RandomSource.image_keys(self.indices, *_key_numbers(numbers), slots=self.slots)

    def draws(self, *numbers, chunk_steps=64):
        """The entries' random sources (`PlanDraws`) for `image_keys(*numbers)`, their first
        numbers hashed `chunk_steps` batches at a time."""
        check_int(chunk_steps, "chunk_steps")
        return PlanDraws(self.image_keys(*numbers), chunk_steps * self.batch_size)

    @property
    def steps(self):
        return len(self.bounds) - 1

    def batch(self, step):
        """(slice of the plan, strong rows of the batch or None) for training step `step`: batches
        of batch_size, the last shorter, or one longer where a single entry would be left over.
        `step` is an integer (a numpy or 0-dim torch one taken as one)."""
        if isinstance(step, torch.Tensor) and step.dim() == 0 and not step.is_floating_point() \
                and step.dtype != torch.bool:
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 0 <= step < self.steps:
            raise UsageError(f"step must be an integer in [0, steps) = [0, {self.steps}), got {step!r}")
        stop = len(self.indices) if step == self.steps - 1 else (step + 1) * self.batch_size
        take = slice(step * self.batch_size, stop)
        first, last = self.bounds[step], self.bounds[step + 1]
        return take, (self.strong_rows[first:last] if last > first else None)

    def step_images(self, images):
        """Each step's uint8 training images (`images`, an `Images`), step after step, on the
        training device: the rows are read by the plan's indices where the images want them
        (on the device, or on the host for images read from disk by a thread ahead of the
        steps, pinned on a GPU) and copied to the device without waiting."""
        device = self.indices.device
        order = self.indices if images.rows_device == device else self.host_indices.numpy()  # once per epoch
        rows = [order[self.batch(step)[0]] for step in range(self.steps)]
        for batch in images.batches(rows, pin=device.type == "cuda"):
            yield batch.to(device, non_blocking=True)


def _key_numbers(values):
    """The numbers that key the draws (seed, epoch, ...) as Python ints (numpy and 0-dim torch integers
    taken as ones), else a UsageError: a float seed would be truncated (0.5 drawing as 0)."""
    checked = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
                and value.dtype != torch.bool:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise UsageError("the numbers of draws() and image_keys() (seed, epoch, ...) must be integers, "
                             f"got {value!r}")
        checked.append(int(value))
    return checked


class PlanDraws:
    """Each plan entry's `RandomSource`: its key (`DevicePlan.image_keys`) and its first
    `RandomSource.BLOCK` numbers, hashed ahead for `chunk` entries at a time (a dozen ops a
    chunk, where a source would hash its own in each step's call)."""

    def __init__(self, keys, chunk):
        self.keys, self.chunk = keys, max(1, chunk)
        self._first, self._numbers = 0, None

    def rows(self, take):
        """(keys, numbers made ahead) of the entries in `take` (a slice of the plan)."""
        start, stop = take.start or 0, min(take.stop, len(self.keys))
        held = 0 if self._numbers is None else self._numbers.shape[0]
        if start < self._first or stop > self._first + held:
            end = min(len(self.keys), max(stop, start + self.chunk))
            self._first, self._numbers = start, RandomSource.ahead(self.keys[start:end])
        return self.keys[start:stop], self._numbers[start - self._first:stop - self._first]

    def source(self, take):
        """A `RandomSource` for the entries in `take`, each drawing from its own stream."""
        return RandomSource(*self.rows(take))


def plan_length(n, strategy, mode, selected, copies):
    """Examples in every epoch's plan for a training set of `n` and a selection of `selected`."""
    if strategy == "none":
        return n
    if strategy == "full":
        return n * (1 + copies)
    return (n if mode == "append" else selected) + copies * selected


@keyword_only
def epoch_plan(n, *, strategy, mode, selected, weights, copies, weight_augmented, generator, partner_labels=None):
    """Build and shuffle one epoch's plan.

    Takes the training set size `n`, the strategy and mode of TrainConfig, the current
    selection (`selected` int64 indices and their `weights`, None for "full"/"none"),
    the number of augmented `copies` per selected example, whether copies carry the
    coreset weights, and the torch.Generator that shuffles. Counts per epoch:
    append: n + copies * |S|; subset: |S| + copies * |S|; full: n + copies * n; none: n.
    With `partner_labels` (the training labels), every copy gets a partner: a selected example
    of its class drawn uniformly (`EpochPlan.partners`).
    """
    everyone = torch.arange(n)
    ones = torch.ones(n)
    if strategy == "none":
        parts = [(everyone, ones, False)]
    elif strategy == "full":
        parts = [(everyone, ones, False)] + [(everyone, ones, True)] * copies
    else:
        copy_weights = weights if weight_augmented else torch.ones_like(weights)
        base = (everyone, ones, False) if mode == "append" else (selected, weights, False)
        parts = [base] + [(selected, copy_weights, True)] * copies
    indices = torch.cat([p[0] for p in parts]).long()
    plan_weights = torch.cat([p[1] for p in parts]).float()
    augmented = torch.cat([torch.full((len(p[0]),), p[2]) for p in parts])
    slots = torch.cat([torch.full((len(p[0]),), slot, dtype=torch.int64) for slot, p in enumerate(parts)])
    order = torch.randperm(len(indices), generator=generator)
    partners = None
    if partner_labels is not None and selected is not None:
        partners = indices.clone()
        partners[augmented] = same_class_partners(indices[augmented], partner_labels, selected, generator)
        partners = partners[order]
    return EpochPlan(indices[order], plan_weights[order], augmented[order], partners, slots[order])


def same_class_partners(examples, labels, pool, generator):
    """For each of `examples`, a uniformly drawn other member of `pool` with the same label
    (itself only where it is its class's one member of the pool)."""
    n = len(labels)
    key = labels[pool] * n + pool  # pool sorted by (label, index): each class a run, found by searchsorted
    keys, order = torch.sort(key)
    pool = pool[order]
    own_key = labels[examples] * n + examples
    start = torch.searchsorted(keys, labels[examples] * n)
    count = torch.searchsorted(keys, (labels[examples] + 1) * n) - start
    own = torch.searchsorted(keys, own_key) - start  # the example's place in its class's run
    present = (own < count) & (keys[(start + own).clamp(max=len(keys) - 1)] == own_key)
    others = count - present.long()
    offset = torch.minimum((torch.rand(len(examples), generator=generator) * others).long(), (others - 1).clamp(min=0))
    offset = offset + (present & (others > 0) & (offset >= own)).long()  # skip the example itself
    return pool[start + offset]


def fixed_step_layout(originals, copies, batch_size, multiple=1):
    """(steps, copies per step) of the compiled layout for `originals` weak and `copies` strong
    entries at `batch_size`: the fewest steps whose batches hold every entry when each carries
    exactly ceil(copies / steps) copies, rounded up to a multiple of `multiple` (the processes
    of a run, which share every batch), and the rest originals. Raises UsageError when no such
    layout exists: copies and originals in batches of at most `multiple` entries."""
    if copies and originals and batch_size <= multiple:
        raise UsageError(f"a batch of {batch_size} cannot hold strong copies (a multiple of {multiple}) and an "
                         f"original besides; use a batch_size above {multiple}")
    steps = max(1, -(-(originals + copies) // batch_size))
    while True:
        per_step = -(-copies // steps)
        per_step = -(-per_step // multiple) * multiple
        if steps * (batch_size - per_step) >= originals:
            return steps, per_step
        steps += 1


def fixed_step_plan(plan, batch_size, *, generator, multiple=1):
    """`plan` laid out for a compiled training step: every step the same shapes.

    Every batch has exactly `batch_size` entries, of which the last k = ceil(copies / steps) are
    strongly augmented copies (`fixed_step_layout`), so the step's shapes and its copies' rows
    never change from step to step, epoch to epoch or selection to selection. Nothing is dropped:
    the last batch and the copies' share are topped up with entries drawn at random from the
    plan's own originals and copies (each drawn at most once until all have been), so the
    method's budget never shrinks and an epoch trains more entries than `plan` holds (`len` of
    the result, which the metrics count): up to a batch more, a few percent of a plan of many
    batches (1,437 originals and 431 copies at 128: 1.03x), but a multiple of a plan of about a
    batch or less, mostly repeated originals, so the copies' share of the rows drops (14 and 14
    at 128: one step of 128 entries, 4.6x, the copies 11% of it rather than half;
    `compiled_step.warn_layout_growth` warns from 1.5x). Originals and copies are shuffled again by
    `generator` (a CPU torch.Generator). Returns an `EpochPlan` (partners, if any, follow their
    entries).
    """
    augmented = plan.augmented
    original_rows, copy_rows = torch.nonzero(~augmented).flatten(), torch.nonzero(augmented).flatten()
    steps, per_step = fixed_step_layout(len(original_rows), len(copy_rows), batch_size, multiple)
    originals, original_repeats = _topped_up(original_rows, steps * (batch_size - per_step), generator)
    copies, copy_repeats = _topped_up(copy_rows, steps * per_step, generator)
    order = torch.cat([originals.view(steps, -1), copies.view(steps, per_step)], 1).flatten()
    repeats = torch.cat([original_repeats.view(steps, -1), copy_repeats.view(steps, per_step)], 1).flatten()
    return EpochPlan(plan.indices[order], plan.weights[order], plan.augmented[order],
                     None if plan.partners is None else plan.partners[order],
                     plan.entry_slots()[order] + REPEAT_SLOTS * repeats)


# A repeated entry's slot: its own plus this per repeat, so that it draws its own augmentation.
REPEAT_SLOTS = 1 << 16


def _topped_up(rows, size, generator):
    """`rows` and `size - len(rows)` more of them drawn without replacement (again once all
    have been), shuffled: (int64 (size,) rows, int64 (size,) how many times each entry was
    already drawn before: 0 for the originals, 1 in the first round of repeats, ...)."""
    extra = size - len(rows)
    repeats = torch.zeros(len(rows), dtype=torch.int64)
    if extra > 0:
        rounds = -(-extra // len(rows))
        picks = torch.cat([torch.randperm(len(rows), generator=generator) for _ in range(rounds)])[:extra]
        repeats = torch.cat([repeats, torch.arange(extra) // len(rows) + 1])
        rows = torch.cat([rows, rows[picks]])
    order = torch.randperm(size, generator=generator)
    return rows[order], repeats[order]
