"""experiments/gpu_check.sh in its dry mode on the CPU: every section written, the epochs that fit computed
from the speed table's measurement, and a user's missing pieces named with exit code 2."""
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "gpu_check.sh"


def _image_archive(tmp_path, per_class=24, classes=3, size=8):
    """A tar.gz of train/ and test/ class folders of small JPEG images, the layout of cifar10-jpeg.tar.gz."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-cifar"
    for split, count in (("train", per_class), ("test", per_class // 3)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[..., c] = 255  # a class colour: something to learn
                Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    archive = tmp_path / "tiny-cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="tiny-cifar")
    return archive


def _run(tmp_path, python=sys.executable, **env):
    settings = dict(os.environ, GPU_CHECK_DEVICE="cpu", GPU_CHECK_RESULTS=str(tmp_path / "gpu.md"), MODEL="cnn",
                    BATCH="16", IMAGE_SIZE="8", TRAIN_LIMIT="48", ROWS="hand,none,random:0.25", MODES="eager",
                    COUNT_STEPS="0", RECIPE_EPOCHS="3", RECIPE_LIMIT="48", TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    settings.update(env)
    settings = {name: value for name, value in settings.items() if value is not None}  # None: unset
    return subprocess.run(["bash", str(SCRIPT), str(python)], capture_output=True, text=True, env=settings,
                          cwd=ROOT, timeout=900)


def test_dry_run_writes_every_section_and_the_epochs_that_fit(tmp_path):
    archive = _image_archive(tmp_path)
    (tmp_path / "gpu.md").write_text("# GPU checks\n\n## Run of 2026-11-30\n\nan earlier measurement\n")
    # A budget far above what it takes (about 30 s of CPU): a loaded machine starts Python slowly.
    done = _run(tmp_path, BUDGET_S="600", CIFAR_TAR=str(archive), GPU_CHECK_LOGS=str(tmp_path / "logs"))
    text = (tmp_path / "gpu.md").read_text()
    assert done.returncode == 0, done.stderr[-2000:] + text
    assert text.startswith("# GPU checks\n\n## Run of 2026-11-30\n\nan earlier measurement\n")  # kept
    for heading in ("## Run of", "### Machine", "### CUDA tests", "### Speed table", "### Paper recipe",
                    "### Two processes over NCCL", "### End"):
        assert heading in text, heading
    assert "(dry run on cpu)" in text and "72 training images" in text
    # Every row of the speed table was measured: the hand loop, weak only, the 25% random subset.
    table = [line for line in text.splitlines() if line.startswith("| hand") or line.startswith("| coreaug")]
    assert len(table) == 3, text
    # The written plan is the arithmetic it states.
    fit = re.search(r"Epochs that fit: (\d+) = min\((\d+), floor\(\((\d+) s left - 20 reserve - 30 start-up - "
                    r"([\d.]+) compile\) / ([\d.]+) s per epoch\)\)", text)
    assert fit, text
    epochs, most, left, compile_s, epoch_s = int(fit[1]), int(fit[2]), int(fit[3]), float(fit[4]), float(fit[5])
    assert epoch_s > 0 and epochs == max(0, min(most, math.floor((left - 50 - compile_s) / epoch_s)))
    assert epochs >= 1  # a tiny CPU epoch fits
    recipe = text[text.index("### Paper recipe"):]
    assert f"| {epochs} | {epochs} |" in recipe and "89.46 / 91.54 / 93.50" in recipe
    assert "exit status 0" in text
    # The logs outlive the temporary folder: the speed table's files and the recipe's metrics, one line an epoch.
    kept = sorted(path.name for path in (tmp_path / "logs").iterdir())
    assert {"speed.log", "speed.md", "speed.json", "recipe.log", "recipe_metrics.jsonl"} <= set(kept), kept
    assert len((tmp_path / "logs" / "recipe_metrics.jsonl").read_text().splitlines()) == epochs


def test_no_time_left_skips_the_recipe_and_still_ends(tmp_path):
    archive = _image_archive(tmp_path, per_class=6)
    done = _run(tmp_path, BUDGET_S="1", CIFAR_TAR=str(archive))
    text = (tmp_path / "gpu.md").read_text()
    assert "Skipped: no time left." in text and "Skipped: no epoch fits" in text and "### End" in text, text


@pytest.mark.parametrize("env, message", [
    (dict(CIFAR_TAR="/nonexistent/cifar10-jpeg.tar.gz"), "no CIFAR-10 archive"),
    (dict(GPU_CHECK_DEVICE="cuda"), "CUDA"),
])
def test_what_is_missing_is_named_with_exit_code_2(tmp_path, env, message):
    if env.get("GPU_CHECK_DEVICE") == "cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        env = dict(env, CIFAR_TAR=str(_image_archive(tmp_path, per_class=3)))
    done = _run(tmp_path, **env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "gpu.md").exists()  # nothing is written before the checks pass


def test_the_lease_script_runs_the_check_into_its_out_folder(tmp_path):
    """experiments/gpu_lease.sh run (dry, on the CPU): gpu_check.sh appends to $OUT/gpu.md, a copy of the
    committed results, and its logs land in $OUT/logs; the tree's results file is left as it is.

    As on a leased GPU machine, coreaug is not installed and pip cannot install it: the script runs
    this tree's source from PYTHONPATH, with cli/ linked as coreaug/cli for the run only. It runs in a
    copy of the tree: tests running beside it (pytest -n) would import coreaug.cli through the link."""
    tree = tmp_path / "tree"
    patterns = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".whl", ".gpudata",
                                      ".hypothesis", ".pytest_cache")  # (.hypothesis: written by the tests beside it)

    def left_out(folder, names):  # and the checkout's own data/ and runs/, not coreaug/data
        return patterns(folder, names) | ({"data", "runs"} & set(names) if folder == str(ROOT) else set())
    shutil.copytree(ROOT, tree, symlinks=True, ignore=left_out)
    hide = tmp_path / "hide"  # this environment's editable install of coreaug, hidden
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n")
    python = tmp_path / "python"  # pip fails, as in a read-only environment
    python.write_text(f'#!/bin/bash\n[ "$1 $2" = "-m pip" ] && {{ echo read-only >&2; exit 1; }}\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    hidden = subprocess.run([str(python), "-c", "import coreaug"], cwd=tmp_path, capture_output=True,
                            env=dict(os.environ, PYTHONPATH=str(hide)))
    assert hidden.returncode != 0  # the stand-in Python does not find coreaug by itself
    link = tree / "coreaug" / "cli"
    assert not link.exists()
    out, results = tmp_path / "out", tree / "experiments" / "results" / "gpu.md"
    before = results.read_text()
    settings = dict(os.environ, OUT=str(out), GPU_LEASE_PYTHON=str(python), PYTHONPATH=str(hide),
                    GPU_LEASE_WHEELS=str(tmp_path / "none"),
                    GPU_CHECK_DEVICE="cpu", MODEL="cnn", BATCH="16", IMAGE_SIZE="8", TRAIN_LIMIT="48", ROWS="none",
                    MODES="eager", COUNT_STEPS="0", RECIPE_EPOCHS="1", RECIPE_LIMIT="48", BUDGET_S="600",
                    CIFAR_TAR=str(_image_archive(tmp_path)), TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(tree / "experiments" / "gpu_lease.sh"), "run"], capture_output=True,
                          text=True, env=settings, cwd=tree, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = (out / "gpu.md").read_text()
    assert text.startswith(before) and "(dry run on cpu)" in text[len(before):] and "| coreaug |" in text
    log = (out / "stderr.log").read_text()
    assert (out / "logs" / "speed.md").exists() and "gpu_check: done" in log
    assert "running this tree's source from PYTHONPATH" in log
    assert "| 1 | 1 |" in text  # the benchmark and `python -m coreaug train` ran
    assert results.read_text() == before
    assert not link.exists() and not link.is_symlink()  # the link is gone with the run
    assert not (ROOT / "coreaug" / "cli").is_symlink()  # and the checkout was never linked
    assert subprocess.run(["bash", str(tree / "experiments" / "gpu_lease.sh")], capture_output=True).returncode == 2


def test_a_dry_run_leaves_the_projects_gpu_table_alone(tmp_path):
    """The documented dry run (no GPU_CHECK_RESULTS) appended its CPU figures to experiments/results/gpu.md."""
    committed = ROOT / "experiments" / "results" / "gpu.md"
    before = committed.read_bytes()
    done = _run(tmp_path, BUDGET_S="1", CIFAR_TAR=str(_image_archive(tmp_path, per_class=6)), GPU_CHECK_RESULTS=None)
    assert committed.read_bytes() == before
    written = re.search(r"results appended to (\S+)", done.stderr)[1]
    assert written.startswith(str(tmp_path / "gpu_check-dry-run")) and "(dry run on cpu)" in open(written).read()
