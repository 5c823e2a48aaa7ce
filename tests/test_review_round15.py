"""Round 15: the left-alone lists of stop 48 (explore14-fuzz's and explore14-images' low findings),
each pinned by a test that fails without its fix."""
import os
import re

import pytest
from click.testing import CliRunner

import coreaug
from coreaug.cli.main import app
from coreaug.errors import UsageError

DIGITS = ["--dataset", "digits", "--model", "cnn", "--epochs", "1", "--train-limit", "120", "--test-limit", "40",
          "--batch-size", "32", "--quiet"]


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _folder(root, count, names=("x", "y"), size=8):
    from PIL import Image

    for label, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            Image.new("RGB", (size, size), (40 + 150 * label, 9 * k, 90)).save(folder / f"{k}.png")
    return root


def test_flags_the_strategy_never_reads_are_named_in_a_warning(tmp_path):
    """`--strategy random --knn 5`, `--strategy none --augment cutout` trained without a word, where
    --candidates without maxloss is refused: still let through (a loop over strategies shares its
    flags), but named."""
    with pytest.warns(UserWarning, match=r"^--knn is not read by --strategy random: it has no effect on this run$"):
        code, out = _cli("train", *DIGITS, "--strategy", "random", "--knn", "5", "--out", tmp_path / "a")
    assert code == 0, out
    with pytest.warns(UserWarning, match=r"^--augment and --copies are not read by --strategy none: they have"):
        assert _cli("train", *DIGITS, "--strategy", "none", "--augment", "cutout", "--copies", "2",
                    "--out", tmp_path / "b")[0] == 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the strategy's own flags, or the others left out: no warning
        assert _cli("train", *DIGITS, "--strategy", "coreset", "--knn", "5", "--out", tmp_path / "c")[0] == 0
    code, out = _cli("train", *DIGITS, "--strategy", "random", "--candidates", "4", "--out", tmp_path / "d")
    assert code == 2 and "--candidates applies to augment 'maxloss'" in out  # refused, as before
    # --augment-steps with max-loss transforms was taken and silently run at 1 (its help says so): refused
    code, out = _cli("train", *DIGITS, "--augment", "maxloss", "--augment-steps", "4", "--out", tmp_path / "e")
    assert code == 2 and "error: --augment-steps applies to augmentation that does not score with the model; this " \
        "run has augment 'maxloss', which never reads it: leave --augment-steps out" in out
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("flags, message", [
    (["--train-limit", "0"], "error: --train-limit must be an integer >= 1, got 0"),
    (["--subset", "2"], "error: --subset must be a fraction in (0, 1], got 2.0"),
    (["--lr", "-1"], "error: --lr must be a finite number > 0, got -1.0"),
    (["--epochs", "0"], "error: --epochs must be an integer >= 1, got 0"),
    (["--augment-steps", "0"], "error: --augment-steps must be an integer >= 1 (steps), got 0"),
    (["--strategy", "coreset-lowloss", "--loss-filter", "1"],
     "error: --loss-filter must be a share in [0, 1), got 1.0"),
])
def test_the_commands_name_flags_as_typed_and_never_say_none(tmp_path, flags, message):
    """"train_limit must be an integer >= 1 or None", "subset must be ...": the API's names and its
    None, which a command line cannot pass; the API keeps its wording."""
    code, out = _cli("train", "--dataset", "digits", *flags, "--out", tmp_path / "r")
    assert code == 2 and out.strip().splitlines()[-1] == message
    with pytest.raises(UsageError, match=r"^train_limit must be an integer >= 1 or None, got 0$"):
        coreaug.TrainConfig("digits", train_limit=0).resolved()


def test_folder_only_settings_on_a_built_in_dataset_are_refused(tmp_path):
    """--workers and --cache-dir on a built-in dataset were silently ignored by train and bench
    (while --val-fraction was refused, and `coreaug datasets` refused them)."""
    code, out = _cli("train", *DIGITS, "--workers", "2", "--cache-dir", tmp_path / "c", "--out", tmp_path / "r")
    assert code == 2 and "error: --workers and --cache-dir apply to a folder of images, decoded into a cache; digits " \
        "is a built-in dataset, loaded as it is: leave them out" in out
    code, out = _cli("bench", *DIGITS, "--workers", "2", "--seeds", "1", "--out", tmp_path / "g")
    assert code == 2 and "error: --workers applies to a folder of images" in out
    with pytest.raises(UsageError, match=r"^cache_dir applies to a folder of images"):
        coreaug.TrainConfig("digits", cache_dir=str(tmp_path / "c")).resolved()
    assert not (tmp_path / "r").exists() and not (tmp_path / "g").exists() and not (tmp_path / "c").exists()
    root = _folder(tmp_path / "pets", 3)  # a folder takes them
    coreaug.TrainConfig(str(root), workers=0, cache_dir=str(tmp_path / "c")).resolved()


def test_data_dir_and_download_on_a_dataset_that_reads_no_files_are_refused(tmp_path):
    """digits (shipped with scikit-learn) and synthetic (made in memory) ignored --data-dir and
    --download, and config.json recorded a data_dir nothing was read from."""
    code, out = _cli("train", *DIGITS, "--data-dir", tmp_path, "--download", "--out", tmp_path / "r")
    assert code == 2 and "error: --data-dir and --download apply to a dataset read from files; digits reads none" in out
    code, out = _cli("datasets", "synthetic", "--data-dir", tmp_path)
    assert code == 2 and "error: --data-dir applies to a dataset read from files; synthetic reads none" in out
    with pytest.raises(UsageError, match=r"^data_dir applies to a dataset read from files; synthetic-cifar reads"):
        coreaug.TrainConfig("synthetic-cifar", data_dir=str(tmp_path)).resolved()
    from coreaug.data.registry import reads_no_files

    assert not reads_no_files("cifar10") and reads_no_files("Digits") and not reads_no_files("./digits")
    assert coreaug.TrainConfig("cifar10", data_dir=str(tmp_path)).resolved().data_dir == str(tmp_path)


def test_a_limit_above_the_split_is_noted(tmp_path, capsys):
    """--train-limit 99999 on digits trained on the whole split without a word (config.json keeps
    the number typed): a typo's extra 0 went unseen."""
    settings = dict(dataset="digits", model="cnn", epochs=1, batch_size=64, out=str(tmp_path / "r"))
    coreaug.train(coreaug.TrainConfig(train_limit=99999, test_limit=100, **settings))
    err = capsys.readouterr().err
    assert "note: --train-limit 99999 is more than the 1438 training examples of digits: all are used" in err
    assert "--test-limit" not in err
    coreaug.train(coreaug.TrainConfig(train_limit=99999, quiet=True, **{**settings, "out": str(tmp_path / "q")}))
    assert "note:" not in capsys.readouterr().err


def test_select_with_an_empty_out_names_the_flag(tmp_path):
    import numpy as np

    np.save(tmp_path / "f.npy", np.random.default_rng(0).random((20, 3)))
    np.save(tmp_path / "l.npy", np.arange(20) % 2)
    code, out = _cli("select", "--features", tmp_path / "f.npy", "--labels", tmp_path / "l.npy", "--fraction", "0.5",
                     "--out", "")
    assert code == 2 and out.strip() == "error: --out is empty; give the .npz file to write, such as subset.npz"


def test_report_refuses_an_empty_path_an_empty_subsets_a_long_name_and_repeated_figures(tmp_path):
    """`report ''` said " does not exist", `--subsets ''` reported the references alone, a 300-char
    --name failed naming a temporary file, and of two --paper-figures rows for one cell the last
    silently counted."""
    from test_report import write_run

    for seed in range(2):
        write_run(tmp_path / "grid", "random", seed, [0.3, 0.4], subset=0.3)
    rep = tmp_path / "rep"
    code, out = _cli("report", "", "--out", rep)
    assert code == 2 and "error: PATH is empty; give a grid folder or a grid archive (.runs.jsonl.xz)" in out
    for subsets in ("", ","):
        code, out = _cli("report", tmp_path / "grid", "--subsets", subsets, "--out", rep)
        assert code == 2 and "error: --subsets is empty; give the fractions to keep" in out
    code, out = _cli("report", tmp_path / "grid", "--name", "x" * 300, "--out", rep)
    assert code == 2 and "error: --name must be at most 200 bytes" in out
    (tmp_path / "paper.csv").write_text("strategy,subset,accuracy\nrandom,0.3,75\nrandom,0.3,80\n")
    code, out = _cli("report", tmp_path / "grid", "--paper-figures", tmp_path / "paper.csv", "--out", rep)
    assert code == 2 and "rows 2 and 3 are both random 30%; keep one" in out.replace("random 0.3", "random 30%")
    assert not rep.exists()
    assert _cli("report", tmp_path / "grid", "--name", "x" * 200, "--out", rep)[0] == 0


def test_a_model_path_to_a_function_that_is_no_model_factory_says_so(tmp_path):
    """`--model coreaug:train` said "config must be a coreaug.TrainConfig ..., got int 1", nothing
    about --model."""
    code, out = _cli("train", *DIGITS, "--model", "coreaug:train", "--out", tmp_path / "r")
    assert code == 2 and "error: --model 'coreaug:train', called as train(1, 10), refused: config must be" in out
    assert "(a model's function takes in_channels and num_classes and returns an nn.Module)" in out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = _folder(root / "pets", 6, names=("猫", "dog"))
    coreaug.train(coreaug.TrainConfig(str(data), model="cnn", epochs=1, batch_size=4, image_size=8, quiet=True,
                                      cache_dir=str(root / "cache"), out=str(root / "run")))
    return root


def test_predict_in_python_can_leave_unreadable_images_out(finished, tmp_path):
    """`coreaug predict --skip-bad-images` had no Python form: one bad file in a folder raised."""
    run = coreaug.load_run(finished / "run")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.png").write_bytes((finished / "pets" / "dog" / "0.png").read_bytes())
    (folder / "bad.png").write_bytes(b"not an image")
    (folder / "empty.png").write_bytes(b"")
    with pytest.raises(UsageError, match="cannot read image"):
        run.predict(folder)
    with pytest.warns(UserWarning, match=r"left out 2 unreadable images of 5: cannot read image .*bad\.png .*; "
                                         r"cannot read image .*empty\.png \(an empty file\)"):
        kept = run.predict(folder, skip_bad_images=True, batch_size=2)
    assert [os.path.basename(p.image) for p in kept] == ["a.png", "b.png", "c.png"]
    assert [(p.classes, p.probabilities) for p in kept] == \
        [(p.classes, p.probabilities) for p in run.predict([folder / "a.png", folder / "b.png", folder / "c.png"])]
    with pytest.raises(UsageError, match=r"^the only image is unreadable \(cannot read image .*bad\.png"):
        run.predict([folder / "bad.png"], skip_bad_images=True)
    with pytest.raises(UsageError, match="skip_bad_images must be True or False, got 'no'"):
        run.predict(folder, skip_bad_images="no")


def test_evaluate_aligns_its_per_class_table_for_wide_class_names(finished):
    """A CJK class name takes two columns a character: the accuracy column was out of line."""
    from coreaug.cli.evaluate import columns

    assert (columns("猫"), columns("dog"), columns("e\u0301"), columns("🐱")) == (2, 3, 1, 2)
    code, out = _cli("evaluate", finished / "run")
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(rows) == 2
    starts = {columns(re.match(r"  \S+ *  ", line).group()) for line in rows}  # where the accuracy begins
    assert len(starts) == 1, rows


def test_epoch_seconds_give_another_grid_its_own_rates_or_say_it_borrows_the_first_grids(tmp_path):
    """`--epoch-seconds` was keyed by strategy and subset alone: a second grid (GRID2=LABEL) of
    other settings silently took the first grid's rates, and the column's header said "training
    without selection" over a given rate of training and selection together."""
    import csv

    from coreaug.bench import write_report
    from test_report import write_run

    for seed in range(2):
        write_run(tmp_path / "A", "full", seed, [0.4, 0.5, 0.6, 0.7])
        write_run(tmp_path / "A", "none", seed, [0.3, 0.4, 0.5, 0.6])
        write_run(tmp_path / "B", "full", seed, [0.4, 0.5])
    rates = tmp_path / "rates.csv"
    rates.write_text("strategy,subset,seconds_per_epoch\nfull,,0.5\nnone,,0.2\n")
    out = tmp_path / "rep"

    def cells(path):
        write_report(tmp_path / "A", also=[(tmp_path / "B", "short")], out=out, epoch_seconds=path, target=0.55)
        text = (out / "report.md").read_text()
        with open(out / "report-cells.csv", encoding="utf-8") as f:
            return text, {(row["strategy"], row["label"]): row for row in csv.DictReader(f)}

    text, rows = cells(rates)
    assert float(rows["full", "short"]["seconds_per_epoch"]) == 0.5  # borrowed, as before, and said
    assert "take the first grid's rate of their strategy and subset" in text
    assert "| s / epoch, training + selection (given) |" in text
    rates.write_text("strategy,subset,seconds_per_epoch,label\nfull,,0.5,\nnone,,0.2,\nfull,,0.25,short\n")
    text, rows = cells(rates)
    assert float(rows["full", "short"]["seconds_per_epoch"]) == 0.25
    assert float(rows["full", ""]["seconds_per_epoch"]) == 0.5
    assert "take the first grid's rate" not in text
    rates.write_text("strategy,subset,seconds_per_epoch,label\nfull,,0.5,\nfull,,0.3,short\nfull,,0.25,short\n")
    with pytest.raises(UsageError, match=r"rows 3 and 4 are both full of short; keep one"):
        cells(rates)


def test_a_message_whose_first_word_is_a_setting_in_another_sense_is_left_as_written():
    """review18: "out of memory building the selection graph" became "--out of memory ...", and
    "download of ... is truncated" "--download of ..."."""
    import click

    from coreaug.cli.errors import as_flags
    from coreaug.cli.train import train

    with click.Context(train):
        assert as_flags("out of memory building the selection graph") == "out of memory building the selection graph"
        assert as_flags("download of x.tar.gz is truncated") == "download of x.tar.gz is truncated"
        assert as_flags("epochs must be an integer >= 1, got 0") == "--epochs must be an integer >= 1, got 0"
        assert as_flags("out is empty; give the run's folder") == "--out is empty; give the run's folder"
        assert as_flags("data_dir and download apply to a dataset read from files") == \
            "--data-dir and --download apply to a dataset read from files"


def test_augment_steps_with_crust_is_a_warning_as_other_flags_a_strategy_leaves_unread(tmp_path):
    """review18: refused, where a loop over strategies shares its flags (bench takes it)."""
    with pytest.warns(UserWarning, match=r"^--augment-steps is not read by --strategy crust"):
        code, out = _cli("train", *DIGITS, "--strategy", "crust", "--augment-steps", "2", "--out", tmp_path / "r")
    assert code == 0, out


def test_an_epoch_seconds_label_that_names_no_grid_is_refused(tmp_path):
    """review18: a typo's rows went unused, and its grid took the first grid's rates."""
    from coreaug.bench import write_report
    from test_report import write_run

    write_run(tmp_path / "A", "full", 0, [0.4, 0.5])
    write_run(tmp_path / "B", "full", 0, [0.4, 0.5])
    rates = tmp_path / "rates.csv"
    rates.write_text("strategy,subset,seconds_per_epoch,label\nfull,,0.5,\nfull,,0.3,otherr\n")
    with pytest.raises(UsageError, match=r"label 'otherr' names no grid reported \(the labels: 'other'\)"):
        write_report(tmp_path / "A", also=[(tmp_path / "B", "other")], out=tmp_path / "rep", epoch_seconds=rates)
