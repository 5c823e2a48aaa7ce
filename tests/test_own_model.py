"""Your own model: `coreaug.train(config, model=...)` and `coreaug train --model package.module:function`."""
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import coreaug
from test_compile_support import needs_compile

TINY = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=1, quiet=True)


class TinyNet(nn.Module):
    """Any nn.Module: here a convolution, pooling, a hidden linear layer and the classifier."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(8, 6), nn.ReLU())
        self.head = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def test_train_takes_a_module_and_trains_it_in_place(tmp_path):
    model = TinyNet()
    before = model.head.weight.detach().clone()
    result = coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=model)
    assert result.model is model and not torch.equal(model.head.weight.detach(), before)
    assert result.config.model == "instance:test_own_model.TinyNet"


def test_last_layer_gradients_select_on_the_input_of_the_modules_last_linear_layer():
    from coreaug.selection.gradients import final_linear

    model = TinyNet()
    assert final_linear(model) is model.head  # the hidden nn.Linear(8, 6) comes before it
    result = coreaug.train(coreaug.TrainConfig(**TINY, gradients="last_layer", subset=0.25), model=model)
    assert result.history[0]["selected"] and result.history[0]["n_augmented"] == 16


def test_a_module_names_the_layer_of_last_layer_gradients():
    from coreaug.selection.gradients import final_linear

    model = TinyNet()
    hidden = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert hidden is not model.head
    model.gradient_layer = next(name for name, m in model.named_modules() if m is hidden)
    assert final_linear(model) is hidden
    model.gradient_layer = "nowhere"
    with pytest.raises(ValueError, match="not a submodule"):
        final_linear(model)
    model.gradient_layer = nn.ReLU()
    with pytest.raises(ValueError, match="gradient_layer must be the nn.Linear"):
        final_linear(model)


def test_a_module_without_a_linear_layer_is_refused_for_last_layer_gradients_before_writing(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="nn.Linear"):
        coreaug.train(coreaug.TrainConfig(**TINY, gradients="last_layer", out=str(tmp_path / "run")), model=model)
    assert not (tmp_path / "run").exists()


def test_a_model_given_twice_is_refused():
    with pytest.raises(ValueError, match="leave config.model unset"):
        coreaug.train(coreaug.TrainConfig(**TINY, model="cnn"), model=TinyNet())


def test_load_run_of_a_passed_module_needs_one_like_it(tmp_path):
    result = coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=TinyNet())
    with pytest.raises(ValueError, match=r"passed to coreaug.train \(test_own_model.TinyNet\).*model="):
        coreaug.load_run(tmp_path / "run")
    trained = coreaug.load_run(tmp_path / "run", model=TinyNet())
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = torch.softmax(result.model.eval()(trained.preprocess(images)), 1)
    torch.testing.assert_close(trained.probabilities(images), expected)


def write_factory_module(folder):
    (folder / "my_nets.py").write_text(textwrap.dedent("""
        from torch import nn

        def small(in_channels, num_classes):
            return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))

        def wrong(num_classes):
            return None

        def three_classes(in_channels, num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 32 * 32, 3))

        def lazy(in_channels, num_classes):
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, num_classes))
    """))


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "coreaug", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


CLI_TINY = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
            "--epochs", "1", "--quiet"]


def test_the_cli_trains_a_model_by_import_path_and_load_run_rebuilds_it(tmp_path, monkeypatch):
    write_factory_module(tmp_path)
    proc = cli("train", *CLI_TINY, "--model", "my_nets:small", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    trained = coreaug.load_run(tmp_path / "run", model="my_nets:small")  # named: importing runs its code
    assert isinstance(trained.model, nn.Sequential) and trained.model[0].in_channels == 3
    assert trained.model[-1].out_features == 10


@pytest.mark.parametrize("path, message", [
    ("nowhere.nets:small", "cannot import module 'nowhere.nets'"),
    ("my_nets:large", "module 'my_nets' has no 'large'"),
    ("my_nets:wrong", "must take two arguments, in_channels and num_classes"),
])
def test_a_model_path_that_does_not_work_is_one_line_exit_2(tmp_path, path, message):
    write_factory_module(tmp_path)
    proc = cli("train", *CLI_TINY, "--model", path, "--out", "run", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing written: the corrected command is not refused


def test_a_factorys_model_is_tried_before_anything_is_written_and_lazy_modules_train(tmp_path):
    write_factory_module(tmp_path)
    proc = cli("train", *CLI_TINY, "--model", "my_nets:three_classes", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 2 and "model 'my_nets:three_classes' must return floating logits of shape " \
        "(batch, 10)" in proc.stderr and not (tmp_path / "run").exists()
    proc = cli("train", *CLI_TINY, "--model", "my_nets:lazy", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: "Attempted to use an uninitialized parameter" in .to()


class TupleNet(TinyNet):
    def forward(self, x):
        return self.head(self.features(x)), None


@pytest.mark.parametrize("model, match", [
    (TinyNet(num_classes=3), r"logits of shape \(batch, 10\) .* returned a torch.float32 tensor of shape \(2, 3\)"),
    (TupleNet(), "returned a tuple"),
    (TinyNet().double(), "fails on a batch of the run's inputs, shape \\(2, 3, 32, 32\\): RuntimeError"),
])
def test_a_module_that_cannot_train_on_the_dataset_is_refused_before_writing(tmp_path, model, match):
    """One forward of two inputs, before the run folder exists: the class count, the output
    type, the dtype the run feeds it; in eval mode, leaving its train mode and statistics alone."""
    model.train()
    with pytest.raises(coreaug.UsageError, match=match):
        coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=model)
    assert not (tmp_path / "run").exists() and model.training


class AuxNet(TinyNet):
    """A second head registered after the classifier: the last nn.Linear, never called."""

    def __init__(self, uses_aux=False):
        super().__init__()
        self.aux = nn.Linear(6, 1)
        self.uses_aux = uses_aux

    def forward(self, x):
        h = self.features(x)
        return (self.head(h) + self.aux(h)) if self.uses_aux else self.head(h)


@pytest.mark.parametrize("uses_aux, match", [(False, "called it 0 times"), (True, r"whose output \(2, 1\)")])
def test_a_last_linear_that_does_not_produce_the_logits_is_refused_naming_gradient_layer(tmp_path, uses_aux, match):
    """It was `IndexError: pop from empty list` in the first selection, after the run folder was written."""
    with pytest.raises(coreaug.UsageError, match=f"'aux' .*{match}.*gradient_layer"):
        coreaug.train(coreaug.TrainConfig(**TINY, strategy="coreset", gradients="last_layer",
                                          out=str(tmp_path / "run")), model=AuxNet(uses_aux))
    assert not (tmp_path / "run").exists()
    model = AuxNet(uses_aux)
    model.gradient_layer = "head"
    coreaug.train(coreaug.TrainConfig(**TINY, strategy="coreset", gradients="last_layer"), model=model)


class DictNet(TinyNet):
    def forward(self, x):
        return {"logits": self.head(self.features(x))}


@pytest.mark.parametrize("model, got", [(TupleNet(), "a tuple"), (DictNet(), "a dict")])
@pytest.mark.parametrize("gradients", ["logits", "last_layer"])
def test_an_own_loop_model_that_returns_more_than_logits_is_the_same_one_line_error_as_in_train(model, got, gradients):
    """It was `AttributeError: 'tuple' object has no attribute 'float'` from inside estimate_gradients."""
    images, labels = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8), torch.arange(40) % 10
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", gradients=gradients)
    with pytest.raises(coreaug.UsageError, match=rf"must return floating logits of shape \(batch, n_classes\); "
                                                 rf"it returned {got} for a batch of 16; wrap it"):
        method.start_epoch(0, model, images, preprocess=lambda b: b.float() / 255, batch_size=16)
    assert method.selection is None


@needs_compile
def test_last_layer_gradients_of_a_compiled_model_are_its_modules():
    """A graph compiled before the selection's forward hook was registered skipped it: "the
    forward called it 0 times; set model.gradient_layer ...", which did not help."""
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8), torch.arange(64) % 10
    model = TinyNet()
    compiled = torch.compile(model, backend="eager")
    compiled.eval()
    with torch.no_grad():  # a validation pass compiles the eval-mode graph of this batch shape
        for start in range(0, 64, 32):
            compiled(images[start:start + 32].float() / 255)
    kwargs = dict(kind="last_layer", transform=lambda b: b.float() / 255, batch_size=32)
    torch.testing.assert_close(coreaug.estimate_gradients(compiled, images, labels, **kwargs),
                               coreaug.estimate_gradients(model, images, labels, **kwargs))


def test_a_module_with_every_parameter_frozen_is_refused_before_writing(tmp_path):
    """Its first backward raised a bare RuntimeError after config.json was written; a partly frozen one trains."""
    with pytest.raises(coreaug.UsageError, match=r"the model passed to train has no trainable parameters"):
        coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=TinyNet().requires_grad_(False))
    assert not (tmp_path / "run").exists()
    model = TinyNet()
    model.features.requires_grad_(False)
    before = model.features[0].weight.detach().clone()
    coreaug.train(coreaug.TrainConfig(**TINY), model=model)
    assert torch.equal(model.features[0].weight, before)


def test_load_run_refuses_a_model_that_is_not_a_module_in_one_line(tmp_path):
    coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")), model=TinyNet())
    with pytest.raises(coreaug.UsageError, match=r"^model must be a torch.nn.Module, got str;"):
        coreaug.load_run(tmp_path / "run", model="TinyNet")
