"""Symmetric label noise, for the paper's noisy-label experiments (training on coresets of
label-noisy CIFAR-10)."""
import numbers
from typing import Tuple

import numpy as np
import torch

from coreaug.errors import UsageError

from .dataset import validate_positive


def apply_label_noise(labels, fraction: float, num_classes: int,
                      seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flip a random ``fraction`` of labels, each to a class drawn uniformly from the others.

    Convention: exactly ``round(fraction * N)`` examples, chosen uniformly without replacement,
    get a label different from their original one (uniform over the ``num_classes - 1`` other
    classes); the rest keep theirs. (Some papers instead redraw from all classes, so that only
    about ``fraction * (C - 1) / C`` labels actually change; here ``fraction`` is the share of
    wrong labels.)

    Args:
        labels: ``(N,)`` integer labels in ``[0, num_classes)``, tensor or array.
        fraction: share of labels to corrupt, in ``[0, 1]``.
        num_classes: number of classes (>= 2).
        seed: an integer >= 0; the same seed always flips the same examples to the same labels.

    Returns:
        ``(noisy_labels, flipped_mask)``: int64 labels and a bool mask of the flipped examples.
    """
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise UsageError(f"labels must be a 1-D integer array, got dtype {labels.dtype} and "
                         f"shape {tuple(labels.shape)}")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise UsageError(f"fraction must be a number in [0, 1], got {fraction!r}")
    if not 0 <= fraction <= 1:
        raise UsageError(f"fraction must be in [0, 1], got {fraction}")
    num_classes = validate_positive("num_classes", num_classes, 2)  # (numpy's, a tensor's: labels.max() + 1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:  # as every other seed
        raise UsageError(f"seed must be an integer >= 0, got {seed!r}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise UsageError(f"labels must lie in [0, {num_classes}), got values "
                         f"{int(labels.min())}..{int(labels.max())}; check num_classes")
    generator = torch.Generator().manual_seed(int(seed))  # a numpy integer is not one to torch
    flipped = torch.randperm(len(labels), generator=generator)[:round(fraction * len(labels))]
    # Adding 1..C-1 modulo C lands uniformly on every class except the original.
    offsets = torch.randint(1, num_classes, (len(flipped),), generator=generator)
    noisy = labels.clone()
    noisy[flipped] = (labels[flipped] + offsets) % num_classes
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[flipped] = True
    return noisy, mask
