"""`coreaug datasets`: the list, a description, and the not-found error as one line."""
import subprocess
import sys


def coreaug(*args, **env):
    """`coreaug datasets ARGS` in this process (a `python -m coreaug` start costs about 2 s), with
    `env` set while it runs: its exit code and its stdout and stderr apart."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from coreaug.cli.main import app

    result = CliRunner().invoke(app, ["datasets", *map(str, args)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def test_lists_every_dataset():
    proc = coreaug()
    assert proc.returncode == 0
    assert proc.stdout.split() == ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist", "svhn", "synthetic",
                                   "synthetic-cifar"]


def test_describes_a_dataset():
    proc = coreaug("digits")
    assert proc.returncode == 0 and "digits: 1438 train / 359 test images of shape (1, 8, 8), 10 classes" in proc.stdout


def test_describes_a_folder_of_images(tmp_path):
    from test_data_image_folder import write_split

    write_split(tmp_path / "pets", "train", per_class=3)
    write_split(tmp_path / "pets", "val", per_class=1)
    proc = coreaug(tmp_path / "pets")
    assert proc.returncode == 0, proc.stderr
    assert "pets: 9 train / 3 test images of shape (3, 30, 30), 3 classes" in proc.stdout  # their own size


def test_missing_dataset_is_one_line_listing_where_it_looked(tmp_path):
    proc = coreaug("cifar10", "--data-dir", tmp_path, HOME=str(tmp_path), COREAUG_DATA=str(tmp_path / "env"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert str(tmp_path) in proc.stderr and "--download" in proc.stderr


def test_the_cli_is_installed_inside_the_coreaug_package():
    """`pip install` adds one top-level package; the CLI is coreaug.cli, not a top-level `cli`."""
    import importlib.metadata

    import coreaug.cli.main

    top_level = importlib.metadata.distribution("coreaug").read_text("top_level.txt")
    assert top_level.split() == ["coreaug"]
    assert set(coreaug.cli.main.app.commands) == {"train", "select", "bench", "report", "archive", "datasets", "predict", "evaluate"}


def test_a_folder_is_stored_as_a_resized_crop_run_stores_it(tmp_path):
    """--image-size 128: a run with --weak auto takes resized crops from 146 px (128 x 256/224)."""
    from test_data_image_folder import write_split

    write_split(tmp_path / "pets", "train", per_class=2)
    write_split(tmp_path / "pets", "val", per_class=1)
    proc = coreaug(tmp_path / "pets", "--image-size", "128", "--cache-dir", tmp_path / "cache", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert "at 128 px" in proc.stdout + proc.stderr and "stored at 146 px" in proc.stdout + proc.stderr
    assert "images of shape (3, 146, 146)" in proc.stdout


def test_folder_flags_on_a_built_in_dataset_are_one_line():
    proc = coreaug("digits", "--image-size", "16")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--image-size" in proc.stderr


def test_negative_workers_are_one_line(tmp_path):
    from test_data_image_folder import write_split

    write_split(tmp_path / "pets", "train", per_class=2)
    write_split(tmp_path / "pets", "val", per_class=1)
    proc = coreaug(tmp_path / "pets", "--workers", "-1", "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "workers must be" in proc.stderr


def test_a_cifar10_folder_in_the_cwd_is_read_only_when_written_as_a_path(tmp_path):
    import os

    from test_data_image_folder import write_split

    write_split(tmp_path / "cifar10", "train", per_class=2)
    write_split(tmp_path / "cifar10", "val", per_class=1)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "HOME": str(tmp_path), "COREAUG_DATA": str(tmp_path / "env"),
           "COREAUG_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": tests}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "coreaug", "datasets", *args], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)

    folder = run("./cifar10", "--workers", "0")
    assert folder.returncode == 0 and "cifar10: 6 train / 3 test images" in folder.stdout, folder.stderr
    named = run("cifar10", "--clear-cache")
    assert named.returncode == 2 and "write ./cifar10 for the folder of that name" in named.stderr


def test_a_path_that_names_no_folder_is_one_line_that_it_does_not_exist(tmp_path):
    proc = coreaug(tmp_path / "typo")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'typo'} does not exist" in proc.stderr and "unknown dataset" not in proc.stderr


def test_a_data_dir_without_the_dataset_is_one_line_not_another_copy(tmp_path):
    env = dict(HOME=str(tmp_path), COREAUG_DATA=str(tmp_path / "env"))
    proc = coreaug("cifar10", "--data-dir", tmp_path / "typo", **env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"not found in the data folder given, {tmp_path / 'typo'} (no such folder)" in proc.stderr


def test_flags_a_built_in_dataset_ignores_are_refused_in_one_line():
    proc = coreaug("digits", "--val-fraction", "0.5", "--cache-dir", "/tmp/x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--val-fraction, --cache-dir apply to a folder of images; digits is a built-in dataset" in proc.stderr
    proc = coreaug("digits", "--workers", "0")
    assert proc.returncode == 2 and "--workers applies to a folder of images" in proc.stderr
    assert "leave it out" in proc.stderr


def test_flags_a_folder_ignores_are_refused_in_one_line(tmp_path):
    from test_data_image_folder import write_split

    write_split(tmp_path / "pets", "train", per_class=2)
    write_split(tmp_path / "pets", "val", per_class=1)
    proc = coreaug(tmp_path / "pets", "--data-dir", tmp_path, "--download")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--data-dir, --download apply to a built-in dataset" in proc.stderr
    assert "is a folder of images" in proc.stderr


def test_clear_cache_of_a_built_in_dataset_says_so_whatever_the_other_flags():
    proc = coreaug("cifar10", "--clear-cache", "--data-dir", "data")
    assert proc.returncode == 2 and "cifar10 is a built-in dataset" in proc.stderr
    assert "leave --data-dir" not in proc.stderr
