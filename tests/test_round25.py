"""Round 25: tests where a plausible bug went uncaught, and fixes found by the round's reviews."""
import numpy as np

import coreaug
from coreaug.selection.rules import select_ccs

from test_round24 import _face, _in_the_first_worker


def test_dropping_singletons_keeps_the_plain_coreset_when_no_replacement_is_less_alone():
    # three points far apart, two picks: every set of two leaves one pick alone, so the earliest
    # set with the fewest singletons, the plain greedy coreset, is the answer
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 20, size=(3, 2)).astype(np.float32)
        y = np.zeros(3, dtype=np.int64)
        plain = coreaug.select_coreset(x, y, 2 / 3)
        dropped = coreaug.select_coreset(x, y, 2 / 3, drop_singletons=True)
        if np.unique(x, axis=0).shape[0] == 3:
            assert sorted(dropped.indices.tolist()) == sorted(plain.indices.tolist())


def test_ccs_spreads_the_budget_over_the_strata_smallest_first():
    # five equal-width strata of difficulty holding 2, 2, 30, 30, 30 examples and 40 picks: the two
    # small strata are taken whole and the rest is shared evenly, 12 each
    norms = np.concatenate([[0.0, 0.5], [1.2, 1.5], np.linspace(2.1, 2.9, 30), np.linspace(3.1, 3.9, 30),
                            np.linspace(4.1, 5.0, 30)])
    x = np.stack([norms, np.zeros_like(norms)], axis=1).astype(np.float32)
    y = np.zeros(norms.size, dtype=np.int64)
    for seed in range(5):
        chosen = select_ccs(y, 40 / norms.size, estimates=x, hard_cut=0.0, strata=5, seed=seed).indices
        counts = np.bincount(np.minimum(norms[chosen], 4.99).astype(int), minlength=5)
        assert counts.tolist() == [2, 2, 12, 12, 12]


def test_a_pass_begun_before_the_next_epoch_started_is_refused_not_trained_on_the_old_plan():
    """explore25-lightning #1: Lightning resumed from an epoch's end makes the DataLoader's iterator with the
    ended epoch's plan (current_epoch is still that epoch in train_dataloader()); its workers then trained
    the whole next epoch on the old plan and the old selection's weights, silently."""
    import pytest
    import torch

    method, train, model = _face(select_every=2)
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=4, sampler=method.sampler(),
                                         num_workers=1)
    method.start_epoch(1, model, train)
    batches = iter(loader)  # with workers, items are drawn at once
    next(batches)
    method.start_epoch(1, model, train)  # the same epoch again (Lightning's second call): nothing changes
    assert sum(len(batch[0]) for batch in batches) == len(method.plan) - 4
    batches = iter(loader)
    next(batches)
    method.start_epoch(2, model, train)  # a new selection, after the pass began
    with pytest.raises(coreaug.UsageError, match=r"the method began epoch 2 while the DataLoader was iterating "
                                                 r"epoch 1's plan, whose iterator was made before it"):
        list(batches)
    del batches
    items = iter(method.sampler())
    next(items)
    method.start_epoch(3, model, train)  # no selection due: another epoch's plan of the same selection
    with pytest.raises(coreaug.UsageError, match="began epoch 3 while the DataLoader was iterating epoch 2's"):
        next(items)


def test_a_persistent_worker_is_told_at_a_second_epoch_not_at_a_second_pass_of_one_epoch(monkeypatch):
    """explore25-lightning #2: Lightning iterates a reloaded DataLoader twice in an epoch; with persistent
    workers, the worker warned every epoch of a refusal that never came (each epoch's loader is new)."""
    method, train, model = _face(select_every=2)
    dataset, sampler = method.dataset(train), method.sampler()
    with _in_the_first_worker(monkeypatch) as caught:
        for _ in range(2):
            method.start_epoch(0, model, train)
            for item in sampler:
                dataset[item]
        assert not [w for w in caught if "persistent" in str(w.message)]
        method.start_epoch(1, model, train)
        for item in sampler:
            dataset[item]
        assert len([w for w in caught if "serves a second epoch" in str(w.message)]) == 1


def _image_folders(root, splits=(("train", 6), ("val", 2))):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in splits:
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def test_val_fraction_with_a_folder_that_has_its_own_test_split_is_refused_and_binds_no_resume(tmp_path):
    """explore25-pairwise3 #1: accepted, ignored, recorded, and then a --resume had to repeat it."""
    import json

    import pytest
    from click.testing import CliRunner

    from coreaug.cli.main import app

    folder = _image_folders(tmp_path / "pets")
    with pytest.raises(coreaug.UsageError, match=r"val_fraction splits off the test images .* has train/ and its own "
                                                 r"test split \(val/ or test/\): leave val_fraction out"):
        coreaug.TrainConfig(dataset=str(folder), val_fraction=0.3).resolved()
    flat = _image_folders(tmp_path / "flat", (("", 6),))  # class folders in the root: the flag splits them
    assert coreaug.TrainConfig(dataset=str(flat), val_fraction=0.3).resolved().val_fraction == 0.3
    result = CliRunner().invoke(app, ["datasets", str(folder), "--val-fraction", "0.3"])
    assert result.exit_code == 2 and "leave --val-fraction out" in result.output
    base = ["train", "--dataset", str(folder), "--model", "cnn", "--epochs", "1", "--batch-size", "4", "-q",
            "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, base + ["--val-fraction", "0.3"])
    assert result.exit_code == 2 and "leave --val-fraction out" in result.output
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["val_fraction"] = 0.3  # a run recorded before the flag was refused
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, base + ["--resume"])
    assert result.exit_code == 0, result.output


def test_evaluate_refuses_the_decoding_settings_for_a_built_in_dataset(tmp_path):
    """explore25-changelog #8: train refused them, evaluate took them and did nothing."""
    import pytest
    from click.testing import CliRunner

    from coreaug.cli.main import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--dataset", "digits", "--train-limit", "64", "--test-limit", "32",
                                      "--epochs", "1", "-q", "--out", str(run)])
    assert result.exit_code == 0, result.output
    trained = coreaug.load_run(run)
    with pytest.raises(coreaug.UsageError, match="cache_dir applies to the run's own folder dataset, decoded into a "
                                                 "cache; digits is a built-in dataset, loaded as it is: leave it out"):
        trained.evaluate(cache_dir=str(tmp_path))
    assert trained.evaluate(skip_bad_images=False).total == 359  # (the whole test split: --test-limit is training's)
    for flag, applies in ((["--skip-bad-images"], "a folder of images"),
                          (["--cache-dir", str(tmp_path)], "the run's own folder dataset")):
        result = CliRunner().invoke(app, ["evaluate", str(run), *flag])
        assert result.exit_code == 2 and f"{flag[0]} applies to {applies}" in result.output, result.output
    # review39 #5: another folder is read as image files: --cache-dir did nothing there too
    own, other = _image_folders(tmp_path / "own"), _image_folders(tmp_path / "other")
    result = CliRunner().invoke(app, ["train", "--dataset", str(own), "--model", "cnn", "--epochs", "1", "-q",
                                      "--batch-size", "4", "--out", str(tmp_path / "folder-run")])
    assert result.exit_code == 0, result.output
    folder_run = coreaug.load_run(tmp_path / "folder-run")
    with pytest.raises(coreaug.UsageError, match="cache_dir applies to the run's own folder dataset, decoded into a "
                                                 "cache; .*other is another folder, read as image files"):
        folder_run.evaluate(str(other), cache_dir=str(tmp_path / "cache"))
    assert folder_run.evaluate(str(other), skip_bad_images=True).total == 4
    assert folder_run.evaluate(cache_dir=str(tmp_path / "cache")).total == 4  # its own: decoded there


def test_a_stop_in_the_teardown_of_a_finished_command_is_no_failure(tmp_path):
    """explore25-pairwise3 #4: a SIGTERM (a scheduler's time limit) landing in the last second of a finished
    run's teardown (inductor's workers, the interpreter) ended it with 143 and no word."""
    import subprocess
    import sys

    script = f"""
import atexit, os, signal, sys, time

def teardown():  # (atexit's callbacks run last first: coreaug's, registered by main, before this one)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("torn down")

atexit.register(teardown)
sys.argv = ["coreaug", "train", "--dataset", "digits", "--train-limit", "64", "--test-limit", "32", "--epochs", "1",
            "-q", "--out", {str(tmp_path / "run")!r}]
from coreaug.cli.main import main
main()
print("goes on", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)  # review39 #2: a caller that goes on (%run)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.splitlines()[-2:] == ["goes on True", "torn down"], \
        (done.returncode, done.stdout, done.stderr)
    assert (tmp_path / "run" / "model.pt").exists()


def test_trainings_warnings_name_the_callers_line_and_the_python_way_to_match_threads():
    """explore25-notebook #1, #2: they named coreaug's trainer.py and precision.py (a warm notebook kernel then
    hid every repeat: one location), and told a running kernel to set OMP_NUM_THREADS."""
    import warnings

    import torch

    from coreaug.training.trainer import _check_resumed

    base = dict(dataset="digits", train_limit=64, test_limit=32, batch_size=32, quiet=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coreaug.train(coreaug.TrainConfig(**base, epochs=1, precision="fp16", device="cpu"))
        coreaug.train(coreaug.TrainConfig(**base, epochs=2, strategy="coreset", select_every=5))
        _check_resumed([{"threads": torch.get_num_threads() + 1}], torch.device("cpu"), 1)
    said = {w.message.args[0].split(" ")[1]: w for w in caught
            if str(w.message).startswith(("precision fp16", "--select-every", "the run trained"))}
    assert set(said) == {"fp16", "5", "run"}
    assert all(w.filename == __file__ for w in said.values()), [(w.filename, w.lineno) for w in said.values()]
    assert f"torch.set_num_threads({torch.get_num_threads() + 1}) before train" in str(said["run"].message)


def test_a_notebook_gets_the_progress_bar_not_a_line_a_minute(monkeypatch):
    """explore25-notebook #3: a Jupyter kernel's stderr is no tty, so training showed a plain line every 60 s."""
    import sys

    from tqdm import tqdm

    from coreaug import progress

    OutStream = type("OutStream", (), {"__module__": "ipykernel.iostream", "isatty": lambda self: False,
                                       "write": lambda self, text: len(text), "flush": lambda self: None})
    monkeypatch.setattr(sys, "stderr", OutStream())
    bar = progress.progress_bar(10, "decoding", "img")
    assert isinstance(bar, tqdm) and bar.mininterval == progress.KERNEL_BAR_SECONDS  # review39 #6: a notebook run
    bar.close()  # headless keeps each frame as an output
    monkeypatch.setattr(sys, "stderr", type("Log", (OutStream,), {"__module__": "logging_file"})())
    assert isinstance(progress.progress_bar(10, "decoding", "img"), progress.PlainProgress)


def test_an_interrupted_train_call_notes_what_its_folder_keeps_and_how_to_go_on(tmp_path):
    """explore25-notebook #6: a notebook's stop button ended in a bare KeyboardInterrupt through torch's frames."""
    import dataclasses
    import sys

    import pytest

    if sys.version_info < (3, 11):
        pytest.skip("exception notes are Python 3.11's")

    def stop(row):
        raise KeyboardInterrupt

    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=32, batch_size=32, epochs=3, quiet=True,
                                 out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt) as stopped:
        coreaug.train(config, on_epoch=stop)
    assert stopped.value.__notes__ == [f"coreaug: the run stopped with 1 of its 3 epochs kept in {tmp_path / 'run'}; "
                                       "train it again with resume=True (and the same settings) to go on from there"]
    assert len(coreaug.train(dataclasses.replace(config, resume=True)).history) == 3


def test_a_train_results_repr_leads_with_its_figures_and_is_short():
    """explore25-notebook #7: a cell ending in the result showed all 57 settings before the accuracy."""
    result = coreaug.train(coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=32, epochs=1, quiet=True))
    shown = repr(result)
    assert shown.startswith(f"TrainResult(final_test_accuracy={result.final_test_accuracy!r}, ") and len(shown) < 400
    assert "epochs=1, out=None, config=TrainConfig(dataset='digits', model='cnn', strategy='random'" in shown


def test_a_pass_with_nothing_left_ends_after_the_next_epoch_started():
    """review39 #1: ignite takes len(loader) batches, starts the next epoch, then asks the same iterator once more
    for its StopIteration: refused as a pass going on (with num_workers 0), though no item of it was left."""
    import torch

    method, train, model = _face(select_every=2)
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=8, sampler=method.sampler())
    for epoch in range(3):
        method.start_epoch(epoch, model, train)
        if epoch == 0:
            batches = iter(loader)
        taken = [next(batches) for _ in range(len(loader))]
        assert sum(len(batch[0]) for batch in taken) == len(method.plan)
        if epoch < 2:
            method.start_epoch(epoch + 1, model, train)  # (as ignite's EPOCH_STARTED does, before the next())
            try:
                next(batches)
            except StopIteration:
                batches = iter(loader)


def test_val_fraction_is_refused_only_beside_a_test_split_of_the_folders_own(tmp_path):
    """review39 #4: a train/ without val/ or test/ (or a class folder named train) was told to leave the flag out,
    hiding the error that names --val-fraction as the way out."""
    import pytest

    only = _image_folders(tmp_path / "only", (("train", 4),))
    with pytest.raises(coreaug.UsageError, match="has train/ but no val/ or test/ folder; add one"):
        coreaug.load_dataset(str(only), val_fraction=0.3)
    config = coreaug.TrainConfig(dataset=str(only), val_fraction=0.3).resolved()  # the layout's error comes at load
    assert config.val_fraction == 0.3


def test_a_resume_on_a_registered_datasets_changed_labels_says_the_data_changed(tmp_path, monkeypatch):
    """explore25-notebook #4: a notebook cell re-run with other labels, then resume=True: refused with the own
    loop's advice (load it into a CoresetAugmentation ..., use()), which a coreaug.train caller never made."""
    import dataclasses

    import pytest
    import torch

    from coreaug.data import registry

    labels = {"train": torch.arange(60) % 3}

    def load(data_dir=None, *, download=False, progress=True):
        x = torch.zeros(60, 3, 8, 8, dtype=torch.uint8) + torch.arange(60, dtype=torch.uint8)[:, None, None, None]
        return coreaug.ImageDataset(name="r25-cell", train_images=x, train_labels=labels["train"], test_images=x[:12],
                                    test_labels=labels["train"][:12], num_classes=3, class_names=["a", "b", "c"],
                                    mean=(0.1,) * 3, std=(0.1,) * 3, source="memory")
    monkeypatch.setitem(registry._LOADERS, "r25-cell", load)

    def stop(row):
        raise KeyboardInterrupt

    config = coreaug.TrainConfig(dataset="r25-cell", model="cnn", epochs=2, batch_size=16, quiet=True,
                                 out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(config, on_epoch=stop)
    labels["train"] = (torch.arange(60) + 1) % 3  # the cell run again, other labels
    with pytest.raises(coreaug.UsageError, match=r"holds a run that trained on another training set of r25-cell than "
                                                 r"it has now \(its training images or labels changed\): "
                                                 r"restore the data it started on, or start it again with --overwrite"):
        coreaug.train(dataclasses.replace(config, resume=True))


def test_a_notebook_shows_a_bench_or_report_result_as_its_tables(tmp_path):
    """explore25-notebook #7: a cell ending in run_grid's or write_report's result showed its file paths."""
    from coreaug.bench import write_report

    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=32, epochs=1, quiet=True)
    bench = coreaug.run_grid(config, tmp_path / "grid", subsets=(0.3,), strategies=("random",), references=("none",),
                             seeds=1, jobs=1)
    assert bench._repr_markdown_() == (tmp_path / "grid" / "results.md").read_text(encoding="utf-8")
    report = write_report(str(tmp_path / "grid"), out=str(tmp_path / "report"))
    shown = report._repr_markdown_()
    assert shown == open(report.files["md"], encoding="utf-8").read() and "|" in shown
    (tmp_path / "grid" / "results.md").unlink()
    assert bench._repr_markdown_() is None  # (gone: the notebook shows the repr)
