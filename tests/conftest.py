"""Shared test settings, applied before torch or faiss load.

One OpenMP thread and passive waiting: on a shared 2-core machine a second thread that
cannot be scheduled makes every parallel torch op wait milliseconds, so the suite runs
faster and steadier on one. (test_openmp.py checks the threaded case explicitly.)
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _decoded_images_cache(tmp_path_factory, monkeypatch):
    """Image folders decode into a cache; the tests' caches live in the session's temporary folder."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "decoded-cache"))
