"""Evaluation passes: test loss and accuracy."""
import torch
import torch.nn.functional as F

from coreaug.data.images import device_batches
from coreaug.selection.gradients import eval_modes, restore_modes, uncompiled
from coreaug.training.compiled_step import is_dense


def _logits(model, images, preprocess, batch_size, autocast):
    """Eval-mode, no-grad logits of `images` (an `Images`: a device tensor, or read from disk) in batches;
    restores the training mode. A compiled model (`--compile`) gets every batch at `batch_size`,
    the last padded with zero images whose logits are dropped: one graph for the whole pass (a
    shorter last batch would compile another, for dynamic shapes). In eval mode an example's
    logits do not depend on the rest of its batch."""
    modes = eval_modes(model)  # each submodule's own mode given back: a frozen BatchNorm stays frozen
    device = next(model.parameters()).device
    fixed = uncompiled(model) is not model  # torch.compile(module)'s wrapper
    try:
        with torch.no_grad(), autocast():
            for batch in device_batches(images, batch_size, device):
                n = len(batch)
                if fixed and n < batch_size:
                    batch = _padded(batch, batch_size)
                yield model(preprocess(batch))[:n].float()
    finally:
        restore_modes(modes)


def _padded(batch, batch_size):
    """`batch` followed by zero images up to `batch_size` rows, with the strides of the batches
    before it (slices of the same tensor) when its layout is dense with the rows outermost:
    dynamo guards on strides, and with one channel a channels-last batch and a contiguous one
    (`torch.cat`'s result) differ only there, so the compiled model would trace the last batch
    again."""
    if batch.stride(0) == batch[0].numel() and is_dense(batch[0]):
        padded = torch.empty_strided((batch_size, *batch.shape[1:]), batch.stride(), dtype=batch.dtype,
                                     device=batch.device)
        padded[len(batch):] = 0
        padded[:len(batch)] = batch
        return padded
    return torch.cat([batch, batch.new_zeros((batch_size - len(batch), *batch.shape[1:]))])


def evaluation_sums(model, images, labels, preprocess, batch_size, autocast):
    """(summed cross-entropy, number correct) of `model` on a labelled set (0s for an empty one),
    as Python floats, accumulated on the device and read once."""
    sums = torch.zeros(2, dtype=torch.float64, device=labels.device)
    start = 0
    for logits in _logits(model, images, preprocess, batch_size, autocast):
        y = labels[start:start + len(logits)]
        batch = torch.stack([F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()])
        sums += batch.double()
        start += len(logits)
    loss, correct = sums.tolist()
    return loss, correct

