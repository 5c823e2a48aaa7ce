"""Round 14: what the left-alone lists of earlier stops held, each pinned by a test that fails
without its fix."""
import os

import pytest

from coreaug.data import image_folder, load_dataset


def _folder(root, count, names="xy"):
    from PIL import Image

    for label, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            Image.new("RGB", (8, 8), (40 + 150 * label, 9 * k, 90)).save(folder / f"{k}.png")
    return root


def test_a_link_that_loops_is_counted_as_gone_not_an_oserror(tmp_path, capsys):
    """A link to itself (``ln -s loop loop``) among the class folders, inside one, or named like an
    image beside them, was an OSError traceback ("Too many levels of symbolic links") from the
    listing; it is a link that leads nowhere, counted with the links to nothing."""
    root = _folder(tmp_path / "pets", 4)
    os.symlink("loop", root / "loop")
    os.symlink("inner", root / "x" / "inner")
    os.symlink("self.png", root / "self.png")
    assert image_folder.listed_folders(str(root)) == ["x", "y"]
    assert len(image_folder.images_under(str(root / "x"))) == 4
    with pytest.warns(UserWarning) as caught:
        data = load_dataset(str(root), image_size=8, cache_dir=str(tmp_path / "cache"), workers=0)
    assert len(data.train_labels) + len(data.test_labels) == 8 and data.num_classes == 2
    out = "\n".join(str(warning.message) for warning in caught)
    assert f"left out 3 links to files or folders that are gone (first: {root / 'loop'} -> loop)" in out
    assert f"left out 1 image file beside the class folders (first: {root / 'self.png'})" in out


def test_a_train_limit_that_draws_one_class_is_refused_before_training(tmp_path):
    """A registered dataset or a folder of one class is refused, but a --train-limit drawing one
    class trained on (100% accuracy with nothing to tell apart)."""
    import pytest

    import coreaug
    from coreaug.errors import UsageError

    root = _folder(tmp_path / "pets", 6)
    config = dict(dataset=str(root), model="cnn", epochs=1, batch_size=4, image_size=8, quiet=True,
                  cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=r"--train-limit 1 drew training examples of one class only \([xy]\) from "
                                         r"\d+; a classifier needs two classes or more: raise the limit"):
        coreaug.train(coreaug.TrainConfig(train_limit=1, **config))
    assert len(coreaug.train(coreaug.TrainConfig(train_limit=8, **config)).history) == 1


def test_a_policy_name_taken_by_another_policy_is_refused_and_the_same_one_again_replaces_it(monkeypatch):
    """A user's "weak" silently became the trainer's weak augmentation (config.json still said
    the built-in's name), as models and datasets refuse a taken name."""
    import pytest

    from coreaug.augment import Weak, create_policy, register_policy, registry
    from coreaug.errors import UsageError

    monkeypatch.setattr(registry, "_POLICIES", dict(registry._POLICIES))

    class Mine(Weak):
        pass

    with pytest.raises(UsageError, match=r"a policy named 'weak' is already registered \(coreaug.augment.weak_cutout"
                                         r".Weak\); register .*Mine under another name"):
        register_policy(" WEAK ")(Mine)
    assert type(create_policy("weak")) is Weak
    register_policy("mine")(Mine)
    register_policy("Mine")(Mine)  # the same class again (a notebook cell run twice)
    assert type(create_policy("mine")) is Mine


def test_maxloss_names_a_negative_label_and_ignores_none():
    """Label -1 was reported as "labels must be < n_classes=10, got 2" (a valid label), and -100,
    cross_entropy's ignore_index, kept that example's first candidate without a word."""
    import pytest
    import torch

    from coreaug.augment import create_policy
    from coreaug.errors import UsageError

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    policy = create_policy("maxloss")
    for wrong in (-1, -100):
        with pytest.raises(UsageError, match=rf"^labels must be non-negative class ids, got {wrong}$"):
            policy(images, torch.Generator().manual_seed(0), model=model, labels=torch.tensor([0, 1, 2, wrong]))
    with pytest.raises(UsageError, match=r"labels must be < n_classes=10 \(the model's outputs\), got 10"):
        policy(images, torch.Generator().manual_seed(0), model=model, labels=torch.tensor([0, 1, 2, 10]))


def test_randaugment_of_no_ops_returns_a_new_clamped_batch():
    """num_ops=0 returned the caller's tensor itself (an in-place step after it changed the data),
    float values unclamped and NaN kept, where every other call gives a new tensor in [0, 1]."""
    import torch

    from coreaug.augment import create_policy

    policy = create_policy("randaugment", num_ops=0)
    images = torch.tensor([-0.5, 1.7, float("nan"), 0.3]).view(1, 1, 2, 2)
    out = policy(images, torch.Generator())
    assert out is not images and out.flatten().tolist() == [0.0, 1.0, 0.0, torch.tensor(0.3).item()]
    levels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    out = policy(levels, torch.Generator())
    assert out is not levels and torch.equal(out, levels)


def test_a_zero_dim_keys_low_32_bits_alone_count_as_documented():
    import torch

    from coreaug.augment import RandomSource, uniform

    for key in (5, 2 ** 40 + 7, -3):
        same = [uniform(6, RandomSource(torch.tensor(k)), "cpu") for k in (key, key + 2 ** 32)]
        assert torch.equal(*same), key
    assert not torch.equal(uniform(6, RandomSource(torch.tensor(5)), "cpu"),
                           uniform(6, RandomSource(torch.tensor(6)), "cpu"))


def test_a_geometric_fill_that_is_no_number_or_nan_and_compose_of_one_policy_are_one_line_errors():
    import pytest
    import torch

    from coreaug.augment import Compose, Weak, rotate, shear_x, translate_y
    from coreaug.errors import UsageError

    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    for op in (rotate, shear_x, translate_y):
        for fill in (None, "white", [1, 2], True):
            with pytest.raises(UsageError, match=r"fill must be a number or 3 numbers \(one per channel\) in \[0, 25"):
                op(images, 0.3, fill=fill)
        with pytest.raises(UsageError, match=r"in \[0, 1\], got nan"):
            op(images.float() / 255, 0.3, fill=float("nan"))
        assert op(images, 0.3, fill=[1, 2, 3]).shape == images.shape
    with pytest.raises(UsageError, match=r"got one policy \(Weak\); put it in a list"):
        Compose(Weak())
    with pytest.raises(UsageError, match=r"got 'weak'; a chain by names is create_policy"):
        Compose("weak")


def test_the_commands_show_coreaugs_warnings_in_one_line_and_others_as_python_does():
    """The fp16-on-the-CPU warning showed coreaug's file:line and its source line in the command's
    output, where every other note is one line; a bench worker's warnings too (review17)."""
    import os
    import warnings

    import coreaug
    from cli import main
    from coreaug.errors import one_line_warning

    for ours in (os.path.join(os.path.dirname(coreaug.__file__), "training", "precision.py"), main.__file__):
        assert one_line_warning("precision fp16 is for GPUs", UserWarning, ours, 17) == \
            "warning: precision fp16 is for GPUs\n"
    theirs = one_line_warning("deprecated", DeprecationWarning, "/usr/lib/x.py", 3, line="x()")
    assert theirs == warnings.formatwarning("deprecated", DeprecationWarning, "/usr/lib/x.py", 3, line="x()")
    assert "/usr/lib/x.py:3" in theirs


def test_a_report_of_loose_runs_says_when_its_cells_differ_in_data_or_length():
    """A coreset run on one dataset was paired with a random run on another ("same initialisation
    and data order") without a word; a grid's cells, checked by bench, are not flagged."""
    from coreaug.bench import report

    class Record:
        def __init__(self, **config):
            self.config = dict(config, strategy=config["strategy"], seed=0)

    class Run:
        def __init__(self, strategy, subset):
            self.strategy, self.subset, self.seed = strategy, subset, 0

    records = [Record(strategy="random", subset=0.3, dataset="digits", epochs=1),
               Record(strategy="coreset", subset=0.3, dataset="synthetic", epochs=1)]
    runs = [Run("random", 0.3), Run("coreset", 0.3)]
    note = "; ".join(report._pooled_notes(records, runs))
    assert note.startswith('cells of other data or training length compared (dataset ("digits", "synthetic"))')
    assert "; ".join(report._pooled_notes(records, runs, checked=True)) == ""
    records[1].config["dataset"] = "digits"
    assert "; ".join(report._pooled_notes(records, runs)) == ""


def test_a_commands_errors_name_its_settings_by_their_flags_not_paths_or_values():
    """`coreaug train` said "compile_mode 'default' applies ...", "select_every must be ...": the
    Python names of settings the user typed as --compile-mode, --select-every."""
    import click

    from cli.errors import as_flags

    @click.command()
    @click.option("--select-every")
    @click.option("--data-dir")
    @click.option("--epochs")
    def command(select_every, data_dir, epochs):
        pass

    with click.Context(command):
        assert as_flags("select_every must be >= 1; leave data_dir out (epochs 2) of /tmp/data_dir/x, 'data_dir'") \
            == "--select-every must be >= 1; leave --data-dir out (epochs 2) of /tmp/data_dir/x, 'data_dir'"
    assert as_flags("select_every must be >= 1") == "select_every must be >= 1"  # outside a command: the API's


def test_a_policy_module_imported_under_two_names_registers_once_and_numpy_fills_and_module_lists_work(
        tmp_path, monkeypatch):
    """review16: a script's module imported twice (as __main__ and by its name, or under two
    names) was refused as another policy; geometric ops refused a numpy fill (ImageNet's mean);
    Compose refused an nn.ModuleList of policies as "one policy"."""
    import importlib
    import sys

    import numpy as np
    import torch

    from coreaug.augment import Compose, registry, rotate

    monkeypatch.setattr(registry, "_POLICIES", dict(registry._POLICIES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "twice_pol.py").write_text(
        "from coreaug.augment import Policy, register_policy\n\n\n@register_policy('twice')\n"
        "class Twice(Policy):\n    def __call__(self, images, generator=None, **context):\n        return images\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        first, second = importlib.import_module("pkg.twice_pol"), importlib.import_module("twice_pol")
        assert first is not second and registry._POLICIES["twice"] is second.Twice
    finally:
        sys.modules.pop("pkg.twice_pol", None), sys.modules.pop("twice_pol", None), sys.modules.pop("pkg", None)
    mean = np.array([0.485, 0.456, 0.406])
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(rotate(images, 30.0, fill=mean), rotate(images, 30.0, fill=mean.tolist()))

    class Same(torch.nn.Module):
        def forward(self, images, generator=None, **context):
            return images

    assert len(Compose(torch.nn.ModuleList([Same(), Same()])).policies) == 2


def test_the_commands_print_a_file_name_that_is_not_utf8_as_its_own_bytes(monkeypatch):
    """explore14-images: under a UTF-8 locale's strict stdout (en_US.UTF-8, PYTHONIOENCODING=utf-8)
    predict's CSV row and evaluate's class line of a name like b"caf\\xe9" raised UnicodeEncodeError."""
    import io
    import sys

    from cli import main

    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", errors="strict"))
    try:
        main.main(["--version"])
    except SystemExit as done:  # (click's version option exits, or returns, by release)
        assert done.code == 0
    print("caf\udce9,1")
    sys.stdout.flush()
    assert raw.getvalue().endswith(b"caf\xe9,1\n")


def test_predict_and_evaluate_say_what_a_folder_holds_in_formats_not_read(tmp_path):
    """A phone's .HEIC among its JPEGs was left out of `predict FOLDER` and `evaluate --dataset
    FOLDER` without a word, where training counts them in a line."""
    import pytest

    from coreaug.training.trained import image_files, labelled_images

    root = _folder(tmp_path / "pets", 2)
    (root / "x" / "phone.HEIC").write_bytes(b"not read")
    (root / "y" / "more.avif").write_bytes(b"not read")
    with pytest.warns(UserWarning, match=r"left out 1 file of image formats not read \(.heic\) in .*pets/x; "
                                         r"convert them to JPEG or PNG"):
        assert len(image_files(str(root / "x"))) == 2
    with pytest.warns(UserWarning, match=r"left out 2 files of image formats not read \(.(heic|avif), "):
        assert len(labelled_images(str(root))) == 4


def test_predict_names_an_empty_file_as_training_does(tmp_path):
    import pytest

    from coreaug.errors import UnreadableImage
    from coreaug.training.trained import TrainedModel

    (tmp_path / "empty.png").write_bytes(b"")
    reader = TrainedModel.__new__(TrainedModel)
    reader.store_size, reader.in_channels = 8, 3
    with pytest.raises(UnreadableImage, match=r"empty.png.*an empty file"):
        reader.read(str(tmp_path / "empty.png"))


def test_review17_a_grid_plan_another_command_wrote_is_kept_and_settings_and_values_read_right(
        tmp_path, monkeypatch):
    """review17: the unguarded run_grid's rollback could delete a grid.json another command had
    written since; label_noise 0 (Python) and 0.0 (the command line) were two settings; a folder
    named like a setting (`coreaug evaluate data_dir`) was written as a flag; a bench worker's
    warnings kept Python's long form."""
    import warnings

    import click
    import torch

    from cli.errors import as_flags
    from coreaug.bench import benchmark, report, workers
    from coreaug.errors import one_line_warning

    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "grid.json").write_bytes(b"ours")
    benchmark._forget_plan(str(grid), None, b"ours")
    assert not (grid / "grid.json").exists()
    (grid / "grid.json").write_bytes(b"another command's")
    benchmark._forget_plan(str(grid), None, b"ours")
    assert (grid / "grid.json").read_bytes() == b"another command's"

    class Record:
        def __init__(self, **config):
            self.config = dict(config, seed=0)

    class Run:
        def __init__(self, strategy):
            self.strategy, self.subset, self.seed = strategy, 0.3, 0

    records = [Record(strategy="random", subset=0.3, label_noise=0), Record(strategy="coreset", subset=0.3,
                                                                            label_noise=0.0)]
    assert "; ".join(report._pooled_notes(records, [Run("random"), Run("coreset")])) == ""

    @click.command()
    @click.argument("run")
    @click.option("--data-dir")
    def command(run, data_dir):
        pass

    with click.Context(command) as ctx:
        ctx.params = {"run": "data_dir", "data_dir": None}
        assert as_flags("data_dir holds no coreaug run") == "data_dir holds no coreaug run"

    class Tasks:
        def get(self):
            return None

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    monkeypatch.setattr(workers.signal, "signal", lambda *args: None)
    monkeypatch.setattr(workers, "_stop_with_parent", lambda: None)
    workers._work(0, workers.Worker(device="cpu", threads=torch.get_num_threads()), Tasks(), None,
                  short_warnings=True)
    assert warnings.formatwarning is one_line_warning


def test_explore14_fuzz_a_csv_of_excel_or_latin1_milestones_given_twice_and_a_seeds_typo(tmp_path):
    """A --paper-figures CSV with Excel's byte-order mark was refused quoting a header that looked
    right, one in Latin-1 was a UnicodeDecodeError traceback; milestones 0.5,0.5 divided the
    learning rate twice at once; --seeds 99999999999999 planned every run in memory silently."""
    import pytest

    import coreaug
    from coreaug.bench import report
    from coreaug.bench.grid import plan_grid
    from coreaug.errors import UsageError

    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffstrategy,subset,accuracy\nrandom,0.3,91.5\n".encode("utf-8"))
    assert report._read_figures(str(excel), "--paper-figures", "accuracy", lambda value: "") == \
        {("random", 0.3): 91.5}
    latin = tmp_path / "latin.csv"
    latin.write_bytes("strategy,subset,accuracy\nrandom,0.3,91.5 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"--paper-figures .*latin.csv is not UTF-8 text .*save it as CSV UTF-8"):
        report._read_figures(str(latin), "--paper-figures", "accuracy", lambda value: "")
    for milestones in ((0.5, 0.5), (0.75, 0.5)):
        with pytest.raises(UsageError, match=r"milestones must be increasing fractions, each once"):
            coreaug.TrainConfig(dataset="digits", schedule="multistep", milestones=milestones).resolved()
    with pytest.raises(UsageError, match=r"seeds must be an integer in \[1, 10000\]"):
        plan_grid(coreaug.TrainConfig(dataset="digits"), str(tmp_path / "grid"), (0.3,), ("random",), (),
                  99999999999999)


def test_an_empty_folder_setting_is_refused_not_the_working_folder(tmp_path, monkeypatch):
    """explore14-fuzz: `--cache-dir ''` decoded into the working folder, `bench/report --out ''`
    wrote there and COREAUG_CACHE_DIR=' ' made a folder named " ", where `train --out ''` is
    refused."""
    import pytest

    import coreaug
    from coreaug.bench import write_report
    from coreaug.data.cache_key import default_cache_dir
    from coreaug.errors import UsageError

    for name in ("cache_dir", "data_dir"):
        with pytest.raises(UsageError, match=rf"^{name} is empty; give a folder, or leave it out"):
            coreaug.TrainConfig(dataset="digits", **{name: " "}).resolved()
    with pytest.raises(UsageError, match=r"^out is empty; give the grid's folder"):
        coreaug.run_grid(coreaug.TrainConfig(dataset="digits"), "")
    with pytest.raises(UsageError, match=r"^out is empty; give the report's folder"):
        write_report(tmp_path, out="")
    monkeypatch.setenv("COREAUG_CACHE_DIR", " ")
    assert default_cache_dir().endswith(os.path.join("coreaug", "decoded"))
