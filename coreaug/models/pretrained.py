"""Start a model from weights in a local checkpoint file, e.g. a torchvision ResNet's.

Nothing is downloaded: the file is read with ``torch.load(weights_only=True)``, which refuses
pickled code, so only tensors and plain containers can be in it.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Union

import torch
from torch import nn

from coreaug.errors import UsageError
from coreaug.files import saved_by_torch

# How many offending keys an error message names before it says "and N more".
_SHOWN = 3
# Batch norms' step counters: absent from checkpoints saved before PyTorch 0.4.1 (some of
# torchvision's own), and unused unless momentum=None, so a file without them still fits.
_OPTIONAL_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class PretrainedReport:
    """What `load_pretrained` did.

    Attributes:
        path: the checkpoint file.
        loaded: how many tensors (parameters and buffers) were copied into the model.
        classifier_reset: True if the file's classifier had another shape (another number of
            classes) or the file has none (a backbone's weights), so the model kept its freshly
            initialised classifier.
        classifier_absent: True if the file has no classifier.
    """

    path: str
    loaded: int
    classifier_reset: bool
    classifier_absent: bool = False
    prefix: str = ""  # a wrapper's prefix of the file's keys, left out (a LightningModule's "model.")

    def __str__(self) -> str:
        why = "the file has none" if self.classifier_absent else "the file's has another number of classes"
        head = f"; classifier freshly initialised ({why})" if self.classifier_reset else ", its classifier's included"
        left = f" (their prefix {self.prefix!r} left out)" if self.prefix else ""
        return f"loaded {self.loaded} tensors from {self.path}{left}{head}"


def not_torch_saved(path: str):
    """Why the file at `path` is not one torch.save wrote, from its first bytes ("the file is empty", another
    kind of file), or None."""
    if os.path.getsize(path) == 0:
        return "the file is empty"
    if not saved_by_torch(path):
        return "not a file torch.save writes: neither a zip archive nor a pickle"
    return None


def unreadable_checkpoint(path: str, why: str) -> UsageError:
    """The refusal of the --pretrained file `path`, which torch cannot read (`why`)."""
    return UsageError(f"{path} is not a readable torch checkpoint ({why}); save the weights alone with "
                      "torch.save(model.state_dict(), path)")


def why_unreadable(exc: Exception, path: str) -> str:
    """One short line for torch.load's many ways to fail (some messages are a bare number).
    torch says "Weights only load failed" for any file that is not a zip archive too (a PNG, a
    script), so the file's first bytes tell a foreign file from one holding pickled objects."""
    foreign = not_torch_saved(path)
    if foreign:
        return foreign
    if "Weights only load failed" in str(exc):
        found = re.search(r"(?:GLOBAL|Unsupported class) ([\w.]+)", str(exc))  # torch 2.5 and later; 2.3
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled Python objects{what}, which are never unpickled here"
    lines = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0].split('. ')[0][:120]}" if lines else type(exc).__name__
    return f"it is truncated or corrupt: {reason}"


def recorded_normalisation(path: str):
    """The (mean, std) lists that the file at `path` records (a coreaug model.pt's, what its model was
    trained on), or None (a plain state dict; an unreadable file, refused where its weights load)."""
    content = None
    for mmap in (True, False):  # (a file saved in torch's legacy format cannot be mapped)
        try:
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception:  # noqa: BLE001 - load_pretrained says why
            continue
    if not isinstance(content, Mapping):
        return None
    mean, std = content.get("mean"), content.get("std")
    if not (isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)) and mean and len(mean) == len(std)
            and all(isinstance(v, (int, float)) for v in (*mean, *std))):
        return None
    return [float(v) for v in mean], [float(v) for v in std]


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The state dict in ``path``: the file's top level, or its ``"state_dict"`` or ``"model"``
    entry, with a DDP ``"module."`` prefix removed."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained checkpoint {path!r} does not exist or is not a file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle, EOF and weights_only refusals alike
        raise unreadable_checkpoint(path, why_unreadable(exc, path)) from None
    if isinstance(content, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping) or not content or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()):
        raise UsageError(f"{path} does not hold a state dict (a dict of name -> tensor, at the top "
                         "level or under 'state_dict' or 'model'); save one with "
                         "torch.save(model.state_dict(), path)")
    return _unwrapped(dict(content))


def _unwrapped(weights):
    """`weights` without torch.compile's "_orig_mod." and DDP's "module." before every key, in either order."""
    for wrapper in ("_orig_mod.", "module.", "_orig_mod."):
        if all(k.startswith(wrapper) for k in weights):
            weights = {k[len(wrapper):]: v for k, v in weights.items()}
    return weights


def _without_prefix(weights, own):
    """`weights` without the first name all their keys share (a LightningModule's "model."), and that
    name, where the keys then are the model's (the classifier's aside); else `weights` as they are, ""."""
    if all(k in own for k in weights):
        return weights, ""
    first = {k.split(".", 1)[0] for k in weights}
    if len(first) != 1 or not all("." in k for k in weights):
        return weights, ""
    prefix = first.pop() + "."
    stripped = {k[len(prefix):]: v for k, v in weights.items()}
    if not all(k in own for k in stripped):  # a LightningModule's compiled model: "model._orig_mod."
        stripped = _unwrapped(stripped)
    return (stripped, prefix) if all(k in own for k in stripped) else (weights, "")


def _classifier_keys(model: nn.Module) -> List[str]:
    """State-dict keys of the model's classifier: the ``nn.Linear`` that ``model.gradient_layer`` names
    (a submodule name, or the layer), as last-layer gradients take it, else its last ``nn.Linear``
    (a projection or auxiliary head registered after the classifier needs the name)."""
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    named = getattr(model, "gradient_layer", None)
    chosen = [module for name, module in linears if (name == named if isinstance(named, str) else module is named)]
    if named is not None and not chosen:  # a typo would fall back to another layer, said nowhere
        raise UsageError(f"model.gradient_layer is {named if isinstance(named, str) else type(named).__name__!r}, "
                         f"which is no nn.Linear of {type(model).__name__}; name the classifier (a submodule name, "
                         "or the layer)")
    if not linears:
        return []
    layer = chosen[0] if chosen else linears[-1][1]
    own = [id(parameter) for parameter in layer.parameters()]
    # every name of its parameters: a layer also kept as `model.gradient_layer = self.fc` is saved under both
    return [key for key, parameter in model.named_parameters(remove_duplicate=False) if id(parameter) in own]


# torchvision's ResNets by (blocks per stage, bottleneck blocks, layer1's first width): coreaug's names for them.
_TORCHVISION_RESNETS = {((2, 2, 2, 2), False, 64): "resnet18_imagenet", ((3, 4, 6, 3), False, 64): "resnet34",
                        ((3, 4, 6, 3), True, 64): "resnet50", ((3, 4, 23, 3), True, 64): "resnet101",
                        ((3, 4, 6, 3), True, 128): "wide_resnet50_2"}


def _torchvision_resnet(weights: Mapping[str, torch.Tensor]) -> Union[str, None]:
    """coreaug's name of the model whose layout the torchvision ResNet state dict `weights` has
    (resnet18's is resnet18_imagenet: coreaug's resnet18 has a CIFAR stem), or None."""
    if "conv1.weight" not in weights or "layer1.0.conv1.weight" not in weights:
        return None
    blocks = tuple(len({k.split(".")[1] for k in weights if k.startswith(f"layer{stage}.")}) for stage in range(1, 5))
    shape = (blocks, "layer1.0.conv3.weight" in weights, weights["layer1.0.conv1.weight"].shape[0])
    return _TORCHVISION_RESNETS.get(shape)


def _listed(keys: List[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_pretrained(model: nn.Module, path: Union[str, os.PathLike]) -> PretrainedReport:
    """Copy the weights in the local file ``path`` into ``model``, in place.

    Args:
        model: e.g. ``create_model("resnet50", num_classes=10)``.
        path: a file written by ``torch.save``: a state dict, or a dict holding one under
            ``"state_dict"`` or ``"model"`` (as training scripts save them). Keys may carry the
            ``"module."`` prefix of a DistributedDataParallel model, torch.compile's ``"_orig_mod."``,
            or a wrapper's name that every key shares (a LightningModule's ``"model."``).

    Every key and shape must match the model's, except the classifier (the ``nn.Linear`` that
    ``model.gradient_layer`` names, else the last one: ``fc`` in the ResNets): if its shapes
    differ, i.e. the file was trained on another number of classes, or the file has none of its
    keys (a backbone's weights), the model keeps its own freshly initialised classifier and loads
    everything else.

    Returns:
        A `PretrainedReport`; ``str(report)`` is one line for a log.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UsageError: the file is not a torch checkpoint, holds no state dict, or its keys or
            shapes do not fit the model (the message names the first few and the file).
    """
    path = os.fspath(path)
    own = model.state_dict()
    weights, prefix = _without_prefix(_read_state_dict(path), own)
    classifier = _classifier_keys(model)
    absent = bool(classifier) and not any(k in weights for k in classifier)
    classifier_reset = absent or bool(classifier) and all(k in weights for k in classifier) and any(
        weights[k].shape != own[k].shape for k in classifier)
    if classifier_reset:
        weights = {k: v for k, v in weights.items() if k not in classifier}
    missing = [k for k in own if k not in weights and not k.endswith(_OPTIONAL_SUFFIX)
               and not (classifier_reset and k in classifier)]
    unexpected = [k for k in weights if k not in own]
    mismatched = [f"{k} {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
                  for k, v in weights.items() if k in own and v.shape != own[k].shape]
    problems = [f"{label}: {_listed(keys)}" for label, keys in (
        ("missing from the file", missing), ("not in the model", unexpected),
        ("shape mismatch", mismatched)) if keys]
    if problems:
        name = _torchvision_resnet(weights) if missing or unexpected else None  # another layout, not a shape
        head = _other_classifier(model, weights, own) if not (missing or unexpected) else None
        advice = (f"it holds a torchvision ResNet's weights: build the model as {name} (--model {name})" if name
                  else f"its classifier, of another number of classes, is {head!r}, not the model's last nn.Linear: "
                       f"name it, model.gradient_layer = {head!r}" if head
                  else "build the model the checkpoint was saved from (same name and in_channels)")
        raise UsageError(f"{path} does not fit {type(model).__name__} ({'; '.join(problems)}); {advice}")
    model.load_state_dict(weights, strict=False)
    return PretrainedReport(path, len(weights), classifier_reset, absent, prefix)


def _other_classifier(model, weights, own):
    """The name of the one nn.Linear whose weight and bias alone differ in their first dimension (its
    outputs: another number of classes) where the shapes mismatch, or None."""
    differ = {k for k, v in weights.items() if k in own and v.shape != own[k].shape}
    layers = {k.rsplit(".", 1)[0] for k in differ}
    if len(layers) != 1:
        return None
    name = layers.pop()
    layer = dict(model.named_modules()).get(name)
    if not isinstance(layer, nn.Linear) or differ - {f"{name}.weight", f"{name}.bias"}:
        return None
    return name if weights[f"{name}.weight"].shape[1:] == own[f"{name}.weight"].shape[1:] else None
