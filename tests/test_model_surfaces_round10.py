"""What the model surfaces say about a model they cannot use: `register_model`, the max-loss policy's
model, and the selection's gradient estimates."""
import pytest
import torch
from torch import nn

import coreaug
from coreaug.errors import UsageError
from coreaug.models import create_model, register_model, registry
from coreaug.selection.gradients import estimate_gradients


def test_register_model_refuses_unusable_names_and_factories_at_registration(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # the name registered here goes with the test

    def two(in_channels, num_classes):
        return nn.Linear(in_channels, num_classes)

    with pytest.raises(UsageError, match=r"takes the name first: @register_model\(\"mynet\"\)"):
        register_model(two)
    for name in (None, 3, "", "  ", "mine:net"):
        with pytest.raises(UsageError, match="non-empty name without ':'"):
            register_model(name)
    with pytest.raises(UsageError, match="must decorate a function .* got a int"):
        register_model("round10_not_callable")(42)
    with pytest.raises(UsageError, match="must take two arguments, in_channels and num_classes"):
        register_model("round10_three")(lambda c, n, w: nn.Linear(c, n))
    assert not {"", "mine:net", "round10_not_callable", "round10_three"} & set(coreaug.models.available_models())
    register_model("round10_two")(two)
    assert isinstance(create_model("round10_two", 4, 3), nn.Linear)


class Outputs(nn.Module):
    """A linear model over the flattened image that returns its logits in the form `kind` says."""

    def __init__(self, kind, classes=10):
        super().__init__()
        self.kind, self.linear = kind, nn.Linear(64, classes)

    def forward(self, x):
        z = self.linear(x.flatten(1))
        return {"tuple": lambda: (z, z), "dict": lambda: {"logits": z}, "extra_dim": lambda: z[:, :, None, None],
                "integer": lambda: z.round().long(), "logits": lambda: z}[self.kind]()


@pytest.mark.parametrize("model, message", [
    (Outputs("tuple"), r"returned a tuple .*wrap it in a module whose forward returns the logits alone"),
    (Outputs("dict"), r"returned a dict .*wrap it in a module"),
    (Outputs("extra_dim"), r"\(batch, n_classes\); it returned a torch.float32 tensor of shape \(128, 10, 1, 1\)"),
    (Outputs("integer"), r"floating logits .* it returned a torch.int64 tensor of shape \(128, 10\)"),
    (Outputs("logits", classes=7), r"labels must be < n_classes=7 \(the model's outputs\), got 9"),
])
def test_maxloss_policy_says_in_one_line_what_the_models_outputs_lack(model, message):
    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(32) % 10
    policy = coreaug.create_policy("maxloss")
    with pytest.raises(UsageError, match=message) as info:
        policy(images, coreaug.RandomSource(torch.arange(32)), model=model, labels=labels)
    assert "\n" not in str(info.value)
    out = policy(images, coreaug.RandomSource(torch.arange(32)), model=Outputs("logits"), labels=labels)
    assert out.shape == images.shape


class Flaky(nn.Module):
    """Logits of 10 classes for the first batch, of `later_width` after; NaN for example `nan_at`
    (counted over the batches it is given) when set."""

    def __init__(self, later_width=10, nan_at=None):
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.later = self.linear if later_width == 10 else nn.Linear(64, later_width)
        self.nan_at, self.seen = nan_at, 0

    def forward(self, x):
        z = (self.linear if self.seen == 0 else self.later)(x.flatten(1))
        if self.nan_at is not None and self.seen <= self.nan_at < self.seen + len(x):
            z = z.clone()
            z[self.nan_at - self.seen, 0] = float("nan")
        self.seen += len(x)
        return z


def test_gradient_estimates_name_a_changing_logit_width_and_non_finite_logits():
    images, labels = torch.rand(24, 1, 8, 8), torch.arange(24) % 10
    with pytest.raises(UsageError, match="returned 11 logits per example for the batch from example 8, but 10 for "
                                         "the first batch"):
        estimate_gradients(Flaky(later_width=11), images, labels, batch_size=8, device="cpu")
    for kind in ("logits", "last_layer"):
        with pytest.raises(UsageError, match=r"the model's outputs on example 13 \(of 24\) are NaN or inf") as info:
            estimate_gradients(Flaky(nan_at=13), images, labels, batch_size=8, kind=kind, device="cpu",
                               with_losses=True)
        assert "features" not in str(info.value).split(":")[0] and "drop those" not in str(info.value)
    estimates, losses = estimate_gradients(Flaky(), images, labels, batch_size=8, device="cpu", with_losses=True)
    assert estimates.shape == (24, 10) and torch.isfinite(losses).all()


def test_compile_names_a_model_the_step_cannot_take_instead_of_blaming_its_code():
    from torch._dynamo import exc

    from coreaug.training.compiled_step import untraceable_code

    raised = ((AttributeError("Mlp has no attribute `_orig_mod`"), "compiled already (torch.compile(module))"),
              (RuntimeError("The stateless API can't be used with nn.DataParallel module"), "it is an nn.DataParallel"),
              (RuntimeError("torch.func.{grad, vjp, jacrev, hessian} don't yet support saved tensor hooks. Please "
                            "open an issue"), "activation checkpointing"))
    for inner, says in raised:  # torch's errors (CPU, torch 2.13) under dynamo's, for the three kinds of model
        try:
            try:
                raise inner
            except Exception as cause:
                raise exc.Unsupported("Observed exception") from cause
        except exc.Unsupported as error:
            usage = untraceable_code(error)
        assert isinstance(usage, UsageError) and says in str(usage) and "rewrite" not in str(usage)
    assert untraceable_code(RuntimeError("CUDA out of memory")) is None
