"""Choosing the epoch's examples for strong augmentation, by the configured strategy."""
import time

import torch
import torch.nn.functional as F

from coreaug.selection import estimate_gradients, logit_gradients, select_coreset, select_maxloss, select_random

from .diagnostics import losses_from_logit_gradients, selection_diagnostics
from .distributed import Distributed
from .evaluate import example_losses

SINGLE_PROCESS = Distributed()


def select_examples(config, model, data, epoch, autocast, estimate_batch_size=1024, distributed=SINGLE_PROCESS,
                    train_logits=None, previous=None):
    """Run the strategy's selection on the clean training set at the start of `epoch`.

    Returns (indices int64, weights float32, timings, diagnostics) with timings split into
    "estimate_seconds" (gradient estimates or losses: a forward pass over the training
    set in eval mode) and "facility_location_seconds" (kNN graph, greedy, weights), and
    the `selection_diagnostics` of the pick (overlap with the `previous` indices, flipped
    labels, losses where the pass computed them, objective per class).

    Under torchrun (`distributed` with several processes) each process estimates its
    `row_slice` of the training set, rank 0 gathers the estimates and selects, and the
    selection is broadcast, so every process returns the same one (rank 0's timings).

    With `train_logits` (n, c), the logits of the previous epoch's training passes, the
    estimates come from them instead of a new pass (config.estimates == "training").
    """
    timings = {"estimate_seconds": 0.0, "facility_location_seconds": 0.0}
    t0 = time.perf_counter()
    rows = distributed.row_slice(len(data.train_labels))
    scores = None
    if train_logits is not None:  # every process holds the same merged logits: no pass, no gather
        labels = data.train_labels.to(train_logits.device)
        scores = (F.cross_entropy(train_logits, labels, reduction="none") if config.strategy == "maxloss"
                  else logit_gradients(train_logits, labels)).cpu()
    elif config.strategy == "maxloss":
        scores = distributed.gather_rows(example_losses(
            model, data.train_images[rows], data.train_labels[rows], data.preprocess, estimate_batch_size, autocast))
    elif config.strategy == "coreset":
        with autocast():
            scores = distributed.gather_rows(estimate_gradients(
                model, data.train_images[rows], data.train_labels[rows], kind=config.gradients,
                batch_size=estimate_batch_size, transform=data.preprocess))
    t1 = time.perf_counter()

    def select():
        labels = data.train_labels.cpu()
        if config.strategy == "random":
            selection = select_random(labels, config.subset, balance=config.balance, seed=config.seed * 100_003 + epoch)
        elif config.strategy == "maxloss":
            selection = select_maxloss(scores, labels, config.subset, balance=config.balance)
        else:
            selection = select_coreset(scores, labels, config.subset, balance=config.balance, knn=config.knn)
        if config.strategy == "random":  # nothing to estimate: all of it is the selection's
            timings["facility_location_seconds"] = time.perf_counter() - t0
        else:
            timings["estimate_seconds"], timings["facility_location_seconds"] = t1 - t0, time.perf_counter() - t1
        losses = None
        if config.strategy == "maxloss":
            losses = scores
        elif config.strategy == "coreset" and config.gradients == "logits":
            losses = losses_from_logit_gradients(scores, labels)
        diagnostics = selection_diagnostics(
            selection.indices, selection.weights, len(labels), previous=previous, losses=losses,
            noisy=data.noisy, class_objectives=selection.class_objectives if config.strategy == "coreset" else None)
        return torch.from_numpy(selection.indices), torch.from_numpy(selection.weights), timings, diagnostics

    return distributed.on_main(select)
