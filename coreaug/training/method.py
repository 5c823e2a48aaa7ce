"""`CoresetAugmentation`: the method's state between epochs, for `coreaug.train` and your own loop.

One object holds what coreset augmentation needs from one epoch to the next: the strategy and
fraction, the schedule (select every R epochs), the current `Selection` and the epoch's plan
(originals plus K strongly augmented copies of the selected examples, their weights, their
order). It has two faces over that one state:

- the tensor face, for data on the device: `start_epoch` returns the `EpochPlan`, and
  `plan.on_device(batch_size, device)` cuts it into device index tensors and weights;
- the dataset face, for DataLoader loops: `dataset(base, weak, strong)` wraps a map-style
  dataset of `(image, label)` so that item i < N is example i weakly transformed and item
  N + i a strongly augmented copy of it, each as `(image, label, weight)`; `sampler()`
  yields the plan's items (sharded like `DistributedSampler` with `num_replicas`, `rank`).
"""
import numpy as np
import torch

from coreaug.selection import (Selection, budget_size, estimate_gradients, logit_gradients, select_coreset,
                               select_maxloss, select_random)
from coreaug.selection.checks import check_fraction, check_labels
from coreaug.selection.coreset import DEFAULT_KNN

from .config import BALANCES, GRADIENT_KINDS, MODES, SELECTING, STRATEGIES, _choice, _positive_int
from .diagnostics import losses_from_logit_gradients, selection_diagnostics
from .plan import epoch_plan, plan_length


def epoch_generator(seed, epoch, stream, rank=0, device="cpu"):
    """A generator on `device` seeded by (seed, epoch, stream, rank): an epoch's randomness needs
    no saved state.

    Every process draws the same plan (rank left at 0, on the CPU) but its own augmentations
    (its rank, on its training device, so that no draw waits on a copy from the host), so that
    no two processes apply the same random transforms. The seed keeps only 32 bits, so the
    rank enters there, spread by an odd (invertible) multiplier.
    """
    generator = torch.Generator(device=device)
    return generator.manual_seed(((seed * 1_000_003 + epoch) * 8 + stream + rank * 0x9E3779B1) % 2 ** 32)


class CoresetAugmentation:
    """Coreset augmentation's state: which examples get strong augmentation this epoch, and how.

    Args:
        labels: the training set's integer labels (n,), in dataset order.
        strategy: "coreset" (Liu & Mirzasoleiman's weighted facility location on gradient
            estimates), "random", "maxloss" (highest current loss), "full" (every example) or
            "none" (no strong augmentation).
        fraction: the selection's share of the training set, in (0, 1].
        select_every: re-select at epochs 0, R, 2R, ...
        mode: "append" (every example weakly augmented, plus copies of the selection) or
            "subset" (the weighted selection, plus its copies).
        copies: strongly augmented copies per selected example.
        weight_augmented: the copies carry the coreset weights (else weight 1).
        gradients: the estimate selected on: "logits" (softmax - onehot) or "last_layer".
        gradient_dim: estimates wider than this are randomly projected to at most this many
            numbers per example (`GradientSketch`; last-layer gradients of ImageNet models are
            millions wide). None keeps them whole.
        knn, balance: facility location's neighbours per example and per-class budgets.
        seed: seeds the plans' order and the random strategy.
        noisy: optional bool (n,) marking labels known to be flipped, for the diagnostics.

    Attributes: `selection` (the current `Selection`, None before the first), `plan` (the
    current epoch's `EpochPlan`), `epoch` (the epoch `start_epoch` last began) and
    `diagnostics` (figures about the last selection: see training.diagnostics).
    """

    def __init__(self, labels, *, strategy="coreset", fraction=0.3, select_every=1, mode="append", copies=1,
                 weight_augmented=False, gradients="logits", knn=DEFAULT_KNN, balance="equal", seed=0, noisy=None,
                 gradient_dim=512):
        self.labels = torch.as_tensor(check_labels(labels)).long()
        _choice("strategy", strategy, STRATEGIES)
        _choice("mode", mode, MODES)
        _choice("gradients", gradients, GRADIENT_KINDS)
        _choice("balance", balance, BALANCES)
        for name, value in (("select_every", select_every), ("copies", copies), ("knn", knn)):
            _positive_int(name, value)
        if gradient_dim is not None:
            _positive_int("gradient_dim", gradient_dim)
        self.gradient_dim = gradient_dim
        self.strategy, self.fraction, self.select_every = strategy, check_fraction(fraction), select_every
        self.mode, self.copies, self.weight_augmented = mode, copies, bool(weight_augmented)
        self.gradients, self.knn, self.balance, self.seed = gradients, knn, balance, seed
        self.noisy = None if noisy is None else torch.as_tensor(noisy, dtype=torch.bool)
        self.selection, self.plan, self.epoch, self.diagnostics, self.selected_at = None, None, None, {}, None
        self._set_item_weights()

    def __len__(self):
        return len(self.labels)

    @property
    def selects(self):
        """Whether the strategy selects (coreset, random, maxloss) rather than full or none."""
        return self.strategy in SELECTING

    @property
    def needs_model(self):
        """Whether a selection needs the model's outputs (coreset and maxloss do; random does not)."""
        return self.strategy in ("coreset", "maxloss")

    def due(self, epoch):
        """Whether a selection is due at the start of `epoch` (every R epochs, and whenever none exists)."""
        return self.selects and (self.selection is None or epoch % self.select_every == 0)

    # Selecting -----------------------------------------------------------------------------

    def choose(self, epoch, *, estimates=None, losses=None, logits=None):
        """A `Selection` for `epoch` and its diagnostics, without changing the state.

        coreset needs `estimates` (n, d) gradient estimates or `logits` (n, c); maxloss needs
        `losses` (n,) or `logits`; random needs nothing. Use `select` to also adopt it.
        """
        labels = self.labels.numpy()
        if logits is not None:
            estimates = logit_gradients(torch.as_tensor(logits).float(), self.labels.to(torch.as_tensor(logits).device))
            losses = losses_from_logit_gradients(estimates, self.labels)
        if self.strategy == "random":
            selection = select_random(labels, self.fraction, balance=self.balance, seed=self.seed * 100_003 + epoch)
        elif self.strategy == "maxloss":
            if losses is None:
                raise ValueError("maxloss selection needs per-example losses (or logits) from the model; "
                                 "call start_epoch(epoch, model, data) or select(epoch, losses=...)")
            selection = select_maxloss(losses, labels, self.fraction, balance=self.balance)
        elif self.strategy == "coreset":
            if estimates is None:
                raise ValueError("coreset selection needs gradient estimates (or logits) from the model; "
                                 "call start_epoch(epoch, model, data) or select(epoch, estimates=...)")
            selection = select_coreset(estimates, labels, self.fraction, balance=self.balance, knn=self.knn)
            if losses is None and self.gradients == "logits":
                losses = losses_from_logit_gradients(estimates, self.labels)
        else:
            raise ValueError(f"strategy {self.strategy!r} selects nothing; only {', '.join(SELECTING)} do")
        diagnostics = selection_diagnostics(
            selection.indices, selection.weights, len(labels), previous=self._previous(), losses=losses,
            noisy=self.noisy, class_objectives=selection.class_objectives if self.strategy == "coreset" else None)
        return selection, diagnostics

    def use(self, selection, epoch, diagnostics=None):
        """Adopt `selection` (a `Selection`) as the current one, made at `epoch`."""
        self.selection, self.diagnostics = selection, dict(diagnostics or {})
        self.selected_at = epoch
        self._set_item_weights()

    def _set_item_weights(self):
        """Per-example loss weights of originals and of copies under the current selection
        (what the dataset face hands out with each item)."""
        n = len(self)
        self.original_weights, self.copy_weights = torch.ones(n), torch.ones(n)
        if self.selection is None:
            return
        picked, weights = self._selected()
        if self.mode == "subset":
            self.original_weights = torch.zeros(n).index_copy_(0, picked, weights)
        if self.weight_augmented:
            self.copy_weights = self.copy_weights.index_copy_(0, picked, weights)

    def select(self, epoch, *, estimates=None, losses=None, logits=None):
        """Choose (see `choose`) and adopt a selection for `epoch`; returns the `Selection`."""
        selection, diagnostics = self.choose(epoch, estimates=estimates, losses=losses, logits=logits)
        self.use(selection, epoch, diagnostics)
        return selection

    def estimate(self, model, data, *, batch_size=256, device=None, preprocess=None, num_workers=0):
        """The model's selection scores on clean examples, in eval mode: gradient estimates
        (n, d) for coreset, losses (n,) for maxloss.

        `data` is the training set in order: a tensor of images, or a map-style dataset of
        `(image, label)` with the evaluation transform (batched by a DataLoader with
        `num_workers`). `preprocess` maps a batch to the model's input.
        """
        if len(data) != len(self):
            raise ValueError(f"data has {len(data)} examples but the labels given to CoresetAugmentation have "
                             f"{len(self)}; pass the training set in the same order")
        kind = self.gradients if self.strategy == "coreset" else "logits"
        g = estimate_gradients(model, data, self.labels, kind=kind, batch_size=batch_size, device=device,
                               transform=preprocess, num_workers=num_workers,
                               dim=self.gradient_dim if self.strategy == "coreset" else None)
        return g if self.strategy == "coreset" else losses_from_logit_gradients(g, self.labels)

    # Plans ---------------------------------------------------------------------------------

    def start_epoch(self, epoch, model=None, data=None, **estimate_options):
        """Begin `epoch`: select if due (scoring `data` with `model` for coreset and maxloss;
        options as `estimate`), then draw the epoch's plan. Returns the `EpochPlan`."""
        if self.due(epoch):
            if self.needs_model and (model is None or data is None):
                raise ValueError(f"a {self.strategy} selection is due at epoch {epoch}: pass the model and the "
                                 "training data, start_epoch(epoch, model, data), or select(...) first")
            if self.needs_model:
                scores = self.estimate(model, data, **estimate_options)
                self.select(epoch, **({"estimates": scores} if self.strategy == "coreset" else {"losses": scores}))
            else:
                self.select(epoch)
        self.epoch, self.plan = epoch, self.plan_for(epoch)
        return self.plan

    def plan_for(self, epoch):
        """The `EpochPlan` of `epoch` for the current selection (shuffled by the seed and epoch)."""
        if self.selects and self.selection is None:
            raise ValueError("no selection yet: call start_epoch(epoch, model, data) or select(...) first")
        indices, weights = self._selected() if self.selects else (None, None)
        return epoch_plan(len(self), self.strategy, self.mode, indices, weights, self.copies,
                          self.weight_augmented, epoch_generator(self.seed, epoch, 0))

    def plan_length(self):
        """Entries in every epoch's plan."""
        return plan_length(len(self), self.strategy, self.mode, budget_size(self.fraction, len(self)), self.copies)

    # Dataset face --------------------------------------------------------------------------

    def dataset(self, base, weak=None, strong=None):
        """`base` (a map-style dataset of `(image, label)`) for the plans: see `PlanDataset`."""
        from .dataset_face import PlanDataset

        return PlanDataset(self, base, weak, strong)

    def sampler(self, num_replicas=1, rank=0):
        """The current plan's items for a DataLoader, this rank's share: see `PlanSampler`."""
        from .dataset_face import PlanSampler

        return PlanSampler(self, num_replicas, rank)

    # Checkpoints ---------------------------------------------------------------------------

    def state_dict(self):
        """What a checkpoint needs to continue: the current selection and when it was made."""
        s = self.selection
        return {"selection": None if s is None else {
                    "indices": torch.from_numpy(np.asarray(s.indices)), "weights": torch.from_numpy(np.asarray(s.weights)),
                    "strategy": s.strategy, "classes": torch.from_numpy(np.asarray(s.classes)),
                    "class_counts": torch.from_numpy(np.asarray(s.class_counts)),
                    "class_objectives": torch.from_numpy(np.asarray(s.class_objectives, dtype=np.float64)),
                    "timings": dict(s.timings), "n_total": s.n_total},
                "selected_at": self.selected_at, "diagnostics": dict(self.diagnostics)}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned."""
        s = state.get("selection")
        selection = None if s is None else Selection(
            indices=s["indices"].numpy(), weights=s["weights"].numpy(), strategy=s["strategy"],
            classes=s["classes"].numpy(), class_counts=s["class_counts"].numpy(),
            class_objectives=s["class_objectives"].numpy(), timings=s["timings"], n_total=s["n_total"])
        self.use(selection, state.get("selected_at"), state.get("diagnostics"))

    def _previous(self):
        return None if self.selection is None else self.selection.indices

    def _selected(self):
        """The current selection's (indices int64, weights float32) as CPU tensors."""
        return (torch.from_numpy(np.asarray(self.selection.indices, dtype=np.int64)),
                torch.from_numpy(np.asarray(self.selection.weights, dtype=np.float32)))
