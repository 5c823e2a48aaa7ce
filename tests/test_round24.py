"""Round 24: fixes from the review helpers and note57's left-alone items."""
import pytest

import coreaug
from coreaug.errors import chain


def _raised(make):
    try:
        make()
    except BaseException as exc:  # noqa: B902 - the test's own chains
        return exc
    raise AssertionError("nothing raised")


def test_an_errors_chain_follows_causes_then_contexts_once_each_up_to_the_one_being_handled():
    def inner():
        raise OSError(28, "No space left on device")

    def middle():
        try:
            inner()
        except OSError as exc:
            raise RuntimeError("zip writer failed") from exc

    def outer():
        try:
            middle()
        except RuntimeError:
            raise ValueError("while saving")  # its __context__, no __cause__

    error = _raised(outer)
    assert [type(e) for e in chain(error)] == [ValueError, RuntimeError, OSError]
    assert [type(e) for e in chain(error, handled=error.__context__)] == [ValueError]

    def hidden():
        try:
            inner()
        except OSError:
            raise KeyError("x") from None

    hidden_error = _raised(hidden)
    assert [type(e) for e in chain(hidden_error)] == [KeyError, OSError]
    assert [type(e) for e in chain(hidden_error, suppressed=True)] == [KeyError]

    looped = ValueError("a")
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped
    assert list(chain(looped)) == [looped, other]


def _schedule_seen(monkeypatch, compile):
    """The learning rate each training step of a 2-epoch run with a 1-epoch warm-up stepped with, by
    epoch, and the run's config: eager, the rate torch's SGD reads from its group at `step()`; compiled
    (dynamo without inductor's code generation), the rate handed to the compiled step."""
    import torch

    from coreaug.training import compiled_step

    seen, epochs = [], []
    if compile:
        monkeypatch.setattr(compiled_step, "compile_unit",
                            lambda fn, *, device, fullgraph, mode="auto": torch.compile(fn, fullgraph=fullgraph,
                                                                                         backend="eager"))
        real_call = compiled_step.CompiledStep.__call__

        def call(self, images, labels, weights, key, lr, numbers=None):
            seen.append(lr)
            return real_call(self, images, labels, weights, key, lr, numbers)
        monkeypatch.setattr(compiled_step.CompiledStep, "__call__", call)
    else:
        real_step = torch.optim.SGD.step

        def step(self, *args, **kwargs):
            seen.append(self.param_groups[0]["lr"])
            return real_step(self, *args, **kwargs)
        monkeypatch.setattr(torch.optim.SGD, "step", step)
    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=16, batch_size=16, epochs=2, quiet=True,
                                 strategy="random", subset=0.25, warmup_epochs=1, lr=0.1, compile=compile)
    coreaug.train(config, on_epoch=lambda row: epochs.append(len(seen)))
    return [seen[:epochs[0]], seen[epochs[0]:epochs[1]]], config


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_each_step_trains_at_its_own_point_of_the_schedule(monkeypatch, compile):
    """explore24-mutation #1: the rate set once an epoch (a warm-up's whole first epoch at 0) passed every test."""
    from coreaug.training.schedule import learning_rate
    from test_compile_support import needs_compile

    if compile and needs_compile.args[0]:
        pytest.skip(needs_compile.kwargs["reason"])
    by_epoch, config = _schedule_seen(monkeypatch, compile)
    assert all(len(rates) > 2 for rates in by_epoch)
    for epoch, rates in enumerate(by_epoch):
        assert rates == [pytest.approx(learning_rate(config, epoch + step / len(rates))) for step in range(len(rates))]
    assert by_epoch[0][0] == 0 and by_epoch[0] == sorted(set(by_epoch[0]))  # the warm-up rises step by step
    assert by_epoch[1] == sorted(set(by_epoch[1]), reverse=True) and by_epoch[1][0] == pytest.approx(0.1)


def test_digits_are_read_from_scikit_learns_file_without_importing_it(monkeypatch):
    """explore24-hostprofile #1: importing scikit-learn (SciPy, pandas) to read its 60 KB CSV took 1.3-1.5 s
    of every digits run's start-up; the same arrays, and load_digits where the file is not found."""
    import subprocess
    import sys

    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    from coreaug.data import digits

    code = ("import sys; from coreaug.data.digits import load_sklearn_digits; data = load_sklearn_digits(); "
            "print(len(data.train_labels) + len(data.test_labels), 'sklearn' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["1797", "False"]
    reference = load_digits()
    pixels, labels = digits._digits_table()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)
    read = digits.load_sklearn_digits()
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    fallback = digits.load_sklearn_digits()
    assert torch.equal(read.train_images, fallback.train_images) and torch.equal(read.test_labels, fallback.test_labels)
