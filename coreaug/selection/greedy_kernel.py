"""The project's greedy kernel for facility location (numba, compiled once and cached on disk).

Imported by `coreaug.selection.facility_location.lazy_greedy` at its first call, not with
`import coreaug`: numba takes ~0.2 s to load, which every command paid (`coreaug --version`
included), where only the rules that select by gradient estimates run the kernel.
"""
import warnings

import numba
import numpy as np
from numba.core import caching

from .facility_location import numba_cache_dir


class _KernelCache(caching.FunctionCache):
    """numba's on-disk cache of a kernel, where a cache that cannot be written (a full or
    over-quota disk) or read costs a compile, never the run: the first failed write warns once,
    and from then on this process compiles the kernels without saving them."""

    unwritable = False  # set for the process by the first failed write

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except OSError:
            return None

    def save_overload(self, sig, data):
        if _KernelCache.unwritable:
            return
        try:
            super().save_overload(sig, data)  # numba writes to a temporary file: a failure leaves no partial one
        except OSError as exc:
            _KernelCache.unwritable = True
            warnings.warn(f"cannot save the compiled greedy kernel in numba's cache {self._cache_path} "
                          f"({exc.strerror or exc}); each process compiles it again (a few seconds): free some "
                          "space there or set NUMBA_CACHE_DIR to a writable folder")


def _njit(**options):
    """numba.njit, cached on disk where numba finds a writable place for its cache.

    numba picks the cache folder when a function is decorated, i.e. when this module loads: here
    numba_cache_dir() (or $NUMBA_CACHE_DIR), so that `pip uninstall coreaug` leaves no cache files
    in the package's folder; where that is not writable, numba's own choice: next to this file,
    else ~/.cache/numba. A read-only install with no writable home (a container run as another
    user) has none; there the kernel is compiled in each process instead of the import failing.
    A cache whose writes fail later (a full or over-quota disk) does the same (_KernelCache).
    """
    def decorate(function):
        kernel = numba.njit(**options)(function)
        if not isinstance(kernel, numba.core.dispatcher.Dispatcher):  # NUMBA_DISABLE_JIT: the plain function
            return kernel
        own = not numba.config.CACHE_DIR  # numba reads it (from $NUMBA_CACHE_DIR) as the cache is made
        if own:
            numba.config.CACHE_DIR = numba_cache_dir()
        try:
            kernel._cache = _KernelCache(kernel.py_func)  # what njit(cache=True) does, with our cache class
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if "cannot cache" not in str(exc):
                raise
        finally:
            if own:
                numba.config.CACHE_DIR = ""
        return kernel
    return decorate


@_njit(inline="always")
def _before(keys, ids, a, b):
    """Heap order: larger gain first, lower index on ties (np.argmax's choice)."""
    return keys[a] > keys[b] or (keys[a] == keys[b] and ids[a] < ids[b])


@_njit()
def _sift_down(keys, ids, size, pos):
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        best = left
        if left + 1 < size and _before(keys, ids, left + 1, left):
            best = left + 1
        if not _before(keys, ids, best, pos):
            return
        keys[pos], keys[best] = keys[best], keys[pos]
        ids[pos], ids[best] = ids[best], ids[pos]
        pos = best


@_njit()
def _lazy_greedy(indptr, indices, data, budget):
    n = indptr.shape[0] - 1
    cover = np.zeros(n)
    keys = np.zeros(n)
    ids = np.arange(n)
    for j in range(n):  # with nothing selected, every candidate's gain is its row sum
        for p in range(indptr[j], indptr[j + 1]):
            keys[j] += max(data[p], 0.0)
    for pos in range(n // 2 - 1, -1, -1):
        _sift_down(keys, ids, n, pos)
    size = n
    order = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget)
    chosen = 0
    while chosen < budget:
        j = ids[0]
        gain = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            gain += max(data[p] - cover[indices[p]], 0.0)
        keys[0] = gain  # gains only shrink (submodularity): the stale key was an upper bound
        if size == 1 or not (_before(keys, ids, 1, 0) or (size > 2 and _before(keys, ids, 2, 0))):
            order[chosen] = j
            gains[chosen] = gain
            chosen += 1
            for p in range(indptr[j], indptr[j + 1]):
                cover[indices[p]] = max(cover[indices[p]], data[p])
            size -= 1
            keys[0], ids[0] = keys[size], ids[size]
        _sift_down(keys, ids, size, 0)
    return order, gains
