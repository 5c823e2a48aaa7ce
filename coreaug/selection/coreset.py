"""`select_coreset`: per-class weighted coresets by greedy facility location (CRAIG)."""
import time

import numpy as np

from coreaug.files import warn_at_caller

from .budgets import class_members
from .checks import (BALANCES, check_bool, check_choice, check_features, check_fraction, check_int, check_keep,
                     check_labels, check_positive_int)
from .facility_location import apricot_greedy, lazy_greedy
from .knn import knn_graph
from .selection import Selection
from .weights import cluster_sizes, nearest_selected, normalise_weights

APRICOT_CLASSES = 20  # classes past which backend="apricot" (a compile per class's fit) is warned about

def load_selection_libraries():
    """Load faiss, scipy.sparse and the greedy kernel (numba, its compiled code from the disk cache)
    now, by a selection of four examples (~0.5 s the first time in a process; `import coreaug` loads
    none of them): a run calls this before its clock starts, so that its first selection's seconds
    do not carry them."""
    select_coreset(np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0, 0, 1, 1]), 0.5)


BACKENDS = ("own", "apricot")
DEFAULT_KNN = 20
# Below this largest magnitude a class's float32 squared distances can fall under float32's
# smallest normal number (2**-126 > (2**-40 * 2**-23) ** 2): such a class is scaled up first.
SMALLEST_SCALE = 2.0 ** -40


def select_coreset(features, labels, fraction, *, balance="equal", knn=DEFAULT_KNN, backend="own",
                   keep=None, drop_singletons=False, tie_seed=None):
    """Select a weighted coreset whose gradients cover the whole set's (CRAIG, per class).

    Takes per-example gradient estimates `features` (n, d) (e.g. from `logit_gradients`)
    and integer `labels` (n,), as numpy arrays or torch tensors on any device (features of
    any float dtype, bfloat16 included; finite, and small enough for float32 distances; a class
    whose values all lie below 2**-40 is scaled up by a power of two first, exactly), and
    the subset `fraction` in (0, 1]. Per class, builds the exact `knn`-nearest-neighbour
    similarity graph (s = d_max - distance, `knn_graph`), maximises facility location
    greedily to the class budget (`backend="own"`: the project's lazy-greedy kernel, an exact
    greedy; `"apricot"`: apricot-select on the same graph, a cross-check whose lazy greedy may
    take a zero-gain pick while others gain, and so score lower, when similarities tie, e.g. on
    duplicate or rounded estimates; it compiles its kernels at every fit, one a class: about a
    second and several MB, kept until the process ends, per class, warned about past
    `APRICOT_CLASSES`), then weights every pick by the number
    of class members nearest to it, normalised to mean 1. `knn >= class size - 1` gives
    the exact dense objective; the graph takes about 64 bytes per member and neighbour of a class
    (20,000 members at knn 1000: about 1.2 GiB), and running out of memory is a UsageError. The
    budget is round(fraction * n) in total (at least 1), split over
    classes by `balance` ("equal" or "proportional", see `class_budgets`); the leftover examples
    of a budget that does not split evenly go, among classes that tie, to the lower class
    positions, or with `tie_seed` (an integer >= 0) in an order drawn from it. (`coreaug select`
    passes its --seed, 0 by default, and CoresetAugmentation `seed * 100003 + epoch`: pass the
    same `tie_seed` to pick what they pick.)

    `keep` (bool (n,), optional) restricts each class's ground set: examples outside it are
    neither picked nor counted in the weights (a class keeps at least its budget, the kept
    ones first). `drop_singletons` replaces picks that stand for no one but themselves (cluster
    size 1, CRUST's sign of a noisy label) by the next greedy picks, up to the budget.

    The selection is deterministic for a given `tie_seed` on the same number of threads: faiss'
    distances differ in their last bits on another count, which can break a near tie in the greedy
    another way (a few picks in thousands). Returns a `Selection` with indices,
    weights, per-class objectives and timings.
    """
    start = time.perf_counter()
    x = check_features(features)
    y = check_labels(labels, n=x.shape[0])
    fraction = check_fraction(fraction)
    check_choice(balance, "balance", BALANCES)
    check_choice(backend, "backend", BACKENDS)
    knn = check_positive_int(knn, "knn")
    check_int(tie_seed, "tie_seed", 0, optional=True)
    keep = None if keep is None else check_keep(keep, y.size)
    drop_singletons = check_bool(drop_singletons, "drop_singletons")
    greedy = lazy_greedy if backend == "own" else apricot_greedy

    classes, budgets, members_of = class_members(y, fraction, balance, tie_seed)
    fits = int(np.count_nonzero(budgets))
    if backend == "apricot" and fits > APRICOT_CLASSES:
        warn_at_caller(f"backend='apricot' compiles its kernels at every fit, one for each of {fits} classes: about a "
                       "second and several MB a class, kept until the process ends; backend='own' is the exact "
                       "greedy, in milliseconds")
    picked, counts, objectives = [], [], np.zeros(classes.size)
    timings = {"knn": 0.0, "greedy": 0.0, "weights": 0.0}
    for c, (members, budget) in enumerate(zip(members_of, budgets)):
        if budget == 0:
            continue
        if keep is not None:
            members = _kept_members(members, keep[members], budget)
        class_x, scale = _at_unit_scale(np.ascontiguousarray(x[members], dtype=np.float32))
        t0 = time.perf_counter()
        graph = knn_graph(class_x, knn)
        t1 = time.perf_counter()
        if drop_singletons:
            order, objective, sizes = _without_singletons(greedy, graph, class_x, budget)
        else:
            order, gains = greedy(graph, budget)
            objective = gains.sum()
        t2 = time.perf_counter()
        counts.append(sizes if drop_singletons else cluster_sizes(class_x, order))
        t3 = time.perf_counter()
        picked.append(members[order])
        objectives[c] = objective * scale
        timings["knn"] += t1 - t0
        timings["greedy"] += t2 - t1
        timings["weights"] += t3 - t2
    timings["total"] = time.perf_counter() - start
    return Selection(
        indices=np.concatenate(picked).astype(np.int64),
        weights=normalise_weights(np.concatenate(counts)),
        strategy="coreset", classes=classes.astype(np.int64), class_counts=budgets.astype(np.int64),
        class_objectives=objectives, timings=timings, n_total=int(y.size),
    )


def _at_unit_scale(class_x):
    """One class's float32 features, and the power of two they were divided by: 1 unless their
    largest magnitude is below `SMALLEST_SCALE`, where squared distances in float32 would lose
    their digits or vanish and the greedy would take the first rows. Then they are scaled into
    [0.5, 1): a power of two scales every distance exactly, so the picks and weights are those
    of the same features at a usual scale, and the objective times the power is the features' own."""
    largest = float(np.abs(class_x).max())
    if largest == 0 or largest >= SMALLEST_SCALE:
        return class_x, 1.0
    exponent = int(np.frexp(largest)[1])  # largest = m * 2**exponent with m in [0.5, 1)
    return np.ldexp(class_x, -exponent).astype(np.float32), 2.0 ** exponent


def _kept_members(members, kept, budget):
    """A class's members restricted to the kept ones, topped up to `budget` in index order."""
    if kept.sum() >= budget:
        return members[kept]
    return np.sort(np.concatenate([members[kept], members[~kept][:budget - int(kept.sum())]]))


def _next_candidates(greedy, graph, order, after, count, held):
    """(order, after, picks): the next `count` picks of the greedy `order` from position `after`
    that are not `held`, the order extended as needed up to the class size (apricot's order, unlike
    the own kernel's, may change before `after` when extended: a pick held already is passed over)."""
    n, fresh = graph.shape[0], []
    while len(fresh) < count:
        if after >= len(order):
            if len(order) >= n:
                break
            order, _ = greedy(graph, min(n, max(2 * len(order), after + count)))
            continue
        if order[after] not in held:
            fresh.append(order[after])
        after += 1
    return order, after, np.asarray(fresh, dtype=order.dtype)


def _without_singletons(greedy, graph, class_x, budget):
    """Greedy picks with singleton clusters replaced by later picks: (picks, F(picks), cluster sizes).

    Starting from the first `budget` greedy picks, the picks whose cluster (each member with its
    nearest pick, as cluster_sizes assigns them) is themselves alone are dropped and the next
    candidates of the greedy order, extended as needed up to the class size, take their places,
    until no pick is alone or the candidates run out (then the dropped picks fill the set, first
    dropped first). The set with the fewest singletons is kept, the earliest of equals: the plain
    coreset when no replacement helps. The picks are in greedy order. Each round searches the
    class against the new picks only (a dropped pick's cluster was itself)."""
    n = class_x.shape[0]
    order, _ = greedy(graph, min(n, 2 * budget))
    held, after, dropped = np.asarray(order[:budget]), budget, []
    distance, owner = nearest_selected(class_x, np.arange(n), held)
    owner[held], distance[held] = held, 0
    best = None
    while True:
        alone = np.bincount(owner, minlength=n)[held] == 1
        count = int(alone.sum())
        if best is None or count < best[0]:
            best = (count, held)
        if not count:
            break
        order, after, new = _next_candidates(greedy, graph, order, after, count, set(held.tolist()))
        if not new.size:  # the class's every example tried
            break
        gone = held[alone]
        dropped += gone.tolist()
        held = np.concatenate([held[~alone], new])
        if held.size < budget:  # the last candidates: the dropped picks, first dropped first, fill the set
            taken = set(held.tolist())
            refill = np.asarray([pick for pick in dropped if pick not in taken][:budget - held.size], dtype=held.dtype)
            held, new = np.concatenate([held, refill]), np.concatenate([new, refill])
        # the new picks take the members nearer to them; the dropped ones, alone before, join their nearest pick
        nearer, taker = nearest_selected(class_x, np.arange(n), new)
        moved = nearer < distance
        owner[moved], distance[moved] = taker[moved], nearer[moved]
        gone = gone[~np.isin(gone, held)]
        if gone.size:
            distance[gone], owner[gone] = nearest_selected(class_x, gone, held)
        owner[held], distance[held] = held, 0
    rank = {pick: position for position, pick in enumerate(order)}
    picks = np.array(sorted(best[1].tolist(), key=lambda pick: rank.get(pick, n)), dtype=order.dtype)
    # F of the picks kept (what each member's best pick gives it), not the sum of their gains in
    # the longer greedy order, which counts the dropped picks' cover as theirs.
    objective = float(graph[picks].max(axis=0).sum())
    return picks, objective, cluster_sizes(class_x, picks)
