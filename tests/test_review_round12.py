"""Round 12 of review: what it found, each pinned by a test that fails without its fix."""
import re

import pytest

import coreaug
from coreaug.data import image_folder


def _folder(root, splits):
    from PIL import Image

    for split, count in splits:
        for label, name in enumerate("xy"):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                Image.new("RGB", (8, 8), (40 + 150 * label, 9 * k, 90)).save(folder / f"{k}.png")
    return root


def test_evaluating_a_run_on_its_own_unchanged_folder_lists_the_folder_once(tmp_path, monkeypatch):
    """The check that the folder's files are the run's, then the cache lookup, each walked the whole
    folder (one more listing of ImageNet's 1.28 M files on every evaluate)."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    listed = []
    real = image_folder._listed_files
    monkeypatch.setattr(image_folder, "_listed_files", lambda *args: listed.append(args[0]) or real(*args))
    for name, splits in (("split", [("train", 6), ("val", 3)]), ("whole", [("", 12)])):
        root = _folder(tmp_path / name, splits)
        coreaug.train(coreaug.TrainConfig(dataset=str(root), model="cnn", epochs=1, batch_size=6, image_size=8,
                                          quiet=True, out=str(tmp_path / f"run-{name}")))
        run = coreaug.load_run(tmp_path / f"run-{name}")
        listed.clear()
        result = run.evaluate()
        assert result.total == (6 if name == "split" else 2) and result.scored == "test split"
        assert listed == [str(root.resolve())], name
        listed.clear()
        image_folder.folder_fingerprint(root)  # outside evaluate, every call lists the folder now
        image_folder.folder_fingerprint(root)
        assert len(listed) == 2


def test_an_own_loop_seed_past_64_bits_selects_with_a_projected_sketch():
    """The sketch's generator took the seed whole: a seed of 2**64 or more died at the first
    selection (Overflow when unpacking long long) wherever gradients were projected."""
    import torch

    labels, images = torch.arange(60) % 6, torch.rand(60, 1, 8, 8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 6))
    for seed in (2 ** 64, 2 ** 70 + 5):
        method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.5, seed=seed, gradient_dim=4)
        method.start_epoch(0, model, images)
        assert len(method.plan) == 60 + 30  # every example, and the 30 selected augmented


def test_a_built_in_loaders_files_of_one_training_label_are_refused(tmp_path):
    """MNIST-format files of one label (a filtered subset written to reuse the loader) trained to
    chance without a word once the refusal was kept for registered loaders alone."""
    import gzip

    import numpy as np
    import pytest

    from coreaug.data import load_dataset
    from coreaug.errors import UsageError

    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem, values in (("train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8)),
                         ("train-labels-idx1-ubyte", np.full(5, 3, np.uint8)),
                         ("t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8)),
                         ("t10k-labels-idx1-ubyte", np.arange(2, dtype=np.uint8))):
        header = (2051 if values.ndim == 3 else 2049).to_bytes(4, "big")
        header += b"".join(n.to_bytes(4, "big") for n in values.shape)
        (folder / f"{stem}.gz").write_bytes(gzip.compress(header + values.tobytes()))
    with pytest.raises(UsageError, match=r"dataset 'mnist': every training label is 3; .*two classes or more"):
        load_dataset("mnist", tmp_path)


def test_evaluate_names_the_first_class_the_run_lacks_in_file_order(tmp_path):
    """The classes of another folder were looked up in a set's order: which unknown class the error
    named changed from one process to the next (PYTHONHASHSEED)."""
    import pytest
    import torch
    from PIL import Image

    from coreaug.errors import UsageError
    from coreaug.models import create_model
    from coreaug.training.trained import TrainedModel

    for name in ["a"] + [f"c{k:02d}" for k in range(20)]:
        (tmp_path / "new" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "new" / name / "0.png")
    torch.manual_seed(0)
    run = TrainedModel(create_model("cnn", 3, 3), ["a", "b", "c"], 8, 3, (0.5,) * 3, (0.25,) * 3,
                       {"dataset": "mine"})
    with pytest.raises(UsageError, match=r"class 'c00' of .* is not one of the run's classes"):
        run.evaluate(str(tmp_path / "new"))


def test_benchmark_scripts_check_their_arguments_before_measuring(experiment, tmp_path, capsys):
    """A CUDA device on a CPU-only torch was a traceback (or a CUDA generator's linker hint); a
    mistyped --baseline timed this tree again as the baseline; a missing --out folder lost the
    table after the whole run; bench_memory_imagenet_scale's training-logit case died (KeyError)."""
    import argparse

    import pytest
    import torch

    checks = experiment("script_checks")
    parser = argparse.ArgumentParser(prog="bench.py")
    for flag in ("--device", "--baseline", "--before-code", "--out"):
        parser.add_argument(flag)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            checks.checked(parser, parser.parse_args(["--device", "cuda"]))
        assert "--device cuda needs a CUDA build of torch and a GPU" in capsys.readouterr().err
    (tmp_path / "old" / "coreaug").mkdir(parents=True)
    for flag in ("--baseline", "--before-code"):
        with pytest.raises(SystemExit):
            checks.checked(parser, parser.parse_args([flag, str(tmp_path / "old")]))
        assert f"{flag} {tmp_path / 'old'} holds no coreaug package" in capsys.readouterr().err
    (tmp_path / "old" / "coreaug" / "__init__.py").write_text("")
    out = tmp_path / "new" / "folder" / "table.md"
    checks.checked(parser, parser.parse_args(["--baseline", str(tmp_path / "old"), "--out", str(out)]))
    assert out.parent.is_dir()
    memory = experiment("bench_memory_imagenet_scale")
    result = memory.case_training_logits(64)
    assert result["shape"] == [64, 512]


def test_a_folder_named_as_a_runs_unregistered_dataset_is_evaluated_as_given(tmp_path, monkeypatch):
    """A run on a dataset registered in Python, evaluated where it is not registered, refused the
    folder ./mine given as --dataset when the working folder held it (taken for the run's own
    dataset by its name), and its message asked for the folder the user had given."""
    import pytest
    import torch
    from PIL import Image

    from coreaug.errors import UsageError
    from coreaug.models import create_model
    from coreaug.training.trained import TrainedModel

    for name in "abc":
        (tmp_path / "mine" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "mine" / name / "0.png")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    run = TrainedModel(create_model("cnn", 3, 3), ["a", "b", "c"], 8, 3, (0.5,) * 3, (0.25,) * 3,
                       {"dataset": "mine"})
    for given in ("./mine", str(tmp_path / "mine"), "mine/"):
        assert run.evaluate(given).total == 3
    with pytest.raises(UsageError, match=r"the run's dataset 'mine' is not a built-in dataset nor one registered"):
        run.evaluate()


def test_links_to_folders_or_files_that_are_gone_are_counted_not_left_out_silently(tmp_path, capsys):
    """A class folder linked to a disk not mounted was left out without a word (the run trained on
    a class fewer); a linked subfolder that is gone dropped its images the same way. Counted in a
    line, not refused: a DataLad dataset's files not fetched (README.md) are links to nothing too."""
    import os

    from coreaug.data import load_dataset

    whole = _folder(tmp_path / "whole", [("", 4)])
    os.symlink(tmp_path / "unmounted" / "z", whole / "z")
    os.symlink(tmp_path / "annex" / "README.md", whole / "README.md")
    split = _folder(tmp_path / "split", [("train", 4), ("val", 2)])
    os.symlink(tmp_path / "unmounted" / "z", split / "val" / "z")
    inner = _folder(tmp_path / "inner", [("", 4)])
    os.symlink(tmp_path / "unmounted" / "more", inner / "x" / "more")
    for root, first, count, images in ((whole, whole / "README.md", 2, 8), (split, split / "val" / "z", 1, 12),
                                       (inner, inner / "x" / "more", 1, 8)):
        gone = f"left out {count} link{'s' * (count > 1)} to files or folders that are gone (first: {first} -> "
        with pytest.warns(UserWarning, match=re.escape(gone)):
            data = load_dataset(str(root), image_size=8, cache_dir=str(tmp_path / "cache"), workers=0)
        assert len(data.train_labels) + len(data.test_labels) == images and data.num_classes == 2


def test_empty_images_and_links_to_nothing_are_all_named_before_decoding(tmp_path):
    """An empty file or a link to nothing was found only when decoding reached it, one per try, and
    the decoded part thrown away (at ImageNet's size, hours a round); their sizes are read anyway
    (the cache's key), so all of them are counted, and named, before any decoding."""
    import os

    import pytest

    from coreaug.data import load_dataset
    from coreaug.errors import UsageError

    root = _folder(tmp_path / "pets", [("", 4)])
    (root / "y" / "zz-empty.png").write_bytes(b"")
    os.symlink(tmp_path / "gone.png", root / "y" / "zz-gone.png")
    cache = tmp_path / "cache"
    with pytest.raises(UsageError, match=r"cannot read 2 images \(first: .*zz-empty.png \(an empty file\); "
                                         r".*zz-gone.png \(gone: deleted, or a link to nothing\)\); "
                                         r"fix or remove them"):
        load_dataset(str(root), image_size=8, progress=False, cache_dir=str(cache))
    assert not [p for p in cache.rglob("*") if p.is_dir()]  # nothing decoded, no build begun
    data = load_dataset(str(root), image_size=8, progress=False, cache_dir=str(cache), skip_bad_images=True, workers=0)
    assert len(data.train_labels) + len(data.test_labels) == 8


def test_loose_images_beside_class_folders_are_counted_and_the_size_is_the_training_images(tmp_path, capsys):
    """ImageNet's val/ half sorted into class folders tested on the sorted few without a word (its
    loose images left out uncounted); an unread test/ folder, sorting before train/, decided the
    default image size ("sizes that differ": 64 px for a folder of 8-px images)."""
    from PIL import Image

    from coreaug.data import load_dataset
    from coreaug.data.image_folder import own_image_size

    root = _folder(tmp_path / "net", [("train", 4), ("val", 1)])
    for k in range(3):
        Image.new("RGB", (8, 8)).save(root / "val" / f"loose{k}.JPEG")
    (root / "test").mkdir()
    Image.new("RGB", (40, 30)).save(root / "test" / "unlabelled.jpg")
    assert own_image_size(root) == 8
    loose = f"left out 3 image files beside the class folders (first: {root / 'val' / 'loose0.JPEG'})"
    with pytest.warns(UserWarning, match=re.escape(loose)):
        data = load_dataset(str(root), cache_dir=str(tmp_path / "cache"), workers=0)
    assert len(data.test_labels) == 2 and data.train_images.shape[-1] == 8


def test_the_resume_line_names_the_cache_folder_coreaug_cache_dir_chose(tmp_path, monkeypatch):
    """A folder run's cache chosen by COREAUG_CACHE_DIR was not in the printed resume command: a
    shell without the variable resumed into another cache folder, decoding the whole folder again."""
    import shlex

    from coreaug.cli.train import resume_command, train as train_command

    root = _folder(tmp_path / "pets", [("", 2)])
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    for argv, expected in ((["--dataset", str(root)], str((tmp_path / "cache").resolve())),
                           (["--dataset", str(root), "--cache-dir", str(tmp_path / "mine")], str(tmp_path / "mine")),
                           (["--dataset", "digits"], None)):
        with train_command.make_context("train", argv + ["--out", str(tmp_path / "run")]):
            words = shlex.split(resume_command(str(tmp_path / "run")))
        assert (words[words.index("--cache-dir") + 1] if "--cache-dir" in words else None) == expected
        assert words[-3:] == ["--out", str(tmp_path / "run"), "--resume"]


def test_a_named_pipe_with_an_image_name_is_an_unreadable_image_not_a_hang(tmp_path):
    """A named pipe called x.jpg (a broken copy's) was opened to read its header, and waited forever."""
    import os
    import signal

    import pytest

    from coreaug.data import load_dataset
    from coreaug.errors import UsageError

    root = _folder(tmp_path / "pets", [("", 4)])
    os.mkfifo(root / "x" / "pipe.jpg")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the named pipe was opened and read"))
    signal.alarm(60)
    try:
        with pytest.raises(UsageError, match=r"cannot read image .*pipe.jpg \(not a regular file\)"):
            load_dataset(str(root), progress=False, cache_dir=str(tmp_path / "cache"), workers=0)
        data = load_dataset(str(root), progress=False, cache_dir=str(tmp_path / "cache"), workers=0,
                            skip_bad_images=True)
    finally:
        signal.alarm(0)
    assert len(data.train_labels) + len(data.test_labels) == 8 and data.train_images.shape[-1] == 8


def test_a_report_on_a_folder_of_run_folders_says_what_its_cells_pool(tmp_path):
    """`coreaug report runs/` (a folder of run folders, not checked as a grid) pooled runs of other
    epochs into one cell and counted runs of one seed as seeds, without a word."""
    from click.testing import CliRunner

    from coreaug.bench import write_report
    from coreaug.cli.main import app
    from test_report import write_run

    write_run(tmp_path / "A", "random", 0, [0.3, 0.4], subset=0.3)
    write_run(tmp_path / "A", "random", 1, [0.3, 0.4, 0.5], subset=0.3)
    first = write_run(tmp_path / "A", "coreset", 0, [0.3, 0.4], subset=0.3)
    first.rename(first.parent / "coreset-again")
    write_run(tmp_path / "A", "coreset", 0, [0.3, 0.45], subset=0.3)
    result = write_report(tmp_path / "A", out=tmp_path / "report")
    assert result.pooled == [f"`{tmp_path / 'A'}`: runs of other settings pooled in one cell (random 30%: epochs "
                             "(2, 3); report them from folders of their own to compare them); runs of one seed counted "
                             "as several (coreset 30%: 2 runs of seed 0)"]
    assert result.pooled[0].split(": ", 1)[1] in (tmp_path / "report" / "report.md").read_text()
    write_run(tmp_path / "A", "random", 2, [0.3, 0.4, 0.5, 0.6], subset=0.1)  # another cell, of 4 epochs
    write_run(tmp_path / "A", "random", 3, [0.3, 0.4, 0.5, 0.6], subset=0.1)
    assert "random 10%" not in write_report(tmp_path / "A", out=tmp_path / "report").pooled[0]
    assert write_report(tmp_path / "A", out=tmp_path / "report", subsets=[0.1]).pooled == []  # only the runs shown
    for curve in ([0.3, 0.4], [0.3, 0.5]):  # a grid's runs, one per seed, of one setting: nothing pooled
        write_run(tmp_path / "B", "random", len(curve) + int(10 * curve[-1]), curve, subset=0.3)
    assert write_report(tmp_path / "B", out=tmp_path / "report-b").pooled == []
    out = CliRunner().invoke(app, ["report", str(tmp_path / "A"), "--out", str(tmp_path / "report")]).output
    assert "runs of other settings pooled in one cell, runs of one seed counted as several (listed in the " \
        "report)" in out


def test_bench_timing_reads_on_off_settings_and_scripts_refuse_too_few_epochs(experiment, capsys):
    """bench_timing's KEY=VALUE kept True/False/None as text (a grid with an on/off flag died in a
    traceback) and took a mistyped key to TrainConfig; --epochs 1 ended a compiled-step benchmark
    with an empty median after its run."""
    import argparse

    import pytest

    timing = experiment("bench_timing")
    assert timing.parse_settings(["weight_augmented=False", "flip=None", "milestones=0.5,0.75", "lr=0.1",
                                  "train-limit=100", "dataset=digits"]) == {
        "weight_augmented": False, "flip": None, "milestones": (0.5, 0.75), "lr": 0.1, "train_limit": 100,
        "dataset": "digits"}
    for bad in (["datset=digits"], ["lr"]):
        with pytest.raises(ValueError, match="is no KEY=VALUE of a TrainConfig setting"):
            timing.parse_settings(bad)
    parser = argparse.ArgumentParser(prog="bench.py")
    parser.add_argument("--epochs", type=int)
    with pytest.raises(SystemExit):
        experiment("script_checks").checked(parser, parser.parse_args(["--epochs", "1"]), min_epochs=2)
    assert "--epochs must be 2 or more" in capsys.readouterr().err


def test_a_resume_with_tensorboard_leaves_one_event_file(tmp_path, monkeypatch):
    """Each --resume --tensorboard added an event file that wrote every earlier epoch again, and
    none was removed: a job resumed 10 times held 10 files, read and purged at every load."""
    import pytest

    from coreaug.training.run_files import RunFolder
    from test_run_logs import TINY, read_scalars

    run = tmp_path / "run"
    config = dict(TINY, epochs=4, out=str(run), tensorboard=True)
    real_save = RunFolder.save_epoch
    for stop in (1, 1, 1):  # three starts stopped after one more epoch each
        saved = []

        def stopped(self, checkpoint, history, saved=saved):
            real_save(self, checkpoint, history)
            saved.append(1)
            if len(saved) == stop:
                raise KeyboardInterrupt
        monkeypatch.setattr(RunFolder, "save_epoch", stopped)
        with pytest.raises(KeyboardInterrupt):
            coreaug.train(coreaug.TrainConfig(**config, resume=(run / "checkpoint.pt").exists()))
    monkeypatch.setattr(RunFolder, "save_epoch", real_save)
    coreaug.train(coreaug.TrainConfig(**config, resume=True))
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert [step for step, _ in read_scalars(run / "tensorboard")["loss/train"]] == [1, 2, 3, 4]


def test_the_listing_memo_is_the_calling_threads_own(tmp_path, monkeypatch):
    """The memo was one global: another thread's evaluate inside its block listed through it (stale
    listings, or a TypeError when the block ended between its test and its write)."""
    import threading

    root = _folder(tmp_path / "pets", [("", 2)])
    listed = []
    real = image_folder._listed_files
    monkeypatch.setattr(image_folder, "_listed_files", lambda *args: listed.append(args[0]) or real(*args))
    inside, done = threading.Event(), threading.Event()

    def evaluating():
        with image_folder.one_listing():
            image_folder.folder_fingerprint(root)
            inside.set()
            done.wait(30)
    thread = threading.Thread(target=evaluating)
    thread.start()
    assert inside.wait(30)
    image_folder.folder_fingerprint(root)  # this thread: outside any block, listed afresh each time
    image_folder.folder_fingerprint(root)
    done.set()
    thread.join()
    assert len(listed) == 3


def test_a_resume_keeps_the_image_size_its_run_recorded(tmp_path):
    """The default size is now judged from train/: a run started when a 16-px val/ made it 64 was
    refused on --resume as "a different config (image_size: 64 -> 8)", offering only --overwrite."""
    import json

    from PIL import Image

    root = _folder(tmp_path / "pets", [("train", 4)])
    for name in "xy":
        (root / "val" / name).mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(root / "val" / name / "0.png")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"dataset": str(root), "image_size": 64}))
    config = coreaug.TrainConfig(dataset=str(root), out=str(tmp_path / "run"))
    assert config.resolved().image_size == 8  # a new run: train/'s own size
    assert coreaug.TrainConfig(dataset=str(root), out=str(tmp_path / "run"), resume=True).resolved().image_size == 64
    assert coreaug.TrainConfig(dataset=str(root), out=str(tmp_path / "none"), resume=True).resolved().image_size == 8


def test_review_13_leftovers(tmp_path, monkeypatch):
    """predict opened a named pipe's header (and waited forever); evaluate called it "no such file";
    a numpy integer seed overflowed the sketch and True was taken; a val/ linked to a disk not
    mounted read as "no val/ folder"; --dataset mine, with ./mine here, was not told ./mine."""
    import os
    import signal

    import numpy as np
    import pytest
    import torch

    from coreaug.data import load_dataset
    from coreaug.errors import UnreadableImage, UsageError
    from coreaug.selection.gradients import GradientSketch
    from coreaug.training.trained import check_headers

    root = _folder(tmp_path / "mine", [("", 2)])
    os.mkfifo(root / "x" / "pipe.png")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the named pipe was opened"))
    signal.alarm(60)
    try:
        for check in (lambda: check_headers([str(root / "x" / "pipe.png")], "advice"),
                      lambda: _run_of().read(str(root / "x" / "pipe.png"))):
            with pytest.raises(UnreadableImage, match=r"pipe.png \(not a regular file \(a named pipe or a device"):
                check()
    finally:
        signal.alarm(0)
    sketch = GradientSketch(10, dim=4, seed=np.int64(3)).class_side
    assert torch.equal(sketch, GradientSketch(10, dim=4, seed=3).class_side)
    with pytest.raises(UsageError, match="seed must be an integer, got True"):
        GradientSketch(10, dim=4, seed=True)
    split = _folder(tmp_path / "split", [("train", 2)])
    os.symlink(tmp_path / "unmounted" / "val", split / "val")
    with pytest.raises(UsageError, match=r"split/val is a link to .*unmounted/val, which does not exist"):
        load_dataset(str(split), progress=False, cache_dir=str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"the folder mine here: --dataset \./mine\)"):
        _run_of().evaluate("mine")


def _run_of():
    import torch

    from coreaug.models import create_model
    from coreaug.training.trained import TrainedModel

    torch.manual_seed(0)
    return TrainedModel(create_model("cnn", 3, 2), ["x", "y"], 8, 3, (0.5,) * 3, (0.25,) * 3, {"dataset": "mine"})
