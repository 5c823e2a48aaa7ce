"""Greedy maximisation of facility location F(S) = sum_i max_{j in S} s(i, j).

`lazy_greedy` runs the project's own kernel (numba, compiled once and cached on disk:
greedy_kernel, loaded at the first call); `apricot_greedy` runs apricot-select on the same sparse
graph, as a reference.
"""
import atexit
import contextlib
import sys

import numpy as np

from coreaug.files import user_cache


def numba_cache_dir() -> str:
    """Where the compiled kernel is cached: $XDG_CACHE_HOME/coreaug/numba, else ~/.cache/coreaug/numba."""
    return user_cache("numba")


def lazy_greedy(graph, budget):
    """Greedy facility location on a candidate-by-member CSR similarity graph.

    Takes the graph of `knn_graph` and the number of examples to pick. Returns
    (order, gains): `budget` distinct candidate indices in the order greedy picked them,
    and each pick's marginal gain; gains sum to F(S). Exact: identical picks to the
    plain greedy (ties to the lowest index), evaluated lazily (Minoux's accelerated greedy).
    """
    from .greedy_kernel import _lazy_greedy

    budget = int(min(budget, graph.shape[0]))
    with colorama_exit_left_alone():
        return _lazy_greedy(graph.indptr, graph.indices, graph.data.astype(np.float64, copy=False), budget)


@contextlib.contextmanager
def colorama_exit_left_alone():
    """The block, leaving no exit handler of colorama's behind: numba's compile (or cache load)
    formats its messages through colorama, whose `init` registers a reset at exit that wrote ESC[0m
    to a terminal's stdout after a coreset run's last line, even with NO_COLOR. Only a handler
    registered in the block is removed, and colorama is told so (a program's own `init()` later
    registers it again); one a program registered before stays."""
    colorama = sys.modules.get("colorama.initialise")
    registered = colorama is not None and colorama.atexit_done
    try:
        yield
    finally:
        colorama = sys.modules.get("colorama.initialise")
        if colorama is not None and colorama.atexit_done and not registered:
            atexit.unregister(colorama.reset_all)
            colorama.atexit_done = False


def apricot_greedy(graph, budget):
    """Reference backend: apricot-select's lazy greedy on the same sparse graph.

    apricot may repeat indices when many gains tie (its issue #19); repeats are
    dropped and the budget is filled with the lowest unpicked indices (zero gain by then).
    Under ties apricot's lazy greedy can also take a zero-gain pick while others still gain,
    so F(S) may come out lower than `lazy_greedy`'s: a cross-check for untied data, not an
    exact greedy. Returns (order, gains) like `lazy_greedy`.
    """
    budget = int(min(budget, graph.shape[0]))
    graph = graph.astype(np.float64)
    with colorama_exit_left_alone():  # (apricot compiles with numba too)
        from apricot import FacilityLocationSelection

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
