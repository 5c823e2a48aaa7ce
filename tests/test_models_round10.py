"""Users' own models through every surface: one-channel `.view` models, registered names, wrappers, load_run."""
import pytest
import torch.nn.functional as F
from torch import nn

import coreaug
from coreaug.errors import UsageError
from coreaug.models import registry

DIGITS = dict(dataset="digits", train_limit=32, test_limit=16, batch_size=16, epochs=1, quiet=True)


class ViewNet(nn.Module):
    """The PyTorch tutorial's pattern: a `.view` of the convolution's features."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(in_channels, 4, 3, padding=1), nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 2).view(len(x), -1))


class TupleOut(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)), x


def test_a_one_channel_view_model_is_fed_contiguous_inputs_given_or_registered(tmp_path, monkeypatch):
    result = coreaug.train(coreaug.TrainConfig(**DIGITS, out=str(tmp_path / "given")), model=ViewNet())
    assert result.model.conv.weight.is_contiguous() and result.history[-1]["test_accuracy"] is not None
    assert coreaug.load_run(tmp_path / "given", model=ViewNet()).evaluate().total > 0  # fed contiguous too
    monkeypatch.setitem(registry._MODELS, "r10-view", ViewNet)  # as register_model("r10-view") does
    coreaug.train(coreaug.TrainConfig(**DIGITS, model="r10-view", strategy="coreset", subset=0.5))


@pytest.mark.parametrize("factory, match", [
    (TupleOut, "must return floating logits"),
    (lambda c, k: nn.Sequential(nn.Flatten(), nn.Linear(c * 64, 100)), "must return floating logits"),  # 100 > 10
    (lambda c, k: ViewNet(c, k).requires_grad_(False), "no trainable parameters"),
    (lambda c, k: "not a module", "returned a str, not an nn.Module"),
])
def test_a_registered_model_gets_the_checks_of_an_import_path_before_anything_is_written(tmp_path, monkeypatch,
                                                                                         factory, match):
    monkeypatch.setitem(registry._MODELS, "r10-bad", factory)
    with pytest.raises(UsageError, match=match):
        coreaug.train(coreaug.TrainConfig(**DIGITS, model="r10-bad", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


class Mlp(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, features=False):
        super().__init__()
        self.fc, self.features = nn.Linear(in_channels * 64, num_classes), features

    def forward(self, x):  # a flag that makes it return its features too: a common pattern
        return (self.fc(x.flatten(1)), x) if self.features else self.fc(x.flatten(1))


def test_a_data_parallel_wrapper_is_refused_like_the_compile_wrapper(tmp_path):
    with pytest.raises(UsageError, match=r"DataParallel wrapper; pass the module itself \(Mlp\)"):
        coreaug.train(coreaug.TrainConfig(**DIGITS, out=str(tmp_path / "run")), model=nn.DataParallel(Mlp()))
    assert not (tmp_path / "run").exists()


def test_load_run_checks_the_module_it_is_given_in_one_line(tmp_path):
    coreaug.train(coreaug.TrainConfig(**DIGITS, out=str(tmp_path / "run")), model=Mlp())
    with pytest.raises(UsageError, match=r"must return floating logits of shape \(batch, 10\).*returned a tuple"):
        coreaug.load_run(tmp_path / "run", model=Mlp(features=True))
