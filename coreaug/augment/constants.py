"""The small constant tensors the policies make once and cache (tables, grids, index ranges)."""
from __future__ import annotations

import collections
import sys
from typing import Callable, Hashable

import torch

# Entries a cache keeps: a few image sizes, batch sizes and devices in use at once. Images of
# ever new sizes (photos at native size) then hold at most this many tables, not one per size.
CACHE_ENTRIES = 16


def static(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, marked as a static input of compiled graphs (`torch._dynamo.mark_static_address`):
    a compiled step then reads it where it is. Under CUDA graphs every other tensor input is
    copied into the graph's own buffer at each replay: a copy per cached table per step, for
    tensors that never change. Nothing changes for eager code. Made while dynamo traces (a
    policy first called inside a user's compiled function), it is left unmarked: dynamo
    forbids the call there, and the tensor is then the graph's own constant. Before anything
    has imported dynamo (every eager run: torch.compile imports it when a step is set up), nothing
    is compiled, so the mark is left out and dynamo's import (seconds) with it."""
    if "torch._dynamo" in sys.modules and not torch.compiler.is_compiling():
        torch._dynamo.mark_static_address(tensor)
    return tensor


class ConstantCache:
    """Values made once per key (by ``get(key, make)``), the ``size`` most recently used kept.

    ``make`` runs outside inference mode, so the tensors it makes are ordinary ones: a table
    first made under ``torch.inference_mode()`` would otherwise break every later call whose
    images require grad ("Inference tensors cannot be saved for backward"). A pickled cache
    comes back empty (a policy pickles as its settings)."""

    def __init__(self, size: int = CACHE_ENTRIES):
        self.size = size
        self._entries: collections.OrderedDict = collections.OrderedDict()

    def get(self, key: Hashable, make: Callable):
        """The value cached for ``key``, made by ``make()`` when missing."""
        entries = self._entries
        if key in entries:
            if not torch.compiler.is_compiling():  # the order only decides what goes first
                entries.move_to_end(key)
            return entries[key]
        if not torch.compiler.is_compiling() and torch.is_inference_mode_enabled():  # (dynamo takes no such call)
            with torch.inference_mode(False):
                value = make()
        else:
            value = make()
        entries[key] = value
        if len(entries) > self.size:
            entries.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self):
        return type(self), (self.size,)
