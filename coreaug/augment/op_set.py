"""Per-example application of a policy's op set: every example runs its own op in one pass.

An ``OpSet`` is a list of op kinds with a magnitude range each. Given an op index and a
magnitude bin per example, it sorts the batch by op so that each kind runs once on a contiguous
block (all geometric kinds together as one warp), then restores the order: a Python loop over
op kinds, never over examples.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch

from .geometric import warp
from .op_kinds import OP_KINDS
from .sampling import signs
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
            group = torch.tensor([0 if k.is_geometric else i + 1 for i, k in enumerate(self.kinds)])
            self._tables[key] = tuple(
                t.to(device) for t in (torch.stack(rows).float(), signed, base, group)
            )
        return self._tables[key]

    def apply(self, x: torch.Tensor, op_index: torch.Tensor, bin_index: torch.Tensor,
              fill: torch.Tensor, interpolation: str,
              generator: Optional[torch.Generator]) -> torch.Tensor:
        """Apply op ``op_index[i]`` at magnitude bin ``bin_index[i]`` to example i of the policy
        state ``x`` (see working_float.to_state); ``fill`` is (C,) in image units. Returns a new
        state tensor."""
        n, _, height, width = x.shape
        if n == 0:
            return x
        bound = bound_of(x)
        table, signed, base, group_of_kind = self._table(height, width, bound, x.device)
        sign = torch.where(signed[op_index], signs(n, generator, x.device), 1.0)
        values = base[op_index] + sign * table[op_index, bin_index]
        group = group_of_kind[op_index]
        order = torch.argsort(group, stable=True)
        counts = torch.bincount(group, minlength=len(self.kinds) + 1).tolist()
        # index_select, not x[order] or index_copy_: several times faster on CPU.
        ordered = x.index_select(0, order)
        op_index, values = op_index[order], values[order]
        blocks, start = [], 0
        for group_id, count in enumerate(counts):
            if count:
                part = slice(start, start + count)
                blocks.append(self._run_group(group_id, ordered[part], op_index[part],
                                              values[part], bound, fill, interpolation))
                start += count
        restore = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=x.device))
        return torch.cat(blocks).index_select(0, restore)

    def _run_group(self, group_id, x, op_index, values, bound, fill, interpolation):
        if group_id == 0:
            height, width = x.shape[2:]
            matrices = values.new_zeros(len(x), 2, 3)
            for i, kind in enumerate(self.kinds):
                if kind.is_geometric:
                    chosen = (op_index == i).view(-1, 1, 1)
                    matrices = torch.where(chosen, kind.matrix(values, height, width), matrices)
            if interpolation == "nearest":  # gathers whole pixels: stays in the state dtype
                return warp(x, matrices, fill, interpolation)
            return as_state(warp(as_working(x), matrices, fill, interpolation), x.dtype)
        kind = self.kinds[group_id - 1]
        if kind.kernel is None:
            return x
        return as_state(kind.kernel(as_working(x), values, bound), x.dtype)
