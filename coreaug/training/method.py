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
import zlib

import numpy as np
import torch

from coreaug.errors import UsageError
from coreaug.selection import Selection, budget_size, estimate_gradients, logit_gradients
from coreaug.selection.checks import BALANCES, GRADIENT_KINDS, check_choice, check_fraction, check_int, check_labels
from coreaug.selection.coreset import DEFAULT_KNN
from coreaug.selection.rules import RULES, check_loss_filter, select_by_rule

from .config import DEFAULT_STRATEGY, MODES, strategies
from .diagnostics import selection_diagnostics
from .plan import epoch_plan, plan_length


def epoch_generator(seed, epoch, stream):
    """A CPU generator seeded by (seed, epoch, stream): an epoch's randomness needs no saved
    state. Every process draws the same plan from it (stream 0 shuffles the plan, 2 lays it out
    for a compiled step); augmentations draw from each entry's own key
    (`DevicePlan.draws`), not from a generator.
    """
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 8 + stream) % 2 ** 32)


class CoresetAugmentation:
    """Coreset augmentation's state: which examples get strong augmentation this epoch, and how.

    Args:
        labels: the training set's integer labels (n,), in dataset order.
        strategy: "random" (the default, DEFAULT_STRATEGY: see docs/evidence.md), "coreset"
            (Liu & Mirzasoleiman's weighted facility location on gradient estimates), "maxloss"
            (highest current loss), a rule beyond the paper, "full" (every example) or "none"
            (no strong augmentation).
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
        selection_warmup: epochs before the first model-based selection (random selections of
            the same budget until then); None takes the rule's share (crust: 20%) of `epochs`.
        epochs: the run's length, for the rule's default warm-up.
        loss_filter: the loss-filtered coresets' share of each class's highest losses cut (None:
            estimated; coreset-lowloss: the examples the model rates below chance, coreset-history and
            coreset-heldout: the high group of a two-group split of the mean losses).
        noisy: optional bool (n,) marking labels known to be flipped, for the diagnostics.

    Attributes: `selection` (the current `Selection`, None before the first), `plan` (the
    current epoch's `EpochPlan`), `epoch` (the epoch `start_epoch` last began) and
    `diagnostics` (figures about the last selection: see training.diagnostics).
    """

    def __init__(self, labels, *, strategy=DEFAULT_STRATEGY, fraction=0.3, select_every=1, mode="append", copies=1,
                 weight_augmented=False, gradients="logits", knn=DEFAULT_KNN, balance="equal", seed=0, noisy=None,
                 gradient_dim=512, selection_warmup=None, epochs=None, loss_filter=None):
        self.labels = torch.as_tensor(check_labels(labels)).long()
        check_choice(strategy, "strategy", strategies(), unknown=True)
        check_choice(mode, "mode", MODES, unknown=True)
        check_choice(gradients, "gradients", GRADIENT_KINDS, unknown=True)
        check_choice(balance, "balance", BALANCES, unknown=True)
        for name, value in (("select_every", select_every), ("copies", copies), ("knn", knn)):
            check_int(value, name)
        check_int(seed, "seed", 0)
        if gradient_dim is not None:
            check_int(gradient_dim, "gradient_dim")
        self.gradient_dim = None if gradient_dim is None else int(gradient_dim)
        # int(): a numpy integer passes check_int, and torch's Generator.manual_seed refuses it
        self.strategy, self.fraction, self.select_every = strategy, check_fraction(fraction), int(select_every)
        self.mode, self.copies, self.weight_augmented = mode, int(copies), bool(weight_augmented)
        self.gradients, self.knn, self.balance, self.seed = gradients, int(knn), balance, int(seed)
        if selection_warmup is None:  # the rule's own share of the run, when the run's length is known
            share = self.rule.warmup_share if self.selects else 0.0
            selection_warmup = int(round(share * epochs)) if epochs is not None else 0
        else:
            check_int(selection_warmup, "selection_warmup", 0, unit="epochs")
        self.selection_warmup = int(selection_warmup)
        self.loss_filter = check_loss_filter(strategy, loss_filter)  # now, not after an epoch
        self.noisy = None if noisy is None else torch.as_tensor(noisy, dtype=torch.bool)
        if self.noisy is not None and self.noisy.shape != self.labels.shape:
            raise UsageError(f"noisy must mark each of the {len(self.labels)} examples, shape ({len(self.labels)},), "
                             f"got {tuple(self.noisy.shape)}")
        self.selection, self.plan, self.epoch, self.diagnostics, self.selected_at = None, None, None, {}, None
        # a loss_history rule's running sums (see remember_losses); loss_held: a "held-out" rule's
        # count per example of the selections at which it was held out
        self.loss_sums, self.loss_count, self.loss_held = None, 0, None
        self._set_item_weights()

    def __len__(self):
        return len(self.labels)

    @property
    def selects(self):
        """Whether the strategy selects (coreset, random, maxloss) rather than full or none."""
        return self.strategy in RULES

    @property
    def rule(self):
        """The selection rule (`coreaug.selection.rules.Rule`), None for full and none."""
        return RULES.get(self.strategy)

    @property
    def needs(self):
        """The scores the rule selects on: a subset of ("estimates", "losses")."""
        return self.rule.needs if self.selects else ()

    @property
    def needs_model(self):
        """Whether a selection needs the model's outputs (all rules but random do)."""
        return bool(self.needs)

    def needs_model_at(self, epoch):
        """Whether the selection made at `epoch` reads the model (not during the warm-up)."""
        return self.needs_model and not self.warming_up(epoch)

    def due(self, epoch):
        """Whether a selection is due at the start of `epoch` (every R epochs, and whenever none
        exists), unless one was made or adopted (`use`) at `epoch` already."""
        return self.selects and (self.selection is None
                                 or (epoch % self.select_every == 0 and self.selected_at != epoch))

    # Selecting -----------------------------------------------------------------------------

    def choose(self, epoch, *, estimates=None, losses=None, logits=None):
        """A `Selection` for `epoch` and its diagnostics, without changing the state.

        The rule (`coreaug.selection.rules.RULES[strategy]`) says what it needs: coreset-like
        rules `estimates` (n, d) gradient estimates, loss-based ones `losses` (n,); `logits`
        (n, c) give both; random needs nothing. Tensors may be on any device. During the rule's
        warm-up (`selection_warmup`) the selection is random. Use `select` to also adopt it.
        """
        labels = self.labels.numpy()
        if logits is not None:
            estimates, losses = self._from_logits(logits)
        estimates, losses = _on_cpu(estimates), _on_cpu(losses)
        if not self.selects:
            raise UsageError(f"strategy {self.strategy!r} selects nothing; only {', '.join(RULES)} do")
        seed = self.seed * 100_003 + epoch
        if self.warming_up(epoch):
            selection = select_by_rule("random", labels, self.fraction, balance=self.balance, seed=seed)
        else:
            rule_losses = self.mean_losses(losses) if self.rule.loss_history and losses is not None else losses
            selection = select_by_rule(self.strategy, labels, self.fraction, estimates=estimates, losses=rule_losses,
                                       balance=self.balance, seed=seed, knn=self.knn, loss_filter=self.loss_filter)
        diagnostics = selection_diagnostics(
            selection.indices, selection.weights, len(labels), previous=self._previous(), losses=losses,
            noisy=self.noisy,
            class_objectives=None if np.isnan(selection.class_objectives).all() else selection.class_objectives)
        return selection, diagnostics

    def mean_losses(self, losses):
        """Each example's mean clean loss over the remembered selections and `losses` (n,), the
        current ones (what a rule with `loss_history` selects on); float32 on the CPU. For a
        "held-out" rule only the losses taken while the example was outside the selection in use
        count (its current loss where none did)."""
        current = _on_cpu(losses).double()
        if self.selects and self.rule.loss_history == "held-out":
            held = self._held_out()
            sums = current * held + (0 if self.loss_sums is None else self.loss_sums)
            counts = held + (0 if self.loss_held is None else self.loss_held)
            return torch.where(counts > 0, sums / counts.clamp(min=1), current).float()
        if self.loss_sums is None:
            return current.float()
        return ((self.loss_sums + current) / (self.loss_count + 1)).float()

    def remember_losses(self, losses):
        """Add a selection's clean losses (n,) to the running sums of a rule with `loss_history`
        (nothing for other rules). `select` does it; a loop that calls `choose` and `use`
        itself calls it after `choose` and before `use`, on the process that chooses."""
        if not (self.selects and self.rule.loss_history) or losses is None:
            return
        current = _on_cpu(losses).double()
        if current.shape != (len(self),):
            raise UsageError(f"losses must have one value per example, shape ({len(self)},), got {tuple(current.shape)}")
        if self.rule.loss_history == "held-out":
            held = self._held_out()
            current = current * held
            self.loss_held = held.clone() if self.loss_held is None else self.loss_held + held
        self.loss_sums = current.clone() if self.loss_sums is None else self.loss_sums + current
        self.loss_count += 1

    def _held_out(self):
        """float64 (n,): 1 for the examples outside the selection in use (all before the first), else 0."""
        held = torch.ones(len(self), dtype=torch.float64)
        if self.selection is not None:
            held[torch.as_tensor(np.asarray(self.selection.indices), dtype=torch.long)] = 0.0
        return held

    def warming_up(self, epoch):
        """Whether `epoch` is in the rule's warm-up (random selections before the model is trusted)."""
        return epoch < self.selection_warmup

    def use(self, selection, epoch, diagnostics=None):
        """Adopt `selection` (a `Selection`) as the current one, made at `epoch`. Raises
        UsageError for a selection of another training set (its size, or an index out of range)."""
        if selection is not None:
            self._check_fits(selection)
        self.selection, self.diagnostics = selection, dict(diagnostics or {})
        self.selected_at = epoch
        self._set_item_weights()

    def _check_fits(self, selection):
        n = len(self)
        indices = np.asarray(selection.indices)
        if selection.n_total and selection.n_total != n:
            raise UsageError(f"the selection was taken from {selection.n_total} examples but the labels given to "
                             f"CoresetAugmentation have {n}; use a selection (or state) of this training set")
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise UsageError(f"the selection holds indices outside [0, {n}) (from {indices.min()} to "
                             f"{indices.max()}); use a selection of this training set")

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
        if logits is not None:
            estimates, losses = self._from_logits(logits)
        selection, diagnostics = self.choose(epoch, estimates=estimates, losses=losses)
        self.remember_losses(losses)
        self.use(selection, epoch, diagnostics)
        return selection

    def scores(self, model, data, *, batch_size=256, device=None, preprocess=None, num_workers=0):
        """What the rule selects on, from the model on clean examples in eval mode: a dict with
        "estimates" (n, d) gradient estimates and/or "losses" (n,) per-example cross-entropy
        (from the float32 logits, before any projection), as the rule needs.

        `data` is the training set in order: a tensor of images, or a map-style dataset of
        `(image, label)` with the evaluation transform (batched by a DataLoader with
        `num_workers`). `preprocess` maps a batch to the model's input. An empty dict, without a
        pass over the data, for strategies that read no model (random, full, none).
        """
        if len(data) != len(self):
            raise UsageError(f"data has {len(data)} examples but the labels given to CoresetAugmentation have "
                             f"{len(self)}; pass the training set in the same order")
        if not self.needs:
            return {}
        wants_estimates = "estimates" in self.needs
        g, losses = estimate_gradients(model, data, self.labels, kind=self.gradients if wants_estimates else "logits",
                                       batch_size=batch_size, device=device, transform=preprocess,
                                       num_workers=num_workers, dim=self.gradient_dim, with_losses=True)
        out = {"losses": losses} if "losses" in self.needs else {}
        if wants_estimates:
            out["estimates"] = g
        return out

    def estimate(self, model, data, **options):
        """The rule's main score (see `scores`): gradient estimates (n, d) for rules that read
        them (coreset), else losses (n,) (maxloss). UsageError for strategies that read no model."""
        if not self.needs:
            raise UsageError(f"strategy {self.strategy!r} selects on no scores of the model, so estimate() has "
                             f"nothing to return; only {', '.join(n for n, r in RULES.items() if r.needs)} read them")
        scores = self.scores(model, data, **options)
        return scores["estimates"] if "estimates" in scores else scores["losses"]

    # Plans ---------------------------------------------------------------------------------

    def start_epoch(self, epoch, model=None, data=None, *, src=0, **estimate_options):
        """Begin `epoch`: select if due (scoring `data` with `model` for rules that read the
        model; options as `scores`), then draw the epoch's plan. Returns the `EpochPlan`.

        Under an initialised `torch.distributed` process group (DDP), only rank `src` scores
        and selects, and every rank adopts its selection (`share_selection`), so that the
        ranks' plans are one plan and `sampler(num_replicas, rank)` shards it exactly. Every
        rank must call this; pass the bare model (`ddp.module`) to score with.
        """
        if self.due(epoch):
            distributed = _world_size() > 1
            if not distributed or torch.distributed.get_rank() == src:
                if self.needs_model_at(epoch) and (model is None or data is None):
                    raise UsageError(f"a {self.strategy} selection is due at epoch {epoch}: pass the model and the "
                                     "training data, start_epoch(epoch, model, data), or select(...) first")
                self.select(epoch, **(self.scores(model, data, **estimate_options) if self.needs_model_at(epoch) else {}))
            if distributed:
                self.share_selection(src)
        self.epoch, self.plan = epoch, self.plan_for(epoch)
        return self.plan

    def share_selection(self, src=0):
        """Every rank of the `torch.distributed` process group adopts rank `src`'s current
        selection (with its epoch and diagnostics); all ranks must call it."""
        state = [self.state_dict() if torch.distributed.get_rank() == src else None]
        torch.distributed.broadcast_object_list(state, src=src)
        self.load_state_dict(state[0])

    def plan_for(self, epoch):
        """The `EpochPlan` of `epoch` for the current selection (shuffled by the seed and epoch)."""
        if self.selects and self.selection is None:
            raise UsageError("no selection yet: call start_epoch(epoch, model, data) or select(...) first")
        indices, weights = self._selected() if self.selects else (None, None)
        mixup = self.selects and self.rule.mixup
        return epoch_plan(len(self), strategy=self.strategy, mode=self.mode, selected=indices, weights=weights,
                          copies=self.copies, weight_augmented=self.weight_augmented,
                          generator=epoch_generator(self.seed, epoch, 0), partner_labels=self.labels if mixup else None)

    def plan_length(self):
        """Entries in every epoch's plan."""
        return plan_length(len(self), self.strategy, self.mode, budget_size(self.fraction, len(self)), self.copies)

    # Dataset face --------------------------------------------------------------------------

    def dataset(self, base, weak=None, strong=None):
        """`base` (a map-style dataset of `(image, label)`) for the plans: see `PlanDataset`."""
        from .dataset_face import PlanDataset

        return PlanDataset(self, base, weak, strong)

    def sampler(self, num_replicas=None, rank=None):
        """The current plan's items for a DataLoader, this rank's share: see `PlanSampler`. As
        torch's DistributedSampler, `num_replicas` and `rank` default to the initialised
        process group's (1 and 0 without one)."""
        from .dataset_face import PlanSampler

        if num_replicas is None:
            num_replicas = _world_size()
        if rank is None:
            rank = torch.distributed.get_rank() if _world_size() > 1 else 0
        return PlanSampler(self, num_replicas, rank)

    # Checkpoints ---------------------------------------------------------------------------

    def state_dict(self):
        """What a checkpoint needs to continue: the current selection and when it was made (and
        a loss_history rule's running sums and held-out counts), with the settings it was made
        under (`load_state_dict` checks them)."""
        s = self.selection
        return {"settings": self._settings(),
                "loss_sums": self.loss_sums, "loss_count": self.loss_count, "loss_held": self.loss_held,
                "selection": None if s is None else {
                    "indices": torch.from_numpy(np.asarray(s.indices)), "weights": torch.from_numpy(np.asarray(s.weights)),
                    "strategy": s.strategy, "classes": torch.from_numpy(np.asarray(s.classes)),
                    "class_counts": torch.from_numpy(np.asarray(s.class_counts)),
                    "class_objectives": torch.from_numpy(np.asarray(s.class_objectives, dtype=np.float64)),
                    "timings": dict(s.timings), "n_total": s.n_total},
                "selected_at": self.selected_at, "diagnostics": dict(self.diagnostics)}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned. UsageError, changing nothing, for a state of another
        training set or one saved under another strategy, fraction, balance or mode (a selection
        made elsewhere is adopted with `use`)."""
        s = state.get("selection")
        selection = None if s is None else Selection(
            indices=s["indices"].numpy(), weights=s["weights"].numpy(), strategy=s["strategy"],
            classes=s["classes"].numpy(), class_counts=s["class_counts"].numpy(),
            class_objectives=s["class_objectives"].numpy(), timings=s["timings"], n_total=s["n_total"])
        for name in ("loss_sums", "loss_held"):
            if state.get(name) is not None and len(state[name]) != len(self):
                raise UsageError(f"the state's {name} cover {len(state[name])} examples but the labels given to "
                                 f"CoresetAugmentation have {len(self)}; load a state of this training set")
        if selection is not None:
            self._check_fits(selection)
        self._check_settings(state.get("settings"))
        self.use(selection, state.get("selected_at"), state.get("diagnostics"))  # checks it before changing anything
        self.loss_sums, self.loss_count = state.get("loss_sums"), state.get("loss_count", 0)
        self.loss_held = state.get("loss_held")

    def _settings(self):
        """What a state's selection depends on beyond its examples: the rule's settings and the labels
        (a CRC-32 of them, to tell a reordered training set)."""
        return {"strategy": self.strategy, "fraction": self.fraction, "balance": self.balance, "mode": self.mode,
                "labels": zlib.crc32(self.labels.numpy().tobytes())}

    def _check_settings(self, saved):
        """UsageError naming the settings that differ between a state's `saved` ones (None: a state of
        an older coreaug, which kept none) and this method's."""
        if saved is None:
            return
        mine = self._settings()
        differ = ["labels (other labels, or the same in another order)" if key == "labels"
                  else f"{key} {saved[key]!r} (this method: {mine[key]!r})"
                  for key in mine if key in saved and saved[key] != mine[key]]
        if differ:
            raise UsageError(f"the state was saved under other settings: {', '.join(differ)}; load it into a "
                             "CoresetAugmentation made with the same ones (or adopt a selection with use())")

    def _from_logits(self, logits):
        """(logit gradient estimates, per-example losses) of `logits` (n, c), on the CPU."""
        logits = torch.as_tensor(logits).detach().float().cpu()
        return logit_gradients(logits, self.labels), torch.nn.functional.cross_entropy(logits, self.labels, reduction="none")

    def _previous(self):
        return None if self.selection is None else self.selection.indices

    def _selected(self):
        """The current selection's (indices int64, weights float32) as CPU tensors."""
        return (torch.from_numpy(np.asarray(self.selection.indices, dtype=np.int64)),
                torch.from_numpy(np.asarray(self.selection.weights, dtype=np.float32)))


def _world_size():
    """Processes in the initialised torch.distributed group (1 without one)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _on_cpu(scores):
    """Scores as CPU tensors (the selection runs on the host), None kept."""
    return None if scores is None else torch.as_tensor(scores).detach().cpu()
