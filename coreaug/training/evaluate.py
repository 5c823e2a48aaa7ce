"""Evaluation passes: test loss and accuracy."""
import torch
import torch.nn.functional as F

from coreaug.data.images import device_batches


def _logits(model, images, preprocess, batch_size, autocast):
    """Eval-mode, no-grad logits of `images` (an `Images`: a device tensor, or read from disk) in batches;
    restores the training mode. A compiled model (`--compile`) gets every batch at `batch_size`,
    the last padded with zero images whose logits are dropped: one graph for the whole pass (a
    shorter last batch would compile another, for dynamic shapes). In eval mode an example's
    logits do not depend on the rest of its batch."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    fixed = isinstance(model, torch._dynamo.eval_frame.OptimizedModule)  # what torch.compile(module) returns
    try:
        with torch.no_grad(), autocast():
            for batch in device_batches(images, batch_size, device):
                n = len(batch)
                if fixed and n < batch_size:
                    batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
                yield model(preprocess(batch))[:n].float()
    finally:
        model.train(was_training)


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

