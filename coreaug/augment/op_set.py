"""Per-example application of a policy's op set: every example runs its own op in one pass.

An ``OpSet`` is a list of op kinds with a magnitude range each, applied two ways:

- dense (``apply_layers``, see dense_layers): every kind runs on the whole batch and each
  example keeps its own op's result; each example draws its op independently. A fixed, small
  number of kernel launches per layer: the path for GPUs and for small images.
- grouped (``apply``): the batch is dealt into ``Groups`` of fixed size (one per op, or one per
  AutoAugment sub-policy) and each group's op runs once on its block: a Python loop over
  groups, never over examples, less arithmetic and several times more launches; the path for
  large images on the CPU (``use_dense``).

Neither has a shape that depends on the random draws, so a CUDA batch never waits on the host.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch

from .constants import static
from .dense_layers import DENSE_MAX_PIXELS, DenseLayers
from .geometric import warp
from .op_kinds import OP_KINDS
from .sampling import permutation, signs
from .working_float import UINT8_BOUND, as_state, as_working, bound_of

# A magnitude range: (num_bins, height, width, bound) -> (num_bins,) magnitudes in kernel units.
MagnitudeRange = Callable[[int, int, int, float], torch.Tensor]


def no_magnitude(num_bins: int, height: int, width: int, bound: float) -> torch.Tensor:
    """The range of ops that take no magnitude."""
    return torch.zeros(num_bins)


def linear(low: float, high: float, unit: Optional[str] = None) -> MagnitudeRange:
    """Evenly spaced bins from ``low`` to ``high`` times ``unit``: None, "width", "height" or
    "level" (an 8-bit level, scaled for float images)."""
    def magnitudes(num_bins, height, width, bound):
        scale = {None: 1.0, "width": width, "height": height, "level": bound / UINT8_BOUND}[unit]
        return torch.linspace(low, high, num_bins) * scale
    return magnitudes


def posterize_bits(most_bits_dropped: int) -> MagnitudeRange:
    """Bits kept, from 8 at bin 0 down to 8 - ``most_bits_dropped`` at the last bin."""
    def magnitudes(num_bins, height, width, bound):
        dropped = (torch.arange(num_bins) / ((num_bins - 1) / most_bits_dropped)).round()
        return 8.0 - dropped
    return magnitudes


class OpSet:
    """Op kinds with magnitude ranges, applied per example; see the module docstring."""

    def __init__(self, ranges: Mapping[str, MagnitudeRange], num_bins: int):
        self.names = list(ranges)
        self.kinds = [OP_KINDS[name] for name in self.names]
        self.ranges = [ranges[name] for name in self.names]
        self.num_bins = num_bins
        self._tables: dict = {}
        self._dense = DenseLayers(self.kinds, self.ranges, num_bins)

    @staticmethod
    def use_dense(images: torch.Tensor) -> bool:
        """True when ``images`` take the dense path: on any accelerator, and on the CPU for
        images of at most ``DENSE_MAX_PIXELS`` pixels (the grouped path does less arithmetic)."""
        return images.device.type != "cpu" or images.shape[2] * images.shape[3] <= DENSE_MAX_PIXELS

    def apply_layers(self, x: torch.Tensor, kind: torch.Tensor, bin_index, sign: torch.Tensor,
                     fill_level: float, interpolation: str, bound: float,
                     present: Optional[Sequence[Sequence[int]]] = None) -> torch.Tensor:
        """The dense path: run layers on the float working copy ``x`` (see working_float): in
        layer l example i gets op ``kind[l, i]`` (an index into ``names``) at magnitude bin
        ``bin_index[l, i]`` (or one bin for all, an int), with ``sign[l, i]`` (+1 or -1) for
        signed kinds. ``present[l]`` lists the kinds layer l can draw (default: all), so the
        others are not computed. ``fill_level`` is a 0-255 level. Returns the new working copy."""
        layers = kind.shape[0]
        every = frozenset(range(len(self.kinds)))
        present = [every] * layers if present is None else [frozenset(p) for p in present]
        fill = fill_level * bound / UINT8_BOUND
        return self._dense.apply(x, kind, bin_index, sign, fill, interpolation, bound, present)

    def index(self, name: str) -> int:
        """Position of op ``name`` in this set."""
        return self.names.index(name)

    def magnitude_table(self, height: int, width: int, bound: float) -> list:
        """Per op (in ``names`` order), the kernel values of its magnitude bins, unsigned:
        a list of lists of floats (for per-image reference pipelines)."""
        return self._table(height, width, bound, "cpu")[0].tolist()

    def _table(self, height, width, bound, device):
        key = (height, width, bound, str(device))
        if key not in self._tables:
            rows = [r(self.num_bins, height, width, bound) for r in self.ranges]
            signed = torch.tensor([k.signed for k in self.kinds])
            base = torch.tensor([k.base for k in self.kinds])
            self._tables[key] = tuple(static(t.to(device)) for t in (torch.stack(rows).float(), signed, base))
        return self._tables[key]

    def apply(self, x: torch.Tensor, groups: "Groups", kind_of_group: Sequence[int],
              bin_index: torch.Tensor, fill: torch.Tensor, interpolation: str,
              generator: Optional[torch.Generator], applied: Optional[torch.Tensor] = None,
              has_fill: bool = True) -> torch.Tensor:
        """Give every example of group g op ``kind_of_group[g]`` (an index into ``names``) at
        magnitude bin ``bin_index[i]``, on the policy state ``x`` (see working_float.to_state).

        ``applied`` (n,) bool, when given, keeps the original where it is False. ``fill`` is (C,)
        in image units (``has_fill`` False when it is all zeros). Returns a new state tensor.
        Groups are blocks of fixed size and each kind runs once on the groups that drew it, so
        no shape depends on the random draws.
        """
        n, _, height, width = x.shape
        if n == 0:
            return x
        bound = bound_of(x)
        table, signed, base = self._table(height, width, bound, x.device)
        kinds, order, runs = self._layout(kind_of_group, x.device)
        op_index = kinds[groups.group]
        sign = torch.where(signed[op_index], signs(n, generator, x.device), 1.0)
        values = base[op_index] + sign * table[op_index, bin_index]
        # Every group gathered in one pass, groups of one kind next to each other, so that each
        # kind runs once. index_select, not x[rows]: several times faster on CPU.
        rows = groups.rows.index_select(0, order).flatten()
        ordered, values = x.index_select(0, rows), values.index_select(0, rows)
        size = groups.size
        geometric = [r for r in runs if self.kinds[r[0]].is_geometric]  # sorted first: one warp for all
        blocks = [self._warp(ordered, values, geometric, size, fill, interpolation, has_fill)] if geometric else []
        blocks += [self._run(self.kinds[kind_id], ordered[first * size:last * size], values[first * size:last * size],
                             bound) for kind_id, first, last in runs if not self.kinds[kind_id].is_geometric]
        result = torch.cat(blocks)
        if applied is not None:
            result = torch.where(applied.index_select(0, rows).view(-1, 1, 1, 1), result, ordered)
        # Back to the batch's order by a gather (index_copy_ is several times slower on CPU): the
        # slot of each example, found by scattering slot numbers (empty slots all land on row n).
        members = groups.members.index_select(0, order).flatten()
        slot_of = torch.empty(n + 1, dtype=torch.long, device=x.device)
        slot_of.scatter_(0, members, torch.arange(len(members), device=x.device))
        return result.index_select(0, slot_of[:n])

    def _layout(self, kind_of_group, device):
        """(kind of each group as a device tensor, group order sorted by kind on the device,
        runs [(kind, first, last)] of that order), cached: the same every batch."""
        key = (tuple(kind_of_group), str(device))
        if key not in self._tables:
            # Geometric kinds first (one warp runs them all), then the others, each kind's groups together.
            order = sorted(range(len(kind_of_group)),
                           key=lambda g: (not self.kinds[kind_of_group[g]].is_geometric, kind_of_group[g]))
            runs = []
            for position, g in enumerate(order):
                if runs and runs[-1][0] == kind_of_group[g]:
                    runs[-1][2] = position + 1
                else:
                    runs.append([kind_of_group[g], position, position + 1])
            self._tables[key] = (static(torch.tensor(kind_of_group, device=device)),
                                 static(torch.tensor(order, device=device)), [tuple(r) for r in runs])
        return self._tables[key]

    def _warp(self, ordered, values, geometric, size, fill, interpolation, has_fill):
        """The geometric groups (leading `ordered`) in one warp, each row with its kind's matrix."""
        height, width = ordered.shape[2:]
        matrices = torch.cat([self.kinds[kind_id].matrix(values[first * size:last * size], height, width)
                              for kind_id, first, last in geometric])
        x = ordered[:geometric[-1][2] * size]
        if interpolation == "nearest":  # gathers whole pixels: stays in the state dtype
            return warp(x, matrices, fill, interpolation, has_fill)
        return as_state(warp(as_working(x), matrices, fill, interpolation, has_fill), x.dtype)

    @staticmethod
    def _run(kind, x, values, bound):
        if kind.kernel is None:  # identity
            return x
        return as_state(kind.kernel(as_working(x), values, bound), x.dtype)


class Groups:
    """n examples dealt at random into ``count`` groups of ceil(n / count) slots each.

    Every example lands in each group with probability 1 / count (a uniform op choice per
    example, as RandAugment draws it), but the group sizes are fixed by n alone, so each
    group runs as one block without the host reading how many examples drew it.

    group: int64 (n,) the group of each example. members: int64 (count, size) the example in
    each slot, n for an empty slot (every example fills exactly one slot). rows: the same with empty slots pointing at example 0
    (a harmless row to compute on; its result is written to the spare row n).
    """

    def __init__(self, n: int, count: int, generator: Optional[torch.Generator],
                 device: torch.device):
        self.size = size = -(-n // count)
        slot = permutation(count * size, generator, device)[:n]
        self.group = torch.div(slot, size, rounding_mode="floor")
        members = torch.full((count * size,), n, dtype=torch.long, device=device)
        self.members = members.scatter_(0, slot, torch.arange(n, device=device)).view(count, size)
        self.rows = torch.where(self.members < n, self.members, 0)
