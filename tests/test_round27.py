"""Round 27 of the review: each test fails on the code before its fix."""
import warnings

import numpy as np
import pytest
import torch

import coreaug
from test_round26 import _cli, _folder

TINY = dict(dataset="digits", train_limit=64, test_limit=32, epochs=1, quiet=True)


class _Row:
    """A mapping that iterates its values, as a pandas Series (a sweep's df.iloc[i]) does."""

    def __init__(self, settings):
        self._settings = settings

    def keys(self):
        return self._settings.keys()

    def __getitem__(self, key):
        return self._settings[key]

    def __iter__(self):
        return iter(self._settings.values())


def test_a_row_that_iterates_its_values_is_read_by_its_keys():
    """review27 #1: coreaug.train(df.iloc[0]) was refused as "config has no setting 'digits'"."""
    with pytest.raises(coreaug.UsageError, match=r"^epochs must be"):  # (read, then validated)
        coreaug.train(_Row({**TINY, "epochs": 0}))
    with pytest.raises(coreaug.UsageError, match=r"^config has no setting 'epoch'; did you mean 'epochs'\?$"):
        coreaug.train(_Row({**TINY, "epoch": 1}))


@pytest.mark.parametrize("key", ["no-flip", "no_flip", "--no-flip"])
def test_a_switchs_no_spelling_names_the_setting_and_false(key):
    """review27 #8: {"no-flip": True} was told only that TrainConfig's fields are the settings."""
    with pytest.raises(coreaug.UsageError, match=rf"^config has no setting '{key}'; did you mean 'flip': False\?$"):
        coreaug.train({**TINY, key: True})


def test_an_empty_out_keeps_its_advice_whole(tmp_path):
    """review27 #2: "or leave it out (--out) for runs/<name>" became "or leave it --out for runs/<name>"."""
    result = _cli("train", "--dataset", "digits", "--out", "")
    assert result.exit_code == 2 and result.output == ("error: --out is empty; give the run's folder, or leave it "
                                                      "out (--out) for runs/<name>\n"), result.output


def test_a_float32_setting_recorded_by_all_its_digits_is_the_same_run():
    """review27 #3: a run whose config.json held np.float32(0.3) as 0.30000001192092896 (before settings were
    recorded by their shortest digits) could not be resumed with the same script."""
    from coreaug.training.run_files import differences

    config = coreaug.TrainConfig(dataset="digits", subset=np.float32(0.3), lr=np.float32(0.05), optimizer="adamw",
                                 betas=(np.float32(0.9), 0.999)).resolved()
    identity = config.identity()
    stored = {**identity, "subset": 0.30000001192092896, "lr": 0.05000000074505806,
              "betas": [0.8999999761581421, 0.999]}
    assert differences(stored, identity) == []
    assert [key for key, *_ in differences({**stored, "lr": 0.05000001}, identity)] == ["lr"]


def test_a_path_typed_that_does_not_exist_is_refused_with_skip_bad_images(tmp_path):
    """review27 #4: `predict RUN ok.png phtos --skip-bad-images` (a typo) skipped phtos and exited 0; a --files-from
    line whose file is gone is still skipped."""
    data = _folder(tmp_path / "imgs", splits=("a", "b", "c"))
    assert _cli("train", "--dataset", data, "--epochs", 1, "-q", "--out", tmp_path / "run").exit_code == 0
    image = data / "a" / "a" / "0.png"
    result = _cli("predict", tmp_path / "run", image, tmp_path / "phtos", "--skip-bad-images")
    assert result.exit_code == 2 and result.output.endswith(f"error: image {tmp_path / 'phtos'} does not exist; give "
                                                            "image files or folders of them\n"), result.output
    listed = tmp_path / "list.txt"
    listed.write_text(f"{tmp_path / 'gone.png'}\n")
    result = _cli("predict", tmp_path / "run", image, "--files-from", listed, "--skip-bad-images")
    assert result.exit_code == 0 and f"{image},1," in result.output, result.output


def test_a_built_in_name_beside_a_split_folder_of_that_name_is_told_it_is_built_in(tmp_path, monkeypatch):
    """review27 #5: --dataset digits --val-fraction 0.2 in a folder holding digits/train and digits/val was told
    that digits has its own val/ (the registered name wins; ./digits is the folder)."""
    from coreaug.training.config import refuse_own_split_fraction

    _folder(tmp_path / "digits", splits=("train", "val"))
    monkeypatch.chdir(tmp_path)
    refuse_own_split_fraction("digits", 0.2, "--val-fraction", typed=True)
    with pytest.raises(coreaug.UsageError, match="^--val-fraction splits off the test images"):
        refuse_own_split_fraction("./digits", 0.2, "--val-fraction", typed=True)
    result = _cli("train", "--dataset", "digits", "--val-fraction", 0.2, "--out", tmp_path / "run")
    assert result.exit_code == 2 and result.output.startswith("error: --val-fraction applies to a folder of images; "
                                                              "digits is a built-in dataset"), result.output


def test_a_resume_repeating_the_default_val_fraction_is_told_the_folder_has_its_split(tmp_path):
    """review27 #7: the warning said --val-fraction "is not read by --strategy random"."""
    data = _folder(tmp_path / "split", splits=("train", "val"))
    assert _cli("train", "--dataset", data, "--epochs", 1, "-q", "--out", tmp_path / "run").exit_code == 0
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = _cli("train", "--dataset", data, "--epochs", 1, "-q", "--out", tmp_path / "run", "--resume",
                      "--val-fraction", 0.1)
    assert result.exit_code == 0, result.output
    said = [str(w.message) for w in seen] + [result.output]
    assert any(f"--val-fraction has no effect: {data} has its own test split (val/ or test/)" in s for s in said), said
    assert not any("not read by --strategy" in s for s in said), said


def test_rows_of_numbers_are_taken_for_betas_and_milestones_and_one_value_arrays_told_item():
    """review27 #6: lr=torch.logspace(...)[1:2] was told to give .tolist() (a list, refused next), and betas as a
    float32 tensor, told .tolist(), recorded 0.8999999761581421."""
    config = coreaug.TrainConfig(dataset="digits", optimizer="adamw", betas=torch.tensor([0.9, 0.99]),
                                 schedule="multistep", milestones=np.array([0.5, 0.75], dtype=np.float32))
    assert config.betas == (0.9, 0.99) and config.milestones == (0.5, 0.75)
    config.validate()
    with pytest.raises(coreaug.UsageError, match=r"^lr is a tensor of one value, tensor\(\[0\.0100\]\); give its one "
                                                 r"number: \.item\(\)$"):
        coreaug.TrainConfig(dataset="digits", lr=torch.logspace(-2, -1, 3)[:1]).validate()
    with pytest.raises(coreaug.UsageError, match=r"^seed is a numpy array of 3 values, array\(\[0, 1, 2\]\); give one "
                                                 r"number$"):
        coreaug.TrainConfig(dataset="digits", seed=np.arange(3)).validate()


def test_the_content_hash_reads_labels_by_their_values():
    """review27 #10: int32 labels of the same values hashed as other data (a resume refused as changed labels)."""
    from coreaug.data.dataset import content_fingerprint

    images, labels = torch.zeros(6, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2])
    assert content_fingerprint(images, labels) == content_fingerprint(images, labels.to(torch.int32))
    assert content_fingerprint(images, labels) != content_fingerprint(images, labels.flip(0))


def _selection(weights):
    return coreaug.Selection(indices=np.array([0, 1]), weights=np.array(weights), strategy="mine",
                             classes=np.array([0, 1]), class_counts=np.array([1, 1]),
                             class_objectives=np.array([np.nan, np.nan]))


def test_weights_past_float32s_range_are_refused_not_made_inf(tmp_path):
    """api27 #1: weights 1e39 passed the finite check as float64, then became inf in float32 and trained."""
    method = coreaug.CoresetAugmentation(torch.tensor([0, 1, 0, 1]), fraction=0.5, strategy="random", mode="subset")
    with pytest.raises(coreaug.UsageError, match=r"weights must be at most 3\.403e\+38 \(float32's largest\), got "
                                                 r"1e\+39"):
        method.use(_selection([1e39, 1.0]), 0)
    np.savez(tmp_path / "big.npz", indices=np.array([0, 1]), weights=np.array([1e39, 1.0]))
    with pytest.raises(coreaug.UsageError, match="is not a usable selection: weights must be at most"):
        coreaug.Selection.load(tmp_path / "big.npz")


def test_a_selection_file_path_may_start_with_the_home_folder_or_be_bytes(tmp_path, monkeypatch):
    """api27 #9: save("~/x.npz") wrote into a folder named ~ (FileNotFoundError); save(b"x.npz") raised TypeError."""
    monkeypatch.setenv("HOME", str(tmp_path))
    selection = coreaug.select_random(np.array([0, 1, 0, 1]), fraction=0.5, seed=0)
    selection.save("~/sel.npz")
    assert (tmp_path / "sel.npz").exists()
    selection.save(str(tmp_path / "bytes.npz").encode())
    assert coreaug.Selection.load("~/bytes.npz").indices.tolist() == selection.indices.tolist()


def test_a_datasets_own_labels_are_checked_against_the_labels_scored():
    """api27 #2: estimate_gradients(model, dataset, labels in another order) scored with the wrong labels."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images, labels = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    data = torch.utils.data.TensorDataset(images, labels)
    with pytest.raises(coreaug.UsageError, match=r"^item 0's label is 0 but labels\[0\] is 2: pass"):
        coreaug.estimate_gradients(model, data, labels.flip(0))
    assert torch.equal(coreaug.estimate_gradients(model, data, labels), coreaug.estimate_gradients(model, images,
                                                                                                   labels))
    with pytest.raises(coreaug.UsageError, match=r"^images must be the examples in the labels' order, got a "
                                                 r"tuple_iterator"):
        coreaug.estimate_gradients(model, iter(images), labels)


def test_integers_refuses_a_span_the_random_source_cannot_draw():
    """api27 #3: integers(2 ** 32, ...) from a RandomSource gave negative values, and low > high values below low."""
    from coreaug.augment import RandomSource, integers

    source = RandomSource(RandomSource.image_keys(torch.arange(8), 0))
    with pytest.raises(coreaug.UsageError, match=r"^integers draws from a RandomSource span at most 2 \*\* 31 values "
                                                 r"\(its hashes have 32 bits\), got low 0 and high 4294967296$"):
        integers(2 ** 32, 8, source, "cpu")
    for high, low in ((10, 20), (5, 5)):
        for generator in (source, torch.Generator(), None):
            with pytest.raises(coreaug.UsageError, match=rf"^integers draws from \[low, high\) with high above low, "
                                                         rf"got low {low} and high {high}$"):
                integers(high, 8, generator, "cpu", low=low)
    drawn = integers(2 ** 31, 8, source, "cpu")
    assert drawn.min() >= 0 and drawn.max() < 2 ** 31


def test_float64_features_too_small_for_float32_are_refused():
    """api27 #4: features * 1e-50 became 0 in float32 and the greedy took the first rows (objective 40)."""
    x = np.random.default_rng(0).normal(size=(40, 3))
    labels = np.zeros(40, int)
    assert coreaug.select_coreset(x * 1e-25, labels, 0.2).indices.tolist() == \
        coreaug.select_coreset(x, labels, 0.2).indices.tolist()
    with pytest.raises(coreaug.UsageError, match=r"^features are too small for float32"):
        coreaug.select_coreset(x * 1e-50, labels, 0.2)


def test_max_loss_names_a_model_of_another_dtype_in_one_line():
    """api27 #5: a float64 model gave torch's "mat1 and mat2 must have the same dtype" from inside F.linear."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    with pytest.raises(coreaug.UsageError, match=r"^the model cannot take the float32 inputs .*lambda x: "
                                                 r"x\.to\(torch\.float64\)$"):
        coreaug.create_policy("maxloss")(images, None, model=model, labels=torch.tensor([0, 1, 2, 0]))


def test_a_subfolder_that_cannot_be_listed_is_an_error_not_a_folder_of_no_images(tmp_path, monkeypatch):
    """flags27 #1: a class's subfolder without permission was skipped (its images left out, exit 0)."""
    import os

    from coreaug.data import image_folder

    data = _folder(tmp_path / "imgs")
    (data / "train" / "a" / "sub").mkdir()
    walk = os.walk

    def refusing(top, *args, onerror=None, **kwargs):  # (root lists any folder: chmod 000 would not stop it)
        for parent, dirs, names in walk(top, *args, onerror=onerror, **kwargs):
            if os.path.basename(parent) == "sub" and onerror is not None:  # as os.walk meets an unlistable one
                onerror(PermissionError(13, "Permission denied", parent))
                continue
            yield parent, dirs, names
    monkeypatch.setattr(image_folder.os, "walk", refusing)
    with pytest.raises(PermissionError, match="Permission denied"):
        image_folder.load_image_folder(str(data / "train"), cache_dir=str(tmp_path / "cache"))


def test_a_finished_run_without_its_model_is_told_resume_which_writes_it_again(tmp_path):
    """flags27 #3: evaluate advised --overwrite (deleting the run, training it again) where --resume rewrites
    model.pt from checkpoint.pt."""
    assert _cli("train", "--dataset", "digits", "--train-limit", 64, "--test-limit", 32, "--epochs", 1, "-q",
                "--out", tmp_path / "run").exit_code == 0
    (tmp_path / "run" / "model.pt").unlink()
    result = _cli("evaluate", tmp_path / "run")
    assert result.exit_code == 2 and result.output == (
        f"error: {tmp_path / 'run'} holds a finished run without its model.pt (removed?); coreaug train with the "
        f"run's settings and --resume --out {tmp_path / 'run'} writes it again from checkpoint.pt\n"), result.output


def test_archive_restore_refuses_a_run_folder_as_its_grid(tmp_path):
    """flags27 #2: --restore into a run's folder made it a grid (the run could no longer be resumed) and, into a
    run still training, waited on its lock without a word."""
    assert _cli("train", "--dataset", "digits", "--train-limit", 64, "--test-limit", 32, "--epochs", 1, "-q",
                "--out", tmp_path / "grid" / "runs" / "r1").exit_code == 0
    (tmp_path / "grid" / "grid.json").write_text("{}")
    archived = _cli("archive", tmp_path / "grid", "--to", tmp_path / "a.tar.xz")
    if archived.exit_code != 0:
        pytest.skip(f"the archive of a hand-made grid: {archived.output}")
    result = _cli("archive", "--restore", tmp_path / "a.tar.xz", "--out", tmp_path / "grid" / "runs" / "r1")
    assert result.exit_code == 2 and "is a run folder (it holds config.json), not a grid's" in result.output
    assert not (tmp_path / "grid" / "runs" / "r1" / "runs").exists()


def test_a_model_file_without_permission_is_not_called_corrupt(tmp_path, monkeypatch):
    """flags27 #5: a model.pt the user may not read was "truncated or corrupt", to be written again."""
    from coreaug.training import trained

    assert _cli("train", "--dataset", "digits", "--train-limit", 64, "--test-limit", 32, "--epochs", 1, "-q",
                "--out", tmp_path / "run").exit_code == 0

    def refused(path, *args, **kwargs):  # (root reads any file: chmod 000 would not stop it)
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(trained.torch, "load", refused)
    with pytest.raises(PermissionError):
        trained.read_model_file(str(tmp_path / "run"))


def test_select_out_under_a_file_and_files_from_of_the_home_folder(tmp_path, monkeypatch):
    """flags27 #6, #7: select --out afile/x.npz said the folder afile "does not exist; create it"; predict
    --files-from=~/list.txt was not found (every other path option expands ~)."""
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0, 1]))
    (tmp_path / "afile").write_text("x")
    result = _cli("select", "--labels", tmp_path / "labels.npy", "--strategy", "random", "--fraction", 0.5,
                  "--out", tmp_path / "afile" / "x.npz")
    assert result.exit_code == 2 and f"{tmp_path / 'afile'} is a file, not a folder" in result.output, result.output
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'none.png'}\n")
    result = _cli("predict", tmp_path / "norun", "--files-from=~/list.txt")
    assert result.exit_code == 2 and "Invalid value for '--files-from'" not in result.output, result.output


def test_an_empty_run_grid_or_archive_path_is_refused_as_empty(tmp_path):
    """flags27 #8: `archive grid --to ''` said "--to  cannot be written (Is a directory)", `evaluate ''` said
    " is not a folder"."""
    for args, said in ((["archive", tmp_path, "--to", ""], "--to is empty; give the archive's file"),
                       (["archive", ""], "GRID is empty; give a grid folder"),
                       (["archive", "--restore", "", "--out", tmp_path], "--restore is empty"),
                       (["evaluate", ""], "RUN is empty; give the folder of a finished coreaug run"),
                       (["predict", " ", "x.png"], "RUN is empty; give the folder of a finished coreaug run")):
        result = _cli(*args)
        assert result.exit_code == 2 and result.output.startswith(f"error: {said}"), (args, result.output)
