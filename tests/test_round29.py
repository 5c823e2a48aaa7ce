"""Round 29 of review: fixes found by the lead and the review helpers, each test seen failing on the old code."""
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import coreaug
from coreaug.cli.main import app
from test_round28 import write_folder


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    """(image folder, archive of a grid of one finished one-epoch run on it)."""
    base = tmp_path_factory.mktemp("round29")
    root = write_folder(base / "imgs")
    coreaug.train(coreaug.TrainConfig(dataset=str(root), out=str(base / "grid" / "runs" / "r1"), image_size=8,
                                      model="cnn", epochs=1, batch_size=8, quiet=True, workers=0, strategy="random",
                                      cache_dir=str(base / "cache")))
    (base / "grid" / "grid.json").write_text('{"runs": ["r1"]}')
    result = CliRunner().invoke(app, ["archive", str(base / "grid"), "--to", str(base / "a.runs.jsonl.xz")])
    assert result.exit_code == 0, result.output
    return root, base / "a.runs.jsonl.xz"


class NoisyImages(torch.utils.data.Dataset):
    """A dataset with a random transform: each item is its image plus noise from torch's RNG (in a
    worker, the RNG its DataLoader seeded)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i] + torch.rand(self.images[i].shape), self.labels[i]


def test_a_datasets_random_transforms_differ_with_the_callers_seed_in_workers():
    """Reading a dataset in workers under a fixed generator gave the workers the same seeds in every
    run, whatever the user seeded: the random transforms were the same draws each time."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images, labels = torch.zeros(8, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    data = NoisyImages(images, labels)

    def gradients(seed):
        torch.manual_seed(seed)
        estimate = coreaug.estimate_gradients(model, data, labels, num_workers=2)
        after = torch.rand(3)  # the caller's own draws after it
        torch.manual_seed(seed)
        return np.asarray(estimate), after, torch.rand(3)

    first, after, expected = gradients(1)
    again, _, _ = gradients(1)
    second, _, _ = gradients(2)
    assert torch.equal(after, expected)  # the caller's RNG is left where it was
    np.testing.assert_array_equal(first, again)  # one seed, one set of draws
    assert not np.allclose(first, second)  # another seed, other draws


def test_restore_writes_its_runs_beside_a_grids_tables(archived, tmp_path):
    """archive --restore into a grid folder whose runs were archived away (its results.md and
    results.csv left) was refused as bench refuses a folder of tables: a restore writes no tables."""
    _, archive = archived
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "results.md").write_text("| a |\n")
    (tmp_path / "grid" / "results.csv").write_text("a\n")
    result = CliRunner().invoke(app, ["archive", "--restore", str(archive), "--out", str(tmp_path / "grid")])
    assert result.exit_code == 0, result.output
    assert os.listdir(tmp_path / "grid" / "runs") == ["r1"]
    assert (tmp_path / "grid" / "results.md").read_text() == "| a |\n"
    shutil.rmtree(tmp_path / "grid" / "runs")
    os.remove(tmp_path / "grid" / "grid.json")
    result = CliRunner().invoke(app, ["bench", "--out", str(tmp_path / "grid"), "--dataset", "synthetic"])
    assert result.exit_code == 2 and "holds results.md and results.csv but no grid" in result.output, result.output


def test_clear_caches_takes_bytes_paths(tmp_path, monkeypatch):
    """review28b #3: clear_caches checked its bytes cache_dir and source but used them as given (a
    bytes path mixed with str paths failed)."""
    from coreaug.data.image_cache import caches_in, clear_caches

    root = write_folder(tmp_path / "imgs")
    coreaug.load_dataset(str(root), image_size=8, progress=False, workers=0, cache_dir=str(tmp_path / "cache"))
    assert len(caches_in(str(tmp_path / "cache"))) == 1
    assert clear_caches(os.fsencode(tmp_path / "cache"), os.fsencode(root))[0] == 1
    assert caches_in(str(tmp_path / "cache")) == []


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_folder_or_dataset_is_refused_by_evaluate_predict_and_load_dataset(archived, empty, tmp_path,
                                                                                   monkeypatch):
    """review28b #4: cache_dir="" decoded into the working folder (" ": a new folder named so), evaluate("")
    scored the run's own dataset, data_dir="" was 'not found in the data folder given,  (no such folder)'."""
    root, archive = archived
    model = coreaug.load_run(str(archive.parent / "grid" / "runs" / "r1"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(coreaug.UsageError, match="^cache_dir is empty; give a folder, or None for the run's own$"):
        model.evaluate(str(root), cache_dir=empty)
    with pytest.raises(coreaug.UsageError, match="^dataset is empty; give a dataset's name or a folder's path"):
        model.evaluate(empty)
    with pytest.raises(coreaug.UsageError, match="^data_dir is empty; give a folder's path, or None"):
        model.evaluate("digits", data_dir=empty)
    with pytest.raises(coreaug.UsageError, match=r"^images\[1\] is empty; give an image file's or a folder's path$"):
        model.predict([str(root / "c0" / "0.png"), empty])
    with pytest.warns(UserWarning, match="left out 1 unreadable image of 2"):  # a blank cell skipped, as before
        assert len(model.predict([str(root / "c0" / "0.png"), empty], skip_bad_images=True)) == 1
    with pytest.raises(coreaug.UsageError, match="^cache_dir is empty; give a folder, or None for the default$"):
        coreaug.load_dataset(str(root), image_size=8, progress=False, cache_dir=empty)
    with pytest.raises(coreaug.UsageError, match="^data_dir is empty; give a folder's path, or None"):
        coreaug.load_dataset("fashion-mnist", data_dir=empty, progress=False)
    assert os.listdir(tmp_path) == []


def test_the_cli_names_an_empty_argument_by_its_metavar(tmp_path):
    """review28b #5: `datasets " " --clear-cache` said "source is empty; give a folder, or None" (the
    Python parameter), `report ''` "path is empty", an empty PATH=LABEL "another grid   needs a label"."""
    cases = [(["datasets", " ", "--clear-cache"], "NAME is empty; give the folder whose caches to clear, or leave it "
              "out to clear every cache"),
             (["datasets", ""], "NAME is empty; give a dataset's name or a folder of images, or leave it out to list"),
             (["report", "", "--out", str(tmp_path / "r")], "PATH is empty; give a grid folder or a grid archive"),
             (["report", str(tmp_path), " ", "--out", str(tmp_path / "r")], "a PATH=LABEL is empty; give another "
              "grid's folder or archive, and its label")]
    for args, expected in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and f"error: {expected}" in result.stderr, (args, result.output)
    assert os.listdir(tmp_path) == []


def test_a_worker_names_its_run_resumed_by_the_runs_state_before_the_workers_began(capsys):
    """review28b #7: bench --jobs said 'resuming' by the run's state when the worker's word arrived,
    by which time a new run's worker may have written its first checkpoint."""
    import queue
    import types

    from coreaug.bench import workers

    def run(name):  # a run whose folder holds a checkpoint by now
        return types.SimpleNamespace(name=name, folder=f"/g/runs/{name}", config=types.SimpleNamespace(quiet=False),
                                     state=lambda: "interrupted")

    todo, results, outcomes = [run("new-one"), run("old-one")], queue.Queue(), []
    for message in [("took", 0, 0), ("took", 1, 1), ("done", 0, 0, "trained", None), ("done", 1, 1, "resumed", None)]:
        results.put(message)
    workers._wait([], todo, results, {}, outcomes.append, {1})
    said = capsys.readouterr()
    assert "new-one: training in worker 1 (/g/runs/new-one)" in said.out + said.err
    assert "old-one: resuming in worker 2 (/g/runs/old-one)" in said.out + said.err
    assert [o.status for o in outcomes] == ["trained", "resumed"]


def test_the_epochs_kept_are_the_checkpoints_when_the_run_stopped_before_its_metrics_row(tmp_path):
    """interrupt28 #1: a run stopped between its checkpoint and its metrics.jsonl row was said to have
    stopped an epoch earlier than the one its resume continues after (the rows were counted)."""
    from coreaug.training.run_files import epochs_kept

    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(dataset="synthetic", model="cnn", epochs=2, batch_size=64, quiet=True,
                                      strategy="random", out=str(out)))
    (out / "summary.json").unlink()
    rows = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(rows[0] + "\n")
    assert epochs_kept(str(out)) == 2
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")  # unreadable: the rows beside it
    assert epochs_kept(str(out)) == 1


def test_restoring_a_grids_own_archive_takes_runs_bench_counts_as_of_one_grid(tmp_path):
    """review29 #1: a grid whose runs recorded --weak auto and --weak pad-crop (one grid to bench:
    auto is pad-crop below 128 px) had its own archive, restored into it, refused as 'of other
    settings' (weak: 'pad-crop' -> 'auto'), with every run there or with one missing."""
    import json

    from coreaug.bench import restore_grid
    from coreaug.bench.archive import archive_grid
    from test_report import write_run

    for seed, weak in enumerate(("auto", "pad-crop")):
        folder = write_run(tmp_path / "G", "none", seed, [0.3, 0.4])
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, weak=weak, image_size=32)))
    archive = archive_grid(tmp_path / "G").path
    result = restore_grid(archive, out=tmp_path / "G")
    assert result.written == [] and result.kept == ["none-seed0", "none-seed1"]
    shutil.rmtree(tmp_path / "G" / "runs" / "none-seed1")
    result = restore_grid(archive, out=tmp_path / "G")
    assert result.written == ["none-seed1"] and result.kept == ["none-seed0"]
    config = json.loads((tmp_path / "G" / "runs" / "none-seed1" / "config.json").read_text())
    (tmp_path / "G" / "runs" / "none-seed1" / "config.json").write_text(json.dumps(dict(config, epochs=7)))
    with pytest.raises(coreaug.UsageError, match=r"of other settings than .*\(epochs: "):
        restore_grid(archive, out=tmp_path / "G")


def test_a_state_saved_under_another_seed_or_copies_is_warned_about(recwarn):
    """users29 #1: a state loaded into a CoresetAugmentation of another seed (or copies) was taken without a
    word, and the plans from there on were not the saving run's."""
    labels = torch.arange(40) % 4
    images = torch.rand(40, 3, 4, 4)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4))
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.25)
    method.start_epoch(0, model, images)
    state = method.state_dict()
    coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.25).load_state_dict(state)
    assert not [w for w in recwarn if "other settings" in str(w.message)]
    with pytest.warns(UserWarning, match=r"other settings: seed 0 \(this method: 1\), copies 1 \(this method: 2\); "
                                         "its selection is kept"):
        coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.25, seed=1, copies=2).load_state_dict(state)
    with pytest.raises(coreaug.UsageError, match=r"other settings: fraction 0.25 \(this method: 0.5\)"):
        coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.5, seed=1).load_state_dict(state)


def test_wrapping_a_dataset_with_random_transforms_leaves_the_callers_random_state_alone():
    """The own loop's wrap read item 0 (to check its pair and label) with the caller's RNG: a dataset's
    random transform moved the draws of the user's seeded loop."""
    labels = torch.arange(8) % 2
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.5)
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    method.dataset(NoisyImages(torch.zeros(8, 3, 2, 2), labels))
    assert torch.equal(torch.rand(3), expected)


def test_an_empty_image_argument_is_named_by_position_and_a_file_named_by_spaces_is_read(archived, tmp_path,
                                                                                           monkeypatch):
    """review29 #2, #3: `predict RUN a.png ""` said "image is empty" (no IMAGES, no position), and a file
    named " " (which exists) was refused as empty wherever a path is checked."""
    root, archive = archived
    run = str(archive.parent / "grid" / "runs" / "r1")
    result = CliRunner().invoke(app, ["predict", run, str(root / "c0" / "0.png"), ""])
    assert result.exit_code == 2 and "error: IMAGES argument 2 is empty; give an image file's or a folder's path" \
        in result.stderr, result.output
    monkeypatch.chdir(tmp_path)
    shutil.copy(root / "c0" / "0.png", tmp_path / " ")
    assert [p.image for p in coreaug.load_run(run).predict(" ")] == [" "]


def _photo_with_a_malformed_tag():
    """A JPEG stored sideways (left half red, right half blue; EXIF orientation 6: red on top once
    turned) whose Make tag is relabelled SHORT: Pillow reads its pixels but cannot write its EXIF back."""
    import io

    from PIL import Image

    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :40, 0] = 255
    pixels[:, 40:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue().replace(b"\x01\x0f\x00\x02", b"\x01\x19\x00\x02", 1)


def test_a_photo_whose_exif_pillow_cannot_write_back_is_read_upright(tmp_path):
    """data29 #1: ImageOps.exif_transpose rewrote such a photo's EXIF and raised struct.error, which
    decoding did not catch: the cache build died with a DataLoader traceback naming no file (and
    --skip-bad-images did not help), predict of the file alike. Its orientation alone says how to turn it."""
    from coreaug.data.image_folder import decode_square

    root = write_folder(tmp_path / "imgs")
    (root / "c0" / "photo.jpg").write_bytes(_photo_with_a_malformed_tag())
    image = torch.from_numpy(decode_square(str(root / "c0" / "photo.jpg"), 16)).permute(2, 0, 1).int()
    red_minus_blue = image[0] - image[2]
    assert (red_minus_blue[:6] > 100).all() and (red_minus_blue[-6:] < -100).all()
    data = coreaug.load_dataset(str(root), image_size=16, progress=False, workers=0, cache_dir=str(tmp_path / "c"))
    assert len(data.train_labels) + len(data.test_labels) == 19


def test_any_error_pillow_raises_on_a_file_is_an_unreadable_image(tmp_path, monkeypatch):
    """Pillow raises more than OSError/ValueError/SyntaxError on malformed files (struct.error,
    ZeroDivisionError, TypeError: its issues 4238, 8605): the decoding let them through as a crash."""
    import struct

    from coreaug.data import image_folder

    root = write_folder(tmp_path / "imgs")
    real = image_folder._decode_square

    def decode(path, size, mode):
        if str(path).endswith("3.png"):
            raise struct.error("required argument is not an integer")
        return real(path, size, mode)

    monkeypatch.setattr(image_folder, "_decode_square", decode)
    with pytest.raises(coreaug.UsageError, match=r"3.png \(error: required argument is not an integer\)"):
        coreaug.load_dataset(str(root), image_size=8, progress=False, workers=0, cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning, match="3"):
        data = coreaug.load_dataset(str(root), image_size=8, progress=False, workers=0, cache_dir=str(tmp_path / "c"),
                                    skip_bad_images=True)
    assert len(data.train_labels) + len(data.test_labels) == 15


def test_a_diverged_run_is_not_called_unfinished_nor_sent_to_resume(tmp_path):
    """docs29 #1: load_run (so predict and evaluate) called a run whose epoch diverged 'not finished (1 of 1
    epochs done; no model.pt yet)' and told the user to wait or --resume it; its --resume exits 1
    ('nothing to resume'), and waiting never ends it."""
    out = tmp_path / "run"
    with pytest.raises(coreaug.TrainingDiverged):
        coreaug.train(coreaug.TrainConfig(dataset="synthetic", model="cnn", epochs=1, train_limit=64, lr=1e8,
                                          out=str(out), quiet=True))
    with pytest.raises(coreaug.UsageError, match=r"holds a run that diverged at epoch 1 .*; lower --lr and train it "
                                                 r"again: coreaug train \.\.\. --overwrite --out "):
        coreaug.load_run(out)


def test_restore_judges_auto_settings_as_the_runs_trained_them_not_as_this_machine_would(tmp_path):
    """review29b #2, #3: archive --restore judged --weak auto by a folder that was no longer at its recorded
    path (a run of the random-resized crop on 160 px photos went into a pad-crop grid), and --precision auto
    by this machine's device (a bf16 GPU run went into an fp32 grid on a CPU)."""
    import json

    from PIL import Image

    from coreaug.bench import restore_grid
    from coreaug.bench.archive import archive_grid
    from test_report import write_run

    photos = tmp_path / "photos"
    for name in ("a", "b"):
        (photos / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((160, 160, 3), 40 * i, np.uint8)).save(photos / name / f"{i}.png")

    def grid(name, seed, resolved="fp32", **settings):  # resolved: the precision summary.json records
        folder = write_run(tmp_path / name, "none", seed, [0.3, 0.4])
        config = dict(json.loads((folder / "config.json").read_text()), **settings)
        (folder / "config.json").write_text(json.dumps(config))
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps(dict(summary, config=config, precision=resolved)))
        return archive_grid(tmp_path / name).path

    grid("G", 0, dataset=str(photos), weak="pad-crop", image_size=160)
    archive = grid("A", 1, dataset=str(photos), weak="auto", image_size=160)
    with pytest.raises(coreaug.UsageError, match=r"weak: 'pad-crop' -> 'auto'"):
        restore_grid(archive, out=tmp_path / "G")
    shutil.move(str(photos), str(tmp_path / "moved"))
    with pytest.raises(coreaug.UsageError, match=r"weak: 'pad-crop' -> 'auto'"):
        restore_grid(archive, out=tmp_path / "G")
    grid("P", 0, precision="fp32")
    with pytest.raises(coreaug.UsageError, match=r"precision: 'fp32' -> 'auto'"):
        restore_grid(grid("GPU", 1, precision="auto", resolved="bf16"), out=tmp_path / "P")
    assert restore_grid(grid("CPU", 2, precision="auto", resolved="fp32"), out=tmp_path / "P").written == ["none-seed2"]


def test_evaluate_reads_a_pathlib_path_as_a_folder_even_where_a_dataset_is_registered_by_its_name(
        archived, tmp_path, monkeypatch):
    """review29b #1: evaluate(pathlib.Path("synthetic")) turned the Path into the str "synthetic" before
    telling a folder from a registered name, and scored the built-in synthetic dataset, not ./synthetic."""
    import pathlib

    root, archive = archived
    shutil.copytree(root, tmp_path / "synthetic")
    monkeypatch.chdir(tmp_path)
    model = coreaug.load_run(str(archive.parent / "grid" / "runs" / "r1"))
    assert model.evaluate(pathlib.Path("synthetic")).total == model.evaluate("./synthetic").total == 18


def test_a_folder_named_by_spaces_is_read_by_datasets(tmp_path, monkeypatch):
    """review29b #4: `datasets ' '` refused a folder of images named ' ' as empty, where train read it."""
    write_folder(tmp_path / " ")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["datasets", " ", "--image-size", "8"])
    assert result.exit_code == 0 and "15 train / 3 test images" in result.output, result.output


def test_the_default_run_folder_of_a_dataset_given_as_dot_is_named_after_the_folder(tmp_path, monkeypatch):
    """users29b #1: `cd pets && coreaug train --dataset .` named the run runs/.-random-0.3-...: a hidden
    folder, which `ls runs` does not show, `coreaug archive` leaves out ("not a plain folder name") and the
    dataset's check took for outside a folder without a split."""
    from coreaug.cli.train import default_out

    (tmp_path / "pets" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "pets" / "sub")
    assert os.path.basename(default_out("..", "random", 0.3)).startswith("pets-random-0.3-")
    for dataset in (".", "./"):
        assert os.path.basename(default_out(dataset, "random", 0.3)).startswith("sub-random-0.3-")


def test_a_resume_of_other_settings_says_where_a_run_of_these_goes(tmp_path):
    """users29b #8: a --resume asking a 1-epoch run for 2 was told only to give --epochs 1."""
    config = coreaug.TrainConfig(dataset="synthetic", model="cnn", epochs=1, train_limit=64, quiet=True,
                                 out=str(tmp_path / "run"))
    coreaug.train(config)
    with pytest.raises(coreaug.UsageError, match=r"\(epochs: 1 -> 2\); a run of these needs another --out; a "
                                                 r"--resume continues it with the settings it started with: give "
                                                 r"--epochs 1$"):
        coreaug.train(coreaug.TrainConfig(**{**config.__dict__, "epochs": 2, "resume": True}))


def test_a_report_of_a_folder_of_train_runs_does_not_call_it_an_old_grid(tmp_path):
    """users29b #3: a report of `runs/` (coreaug train's runs, one unfinished) said "it has no grid.json, as
    coreaug 0.2 and older wrote none": a newcomer read that their runs were of an old version."""
    import json

    from coreaug.bench import write_report
    from test_report import write_run

    for seed in range(2):
        write_run(tmp_path / "G", "none", seed, [0.3, 0.4])
    (tmp_path / "G" / "runs" / "none-seed2").mkdir()
    (tmp_path / "G" / "runs" / "none-seed2" / "config.json").write_text(json.dumps({"dataset": "synthetic"}))
    write_report(str(tmp_path / "G" / "runs"), out=str(tmp_path / "rep"))
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "it has no grid.json: runs of coreaug train, or a grid of coreaug 0.2 or older" in text, text


def test_the_train_split_given_alone_is_warned_about(tmp_path):
    """users29b #4: `--dataset pets/train` trained on 90% of train/ and tested on the other 10%, with pets/val/
    never read, without a word."""
    for split in ("train", "val"):
        write_folder(tmp_path / "pets" / split)
    with pytest.warns(UserWarning, match=r"pets/train is the train/ split of .*pets, whose val/ is not read"):
        coreaug.load_dataset(str(tmp_path / "pets" / "train"), image_size=8, progress=False,
                             cache_dir=str(tmp_path / "c"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coreaug.load_dataset(str(tmp_path / "pets"), image_size=8, progress=False, cache_dir=str(tmp_path / "c"))


def test_bench_refuses_a_changed_folder_before_decoding_it_again(tmp_path, monkeypatch):
    """users29b #5: bench on a folder whose images changed since the grid's runs trained decoded a whole new
    cache of it (minutes on a large folder), and only then refused the grid."""
    from coreaug.data.image_cache import caches_in

    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "imgs")
    args = ["bench", "--dataset", str(root), "--model", "cnn", "--epochs", "1", "--image-size", "8", "--batch-size",
            "8", "--subsets", "0.5", "--strategies", "random", "--references", "none", "--workers", "0", "--out",
            str(tmp_path / "grid"), "--quiet"]
    first = CliRunner().invoke(app, [*args, "--seeds", "1"])
    assert first.exit_code == 0, first.output
    write_folder(tmp_path / "imgs", classes=("c0",), per_class=7)  # one image more in c0
    again = CliRunner().invoke(app, [*args, "--seeds", "2"])
    assert again.exit_code == 2 and "the images in" in again.output and "changed" in again.output, again.output
    assert len(caches_in(str(tmp_path / "cache"))) == 1


def test_a_report_inside_the_folder_dataset_its_runs_trained_on_is_refused(tmp_path):
    """benchapi29 #1: write_report(grid, out="pets/train/report") wrote report.png into the dataset: the next
    `train --dataset pets` read a class "report" with the plot as its image, and bench refused to continue the
    grid, its images changed. run_grid and restore_grid refused such an --out already."""
    import json

    from coreaug.bench import write_report
    from test_report import write_run

    pets = write_folder(tmp_path / "pets")
    for strategy in ("none", "random"):
        folder = write_run(tmp_path / "grid", strategy, 0, [0.3, 0.4], subset=None if strategy == "none" else 0.5)
        config = dict(json.loads((folder / "config.json").read_text()), dataset=str(pets))
        (folder / "config.json").write_text(json.dumps(config))
    before = sorted(pets.rglob("*"))
    for out in (pets / "c0" / "report", pets):
        with pytest.raises(coreaug.UsageError, match="the folder dataset the runs trained on, .*where the report's "
                                                     "files would be read as part of the dataset"):
            write_report(tmp_path / "grid", out=out)
    assert sorted(pets.rglob("*")) == before
    (tmp_path / "afile").write_text("")
    with pytest.raises(coreaug.UsageError, match="is, or lies under, a file, not a folder"):
        write_report(tmp_path / "grid", out=tmp_path / "afile")
    assert write_report(tmp_path / "grid", out=tmp_path / "report").runs == 2


def test_run_grid_names_a_misspelt_setting_of_a_dict_config_as_train_does(tmp_path):
    """benchapi29 #2: run_grid({"dataset": "synthetic", "epoch": 1}, ...) raised TypeError: TrainConfig.__init__()
    got an unexpected keyword argument 'epoch', where train names the setting."""
    with pytest.raises(coreaug.UsageError, match="did you mean 'epochs'"):
        coreaug.run_grid({"dataset": "synthetic", "epoch": 1}, tmp_path / "g", subsets=0.3, seeds=1)
    assert not (tmp_path / "g").exists()


def test_restore_into_a_file_is_a_usage_error(archived, tmp_path):
    """benchapi29 #3: restore_grid(archive, out=a file) ended in FileExistsError: [Errno 17] File exists."""
    from coreaug.bench import restore_grid

    _, archive = archived
    (tmp_path / "afile").write_text("")
    with pytest.raises(coreaug.UsageError, match="is a file, not a folder; choose another --out"):
        restore_grid(archive, out=tmp_path / "afile")
