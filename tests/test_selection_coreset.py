"""select_coreset end to end: weights, inputs of any kind, save/load."""
import numpy as np
import pytest
import torch

import coreaug
from coreaug.selection import budget_size


def blobs(n=300, classes=3, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    return (rng.normal(size=(n, dim)) + labels[:, None]).astype(np.float32), labels


def test_weights_equal_brute_force_nearest_selected_counts():
    x, y = blobs()
    sel = coreaug.select_coreset(x, y, 0.1, knn=7)
    counts = np.zeros(len(sel))
    for i in range(len(y)):
        same = np.flatnonzero(y[sel.indices] == y[i])
        d = np.linalg.norm(x[sel.indices[same]] - x[i], axis=1)
        counts[same[np.argmin(d)]] += 1
    np.testing.assert_allclose(sel.weights, counts / counts.mean(), rtol=1e-5)


def test_selected_examples_are_unique_class_members_in_greedy_order():
    x, y = blobs()
    sel = coreaug.select_coreset(x, y, 0.3)
    assert sel.indices.dtype == np.int64 and len(np.unique(sel.indices)) == len(sel) == budget_size(0.3, 300)
    assert sel.strategy == "coreset" and sel.objective > 0
    assert set(sel.timings) >= {"knn", "greedy", "weights", "total"}
    assert (np.diff(y[sel.indices]) >= 0).all()  # grouped by class, classes ascending


def test_coreset_beats_random_on_the_facility_location_objective():
    from coreaug.selection import facility_location_value, knn_graph
    x, y = blobs(n=600, classes=2)
    sel = coreaug.select_coreset(x, y, 0.05, knn=20)
    rnd = coreaug.select_random(y, 0.05, seed=3)
    members = np.flatnonzero(y == 0)
    graph = knn_graph(x[members], 20)
    pos = {m: p for p, m in enumerate(members)}
    value = lambda s: facility_location_value(graph, [pos[i] for i in s.indices if y[i] == 0])  # noqa: E731
    assert value(sel) > value(rnd)


def test_torch_inputs_give_the_same_selection_as_numpy():
    x, y = blobs()
    a = coreaug.select_coreset(x, y, 0.2)
    b = coreaug.select_coreset(torch.from_numpy(x).double(), torch.from_numpy(y), 0.2)
    assert a.indices.tolist() == b.indices.tolist()
    np.testing.assert_allclose(a.weights, b.weights)


def test_fraction_one_selects_everyone_with_weight_one():
    x, y = blobs(n=50)
    sel = coreaug.select_coreset(x, y, 1.0)
    assert sorted(sel.indices.tolist()) == list(range(50))
    np.testing.assert_allclose(sel.weights, 1.0)


def test_save_load_round_trip(tmp_path):
    x, y = blobs()
    sel = coreaug.select_coreset(x, y, 0.2)
    path = tmp_path / "sel.npz"
    sel.save(path)
    back = coreaug.Selection.load(path)
    assert back.indices.tolist() == sel.indices.tolist()
    np.testing.assert_array_equal(back.weights, sel.weights)
    assert back.strategy == "coreset" and back.timings == sel.timings and back.n_total == 300
    assert back.objective == pytest.approx(sel.objective)
    assert [p.name for p in tmp_path.iterdir()] == ["sel.npz"]  # no temp files left


def test_maxloss_takes_the_highest_losses_of_each_class():
    y = np.array([0, 0, 0, 1, 1, 1])
    losses = np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.8])
    sel = coreaug.select_maxloss(losses, y, 4 / 6)
    assert sel.indices.tolist() == [1, 2, 5, 3]
    np.testing.assert_array_equal(sel.weights, 1.0)


def test_random_is_seeded():
    y = np.arange(100) % 4
    assert coreaug.select_random(y, 0.3, seed=1).indices.tolist() == coreaug.select_random(y, 0.3, seed=1).indices.tolist()
    assert coreaug.select_random(y, 0.3, seed=1).indices.tolist() != coreaug.select_random(y, 0.3, seed=2).indices.tolist()


def test_all_identical_confident_examples_still_fill_the_budget():
    y = np.repeat([0, 1], 100)
    logits = np.where(np.arange(2)[None, :] == y[:, None], 20.0, -20.0)  # softmax - onehot ~ 0
    g = coreaug.logit_gradients(logits, y)
    sel = coreaug.select_coreset(g, y, 0.25)
    assert len(np.unique(sel.indices)) == 50
    assert sel.weights.sum() == pytest.approx(50)


def test_saved_file_gets_ordinary_permissions(tmp_path):
    import os
    x, y = blobs(n=30)
    coreaug.select_coreset(x, y, 0.2).save(tmp_path / "sel.npz")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "sel.npz").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_class_at_a_tiny_common_scale_selects_as_at_a_usual_one():
    rng = np.random.default_rng(0)
    centres, sizes = [np.zeros(4), np.eye(4)[0], np.eye(4)[1]], [30, 20, 10]
    x = np.concatenate([c + rng.normal(0, 0.05, (s, 4)) for c, s in zip(centres, sizes)]).astype(np.float32)
    x = np.concatenate([x, x])  # class 1 as given, class 0 at 2**-90 (float32 squared distances underflow)
    y = np.repeat([0, 1], 60)
    tiny = x * np.where(y == 0, 2.0 ** -90, 1.0).astype(np.float32)[:, None]
    usual, sel = coreaug.select_coreset(x, y, 6 / 120), coreaug.select_coreset(tiny, y, 6 / 120)
    assert sel.indices.tolist() == usual.indices.tolist()  # was picks 0, 1, 2 for class 0: all in one cluster
    np.testing.assert_array_equal(sel.weights, usual.weights)
    assert np.round(sel.weights[:3] / sel.weights[:3].sum() * 60).tolist() == [30, 20, 10]
    assert sel.class_objectives.tolist() == [usual.class_objectives[0] * 2.0 ** -90, usual.class_objectives[1]]
