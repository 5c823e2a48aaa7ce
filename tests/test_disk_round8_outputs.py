"""Outputs on a disk that fills or a folder that is a dangling link: one line naming the file, advice that fits
the command, and no partial file. A full disk is simulated by a write that raises ENOSPC as the OS does (the
file created, its bytes refused, no path in the error), so no file system is mounted."""
import errno
import io
import os
import re
import threading

import numpy as np
import pytest
from click.testing import CliRunner

import coreaug
from coreaug.cli.main import app
from test_report import write_run

TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--epochs", "1",
        "--quiet"]
FULL = "No space left on device"


def _full(*_):
    raise OSError(errno.ENOSPC, FULL)


def _fills_the_disk(figure, target, **options):
    """Figure.savefig as on a full disk: a first chunk of the PNG lands, the rest is refused."""
    f = open(target, "wb") if isinstance(target, (str, os.PathLike)) else target
    f.write(b"\x89PNG\r\n\x1a\n")
    f.flush()
    _full()


def test_tensorboard_on_a_full_disk_is_one_line_naming_its_event_file(tmp_path, monkeypatch):
    """TensorBoard's writer thread raised the OSError without a path, and printed its own traceback after it."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    def full(self, filename, content, mode):  # the event file is created; its bytes do not fit
        io.open(filename, mode).close()
        _full()
    monkeypatch.setattr(gfile.LocalFileSystem, "_write", full)
    seen = []
    monkeypatch.setattr(threading, "excepthook", seen.append)  # the hook a thread's traceback would reach
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", *TINY, "--out", str(run), "--tensorboard"])
    for thread in threading.enumerate():
        if type(thread).__name__ == "_AsyncWriterThread":
            thread.join(10)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    events = re.escape(str(run / "tensorboard" / "events.out.tfevents.")) + r"\S+"
    assert re.fullmatch(f"error: {FULL}: {events}; free some space and run it again with --resume "
                        r"\(it goes on after the last epoch it saved, if any\)\n", result.output), result.output
    assert seen == []


def test_out_that_is_a_dangling_link_creates_the_folder_it_points_to(tmp_path):
    """A `runs -> /scratch/...` link whose scratch was purged: FileExistsError from os.makedirs before."""
    (tmp_path / "run").symlink_to(tmp_path / "purged" / "run")
    coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1,
                                      quiet=True, out=str(tmp_path / "run")))
    assert (tmp_path / "purged" / "run" / "model.pt").is_file()

    write_run(tmp_path / "grid", "full", 0, [0.3, 0.4])
    (tmp_path / "rep").symlink_to(tmp_path / "purged" / "rep")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "grid"), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "purged" / "rep" / "report.md").is_file()

    from coreaug.bench.grid import check_writable  # bench --out: "not a writable folder" before
    (tmp_path / "grid2").symlink_to(tmp_path / "purged" / "grid2")
    check_writable(str(tmp_path / "grid2"))
    assert (tmp_path / "purged" / "grid2" / "runs").is_dir()


def test_report_plot_on_a_full_disk_names_it_and_leaves_the_earlier_plot_whole(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    write_run(tmp_path / "grid", "full", 0, [0.3, 0.4])
    out = tmp_path / "rep"
    assert CliRunner().invoke(app, ["report", str(tmp_path / "grid"), "--out", str(out)]).exit_code == 0
    before = (out / "report.png").read_bytes()
    monkeypatch.setattr(Figure, "savefig", _fills_the_disk)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "grid"), "--out", str(out)])
    assert result.exit_code == 2 and result.output == \
        f"error: {FULL}: {out / 'report.png'}; free some space and run it again\n", result.output
    assert (out / "report.png").read_bytes() == before
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no temporary file left


def test_bench_plot_on_a_full_disk_names_it_and_the_tables_written(tmp_path, monkeypatch):
    """Bench has no --resume: the same command again keeps the runs and draws the plot."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", _fills_the_disk)
    grid = tmp_path / "grid"
    command = ["bench", *TINY, "--subsets", "0.5", "--strategies", "random", "--references", "none", "--seeds", "1",
               "--out", str(grid)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert result.output.splitlines()[-1] == (
        f"error: {FULL}: {grid / 'accuracy_vs_time.png'}; the tables were written to {grid / 'results.md'}; "
        "free some space and run the same command again (it keeps the finished runs and resumes the others)")
    assert (grid / "results.md").is_file() and not (grid / "accuracy_vs_time.png").exists()
    assert not [name for name in os.listdir(grid) if name.startswith(".tmp-")]


@pytest.mark.parametrize("filename", [None, "sel.npz"])
def test_a_full_disk_outside_train_names_the_file_and_gives_no_resume_advice(tmp_path, monkeypatch, filename):
    """`select` has no run to resume (neither have archive, report, predict); a stdout that fills has no path."""
    import coreaug.selection.selection as selection

    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(40, 4)).astype(np.float32))
    np.save(tmp_path / "l.npy", np.arange(40) % 2)

    def full(self, path):
        raise OSError(errno.ENOSPC, FULL, *([str(tmp_path / filename)] if filename else []))
    monkeypatch.setattr(selection.Selection, "save", full)
    result = CliRunner().invoke(app, ["select", "--labels",  # --strategy random reads no --features
                                      str(tmp_path / "l.npy"), "--fraction", "0.5", "--out", str(tmp_path / "sel.npz"),
                                      "--strategy", "random"])
    where = f": {tmp_path / filename}" if filename else ""
    assert result.exit_code == 2 and result.output == f"error: {FULL}{where}; free some space and run it again\n"
