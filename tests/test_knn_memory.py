"""Running out of memory while building a class's selection graph is one line naming the cost."""
import numpy as np
import pytest

import coreaug


def test_a_graph_that_does_not_fit_in_memory_is_a_usage_error_naming_what_it_needs(monkeypatch):
    class Hungry:  # faiss's index, as it behaves when its search cannot allocate the answer
        def __init__(self, dims):
            pass

        def add(self, features):
            pass

        def search(self, features, k):
            raise MemoryError

    import faiss

    monkeypatch.setattr(faiss, "IndexFlatL2", Hungry)
    features, labels = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32), np.arange(40) % 2
    with pytest.raises(coreaug.UsageError, match=r"class of 20 examples with knn=19: it needs about 0\.0 GiB "
                                                 r"\(64 bytes per example and neighbour\); give a smaller knn"):
        coreaug.select_coreset(features, labels, 0.5, knn=100)
