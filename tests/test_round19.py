"""Round 19's reports and reviews: what coreaug reads that someone else wrote (explore19-security: a
run's import path imported only when named, links in a run folder, compressed bombs, large images,
escape sequences), schedules (explore19-schedule), logs (explore19-logs), --compile (explore19-compile),
bench on users' data (explore19-bench), review26/27's regressions; and note52's polish left alone
(error lines keeping a name's spaces, select's count advice, untrained classes, case twins, per-class
counts)."""
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import coreaug
from coreaug.cli.main import app
from coreaug.errors import UsageError
from coreaug.training.trained import UntrustedModel

import test_bench_cli
from test_bench_cli import GRID, bench_in_process
from test_bench_cli import TINY as BENCH_TINY

grid, copied_grid, train_calls = test_bench_cli.grid, test_bench_cli.copied_grid, test_bench_cli.train_calls  # fixtures

TINY = dict(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True)
MARKED = ("import pathlib, torch\n"
          "pathlib.Path(__file__).with_name('imported.txt').write_text('ran')\n\n"
          "def small(c, k):\n"
          "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * 64, k))\n")


@pytest.fixture
def imported_run(tmp_path, monkeypatch):
    """A finished run of `nets_r19:small`, a module that writes imported.txt beside itself when
    imported; the module is forgotten and the file removed afterwards, as in a fresh process."""
    (tmp_path / "nets_r19.py").write_text(MARKED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("nets_r19", None)
    coreaug.train(coreaug.TrainConfig(**TINY, model="nets_r19:small", out=str(tmp_path / "run")))
    sys.modules.pop("nets_r19")
    (tmp_path / "imported.txt").unlink()
    Image.new("L", (8, 8), 40).save(tmp_path / "x.png")
    yield tmp_path
    sys.modules.pop("nets_r19", None)  # another test's module of the same name is imported from its folder


def test_load_run_imports_a_recorded_path_only_when_it_is_named(imported_run):
    with pytest.raises(UntrustedModel, match=r"trained the model that nets_r19:small builds: loading it imports "
                                             r"module 'nets_r19' and runs its code.*model='nets_r19:small'\)$"):
        coreaug.load_run(imported_run / "run")
    with pytest.raises(UsageError, match=r"^model 'nets_r19:large' is not the model .* \('nets_r19:small'\); "
                                         "name that one$"):
        coreaug.load_run(imported_run / "run", model="nets_r19:large")
    assert not (imported_run / "imported.txt").exists()  # refused before anything was imported
    trained = coreaug.load_run(imported_run / "run", model="nets_r19:small")
    assert (imported_run / "imported.txt").exists() and trained.model[-1].out_features == 10


def test_predict_and_evaluate_import_a_runs_code_only_with_model(imported_run):
    runner = CliRunner()
    for args in (["predict", "run", "x.png"], ["evaluate", "run"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
        assert refused.output.rstrip().endswith("for a run you trust, name it: --model nets_r19:small")
        assert not (imported_run / "imported.txt").exists()
    wrong = runner.invoke(app, ["predict", "run", "x.png", "--model", "cnn"])
    assert wrong.exit_code == 2 and "--model 'cnn' is not an import path" in wrong.output
    done = runner.invoke(app, ["predict", "run", "x.png", "--model", "nets_r19:small", "--top-k", "1"])
    assert done.exit_code == 0 and done.output.startswith("image,rank,class,probability\nx.png,1,"), done.output
    assert (imported_run / "imported.txt").exists()
    scored = runner.invoke(app, ["evaluate", "run", "--model", "nets_r19:small"])
    assert scored.exit_code == 0 and scored.output.startswith("accuracy "), scored.output


def test_a_run_of_a_built_in_model_needs_no_model_and_refuses_another(tmp_path):
    coreaug.train(coreaug.TrainConfig(**TINY, model="cnn", out=str(tmp_path / "run")))
    assert coreaug.load_run(tmp_path / "run").model is not None
    with pytest.raises(UsageError, match=r"^model 'x:y' is not the model .* \('cnn'\); leave it out$"):
        coreaug.load_run(tmp_path / "run", model="x:y")


def test_an_error_line_keeps_the_spaces_inside_a_name(tmp_path):
    (tmp_path / "my  data").mkdir()
    result = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "my  data"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and f"error: {tmp_path / 'my  data'} holds no class folders" in result.output


@pytest.mark.parametrize("count, advice", [
    (20, "to select 20 of these 1,000 examples pass --fraction 0.02"),
    (3000, "there are 1,000 examples; --fraction 1 selects them all"),
])
def test_select_turns_a_count_given_as_the_fraction_into_the_fraction(tmp_path, count, advice):
    np.save(tmp_path / "labels.npy", np.arange(1000) % 4)
    result = CliRunner().invoke(app, ["select", "--labels", str(tmp_path / "labels.npy"), "--strategy", "random",
                                      "--fraction", str(count), "--out", str(tmp_path / "s.npz")])
    assert result.exit_code == 2 and result.output == f"error: --fraction must be in (0, 1], got {count}; {advice}\n"
    if count < 1000:  # the advice selects that count
        fraction = float(advice.rsplit(" ", 1)[1])
        picked = coreaug.selection.rules.select_by_rule("random", np.arange(1000) % 4, fraction, seed=0)
        assert len(picked.indices) == count


def test_a_class_with_no_training_example_is_named_in_a_note(tmp_path, capsys):
    coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=6, test_limit=20,
                                      out=str(tmp_path / "run")))
    err = capsys.readouterr().err
    assert "classes have no training example (--train-limit 6 drew none of them): " in err
    assert "the model never learns to predict them" in err
    coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=200, test_limit=20,
                                      out=str(tmp_path / "run2")))
    assert "no training example" not in capsys.readouterr().err


def test_a_small_gzip_idx_file_that_unpacks_past_its_header_is_refused_without_unpacking_it(tmp_path):
    import gzip
    import tracemalloc

    from coreaug.data.idx import IMAGES_MAGIC, read_idx
    from test_data_mnist import idx_bytes

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:  # 10 images declared, then 256 MB of zeros (~250 KB)
        f.write(idx_bytes(np.zeros((10, 28, 28), np.uint8), IMAGES_MAGIC))
        for _ in range(16):
            f.write(bytes(1 << 24))
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"declares shape \(10, 28, 28\) \(7856 bytes\) but holds more: "):
            read_idx(path, IMAGES_MAGIC)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # the whole file unpacked held 256 MB
    path.write_bytes(gzip.compress(idx_bytes(np.arange(20, dtype=np.uint8).reshape(5, 2, 2), IMAGES_MAGIC)))
    assert read_idx(path, IMAGES_MAGIC).tolist() == np.arange(20).reshape(5, 2, 2).tolist()


class Pickled:  # an object torch.save pickles into a model.pt, which weights_only never unpickles
    pass


def test_a_model_file_holding_pickled_objects_is_called_so_not_corrupt(tmp_path):
    import torch

    coreaug.train(coreaug.TrainConfig(**TINY, model="cnn", out=str(tmp_path / "run")))
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    torch.save({**state, "extra": Pickled()}, tmp_path / "run" / "model.pt")
    with pytest.raises(UsageError, match=r"model.pt is not a coreaug model file: it holds pickled Python objects "
                                         r"\(test_round19.Pickled\), which are never unpickled here"):
        coreaug.load_run(tmp_path / "run")


@pytest.mark.parametrize("typed, name", [("Digits", "digits"), ("MNIST", "mnist"), ("fashion_mnist", "fashion-mnist"),
                                         ("CIFAR10", "cifar10"), ("SVHN", "svhn")])
def test_a_dataset_named_in_another_case_takes_its_own_defaults(typed, name):
    fields = ("dataset", "model", "epochs", "batch_size", "lr", "flip", "milestones", "weight_decay")
    other, own = coreaug.TrainConfig(dataset=typed).resolved(), coreaug.TrainConfig(dataset=name).resolved()
    assert [getattr(other, f) for f in fields] == [getattr(own, f) for f in fields]


def test_a_model_reading_rule_that_selects_once_is_warned_about(tmp_path):
    with pytest.warns(UserWarning, match=r"--select-every 5 is not below --epochs 2: maxloss selects once, at epoch 0, "
                                         r"from the outputs of the model as it starts \(untrained"):
        coreaug.train(coreaug.TrainConfig(**{**TINY, "epochs": 2}, strategy="maxloss", select_every=5,
                                          out=str(tmp_path / "once")))
    import warnings

    for strategy, every in (("random", 5), ("maxloss", 1)):  # random reads no model; this one re-selects
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            coreaug.train(coreaug.TrainConfig(**{**TINY, "epochs": 2}, strategy=strategy, select_every=every))


def test_eval_every_changes_no_run_a_resume_continues(tmp_path):
    config = dict(TINY, epochs=2, out=str(tmp_path / "run"))
    coreaug.train(coreaug.TrainConfig(**config, eval_every=1))
    again = coreaug.train(coreaug.TrainConfig(**config, eval_every=2, resume=True))
    assert len(again.history) == 2


def test_subset_with_the_full_strategy_is_warned_about_and_still_compared(tmp_path):
    args = ["train", "--dataset", "digits", "--train-limit", "100", "--test-limit", "50", "--epochs", "1",
            "--strategy", "full", "--quiet", "--out", str(tmp_path / "run")]
    with pytest.warns(UserWarning, match=r"^--subset is not read by --strategy full: it has no effect on this run "
                                         r"\(--subset is still recorded, and a --resume compares it\)$"):
        assert CliRunner().invoke(app, args + ["--subset", "0.5"]).exit_code == 0
    refused = CliRunner().invoke(app, args + ["--subset", "0.6", "--resume"])
    assert refused.exit_code == 2 and "(subset: 0.5 -> 0.6)" in refused.output, refused.output


def test_a_milestone_drops_the_rate_at_the_start_of_its_epoch():
    from coreaug.training.schedule import learning_rate

    config = coreaug.TrainConfig(dataset="digits", epochs=100, schedule="multistep", milestones=(0.55, 0.8),
                                 lr=0.1).resolved()  # 0.55 * 100 is 55.00000000000001 in floating point
    assert learning_rate(config, 54.99) == pytest.approx(0.1)
    assert learning_rate(config, 55.0) == pytest.approx(0.01) and learning_rate(config, 80.0) == pytest.approx(0.001)


def test_a_grey_or_16_bit_image_decodes_to_the_same_pixels_without_full_size_copies(tmp_path, monkeypatch):
    import tracemalloc

    from PIL import Image as PILImage

    from coreaug.data.image_folder import decode_square

    levels = (np.arange(600 * 400, dtype=np.uint32).reshape(400, 600) * 7 % 65536).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")  # 16-bit grey
    Image.fromarray((levels >> 8).astype(np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray((levels >> 8).astype(np.uint8)).convert("RGB").save(tmp_path / "rgb.png")
    want = decode_square(tmp_path / "rgb.png", 32)
    copied, convert, copy = [], PILImage.Image.convert, PILImage.Image.copy
    monkeypatch.setattr(PILImage.Image, "convert",
                        lambda self, *a, **k: copied.append(self.size) or convert(self, *a, **k))
    monkeypatch.setattr(PILImage.Image, "copy", lambda self: copied.append(self.size) or copy(self))
    for name in ("deep.png", "grey.png", "rgb.png"):
        tracemalloc.start()
        try:
            got = decode_square(tmp_path / name, 32)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert got.shape == (32, 32, 3) and np.array_equal(got, want), name
        assert peak < 600 * 400 * 6, (name, peak)  # numpy's arrays are traced: int64 ones took 8 bytes a pixel
    assert (600, 400) not in copied  # neither made RGB nor copied (EXIF) at full size: only once resized


def test_epoch_lines_reach_a_pipe_as_each_epoch_ends(tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's shell: stdout buffered
    proc = subprocess.Popen([sys.executable, "-m", "coreaug", "train", "--dataset", "digits", "--epochs", "300",
                             "--train-limit", "64", "--test-limit", "32", "--out", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**env, "OMP_NUM_THREADS": "1"})
    try:
        first = proc.stdout.readline()  # held in an 8 KB buffer, it came with ~85 epochs' lines
        rows = (tmp_path / "run" / "metrics.jsonl").read_text().count("\n")
        assert first.startswith("epoch 1/300  loss ") and rows < 30, rows
    finally:
        proc.kill()
        proc.wait()


def test_a_resume_with_tensorboard_of_a_finished_run_writes_its_epochs(tmp_path):
    from test_run_logs import read_scalars

    config = dict(TINY, epochs=2, out=str(tmp_path / "run"))
    coreaug.train(coreaug.TrainConfig(**config))
    assert not (tmp_path / "run" / "tensorboard").exists()
    coreaug.train(coreaug.TrainConfig(**config, resume=True, tensorboard=True))
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    assert [step for step, _ in scalars["accuracy/test"]] == [1, 2]


def test_a_resume_replaces_links_in_the_run_folder_instead_of_writing_through_them(tmp_path):
    import os

    config = dict(TINY, epochs=2, out=str(tmp_path / "runs" / "run"))
    (tmp_path / "scratch").mkdir()
    os.symlink(tmp_path / "scratch", tmp_path / "runs")  # a linked runs/ folder is still followed
    coreaug.train(coreaug.TrainConfig(**{**config, "epochs": 1}))
    run = tmp_path / "scratch" / "run"
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for name in ("summary.json", "metrics.jsonl"):  # as an archive from someone else could hold them
        (run / name).unlink()
        os.symlink(notes, run / name)
    with pytest.raises(UsageError):  # another epoch count: refused, nothing written
        coreaug.train(coreaug.TrainConfig(**config, resume=True))
    coreaug.train(coreaug.TrainConfig(**{**config, "epochs": 1}, resume=True, overwrite=False))
    assert notes.read_text() == "my notes\n"
    assert not (run / "summary.json").is_symlink() and (run / "summary.json").read_text().startswith("{")


def test_names_with_terminal_escapes_are_printed_escaped_on_a_terminal(tmp_path, monkeypatch):
    import importlib

    predict_module = importlib.import_module("coreaug.cli.predict")
    coreaug.train(coreaug.TrainConfig(**TINY, model="cnn", out=str(tmp_path / "run")))
    name = str(tmp_path / "\x1b]0;title\x07\x1b[2Jphoto.png")
    Image.new("L", (8, 8), 40).save(name)
    args = ["predict", str(tmp_path / "run"), name, "--top-k", "1"]
    assert CliRunner().invoke(app, args).output.splitlines()[1].startswith(name + ",")  # a file: as it is
    monkeypatch.setattr(predict_module, "is_terminal", lambda stream: True)
    shown = CliRunner().invoke(app, args).output.splitlines()[1]
    assert "\x1b" not in shown and shown.startswith(f"{tmp_path}/\\x1b]0;title\\x07\\x1b[2Jphoto.png,1,")
    refused = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "\x1b[2Jgone"),
                                       "--out", str(tmp_path / "r")])
    assert refused.exit_code == 2 and "\x1b" not in refused.output and "\\x1b[2Jgone" in refused.output


def test_an_archive_unpacking_past_any_archive_coreaug_writes_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    import json
    import lzma

    from coreaug.bench import archive

    monkeypatch.setattr(archive, "MIN_UNPACKED", 1000)
    record = json.dumps({"name": "none-seed0", "config": {"dataset": "digits", "strategy": "none"}, "metrics": [],
                         "summary": None})
    path = tmp_path / "grid.runs.jsonl.xz"
    path.write_bytes(lzma.compress((" " * 5_000_000 + record + "\n").encode()))  # valid JSON, one line of 5 MB
    with pytest.raises(UsageError, match=r"is not a grid archive \(it unpacks to over 200 times its size \(at line "
                                         r"1\), where an archive coreaug writes unpacks to tens of times\)"):
        archive.read_archive(path)
    path.write_bytes(lzma.compress((record + "\n").encode()))
    assert [r.name for r in archive.read_archive(path)] == ["none-seed0"]


def test_class_folders_named_alike_but_for_case_are_warned_about(tmp_path):
    from coreaug.data import load_dataset

    for name in ("Cat", "cat", "dog"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (60 * i, 20, 40)).save(tmp_path / "d" / name / f"{i}.png")
    with pytest.warns(UserWarning, match=r"holds class folders named alike but for case \(Cat and cat\): they are "
                                         "trained as separate classes"):
        data = load_dataset(str(tmp_path / "d"), cache_dir=str(tmp_path / "cache"), progress=False)
    assert data.num_classes == 3


def test_datasets_prints_each_class_size_or_the_range_of_many():
    import types

    import torch

    from coreaug.cli.datasets import class_sizes

    result = CliRunner().invoke(app, ["datasets", "digits"])
    assert result.exit_code == 0 and result.output.splitlines()[-1].startswith("per class (train/test): 0 140/38, 1 ")
    labels = torch.arange(20).repeat_interleave(torch.arange(1, 21))  # class c has c + 1 images
    many = types.SimpleNamespace(num_classes=20, class_names=[f"c{i}" for i in range(20)], train_labels=labels,
                                 test_labels=torch.zeros(5, dtype=torch.long))
    assert class_sizes(many) == "per class: 1-20 train, 0-5 test images (fewest training images: c0 1, c1 2, c2 3)"



def test_a_grid_going_on_eagerly_refuses_a_run_stopped_after_compiled_epochs(copied_grid, train_calls, capsys):
    import json

    run = copied_grid / "runs" / "random-0.3-seed0"
    (run / "summary.json").unlink()  # stopped: its epochs so far were trained compiled
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({**row, "graphs_compiled": 1}) + "\n" for row in rows))
    stderr = bench_in_process(capsys, *BENCH_TINY, *GRID, "--out", copied_grid)
    assert "(compile: True -> False)" in stderr and stderr.count("\n") == 1 and train_calls == []


def test_a_model_file_saves_each_tensor_in_a_storage_of_its_own_size(tmp_path):
    import torch

    from coreaug.training.trained import _own_copy

    flat = torch.arange(100.0)  # a compiled step's parameters are views of one flat tensor
    view = flat[10:20]
    kept = _own_copy(view)
    assert kept.untyped_storage().nbytes() == 40 and torch.equal(kept, view)
    torch.save({"w": kept}, tmp_path / "one.pt")
    torch.save({"w": view.detach().cpu().contiguous()}, tmp_path / "whole.pt")  # as it was saved
    assert (tmp_path / "whole.pt").stat().st_size - (tmp_path / "one.pt").stat().st_size >= 90 * 4
    last = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    assert _own_copy(last).is_contiguous() and torch.equal(_own_copy(last), last)
    plain = torch.randn(3)
    assert _own_copy(plain).data_ptr() == plain.data_ptr()  # nothing copied that needs no copy


def test_a_compiled_grid_is_said_to_be_compiled_in_report_and_results(copied_grid):
    import json

    from coreaug.bench.tables import compiled_note

    for summary in (copied_grid / "runs").glob("*/summary.json"):
        data = json.loads(summary.read_text())
        summary.write_text(json.dumps({**data, "config": {**data["config"], "compile": True}}))
    result = CliRunner().invoke(app, ["report", str(copied_grid), "--out", str(copied_grid / "rep")])
    assert result.exit_code == 0, result.output
    runs_line = next(line for line in (copied_grid / "rep" / "report.md").read_text().splitlines()
                     if line.startswith("Runs:"))
    assert "; the runs were trained compiled (--compile): their seconds include compiling the step" in runs_line
    assert compiled_note([False, True, True]).startswith("2 of the 3 runs were trained compiled")
    assert compiled_note([False, False]) == ""


def test_a_rule_selecting_other_sizes_says_the_compiled_step_is_compiled_again(tmp_path, monkeypatch, capsys):
    from coreaug.selection import rules
    from coreaug.training import compiled_step

    sizes = iter([0.2, 0.5, 0.5])

    def choose(labels, fraction, *, estimates=None, losses=None, balance="equal", seed=0, knn=20):
        return rules.select_random(labels, next(sizes), balance=balance, seed=seed)

    monkeypatch.setitem(rules.RULES, "sizes_r19", rules.Rule("sizes_r19", (), choose, "another size in turn"))
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)  # the step's code, uncompiled
    coreaug.train(coreaug.TrainConfig(**{**TINY, "quiet": False, "epochs": 3}, strategy="sizes_r19", compile=True,
                                      batch_size=32))
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compile:")]
    assert len(notes) == 2 and notes[0].startswith("compile: the first steps compile the training step")
    assert notes[1].startswith("compile: this selection gives ") and "it is compiled again" in notes[1]


def test_results_gain_over_random_pairs_the_seeds_both_cells_have():
    from coreaug.bench.tables import DIAGNOSTICS, group_rows

    def row(strategy, seed, accuracy):
        return {"strategy": strategy, "subset": None if strategy == "full" else 0.3, "seed": seed,
                "final_accuracy": accuracy, "best_accuracy": accuracy, "total_seconds": 1.0, "selection_seconds": 0.1,
                "history": [{"epoch": 0, "test_accuracy": accuracy, "epoch_seconds": 1.0}], "target_accuracy": 0.9,
                **{f"mean_{key}": float("nan") for key in DIAGNOSTICS}}

    rows = [row("full", 0, 0.5), row("random", 0, 0.40), row("random", 1, 0.44), row("random", 2, 0.30),
            row("coreset", 0, 0.42), row("coreset", 1, 0.46)]  # a narrower command added random's seed 2
    gain = {g["strategy"]: g["gain_over_random"] for g in group_rows(rows)}
    assert gain["coreset"] == pytest.approx(0.02)  # unpaired, 0.44 - 0.38 = 0.06


def test_report_refuses_a_label_given_to_two_grids(copied_grid, tmp_path):
    result = CliRunner().invoke(app, ["report", str(copied_grid), f"{copied_grid}=b", f"{copied_grid}=b",
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2 and f"label 'b' is given to {copied_grid} and {copied_grid}, which both hold " \
        in result.output and "seed 0: it would count twice" in result.output
    assert not (tmp_path / "rep").exists()


def test_bench_refuses_a_grids_runs_folder_and_a_folder_of_other_tables(copied_grid, train_calls, capsys, tmp_path):
    stderr = bench_in_process(capsys, *BENCH_TINY, *GRID, "--out", copied_grid / "runs")
    assert f"is the runs/ folder of the grid {copied_grid}" in stderr and f"give --out {copied_grid}" in stderr
    assert not (copied_grid / "runs" / "runs").exists() and train_calls == []
    (tmp_path / "link").symlink_to(copied_grid / "runs")  # the same folder through a link
    assert "is the runs/ folder of the grid" in bench_in_process(capsys, *BENCH_TINY, *GRID, "--out", tmp_path / "link")
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "results.md").write_text("# my results, by hand\n")
    stderr = bench_in_process(capsys, *BENCH_TINY, *GRID, "--out", tmp_path / "paper")
    assert "holds results.md but no grid (no grid.json, no runs/)" in stderr and train_calls == []
    assert (tmp_path / "paper" / "results.md").read_text() == "# my results, by hand\n"


def test_report_names_a_run_its_grid_did_not_plan_and_compares_its_settings(copied_grid, tmp_path):
    coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=64, test_limit=32, quiet=True,
                                      strategy="random", subset=0.3, seed=9, out=str(copied_grid / "runs" / "mytry")))
    result = CliRunner().invoke(app, ["report", str(copied_grid), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    runs_line = next(line for line in (tmp_path / "rep" / "report.md").read_text().splitlines()
                     if line.startswith("Runs:"))
    assert "runs its grid.json does not list, not trained by its bench: mytry" in runs_line
    assert "runs of other settings pooled in one cell (random 30%: " in runs_line and "epochs (1, 2)" in runs_line


def test_runs_of_other_thread_counts_are_noted_in_results_and_report(copied_grid, tmp_path):
    import json

    from coreaug.bench.tables import threads_otherwise

    run = copied_grid / "runs" / "random-0.3-seed0"  # as if trained by a --jobs 2 worker, on one thread
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({**row, "threads": 97}) + "\n" for row in rows))
    result = CliRunner().invoke(app, ["report", str(copied_grid), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert " and 97 CPU threads pooled (a grid continued with another --jobs or OMP_NUM_THREADS)" in \
        (tmp_path / "rep" / "report.md").read_text()
    assert threads_otherwise([[1, 1], [1]]) == "" and threads_otherwise([[1], [2, 2]]).startswith("runs trained on 1 "
                                                                                                  "and 2 CPU threads")


def test_report_says_how_another_grid_differs_from_the_first(copied_grid, tmp_path):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(copied_grid, other)
    for path in (other / "runs").glob("*/config.json"):  # as a grid of a longer training
        path.write_text(json.dumps({**json.loads(path.read_text()), "epochs": 30}))
    result = CliRunner().invoke(app, ["report", str(copied_grid), f"{other}=long", "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "unlike the first grid's runs: epochs 30 (first: 2)" in (tmp_path / "rep" / "report.md").read_text()


def test_the_refusal_of_an_unnamed_import_path_crosses_processes_and_quotes_the_path(tmp_path):
    import pickle

    refusal = pickle.loads(pickle.dumps(UntrustedModel("runs/x", "nets:small")))  # a process pool's worker's
    assert isinstance(refusal, UntrustedModel) and str(refusal) == str(UntrustedModel("runs/x", "nets:small"))
    import unittest.mock

    from coreaug.cli.predict import load_named

    crafted = UntrustedModel("runs/x", "nets:small $(touch x)")  # a path from someone else's model.pt
    with unittest.mock.patch("coreaug.load_run", side_effect=crafted):
        with pytest.raises(UsageError, match=r"name it: --model 'nets:small \$\(touch x\)'$"):  # quoted for a shell
            load_named("runs/x", None, "cpu")


def test_two_grids_of_other_seeds_pool_under_one_label(copied_grid, tmp_path):
    import json
    import shutil

    other = tmp_path / "more"
    shutil.copytree(copied_grid, other)
    for summary in (other / "runs").glob("*/summary.json"):  # the same grid, trained at seed 1
        data = json.loads(summary.read_text())
        summary.write_text(json.dumps({**data, "config": {**data["config"], "seed": 1}}))
    for config in (other / "runs").glob("*/config.json"):
        config.write_text(json.dumps({**json.loads(config.read_text()), "seed": 1}))
    result = CliRunner().invoke(app, ["report", str(copied_grid), f"{copied_grid}=b", f"{other}=b",
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
