"""Edges of `coreaug archive` and its restore: folders of runs/ that are no runs, a grid's plan
(grid.json), restoring into a grid that already has runs (of other settings, held by a live run,
damaged), and what the command prints."""
import json
import lzma
import os
import shutil

import pytest

from coreaug.bench import archive_grid, load_runs, restore_grid, write_report
from coreaug.bench.archive import read_record
from coreaug.errors import UsageError
from coreaug.training.run_files import RunFolder

from test_report import write_run


@pytest.fixture
def grid(tmp_path):
    """Two seeds of none and of random at 10%, as a bench of two epochs leaves them (grid.json too)."""
    grid = tmp_path / "G"
    for seed in range(2):
        write_run(grid, "none", seed, [0.3, 0.4 + 0.01 * seed])
        write_run(grid, "random", seed, [0.3, 0.42 + 0.01 * seed], subset=0.1)
    names = sorted(os.listdir(grid / "runs"))
    (grid / "grid.json").write_text(json.dumps({"runs": names}))
    return grid


def archive_lines(path):
    return [json.loads(line) for line in lzma.decompress(open(path, "rb").read()).decode().splitlines()]


def test_folders_that_are_no_runs_are_left_out_of_the_archive_and_named(grid, tmp_path, capsys):
    """A `.ipynb_checkpoints` or a file manager's "... copy" made the archive unrestorable as a whole."""
    from coreaug.cli.main import main
    (grid / "runs" / ".ipynb_checkpoints").mkdir()                                  # no run file at all
    shutil.copytree(grid / "runs" / "none-seed0", grid / "runs" / "none-seed0 copy")  # a run, not a plain name
    (grid / "runs" / "notes").mkdir()
    (grid / "runs" / "notes" / "metrics.jsonl").write_text("")                      # a run's file, no config.json
    main(["archive", str(grid)])
    out = capsys.readouterr().out
    assert "archived 4 runs (4 finished)" in out and "MB)" not in out and "KiB)" in out
    assert "left out 3 folders that are no run: '.ipynb_checkpoints' (not a plain folder name), " \
           "'none-seed0 copy' (not a plain folder name), 'notes' (no config.json)" in out
    archive = str(grid) + ".runs.jsonl.xz"
    runs = ["none-seed0", "none-seed1", "random-0.1-seed0", "random-0.1-seed1"]
    assert [r["name"] for r in archive_lines(archive)] == runs
    restore_grid(archive, out=tmp_path / "back")
    assert sorted(os.listdir(tmp_path / "back" / "runs")) == runs
    # a folder holding no run's file is no missing run in a report either
    assert ".ipynb_checkpoints" not in open(write_report(grid, out=tmp_path / "report").files["md"]).read()


def test_restore_leaves_out_odd_names_an_older_archive_holds_and_names_them(grid, tmp_path, capsys):
    from coreaug.cli.main import main
    shutil.copytree(grid / "runs" / "none-seed0", grid / "runs" / "data set")
    records = load_runs(grid)
    old = tmp_path / "old.runs.jsonl.xz"  # as coreaug archive wrote it before leaving such folders out
    old.write_bytes(lzma.compress("".join(r.as_json() + "\n" for r in records).encode()))
    main(["archive", "--restore", str(old), "--out", str(tmp_path / "back")])
    out = capsys.readouterr().out
    assert "restored 4 runs" in out and "left out 1 run: data set (not a plain folder name)" in out
    assert sorted(os.listdir(tmp_path / "back" / "runs")) == ["none-seed0", "none-seed1", "random-0.1-seed0",
                                                              "random-0.1-seed1"]


def test_the_archive_keeps_the_plan_and_a_report_or_restore_names_runs_not_started(grid, tmp_path):
    """An archive of an interrupted grid reported "every run finished"."""
    plan = json.loads((grid / "grid.json").read_text())["runs"] + ["full-seed0", "full-seed1"]
    (grid / "grid.json").write_text(json.dumps({"runs": plan}))
    result = archive_grid(grid)
    assert (result.runs, result.finished, result.not_started) == (4, 4, ["full-seed0", "full-seed1"])
    report = write_report(result.path, out=tmp_path / "report")
    text = open(report.files["md"]).read()
    assert "`full-seed0`: not started" in text and "`full-seed1`: not started" in text
    assert [r.name for r in load_runs(result.path)] == [r.name for r in load_runs(grid)]
    restore_grid(result.path, out=tmp_path / "back")
    assert json.loads((tmp_path / "back" / "grid.json").read_text())["runs"] == sorted(plan)
    assert not (tmp_path / "back" / "runs" / "full-seed0").exists()
    # an archive without a plan (written before it was kept) restores no grid.json
    (grid / "grid.json").unlink()
    restore_grid(archive_grid(grid, to=tmp_path / "old.xz").path, out=tmp_path / "back2")
    assert not (tmp_path / "back2" / "grid.json").exists() and len(os.listdir(tmp_path / "back2" / "runs")) == 4


def test_restore_refuses_runs_of_other_settings_than_the_grids(grid, tmp_path):
    archive = archive_grid(grid).path
    other = tmp_path / "other"
    write_run(other, "none", 0, [0.3, 0.5, 0.55])  # three epochs, where the archive's runs have two
    with pytest.raises(UsageError, match=r"other settings than none-seed0 .*\(epochs: 3 -> 2: the grid's"):
        restore_grid(archive, out=other)
    assert os.listdir(other / "runs") == ["none-seed0"] and not (other / "grid.json").exists()


def test_restore_leaves_a_folder_a_live_run_holds_alone(grid, tmp_path):
    archive = archive_grid(grid).path
    live = tmp_path / "back" / "runs" / "none-seed1"
    live.mkdir(parents=True)
    (live / "config.json").write_text((grid / "runs" / "none-seed1" / "config.json").read_text())
    holder = RunFolder(live)
    holder._take_lock()  # as a training run holds it
    try:
        result = restore_grid(archive, out=tmp_path / "back")
    finally:
        holder.release()
    assert result.why == {"none-seed1": "in use by a live coreaug run"} and len(result.written) == 3
    assert sorted(os.listdir(live)) == ["config.json"]


def test_restore_replaces_a_damaged_run_and_an_empty_metrics_file_is_a_problem(grid, tmp_path, capsys):
    from coreaug.cli.main import main
    archive = archive_grid(grid).path
    (grid / "runs" / "none-seed0" / "summary.json").write_text('{"config": {')  # truncated
    (grid / "runs" / "none-seed1" / "metrics.jsonl").write_text("")             # emptied
    for leftover in ("checkpoint.pt", "model.pt"):  # the damaged run's weights, not the archived run's
        (grid / "runs" / "none-seed0" / leftover).write_bytes(b"old")
    assert read_record(grid / "runs" / "none-seed1", "none-seed1").problem == \
        "summary.json but no epoch in metrics.jsonl"
    main(["archive", "--restore", archive, "--out", str(grid)])
    out = capsys.readouterr().out
    assert "restored 2 runs" in out and "2 were there already; 2 of them in place of a damaged run" in out
    assert all(r.finished for r in load_runs(grid))
    assert sorted(os.listdir(grid / "runs" / "none-seed0")) == ["config.json", "metrics.jsonl", "summary.json"]


def test_archive_of_a_grids_runs_folder_goes_beside_the_grid_and_a_run_folder_is_pointed_to_its_holder(
        grid, tmp_path):
    assert archive_grid(grid / "runs").path == str(grid) + ".runs.jsonl.xz"
    flat = tmp_path / "kept"
    shutil.copytree(grid / "runs" / "none-seed0", flat / "none-seed0")
    with pytest.raises(UsageError, match=f"give the folder holding it, {flat} \\(a folder of run folders\\)"):
        archive_grid(flat / "none-seed0")
    with pytest.raises(UsageError, match=f"give its grid, {grid} "):
        archive_grid(grid / "runs" / "none-seed0")
