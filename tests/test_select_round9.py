"""Round 9 of `coreaug select` and the selection API: writing through links, devices and pipes; exact
half budgets; checked selection files; messages that say what to do."""
import os
import stat

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import coreaug
from coreaug import files
from coreaug.cli.main import app
from coreaug.errors import UsageError
from coreaug.selection import budget_size


def run(*args):
    return CliRunner().invoke(app, ["select", *map(str, args)])


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(40, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(40) % 4)
    np.save(tmp_path / "loss.npy", rng.random(40))
    return tmp_path


def test_out_through_a_symlink_replaces_the_file_it_points_to_and_keeps_the_link(arrays):
    """The link was replaced by a regular file; the file it pointed to kept the old data."""
    (arrays / "real").mkdir()
    (arrays / "real" / "target.npz").write_text("old")
    os.symlink(arrays / "real" / "target.npz", arrays / "link.npz")
    result = run("--strategy", "random", "--labels", arrays / "y.npy", "--fraction", 0.25, "--out", arrays / "link.npz")
    assert result.exit_code == 0, result.output
    assert os.path.islink(arrays / "link.npz")
    assert len(coreaug.Selection.load(arrays / "real" / "target.npz")) == 10
    assert not [name for name in os.listdir(arrays / "real") if name.startswith(".tmp-")]


def test_a_file_written_over_or_through_a_link_keeps_its_permissions(tmp_path):
    """Writing through a link to a private 0600 file made it 0644 (0666 less the umask): readable by all."""
    private, shared = tmp_path / "private.npz", tmp_path / "shared.txt"
    private.write_text("old")
    shared.write_text("old")
    os.chmod(private, 0o600)
    os.chmod(shared, 0o750)  # never 0666 less a umask
    os.symlink(private, tmp_path / "link.npz")
    coreaug.select_random(np.arange(10) % 2, 0.5).save(tmp_path / "link.npz")
    files.atomic_write(shared, lambda f: f.write("new"))
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600 and len(coreaug.Selection.load(private)) == 5
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o750 and shared.read_text() == "new"
    files.atomic_write(tmp_path / "new.txt", lambda f: f.write("new"))  # a new file: 0666 less the umask
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o666 & ~files._umask()


def test_a_link_to_a_folder_is_refused_by_the_name_given(tmp_path):
    """The error named the temporary file (".tmp-c09shfz2") that the user never sees."""
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "d", tmp_path / "link")
    for given in (tmp_path / "link", tmp_path / "d"):
        with pytest.raises(IsADirectoryError) as err:
            files.atomic_write(given, lambda f: f.write("new"))
        assert err.value.filename == str(given) and ".tmp-" not in str(err.value)
    assert os.listdir(tmp_path / "d") == [] and os.path.islink(tmp_path / "link")


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    """The FIFO was replaced by a regular file, and its reader got nothing."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening it to write does not block
    try:
        files.atomic_write(fifo, lambda f: f.write("through the pipe"))
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert os.listdir(tmp_path) == ["fifo"]


def test_a_character_device_is_written_into_not_replaced(tmp_path, monkeypatch):
    """As root, `--out /dev/null` replaced the system's /dev/null by a regular file. Here a regular file
    that os.stat reports as a character device stands for one: it must be opened, not renamed over."""
    device = tmp_path / "null"
    device.write_text("old")
    inode, real_stat = os.stat(device).st_ino, os.stat

    def as_device(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if os.fspath(path) == str(device):
            return os.stat_result((stat.S_IFCHR | 0o666,) + tuple(result)[1:])
        return result
    monkeypatch.setattr(files.os, "stat", as_device)
    files.atomic_write(device, lambda f: f.write("new"))
    monkeypatch.undo()
    assert os.stat(device).st_ino == inode and device.read_text() == "new"
    assert os.listdir(tmp_path) == ["null"]


def test_budgets_round_exact_decimal_halves_up_and_a_count_over_n_gives_the_count():
    """0.29 * 50 is 14.499999999999998 in floats, and the budget was 14, not round-half-up's 15."""
    assert [budget_size(0.29, 50), budget_size(0.58, 25), budget_size(0.7, 45)] == [15, 15, 32]
    assert [budget_size(0.25, 10), budget_size(0.24, 10), budget_size(1e-9, 10), budget_size(1, 7)] == [3, 2, 1, 7]
    assert all(budget_size(k / n, n) == k for n in range(1, 120) for k in range(1, n + 1))
    labels = np.arange(50) % 2
    assert len(coreaug.select_random(labels, 0.29)) == 15


def test_the_command_matches_the_api_with_tie_seed_0_as_the_docs_say(arrays):
    """The command passes --seed (0) as tie_seed; the API's default (None) gives leftovers to the lowest ids."""
    features, labels, losses = (np.load(arrays / name) for name in ("f.npy", "y.npy", "loss.npy"))
    for extra, api in ((["--features", arrays / "f.npy"], coreaug.select_coreset(features, labels, 0.15, tie_seed=0)),
                       (["--strategy", "maxloss", "--losses", arrays / "loss.npy"],
                        coreaug.select_maxloss(losses, labels, 0.15, tie_seed=0))):
        result = run(*extra, "--labels", arrays / "y.npy", "--fraction", 0.15, "--out", arrays / "s.npz")
        assert result.exit_code == 0, result.output
        assert coreaug.Selection.load(arrays / "s.npz").indices.tolist() == api.indices.tolist()
    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "training.md")).read()
    assert "`tie_seed=0`" in docs and "gives the\ncommand's default selection" in docs


@pytest.mark.parametrize("args, message", [
    (["--features", "f.npy", "--losses", "loss.npy"], "--losses is not read by --strategy coreset; drop it"),
    (["--strategy", "random", "--features", "f.npy"], "--features is not read by --strategy random; drop it"),
    (["--strategy", "maxloss", "--losses", "loss.npy", "--features", "f.npy"], "--features is not read by --strategy"),
])
def test_a_score_file_the_rule_does_not_read_is_refused(arrays, args, message):
    """Like --backend apricot with another rule: the file was loaded and silently ignored."""
    args = [arrays / a if a.endswith(".npy") else a for a in args]
    result = run(*args, "--labels", arrays / "y.npy", "--fraction", 0.25, "--out", arrays / "s.npz")
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1
    assert not (arrays / "s.npz").exists()


def _selection_file(path, **arrays):
    base = {"indices": np.array([1, 5, 3]), "weights": np.array([1.0, 2.0, 3.0])}
    np.savez(path, **{**base, **arrays})
    return path


@pytest.mark.parametrize("arrays, problem", [
    ({"timings": np.array("[1, 2]")}, "timings must be a JSON object of seconds"),
    ({"timings": np.array('{"a": "x"}')}, "timings must be a JSON object of seconds"),
    ({"timings": np.array("{not json")}, "timings is not JSON"),
    ({"n_total": np.array(-5)}, "n_total must be 0 (not known) or an integer above every index, got -5"),
    ({"n_total": np.array(5)}, "above every index, got 5"),
    ({"n_total": np.array("ten")}, "n_total must be"),
    ({"classes": np.array(["a", "b"]), "class_counts": np.array([1, 2])}, "classes must be 1-D integers"),
    ({"classes": np.array([0, 1, 2]), "class_counts": np.array([1, 2])}, "one per class, got shapes (3,), (2,)"),
    ({"classes": np.array([0, 1]), "class_counts": np.array([1, 2]), "class_objectives": np.zeros(3)}, "one per class"),
    ({"strategy": np.array(["a", "b"])}, "strategy must be one string"),
])
def test_loading_checks_the_optional_arrays(tmp_path, arrays, problem):
    """They were taken as stored, and `summary()` then crashed or printed "3 of -5 examples (-60.0%)"."""
    path = _selection_file(tmp_path / "h.npz", **arrays)
    with pytest.raises(UsageError, match="not what Selection.save writes") as err:
        coreaug.Selection.load(path)
    assert problem in str(err.value)


def test_saved_and_minimal_selection_files_still_load(tmp_path):
    labels = np.arange(20) % 2
    saved = coreaug.select_random(labels, 0.3)
    saved.save(tmp_path / "s.npz")
    loaded = coreaug.Selection.load(tmp_path / "s.npz")
    assert loaded.indices.tolist() == saved.indices.tolist() and loaded.summary() == saved.summary()
    minimal = coreaug.Selection.load(_selection_file(tmp_path / "m.npz", n_total=np.array(6)))
    assert "3 of 6 examples" in minimal.summary() and minimal.timings == {}


def test_hand_built_selections_saved_by_save_load_again(tmp_path):
    """Empty lists for the per-class fields were saved as float64 arrays, and a NaN timing as JSON NaN:
    `load` refused both files that `save` had just written."""
    base = {"indices": np.array([4, 1]), "weights": np.ones(2), "strategy": "mine"}
    built = [coreaug.Selection(**base, classes=[], class_counts=[], class_objectives=[]),
             coreaug.Selection(**base, classes=np.array([]), class_counts=np.array([]), class_objectives=np.array([])),
             coreaug.Selection(**base, classes=np.zeros(0), class_counts=np.zeros(0), class_objectives=np.zeros(0),
                               timings={"mine": float("nan"), "wait": float("inf")}),
             coreaug.Selection(**base, classes=np.array([0.0, 3.0]), class_counts=np.array([1.0, 1.0]),
                               class_objectives=[], n_total=9)]
    for i, selection in enumerate(built):
        selection.save(tmp_path / f"{i}.npz")
        loaded = coreaug.Selection.load(tmp_path / f"{i}.npz")
        assert loaded.indices.tolist() == [4, 1] and loaded.classes.dtype == np.int64
        assert loaded.classes.tolist() == list(selection.classes) and loaded.summary()
    timings = coreaug.Selection.load(tmp_path / "2.npz").timings
    assert np.isnan(timings["mine"]) and timings["wait"] == float("inf")
    for classes in (np.array([0.5]), np.array([np.nan]), np.array([-1.0])):  # not whole numbers >= 0: still refused
        with pytest.raises(UsageError, match="classes must be 1-D integers"):
            coreaug.Selection.load(_selection_file(tmp_path / "bad.npz", classes=classes, class_counts=np.array([1])))


def test_class_names_as_labels_are_told_how_to_number_them():
    """The advice was labels.astype('int64'), which fails on names."""
    names = np.array(["cat", "dog", "bird"])[np.arange(30) % 3]
    for labels in (names, names.astype(object)):
        with pytest.raises(UsageError, match=r"np\.unique\(labels, return_inverse=True\)\[1\]") as err:
            coreaug.select_random(labels, 0.3)
        assert "astype" not in str(err.value)
    with pytest.raises(UsageError, match="cast them with labels.astype"):  # whole numbers as floats keep the cast
        coreaug.select_random(np.arange(30) % 3.0, 0.3)


def test_sparse_inputs_and_a_count_given_as_the_fraction_say_what_to_pass():
    sparse = pytest.importorskip("scipy.sparse")
    features, labels = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3
    with pytest.raises(UsageError, match=r"features must be a dense array, got a sparse csr_matrix; pass features"
                                         r"\.toarray\(\)"):
        coreaug.select_coreset(sparse.csr_matrix(features), labels, 0.2)
    with pytest.raises(UsageError, match=r"labels must be a dense array"):
        coreaug.select_random(sparse.csr_matrix(labels), 0.2)
    with pytest.raises(UsageError, match=r"fraction must be in \(0, 1\], got 12; to select 12 of n examples "
                                         r"pass 12 / n"):
        coreaug.select_coreset(features, labels, 12)
    with pytest.raises(UsageError, match=r"got 1\.5$"):  # not a count: no hint
        coreaug.select_coreset(features, labels, 1.5)
    assert len(coreaug.select_coreset(features, labels, 12 / 30)) == 12


def test_estimates_or_logits_of_the_wrong_length_are_named_not_the_labels():
    """In the own loop the labels are the method's own; the message said "labels has 40 entries"."""
    method = coreaug.CoresetAugmentation(np.arange(40) % 4, strategy="coreset")
    for given in ({"estimates": torch.randn(39, 4)}, {"logits": torch.randn(39, 4)}):
        with pytest.raises(UsageError, match=r"^the features \(gradient estimates, logits\) have 39 rows but there "
                                             r"are 40 labels") as err:
            method.select(0, **given)
        assert "labels has" not in str(err.value)
