"""Round 16: a grid whose folder dataset was moved (the message says how to keep its runs; the
report lists the settings its runs differ in)."""
import os
import re

import pytest

import coreaug
from coreaug.bench.report import write_report
from coreaug.errors import UsageError

from test_bench_round7 import image_folder


def test_a_grid_whose_folder_was_moved_names_the_link_that_keeps_its_runs_and_reports_both_paths(tmp_path):
    data = image_folder(tmp_path / "pets")
    grid, cache = tmp_path / "grid", str(tmp_path / "cache")

    def run(dataset, seeds=1):
        config = coreaug.TrainConfig(dataset=str(dataset), model="cnn", epochs=1, quiet=True, batch_size=4,
                                     cache_dir=cache)
        return coreaug.run_grid(config, grid, subsets=(0.5,), strategies=("random",), references=(), seeds=seeds,
                                jobs=1)

    run(data)
    moved = tmp_path / "moved"
    os.rename(data, moved)
    with pytest.raises(UsageError, match=f"{data} is gone: .*ln -s {moved} {data}"):
        run(moved)
    with pytest.raises(UsageError, match=f"different config .*ln -s {moved} {data}"):  # the resume check says it too
        coreaug.train(coreaug.TrainConfig(dataset=str(moved), model="cnn", epochs=1, quiet=True, batch_size=4,
                                          cache_dir=cache, strategy="random", subset=0.5, resume=True,
                                          out=str(grid / "runs" / "random-0.5-seed0")))
    os.symlink(moved, data)
    assert run(moved).trained == 0  # the finished run is the grid's again, not refused
    run(moved, seeds=2)  # seed 1 trains now, and records the folder's real path
    write_report(str(grid), out=str(tmp_path / "report"))
    text = (tmp_path / "report" / "report.md").read_text()
    shared = next(line for line in text.splitlines() if line.startswith("Settings every run"))
    assert not re.search("[:,] dataset=", shared) and f'its runs differ in dataset ("{moved}", "{data}")' in shared


def test_a_message_about_another_dataset_adds_no_note_where_the_old_folder_is_still_there(tmp_path):
    from coreaug.training.run_files import dataset_note

    old, new = image_folder(tmp_path / "a"), image_folder(tmp_path / "b")
    assert dataset_note({"dataset": str(old)}, [("dataset", str(old), str(new))]) == ""
    assert dataset_note({"dataset": str(tmp_path / "gone")}, [("epochs", 1, 2)]) == ""
    assert dataset_note({"dataset": "digits"}, [("dataset", "digits", str(new))]) == ""
    assert "ln -s" in dataset_note({"dataset": str(tmp_path / "gone")}, [("dataset", "x", str(new))])
