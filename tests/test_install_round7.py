"""Installing and removing coreaug: make's targets, tests from an sdist, the version, the cache's origin."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import coreaug
from coreaug.data.image_cache import _make_cache_folder
from coreaug.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make(*args):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    return subprocess.run(["make", "-s", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_make_clean_removes_the_venv_and_build_files_but_never_the_trained_runs():
    proc = _make("-n", "clean", "VENV=.venv")
    assert proc.returncode == 0, proc.stderr
    removed = proc.stdout.split()
    assert removed[:2] == ["rm", "-rf"] and ".venv" in removed and "build" in removed
    assert not any(word.strip("/").startswith("runs") for word in removed)
    for page in ("README.md", "docs/getting-started.md"):
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            assert "never `runs/`" in " ".join(f.read().split()), page


def _fake_python(path, version):
    """A python that answers `-c CODE ARGS` as Python `version` would, and refuses everything else (no venv)."""
    path.write_text(f"#!/bin/sh\n"
                    f"if [ \"$1\" = -c ]; then shift; exec {sys.executable} -c \"import sys, platform; "
                    f"code = sys.argv.pop(1); sys.version_info = {tuple(map(int, version.split('.')))} + ('final', 0); "
                    f"platform.python_version = lambda: '{version}'; exec(code)\" \"$@\"; fi\n"
                    f"echo \"fake python: refused $*\" >&2; exit 1\n")
    path.chmod(0o755)
    return path


def test_make_stops_on_a_python_older_than_torchs_before_making_a_venv_and_in_a_venv_made_by_one(tmp_path):
    python = _fake_python(tmp_path / "python3.9", "3.9.18")
    proc = _make("install", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}")
    assert proc.returncode != 0
    assert f"make: {python} is Python 3.9.18;" in proc.stderr and "needs Python 3.10" in proc.stderr
    assert "PYTHON=python3.11" in proc.stderr and "ResolutionImpossible" not in proc.stderr
    assert not (tmp_path / "venv").exists()
    # a .venv an older make made with that Python: make says to remove it, and how
    old = tmp_path / "old-venv"
    (old / "bin").mkdir(parents=True)
    _fake_python(old / "bin" / "python", "3.9.18")
    proc = _make("install", f"VENV={old}")
    assert proc.returncode != 0 and "is Python 3.9.18;" in proc.stderr and "make clean" in proc.stderr


def test_make_removes_a_venv_that_python_m_venv_left_half_made(tmp_path):
    python = tmp_path / "python3"  # Debian without python3-venv: the venv's python is there, its pip is not
    python.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 0\nmkdir -p "$3/bin" && touch "$3/bin/python"\n'
                      'echo "ensurepip is not available" >&2; exit 1\n')
    python.chmod(0o755)
    proc = _make("install", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}")
    assert proc.returncode != 0 and "ensurepip is not available" in proc.stderr
    assert not (tmp_path / "venv").exists()


NON_EDITABLE_TESTS = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__ + repr(f)]
sys.path.insert(0, {root!r})  # python -m pytest in an unpacked sdist: its coreaug/ comes first, without cli/
runpy.run_path({conftest!r})
from coreaug.cli.main import app
print(sys.modules["coreaug.cli.main"].__file__)
"""


def test_the_tests_import_the_cli_from_an_sdist_whose_coreaug_shadows_a_non_editable_install():
    code = NON_EDITABLE_TESTS.format(root=ROOT, conftest=os.path.join(ROOT, "tests", "conftest.py"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == os.path.join(ROOT, "cli", "main.py")


def _released_versions():
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        return re.findall(r"^## \[(\d+\.\d+\.\d+|Unreleased)\]", f.read(), re.MULTILINE)


def test_the_version_has_one_source_and_is_a_dev_release_after_the_last_one_while_unreleased_changes_wait():
    from setuptools.config.setupcfg import read_configuration

    assert read_configuration(os.path.join(ROOT, "setup.cfg"))["metadata"]["version"] == coreaug.__version__
    headings = _released_versions()
    last = next(tuple(map(int, v.split("."))) for v in headings if v != "Unreleased")
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(\.dev\d+)?", coreaug.__version__)
    assert match, coreaug.__version__
    if headings[0] == "Unreleased":
        assert match.group(4) and tuple(map(int, match.groups()[:3])) > last
    else:
        assert not match.group(4) and tuple(map(int, match.groups()[:3])) == last


def test_the_package_docstring_points_to_help_an_installed_copy_has():
    assert "coreaug --help" in coreaug.__doc__ and "help(coreaug.train)" in coreaug.__doc__


@pytest.mark.parametrize("given,origin", [("env", "(from COREAUG_CACHE_DIR)"), ("flag", "(from --cache-dir)"),
                                          ("default", "(the default)")])
def test_an_unusable_cache_folder_is_blamed_on_where_it_came_from(tmp_path, monkeypatch, given, origin):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv("COREAUG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the default: XDG_CACHE_HOME/coreaug/decoded
    if given == "env":
        monkeypatch.setenv("COREAUG_CACHE_DIR", str(blocker))
    root = str(blocker) if given != "default" else str(blocker / "coreaug" / "decoded")
    # a run's config fills cache_dir with the default folder (COREAUG_CACHE_DIR's) when none was given
    cache_dir = os.path.realpath(root) if given != "flag" else str(blocker)
    if given == "flag":
        monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(UsageError) as error:
        _make_cache_folder(root, cache_dir)
    assert f"decoded-image cache {origin}:" in str(error.value)


def test_the_greedy_kernel_is_cached_in_the_users_cache_not_in_the_package_folder_pip_uninstall_removes():
    from coreaug.selection import facility_location, greedy_kernel

    user_cache = facility_location.numba_cache_dir()
    try:
        os.makedirs(user_cache, exist_ok=True)  # numba made it at import, where it could
    except OSError:
        pytest.skip("the user's cache folder is not writable: numba caches elsewhere")
    if os.environ.get("NUMBA_CACHE_DIR") or not os.access(user_cache, os.W_OK):
        pytest.skip("numba caches elsewhere: $NUMBA_CACHE_DIR is set, or the user's cache folder is not writable")
    cache_path = greedy_kernel._lazy_greedy._cache._cache_path  # numba's locator, chosen at import
    assert cache_path.startswith(user_cache + os.sep)
    assert not cache_path.startswith(os.path.dirname(greedy_kernel.__file__))
