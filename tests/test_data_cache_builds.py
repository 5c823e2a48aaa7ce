"""Decoded-cache builds under torchrun and after kills: unique build folders, one builder per
cache with the others waiting on its progress, killed builds removed, and pre-building from
the CLI."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

import coreaug
from coreaug.data import cache_builds
from coreaug.data.cache_builds import Build, remove_stale
from coreaug.data.cache_decode import build_cache
from coreaug.data.image_cache import cache_key, caches_in, open_or_build
from coreaug.errors import UsageError

ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


def _splits(tmp_path, n=4):
    for i in range(n):
        (tmp_path / f"{i}.jpg").write_bytes(bytes([i]))
    return [("train", [(str(tmp_path / f"{i}.jpg"), i % 2) for i in range(n)]),
            ("test", [(str(tmp_path / "0.jpg"), 0)])]


def _grey(path, size=4):
    return np.full((size, size, 3), 7, dtype=np.uint8)


def _refuse(path):
    raise AssertionError(f"decoded {path} although another process builds the cache")


def _builds(root):
    return sorted(name for name in os.listdir(root) if ".building-" in name)


def _python(code, **kwargs):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ONE_THREAD, **kwargs)


def test_build_folders_are_named_by_host_and_a_random_part(tmp_path):
    first, second = Build(str(tmp_path), "k"), Build(str(tmp_path), "k")
    assert first.path != second.path  # one process, one key: still two names
    for build in (first, second):
        assert f"{socket.gethostname()}-{os.getpid()}-" in os.path.basename(build.path)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_build_killed_midway_is_removed_by_the_next_build(tmp_path, sig):
    root = tmp_path / "cache"
    code = f"""
        import time, numpy as np
        from coreaug.data.image_cache import open_or_build
        def slow(path):
            time.sleep(0.2)
            return np.zeros((4, 4, 3), np.uint8)
        files = [({str(tmp_path / 'a.jpg')!r}, 0)] * 500
        open_or_build([("train", files)], ["a"], image_size=4, decode=slow, cache_dir={str(root)!r}, progress=False)
    """
    (tmp_path / "a.jpg").write_bytes(b"x")
    builder = _python(code)
    deadline = time.monotonic() + 60
    while not (root.is_dir() and [b for b in _builds(root) if not b.startswith(".")]) and time.monotonic() < deadline:
        time.sleep(0.05)
    builder.send_signal(sig)
    builder.wait(30)
    assert _builds(root), "the kill left a partial build"
    open_or_build(_splits(tmp_path), ["a", "b"], image_size=4, decode=_grey, cache_dir=str(root), progress=False)  # another cache
    assert _builds(root) == []


def test_a_build_of_a_live_process_on_this_host_is_kept(tmp_path):
    code = f"""
        import sys, time
        from coreaug.data.cache_builds import Build
        Build({str(tmp_path)!r}, "k")
        print("built", flush=True)
        time.sleep(60)
    """
    owner = _python(code, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "built"
        assert remove_stale(str(tmp_path), stale_after=0) == 0 and len(_builds(tmp_path)) == 1
    finally:
        owner.kill()
        owner.wait()
    assert remove_stale(str(tmp_path), stale_after=3600) == 1 and _builds(tmp_path) == []


def _build_of_another_host(root, age):
    folder = root / "k.building-elsewhere-12-abcd"
    folder.mkdir()
    (folder / "owner.json").write_text(json.dumps({"host": "elsewhere", "pid": 12, "started": 1, "claimed": 0}))
    (folder / "heartbeat").write_text("0\n")
    then = time.time() - age
    os.utime(folder / "heartbeat", (then, then))
    return folder


def test_a_build_of_another_host_is_removed_only_once_its_heartbeat_is_old(tmp_path):
    fresh = _build_of_another_host(tmp_path, age=5)
    assert remove_stale(str(tmp_path), stale_after=60) == 0 and fresh.is_dir()
    os.utime(fresh / "heartbeat", (time.time() - 120, time.time() - 120))
    assert remove_stale(str(tmp_path), stale_after=60) == 1 and not fresh.exists()


def test_a_wait_lasts_as_long_as_the_build_progresses(tmp_path, monkeypatch):
    """The waiter's stall bound is 1 s; the build takes 3 s, beating all along: no time out."""
    monkeypatch.setattr(cache_builds, "HEARTBEAT_SECONDS", 0.0)
    splits, root = _splits(tmp_path), str(tmp_path / "cache")
    os.makedirs(root)
    key, files = cache_key(splits, 4)
    build = Build(root, key)

    def builder():
        for done in range(15):
            time.sleep(0.2)
            build.beat(done)
        build_cache(build, os.path.join(root, key), splits=splits, classes=["a", "b"], image_size=4, decode=_grey,
                    workers=0, skip_bad=False, progress=False, source=None, fingerprint=files)

    thread = threading.Thread(target=builder)
    started = time.monotonic()
    thread.start()
    cache = open_or_build(splits, ["a", "b"], image_size=4, decode=_refuse, cache_dir=root, progress=False,
                          stall_after=1.0)
    thread.join()
    assert time.monotonic() - started > 2.5 and cache.meta["counts"] == {"train": 4, "test": 1}


def test_a_wait_gives_up_in_one_line_when_the_build_stops_progressing(tmp_path):
    splits, root = _splits(tmp_path), str(tmp_path / "cache")
    os.makedirs(root)
    build = Build(root, cache_key(splits, 4)[0])  # this live process's, and it never beats
    with pytest.raises(UsageError, match="no progress for 1 s") as error:
        open_or_build(splits, ["a", "b"], image_size=4, decode=_refuse, cache_dir=root, progress=False, stall_after=1.0)
    assert build.path in str(error.value) and "\n" not in str(error.value)


def test_processes_asking_for_one_cache_at_once_decode_it_once(tmp_path):
    splits = _splits(tmp_path, n=20)
    code = f"""
        import time, numpy as np
        from coreaug.data.image_cache import open_or_build
        def slow(path):
            with open({str(tmp_path / 'decoded.txt')!r}, "a") as f:
                f.write(path + "\\n")
            time.sleep(0.05)
            return np.zeros((4, 4, 3), np.uint8)
        open_or_build({splits!r}, ["a", "b"], image_size=4, decode=slow, cache_dir={str(tmp_path / 'cache')!r},
                      progress=False)
    """
    ranks = [_python(code) for _ in range(2)]
    assert [rank.wait(120) for rank in ranks] == [0, 0]
    assert len((tmp_path / "decoded.txt").read_text().splitlines()) == 21  # 20 train + 1 test
    assert len(caches_in(str(tmp_path / "cache"))) == 1 and _builds(tmp_path / "cache") == []


def test_coreaug_datasets_prebuilds_the_cache_a_run_reads(tmp_path, monkeypatch):
    from test_data_image_folder import write_split

    from coreaug.training.inputs import load_run_data

    write_split(tmp_path / "pets", "train", per_class=3)
    write_split(tmp_path / "pets", "val", per_class=1)
    cache_dir = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "coreaug", "datasets", str(tmp_path / "pets"), "--image-size", "12",
                           "--cache-dir", str(cache_dir), "--workers", "0"], capture_output=True, text=True,
                          timeout=120, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    [cache] = caches_in(str(cache_dir))
    assert f"decoded cache: {cache.folder} (" in proc.stdout and cache.meta["image_shape"] == [3, 12, 12]
    monkeypatch.setattr("coreaug.data.image_folder.decode_square", _refuse)
    config = coreaug.TrainConfig(dataset=str(tmp_path / "pets"), image_size=12, cache_dir=str(cache_dir),
                                 model="cnn", quiet=True)
    data = load_run_data(config.resolved(), torch.device("cpu"))
    assert len(data.train_labels) == 9 and [c.folder for c in caches_in(str(cache_dir))] == [cache.folder]


@pytest.mark.parametrize("under", ["", "sub"])
def test_a_cache_folder_that_is_a_file_is_one_usage_error_naming_it_and_its_origin(tmp_path, monkeypatch, under):
    """It was a FileExistsError/NotADirectoryError traceback from os.makedirs."""
    (tmp_path / "afile").write_text("")
    root = tmp_path / "afile" / under if under else tmp_path / "afile"
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(root))
    with pytest.raises(UsageError, match=f"cannot use {root} as the decoded-image cache \\(from COREAUG_CACHE_DIR\\)"):
        open_or_build(_splits(tmp_path), ["a", "b"], image_size=4, decode=_grey, progress=False)
    monkeypatch.delenv("COREAUG_CACHE_DIR")  # the same folder as the variable's reads as the variable's
    with pytest.raises(UsageError, match=r"\(from --cache-dir\).*pass --cache-dir"):
        open_or_build(_splits(tmp_path), ["a", "b"], image_size=4, decode=_grey, cache_dir=str(root), progress=False)


def _cache(tmp_path, size=4, source="pets"):
    """A cache of 4 + 1 images of ``source``, built or opened (one folder's files: one key per size)."""
    splits = [("train", [(str(tmp_path / f"{i}.jpg"), i % 2) for i in range(4)]),
              ("test", [(str(tmp_path / "0.jpg"), 0)])]
    if not (tmp_path / "0.jpg").exists():
        _splits(tmp_path)
    return open_or_build(splits, ["a", "b"], image_size=size, decode=lambda p: _grey(p, size),
                         cache_dir=str(tmp_path / "cache"), progress=False, source=str(tmp_path / source))


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_cache_folder_without_a_readable_meta_json_is_replaced_by_the_next_build(tmp_path, damage):
    """A removal cut short (no meta.json) made every later build decode, then fail with "Directory
    not empty" on the rename; an empty meta.json (a crash) was a JSONDecodeError traceback."""
    folder = _cache(tmp_path).folder
    meta = os.path.join(folder, "meta.json")
    os.remove(meta) if damage == "missing" else open(meta, "w").close()
    cache = _cache(tmp_path)
    assert cache.folder == folder and cache.meta["counts"] == {"train": 4, "test": 1}
    assert [c.folder for c in caches_in(str(tmp_path / "cache"))] == [folder] and _builds(tmp_path / "cache") == []


def test_opening_a_cache_with_a_damaged_meta_json_is_one_usage_error_naming_the_folder(tmp_path):
    from coreaug.data.image_cache import ImageCache

    folder = _cache(tmp_path).folder
    with open(os.path.join(folder, "meta.json"), "w") as f:
        f.write('{"counts": {"tra')  # cut short
    with pytest.raises(UsageError, match=f"unreadable .*; delete {folder} to rebuild"):
        ImageCache(folder)


def test_caches_without_a_readable_meta_json_are_not_listed_and_clear_cache_removes_them(tmp_path):
    from coreaug.data.image_cache import clear_caches

    root = tmp_path / "cache"
    empty, missing, kept = _cache(tmp_path, 4, "a").folder, _cache(tmp_path, 5, "b").folder, _cache(tmp_path, 6, "c")
    open(os.path.join(empty, "meta.json"), "w").close()
    os.remove(os.path.join(missing, "meta.json"))
    (root / "notes").mkdir()  # not named as a cache: not coreaug's to remove
    assert [c.folder for c in caches_in(str(root))] == [kept.folder]
    new = _cache(tmp_path, 7, "c")  # a new build lists the other caches of its folder: no JSONDecodeError
    assert clear_caches(str(root), str(tmp_path / "c"))[0] == 4  # c's two caches, and the two no one's
    assert sorted(os.listdir(root)) == ["notes"] and not os.path.exists(new.folder)
    proc = subprocess.run([sys.executable, "-m", "coreaug", "datasets", "--clear-cache", "--cache-dir", str(root)],
                          capture_output=True, text=True, timeout=120, env=ONE_THREAD)
    assert proc.returncode == 0 and "removed 0 decoded caches" in proc.stdout, proc.stderr


def test_clearing_every_cache_removes_the_builds_of_killed_processes_and_keeps_live_ones(tmp_path):
    import socket

    from coreaug.data.image_cache import clear_caches

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"k.building-{socket.gethostname()}-{gone.stdout.strip()}-abcd"
    dead.mkdir()
    (dead / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout), "started": 1,
                                                 "claimed": 0}))
    (dead / "train.u8").write_bytes(bytes(1000))  # what it decoded before it was killed
    live = _build_of_another_host(tmp_path, age=5)  # beating: its owner may be decoding now
    size = sum(p.stat().st_size for p in dead.iterdir())
    assert clear_caches(str(tmp_path)) == (1, size)
    assert not dead.exists() and live.is_dir()  # the dead build was left, and not counted


def test_a_build_of_a_container_sharing_the_host_name_is_judged_by_its_heartbeat_not_its_pid(tmp_path):
    import socket

    folder = tmp_path / "k.building-same-1-abcd"
    folder.mkdir()
    # PID 1 of its own PID namespace: here PID 1 is another process, started at another time
    (folder / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid_ns": "pid:[1]", "pid": 1,
                                                   "started": 1, "claimed": 0}))
    (folder / "heartbeat").write_text("0\n")
    assert remove_stale(str(tmp_path), stale_after=60) == 0 and folder.is_dir()  # it was removed while it decoded
    os.utime(folder / "heartbeat", (time.time() - 120, time.time() - 120))
    assert remove_stale(str(tmp_path), stale_after=60) == 1 and not folder.exists()
