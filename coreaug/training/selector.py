"""Choosing the epoch's examples for strong augmentation, by the configured strategy."""
import time

import torch

from coreaug.selection import estimate_gradients, select_coreset, select_maxloss, select_random

from .evaluate import example_losses


def select_examples(config, model, data, epoch, autocast, estimate_batch_size=1024):
    """Run the strategy's selection on the clean training set at the start of `epoch`.

    Returns (indices int64, weights float32, timings) with timings split into
    "estimate_seconds" (gradient estimates or losses: a forward pass over the training
    set in eval mode) and "facility_location_seconds" (kNN graph, greedy, weights).
    """
    timings = {"estimate_seconds": 0.0, "facility_location_seconds": 0.0}
    t0 = time.perf_counter()
    labels = data.train_labels.cpu()
    if config.strategy == "random":
        selection = select_random(labels, config.subset, balance=config.balance,
                                  seed=config.seed * 100_003 + epoch)
        timings["facility_location_seconds"] = time.perf_counter() - t0
    elif config.strategy == "maxloss":
        losses = example_losses(model, data.train_images, data.train_labels, data.preprocess,
                                estimate_batch_size, autocast)
        t1 = time.perf_counter()
        selection = select_maxloss(losses, labels, config.subset, balance=config.balance)
        timings["estimate_seconds"], timings["facility_location_seconds"] = t1 - t0, time.perf_counter() - t1
    else:
        with autocast():
            gradients = estimate_gradients(model, data.train_images, data.train_labels, kind=config.gradients,
                                           batch_size=estimate_batch_size, transform=data.preprocess)
        t1 = time.perf_counter()
        selection = select_coreset(gradients, labels, config.subset, balance=config.balance, knn=config.knn)
        timings["estimate_seconds"], timings["facility_location_seconds"] = t1 - t0, time.perf_counter() - t1
    return torch.from_numpy(selection.indices), torch.from_numpy(selection.weights), timings
