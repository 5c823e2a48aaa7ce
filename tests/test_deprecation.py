"""Keyword-only options: passed by position (deprecated in 0.2, with a FutureWarning), a TypeError
since 0.3 that says what to write instead; select_coreset's ignored seed, removed in 0.3."""
import dataclasses
import importlib
import inspect
import warnings

import numpy as np
import pytest

import coreaug
from coreaug.data import registry
from coreaug.deprecation import keyword_only
from coreaug.training import epoch_plan


@keyword_only
def scaled(x, *, factor=2, offset=0):
    return x * factor + offset


def no_warnings(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


def test_keyword_calls_work_without_a_warning():
    assert no_warnings(lambda: scaled(3, offset=1, factor=10)) == 31
    assert no_warnings(lambda: scaled(3)) == 6


def test_an_option_passed_by_position_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"scaled\(\): pass factor=\.\.\. by keyword \(coreaug 0\.2 took it by "
                                        r"position with a warning; 0\.3 does not\)"):
        scaled(3, 10)
    with pytest.raises(TypeError, match=r"pass factor=\.\.\., offset=\.\.\. by keyword \(coreaug 0\.2 took them"):
        scaled(3, 10, 1)


def test_an_option_given_by_position_and_by_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="by keyword"):
        scaled(3, 10, factor=2)


def test_more_positional_arguments_than_options_is_a_type_error():
    with pytest.raises(TypeError):
        scaled(3, 10, 1, 5)


def test_the_signature_still_shows_the_options_keyword_only():
    kinds = {name: p.kind for name, p in inspect.signature(scaled).parameters.items()}
    assert kinds == {"x": inspect.Parameter.POSITIONAL_OR_KEYWORD, "factor": inspect.Parameter.KEYWORD_ONLY,
                     "offset": inspect.Parameter.KEYWORD_ONLY}


def test_a_dataclass_keeps_its_first_fields_positional():
    @keyword_only(positional=1)
    @dataclasses.dataclass
    class Settings:
        name: str = "a"
        size: int = 1
        rate: float = 0.5

    assert no_warnings(lambda: Settings("b", rate=0.1)) == Settings(name="b", size=1, rate=0.1)
    with pytest.raises(TypeError, match=r"Settings\(\): pass size=\.\.\., rate=\.\.\. by keyword"):
        Settings("b", 2, 0.1)
    assert [p.kind for p in inspect.signature(Settings).parameters.values()] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.KEYWORD_ONLY]


def test_train_config_takes_the_dataset_by_position_and_refuses_the_rest():
    assert no_warnings(lambda: coreaug.TrainConfig("synthetic", subset=0.2)).subset == 0.2
    with pytest.raises(TypeError, match=r"TrainConfig\(\): pass data_dir=\.\.\., download=\.\.\. by keyword"):
        coreaug.TrainConfig("synthetic", "/data", True)


def test_epoch_plan_and_a_dataset_loader_refuse_options_by_position():
    from coreaug.data.synthetic import load_synthetic

    with pytest.raises(TypeError, match=r"epoch_plan\(\): pass strategy=\.\.\., mode=\.\.\. by keyword"):
        epoch_plan(20, "random", "append")
    with pytest.raises(TypeError, match=r"load_synthetic\(\): pass download=\.\.\., progress=\.\.\., "
                                        r"n_train=\.\.\. by keyword"):
        load_synthetic(None, False, False, 30)
    assert len(no_warnings(lambda: load_synthetic(n_train=30, progress=False)).train_labels) == 30


def test_select_coreset_takes_no_seed_any_more():
    """Deprecated in 0.2 (accepted, ignored, warned about: the coreset draws no random numbers)."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(60, 4)).astype(np.float32), np.repeat(np.arange(3), 20)
    with pytest.raises(TypeError, match="seed"):
        coreaug.select_coreset(features, labels, fraction=0.2, seed=7)
    assert "seed" not in inspect.signature(coreaug.select_coreset).parameters


def _public_callables():
    """Every public function and class of coreaug's API outside augment (whose policies' options
    its owners change), and the registered dataset loaders, by name."""
    found = {}
    for module in ("coreaug", "coreaug.bench", "coreaug.data", "coreaug.models", "coreaug.selection",
                   "coreaug.training"):
        for name in importlib.import_module(module).__all__:
            obj = getattr(importlib.import_module(module), name)
            if callable(obj) and not obj.__module__.startswith("coreaug.augment"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for name in registry.available_datasets():
        found[f"load_dataset:{name}"] = registry._LOADERS[name]
    return found


@pytest.mark.parametrize("name, obj", sorted(_public_callables().items()))
def test_no_public_callable_takes_more_than_three_options_by_position(name, obj):
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and name != "coreaug.training.config.TrainConfig":
        return  # result objects (Selection, ImageDataset, ...): their fields, not options
    try:
        params = inspect.signature(obj).parameters.values()
    except ValueError:  # no signature to read (a builtin)
        return
    by_position = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty]
    assert len(by_position) <= 3, f"{name} takes {by_position} by position"
