"""Choosing the epoch's examples for strong augmentation: the trainer's side of the selection.

The method object (`CoresetAugmentation`) chooses; this module gets it the scores, split over
the processes of a torchrun launch, and times the two stages.
"""
import time

import torch
import torch.nn.functional as F

from coreaug.progress import progress_bar
from coreaug.selection import estimate_gradients, logit_gradients
from coreaug.selection.gradients import GradientSketch, estimate_dtype

from .distributed import Distributed

SINGLE_PROCESS = Distributed()


def select_examples(config, method, model, data, epoch, autocast, estimate_batch_size=1024,
                    distributed=SINGLE_PROCESS, train_logits=None):
    """Make `method`'s selection for `epoch` from the clean training set; returns its timings.

    Timings are split into "estimate_seconds" (gradient estimates or losses: a forward pass
    over the training set in eval mode) and "facility_location_seconds" (kNN graph, greedy,
    weights; all of a random selection).

    Under torchrun (`distributed` with several processes) each process scores its
    `row_slice` of the training set, rank 0 gathers the scores and chooses, and every
    process adopts rank 0's selection (and its timings).

    With `train_logits` (n, c), the logits of the previous epoch's training passes, the
    scores come from them instead of a new pass (config.estimates == "training").
    """
    t0 = time.perf_counter()
    rows = distributed.row_slice(len(data.train_labels))
    scores = {}
    if not method.needs_model_at(epoch):
        pass  # random, or a rule's warm-up: nothing to score
    elif train_logits is not None:  # every process holds the same merged logits: no pass, no gather
        scores = scores_from_logits(train_logits, data.train_labels.to(train_logits.device), method.needs,
                                    config.gradient_dim, seed=config.seed)
    else:
        kind = config.gradients if "estimates" in method.needs else "logits"
        # the estimates' width: logit gradients keep their classes up to gradient_dim; last-layer ones
        # (classes x features) are taken at gradient_dim
        width = min(int(method.labels.max()) + 1, config.gradient_dim) if kind == "logits" else config.gradient_dim
        shown = not config.quiet and distributed.is_main  # a pass over the training set: minutes on a large one
        # the whole set's count, as the epoch's bar counts every process's: rank 0's slice times the processes
        with autocast(), progress_bar(len(data.train_labels), f"epoch {epoch + 1}/{config.epochs} selection: scoring",
                                      "img", disable=not shown, leave=False, dynamic_ncols=True) as bar:
            estimates, losses = estimate_gradients(
                model, data.train_images[rows], data.train_labels[rows], kind=kind,
                batch_size=estimate_batch_size, transform=data.preprocess, dim=config.gradient_dim,
                seed=config.seed,
                # from the whole set's size, not this process's slice: every rank's rows share a dtype
                dtype=estimate_dtype(len(data.train_labels), width), with_losses=True,
                losses_only="estimates" not in method.needs,
                progress=lambda count: bar.update(min(count * distributed.world_size, bar.total - bar.n)))
        # losses always (they are free, and the diagnostics read them); estimates when the rule needs them
        scores = {"losses": distributed.gather_rows(losses)}
        if "estimates" in method.needs:
            scores["estimates"] = distributed.gather_rows(estimates)
    t1 = time.perf_counter()

    def choose():
        selection, diagnostics = method.choose(epoch, **scores)
        method.remember_losses(scores.get("losses"))  # a loss_history rule's sums live on the choosing process
        t2 = time.perf_counter()
        if not scores:  # nothing was estimated: all of it is the selection's
            timings = {"estimate_seconds": 0.0, "facility_location_seconds": t2 - t0}
        else:
            timings = {"estimate_seconds": t1 - t0, "facility_location_seconds": t2 - t1}
        return selection, diagnostics, timings

    selection, diagnostics, timings = distributed.on_main(choose)
    method.use(selection, epoch, diagnostics)
    return timings


def scores_from_logits(logits, labels, needs, dim, chunk=65536, seed=0):
    """Selection scores from stored logits (n, c), a chunk of rows at a time so that no float32
    (n, c) copy is made: "losses" (n,) always, and "estimates", the logit gradients projected
    to at most `dim` numbers (`GradientSketch` of the run's `seed`), when `needs` names them; on the CPU."""
    chunks = range(0, len(logits), chunk)
    scores = {"losses": torch.cat([F.cross_entropy(logits[s:s + chunk].float(), labels[s:s + chunk], reduction="none")
                                   for s in chunks]).cpu()}
    if "estimates" in needs:
        sketch = GradientSketch(logits.shape[1], dim=dim, seed=seed)
        width = logits.shape[1] if sketch.class_side is None else sketch.class_side.shape[1]
        dtype = estimate_dtype(len(logits), width)
        scores["estimates"] = torch.cat([sketch(logit_gradients(logits[s:s + chunk], labels[s:s + chunk]))
                                         .to(dtype).cpu() for s in chunks])
    return scores
