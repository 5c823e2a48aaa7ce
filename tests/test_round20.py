"""Round 20's reports: the Python API as a user meets it in an editor or a REPL (explore20-api:
errors that cross processes, callbacks and registrations checked where they are given, names taken
in any case, wrong types refused in one line naming the argument, short reprs, the API page)."""
import glob
import os
import pickle
import re

import numpy as np
import pytest
import torch

import coreaug
from coreaug.bench.report import ReportResult
from coreaug.errors import UnreadableImage, UsageError
from coreaug.selection.rules import RULES, register_rule
from coreaug.training.plan import DevicePlan, EpochPlan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("r20") / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, out=str(folder)))
    return coreaug.load_run(folder)


@pytest.fixture
def bad_image(tmp_path):
    path = tmp_path / "bad.png"
    path.write_text("not an image")
    return str(path)


# --- errors that cross processes ------------------------------------------------------------

def test_every_error_class_of_coreaug_pickles_whole(bad_image):
    errors = [UnreadableImage(bad_image, "cannot identify image file"),
              UnreadableImage(None, "no pixels", "give another", name="a PIL image"),
              coreaug.UntrustedModel("runs/a", "nets:small"), coreaug.UsageError("bad"),
              coreaug.TrainingDiverged("nan"), coreaug.DatasetNotFoundError("nowhere"),
              coreaug.DataDirLacksDataset("not there")]
    for error in errors:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
    again = pickle.loads(pickle.dumps(errors[0]))
    assert again.path == bad_image and again.what == errors[0].what


class _Reads(torch.utils.data.Dataset):
    def __init__(self, trained, path):
        self.trained, self.path = trained, path

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.trained.read(self.path)


def test_an_unreadable_image_in_a_dataloader_worker_is_still_a_usage_error(run, bad_image):
    loader = torch.utils.data.DataLoader(_Reads(run, bad_image), num_workers=1)
    with pytest.raises(UsageError, match="UnreadableImage") as caught:
        next(iter(loader))
    assert isinstance(caught.value, UnreadableImage) and bad_image in str(caught.value)
    assert caught.value.path is None and caught.value.what.startswith(f"cannot read image {bad_image} (")
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and again.what == caught.value.what


def test_the_error_classes_the_docstrings_name_import_from_coreaug():
    for name in ("UnreadableImage", "UntrustedModel", "DataDirLacksDataset"):
        assert name in coreaug.__all__ and issubclass(getattr(coreaug, name), coreaug.UsageError)


# --- callbacks and registrations checked where they are given ---------------------------------

def _report_needing_error(run, status, position, total, error):
    pass


@pytest.mark.parametrize("report, words", [
    (lambda run, status, position, total: None, "error=None"),
    (_report_needing_error, "error=None"),
    (5, "must be a function"),
])
def test_run_grid_refuses_a_report_it_could_not_call_before_anything_trains(tmp_path, report, words):
    with pytest.raises(UsageError, match=words):
        coreaug.run_grid(coreaug.TrainConfig(**TINY), tmp_path / "grid", subsets=[0.5], strategies=["random"],
                         references=[], seeds=1, report=report)
    assert not os.path.exists(tmp_path / "grid" / "runs")


def test_run_grid_takes_a_report_with_error_or_keywords(tmp_path):
    seen = []
    coreaug.run_grid(coreaug.TrainConfig(**TINY), tmp_path / "grid", subsets=[0.5], strategies=["random"],
                     references=[], seeds=1, report=lambda *args, **kw: seen.append(args[1]))
    assert seen == ["trained"]


def test_register_rule_refuses_a_function_without_the_arguments_every_selection_passes():
    with pytest.raises(UsageError, match=r"must take \(labels, fraction.*estimates.*\*\*_"):
        @register_rule("r20-lossy", ["losses"], "the lowest losses")
        def lossy(labels, fraction, *, losses):
            return None
    assert "r20-lossy" not in RULES

    @register_rule("r20-ok", ["losses"], "the lowest losses")
    def fine(labels, fraction, *, losses, **_):
        return coreaug.select_random(labels, fraction, seed=0)
    try:
        assert RULES["r20-ok"].choose is fine
    finally:
        RULES.pop("r20-ok")


def test_train_refuses_an_on_start_it_could_not_call_before_the_data_is_read(tmp_path):
    with pytest.raises(UsageError, match="on_start must be a function"):
        coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), on_start=5)
    assert not os.path.exists(tmp_path / "run")


# --- names in any case; validate ---------------------------------------------------------------

def test_a_model_name_in_another_case_is_taken_as_create_model_takes_it():
    assert coreaug.TrainConfig(dataset="digits", model="CNN").resolved().model == "cnn"
    with pytest.raises(UsageError, match="unknown model 'NoNet'"):
        coreaug.TrainConfig(dataset="digits", model="NoNet").resolved()


def test_validate_checks_a_config_as_users_write_it():
    assert coreaug.TrainConfig(dataset="digits", epochs=3).validate() is None  # model=None: the dataset's default
    with pytest.raises(UsageError, match="epochs"):
        coreaug.TrainConfig(dataset="digits", epochs=0).validate()


# --- load_dataset: settings it would not read --------------------------------------------------

def test_load_dataset_refuses_data_dir_and_download_where_nothing_is_read(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "folder" / cls).mkdir(parents=True)
        for i in range(3):
            from PIL import Image
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "folder" / cls / f"{i}.png")
    with pytest.raises(UsageError, match="data_dir and download apply to a built-in dataset"):
        coreaug.load_dataset(str(tmp_path / "folder"), str(tmp_path), download=True)
    with pytest.raises(UsageError, match="data_dir applies to a dataset read from files; digits reads none"):
        coreaug.load_dataset("digits", str(tmp_path))
    with pytest.raises(UsageError, match="data_dir must be a folder's path"):
        coreaug.load_dataset("mnist", 5)
    with pytest.raises(UsageError, match="download must be True or False"):
        coreaug.load_dataset("digits", download="yes")
    assert coreaug.load_dataset("digits").name == "digits"


# --- wrong types in one line -------------------------------------------------------------------

def test_paths_that_are_no_paths_are_refused_naming_the_argument(run, tmp_path):
    cases = [(lambda: coreaug.load_run(5), "run must be a run folder's path"),
             (lambda: coreaug.run_grid(coreaug.TrainConfig(**TINY), None), "out must be the grid's folder"),
             (lambda: coreaug.bench.archive_grid(5), "grid must be a grid's folder"),
             (lambda: coreaug.bench.restore_grid(tmp_path / "a.tar.gz", out=None), "out must be the grid's folder"),
             (lambda: run.read(torch.zeros(3, 8, 8, dtype=torch.uint8)), "image must be an image file's path"),
             (lambda: run.predict(None), "images must be an image file's path"),
             (lambda: run.preprocess(5), "images must be an image file's path")]
    for call, words in cases:
        with pytest.raises(UsageError, match=re.escape(words)):
            call()


def test_write_report_refuses_other_grids_given_without_labels_and_a_baseline_of_no_name(tmp_path):
    for also in ([str(tmp_path / "g2")], [("ab")], 5):
        with pytest.raises(UsageError, match=r"also must hold \(path, label\) pairs"):
            coreaug.bench.write_report(tmp_path, out=tmp_path / "rep", also=also)
    with pytest.raises(UsageError, match="baseline must be a strategy"):
        coreaug.bench.write_report(tmp_path, out=tmp_path / "rep", baseline=5)


def test_selection_and_plan_arguments_of_the_wrong_type_are_refused():
    model = coreaug.create_model("cnn", 1, 10)
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8) % 2
    for settings, words in (({"transform": 5}, "transform must be a function"), ({"seed": -1}, "seed must be"),
                            ({"num_workers": -1}, "num_workers must be"), ({"num_workers": 1.5}, "num_workers")):
        with pytest.raises(UsageError, match=words):
            coreaug.estimate_gradients(model, images, labels, **settings)
    assert model.training  # refused before the model was put in eval mode
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.5)
    with pytest.raises(UsageError, match="preprocess must be a function"):
        method.scores(model, images, preprocess=5)
    with pytest.raises(UsageError, match="epoch"):
        method.due("a")
    plan = EpochPlan(torch.arange(4), torch.ones(4), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(UsageError, match="rank must be an integer"):
        plan.shard(0.0, 2)


# --- reprs and the API page --------------------------------------------------------------------

def test_report_and_device_plan_reprs_leave_their_long_lists_out():
    cells = [{"strategy": "random", "subset": 0.3, "final": 0.5, "note": "x" * 500}] * 20
    text = repr(ReportResult({"md": "r.md"}, cells, 0.9, "given", 3, []))
    assert "x" * 50 not in text and "target=0.9" in text
    plan = DevicePlan(torch.arange(3), torch.ones(3), torch.zeros(3, dtype=torch.bool), torch.zeros(0, dtype=torch.long),
                      list(range(0, 100000, 7)), 7)
    assert "99995" not in repr(plan)


def test_docstrings_use_markdown_code_not_sphinx_roles():
    roles = re.compile(r":(func|class|mod|meth):`")
    found = [path for path in glob.glob(os.path.join(ROOT, "coreaug", "**", "*.py"), recursive=True)
             if roles.search(open(path, encoding="utf-8").read())]
    assert found == []



# --- policies (explore20-policies) -------------------------------------------------------------

@pytest.mark.parametrize("size", [(4, 7), (17, 40), (7, 4)])
def test_a_quarter_turn_of_an_oblong_image_moves_whole_rows_as_pillows_does(size):
    from PIL import Image

    import coreaug.augment as A

    h, w = size
    image = torch.arange(1, h * w + 1, dtype=torch.uint8).view(1, 1, h, w)
    for degrees in (90.0, -90.0, 270.0):
        ours = A.rotate(image, torch.tensor([degrees]))[0, 0].numpy()
        pillow = np.asarray(Image.fromarray(image[0, 0].numpy()).rotate(degrees))
        assert (ours == pillow).all(), degrees


def test_the_default_magnitude_out_of_fewer_bins_is_named_as_the_default():
    with pytest.raises(UsageError, match=r"magnitude \(9 by default\) must be below num_magnitude_bins=5"):
        coreaug.create_policy("randaugment", num_magnitude_bins=5)
    import coreaug.augment as A
    with pytest.raises(UsageError, match="images have 1 channel, shape"):
        A.RandAugment(fill=[0, 0, 0])(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name, shown, report", [("my grid", "'{tmp}/my grid'", "'{tmp}/my grid-report'"),
                                                  ("-g", "./-g", "./-g-report"), (".", ".", "{tmp}-report")])
def test_bench_ends_with_the_report_command_that_gives_paired_differences(tmp_path, monkeypatch, name, shown, report):
    import shlex

    from click.testing import CliRunner

    from coreaug.cli.main import app

    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / name) if name not in ("-g", ".") else name
    result = CliRunner().invoke(app, ["bench", "--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32",
                                      "--batch-size", "32", "--epochs", "1", "--quiet", "--subsets", "0.5",
                                      "--strategies", "random", "--references", "none", "--seeds", "1", "--out", out])
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[-1]
    shown, report = shown.format(tmp=tmp_path), report.format(tmp=tmp_path)
    assert line == f"paired differences by seed, with intervals: coreaug report {shown} --out {report}"
    reported = CliRunner().invoke(app, shlex.split(line.split(": ", 1)[1])[1:])
    assert reported.exit_code == 0, reported.output
    assert os.path.exists(os.path.join(shlex.split(report)[0], "report.md"))  # (".": beside the grid, not ".-report")


def test_a_report_without_references_says_why_the_share_of_full_gain_is_blank(tmp_path):
    from click.testing import CliRunner

    from coreaug.cli.main import app

    out = tmp_path / "grid"
    result = CliRunner().invoke(app, ["bench", "--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32",
                                      "--batch-size", "32", "--epochs", "1", "--quiet", "--subsets", "0.5",
                                      "--strategies", "random", "--references", "none", "--seeds", "1", "--out", out])
    assert result.exit_code == 0, result.output
    report = coreaug.bench.write_report(out, out=tmp_path / "rep")
    text = open(report.files["md"], encoding="utf-8").read()
    assert "Blank without a finished none or full cell" in text


@pytest.mark.parametrize("policy, fill", [("randaugment", 0.5), ("autoaugment", [0.5, 0.5, 0.5]), ("cutout", 0.25),
                                          ("weak", 0.5)])
def test_a_policy_fill_between_0_and_1_is_warned_about_as_nearly_black(policy, fill):
    from coreaug.errors import CallerWarning

    with pytest.warns(CallerWarning, match=r"is a 0-255 level .* nearly black; .* \(0\.\d+ of 1 is \d+\)"):
        coreaug.create_policy(policy, fill=fill)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coreaug.create_policy(policy, fill=128)
        coreaug.create_policy(policy, fill=1)


# --- review28: valid calls still taken ----------------------------------------------------------

def test_calls_that_worked_before_round_20_still_work(run, tmp_path):
    from PIL import Image

    from coreaug.bench.report import _names, _pairs_given

    assert coreaug.load_dataset("digits", progress=None, download=None).name == "digits"
    assert coreaug.load_dataset("digits", progress=np.False_, download=np.False_).name == "digits"
    model = coreaug.create_model("cnn", 1, 10)
    images, labels = torch.rand(4, 1, 8, 8), torch.arange(4) % 2
    assert coreaug.estimate_gradients(model, images, labels, num_workers=None).shape[0] == 4
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("L", (8, 8), i * 100).save(paths[-1])

    class Files:  # a map-style sequence of paths, which `for` reads
        def __len__(self):
            return 2

        def __getitem__(self, index):
            if index >= 2:
                raise IndexError(index)
            return paths[index]
    assert len(run.predict(Files())) == 2
    assert run.read(os.fsencode(paths[0])).shape == run.read(paths[0]).shape
    with open(paths[0], "rb") as f, pytest.raises(UsageError, match=r"file object .*PIL.Image.open\(f\)"):
        run.read(f)
    assert _names({"random", "none"}) == ["none", "random"] and _names(iter(["random"])) == ["random"]
    assert _pairs_given({"grids/b": "b"}) == [("grids/b", "b")]
    with pytest.raises(UsageError, match="magnitude must be a whole number"):
        coreaug.create_policy("randaugment", magnitude=np.array([9, 9]))


def test_evaluate_refuses_data_dir_and_download_for_a_folder_it_reads_where_it_is(run, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from coreaug.cli.main import app

    for cls in ("0", "1"):
        (tmp_path / "folder" / cls).mkdir(parents=True)
        Image.new("L", (8, 8), 50).save(tmp_path / "folder" / cls / "a.png")
    folder = str(tmp_path / "folder")
    with pytest.raises(UsageError, match="data_dir applies to a built-in dataset; .* is a folder of images"):
        run.evaluate(folder, data_dir=str(tmp_path / "nowhere"))
    result = CliRunner().invoke(app, ["evaluate", run.run, "--dataset", folder, "--data-dir", str(tmp_path),
                                      "--download"])
    assert result.exit_code == 2 and "--data-dir and --download apply to a built-in dataset" in result.output
    assert run.evaluate(folder).total == 2


# --- explore20-locale ----------------------------------------------------------------------------

def test_text_files_write_a_name_that_is_not_utf8_as_its_own_bytes(tmp_path):
    from coreaug.files import atomic_write

    name = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name: Python holds its byte as a surrogate
    atomic_write(str(tmp_path / "report.md"), lambda f: f.write(f"runs of {name}: ±1\n"))
    assert (tmp_path / "report.md").read_bytes() == b"runs of caf\xe9: \xc2\xb11\n"


def test_a_cache_of_a_folder_this_locale_cannot_name_is_no_folder_of_this_session():
    from coreaug.data import image_cache

    def unencodable(path):
        raise UnicodeEncodeError("latin-1", path, 0, 1, "ordinal not in range(256)")
    original = os.path.realpath
    try:
        os.path.realpath = unencodable
        assert image_cache._real("/data/写真") is None
    finally:
        os.path.realpath = original
    assert image_cache._real("/") == "/" and image_cache._real(None) is None


@pytest.mark.parametrize("encoding", ["latin-1", "ascii", "cp1252"])
def test_predict_writes_every_row_on_a_stdout_of_another_encoding(run, tmp_path, encoding):
    import subprocess
    import sys

    from PIL import Image

    folder = tmp_path / "日本"
    folder.mkdir()
    Image.new("L", (8, 8), 70).save(folder / "é.png")
    done = subprocess.run([sys.executable, "-m", "coreaug", "predict", run.run, str(folder)], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": encoding}, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(done.stdout.splitlines()) == 1 + 5  # the header and the top 5 classes


def test_files_from_takes_a_list_saved_with_a_byte_order_mark_and_names_utf16(run, tmp_path):
    import codecs

    from click.testing import CliRunner
    from PIL import Image

    from coreaug.cli.main import app

    Image.new("L", (8, 8), 70).save(tmp_path / "a.png")
    (tmp_path / "list.txt").write_bytes(codecs.BOM_UTF8 + str(tmp_path / "a.png").encode() + b"\r\n")
    result = CliRunner().invoke(app, ["predict", run.run, "--files-from", str(tmp_path / "list.txt")])
    assert result.exit_code == 0 and result.output.count("a.png") == 5, result.output
    (tmp_path / "list16.txt").write_bytes(str(tmp_path / "a.png").encode("utf-16"))
    result = CliRunner().invoke(app, ["predict", run.run, "--files-from", str(tmp_path / "list16.txt")])
    assert result.exit_code == 2 and "UTF-16" in result.output


def test_names_are_shown_in_the_file_systems_encoding_so_an_ascii_locale_prints_them():
    import subprocess
    import sys

    code = ("import os\nfrom coreaug.data.cache_decode import shown\n"
            "print(shown(os.fsdecode(b'/data/caf\\xc3\\xa9')), shown('/data/plain'))")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/data/caf\\xc3\\xa9", "/data/plain"]


def test_predict_escapes_class_names_on_the_ascii_stdout_of_the_c_locale_without_utf8_mode(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    for shade, name in ((40, "café"), (200, "日本")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), shade + i).save(tmp_path / "data" / name / f"{i}.png")
    coreaug.train(coreaug.TrainConfig(dataset=str(tmp_path / "data"), model="cnn", image_size=8, epochs=1,
                                      quiet=True, out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache")))
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
    done = subprocess.run([sys.executable, "-m", "coreaug", "predict", str(tmp_path / "run"),
                           str(tmp_path / "data" / "café" / "0.png")], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"caf\\xe9" in done.stdout and b"\\u65e5\\u672c" in done.stdout


def test_the_default_out_of_a_folder_with_a_long_name_fits_the_file_system(tmp_path):
    from coreaug.cli.train import claim_folder, default_out

    for name in ("d" * 235, "写" * 80, "plain"):
        out = default_out(str(tmp_path / name), "random", 0.3, seed=0)
        assert len(os.fsencode(os.path.basename(out))) <= 250 and re.search(r"-random-0\.3-\d{8}-\d{6}-seed0$", out)
        assert os.path.basename(out).startswith(name[:10])
        assert os.path.isdir(claim_folder(str(tmp_path / out)))
