"""Per-example gradient estimates, the features that coresets are selected on.

The paper (after CRAIG) uses the gradient of the cross-entropy loss with respect to
the network's output, softmax(z) - onehot(y), or its product with the last layer's
input (the exact gradient of the final linear layer's weights), computed on clean
images in eval mode.
"""
import numpy as np
import torch
from torch import nn

from .checks import check_labels, check_positive_int

KINDS = ("logits", "last_layer")


def _as_tensor(array, name):
    if isinstance(array, torch.Tensor):
        return array.detach()
    try:
        return torch.as_tensor(np.asarray(array))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array or tensor: {exc}") from None


def _check_logits(logits, labels):
    z = _as_tensor(logits, "logits")
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits must be 2-D (n_examples, n_classes) with n_classes >= 2, got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"logits must be floating point, got {z.dtype}")
    if not torch.isfinite(z).all():
        raise ValueError("logits must be finite, got NaN or inf")
    y = torch.as_tensor(check_labels(labels, n=z.shape[0]), device=z.device)
    if int(y.max()) >= z.shape[1]:
        raise ValueError(f"labels must be < n_classes={z.shape[1]} (the logits' width), got {int(y.max())}")
    return z, y


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


def last_layer_gradients(logits, embeddings, labels, *, dim=None, seed=0, chunk=4096):
    """(softmax - onehot) ⊗ h: the gradient of the final linear layer's weights per example.

    Takes logits (n, c), the final layer's inputs `embeddings` (n, e) and labels (n,).
    Returns float32 (n, c * e), or, with `dim`, its seeded Gaussian random projection to
    (n, dim) (Johnson-Lindenstrauss: distances kept up to small relative error), computed
    in chunks so the (n, c * e) matrix is never held whole. Same kind as `logits`.
    """
    z, y = _check_logits(logits, labels)
    h = _as_tensor(embeddings, "embeddings").to(z.device).float()
    if h.ndim != 2 or h.shape[0] != z.shape[0]:
        raise ValueError(f"embeddings must be 2-D (n_examples, n_dims) with {z.shape[0]} rows "
                         f"like the logits, got shape {tuple(h.shape)}")
    g = _gradients(z, y)
    width = g.shape[1] * h.shape[1]
    if dim is None:
        out = (g[:, :, None] * h[:, None, :]).reshape(len(g), width)
    else:
        dim = check_positive_int(dim, "dim")
        gen = torch.Generator().manual_seed(seed)
        projection = (torch.randn(width, dim, generator=gen) / dim ** 0.5).to(z.device)
        out = torch.cat([(g[s:s + chunk, :, None] * h[s:s + chunk, None, :]).reshape(-1, width) @ projection
                         for s in range(0, len(g), chunk)])
    return out if isinstance(logits, torch.Tensor) else out.cpu().numpy()


def final_linear(model):
    """The last `nn.Linear` registered in `model`: the layer whose gradient is estimated."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model must end with an nn.Linear layer to estimate last-layer gradients; "
                         f"{type(model).__name__} has none")
    return linears[-1]


def _image_batches(images, batch_size, num_workers):
    """Batches of `images`: slices of a tensor or array, or a DataLoader over a map-style dataset
    of (image, label) pairs (the images only)."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        for s in range(0, len(images), batch_size):
            yield torch.as_tensor(images[s:s + batch_size])
        return
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        yield batch[0] if isinstance(batch, (list, tuple)) else batch


def estimate_gradients(model, images, labels, *, kind="logits", batch_size=512, device=None,
                       transform=None, dim=None, seed=0, num_workers=0):
    """Per-example gradient estimates of a model on clean images, as the paper selects on.

    Runs `model` in eval mode under no_grad over `images` in batches of `batch_size` on
    `device` (default: the model's), after `transform` (e.g. uint8 -> normalised float)
    if given, and restores the model's training mode. `images` is a tensor or array, or a
    map-style dataset of (image, label) pairs read in order by a DataLoader with
    `num_workers` workers. `kind="logits"` gives
    softmax - onehot (n, c); `"last_layer"` gives (softmax - onehot) ⊗ h (n, c * e) where
    h is the input of the model's final nn.Linear, taken with a forward hook, optionally
    projected to `dim`. Returns a float32 tensor on the CPU.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    batch_size = check_positive_int(batch_size, "batch_size")
    labels = torch.as_tensor(check_labels(labels))
    if len(images) != len(labels):
        raise ValueError(f"images has {len(images)} examples but labels has {len(labels)}; they must match")
    if device is None:
        device = next(model.parameters()).device
    captured = []
    hook = None
    if kind == "last_layer":
        hook = final_linear(model).register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach()))
    was_training = model.training
    model.eval()
    logits, embeddings = [], []
    try:
        with torch.no_grad():
            for batch in _image_batches(images, batch_size, num_workers):
                batch = batch.to(device, non_blocking=True)
                if transform is not None:
                    batch = transform(batch)
                logits.append(model(batch).float().cpu())
                if hook is not None:
                    embeddings.append(captured.pop().float().flatten(1).cpu())
    finally:
        model.train(was_training)
        if hook is not None:
            hook.remove()
    logits = torch.cat(logits)
    if kind == "logits":
        return logit_gradients(logits, labels)
    return last_layer_gradients(logits, torch.cat(embeddings), labels, dim=dim, seed=seed)
