"""Edges of the selection API: a user's rule, options and files are checked at the boundary,
each with one UsageError that names what was wrong."""
import errno

import numpy as np
import pytest
import torch
from torch import nn

import coreaug
from coreaug.errors import UsageError
from coreaug.selection import rules
from coreaug.selection.rules import register_rule, select_by_rule

LABELS = np.arange(60) % 3


@pytest.fixture
def own_rules(monkeypatch):
    """Rules registered in a test stay in it."""
    monkeypatch.setattr(rules, "RULES", dict(rules.RULES))


def _tiny():
    """A float32 model of 4x4 grayscale images, 6 images and their labels."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), torch.rand(6, 1, 4, 4), torch.arange(6) % 3


def test_a_registered_rules_selection_is_checked_where_it_is_called(own_rules):
    def returning(change):
        def choose(labels, fraction, **_):
            return change(coreaug.select_random(labels, fraction))
        return choose

    def replaced(**fields):
        def change(s):
            for name, value in fields.items():
                setattr(s, name, value(s))
            return s
        return change

    bad = {
        "negative": (replaced(weights=lambda s: -s.weights), "weights must be finite and >= 0"),
        "nan": (replaced(weights=lambda s: s.weights * np.nan), "weights must be finite and >= 0"),
        "beyond": (replaced(indices=lambda s: s.indices + 10 ** 6), "indices must be < 60"),
        "repeated": (replaced(indices=lambda s: np.zeros_like(s.indices)), "indices repeat an example"),
        "array": (lambda s: s.indices, " an object of type ndarray, not a coreaug.Selection"),
    }
    for name, (change, message) in bad.items():
        register_rule(name, needs=[], summary="x")(returning(change))
        with pytest.raises(UsageError, match=f"rule '{name}' returned.*{message}"):
            select_by_rule(name, LABELS, 0.3)
    # A selection with tensor indices is usable, and comes back as the documented int64 array.
    register_rule("tensor", needs=[], summary="x")(returning(replaced(indices=lambda s: torch.as_tensor(s.indices))))
    picked = select_by_rule("tensor", LABELS, 0.3)
    assert isinstance(picked.indices, np.ndarray) and picked.indices.dtype == np.int64 and len(picked) == 18


def test_register_rule_refuses_unknown_needs_when_decorating(own_rules):
    for needs in (["gradz"], "losses", None):
        with pytest.raises(UsageError, match="needs must be a list of some of"):
            register_rule("typo", needs=needs, summary="x")
    assert "typo" not in rules.RULES
    register_rule("fine", needs=("losses", "estimates"), summary="x")(lambda labels, fraction, **_: None)
    assert rules.RULES["fine"].needs == ("losses", "estimates")


def test_estimate_gradients_refuses_a_dtype_device_or_items_it_cannot_use():
    model, images, labels = _tiny()
    for dtype in (torch.int64, torch.bool, np.float32, "float16"):
        with pytest.raises(UsageError, match="dtype must be a floating torch dtype"):
            coreaug.estimate_gradients(model, images, labels, dtype=dtype)
    assert coreaug.estimate_gradients(model, images, labels, dtype=torch.float16).dtype == torch.float16
    with pytest.raises(UsageError, match="device must be 'auto' or a torch device such as 'cpu'.*got 'gpu'"):
        coreaug.estimate_gradients(model, images, labels, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="device 'cuda' was asked for but torch sees no CUDA device"):
            coreaug.estimate_gradients(model, images, labels, device="cuda")
    as_dicts = [{"image": x, "label": int(y)} for x, y in zip(images, labels)]
    with pytest.raises(UsageError, match="item 0 is a dict with keys 'image', 'label'"):
        coreaug.estimate_gradients(model, as_dicts, labels)
    as_lists = [[x.tolist(), int(y)] for x, y in zip(images, labels)]  # nested lists: no image a DataLoader batches
    with pytest.raises(UsageError, match="item 0's image is of type list"):
        coreaug.estimate_gradients(model, as_lists, labels)
    pairs = [(x, int(y)) for x, y in zip(images, labels)]
    assert torch.equal(coreaug.estimate_gradients(model, pairs, labels),
                       coreaug.estimate_gradients(model, images, labels))


def test_float64_images_get_the_message_uint8_images_get():
    model, images, labels = _tiny()
    with pytest.raises(UsageError, match="cannot take the float64 inputs.*lambda x: x.to\\(torch.float32\\)"):
        coreaug.estimate_gradients(model, images.double(), labels)
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.5)
    with pytest.raises(UsageError, match="cannot take the float64 inputs"):
        method.start_epoch(0, model, images.double())


def test_selection_options_take_only_what_they_say():
    features = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    labels = np.arange(30) % 3
    for value in ("no", 0, None):
        with pytest.raises(UsageError, match="drop_singletons must be True or False"):
            coreaug.select_coreset(features, labels, 0.3, drop_singletons=value)
    same = coreaug.select_coreset(features, labels, 0.3, drop_singletons=np.bool_(True))
    assert np.array_equal(same.indices, coreaug.select_coreset(features, labels, 0.3, drop_singletons=True).indices)
    assert np.array_equal(coreaug.select_coreset(features, labels, torch.tensor(0.3)).indices,
                          coreaug.select_coreset(features, labels, 0.3).indices)
    with pytest.raises(UsageError, match="fraction must be a number"):
        coreaug.select_coreset(features, labels, torch.tensor([0.3]))
    with pytest.raises(UsageError, match="seed must be an integer >= 0, a np.random.Generator or None"):
        coreaug.select_random(labels, 0.3, seed=np.random.RandomState(0))
    with pytest.raises(UsageError, match="logits must hold at least one example"):
        coreaug.logit_gradients(torch.randn(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(UsageError, match="config must be a coreaug.TrainConfig or a dict of its settings, got str"):
        coreaug.train("digits")


def test_apply_label_noise_checks_its_seed_like_every_other_seed():
    labels = torch.arange(100) % 10
    for seed in (-1, 1.5, "1", True):
        with pytest.raises(UsageError, match="seed must be an integer >= 0"):
            coreaug.apply_label_noise(labels, 0.3, 10, seed=seed)
    assert torch.equal(coreaug.apply_label_noise(labels, 0.3, 10, seed=np.int64(3))[0],
                       coreaug.apply_label_noise(labels, 0.3, 10, seed=3)[0])
    with pytest.raises(UsageError, match="fraction must be a number in"):
        coreaug.apply_label_noise(labels, "0.3", 10)


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    selection = coreaug.select_random(LABELS, 0.3)
    with pytest.raises(FileNotFoundError) as missing:
        selection.save(tmp_path / "sub" / "dir" / "sel.npz")
    assert missing.value.filename == str(tmp_path / "sub" / "dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as under_a_file:
        selection.save(tmp_path / "file" / "sel.npz")
    assert under_a_file.value.errno == errno.ENOTDIR and under_a_file.value.filename == str(tmp_path / "file")
    assert not list(tmp_path.glob("**/.tmp-*"))


def test_loading_a_file_that_is_not_a_selection_is_one_usage_error(tmp_path):
    np.save(tmp_path / "array.npy", np.arange(3))
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "objects.npz", indices=np.array([1, 2], dtype=object), weights=np.ones(2))
    # valid indices and weights, but an optional array that is not what save writes (was numpy's ValueError)
    np.savez(tmp_path / "timings.npz", indices=np.arange(2), weights=np.ones(2), timings=np.array("{not json"))
    np.savez(tmp_path / "classes.npz", indices=np.arange(2), weights=np.ones(2),
             classes=np.array([object()], dtype=object))
    for name in ("array.npy", "text.npz", "objects.npz", "timings.npz", "classes.npz"):
        with pytest.raises(UsageError, match="is not a selection file \\(an .npz written by Selection.save\\)") as err:
            coreaug.Selection.load(tmp_path / name)
        assert "pickle" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        coreaug.Selection.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "least.npz", indices=np.array([1, 2]), weights=np.ones(2))
    least = coreaug.Selection.load(tmp_path / "least.npz")
    assert np.isnan(least.objective)
    summary = least.summary()
    assert "2 examples (of a set of unknown size)" in summary and "nan" not in summary
