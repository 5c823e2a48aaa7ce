"""Per-example application of a policy's op set: every example runs its own op in one pass.

An ``OpSet`` is a list of op kinds with a magnitude range each. Each example draws its op
independently; ``apply_layers`` (see dense_layers) runs a layer two ways, with the same result
per example:

- dense: every kind runs on the whole batch and each example keeps its own op's result. A
  fixed, small number of kernel launches per layer and no shape that depends on the draws, so
  a CUDA batch never waits on the host: the path for accelerators and for small calls.
- kind by kind: each kind runs on the examples that drew it (their number read on the host,
  which on the CPU waits for nothing): a fraction of the arithmetic for more launches, the
  path for the CPU but on small calls (``use_dense``).
"""
from __future__ import annotations

import functools
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .constants import ConstantCache, static
from .dense_layers import DENSE_MAX_BATCH_VALUES, DENSE_MAX_VALUES, DenseLayers
from .op_kinds import OP_KINDS
from .working_float import UINT8_BOUND

# A magnitude range: (num_bins, height, width, bound) -> (num_bins,) magnitudes in kernel units.
MagnitudeRange = Callable[[int, int, int, float], torch.Tensor]


def no_magnitude(num_bins: int, height: int, width: int, bound: float) -> torch.Tensor:
    """The range of ops that take no magnitude."""
    return torch.zeros(num_bins)


def _linear_magnitudes(low, high, unit, num_bins, height, width, bound):
    if unit in ("width", "height"):
        # In float64, rounded to float32 once by the callers: a shift of a whole or half pixel (a
        # 23-px width's bin 15 of 31: 11.5) stays exact, where float32 steps gave 11.499999 and a
        # translation that skipped one column and repeated another.
        return torch.linspace(low, high, num_bins, dtype=torch.float64) * (width if unit == "width" else height)
    # float32 steps, as torchvision's tables (the values its ops get)
    return torch.linspace(low, high, num_bins) * (1.0 if unit is None else bound / UINT8_BOUND)


def linear(low: float, high: float, unit: Optional[str] = None) -> MagnitudeRange:
    """Evenly spaced bins from ``low`` to ``high`` times ``unit``: None, "width", "height" or
    "level" (an 8-bit level, scaled for float images). A partial of a module function, so
    policies pickle (DataLoader workers started by spawn)."""
    return functools.partial(_linear_magnitudes, low, high, unit)


def _whole_pixels(magnitudes, num_bins, height, width, bound):
    return magnitudes(num_bins, height, width, bound).trunc()


def whole_pixels(magnitudes: MagnitudeRange) -> MagnitudeRange:
    """A translation's range with its bins truncated to whole pixels, as torchvision's policies
    shift by ``int(magnitude)`` (3 px, not 3.8 rounded to 4, at RandAugment's default bin on 28x28)."""
    return functools.partial(_whole_pixels, magnitudes)


def _posterize_magnitudes(most_bits_dropped, num_bins, height, width, bound):
    dropped = (torch.arange(num_bins) / ((num_bins - 1) / most_bits_dropped)).round()
    return 8.0 - dropped


def posterize_bits(most_bits_dropped: int) -> MagnitudeRange:
    """Bits kept, from 8 at bin 0 down to 8 - ``most_bits_dropped`` at the last bin."""
    return functools.partial(_posterize_magnitudes, most_bits_dropped)


class OpSet:
    """Op kinds with magnitude ranges, applied per example; see the module docstring."""

    def __init__(self, ranges: Mapping[str, MagnitudeRange], num_bins: int):
        self.names = list(ranges)
        self.kinds = [OP_KINDS[name] for name in self.names]
        self.ranges = [ranges[name] for name in self.names]
        self.num_bins = num_bins
        self._dense = DenseLayers(self.kinds, self.ranges, num_bins)
        self._fills = ConstantCache()  # per-channel fills as device tensors, per fill, dtype and device

    @staticmethod
    def use_dense(images: torch.Tensor) -> bool:
        """True when ``images`` take the dense path: on any accelerator; on the CPU for images of
        at most ``DENSE_MAX_VALUES`` values (C x H x W) and ``DENSE_MAX_BATCH_VALUES`` in all (else
        kind by kind does less arithmetic), and under a ``TorchDispatchMode``: the op counters and
        the sync audit stand in for a GPU, so they see the GPU's path (the result is the same)."""
        values = images.shape[1] * images.shape[2] * images.shape[3]
        return (images.device.type != "cpu" or values <= DENSE_MAX_VALUES
                and images.shape[0] * values <= DENSE_MAX_BATCH_VALUES or _get_current_dispatch_mode() is not None)

    def apply_layers(self, x: torch.Tensor, kind: torch.Tensor, bin_index, sign: torch.Tensor,
                     fill_level: float, interpolation: str, bound: float,
                     present: Optional[Sequence[Sequence[int]]] = None) -> torch.Tensor:
        """Run layers on the float working copy ``x`` (see working_float): in layer l example i
        gets op ``kind[l, i]`` (an index into ``names``) at magnitude bin ``bin_index[l, i]`` (or
        one bin for all, an int), with ``sign[l, i]`` (+1 or -1) for signed kinds. ``present[l]``
        lists the kinds layer l can draw (default: all), so the others are not computed.
        ``fill_level`` is a 0-255 level, or a tuple of one per channel. Dense (every kind on the whole batch) where
        ``use_dense`` or inside a compiled graph, else kind by kind on the examples that drew
        each, with the same result per example. Returns the new working copy (whole levels for
        uint8 data; kind by kind, as uint8)."""
        layers = kind.shape[0]
        every = tuple(range(len(self.kinds)))  # sorted tuples: torch 2.7's dynamo took no frozenset in a cache key
        present = [every] * layers if present is None else [tuple(sorted(set(p))) for p in present]
        fill = self._fill(fill_level, bound, x)
        # Traced (a compiled step), dense whatever the size: kind by kind reads block sizes on the host.
        # (Asked first: the size test on a traced batch would guard the graph on the batch's size.)
        by_kind = not torch.compiler.is_compiling() and not self.use_dense(x)
        return self._dense.apply(x, kind, bin_index, sign, fill, interpolation, bound, present, by_kind=by_kind)

    def _fill(self, fill_level, bound: float, x: torch.Tensor):
        """The fill in the working copy's units: a number, or for a tuple of levels a (C,) tensor
        on ``x``'s device, made once (not copied to the device at every call)."""
        if not isinstance(fill_level, tuple):
            return fill_level * bound / UINT8_BOUND
        return self._fills.get((fill_level, bound, x.dtype, str(x.device)), lambda: static(
            torch.tensor([level * bound / UINT8_BOUND for level in fill_level], dtype=x.dtype).to(x.device)))

    def index(self, name: str) -> int:
        """Position of op ``name`` in this set."""
        return self.names.index(name)

    def magnitude_table(self, height: int, width: int, bound: float) -> list:
        """Per op (in ``names`` order), the kernel values of its magnitude bins, unsigned:
        a list of lists of floats (for per-image reference pipelines)."""
        return torch.stack([r(self.num_bins, height, width, bound) for r in self.ranges]).float().tolist()
