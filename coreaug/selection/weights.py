"""Coreset weights: how many class members each selected example stands for."""
import numpy as np


def cluster_sizes(features, selected):
    """Members assigned to each selected example, by exact nearest-selected search.

    Takes one class's float32 features (n, d) and positions `selected` (k,) into them.
    Every member goes to its nearest selected example in L2 (equivalently, its most
    similar one under s = d_max - d); selected examples always count themselves, even
    when an exact duplicate was also selected. Returns int64 counts (k,) summing to n.
    """
    import faiss  # loaded at the first selection by estimates, not with `import coreaug`

    index = faiss.IndexFlatL2(features.shape[1])
    index.add(np.ascontiguousarray(features[selected]))
    _, nearest = index.search(features, 1)
    nearest = nearest[:, 0]
    nearest[selected] = np.arange(len(selected))
    return np.bincount(nearest, minlength=len(selected)).astype(np.int64)


def nearest_selected(features, points, selected):
    """(squared L2 distance, position in `features`) of the nearest of `selected` (positions) to
    each of `points` (positions), by exact search: cluster_sizes' assignment, for some points."""
    import faiss

    index = faiss.IndexFlatL2(features.shape[1])
    index.add(np.ascontiguousarray(features[selected]))
    distance, nearest = index.search(np.ascontiguousarray(features[points]), 1)
    return distance[:, 0], np.asarray(selected)[nearest[:, 0]]


def normalise_weights(counts):
    """Cluster sizes scaled to mean 1 over the selection, as float32 (the paper's gamma)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return counts.astype(np.float32)
    return (counts / counts.mean()).astype(np.float32)
