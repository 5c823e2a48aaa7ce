"""Disk trouble around the decoded-image cache and numba's kernel cache: a full or over-quota disk,
a small /dev/shm, a small free space, each one line that names the place and the fix."""
import errno
import importlib
import importlib.util
import os
import warnings

import numpy as np
import pytest

from coreaug.errors import UsageError

KERNELS = """
from coreaug.selection.greedy_kernel import _njit

@_njit(inline="always")
def _twice(x):
    return 2 * x

@_njit()
def _add_one(x):
    return _twice(x) + 1

@_njit()
def kernel(x):
    return _add_one(x) * _twice(x)
"""


def test_a_kernel_runs_with_one_warning_where_numbas_cache_cannot_be_written(tmp_path, monkeypatch):
    # A full or over-quota home: numba saves a compiled kernel, and each one it calls (as
    # lazy_greedy calls the heap's), at its first call, and that write fails; the run must go on.
    import numba
    from numba.core import caching

    importlib.import_module("coreaug.selection.greedy_kernel")  # first imported under the patch below, its own
    # kernels' cache stayed in tmp_path: a later test of the user's cache folder in this process failed

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "numba"))  # as $NUMBA_CACHE_DIR
    monkeypatch.setattr(caching.IndexDataCacheFile, "save", full_disk)
    (tmp_path / "kernels.py").write_text(KERNELS)
    spec = importlib.util.spec_from_file_location("kernels", tmp_path / "kernels.py")
    kernels = importlib.util.module_from_spec(spec)  # decorated as coreaug's kernels are, not compiled yet
    spec.loader.exec_module(kernels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.kernel(3) == 42
        assert kernels.kernel(2.0) == 20.0  # another signature, another compile: no second warning
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(tmp_path / "numba") in message and "No space left on device" in message
    assert "NUMBA_CACHE_DIR" in message


def _splits(tmp_path, count=4):
    """A folder's splits of `count` train files (what decode reads is made up by it)."""
    for i in range(count):
        (tmp_path / f"img{i}.png").write_bytes(b"x")
    return [("train", [(str(tmp_path / f"img{i}.png"), i % 2) for i in range(count)])]


def _grey(path):
    return np.full((8, 8, 3), 128, dtype=np.uint8)


def _no_shared_memory(path):
    # what torch raises in a DataLoader worker when /dev/shm is full (docker's default 64 MB)
    raise RuntimeError("unable to allocate shared memory(shm) for file </torch_1_2_0>: No space left on device (28)")


def test_workers_out_of_shared_memory_are_one_usage_error_saying_workers_0(tmp_path):
    from coreaug.data.image_cache import open_or_build

    with pytest.raises(UsageError) as error:
        open_or_build(_splits(tmp_path), ["a", "b"], image_size=8, decode=_no_shared_memory,
                      cache_dir=tmp_path / "cache", workers=1, progress=False)
    message = str(error.value)
    assert "/dev/shm" in message and "--workers 0" in message and "--shm-size" in message
    assert "\n" not in message and "Traceback" not in message
    assert os.listdir(tmp_path / "cache") == []  # the build is removed


@pytest.mark.parametrize("module", ["cache_decode", "cache_builds"])  # the images' file, or the build's claim
def test_a_disk_filling_while_the_cache_is_written_names_the_cache_folder_not_resume(tmp_path, monkeypatch, module):
    # The OSError of a write has no file name: the line must say which disk (the cache's) and what to do.
    from coreaug.data.image_cache import open_or_build

    class FullDisk:
        """A file opened for writing on a full disk: its writes fail, naming no file, as the OS's do."""

        def __init__(self, path, mode):
            open(path, mode).close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_open(path, mode="r", **kwargs):
        return FullDisk(path, mode) if "w" in mode else open(path, mode, **kwargs)

    monkeypatch.setattr(importlib.import_module(f"coreaug.data.{module}"), "open", full_open, raising=False)
    with pytest.raises(UsageError) as error:
        open_or_build(_splits(tmp_path), ["a", "b"], image_size=8, decode=_grey, cache_dir=tmp_path / "cache",
                      workers=0, progress=False)
    message = str(error.value)
    assert message.startswith(f"No space left on device: {tmp_path / 'cache'}: ")
    assert "--cache-dir" in message and "--resume" not in message
    assert os.listdir(tmp_path / "cache") == []  # the partial build (or its hidden claim) is removed


def test_the_cache_space_check_shows_small_sizes_in_mib_not_as_0_0_gib(tmp_path, monkeypatch):
    from coreaug.data import cache_decode
    from coreaug.data.image_cache import open_or_build

    monkeypatch.setattr(cache_decode.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 2 ** 20})())
    with pytest.raises(UsageError) as error:  # 3 images of 512 px: 2.25 MiB, on a disk with 1 MiB free
        open_or_build(_splits(tmp_path, 3), ["a", "b"], image_size=512, decode=_grey, cache_dir=tmp_path / "cache",
                      workers=0, progress=False)
    assert "need 2 MiB (5% to spare included)" in str(error.value) and "has 1 MiB free" in str(error.value)
