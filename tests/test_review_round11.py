"""Regressions found by reviewing the last round's changes."""
import torch
from torch import nn

import coreaug
from coreaug.models import registry
from test_compile_support import needs_compile

DIGITS = dict(dataset="digits", train_limit=32, test_limit=16, batch_size=16, epochs=1, quiet=True)


class DataInit(nn.Module):
    """ActNorm-style: the first batch it sees sets a per-feature scale, once (a flag buffer)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)
        self.scale = nn.Parameter(torch.ones(in_channels * 64))
        self.register_buffer("rows_seen_first", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        x = x.flatten(1)
        if not self.rows_seen_first:
            with torch.no_grad():
                self.scale.copy_(1 / (x.std(0) + 1))
                self.rows_seen_first.fill_(len(x))
        return self.fc(x * self.scale)


def test_the_trainers_model_probe_is_not_a_data_dependent_models_first_batch(tmp_path, monkeypatch):
    """Registered models were probed from 0.3 on (two zero images, eval mode first): a model that
    initialises itself from its first batch was initialised from the probe, not from training data."""
    monkeypatch.setitem(registry._MODELS, "r11-datainit", DataInit)  # as register_model("r11-datainit") does
    seen = []
    original = DataInit.forward

    def watched(self, x):
        seen.append((len(x), int(self.rows_seen_first)))
        return original(self, x)

    monkeypatch.setattr(DataInit, "forward", watched)
    result = coreaug.train(coreaug.TrainConfig(**DIGITS, model="r11-datainit", out=str(tmp_path / "run")))
    probes = [size for size, flag in seen if size == 2]
    assert probes and all(flag == 0 for size, flag in seen if size == 2)  # the probes ran, each on a fresh model
    assert int(result.model.rows_seen_first) == 16  # initialised by the first training batch


def test_the_finite_check_of_estimates_names_the_first_bad_example_past_its_first_chunk():
    """It ran isfinite over the whole (N, D) estimates at once (2.5x their size in temporaries);
    checked in chunks, it must still name the first bad row, loss or estimate."""
    import pytest

    from coreaug.errors import UsageError
    from coreaug.selection.gradients import _check_finite

    estimates, losses = torch.zeros(40000, 3, dtype=torch.float16), torch.zeros(40000)
    _check_finite(estimates, losses)
    estimates[35001, 2], losses[39000] = float("inf"), float("nan")
    with pytest.raises(UsageError, match=r"on example 35001 \(of 40000\)"):
        _check_finite(estimates, losses)
    losses[20000] = float("nan")
    with pytest.raises(UsageError, match=r"on example 20000 \(of 40000\)"):
        _check_finite(estimates, losses)


def test_workers_accept_a_main_run_by_module_name_from_a_zip_or_a_zipapp(monkeypatch):
    """A main with no plain file but a __spec__ (python -m pkg.mod from a zip on sys.path, a
    zipapp) was refused as 'read from stdin', though spawn imports it by name; stdin still is."""
    import importlib.machinery
    import sys
    import types

    import pytest

    from coreaug.bench.workers import check_spawnable

    zipped = types.ModuleType("__main__")
    zipped.__file__ = "/tmp/app.zip/pkg/mod.py"
    zipped.__spec__ = importlib.machinery.ModuleSpec("pkg.mod", None, origin=zipped.__file__)
    monkeypatch.setitem(sys.modules, "__main__", zipped)
    check_spawnable([])
    zipped.__spec__ = None  # read from stdin
    with pytest.raises(coreaug.UsageError, match=r"read from stdin\?"):
        check_spawnable([])


class Jitter(nn.Module):
    """Draws from torch's generator in eval mode too (Monte Carlo dropout style)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1) + 0.01 * torch.randn_like(x.flatten(1)))


def test_the_model_probes_and_the_dataset_check_leave_the_random_state_as_it_was(monkeypatch):
    """The eval-mode probe drew from torch's generator (a seeded run trained otherwise than before
    the probes); wrapping a dataset read 15 more items, whose random transforms drew too."""
    import random

    import numpy as np

    from coreaug.training.trainer import eval_output, training_output

    model, inputs = Jitter(), torch.zeros(2, 1, 8, 8)
    before = torch.get_rng_state()
    eval_output(model, inputs)
    training_output(model, inputs)
    assert torch.equal(torch.get_rng_state(), before)

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, index):
            return torch.rand(1) + random.random() + np.random.rand(), index % 2

    method = coreaug.CoresetAugmentation(torch.arange(40) % 2, strategy="random", fraction=0.5)
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    expected = torch.rand(1), random.random(), np.random.rand()  # (item 0's read draws none of them either)
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    method.dataset(Noisy())
    assert (torch.rand(1), random.random(), np.random.rand()) == expected


def test_the_gradient_sketch_is_drawn_from_the_runs_seed(monkeypatch):
    """Every run and selection projected with seed 0 whatever --seed: a benchmark cell's seeds
    shared one projection's error."""
    from coreaug.selection import gradients

    seen, original = [], gradients.GradientSketch.__init__

    def init(self, classes, embedding=None, dim=None, seed=0):
        seen.append(seed)
        original(self, classes, embedding, dim, seed)

    monkeypatch.setattr(gradients.GradientSketch, "__init__", init)
    for estimates in ("clean", "training"):
        seen.clear()
        coreaug.train(coreaug.TrainConfig(**{**DIGITS, "epochs": 2}, strategy="coreset", subset=0.3, seed=7,
                                          gradients="logits", gradient_dim=4, estimates=estimates,
                                          selection_warmup=0))
        assert seen and set(seen) == {7}, (estimates, seen)
    seen.clear()
    labels = torch.arange(40) % 10
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.5, gradient_dim=4, seed=5)
    method.scores(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.zeros(40, 1, 8, 8))
    assert seen == [5]


@needs_compile
def test_a_cpp_compiler_that_cannot_build_the_step_is_one_line_at_the_first_step(monkeypatch):
    """A compiler answering --version but lacking the C++ headers ended a compiled run with inductor's
    107-line traceback after tracing."""
    import pytest
    from torch._inductor.exc import CppCompileError

    from coreaug.training import compiled_step

    failure = CppCompileError(["g++", "-c", "step.cpp"], "In file included from common.h:4:\n"
                              "common.h:4:10: fatal error: array: No such file or directory\ncompilation terminated.")

    def fails(self, *args, **kwargs):
        try:
            raise failure
        except CppCompileError as inner:
            raise RuntimeError("backend 'inductor' raised: CppCompileError: C++ compile error") from inner

    monkeypatch.setattr(compiled_step.CompiledStep, "__call__", fails)
    with pytest.raises(coreaug.UsageError, match=r"the C\+\+ compiler cannot build the compiled step's code "
                                                 r"\(common\.h:4:10: fatal error: array: No such file or "
                                                 r"directory\); install g\+\+"):
        coreaug.train(coreaug.TrainConfig(**DIGITS, compile=True))
    assert compiled_step.cpp_build_failed(RuntimeError("other")) is None


def test_scoring_a_dataset_in_the_own_loop_leaves_torchs_generator_as_it_was():
    """start_epoch drew one number from torch's generator when the data was a Dataset (its
    DataLoader's base seed), not when a tensor: a user's later draws depended on the data's type."""
    images = torch.rand(40, 1, 8, 8)
    data = torch.utils.data.TensorDataset(images, torch.arange(40) % 10)
    method = coreaug.CoresetAugmentation(torch.arange(40) % 10, strategy="coreset", fraction=0.5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    before = torch.get_rng_state()
    method.start_epoch(0, model, data)
    assert torch.equal(torch.get_rng_state(), before)
