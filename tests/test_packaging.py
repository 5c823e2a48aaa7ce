"""What setup.cfg declares matches what the code needs."""
import configparser
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_CFG = os.path.join(ROOT, "setup.cfg")


def _declared_floor(package):
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    for line in config["options"]["install_requires"].splitlines():
        match = re.fullmatch(rf"{package}>=(\d+)\.(\d+)", line.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    raise AssertionError(f"no {package}>=X.Y in setup.cfg's install_requires")


def test_torch_floor_covers_gradscaler_of_a_device_and_process_group_device_id():
    # torch.amp.GradScaler("cuda") came in 2.3, init_process_group(device_id=) in 2.2.
    assert _declared_floor("torch") >= (2, 3)


NO_NUMBA_CACHE = """
from numba.core import caching
impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # renamed in numba 0.61
impl._locator_classes = []  # as for a read-only install with no writable home
import numpy as np, scipy.sparse
from coreaug.selection.facility_location import lazy_greedy
graph = scipy.sparse.csr_matrix(np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.9], [0.0, 0.9, 1.0]]))
order, gains = lazy_greedy(graph, 2)
print(order.tolist(), round(float(gains.sum()), 6))
"""


def test_the_greedy_kernel_imports_and_runs_where_numba_has_nowhere_to_write_its_cache():
    proc = subprocess.run([sys.executable, "-c", NO_NUMBA_CACHE], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "[1, 0] 2.9"


NON_EDITABLE_MAIN = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__ + repr(f)]
sys.path.insert(0, {root!r})  # python -m coreaug run in the checkout: its coreaug/ comes first
sys.argv = ["coreaug", "--version"]
runpy.run_module("coreaug", run_name="__main__", alter_sys=True)
"""


def test_python_m_coreaug_runs_in_a_source_checkout_without_an_editable_install():
    proc = subprocess.run([sys.executable, "-c", NON_EDITABLE_MAIN.format(root=ROOT)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("coreaug, version ")


def _make(*args, path=None):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}" if path else os.environ["PATH"]}
    return subprocess.run(["make", "-s", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_make_updates_apts_package_lists_when_apt_does_not_know_the_dataset_package(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("as root: otherwise the recipe calls sudo")
    log = tmp_path / "apt.log"
    (tmp_path / "apt-cache").write_text("#!/bin/sh\nexit 100\n")  # fresh container: empty package lists
    (tmp_path / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    for tool in ("apt-cache", "apt-get"):
        (tmp_path / tool).chmod(0o755)
    proc = _make("data-fashion-mnist", f"FASHION_MNIST_FILE={tmp_path / 'missing.gz'}", path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["update -q", "install -y -q dataset-fashion-mnist"]


def test_make_says_when_a_new_torch_spec_is_not_installed_into_an_existing_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed").write_text("torch==2.13.0\n")  # newer than setup.cfg: nothing to reinstall
    proc = _make("install", f"VENV={venv}", "TORCH_SPEC=torch --index-url https://download.pytorch.org/whl/cu126")
    assert proc.returncode == 0, proc.stderr
    assert "make clean first" in proc.stdout and "torch==2.13.0" in proc.stdout


def test_make_tries_the_torch_index_twice_not_pips_default_five_times(tmp_path):
    # Offline (as on CI) pip's default 5 retries per package of pytorch.org's index cost about 80 s.
    venv, log = tmp_path / "venv", tmp_path / "pip.log"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / "bin" / "pip").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (venv / "bin" / "pip").chmod(0o755)
    proc = _make("install", f"VENV={venv}")
    assert proc.returncode == 0, proc.stderr
    torch_call, project_call = log.read_text().splitlines()
    assert "download.pytorch.org/whl/cpu" in torch_call and "--retries 2" in torch_call
    assert "-e .[test,plot]" in project_call


def test_the_sdist_carries_the_license_the_tests_conftest_the_manual_and_the_examples(tmp_path):
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("needs a git checkout")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(tmp_path / "src" / os.path.dirname(name), exist_ok=True)
            shutil.copy(os.path.join(ROOT, name), tmp_path / "src" / name)
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=tmp_path / "src",
                   capture_output=True, check=True, timeout=300)
    (sdist,) = tmp_path.glob("coreaug-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for name in ("LICENSE", "tests/conftest.py", "docs/index.md", "mkdocs.yml", "examples/own_loop_tensors.py"):
        assert name in names


def test_the_default_torch_spec_is_the_cpu_build_and_the_install_pages_quote_it():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        (spec,) = re.findall(r"^TORCH_SPEC \?= (.+)$", f.read(), re.MULTILINE)
    assert "download.pytorch.org/whl/cpu" in spec  # PyPI's Linux wheel of torch is the CUDA build
    for page in ("README.md", "docs/getting-started.md"):
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            assert f"`{spec}`" in " ".join(f.read().split()), page


def test_coreaug_without_arguments_prints_the_help_not_an_error(capsys):
    from coreaug.cli.main import main
    with pytest.raises(SystemExit) as exit_info:
        main([])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0 and out.startswith("Usage: ") and "train" in out and err == ""
