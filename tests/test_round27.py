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
