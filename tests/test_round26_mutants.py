"""Round 26: tests for the code changes (mutants) that no test caught in explore26-mutation3."""
import csv
import gzip
import json
import lzma
import math
import os
import re
import socket
import unicodedata

import pytest
import torch
from PIL import Image

import coreaug
from coreaug.bench import archive_grid, load_runs, restore_grid, time_to_target, write_report
from coreaug.bench.archive import read_archive
from coreaug.bench.tables import add_timings, group_rows, markdown_table
from coreaug.data import ImageDataset, cache_builds
from coreaug.errors import CallerWarning, UsageError

from test_bench_timing import row as timing_row
from test_report import write_run
from test_use_run import cli


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished 1-epoch run on digits (ten classes '0'..'9', 1-channel 8x8 images): its folder."""
    out = tmp_path_factory.mktemp("r26") / "run"
    coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=64, test_limit=32,
                                      batch_size=32, quiet=True, out=str(out)))
    return out


def _images(count, seed=0):
    return torch.randint(0, 256, (count, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _pngs(folder, count, unreadable=()):
    """`count` grey 8x8 PNGs 0.png, 1.png, ... in `folder` (those at positions `unreadable`: bytes of no image)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"{i}.png"
        if i in unreadable:
            path.write_bytes(b"not an image")
        else:
            Image.new("L", (8, 8), 60 * i % 256).save(path)
        files.append(str(path))
    return files


def test_evaluate_maps_a_datasets_classes_onto_the_runs_by_name(digits_run):
    """explore26-mutation3 TM14: evaluate(ImageDataset) could score a dataset's labels as the run's class indices:
    a dataset naming its classes in another order ('9'..'0') was scored against the wrong classes."""
    run = coreaug.load_run(str(digits_run))
    images = _images(40)
    answers = run.probabilities(images).argmax(1)
    names = [str(9 - i) for i in range(10)]  # the run's classes, in the other order
    labels = 9 - answers  # each image labelled with the run's answer, by this dataset's index of that class
    data = ImageDataset("reversed", images, labels, images, labels, 10, names, (0.5,), (0.25,), "generated")
    result = run.evaluate(data)
    assert (result.accuracy, result.correct, result.total) == (1.0, 40, 40)


def test_evaluate_of_labelled_files_skipping_the_first_pairs_the_others_with_their_own_labels(digits_run, tmp_path):
    """explore26-mutation3 TM10: with skip_bad_images=True the labels of the readable files could be the first
    len(readable) labels: an unreadable FIRST file shifted every label onto the next image."""
    run = coreaug.load_run(str(digits_run))
    files = _pngs(tmp_path, 4, unreadable={0})
    result = run.evaluate((files, torch.tensor([9, 1, 2, 3])), skip_bad_images=True)
    answers = [p.classes[0] for p in run.predict(files[1:])]
    assert {name: total for name, (_, total) in result.per_class.items()} == {"1": 1, "2": 1, "3": 1}
    assert result.correct == sum(answer == label for answer, label in zip(answers, "123"))
    assert result.total == 3 and len(result.skipped) == 1


def test_evaluate_refuses_a_dataset_without_class_names_of_another_class_count(digits_run):
    """explore26-mutation3 TM7: a 3-class dataset without class names could be scored as the run's classes 0-2."""
    run = coreaug.load_run(str(digits_run))
    images, labels = _images(20), torch.arange(20) % 3
    data = ImageDataset("other", images, labels, images, labels, 3, None, (0.5,), (0.25,), "generated")
    with pytest.raises(UsageError, match=r"^other has 3 classes, the run's model 10; evaluate on a dataset of the "
                                         r"run's classes$"):
        run.evaluate(data)


def test_evaluate_of_files_skipping_bad_ones_refuses_fewer_labels_than_files(digits_run, tmp_path):
    """explore26-mutation3 TM11: with skip_bad_images=True, 3 files and 2 labels gave an IndexError, not the
    refusal the path without skipping gives."""
    run = coreaug.load_run(str(digits_run))
    files = _pngs(tmp_path, 3)
    with pytest.raises(UsageError, match=r"^evaluate\(\(images, labels\)\): 3 images but 2 labels; give one label "
                                         r"per image, in order$"):
        run.evaluate((files, torch.tensor([1, 2])), skip_bad_images=True)


def test_predict_names_exactly_three_unreadable_images_without_and_0_more(digits_run, tmp_path):
    """explore26-mutation3 TM3: with as many unreadable images as the warning names (3), it ended "and 0 more"."""
    run = coreaug.load_run(str(digits_run))
    files = _pngs(tmp_path, 4, unreadable={0, 1, 2})
    with pytest.warns(CallerWarning) as caught:
        predictions = run.predict(files, skip_bad_images=True)
    assert [p.image for p in predictions] == files[3:]
    message = str(caught[0].message)
    assert message.startswith("left out 3 unreadable images of 4: ") and message.count("cannot read image") == 3
    assert "more" not in message


def test_a_run_stopped_after_its_last_epoch_and_summary_is_said_to_have_finished(digits_run, monkeypatch):
    """explore26-mutation3 T5: a stop once the last epoch and summary.json were written was told to continue the
    run ("stopped after epoch 1 of 1") instead of "the run had finished"."""
    from coreaug.cli import train as cli_train

    monkeypatch.setattr(cli_train, "resume_command", lambda out: f"coreaug train --resume --out {out}")
    line = cli_train.stopped_line("interrupted", str(digits_run), 1)
    assert line == f"interrupted: the run had finished; its result: coreaug train --resume --out {digits_run}"


def _lines(path, start):
    return [line for line in open(path).read().splitlines() if line.startswith(start)]


def _section(path, title):
    return open(path).read().split(f"## {title}\n")[1].split("\n## ")[0]


def test_seeds_that_tie_exactly_give_no_interval_and_no_verdict(tmp_path):
    """explore26-mutation3 RP3: the TIED rule could go: coreset 2 points above random on every seed (a std that is
    float rounding) got the interval +2.00 to +2.00 and "yes, above"."""
    grid = tmp_path / "A"
    for seed in range(3):
        write_run(grid, "random", seed, [0.40 + seed / 100], subset=0.1)
        write_run(grid, "coreset", seed, [0.42 + seed / 100], subset=0.1)
    result = write_report(grid, out=tmp_path / "report")
    paired = _lines(result.files["md"], "| coreset")[1]
    assert paired == "| coreset | 10% | 3 | +2.00 ± 0.00 | — | — (no spread: add seeds) |"


@pytest.mark.parametrize("first_full, target, rule", [
    (True, 0.594, "99% of full's final accuracy (mean over seeds)"),
    (False, 0.495, "99% of the best final accuracy in the grid (no finished full run)")], ids=["RP19", "RP18"])
def test_the_reports_default_target_comes_from_the_first_grid_not_a_labelled_one(tmp_path, first_full, target, rule):
    """explore26-mutation3 RP19, RP18: the default target could take a labelled grid's full runs into full's mean
    (RP19), or, without a full run, the best final accuracy of a labelled grid's runs (RP18)."""
    first, other = tmp_path / "A", tmp_path / "B"
    if first_full:
        write_run(first, "full", 0, [0.40, 0.60])
        write_run(other, "full", 0, [0.70, 0.90])  # another grid, trained longer
    else:
        write_run(other, "random", 0, [0.70, 0.90], subset=0.1)
    write_run(first, "random", 0, [0.40, 0.50], subset=0.1)
    result = write_report(first, out=tmp_path / "report", also=[(other, "long")])
    assert result.target == pytest.approx(target) and result.target_rule == rule


def test_a_labelled_grids_rows_take_the_first_grids_epoch_seconds_without_rows_of_their_own(tmp_path):
    """explore26-mutation3 RP17: a labelled grid's cells could lose the first grid's --epoch-seconds rate ("no rate
    in the CSV"), where `coreaug report --help` says they take it."""
    first, other = tmp_path / "A", tmp_path / "B"
    for grid in (first, other):
        write_run(grid, "full", 0, [0.5, 0.6])
        write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    rates = tmp_path / "rates.csv"
    rates.write_text("strategy,subset,seconds_per_epoch\nfull,,4\nrandom,0.1,1\n")  # no label column
    result = write_report(first, out=tmp_path / "report", also=[(other, "long")], epoch_seconds=rates)
    rows = [line for line in _section(result.files["md"], "Time").splitlines() if line.startswith("| random")]
    assert rows == ["| random | 10% | 1 | 1.00 | — | 2.0 | 4.00x | not reached | 0/1 | — |",
                    "| random, long | 10% | 1 | 1.00 | — | 2.0 | 4.00x | not reached | 0/1 | — |"]


def test_the_runs_csv_times_to_target_use_the_epoch_seconds_given_as_the_cells_csv_does(tmp_path):
    """explore26-mutation3 RP28: report-runs.csv's time_to_target could be the runs' own seconds (4.0, 2.0) while
    report-cells.csv and report.md take --epoch-seconds (20.0, 5.0)."""
    grid = tmp_path / "A"
    write_run(grid, "full", 0, [0.5, 0.6])
    write_run(grid, "random", 0, [0.6, 0.6], subset=0.1)
    rates = tmp_path / "rates.csv"
    rates.write_text("strategy,subset,seconds_per_epoch\nfull,,10\nrandom,0.1,5\n")
    result = write_report(grid, out=tmp_path / "report", epoch_seconds=rates, target=0.55)
    with open(result.files["runs_csv"], newline="") as f:
        assert [(row["strategy"], row["time_to_target"]) for row in csv.DictReader(f)] == [("full", "20.0"),
                                                                                          ("random", "5.0")]
    assert [(cell["strategy"], cell["time_to_target"]) for cell in result.cells] == [("full", 20.0), ("random", 5.0)]


def test_a_labelled_grid_with_fewer_seeds_is_not_said_to_lack_the_first_grids_seeds(tmp_path):
    """explore26-mutation3 RP11: seeds were compared across grids at a subset: a labelled grid of one seed (complete
    in itself) was reported as "coreset, long 10%: 1 seeds, lacks seeds 1-2"."""
    first, other = tmp_path / "A", tmp_path / "B"
    for seed in range(3):
        write_run(first, "random", seed, [0.40], subset=0.1)
        write_run(first, "coreset", seed, [0.42], subset=0.1)
    write_run(other, "coreset", 0, [0.45], subset=0.1)
    assert write_report(first, out=tmp_path / "report", also=[(other, "long")]).problems == []


def test_report_takes_a_grid_path_holding_an_equals_sign_before_its_label(tmp_path):
    """explore26-mutation3 RP33: `coreaug report A GRID=LABEL` could split at the first "=": a grid folder named
    lr=0.1 given as lr=0.1=fast was read as the path .../lr (which does not exist)."""
    first, other = tmp_path / "A", tmp_path / "lr=0.1"
    write_run(first, "random", 0, [0.4, 0.5], subset=0.1)
    write_run(other, "random", 0, [0.5, 0.6], subset=0.1)
    result = cli("report", first, f"{other}=fast", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.stderr
    assert "| random, fast | 10% | 1 | 60.00 ± — |" in (tmp_path / "report" / "report.md").read_text()


def test_report_subsets_match_the_grids_fractions_despite_float_noise(tmp_path):
    """explore26-mutation3 RP23: --subsets given as 0.1 + 0.2 (0.30000000000000004) could be refused on a 0.3 grid."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.3)
    assert write_report(grid, out=tmp_path / "report", subsets=[0.1 + 0.2]).runs == 1


def test_full_equal_to_none_is_marked_full_at_most_none(tmp_path):
    """explore26-mutation3 RP32: full exactly equal to none could leave the share cell blank, with no note."""
    grid = tmp_path / "A"
    write_run(grid, "none", 0, [0.5])
    write_run(grid, "full", 0, [0.5])
    write_run(grid, "random", 0, [0.55], subset=0.1)
    result = write_report(grid, out=tmp_path / "report")
    accuracy = _lines(result.files["md"], "| random")[0]
    assert accuracy == "| random | 10% | 1 | 55.00 ± — | 55.00 | — (full ≤ none) |"


def test_an_archive_keeps_a_damaged_runs_problem_and_its_report_leaves_the_run_out(tmp_path):
    """explore26-mutation3 AR13: the archive could drop a run's `problem`: a run with an unreadable metrics.jsonl
    came back as finished, and the report of the archive counted 2 runs where the grid's counts 1."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    damaged = write_run(grid, "random", 1, [0.4, 0.6], subset=0.1)
    (damaged / "metrics.jsonl").write_text("{not json\n")
    archive = archive_grid(grid).path
    problems = {record.name: record.problem for record in read_archive(archive)}
    assert problems["random-0.1-seed0"] is None
    assert re.fullmatch(r"metrics\.jsonl unreadable \(.+\)", problems["random-0.1-seed1"] or "")
    assert write_report(grid, out=tmp_path / "r1").runs == write_report(archive, out=tmp_path / "r2").runs == 1


def test_an_archive_compressed_with_gzip_is_read(tmp_path):
    """explore26-mutation3 AR2: read_archive's docstring promises xz, gzip or plain JSON Lines; gzip was refused as
    "not a grid archive"."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    archive = archive_grid(grid).path
    gz = tmp_path / "A.runs.jsonl.gz"
    gz.write_bytes(gzip.compress(lzma.decompress(open(archive, "rb").read())))
    assert [record.name for record in load_runs(str(gz))] == ["random-0.1-seed0"]


def test_a_run_folder_holding_only_its_checkpoint_is_reported_as_a_run_without_config(tmp_path):
    """explore26-mutation3 AR4: a run folder holding checkpoint.pt alone could vanish from the grid's runs (and from
    the report's missing list)."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    folder = grid / "runs" / "random-0.1-seed1"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"x")
    assert write_report(grid, out=tmp_path / "report").problems == ["`random-0.1-seed1`: no config.json"]


def test_the_archive_of_an_old_grids_runs_folder_goes_beside_the_grid(tmp_path):
    """explore26-mutation3 AR15: given GRID/runs of a coreaug 0.2 grid (results.md, no grid.json), the archive went
    inside the grid as runs.runs.jsonl.xz rather than beside it as A.runs.jsonl.xz."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    (grid / "results.md").write_text("tables\n")
    assert archive_grid(str(grid / "runs")).path == str(tmp_path / "A.runs.jsonl.xz")


def test_bench_default_target_is_99_percent_of_full_even_when_a_subset_beats_it():
    """explore26-mutation3 TB4: bench's target could ignore full and take 99% of the best run (the test's grid had
    full's mean equal to the best run)."""
    rows = [timing_row("full", None, 0, [0.7, 0.8], 10.0), timing_row("coreset", 0.1, 0, [0.8, 0.9], 10.0)]
    target, rule = add_timings(rows)
    assert target == pytest.approx(0.792) and rule == "99% of full's final accuracy (mean over seeds)"


def test_time_to_target_counts_training_seconds_not_the_elapsed_seconds_with_evaluation():
    """explore26-mutation3 TI5: a metrics row holding both could be timed by elapsed_seconds (with evaluation)."""
    rows = [{"epoch": 0, "test_accuracy": 0.9, "training_seconds": 10.0, "elapsed_seconds": 15.0}]
    assert time_to_target(rows, 0.8) == 10.0


def test_the_selections_table_keeps_random_whose_loss_figures_are_blank():
    """explore26-mutation3 TB17: a group was shown only when every diagnostic was known: random (no losses) lost its
    row and its flipped-label share."""
    from coreaug.bench.tables import DIAGNOSTICS

    def with_diagnostics(row, **figures):
        row.update({f"mean_{key}": figures.get(key, math.nan) for key in DIAGNOSTICS})
        return row
    rows = [with_diagnostics(timing_row("random", 0.1, 0, [0.5], 10.0), selection_noisy_fraction=0.1,
                             selection_noisy_weighted=0.1, selection_overlap=0.2),
            with_diagnostics(timing_row("coreset", 0.1, 0, [0.6], 10.0), **{key: 0.3 for key in DIAGNOSTICS})]
    target, rule = add_timings(rows)
    selections = markdown_table(group_rows(rows), target, rule).split("Selections")[1]
    assert [line for line in selections.splitlines() if line.startswith(("| random", "| coreset"))] == [
        "| random | 0.1 | 10.0% | 10.0% |  |  | 20.0% |", "| coreset | 0.1 | 30.0% | 30.0% | 0.300 | 0.300 | 30.0% |"]


def test_a_build_whose_pid_now_belongs_to_a_later_process_is_stale(tmp_path):
    """explore26-mutation3 B1: a left-over build whose PID another process now holds (another start time) could
    count as alive for ever."""
    if cache_builds._start_time(os.getpid()) is None:
        pytest.skip("no /proc: process start times unknown")
    build = tmp_path / "x.building-1"
    build.mkdir()
    (build / cache_builds.OWNER).write_text(json.dumps({
        "host": socket.gethostname(), "pid": os.getpid(), "pid_ns": cache_builds._pid_namespace(),
        "started": cache_builds._start_time(os.getpid()) - 100}))
    assert cache_builds.is_stale(str(build))
    (build / cache_builds.OWNER).write_text(json.dumps({
        "host": socket.gethostname(), "pid": os.getpid(), "pid_ns": cache_builds._pid_namespace(),
        "started": cache_builds._start_time(os.getpid())}))
    assert not cache_builds.is_stale(str(build))  # this very process: alive


def test_finishing_a_build_leaves_another_processs_finished_cache_in_place(tmp_path):
    """explore26-mutation3 B5: a build finishing after another process's had finished the same cache could delete
    theirs (under its readers) and put its own in its place."""
    theirs = tmp_path / "key"
    theirs.mkdir()
    (theirs / "meta.json").write_text(json.dumps({"who": "theirs"}))
    inode = theirs.stat().st_ino
    build = cache_builds.Build(str(tmp_path), "key")
    with open(os.path.join(build.path, "meta.json"), "w") as f:
        json.dump({"who": "ours"}, f)
    build.finish(str(theirs))
    assert json.loads((theirs / "meta.json").read_text()) == {"who": "theirs"} and theirs.stat().st_ino == inode


# --- minor survivors whose effect users see: messages, figures in tables ---

def test_evaluate_matches_a_decomposed_class_name_to_a_folder_named_in_composed_form(digits_run, tmp_path):
    """explore26-mutation3 TM15: class names were compared without NFC: a run trained on a macOS zip (class "café"
    decomposed) refused a folder named "café" composed ("not one of the run's classes")."""
    run = coreaug.load_run(str(digits_run))
    run.class_names[0] = unicodedata.normalize("NFD", "café")
    for name in (unicodedata.normalize("NFC", "café"), "1"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(tmp_path / "data" / name / "a.png")
    result = run.evaluate(str(tmp_path / "data"))
    assert result.total == 2 and {unicodedata.normalize("NFC", name) for name in result.per_class} == {"1", "café"}


def test_a_gpu_runs_thread_counts_are_not_pooled_in_the_thread_note():
    """explore26-mutation3 TB15: a GPU run's recorded thread counts could be counted for the "other CPU thread
    counts" note."""
    from coreaug.bench.tables import cpu_threads

    assert cpu_threads({"device": "cuda:0"}, [{"threads": 16}]) == []
    assert cpu_threads({"device": "cpu"}, [{"threads": 16}]) == [16]


def test_runs_left_out_are_listed_failed_first_whatever_their_order():
    """explore26-mutation3 TB13: the kinds of runs left out could follow the dict's order, not LEFT_OUT's."""
    from coreaug.bench.tables import left_out

    assert left_out({"b-seed0": "unfinished", "a-seed0": "failed"}) == [
        "1 failed (fix the error, or remove the run's folder, and run the command again): a-seed0",
        "1 not finished (the same command trains them): b-seed0"]


@pytest.mark.parametrize("missing, ending", [
    ([f"r{i}" for i in range(10)], ": r0, r1, r2, r3, r4, r5, r6, r7, r8, r9."),
    ({**{f"random-0.1-seed{i}": "failed" for i in range(10)}, "x-seed0": "unfinished"},
     ", random-0.1-seed9; 1 not finished (the same command trains them): x-seed0.")], ids=["TB11-list", "TB12-kinds"])
def test_exactly_ten_missing_runs_are_all_named_without_and_0_more(missing, ending):
    """explore26-mutation3 TB11, TB12: with as many missing runs as the line names (10), results.md's runs line
    ended "and 0 more"."""
    rows = [timing_row("full", None, 0, [0.8], 10.0)]
    target, rule = add_timings(rows)
    line = markdown_table(group_rows(rows), target, rule, runs=12, missing=missing).splitlines()[2]
    assert line.startswith("Runs: ") and line.endswith(ending)


def test_seeds_a_cell_lacks_are_given_as_a_range(tmp_path):
    """explore26-mutation3 RP12: the ranges of lacking seeds never merged: "lacks seeds 1, 2, 3", not "1-3"."""
    grid = tmp_path / "A"
    for seed in range(4):
        write_run(grid, "random", seed, [0.40], subset=0.1)
    write_run(grid, "coreset", 0, [0.42], subset=0.1)
    assert write_report(grid, out=tmp_path / "report").problems == [
        "coreset 10%: 1 seeds, lacks seeds 1-3 that other cells at this subset have"]


def test_the_time_table_gives_whole_seconds_from_10_and_one_decimal_from_1(tmp_path):
    """explore26-mutation3 RP14: at exactly 10 s and 1 s the seconds could take one decimal more ("10.0", "1.00")."""
    grid = tmp_path / "A"
    write_run(grid, "full", 0, [0.5, 0.6], epoch_seconds=5.0)
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1, epoch_seconds=0.5)
    result = write_report(grid, out=tmp_path / "report")
    rows = [line for line in _section(result.files["md"], "Time").splitlines()
            if line.startswith(("| full", "| random"))]
    assert rows == ["| full |  | 1 | 4.75 | 0.25 | 10 | 1.00x | 10 | 1/1 | 1.00x |",
                    "| random | 10% | 1 | 0.25 | 0.25 | 1.0 | 10.00x | not reached | 0/1 | — |"]


def test_paper_figures_are_shown_on_the_first_grids_cells_only(tmp_path):
    """explore26-mutation3 RP29: --paper-figures could be put beside a labelled grid's cells too."""
    first, other = tmp_path / "A", tmp_path / "B"
    for grid in (first, other):
        write_run(grid, "none", 0, [0.4])
        write_run(grid, "full", 0, [0.6])
        write_run(grid, "random", 0, [0.5], subset=0.1)
    paper = tmp_path / "paper.csv"
    paper.write_text("strategy,subset,accuracy\nnone,,40\nfull,,60\nrandom,0.1,55\n")
    result = write_report(first, out=tmp_path / "report", also=[(other, "long")], paper_figures=paper)
    figures = {(cell["strategy"], cell["label"]): cell["paper_accuracy_percent"] for cell in result.cells}
    assert {key: value for key, value in figures.items() if not math.isnan(value)} == {
        ("none", ""): 40.0, ("full", ""): 60.0, ("random", ""): 55.0}


def test_restoring_over_an_interrupted_run_does_not_call_it_damaged(tmp_path):
    """explore26-mutation3 AR11: a run folder holding config.json only (interrupted) was reported as a damaged
    finished run the restore replaced ({'random-0.1-seed0': None})."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    archive = archive_grid(grid).path
    folder = tmp_path / "restored" / "runs" / "random-0.1-seed0"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text((grid / "runs" / "random-0.1-seed0" / "config.json").read_text())
    result = restore_grid(archive, out=str(tmp_path / "restored"))
    assert result.written == ["random-0.1-seed0"] and result.replaced == {}


def test_a_hand_edited_plan_naming_a_path_does_not_make_its_archive_unrestorable(tmp_path):
    """explore26-mutation3 AR5: a grid.json naming '../x' put that name in the archive's plan, and restoring the
    archive was then refused whole."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    (grid / "grid.json").write_text(json.dumps({"runs": ["../x", "random-0.1-seed0"]}))
    assert restore_grid(archive_grid(grid).path, out=str(tmp_path / "restored")).written == ["random-0.1-seed0"]


def test_an_archive_lists_planned_runs_not_started_in_name_order_with_the_others(tmp_path):
    """explore26-mutation3 AR7: the runs of the plan not started were appended after the others, breaking the
    archive's one line per run in name order."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    write_run(grid, "full", 0, [0.5, 0.6])
    (grid / "grid.json").write_text(json.dumps({"runs": ["random-0.1-seed0", "coreset-0.1-seed0", "full-seed0"]}))
    records = read_archive(archive_grid(grid).path)
    assert [(record.name, record.started) for record in records] == [
        ("coreset-0.1-seed0", False), ("full-seed0", True), ("random-0.1-seed0", True)]


def test_restore_refuses_an_archive_naming_a_run_dot_dot(tmp_path):
    """explore26-mutation3 AR9: a record named ".." could be left out quietly instead of the archive refused as one
    coreaug did not write."""
    grid = tmp_path / "A"
    write_run(grid, "random", 0, [0.4, 0.5], subset=0.1)
    line = lzma.decompress(open(archive_grid(grid).path, "rb").read()).decode().splitlines()[0]
    edited = tmp_path / "edited.runs.jsonl"
    edited.write_text(line + "\n" + json.dumps(dict(json.loads(line), name="..")) + "\n")
    with pytest.raises(UsageError, match=r"names a run '\.\.', which is not a plain folder name but a path; it was "
                                         r"not written by `coreaug archive`"):
        restore_grid(str(edited), out=str(tmp_path / "restored"))


def test_the_reading_bar_counts_the_last_partial_batch_as_its_images(digits_run, tmp_path, monkeypatch):
    """explore26-mutation3 TM17: the evaluating bar could count a whole batch for the last, partial one, overshooting
    its total (5 images read in batches of 2 counted 6)."""
    from coreaug.training import trained

    counted = []

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, count):
            counted.append(count)
    monkeypatch.setattr(trained, "reading_bar", lambda total, description, shown=True: Bar())
    run = coreaug.load_run(str(digits_run))
    run.evaluate((_pngs(tmp_path, 5), torch.tensor([0, 1, 2, 3, 4])), skip_bad_images=True, batch_size=2)
    assert counted == [2, 2, 1]
