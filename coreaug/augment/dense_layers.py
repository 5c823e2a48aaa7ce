"""Every example's own op in one dense pass: each op kind runs on the whole batch, and each
example keeps the result of the op it drew.

Every op of a layer is written as one blend ``D + F * (x - D)`` (then clamped, and truncated to
whole levels for uint8 data, as Pillow stores each result): per example a degenerate image ``D``
and a factor ``F``. Brightness blends with black, contrast with the mean grey level, color with
the grayscale image, sharpness with the smoothed image (``F`` the op's factor); identity is
``F = 1``; invert and solarize blend with mid-grey at ``F = -1`` (solarize only on pixels at or
above its threshold); posterize, auto-contrast, equalize and the affine ops make their own
result ``D`` and take ``F = 0``. So a layer computes each degenerate image once for the whole
batch (the affine ops as one warp with a matrix per example, the identity for the others),
picks every example's ``D`` with one gather (the channel-constant ones, black, grey levels and
the grayscale image, are added on: copying them out to full images costs time) and blends once.
The per-example numbers (``F``, the flags, the op value, posterize's step, the matrix) depend on
the draw (kind, magnitude bin, sign) alone: a call looks them up in a table of every draw.

The trade-off: the arithmetic of every op kind is spent on every example, about as much work as
running all the kinds on the batch, for a fixed number of ops dispatched (about 95 per layer,
each at most one kernel launch) whatever the batch and whatever the draws. On a GPU, on small
images (CIFAR's 32x32), the launches are the cost and the arithmetic is nearly free. On a CPU
the arithmetic counts, and each layer runs kind by kind (``apply(by_kind=True)``: each kind's
layer on the examples that drew it, the same result per example, a fraction of the arithmetic
for more ops) unless the call is small: images of at most ``DENSE_MAX_VALUES`` values (channels
x height x width: 24x24 in RGB, 41x41 in grayscale; CIFAR's 32x32 runs kind by kind, MNIST's
28x28 dense) and at most ``DENSE_MAX_BATCH_VALUES`` in all (28 RGB images of 24x24, 62 MNIST
images, 256 RGB images of 8x8). experiments/results/augment_ops.md ("Dense or kind by kind")
times both paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .color_ops import luminance, posterize_by_step, smoothed
from .constants import ConstantCache, static
from .geometric import affine_matrices, affine_terms, warp
from .histogram import auto_contrast_kernel, equalize_kernel
from .working_float import UINT8_BOUND

# On the CPU, calls on larger images, or on more values in all, run kind by kind (see the module docstring).
DENSE_MAX_VALUES = 3 * 24 * 24
DENSE_MAX_BATCH_VALUES = 3 * 128 * 128
# Op sets of at most this many magnitude bins look a call's per-example numbers up in a table of
# every (kind, bin, sign) draw (`DenseLayers._draw_table`, one per image size: 3,840 rows at 128
# bins and 15 kinds, made in about the time of a call's own numbers for as many images); more
# bins (the API takes up to 10,000) compute them each call.
DRAW_TABLE_MAX_BINS = 128

# Per op kind: (degenerate image, F when it is not the op's factor, blends with F = factor,
# degenerate level as a fraction of the bound for "flat").
_FORMS = {
    "identity": ("flat", 1.0, False, 0.0),
    "brightness": ("flat", 0.0, True, 0.0),
    "invert": ("flat", -1.0, False, 0.5),
    "solarize": ("flat", 1.0, False, 0.5),
    "contrast": ("flat", 0.0, True, 0.0),
    "color": ("gray", 0.0, True, 0.0),
    "sharpness": ("smooth", 0.0, True, 0.0),
    "posterize": ("posterized", 0.0, False, 0.0),
    "auto_contrast": ("auto_contrast", 0.0, False, 0.0),
    "equalize": ("equalized", 0.0, False, 0.0),
}
_GEOMETRIC_FORM = ("warped", 0.0, False, 0.0)
_CHANNEL_CONSTANT = ("flat", "gray")  # degenerate images added on, not gathered
_SLOT_ORDER = ("smooth", "posterized", "auto_contrast", "equalized", "warped")
# Columns of the per-kind parameter table.
_F, _BLEND, _FLAT, _CONTRAST, _SOLARIZE, _GRAY, _SIGNED, _BASE, _RADIANS = range(9)
_NUMBERS = 8  # per-example numbers of a draw (the fields of _Layer from factor to solar_offset)


@dataclass
class _Layer:
    """One layer's per-example parameters, each (n,): the op ``kind`` drawn; factor ``F``, flat
    level, contrast, solarize and grayscale flags, op value, posterize's ``step`` (2 ** (8 -
    bits)) and solarize's ``solar_offset`` (1 - ceil(threshold)); the (n, 2, 3) matrix; and
    ``rows`` (kinds, n), where an example at position i that drew kind k finds its degenerate in
    the layer's stacked full-image candidates (``kind`` and ``rows`` None for a layer of one kind,
    which gathers none)."""

    kind: Optional[torch.Tensor]
    factor: torch.Tensor
    flat: torch.Tensor
    contrast: torch.Tensor
    solarize: torch.Tensor
    value: torch.Tensor
    gray: torch.Tensor
    step: torch.Tensor
    solar_offset: torch.Tensor
    matrices: torch.Tensor
    rows: Optional[torch.Tensor]


class DenseLayers:
    """The dense path of an ``OpSet``: its kinds' blend forms as device tables, cached per image
    size, dtype and device (the most recently used few: see constants.ConstantCache); ``apply``
    runs a call's layers."""

    def __init__(self, kinds: Sequence, ranges: Sequence, num_bins: int):
        self.kinds, self.ranges, self.num_bins = list(kinds), list(ranges), num_bins
        self.forms = [_GEOMETRIC_FORM if k.is_geometric else _FORMS[k.name] for k in self.kinds]
        self._tables_cache = ConstantCache()  # per image size, dtype and device: the recent ones
        self._draw_tables = ConstantCache()  # the same
        self._slots_cache = ConstantCache(64)  # per set of kinds (a few per policy) and device
        self._rows_cache = ConstantCache(64)  # per set of kinds, batch size (a few per run) and device
        self._primed = ConstantCache()

    def __getstate__(self):  # the settings: the caches come back empty, whatever they were
        return {"kinds": self.kinds, "ranges": self.ranges, "num_bins": self.num_bins}

    def __setstate__(self, state):  # (a policy pickled by an older coreaug holds other caches)
        self.__init__(state["kinds"], state["ranges"], state["num_bins"])

    def _tables(self, height, width, bound, dtype, device):
        return self._tables_cache.get((height, width, bound, dtype, str(device)),
                                      lambda: self._make_tables(height, width, bound, dtype, device))

    def _make_tables(self, height, width, bound, dtype, device):
        rows, terms = [], []
        for kind, form in zip(self.kinds, self.forms):
            term, radians = affine_terms(kind.name if kind.is_geometric else "identity", height, width)
            rows.append([form[1], float(form[2]), form[3] * bound, float(kind.name == "contrast"),
                         2.0 * (kind.name == "solarize"), float(kind.name == "color"), float(kind.signed),
                         kind.base, radians])
            terms.append(term)
        magnitudes = torch.stack([r(self.num_bins, height, width, bound) for r in self.ranges])
        tables = (torch.tensor(rows), torch.tensor(terms), magnitudes.float().flatten())
        return tuple(static(t.to(dtype=dtype, device=device)) for t in tables)

    def _slots(self, present: tuple, device) -> tuple:
        """(full-image degenerates computed for a layer whose kinds are ``present``, the names of
        those kinds, each kind's index into the full-image degenerates as a device tensor: one
        past the last for kinds with a channel-constant degenerate), cached."""
        return self._slots_cache.get((present, str(device)), lambda: self._make_slots(present, device))

    def _make_slots(self, present: tuple, device) -> tuple:
        used = {self.forms[k][0] for k in present}
        names = [slot for slot in _SLOT_ORDER if slot in used]
        index = [names.index(form[0]) if k in present and form[0] in names else len(names)
                 for k, form in enumerate(self.forms)]
        kinds = {self.kinds[k].name for k in present}
        return names, kinds, static(torch.tensor(index, device=device))

    def _rows(self, present: tuple, n: int, device) -> torch.Tensor:
        """int64 (kinds, n), cached: entry (k, i) is the row an example at position i that draws
        kind k takes from the layer's full-image candidates stacked (``n`` rows each, then a row of
        zeros for the kinds with a channel-constant degenerate). A layer gathers each example's
        row with one op."""
        def make():
            names, _, slot_of_kind = self._slots(present, device)
            rows = slot_of_kind.view(-1, 1) * n + _positions(n, device).view(1, n)
            return static(rows.clamp_(max=len(names) * n))
        return self._rows_cache.get((present, n, str(device)), make)

    def _draw_table(self, height, width, bound, dtype, device) -> torch.Tensor:
        """(kinds * bins * 2, 14), cached: row (kind * bins + bin) * 2 + (sign > 0) holds the
        per-example numbers (`_numbers`) and the matrix of that draw, so a call looks its
        examples' up with one gather. The numbers depend on the draw alone: the same arithmetic,
        on every draw once."""
        def make():
            count = len(self.kinds) * self.num_bins * 2
            draw = torch.arange(count, device=device)
            sign = (draw % 2 * 2 - 1).to(torch.float32)  # as `signs` draws them
            numbers, matrices = self._numbers(draw // (2 * self.num_bins), draw // 2 % self.num_bins, sign,
                                              height, width, bound, dtype, device)
            return static(torch.cat([numbers.t(), matrices.view(count, 6)], 1))
        return self._draw_tables.get((height, width, bound, dtype, str(device)), make)

    def _numbers(self, kind, bins, sign, height, width, bound, dtype, device) -> tuple:
        """(numbers (_NUMBERS, m), matrices (m, 2, 3)) of m draws: op ``kind`` (m,) at magnitude
        ``bins`` ((m,) or one int), ``sign`` (m,) +1 or -1 (for signed kinds)."""
        params, terms, magnitudes = self._tables(height, width, bound, dtype, device)
        columns = params.index_select(0, kind).unbind(1)
        magnitude = magnitudes.index_select(0, kind * self.num_bins + bins)
        # Signed kinds take the sign drawn for the example, the others +1.
        signed = columns[_SIGNED].mul(sign - 1.0).add_(1.0)
        value = magnitude.mul_(signed).add_(columns[_BASE])
        factor = columns[_BLEND].mul(value).add_(columns[_F])
        matrices = affine_matrices(terms.index_select(0, kind), value, columns[_RADIANS])
        step = torch.pow(2.0, 8.0 - value.clamp(0.0, 8.0))  # posterize's (value: the bits kept)
        solar_offset = value.ceil().neg_().add_(1.0)  # whole levels: x + 1 - ceil(t) >= 1 where x >= t
        numbers = torch.stack([factor, columns[_FLAT], columns[_CONTRAST], columns[_SOLARIZE], value,
                               columns[_GRAY], step, solar_offset])
        return numbers, matrices

    def apply(self, x: torch.Tensor, kind: torch.Tensor, bin_index, sign: torch.Tensor,
              fill: float, interpolation: str, bound: float, present: Sequence[tuple],
              by_kind: bool = False) -> torch.Tensor:
        """Run ``len(present)`` layers on the float working copy ``x`` (n, C, H, W): in layer l
        example i gets op ``kind[l, i]`` (an index into the kinds) at magnitude bin
        ``bin_index[l, i]`` (or one bin for all, an int), negated where ``sign[l, i]`` is -1 (or
        False: bool signs are True for +1) for signed kinds; ``present[l]`` holds the kinds that
        layer can draw (the others are not computed). ``fill`` is the level for uncovered pixels
        in image units (or a (C,) tensor of one per channel). ``by_kind``: each layer runs kind by
        kind on the examples that drew it (`_layer_by_kind`; the same result per example). Returns
        a new working copy (whole levels for bound 255; with ``by_kind`` as uint8)."""
        layers, n = kind.shape
        height, width = x.shape[2:]
        if self.num_bins <= DRAW_TABLE_MAX_BINS:  # every example's numbers in one lookup
            table = self._draw_table(height, width, bound, x.dtype, x.device)
            if isinstance(bin_index, int):  # one bin for all: the rows of that bin start at 2 * bin
                table, draw = table[2 * bin_index:], kind.mul(2 * self.num_bins)
            else:
                draw = torch.add(bin_index, kind, alpha=self.num_bins).mul_(2)  # (kind * bins + bin) * 2
            draw = draw.add_(sign if sign.dtype == torch.bool else sign > 0).flatten()
            drawn = table.index_select(0, draw)
            numbers = drawn[:, :_NUMBERS].t()
            matrices = drawn[:, _NUMBERS:].view(layers, n, 2, 3)
        else:
            sign = sign.float().mul_(2.0).sub_(1.0) if sign.dtype == torch.bool else sign
            bins = bin_index if isinstance(bin_index, int) else bin_index.flatten()
            numbers, matrices = self._numbers(kind.flatten(), bins, sign.flatten(), height, width, bound, x.dtype,
                                              x.device)
            matrices = matrices.view(layers, n, 2, 3)
        # (_NUMBERS, layers, n): a layer takes its own numbers in two ops.
        numbers = numbers.view(_NUMBERS, layers, n)
        if by_kind:
            primed = ("primed", tuple(x.shape[1:]), x.dtype, str(x.device), tuple(present))
            if primed not in self._primed:  # once: the whole-batch path's tables (and its ops' constants)
                # made eagerly, as a compiled step's warm-up runs this path and its trace the other (see op_set)
                self._primed.get(primed, lambda: True)
                one = bin_index if isinstance(bin_index, int) else bin_index[:, :1]
                self.apply(x[:1], kind[:, :1], one, sign[:, :1], fill, interpolation, bound, present)
            for layer_kinds in present:  # the whole-batch path's gather rows, at this batch's size
                self._rows(layer_kinds, n, x.device)
            # After the first layer the batch moves as uint8 when it holds whole levels (a quarter of
            # the bytes), and is returned so: the policies' final conversion to uint8 then copies nothing.
            for layer in range(layers):
                x = self._layer_by_kind(x, kind[layer], numbers[:, layer], matrices[layer], fill, interpolation,
                                        bound)
            return x
        for layer in range(layers):
            names, kinds, _ = self._slots(present[layer], x.device)
            p = _Layer(kind[layer], *numbers[:, layer].unbind(0), matrices[layer], self._rows(present[layer], n,
                                                                                             x.device))
            x = self._layer(x, names, kinds, p, fill, interpolation, bound)
        return x

    def _layer_by_kind(self, state, kind, numbers, matrices, fill, interpolation, bound):
        """A layer run kind by kind, each on the examples that drew it, then put back in the
        batch's order: a kind's arithmetic is spent on its own examples only (the CPU's path
        for large images, ``by_kind``). Every example's result is the one the whole-batch layer
        gives it. The blocks' sizes are read on the host, which on the CPU waits for nothing.
        ``state``: the float working copy, or uint8 levels (bound 255); returns uint8 levels for
        bound 255, else the float working copy."""
        order = torch.argsort(kind, stable=True)
        blocks, start = [], 0
        for k, count in enumerate(torch.bincount(kind, minlength=len(self.kinds)).tolist()):
            if count:
                rows = order[start:start + count]
                start += count
                names, kinds, _ = self._slots((k,), state.device)
                # One kind: one degenerate, full-image or channel-constant, so nothing to gather (rows None)
                p = _Layer(None, *numbers.index_select(1, rows).unbind(0), matrices.index_select(0, rows), None)
                block = state.index_select(0, rows)
                block = block.float() if block.dtype == torch.uint8 else block  # float64 stays float64, as dense
                block = self._layer(block, names, kinds, p, fill, interpolation, bound)
                blocks.append(block.to(torch.uint8) if bound == UINT8_BOUND else block)  # whole levels: exact
        return torch.cat(blocks).index_select(0, torch.argsort(order))

    @staticmethod
    def _layer(x, names, kinds, p: _Layer, fill, interpolation, bound):
        n = x.shape[0]
        per_example = (n, 1, 1, 1)
        gray = luminance(x, bound) if {"color", "contrast"} & kinds else None
        added = None  # the channel-constant degenerate, 0 for examples that gather theirs
        if set(_CHANNEL_CONSTANT) & used_forms(kinds):
            added = p.flat
            if "contrast" in kinds:  # contrast's degenerate: the mean grey, Pillow's int(mean + 0.5)
                mean = gray.mean(dim=(1, 2, 3))
                mean = mean.add_(0.5).floor_() if bound == UINT8_BOUND else mean
                # Contrast's and color's flat level is 0: flat + flag x level is exact, fused or not
                added = torch.addcmul(added, p.contrast, mean)
            added = added.view(per_example)
            if "color" in kinds:
                added = torch.addcmul(added, p.gray.view(per_example), gray)
        candidates = []
        # Whole levels index both histogram ops' tables: converted once
        levels = x.long() if bound == UINT8_BOUND and {"auto_contrast", "equalized"} <= set(names) else None
        for name in names:
            if name == "smooth":
                candidates.append(smoothed(x, bound))
            elif name == "posterized":
                candidates.append(posterize_by_step(x, p.step.view(per_example), bound))
            elif name == "auto_contrast":
                candidates.append(auto_contrast_kernel(x, None, bound, levels))
            elif name == "equalized":
                candidates.append(equalize_kernel(x, None, bound, levels))
            else:
                has_fill = isinstance(fill, torch.Tensor) or fill > 0  # a per-channel fill: a (C,) tensor
                warped = warp(x, p.matrices, fill, interpolation, has_fill=has_fill)
                if interpolation == "bilinear" and bound == UINT8_BOUND:  # a resample: to the nearest level,
                    warped = warped.round_()  # as from_resampled (the final floor would darken float32 error)
                candidates.append(warped)
        if not candidates:
            degenerate = added
        elif added is None and len(candidates) == 1:
            degenerate = candidates[0]
        else:
            # Examples with a channel-constant degenerate gather a row of zeros (the last).
            rows = torch.cat([*candidates, _zero_row(x)]) if added is not None else torch.cat(candidates)
            degenerate = rows.index_select(0, p.rows.gather(0, p.kind.view(1, n)).view(n))
            if added is not None:
                degenerate = degenerate.add_(added)
        factor = p.factor.view(per_example)
        if "solarize" in kinds:  # solarize's flag (2) x the 0/1 mask: exact, fused or not
            factor = torch.addcmul(factor, p.solarize.view(per_example), _at_or_above(x, p, bound), value=-1.0)
        out = (x - degenerate).mul_(factor).add_(degenerate).clamp_(0.0, bound)
        return out.floor_() if bound == UINT8_BOUND else out


def _at_or_above(x, p: _Layer, bound):
    """1 where x >= the example's threshold (its op value), else 0, in x's dtype (solarize's mask)."""
    per_example = (x.shape[0], 1, 1, 1)
    if bound == UINT8_BOUND:  # whole levels: (x + 1 - ceil(t)) clamped to [0, 1] is the indicator
        return x.add(p.solar_offset.view(per_example)).clamp_(0.0, 1.0)
    return (x >= p.value.view(per_example)).to(x.dtype)


_POSITIONS = ConstantCache()  # per batch size and device
_ZERO_ROWS = ConstantCache()  # per image shape, dtype and device


def used_forms(kinds) -> set:
    """The degenerate images that op kinds (names) blend with."""
    return {_GEOMETRIC_FORM[0] if name not in _FORMS else _FORMS[name][0] for name in kinds}


def _zero_row(x: torch.Tensor) -> torch.Tensor:
    """A (1, C, H, W) zero image like ``x``'s, cached."""
    return _ZERO_ROWS.get((*x.shape[1:], x.dtype, str(x.device)), lambda: static(x.new_zeros(1, *x.shape[1:])))


def _positions(n: int, device) -> torch.Tensor:
    """0..n-1 on ``device``, cached per size."""
    return _POSITIONS.get((n, str(device)), lambda: static(torch.arange(n, device=device)))

