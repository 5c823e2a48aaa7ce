"""Exact k-nearest-neighbour similarity graph of one class (faiss)."""
import numpy as np

from coreaug.errors import UsageError

# What one class's graph holds at its peak, per member and neighbour: faiss's distances and ids, the
# kept float64 distances, the COO triplets and the CSR copy (measured: about 64 bytes).
BYTES_PER_NEIGHBOUR = 64


def knn_graph(features, k):
    """Sparse facility-location similarities of one class's examples.

    Takes float32 features (n, d) and the neighbours per example `k` (capped at n - 1).
    Returns a CSR matrix G (n x n, float64 data, int32 indices) whose row j holds the
    similarities s(i, j) = d_max - ||x_i - x_j|| of the examples i that j can stand for:
    every i's k nearest neighbours j (exact L2 search), plus i itself with s(i, i) = d_max.
    d_max is the largest neighbour distance in the graph (1 when all are 0: duplicates only),
    so all similarities are >= 0 and,
    with k = n - 1, G is the dense similarity matrix of CRAIG. Rows are candidates, columns
    the examples they cover: the layout apricot-select expects for a sparse precomputed matrix.
    Memory: about BYTES_PER_NEIGHBOUR * n * k bytes; running out is a UsageError that says so.
    """
    n = features.shape[0]
    k = min(k, n - 1)
    try:
        return _graph(features, n, k)
    except MemoryError:
        need = BYTES_PER_NEIGHBOUR * n * max(k, 1) / 2**30
        raise UsageError(f"out of memory building the selection graph of a class of {n} examples with knn={k}: "
                         f"it needs about {need:.1f} GiB ({BYTES_PER_NEIGHBOUR} bytes per example and neighbour); "
                         "give a smaller knn (the default is 20)") from None


def _graph(features, n, k):
    """knn_graph's work, for `n` examples and `k` (already capped) neighbours."""
    import faiss  # these two load at the first selection by estimates, not with `import coreaug` (~0.3 s)
    import scipy.sparse as sp

    members = np.arange(n)
    if k == 0:
        return sp.csr_matrix((np.zeros(n), (members, members)), shape=(n, n))
    index = faiss.IndexFlatL2(features.shape[1])
    index.add(features)
    sq_dist, neighbours = index.search(features, k + 1)
    # Drop each example's own id, wherever faiss ranked it: with duplicate rows the
    # self-match is not reliably in column 0. Rows whose own id did not come back
    # (k + 1 exact duplicates) drop their farthest neighbour instead.
    drop = neighbours == members[:, None]
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    neighbours = neighbours[keep].reshape(n, k)
    dist = np.sqrt(np.maximum(sq_dist[keep].reshape(n, k), 0.0)).astype(np.float64)
    # Every neighbour an exact duplicate (k + 1 copies of each estimate) makes d_max 0 and every
    # similarity 0, and the greedy would take the first rows whatever they are: any positive d_max
    # lets a pick cover its copies.
    d_max = float(dist.max()) or 1.0
    covered = np.concatenate([np.repeat(members, k), members])
    candidates = np.concatenate([neighbours.ravel(), members])
    similarity = np.concatenate([d_max - dist.ravel(), np.full(n, d_max)])
    graph = sp.csr_matrix((similarity, (candidates, covered)), shape=(n, n))
    graph.indices = graph.indices.astype(np.int32)
    graph.indptr = graph.indptr.astype(np.int32)
    return graph
