"""`coreaug archive`: a grid's runs in one compressed file that `coreaug report` reads as it
reads the folder, the same bytes for the same runs, and restored folders that `coreaug bench`
skips."""
import json
import lzma
import os
import shutil

import pytest

from coreaug.bench import archive_grid, load_runs, restore_grid, write_report
from coreaug.errors import UsageError

from test_report import write_run

TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
        "--epochs", "1", "--quiet"]
GRID = ["--subsets", "0.3", "--strategies", "random", "--references", "none", "--seeds", "2"]


@pytest.fixture
def fake_grid(tmp_path):
    grid = tmp_path / "A"
    for seed in range(3):
        write_run(grid, "none", seed, [0.3, 0.40 + 0.01 * seed])
        write_run(grid, "random", seed, [0.3, 0.42 + 0.02 * seed], subset=0.1)
        write_run(grid, "coreset", seed, [0.3, 0.43 + 0.01 * seed], subset=0.1,
                  metrics={"selection_overlap": 0.1 * seed})
    (grid / "runs" / "coreset-0.1-seed2" / "summary.json").unlink()  # a crashed run is kept as one
    (grid / "runs" / "random-0.1-seed0" / "checkpoint.pt").write_bytes(b"weights")  # never archived
    return grid


@pytest.fixture(scope="module")
def real_grid(tmp_path_factory):
    """A tiny grid trained by `coreaug bench` (synthetic data, one epoch)."""
    from coreaug.cli.main import main
    out = tmp_path_factory.mktemp("bench") / "grid"
    main(["bench", *TINY, *GRID, "--out", str(out)])
    return out


def test_archive_holds_each_run_as_one_json_line_without_checkpoints(fake_grid, tmp_path):
    result = archive_grid(fake_grid, to=tmp_path / "A.runs.jsonl.xz")
    lines = lzma.decompress((tmp_path / "A.runs.jsonl.xz").read_bytes()).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["name"] for r in records] == sorted(os.listdir(fake_grid / "runs"))
    assert (result.runs, result.finished) == (9, 8)
    random0 = next(r for r in records if r["name"] == "random-0.1-seed0")
    assert set(random0) == {"name", "config", "metrics", "summary"}
    assert random0["config"] == json.loads((fake_grid / "runs" / "random-0.1-seed0" / "config.json").read_text())
    assert [m["test_accuracy"] for m in random0["metrics"]] == [0.3, 0.42]
    assert next(r for r in records if r["name"] == "coreset-0.1-seed2")["summary"] is None


def test_archive_is_byte_identical_when_written_twice(fake_grid, tmp_path):
    first = archive_grid(fake_grid, to=tmp_path / "one.xz").path
    for path in (fake_grid / "runs").rglob("*.json*"):
        os.utime(path, (1e9, 1e9))  # other file times: same bytes
    second = archive_grid(fake_grid, to=tmp_path / "two.xz").path
    assert open(first, "rb").read() == open(second, "rb").read()


def test_default_archive_name_is_beside_the_grid(fake_grid):
    result = archive_grid(fake_grid)
    assert result.path == str(fake_grid) + ".runs.jsonl.xz" and os.path.isfile(result.path)


def test_archiving_the_current_folder_writes_beside_it_not_a_hidden_file_inside(fake_grid, monkeypatch, capsys):
    from coreaug.cli.main import main
    monkeypatch.chdir(fake_grid)
    main(["archive", "."])
    beside = str(fake_grid) + ".runs.jsonl.xz"
    assert os.path.isfile(beside) and f"into {beside} (" in capsys.readouterr().out
    assert not any(name.endswith(".runs.jsonl.xz") for name in os.listdir(fake_grid))


def test_report_from_the_archive_equals_the_report_from_the_folder(fake_grid, tmp_path):
    archive = archive_grid(fake_grid, to=tmp_path / "A.runs.jsonl.xz").path
    from_folder = write_report(fake_grid, out=tmp_path / "folder", target=0.42)
    from_archive = write_report(archive, out=tmp_path / "archive", target=0.42)
    for key in ("runs_csv", "cells_csv"):
        assert open(from_folder.files[key]).read() == open(from_archive.files[key]).read()
    folder_md = open(from_folder.files["md"]).read().replace(f"`{fake_grid}`", "GRID")
    archive_md = open(from_archive.files["md"]).read().replace(f"`{archive}`", "GRID")
    assert folder_md == archive_md and "`coreset-0.1-seed2`: no summary.json" in archive_md


def test_restore_writes_finished_runs_that_read_back_the_same(fake_grid, tmp_path):
    archive = archive_grid(fake_grid, to=tmp_path / "A.runs.jsonl.xz").path
    result = restore_grid(archive, out=tmp_path / "back")
    assert len(result.written) == 8 and result.left_out == ["coreset-0.1-seed2"]
    assert not (tmp_path / "back" / "runs" / "random-0.1-seed0" / "checkpoint.pt").exists()
    original = {r.name: r for r in load_runs(fake_grid) if r.finished}
    restored = {r.name: r for r in load_runs(tmp_path / "back")}
    assert restored == original
    again = restore_grid(archive, out=tmp_path / "back")  # finished runs already there are kept
    assert again.written == [] and len(again.kept) == 8


def test_restored_runs_are_skipped_by_bench_with_the_same_flags(real_grid, tmp_path, monkeypatch, capsys):
    from coreaug.cli.main import main
    import coreaug.bench.grid
    archive = tmp_path / "grid.runs.jsonl.xz"
    main(["archive", str(real_grid), "--to", str(archive)])
    main(["archive", "--restore", str(archive), "--out", str(tmp_path / "restored")])
    assert "restored 4 runs" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(coreaug.bench.grid, "train", lambda config: calls.append(config))
    main(["bench", *TINY, *GRID, "--out", str(tmp_path / "restored")])
    out = capsys.readouterr().out
    assert calls == [] and out.count("finished before, skipped") == 4 and "(0 trained now)" in out
    # the tables come out as from the grid that trained them
    assert (tmp_path / "restored" / "results.csv").read_text() == (real_grid / "results.csv").read_text()


def test_restore_refuses_a_run_name_that_is_a_path(tmp_path):
    record = {"name": "../outside", "config": {"strategy": "none", "seed": 0}, "metrics": [],
              "summary": {"final_test_accuracy": 0.5}}
    archive = tmp_path / "evil.runs.jsonl.xz"
    archive.write_bytes(lzma.compress((json.dumps(record) + "\n").encode()))
    with pytest.raises(UsageError, match="not a plain folder name"):
        restore_grid(archive, out=tmp_path / "grid")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "grid").exists()


@pytest.mark.parametrize("args, message", [
    (["archive"], "give GRID"),
    (["archive", "{tmp}/nowhere"], "is not a folder"),
    (["archive", "--restore", "{tmp}/x.xz"], "--restore needs --out"),
    (["archive", "--restore", "{tmp}/nowhere.xz", "--out", "{tmp}/g"], "is not a file"),
    (["archive", "--restore", "{tmp}/plain.txt", "--out", "{tmp}/g"], "is not a grid archive"),
])
def test_user_mistakes_are_one_line_exit_2(tmp_path, capsys, args, message):
    from coreaug.cli.main import main
    (tmp_path / "plain.txt").write_text("hello\n")
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_a_committed_layout_of_run_folders_without_runs_subfolder_is_read(fake_grid, tmp_path):
    flat = tmp_path / "kept" / "A"
    shutil.copytree(fake_grid / "runs", flat)
    assert [r.name for r in load_runs(flat)] == [r.name for r in load_runs(fake_grid)]
