"""Deprecations: options passed by position and removed parameters keep working for one release,
with a FutureWarning that says what to write instead."""
import dataclasses
import importlib
import inspect
import warnings

import numpy as np
import pytest
import torch

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


def test_an_option_passed_by_position_still_works_with_a_warning_naming_it():
    with pytest.warns(FutureWarning, match=r"scaled\(\): pass factor=\.\.\. by keyword; passing it by position is "
                                           r"deprecated and will be an error in coreaug 0\.3") as caught:
        assert scaled(3, 10) == 30
    assert caught[0].filename == __file__  # the warning points at the caller's line


def test_several_options_by_position_go_to_the_keyword_only_parameters_in_order():
    with pytest.warns(FutureWarning, match=r"pass factor=\.\.\., offset=\.\.\. by keyword; passing them"):
        assert scaled(3, 10, 1) == 31


def test_an_option_given_by_position_and_by_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="multiple values for argument 'factor'"):
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
    with pytest.warns(FutureWarning, match=r"Settings\(\): pass size=\.\.\., rate=\.\.\. by keyword"):
        assert Settings("b", 2, 0.1) == Settings(name="b", size=2, rate=0.1)
    assert [p.kind for p in inspect.signature(Settings).parameters.values()] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.KEYWORD_ONLY]


def test_train_config_takes_the_dataset_by_position_and_warns_for_the_rest():
    assert no_warnings(lambda: coreaug.TrainConfig("synthetic", subset=0.2)).subset == 0.2
    with pytest.warns(FutureWarning, match=r"TrainConfig\(\): pass data_dir=\.\.\., download=\.\.\. by keyword"):
        config = coreaug.TrainConfig("synthetic", "/data", True)
    assert config == coreaug.TrainConfig("synthetic", data_dir="/data", download=True)


def test_epoch_plan_by_position_warns_and_draws_the_same_plan():
    args = dict(strategy="random", mode="append", selected=torch.arange(0, 20, 2), weights=torch.ones(10), copies=2,
                weight_augmented=False)
    by_keyword = epoch_plan(20, **args, generator=torch.Generator().manual_seed(0))
    with pytest.warns(FutureWarning, match=r"epoch_plan\(\): pass strategy=\.\.\., mode=\.\.\., selected=\.\.\."):
        by_position = epoch_plan(20, *args.values(), torch.Generator().manual_seed(0))
    assert torch.equal(by_position.indices, by_keyword.indices)
    assert torch.equal(by_position.augmented, by_keyword.augmented)


def test_a_dataset_loader_by_position_warns_and_loads_the_same_data():
    from coreaug.data.synthetic import load_synthetic

    with pytest.warns(FutureWarning, match=r"load_synthetic\(\): pass download=\.\.\., progress=\.\.\., "
                                           r"n_train=\.\.\. by keyword"):
        by_position = load_synthetic(None, False, False, 30)
    by_keyword = no_warnings(lambda: load_synthetic(n_train=30, progress=False))
    assert torch.equal(by_position.train_images, by_keyword.train_images) and len(by_keyword.train_labels) == 30


def test_select_coreset_seed_is_accepted_with_a_warning_and_changes_nothing():
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(60, 4)).astype(np.float32), np.repeat(np.arange(3), 20)
    plain = no_warnings(lambda: coreaug.select_coreset(features, labels, fraction=0.2))
    with pytest.warns(FutureWarning, match=r"select_coreset\(seed=\.\.\.\) is deprecated and ignored: .*draws no "
                                           r"random numbers.*removed in coreaug 0\.3") as caught:
        seeded = coreaug.select_coreset(features, labels, fraction=0.2, seed=7)
    assert caught[0].filename == __file__
    np.testing.assert_array_equal(seeded.indices, plain.indices)
    np.testing.assert_array_equal(seeded.weights, plain.weights)


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
