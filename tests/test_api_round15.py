"""Round 15 (explore15-api): the Python API as its documentation states it; each test fails
without its fix."""
import pathlib
import warnings

import numpy as np
import pytest

import coreaug
from coreaug.errors import UsageError


def test_a_pathlib_out_folder_is_taken_as_a_str_is(tmp_path, monkeypatch):
    """TrainConfig(out=Path(...)) trained every epoch, then failed writing summary.json (a Path
    is no JSON) and left a model.pt that load_run called corrupt; a resume failed the same way."""
    monkeypatch.chdir(tmp_path)
    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=64, test_limit=32,
                                 batch_size=32, quiet=True, out=pathlib.Path("runs") / "pp")
    coreaug.train(config)
    assert (tmp_path / "runs" / "pp" / "summary.json").is_file()
    assert coreaug.load_run(pathlib.Path("runs") / "pp").config["out"] == "runs/pp"


def test_register_rule_refuses_a_taken_name_a_reference_and_a_bare_decorator(monkeypatch):
    """It silently replaced a built-in ("coreset" ran the user's function, recorded as coreaug's),
    took "none" and then ignored the rule, took "" and 5, and a bare decorator was a TypeError."""
    from coreaug.selection import rules

    monkeypatch.setattr(rules, "RULES", dict(rules.RULES))

    def mine(labels, fraction, **_):
        return coreaug.select_random(labels, fraction, seed=0)

    with pytest.raises(UsageError, match=r"a rule named 'coreset' is already registered "
                                         r"\(coreaug\.selection\.rules\._coreset\); register .*mine under another"):
        rules.register_rule("coreset", [], "x")(mine)
    with pytest.raises(UsageError, match=r"'none' is a reference strategy"):
        rules.register_rule("none", [], "x")
    for name in ("", 5, mine):
        with pytest.raises(UsageError, match="register_rule needs a non-empty name, needs and a summary"):
            rules.register_rule(name)
    rules.register_rule("mine", [], "mine")(mine)
    rules.register_rule("mine", [], "mine")(mine)  # the same function again (a notebook cell rerun): replaces
    assert rules.RULES["mine"].choose is mine and rules.RULES["coreset"].choose is not mine


def test_an_index_as_device_says_what_it_means():
    import torch

    from coreaug.devices import api_device

    if torch.cuda.is_available():
        assert api_device(0) == torch.device("cuda", 0)
    else:
        with pytest.raises(UsageError, match=r"device 0 \(an index of an accelerator, as torch reads it\) was asked "
                                             r"for but torch sees none; pass device='cpu'"):
            api_device(0)


def test_the_api_page_names_what_the_guides_use_and_documented_functions_return():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    for name in ("coreaug.models.register_model", "coreaug.data.register_dataset", "coreaug.training.Prediction",
                 "coreaug.training.Evaluation", "coreaug.bench.ReportResult", "coreaug.selection.rules.Rule",
                 "coreaug.training.plan.PlanDraws", "coreaug.training.PlanDataset"):
        assert f"::: {name}\n" in page, name
    from coreaug.training.method import CoresetAugmentation

    assert "        knn: " in CoresetAugmentation.__doc__ and "        balance: " in CoresetAugmentation.__doc__


def test_the_package_shows_no_modules_it_used_to_start():
    assert not {"os", "sys", "warnings"} & set(dir(coreaug))


def test_an_empty_selection_logs_no_figures_and_no_numpy_warnings():
    from coreaug.training.diagnostics import selection_diagnostics

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = selection_diagnostics(np.array([], dtype=np.int64), np.array([], dtype=np.float32), 10,
                                    previous=np.array([1]), losses=np.ones(10), noisy=np.arange(10) % 2 == 0)
    assert out["selection_loss_selected"] is None and out["selection_noisy_fraction"] is None
