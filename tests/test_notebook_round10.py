"""run_grid with worker processes from where the workers cannot follow: a script read from
stdin, names registered in a notebook. Refused in one line before grid.json is written."""
import sys
import types

import pytest

import coreaug
from coreaug.augment.registry import _POLICIES, register_policy


def _grid(tmp_path, **changes):
    config = coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=40, test_limit=20, quiet=True, **changes)
    return coreaug.run_grid(config, tmp_path / "grid", subsets=(0.5,), strategies=("random",), references=(),
                            seeds=1, jobs=2)


def test_workers_are_refused_for_a_script_from_stdin_and_for_names_registered_in_a_notebook(tmp_path, monkeypatch):
    stdin = types.ModuleType("__main__")
    stdin.__file__ = "<stdin>"
    monkeypatch.setitem(sys.modules, "__main__", stdin)
    with pytest.raises(coreaug.UsageError, match=r"this one has no file \(<stdin>, read from stdin\?\): save it as "
                                                 r"a \.py file and run that, or use jobs=1"):
        _grid(tmp_path)
    assert not (tmp_path / "grid" / "grid.json").exists()

    notebook = types.ModuleType("__main__")  # a notebook's (or python -c's) __main__ has no file
    monkeypatch.setitem(sys.modules, "__main__", notebook)

    def brighten(**settings):
        return coreaug.create_policy("weak")
    brighten.__module__ = "__main__"  # as a function defined in a notebook cell is
    monkeypatch.setitem(_POLICIES, "brighten", None)
    register_policy("brighten")(brighten)
    with pytest.raises(coreaug.UsageError, match=r"policy 'brighten' is registered in this notebook \(or python -c\), "
                                                 r"which run_grid's worker processes \(jobs >= 2\) do not import: "
                                                 r"register it in a \.py module that the notebook imports"):
        _grid(tmp_path, augment="brighten")
    assert not (tmp_path / "grid" / "grid.json").exists()


def test_selections_compare_by_what_they_select_not_by_their_timings(tmp_path):
    import numpy as np

    labels = np.arange(60) % 3
    features = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    first, again = coreaug.select_coreset(features, labels, 0.2), coreaug.select_coreset(features, labels, 0.2)
    assert first == again and first.timings is not again.timings  # the generated __eq__ raised ValueError
    random = coreaug.select_random(labels, 0.2)  # NaN objectives equal NaN ones
    random.save(tmp_path / "s.npz")
    assert coreaug.Selection.load(tmp_path / "s.npz") == random
    assert first != random and first != coreaug.select_coreset(features, labels, 0.3) and first != "coreset"
