"""Greedy maximisation of facility location F(S) = sum_i max_{j in S} s(i, j).

`lazy_greedy` is the project's own kernel (numba, compiled once and cached on disk);
`apricot_greedy` runs apricot-select on the same sparse graph, as a reference.
"""
import warnings

import numba
import numpy as np
from numba.core import caching

from coreaug.files import user_cache


def numba_cache_dir() -> str:
    """Where the compiled kernel is cached: $XDG_CACHE_HOME/coreaug/numba, else ~/.cache/coreaug/numba."""
    return user_cache("numba")


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

    numba picks the cache folder when a function is decorated, i.e. at `import coreaug`: here
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


def lazy_greedy(graph, budget):
    """Greedy facility location on a candidate-by-member CSR similarity graph.

    Takes the graph of `knn_graph` and the number of examples to pick. Returns
    (order, gains): `budget` distinct candidate indices in the order greedy picked them,
    and each pick's marginal gain; gains sum to F(S). Exact: identical picks to the
    plain greedy (ties to the lowest index), evaluated lazily (Minoux's accelerated greedy).
    """
    budget = int(min(budget, graph.shape[0]))
    return _lazy_greedy(graph.indptr, graph.indices, graph.data.astype(np.float64, copy=False), budget)


def apricot_greedy(graph, budget):
    """Reference backend: apricot-select's lazy greedy on the same sparse graph.

    apricot may repeat indices when many gains tie (its issue #19); repeats are
    dropped and the budget is filled with the lowest unpicked indices (zero gain by then).
    Under ties apricot's lazy greedy can also take a zero-gain pick while others still gain,
    so F(S) may come out lower than `lazy_greedy`'s: a cross-check for untied data, not an
    exact greedy. Returns (order, gains) like `lazy_greedy`.
    """
    from apricot import FacilityLocationSelection

    budget = int(min(budget, graph.shape[0]))
    graph = graph.astype(np.float64)
    selector = FacilityLocationSelection(budget, metric="precomputed", optimizer="lazy", verbose=False)
    selector.fit(graph)
    ranking = np.asarray(selector.ranking, dtype=np.int64)
    _, first = np.unique(ranking, return_index=True)
    order = ranking[np.sort(first)]
    if order.size < budget:
        rest = np.setdiff1d(np.arange(graph.shape[0]), order)[: budget - order.size]
        order = np.concatenate([order, rest])
    return order, marginal_gains(graph, order)


def marginal_gains(graph, order):
    """Marginal gain of each pick in `order`, in order; they sum to F(order)."""
    cover = np.zeros(graph.shape[1])
    gains = np.empty(len(order))
    for t, j in enumerate(order):
        row = graph.getrow(j)
        gains[t] = np.maximum(row.data - cover[row.indices], 0).sum()
        cover[row.indices] = np.maximum(cover[row.indices], row.data)
    return gains


def facility_location_value(graph, selected):
    """F(S) = sum over members of the best similarity to a selected candidate."""
    if len(selected) == 0:
        return 0.0
    return float(graph[np.asarray(selected)].max(axis=0).toarray().sum())
