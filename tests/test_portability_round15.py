"""Round 15 (explore15-portability): coreaug where processes are spawned, files cannot be locked,
the locale is not UTF-8 or no home folder can be found; each test fails without its fix."""
import copy
import errno
import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest

import coreaug
from coreaug import files


def _folder(root, count=6, size=8):
    from PIL import Image

    for label in range(2):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        for k in range(count):
            Image.new("RGB", (size, size), (60 + 120 * label, 20 * k, 90)).save(root / f"c{label}" / f"{k}.png")
    return root


def test_a_script_without_the_main_guard_fails_at_once_where_workers_are_spawned(tmp_path):
    """Under spawn (macOS's and Windows' default) each decoding worker imports the script again,
    reached coreaug.train, and waited for the cache its parent was building: 10 minutes, then a
    message about a stalled build. Now the worker says what is wrong."""
    data = _folder(tmp_path / "pets")
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing
        multiprocessing.set_start_method("spawn", force=True)
        import coreaug
        coreaug.train(coreaug.TrainConfig(dataset={str(data)!r}, model="cnn", epochs=1, workers=1, quiet=True,
                                          cache_dir={str(tmp_path / "cache")!r}, out={str(tmp_path / "run")!r}))
    """))
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    assert 'put the script\'s calls under `if __name__ == "__main__":` (or build the cache first' in done.stderr
    assert time.monotonic() - start < 200


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    """Lustre without flock (ENOSYS) or NFS without a lock service (ENOLCK): `train --out` and
    bench's plan ended in an OSError traceback."""
    import fcntl

    def refuse(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", refuse)
    monkeypatch.setattr(files, "_UNLOCKED", set())
    out = tmp_path / "run"
    out.mkdir()
    with pytest.warns(UserWarning, match=rf"{out} cannot be locked \(Function not implemented\): another coreaug"):
        result = coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=64,
                                                   test_limit=32, batch_size=32, quiet=True, out=str(out)))
    assert len(result.history) == 1
    from coreaug.bench.archive import plan_lock

    with pytest.warns(UserWarning, match="cannot be locked"), plan_lock(str(tmp_path)):
        pass
    monkeypatch.setattr(files, "fcntl", None)  # Windows: no fcntl at all
    (tmp_path / "other").mkdir()
    with pytest.warns(UserWarning, match=r"cannot be locked \(no file locks on this platform\)"), \
            plan_lock(str(tmp_path / "other")):
        pass

    def other(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(files, "fcntl", fcntl)
    monkeypatch.setattr(fcntl, "flock", other)
    with pytest.raises(OSError, match="Bad file descriptor"), plan_lock(str(tmp_path)):  # any other error stays
        pass


def test_coreaug_imports_without_fcntl():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['fcntl'] = None; import coreaug; "
                           "print(coreaug.files.fcntl)"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr


def test_disk_images_leave_their_open_file_out_of_copies_and_pickles(tmp_path):
    """The number of its open file went into a spawned DataLoader worker ("Illegal seek", or
    another file's bytes) and into copies, closed twice."""
    from coreaug.data.disk_images import DiskImages

    path = tmp_path / "x.u8"
    path.write_bytes(bytes(range(96)))
    images = DiskImages(str(path), 2, (3, 4, 4))
    first = images.read([1])
    assert images._file.fd is not None
    for other in (copy.copy(images), pickle.loads(pickle.dumps(images))):
        assert other._file.fd is None and other.read([1]).equal(first)
        del other
    assert images.read([1]).equal(first)  # its own file still open


def test_tables_are_written_in_utf8_whatever_the_locale(tmp_path, monkeypatch):
    """Under Windows' cp1252 (or a legacy locale) `coreaug report` died on "√" after writing the
    plot, and results.md was not UTF-8 (coreaug reads its files back as UTF-8)."""
    real = os.fdopen

    def locale_default(fd, mode="r", *args, **kwargs):  # open's default where the locale is cp1252
        if "b" not in mode:
            kwargs.setdefault("encoding", "cp1252")
        return real(fd, mode, *args, **kwargs)

    monkeypatch.setattr(files.os, "fdopen", locale_default)
    files.atomic_write(tmp_path / "t.md", lambda f: f.write("± √ — 猫"))
    assert (tmp_path / "t.md").read_bytes().decode("utf-8") == "± √ — 猫"


def test_a_stdout_of_another_encoding_shows_names_it_cannot_encode_as_escapes(tmp_path):
    _folder(tmp_path / "猫")
    done = subprocess.run([sys.executable, "-m", "coreaug", "datasets", "./猫", "--workers", "0",
                           "--cache-dir", str(tmp_path / "cache")], capture_output=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONIOENCODING": "cp1252"}, timeout=300)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert b"\\u732b" in done.stdout


def test_without_a_home_folder_the_caches_go_to_a_temporary_folder_not_a_folder_named_tilde(monkeypatch):
    """HOME unset and a user id without an account: expanduser gives "~" back, and the decoded
    cache went to ./~/.cache/coreaug/decoded; the dataset search raised RuntimeError."""
    import tempfile

    from coreaug.data.cache_key import default_cache_dir
    from coreaug.data.locate import search_roots
    from coreaug.selection.facility_location import numba_cache_dir

    monkeypatch.delenv("COREAUG_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)
    monkeypatch.setattr("pathlib.Path.home", lambda: (_ for _ in ()).throw(RuntimeError("no home")))
    own = os.path.join(tempfile.gettempdir(), f"coreaug-{os.getuid()}")
    assert default_cache_dir() == os.path.join(own, "decoded") and numba_cache_dir() == os.path.join(own, "numba")
    assert str(search_roots("cifar10")[0]) == own


def test_an_out_that_cannot_be_made_is_refused_before_the_images_are_decoded(tmp_path, monkeypatch):
    """The folder's images were decoded (all of an ImageNet-size folder) before the first write to
    --out found its parent read-only."""
    from coreaug.training import run_files

    data = _folder(tmp_path / "pets")
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(run_files.os, "access", lambda path, mode: real(path, mode) and str(path) != str(locked))
    with pytest.raises(PermissionError, match=rf"Permission denied: '?{locked}"):
        coreaug.train(coreaug.TrainConfig(dataset=str(data), model="cnn", epochs=1, quiet=True, workers=0,
                                          cache_dir=str(tmp_path / "cache"), out=str(locked / "a" / "run")))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_guarded_dataloader_of_a_folder_loaded_at_the_top_level_works_under_spawn(tmp_path):
    """review18: the check for an unguarded script fired in every spawned worker that opened a
    folder's cache, built or not, so a script loading a folder at its top level (only its
    DataLoader under the guard) lost every worker; only a build or a wait is refused."""
    data = _folder(tmp_path / "pets")
    script = tmp_path / "top_level.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        import coreaug
        data = coreaug.load_dataset({str(data)!r}, progress=False, cache_dir={str(tmp_path / "cache")!r}, workers=0)
        pairs = torch.utils.data.TensorDataset(data.train_images, data.train_labels)
        if __name__ == "__main__":
            loader = torch.utils.data.DataLoader(pairs, batch_size=4, num_workers=1, multiprocessing_context="spawn")
            print("batches", sum(1 for _ in loader))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["batches", "3"]


def test_an_out_through_a_link_to_a_folder_gone_is_checked_where_it_will_be_made(tmp_path, monkeypatch):
    """review18: `runs -> /scratch/...` whose scratch was purged, in a read-only folder: the check
    asked for the link's own folder to be writable, where make_folder creates the link's target."""
    from coreaug.training import run_files

    locked, scratch = tmp_path / "ro", tmp_path / "scratch"
    locked.mkdir()
    scratch.mkdir()
    os.symlink(scratch / "purged" / "runs", locked / "runs")
    real = os.access
    monkeypatch.setattr(run_files.os, "access", lambda path, mode: real(path, mode) and str(path) != str(locked))
    run_files._check_can_make(str(locked / "runs" / "r2"))  # scratch is writable: no error
    with pytest.raises(PermissionError):
        run_files._check_can_make(str(locked / "other" / "r2"))
