"""Shared test settings, applied before torch or faiss load.

One OpenMP thread and passive waiting: on a shared 2-core machine a second thread that
cannot be scheduled makes every parallel torch op wait milliseconds, so the suite runs
faster and steadier on one. (test_openmp.py checks the threaded case explicitly.)
"""
import importlib.util
import os
import pathlib
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from coreaug.checkout import find_checkouts_cli  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


find_checkouts_cli()  # `python -m pytest` in an unpacked sdist after a non-editable install (coreaug.checkout)


@pytest.fixture(autouse=True)
def _decoded_images_cache(tmp_path_factory, monkeypatch):
    """Image folders decode into a cache; the tests' caches live in the session's temporary folder."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "decoded-cache"))


EXPERIMENTS = ROOT / "experiments"


def load_experiment(name):
    """experiments/<name>.py as a module, that folder on sys.path (its scripts import each other)."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def experiment():
    """`load_experiment`, for a test module's fixture: `experiment("hand_loop")`."""
    return load_experiment
