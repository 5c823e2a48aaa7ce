"""Per-example gradient estimates, the features that coresets are selected on.

The paper (after CRAIG) uses the gradient of the cross-entropy loss with respect to
the network's output, softmax(z) - onehot(y), or its product with the last layer's
input (the exact gradient of the final linear layer's weights), computed on clean
images in eval mode.
"""
import math
import numbers
import re
import sys

import numpy as np
import torch
from torch import nn

from coreaug.data.images import Images, as_images, device_batches, kept_random_states
from coreaug.devices import api_device
from coreaug.errors import UsageError, first_line
from coreaug.progress import progress_bar

from .checks import GRADIENT_KINDS, check_choice, check_int, check_labels, check_positive_int


def _as_tensor(array, name):
    if isinstance(array, torch.Tensor):
        return array.detach()
    try:
        return torch.as_tensor(np.asarray(array))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{name} must be an array or tensor: {exc}") from None


def _check_logits(logits, labels):
    z = _as_tensor(logits, "logits")
    if z.ndim != 2 or z.shape[1] < 2:
        raise UsageError(f"logits must be 2-D (n_examples, n_classes) with n_classes >= 2, got shape {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise UsageError(f"logits must hold at least one example, got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise UsageError(f"logits must be floating point, got {z.dtype}")
    if not torch.isfinite(z).all():
        raise UsageError("logits must be finite, got NaN or inf")
    y = torch.as_tensor(check_labels(labels, n=z.shape[0]), device=z.device)
    if int(y.max()) >= z.shape[1]:
        raise UsageError(f"labels must be < n_classes={z.shape[1]} (the logits' width), got {int(y.max())}")
    return z, y


def check_model_logits(out, batch, what="the model", classes=None):
    """`out`, what a model (`what`, for the message) returned for a batch of `batch` inputs, if it
    is floating logits (batch, classes) (any width with `classes` None); else a UsageError that
    says what it returned. One rule for `coreaug.train`'s model check and the selection's passes."""
    width = classes if classes is not None else "n_classes"
    if isinstance(out, torch.Tensor) and out.is_floating_point() and out.ndim == 2 and len(out) == batch \
            and (classes is None or out.shape[1] == classes):
        return out
    if isinstance(out, torch.Tensor):
        got = f"a {out.dtype} tensor of shape {tuple(out.shape)}"
    else:
        got = f"a {type(out).__name__}"
    advice = ("; wrap it in a module whose forward returns the logits alone (a model returning (logits, features) "
              "or a dict is not one)") if isinstance(out, (tuple, list, dict)) else ""
    classes_of = f" for the dataset's {classes} classes" if classes is not None else ""
    raise UsageError(f"{what} must return floating logits of shape (batch, {width}){classes_of}; "
                     f"it returned {got} for a batch of {batch}{advice}")


# torch's words for an input of a dtype a layer cannot take (conv, linear, batch norm, embedding)
DTYPE_ERROR = re.compile(r"dtype|scalar type|should be the same|not implemented for '|Tensor instead")


def model_on(model, inputs):
    """``model(inputs)``; where the model cannot take the inputs' dtype (uint8 images given without
    a ``preprocess=``/``transform=``, float64 ones, numpy's default, for a float32 model, or token
    ids of a dtype its embedding refuses), a UsageError saying so: torch's own error names only
    dtypes; so for a convolution's error on channels-last images (B, H, W, C). Any other error (a
    shape mistake in the model's forward) comes through as it is."""
    try:
        return model(inputs)
    except RuntimeError as exc:
        last = isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.shape[-1] in (1, 3) \
            and inputs.shape[1] not in (1, 3)  # (B, H, W, C) images
        if last and "channels" in str(exc):  # a convolution's error
            scaled = "" if inputs.is_floating_point() else ".float() / 255"
            raise UsageError(f"the model cannot take inputs of shape {tuple(inputs.shape)} ({first_line(exc)}): "
                             "channels last, as numpy and PIL give images? permute them in preprocess= "
                             f"(estimate_gradients: transform=): x.permute(0, 3, 1, 2){scaled}") from exc
        if not isinstance(inputs, torch.Tensor) or not DTYPE_ERROR.search(str(exc)):
            raise
        if "'indices'" in str(exc):  # an nn.Embedding's: token ids (x.float() / 255 would fail there again)
            example = "lambda x: x.long() (token ids)"
        elif not inputs.is_floating_point():
            example = f"lambda x: x{'.permute(0, 3, 1, 2)' if last else ''}.float() / 255"
        elif any(p.is_floating_point() and p.dtype != inputs.dtype for p in model.parameters()):
            held = next(p.dtype for p in model.parameters() if p.is_floating_point())
            example = f"lambda x: x.to({held})"
        else:
            raise
        raise UsageError(f"the model cannot take the {str(inputs.dtype).replace('torch.', '')} inputs it was given "
                         f"({first_line(exc)}); pass preprocess= (estimate_gradients: transform=) to turn them into "
                         f"its input, e.g. {example}") from exc


def _check_items(images):
    """UsageError when `images`, a dataset (not a tensor, array or `Images`), gives items a
    DataLoader cannot batch into images: dicts (Hugging Face style), PIL images (no ToTensor)."""
    if isinstance(images, (torch.Tensor, np.ndarray, Images)) or len(images) == 0:
        return
    with kept_random_states():  # a random transform of the dataset's draws none of the caller's numbers
        item = images[0]
    image = item[0] if isinstance(item, (tuple, list)) and item else item
    if isinstance(image, (torch.Tensor, np.ndarray)):
        return
    if isinstance(item, dict):
        raise UsageError(f"images, a dataset, must give (image, label) pairs, but item 0 is a dict with keys "
                         f"{', '.join(map(repr, item))}; wrap it, e.g. a dataset whose __getitem__ returns "
                         "(item['image'], item['label']) as tensors")
    raise UsageError(f"images, a dataset, must give (image, label) pairs with the image a tensor, but item 0's "
                     f"image is of type {type(image).__name__}; give it the evaluation transform (e.g. "
                     "torchvision's T.ToTensor())")


def check_module(model, name="model"):
    """UsageError unless `model` is a torch.nn.Module (or, like the trainer's compiled scoring, offers
    its `modules()` and `eval()`): scoring switches its modules to eval mode and back."""
    if not (isinstance(model, nn.Module) or hasattr(model, "modules") and hasattr(model, "eval")):
        raise UsageError(f"{name} must be a torch.nn.Module (run in eval mode, then each submodule's mode "
                         f"restored), got a {type(model).__name__}; wrap it in one, a module whose forward calls it")


def eval_modes(model):
    """Switch `model` (a `check_module` one) to eval mode; returns each of its modules' train/eval
    flag, which `restore_modes` gives back. Each its own: `model.train(was_training)` would give
    every submodule the root's, training again a BatchNorm frozen in eval mode (fine-tuning) or
    stopping the dropout an eval model keeps on. Python only: no tensor op, no device sync."""
    modes = saved_modes(model)
    model.eval()
    return modes


def saved_modes(model):
    """Each of `model`'s modules with its train/eval flag, as `restore_modes` gives them back."""
    return [(module, module.training) for module in model.modules()]


def restore_modes(modes):
    """Give each module back the train/eval flag `eval_modes` saved."""
    for module, training in modes:
        module.training = training


def _gradients(z, y):
    # softmax in float32 (bf16 logits collapse confident examples onto one point), then minus
    # one at each label, without the (n, c) one-hot (10 GB of int64 at ImageNet's n and c).
    g = torch.softmax(z.float(), dim=1)
    return g.scatter_add_(1, y.view(-1, 1), g.new_full((len(y), 1), -1.0))


def logit_gradients(logits, labels):
    """softmax(logits) - onehot(labels): the cross-entropy gradient w.r.t. the logits.

    Takes logits (n, c) and integer labels (n,), as torch tensors (any device) or numpy
    arrays. Returns float32 (n, c) of the same kind (a tensor on the logits' device, or
    a numpy array).
    """
    z, y = _check_logits(logits, labels)
    g = _gradients(z, y)
    return g if isinstance(logits, torch.Tensor) else g.numpy()


class GradientSketch:
    """A seeded random projection of per-example gradients to at most `dim` numbers.

    For logit gradients g (n, c): g @ R with R Gaussian (c, dim) / sqrt(dim), or g itself
    when c <= dim. For last-layer gradients g ⊗ h (c * e numbers, 2 million for ResNet-50 on
    ImageNet): the Kronecker-structured projection (g @ Rc) ⊗ (h @ Re), which is the product
    of (c * e, dc * de) Gaussian (Rc ⊗ Re) with g ⊗ h without ever forming either, with
    dc = min(c, ceil(sqrt(dim))) and de = min(e, dim // dc) (a side not cut keeps its
    identity). Inner products, and so distances, are kept in expectation (Johnson-
    Lindenstrauss); the projection needs (c * dc + e * de) numbers instead of c * e * dim.
    `dim` None keeps everything.
    """

    def __init__(self, classes, embedding=None, dim=None, seed=0):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise UsageError(f"seed must be an integer, got {seed!r}")
        generator = torch.Generator().manual_seed(int(seed) % 2 ** 64)  # any integer (the own loop takes any)
        self.class_side = self.embedding_side = None
        if embedding is None:
            if dim is not None and dim < classes:
                self.class_side = torch.randn(classes, dim, generator=generator) / dim ** 0.5
            return
        if dim is not None and dim < classes * embedding:
            dc = min(classes, math.ceil(dim ** 0.5))
            de = min(embedding, max(1, dim // dc))
            if dc < classes:
                self.class_side = torch.randn(classes, dc, generator=generator) / dc ** 0.5
            if de < embedding:
                self.embedding_side = torch.randn(embedding, de, generator=generator) / de ** 0.5

    def __call__(self, g, h=None):
        """Projected rows of a batch: g (b, c) logit gradients, h (b, e) last-layer inputs or None."""
        if self.class_side is not None:
            self.class_side = self.class_side.to(g.device)
            g = g @ self.class_side
        if h is None:
            return g
        if self.embedding_side is not None:
            self.embedding_side = self.embedding_side.to(h.device)
            h = h @ self.embedding_side
        return (g[:, :, None] * h[:, None, :]).reshape(len(g), -1)


def last_layer_gradients(logits, embeddings, labels, *, dim=None, seed=0, chunk=4096):
    """(softmax - onehot) ⊗ h: the gradient of the final linear layer's weights per example.

    Takes logits (n, c), the final layer's inputs `embeddings` (n, e) and labels (n,).
    Returns float32 (n, c * e), or, with `dim`, its seeded random projection to at most `dim`
    numbers (`GradientSketch`), computed in chunks of `chunk` rows so the (n, c * e) matrix is
    never held whole. Same kind as `logits`. Logits and embeddings must be finite.
    """
    z, y = _check_logits(logits, labels)
    h = _as_tensor(embeddings, "embeddings").to(z.device).float()
    if h.ndim != 2 or h.shape[0] != z.shape[0]:
        raise UsageError(f"embeddings must be 2-D (n_examples, n_dims) with {z.shape[0]} rows "
                         f"like the logits, got shape {tuple(h.shape)}")
    if not torch.isfinite(h).all():
        raise UsageError("embeddings must be finite (in float32), got NaN, inf or values beyond float32's range; "
                         "check the model's outputs or drop those examples")
    if dim is not None:
        dim = check_positive_int(dim, "dim")
    chunk = check_positive_int(chunk, "chunk")
    g = _gradients(z, y)
    sketch = GradientSketch(g.shape[1], h.shape[1], dim, seed)
    out = torch.cat([sketch(g[s:s + chunk], h[s:s + chunk]) for s in range(0, len(g), chunk)])
    return out if isinstance(logits, torch.Tensor) else out.cpu().numpy()


def estimate_dtype(n, width):
    """float16 for estimates over 1 GiB in float32 (ImageNet's), else float32: what the
    selection needs (distances between nearby gradients) survives half precision."""
    return torch.float16 if n * width * 4 > 2 ** 30 else torch.float32


def uncompiled(model):
    """The module that `torch.compile(module)` wrapped (else `model` itself): forward hooks
    registered after a graph was compiled do not run in it, and its submodules' names gain
    "_orig_mod.". Nothing is compiled before dynamo is loaded, and its import (seconds) is left
    to those who compile."""
    if "torch._dynamo" in sys.modules and isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        return model._orig_mod
    return model


def final_linear(model):
    """The layer whose gradient is estimated: the one `model.gradient_layer` names (a submodule
    name such as "head", or the `nn.Linear` itself) when the model names one, else the last
    `nn.Linear` registered in `model` (a compiled model's: `uncompiled`)."""
    model = uncompiled(model)
    named = getattr(model, "gradient_layer", None)
    if isinstance(named, str):
        try:
            named = model.get_submodule(named)
        except AttributeError:
            raise UsageError(f"model.gradient_layer names {named!r}, which is not a submodule of "
                             f"{type(model).__name__}") from None
    if named is not None:
        if not isinstance(named, nn.Linear):
            raise UsageError(f"model.gradient_layer must be the nn.Linear that produces the logits, "
                             f"got {type(named).__name__}")
        return named
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UsageError(f"model must end with an nn.Linear layer to estimate last-layer gradients; "
                         f"{type(model).__name__} has none")
    return linears[-1]


def _captured_input(captured, layer, model, logits):
    """The input of the gradient layer `layer` in the forward that gave `logits`, as float (n, e);
    UsageError when that layer did not produce the logits (not called, or another head's)."""
    name = next((n for n, m in model.named_modules() if m is layer), "?")
    fix = ("set model.gradient_layer to the name of the nn.Linear that produces the logits "
           "(e.g. model.gradient_layer = \"head\")")
    if len(captured) != 1:
        raise UsageError(f"last-layer gradients read the input of {name!r} (model.gradient_layer, else the last "
                         f"nn.Linear registered in {type(model).__name__}), but the forward called it "
                         f"{len(captured)} times; {fix}")
    h, shape = captured.pop()
    if tuple(shape) != tuple(logits.shape):
        raise UsageError(f"last-layer gradients read the input of {name!r} (model.gradient_layer, else the last "
                         f"nn.Linear registered), whose output {tuple(shape)} is not the logits "
                         f"{tuple(logits.shape)}; {fix}")
    return h.float().flatten(1)


OWN_LABELS = ("pass the dataset in the order of the labels, or, to score other targets than its own (pseudo-labels), "
              "a dataset of the images alone")


def estimate_gradients(model, images, labels, *, kind="logits", batch_size=512, device=None,
                       transform=None, dim=None, seed=0, num_workers=0, dtype=None, with_losses=False,
                       progress=None, losses_only=False):
    """Per-example gradient estimates of a model on clean images, as the paper selects on.

    Runs `model`, a torch.nn.Module, in eval mode under no_grad over `images` in batches of
    `batch_size` on `device` (default: the model's; a model without parameters needs it), after
    `transform` (e.g. uint8 -> normalised float) if given, and gives each of its submodules back
    its own train/eval mode (a BatchNorm frozen in eval mode stays so). `images`
    is a tensor or array, an `Images` (coreaug.data.images; `DiskImages` are read ahead from
    disk), or a map-style dataset of images or (image, label) pairs read in order by a DataLoader
    with `num_workers` workers (pass a DataLoader's `.dataset`); a pair's label must be `labels`'
    (a UsageError names the first that is not: a dataset in another order), so for other targets
    (pseudo-labels) give a dataset of the images alone. The model needs two logits or more
    (a one-logit binary model's estimates would all be 0). `kind="logits"` gives
    softmax - onehot (n, c); `"last_layer"` gives (softmax - onehot) ⊗ h (n, c * e) where
    h is the input of the model's final nn.Linear, taken with a forward hook. With `dim`,
    either is projected to at most `dim` numbers per example (`GradientSketch`), batch by
    batch, so memory holds only the (n, dim) result; the projection runs in float32 even
    under an autocast, its random matrix drawn from `seed` (an integer >= 0). A compiled
    model (`torch.compile(module)`) gives last-layer gradients through its module, uncompiled
    (`uncompiled`). Returns a tensor on the CPU of `dtype`, a floating torch dtype (default
    `estimate_dtype`: float32, or float16 past 1 GiB); with `with_losses`, also the
    float32 (n,) cross-entropy of each example, from the float32 logits before any projection:
    `(estimates, losses)`. A model that returns more than the logits is a UsageError. `progress`: a
    callable given the number of examples of each batch once scored (a progress bar's `update`),
    True for a bar of its own on stderr, or None/False for none. `losses_only` (with `with_losses`)
    skips the estimates, for a rule that reads the losses alone: `(None, losses)`, without the
    (n, c) gradients, their projection or the (n, dim) result (twice the time at 20,000 classes).
    """
    if isinstance(progress, bool):  # as load_dataset(progress=) takes it
        if progress:
            with progress_bar(len(labels), "scoring", "images") as bar:
                return estimate_gradients(model, images, labels, kind=kind, batch_size=batch_size, device=device,
                                          transform=transform, dim=dim, seed=seed, num_workers=num_workers,
                                          dtype=dtype, with_losses=with_losses, progress=bar.update,
                                          losses_only=losses_only)
        progress = None
    if progress is not None and not callable(progress):
        raise UsageError(f"progress must be True (a bar), False or None, or a callable given each batch's count of "
                         f"scored examples (a bar's update), got {progress!r}")
    check_choice(kind, "kind", GRADIENT_KINDS)
    if losses_only and not with_losses:
        raise UsageError("losses_only=True returns the losses alone: pass with_losses=True too")
    if losses_only:
        kind = "logits"  # (no hook on the last layer: nothing reads its input)
    batch_size = check_positive_int(batch_size, "batch_size")
    if dim is not None:
        dim = check_positive_int(dim, "dim")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise UsageError(f"dtype must be a floating torch dtype such as torch.float32 or torch.float16 (or None), "
                         f"got {dtype!r}")
    if transform is not None and not callable(transform):
        raise UsageError(f"transform must be a function of a batch (uint8 -> normalised float, say) or None, "
                         f"got {transform!r}")
    check_int(seed, "seed", 0)
    num_workers = check_int(num_workers, "num_workers", 0, optional=True) or 0
    check_module(model)
    labels = torch.as_tensor(check_labels(labels))
    if isinstance(images, (torch.utils.data.DataLoader, torch.utils.data.IterableDataset)) or \
            not hasattr(images, "__len__"):  # (a generator, an iterator: read once, of no known length)
        fix = ("pass its dataset (loader.dataset): estimate_gradients batches it itself, in order "
               "(batch_size=, num_workers=)") if isinstance(images, torch.utils.data.DataLoader) else \
            "pass a map-style dataset (one with __len__ and __getitem__), a tensor or an array"
        raise UsageError(f"images must be the examples in the labels' order, got a {type(images).__name__}; {fix}")
    if len(images) != len(labels):
        raise UsageError(f"images has {len(images)} examples but labels has {len(labels)}; they must match")
    _check_items(images)
    if device is None:
        held = next(model.parameters(), None)
        if held is None:
            raise UsageError(f"device must be given for a model without parameters ({type(model).__name__} has "
                             "none to take the device from): pass device='cpu' or device='cuda'")
        device = held.device
    device = api_device(device)
    images = as_images(images, num_workers, labels=labels, advice=OWN_LABELS)  # a dataset's own labels checked
    captured = []
    hook = None
    if kind == "last_layer":  # read by a hook, which a compiled model's graph may skip: score with its module
        model = uncompiled(model)
        layer = final_linear(model)
        hook = layer.register_forward_hook(lambda m, inp, out: captured.append((inp[0].detach(), out.shape)))
    modes = eval_modes(model)
    out, sketch, start, top, width = None, None, 0, int(labels.max()), None
    losses = torch.empty(len(labels), dtype=torch.float32)
    try:
        with torch.no_grad():
            for batch in device_batches(images, batch_size, device):
                logits = check_model_logits(model_on(model, transform(batch) if transform is not None else batch),
                                            len(batch)).float()
                if start == 0 and logits.shape[1] < 2:  # softmax of one logit is 1: every estimate would be 0
                    raise UsageError(f"logits must be 2-D (n_examples, n_classes) with n_classes >= 2, got shape "
                                     f"{tuple(logits.shape)} from the model; give a binary model two logits "
                                     "(one per class)")
                if start == 0 and top >= logits.shape[1]:
                    raise UsageError(f"labels must be < n_classes={logits.shape[1]} (the model's outputs), got {top}")
                if start > 0 and logits.shape[1] != width:
                    raise UsageError(f"the model returned {logits.shape[1]} logits per example for the batch from "
                                     f"example {start}, but {width} for the first batch; it must return the same "
                                     "number (one per class) for every batch")
                width = logits.shape[1]
                y = labels[start:start + len(logits)].to(device, non_blocking=True)
                if with_losses:  # from the float32 logits (log-softmax): exact even where p_y underflows
                    losses[start:start + len(logits)] = torch.nn.functional.cross_entropy(
                        logits, y, reduction="none").cpu()
                if losses_only:
                    start += len(logits)
                    if progress is not None:
                        progress(len(logits))
                    continue
                g = _gradients(logits, y)
                h = _captured_input(captured, layer, model, logits) if hook is not None else None
                if sketch is None:
                    sketch = GradientSketch(g.shape[1], None if h is None else h.shape[1], dim, seed)
                with torch.autocast(device.type, enabled=False):  # fp16 would quantise the fp32 gradients
                    rows = sketch(g, h)
                if out is None:
                    out = torch.empty((len(labels), rows.shape[1]), dtype=dtype or estimate_dtype(len(labels), rows.shape[1]))
                out[start:start + len(rows)] = rows.to(out.dtype).cpu()
                start += len(rows)
                if progress is not None:
                    progress(len(rows))
    finally:
        restore_modes(modes)
        if hook is not None:
            hook.remove()
    _check_finite(out, losses if with_losses else None)
    return (out, losses) if with_losses else out


def _check_finite(estimates, losses):
    """UsageError naming the first example whose estimates (or loss) are NaN or inf, blamed on
    the model: the selection would otherwise report them as bad "features" of the user's data.
    Both are on the CPU: no device sync. Checked 16,384 rows at a time: isfinite of the whole
    (N, D) estimates at once made temporaries of 2.5 times their size (1.5 GB more at 600,000
    float16 rows of 512)."""
    first, rows = None, 16384
    for start in range(0, len(estimates if estimates is not None else losses), rows):
        bad = ~torch.isfinite(losses[start:start + rows]) if losses is not None else False
        if estimates is not None:
            bad = bad | ~torch.isfinite(estimates[start:start + rows]).all(dim=1)
        if bad.any():
            first = start + int(bad.nonzero()[0])
            break
    if first is not None:
        beyond = f", or gradient estimates beyond {estimates.dtype}'s range" if estimates is not None else ""
        raise UsageError(f"the model's outputs on example {first} (of {len(losses if estimates is None else estimates)}) "
                         f"are NaN or inf: its logits, or the input of its final nn.Linear{beyond}; "
                         "check the model's forward and weights (a training diverged by too high a learning rate "
                         "gives NaN)")
