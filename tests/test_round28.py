"""Round 28 of review: fixes found by the lead and the review helpers, each test seen failing on the old code."""
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import coreaug
from coreaug.bench.archive import archive_grid
from coreaug.cli.main import app
from coreaug.errors import UsageError


def write_folder(root, classes=("c0", "c1", "c2"), per_class=6):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.random.default_rng(10 * k + i).integers(0, 40, (8, 8, 3)) + 80 * k
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png", format="PNG")
    return root


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(image folder, run folder) of a one-epoch run on a 3-class folder of 8 px images."""
    base = tmp_path_factory.mktemp("round28")
    root = write_folder(base / "imgs")
    coreaug.train(coreaug.TrainConfig(dataset=str(root), out=str(base / "run"), image_size=8, model="cnn", epochs=1,
                                      batch_size=8, quiet=True, workers=0, strategy="random",
                                      cache_dir=str(base / "cache")))
    return root, base / "run"


@pytest.mark.parametrize("empty", ["", " ", b""])
def test_an_empty_path_is_refused_as_empty_by_the_python_api(empty, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" read as the working folder would write here
    with pytest.raises(UsageError, match="^run is empty; give a run folder's path$"):
        coreaug.load_run(empty)
    with pytest.raises(UsageError, match="^path is empty; give the selection file's path$"):
        coreaug.Selection.load(empty)
    with pytest.raises(UsageError, match="^grid is empty; give a grid's folder$"):
        archive_grid(empty)
    selection = coreaug.Selection(indices=np.arange(2), weights=np.ones(2, dtype=np.float32), strategy="random",
                                  classes=[], class_counts=[], class_objectives=[])
    with pytest.raises(UsageError, match="^path is empty"):
        selection.save(empty)
    assert os.listdir(tmp_path) == []


def test_evaluate_into_a_cache_folder_it_cannot_use_says_so_before_saying_it_decodes(finished, tmp_path):
    root, run = finished
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")  # as a read-only folder (root writes any, so a file stands in)
    below = taken / "cache"
    result = CliRunner().invoke(app, ["evaluate", str(run), "--dataset", str(root), "--cache-dir", str(below)])
    assert result.exit_code == 2, result.output
    assert "decoding" not in result.output and f"cannot use {below} as the decoded-image cache" in result.output


def test_predict_skipping_every_image_prints_no_csv_header(finished, tmp_path):
    _, run = finished
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"damaged")  # a PNG's signature, then nothing of one
    result = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "a.png"),
                                                      str(tmp_path / "b.png"), "--skip-bad-images"])
    assert result.exit_code == 2 and result.stdout == "", result.stdout
    assert "there is nothing to predict" in result.stderr
    good = tmp_path / "c.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good)
    result = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "a.png"), str(good),
                                                      "--skip-bad-images", "--top-k", "1"])
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "image,rank,class,probability"
    assert len(result.stdout.splitlines()) == 2 and result.stdout.splitlines()[1].startswith(f"{good},1,")


def test_reading_a_dataset_leaves_the_callers_random_state_alone(tmp_path):
    """A DataLoader draws its base seed from torch's global RNG: estimate_gradients on a dataset and
    decoding a folder into a cache moved the draws of the user's own loop after them."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images, labels = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    data = torch.utils.data.TensorDataset(images, labels)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    coreaug.estimate_gradients(model, data, labels)
    assert torch.equal(torch.rand(4), expected)
    root = write_folder(tmp_path / "imgs")
    torch.manual_seed(3)
    coreaug.load_dataset(str(root), image_size=8, progress=False, cache_dir=str(tmp_path / "cache"), workers=0)
    assert torch.equal(torch.rand(4), expected)


def test_clear_caches_given_an_empty_folder_or_source_removes_nothing(tmp_path, monkeypatch):
    """clear_caches(cache_dir="") cleared the default cache folder, and source="" every cache in it."""
    from coreaug.data.image_cache import caches_in, clear_caches

    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "imgs")
    coreaug.load_dataset(str(root), image_size=8, progress=False, workers=0)
    for given in ({"cache_dir": ""}, {"source": " "}, {"cache_dir": str(tmp_path / "cache"), "source": ""}):
        with pytest.raises(UsageError, match=r"^(cache_dir|source) is empty; give a folder, or None"):
            clear_caches(**given)
    assert len(caches_in()) == 1
    assert clear_caches(source=str(root))[0] == 1 and caches_in() == []


def test_features_small_in_float32s_normal_range_select_as_scaled_and_subnormal_ones_of_any_dtype_are_refused():
    """review28 #6: float64 features * 1e-32 (normal in float32, the same picks) were refused, and float32
    features * 1e-44 (subnormal: a few bits each) were taken and picked other examples."""
    x = np.random.default_rng(0).normal(size=(60, 8))
    labels = np.repeat(np.arange(3), 20)
    expected = coreaug.select_coreset(x, labels, 0.2)
    small = coreaug.select_coreset(x * 1e-32, labels, 0.2)
    assert small.indices.tolist() == expected.indices.tolist() and np.allclose(small.weights, expected.weights)
    for features in ((x * 1e-44).astype(np.float32), x * 1e-44):
        with pytest.raises(UsageError, match=r"^features are too small for float32, in which distances are "
                                             r"computed \(largest magnitude .*, below its smallest full-precision "
                                             r"value 1.18e-38\)"):
            coreaug.select_coreset(features, labels, 0.2)


def test_integers_from_torch_generators_draw_spans_past_2_to_the_31():
    """review28 #2: the RandomSource's 2 ** 31 bound refused integers(2 ** 32, ...) from a torch.Generator too."""
    from coreaug.augment import integers

    for generator in (torch.Generator().manual_seed(0), None):
        drawn = integers(2 ** 40, 64, generator, "cpu")
        assert drawn.min() >= 0 and drawn.max() < 2 ** 40 and drawn.max() >= 2 ** 31


def test_a_run_and_a_grid_given_as_bytes_paths_are_read_and_written(finished, tmp_path):
    """review28 #5: load_run(b"run") and run_grid(config, b"grid") checked the bytes path, then mixed it
    with str: "Can't mix strings and bytes in path components"."""
    _, run = finished
    assert coreaug.load_run(os.fsencode(run)).class_names == coreaug.load_run(run).class_names
    tiny = dict(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True)
    coreaug.run_grid(coreaug.TrainConfig(**tiny), os.fsencode(tmp_path / "grid"), subsets=[0.5], strategies=["random"],
                     references=[], seeds=1)
    assert len(os.listdir(tmp_path / "grid" / "runs")) == 1


def test_estimate_gradients_tells_a_dataset_of_other_labels_how_to_score_pseudo_labels():
    """review28 #1: a dataset whose items carry other labels than labels= (pseudo-labels, -1 for none)
    was told only to pass "the training set in the order of the labels"."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images = torch.rand(6, 3, 2, 2)
    unlabelled = torch.utils.data.TensorDataset(images, torch.full((6,), -1))
    targets = model(images).argmax(1)
    with pytest.raises(UsageError, match=r"^item 0's label is -1 but labels\[0\] is \d: pass the dataset in the order "
                                         r"of the labels, or, to score other targets than its own \(pseudo-labels\), a "
                                         r"dataset of the images alone$"):
        coreaug.estimate_gradients(model, unlabelled, targets)
    alone = torch.utils.data.TensorDataset(images)  # items of one tensor: the images alone
    assert torch.equal(coreaug.estimate_gradients(model, alone, targets), coreaug.estimate_gradients(model, images,
                                                                                                     targets))


def test_archive_restore_refuses_a_grids_runs_folder_and_the_dataset_folder_as_bench_does(finished, tmp_path):
    """review28 #3: --restore into GRID/runs nested a grid in the grid's runs/ (bench then refused to continue it),
    and into the folder dataset the runs trained on made runs/ one of its classes."""
    import shutil

    root, run = finished
    shutil.copytree(run, tmp_path / "grid" / "runs" / "r1")
    (tmp_path / "grid" / "grid.json").write_text('{"runs": ["r1"]}')
    archived = CliRunner().invoke(app, ["archive", str(tmp_path / "grid"), "--to", str(tmp_path / "a.runs.jsonl.xz")])
    assert archived.exit_code == 0, archived.output
    result = CliRunner().invoke(app, ["archive", "--restore", str(tmp_path / "a.runs.jsonl.xz"), "--out",
                                      str(tmp_path / "grid" / "runs")])
    assert result.exit_code == 2 and "is the runs/ folder of the grid" in result.output, result.output
    assert sorted(os.listdir(tmp_path / "grid" / "runs")) == ["r1"]
    before = sorted(os.listdir(root))
    result = CliRunner().invoke(app, ["archive", "--restore", str(tmp_path / "a.runs.jsonl.xz"), "--out", str(root)])
    assert result.exit_code == 2 and "is the folder dataset the runs trained on" in result.output, result.output
    assert sorted(os.listdir(root)) == before
    done = CliRunner().invoke(app, ["archive", "--restore", str(tmp_path / "a.runs.jsonl.xz"), "--out",
                                    str(tmp_path / "again")])
    assert done.exit_code == 0 and os.listdir(tmp_path / "again" / "runs") == ["r1"], done.output


def test_report_refuses_empty_figure_files_rather_than_leaving_their_columns_out(tmp_path):
    """review28 #4: --paper-figures "$UNSET" and --epoch-seconds "" wrote a report without their columns, exit 0."""
    from test_report import write_run

    for seed in range(2):
        write_run(tmp_path / "grid", "random", seed, [0.3, 0.4], subset=0.3)
    for flag, column in (("--paper-figures", "accuracy"), ("--epoch-seconds", "seconds_per_epoch")):
        result = CliRunner().invoke(app, ["report", str(tmp_path / "grid"), "--out", str(tmp_path / "rep"), flag, ""])
        assert result.exit_code == 2 and result.output == (f"error: {flag} is empty; give a CSV file of strategy,"
                                                           f"subset,{column}, or leave it out\n"), result.output
    assert not (tmp_path / "rep").exists()
    with pytest.raises(UsageError, match=r"^paper_figures is empty"):
        coreaug.bench.write_report(str(tmp_path / "grid"), out=str(tmp_path / "rep"), paper_figures=b"")


def test_select_out_deeper_under_a_file_names_the_file(tmp_path):
    """review28 #7: select --out afile/sub/x.npz still said "folder afile/sub does not exist; create it first"."""
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0, 1]))
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(app, ["select", "--labels", str(tmp_path / "labels.npy"), "--strategy", "random",
                                      "--fraction", "0.5", "--out", str(tmp_path / "afile" / "sub" / "x.npz")])
    assert result.exit_code == 2 and result.output == (f"error: --out {tmp_path / 'afile' / 'sub' / 'x.npz'}: "
                                                       f"{tmp_path / 'afile'} is a file, not a folder; give a path in "
                                                       "a folder\n"), result.output
    result = CliRunner().invoke(app, ["select", "--labels", str(tmp_path / "labels.npy"), "--strategy", "random",
                                      "--fraction", "0.5", "--out", str(tmp_path / "no" / "sub" / "x.npz")])
    assert result.exit_code == 2 and f"folder {tmp_path / 'no' / 'sub'} does not exist; create it first" in \
        result.output, result.output


def test_restore_refuses_an_archive_of_other_settings_whose_every_run_name_the_grid_has(tmp_path):
    """users28 #1: every name finished in the grid already: the runs were kept unchecked, exit 0, and the
    archive's plan (runs of the other grid, never started) was merged into grid.json."""
    import json

    from coreaug.bench import restore_grid
    from test_report import write_run

    for seed in range(2):
        write_run(tmp_path / "G", "none", seed, [0.3, 0.4])
    (tmp_path / "G" / "grid.json").write_text(json.dumps({"runs": ["none-seed0", "none-seed1", "none-seed2"]}))
    archive = archive_grid(tmp_path / "G").path
    for seed in range(2):
        write_run(tmp_path / "other", "none", seed, [0.3, 0.5, 0.55])  # three epochs: other settings
    (tmp_path / "other" / "grid.json").write_text(json.dumps({"runs": ["none-seed0", "none-seed1"]}))
    with pytest.raises(UsageError, match=r"other settings than none-seed0 .*\(epochs: 3 -> 2: the grid's"):
        restore_grid(archive, out=tmp_path / "other")
    assert json.loads((tmp_path / "other" / "grid.json").read_text()) == {"runs": ["none-seed0", "none-seed1"]}
    assert restore_grid(archive, out=tmp_path / "G").written == []  # its own grid: kept, as before


def test_a_report_of_a_grids_runs_folder_names_the_runs_its_plan_lists_that_never_started(tmp_path):
    """users28 #2: `report GRID/runs` read no grid.json there, so the runs never started went unlisted
    ("it has no grid.json, as coreaug 0.2 and older wrote none")."""
    import json

    from coreaug.bench import write_report
    from test_report import write_run

    for seed in range(2):
        write_run(tmp_path / "G", "none", seed, [0.3, 0.4])
    (tmp_path / "G" / "grid.json").write_text(json.dumps({"runs": ["none-seed0", "none-seed1", "none-seed2"]}))
    for given in (tmp_path / "G", tmp_path / "G" / "runs"):
        result = write_report(str(given), out=str(tmp_path / "rep"))
        assert result.missing_runs == 1 and any("none-seed2" in problem for problem in result.problems)
        assert "it has no grid.json" not in (tmp_path / "rep" / "report.md").read_text()


def test_bench_names_a_run_it_resumes_as_resuming(tmp_path):
    """users28 #5: a run bench resumed from its checkpoint was announced "training in ..."."""
    args = ["bench", "--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
            "--epochs", "1", "--subsets", "0.5", "--strategies", "random", "--references", "", "--seeds", "1",
            "--out", str(tmp_path / "grid")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0 and f"[1/1] random-0.5-seed0: training in {tmp_path / 'grid'}" in first.output
    (tmp_path / "grid" / "runs" / "random-0.5-seed0" / "summary.json").unlink()  # as a run stopped at its end
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"[1/1] random-0.5-seed0: resuming in {tmp_path / 'grid'}" in again.output, again.output
