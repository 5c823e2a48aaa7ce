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
import inspect
import math
import numbers
import re
import zlib

import numpy as np
import torch

from coreaug.augment.sampling import source_key
from coreaug.data.dataset import ImageDataset
from coreaug.data.images import DatasetImages, Images
from coreaug.devices import api_device
from coreaug.errors import UsageError
from coreaug.files import warn_at_caller
from coreaug.selection import Selection, budget_size, estimate_gradients, logit_gradients
from coreaug.selection.checks import BALANCES, GRADIENT_KINDS, check_choice, check_fraction, check_int, check_labels
from coreaug.selection.coreset import DEFAULT_KNN
from coreaug.selection.rules import RULES, check_loss_filter, select_by_rule
from coreaug.selection.selection import check_selection

from .config import DEFAULT_STRATEGY, MODES, check_selection_warmup, default_selection_warmup, strategies
from .diagnostics import selection_diagnostics
from .plan import epoch_plan, plan_length

# What state_dict() writes: a dict with none of these is not one (a model's state_dict, a whole checkpoint)
STATE_KEYS = ("settings", "selection", "selected_at", "loss_sums", "loss_count", "loss_held", "diagnostics")
PLAN_SEEDS = 2 ** 29  # seeds below it draw their plans as they always did (epoch_generator)


def epoch_generator(seed, epoch, stream):
    """A CPU generator seeded by (seed, epoch, stream): an epoch's randomness needs no saved
    state. Every process draws the same plan from it (stream 0 shuffles the plan, 2 lays it out
    for a compiled step); augmentations draw from each entry's own key
    (`DevicePlan.draws`), not from a generator.

    torch's CPU generator keeps 32 bits of its seed. Below PLAN_SEEDS (2 ** 29) a seed takes
    ((seed * 1_000_003 + epoch) * 8 + stream) mod 2 ** 32, the plans of every run so far; that
    repeats every 2 ** 29 seeds, so a larger seed takes a hash of the whole seed, epoch and stream
    (`source_key`): two seeds share an epoch's plan by chance (1 in 2 ** 32), not every epoch's.
    """
    if seed < PLAN_SEEDS:
        return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 8 + stream) % 2 ** 32)
    return torch.Generator().manual_seed(source_key(seed, epoch, stream))


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
        knn: facility location's neighbours per example (20, DEFAULT_KNN).
        balance: the per-class budgets: "equal" or "proportional".
        seed: seeds the plans' order and the random strategy; under DDP the same on every rank (not seed + rank).
        selection_warmup: epochs before the first model-based selection (random selections of
            the same budget until then); None takes the rule's share (crust: 20%) of `epochs`, at
            most the epoch of the last selection (`default_selection_warmup`); given with `epochs`,
            one past the last selection of a rule that reads the model is refused, as `train` refuses it.
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
        # a copy: a view of the caller's int64 labels would follow their later edits (pseudo-labels)
        self.labels = torch.as_tensor(check_labels(labels)).long().clone()
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
        if not isinstance(weight_augmented, (bool, np.bool_)):
            raise UsageError(f"weight_augmented must be True or False, got {weight_augmented!r}")
        if epochs is not None:
            check_int(epochs, "epochs")
        self.mode, self.copies, self.weight_augmented = mode, int(copies), bool(weight_augmented)
        self.gradients, self.knn, self.balance, self.seed = gradients, int(knn), balance, int(seed)
        if selection_warmup is None:  # the rule's own share of the run, when the run's length is known
            selection_warmup = 0 if epochs is None else default_selection_warmup(strategy, epochs, self.select_every)
        else:
            check_int(selection_warmup, "selection_warmup", 0, unit="epochs")
            if epochs is not None:  # as the trainer refuses it: a model-based rule that never selects by the model
                check_selection_warmup(strategy, int(selection_warmup), int(epochs), self.select_every)
        self.selection_warmup = int(selection_warmup)
        self.loss_filter = check_loss_filter(strategy, loss_filter)  # now, not after an epoch
        self.noisy = None if noisy is None else _bool_mask(noisy, "noisy").clone()
        if self.noisy is not None and self.noisy.shape != self.labels.shape:
            raise UsageError(f"noisy must mark each of the {len(self.labels)} examples, shape ({len(self.labels)},), "
                             f"got {tuple(self.noisy.shape)}")
        self.selection, self.plan, self.epoch, self.diagnostics, self.selected_at = None, None, None, {}, None
        # a loss_history rule's running sums (see remember_losses); loss_held: a "held-out" rule's
        # count per example of the selections at which it was held out
        self.loss_sums, self.loss_count, self.loss_held = None, 0, None
        self.version = 0  # bumped by every use(): a DataLoader worker holding an older one is refused
        self.epochs_started = 0  # start_epoch calls on this object (the dataset face warns in the first alone)
        self._scored = None  # (epoch, parameters_mark) of start_epoch's last scoring of a model; "warned"
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
        epoch = check_epoch(epoch)
        return self.selects and (self.selection is None
                                 or (epoch % self.select_every == 0 and self.selected_at != epoch))

    # Selecting -----------------------------------------------------------------------------

    def choose(self, epoch, *, estimates=None, losses=None, logits=None):
        """A `Selection` for `epoch` and its diagnostics, without changing the state.

        The rule (`coreaug.selection.rules.RULES[strategy]`) says what it needs: coreset-like
        rules `estimates` (n, d) gradient estimates, loss-based ones `losses` (n,); `logits`
        (n, c) give both; random needs nothing. Their rows are the examples in the labels' order
        (rows collected in a plan's shuffled order select the wrong examples: put them back, e.g.
        `full[batches.indices[take][~aug]] = logits[~aug]`). Tensors may be on any device. During
        the rule's warm-up (`selection_warmup`) the selection is random. Use `select` to also adopt it.
        """
        epoch = check_epoch(epoch)
        labels = self.labels.numpy()
        if logits is not None:
            estimates, losses = self._from_logits(logits)
        estimates, losses = _on_cpu(estimates), _losses_on_cpu(losses)
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
        current = _losses_on_cpu(losses).double()
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
        current = _losses_on_cpu(losses).double()
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
        UsageError for a selection of another training set (its size, or an index out of range),
        or one that could not train (repeated indices, weights negative or not finite; in subset
        mode, one that picks nothing: the epoch would train no example). A plan
        drawn already (`start_epoch`) is drawn again for its epoch from the new selection.
        `selection=None` forgets the current one: the next `start_epoch` selects again."""
        if selection is not None:
            self._check_fits(selection)
            selection = check_selection(selection, len(self), "use() was given")
            if self.mode == "subset" and not len(selection.indices) and len(self):
                raise UsageError(f"the selection ({selection.strategy or 'given to use()'}) picks no example, and in "
                                 "subset mode an epoch trains only the examples picked: nothing would train; a rule of "
                                 "your own must pick at least one (or use mode='append', where every example trains)")
            # a Python int: a numpy one would not load with torch.load's weights_only=True
            epoch = None if epoch is None else check_epoch(epoch)
        self.selection, self.diagnostics = selection, dict(diagnostics or {})
        self.selected_at = epoch
        self._set_item_weights()
        self.version += 1  # the dataset face's workers compare theirs (see PlanDataset)
        if self.plan is not None:  # the old plan's copies would be refused (dataset face) or trained (tensor face)
            self.plan = self.plan_for(self.epoch) if selection is not None or not self.selects else None

    def _check_fits(self, selection):
        n = len(self)
        if not isinstance(selection, Selection):
            check_selection(selection, n, "use() was given")  # names what it was given
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
        with torch.inference_mode(False):  # weights that may enter a loss, whatever mode the caller is in
            self.original_weights, self.copy_weights = torch.ones(n), torch.ones(n)
            # which examples' copies the plans hold: a copy outside them is refused (PlanDataset)
            self.copied = torch.full((n,), self.strategy == "full")
            if self.selection is None:
                return
            picked, weights = self._selected()
            self.copied[picked] = True
            if self.mode == "subset":
                self.original_weights = torch.zeros(n).index_copy_(0, picked, weights)
            if self.weight_augmented:
                self.copy_weights = self.copy_weights.index_copy_(0, picked, weights)

    def select(self, epoch, *, estimates=None, losses=None, logits=None):
        """Choose (see `choose`) and adopt a selection for `epoch`; returns the `Selection`."""
        epoch = check_epoch(epoch)
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
        if data is not None:
            check_map_style(data, "the data to score", "score it", "scores batches it itself: batch_size=, "
                            "num_workers=", "data.train_images (with preprocess=)")
        if preprocess is not None and not callable(preprocess):
            raise UsageError(f"preprocess must be a function of a batch (uint8 -> the model's input) or None, "
                             f"got {preprocess!r}")
        if data is not None and len(data) != len(self):
            raise UsageError(f"data has {len(data)} examples but the labels given to CoresetAugmentation have "
                             f"{len(self)}; pass the training set in the same order")
        if not self.needs:
            return {}
        if data is None or model is None:
            raise UsageError(f"a {self.strategy} selection scores the training data with the model: pass both, "
                             "scores(model, data)")
        if device is not None:
            device = api_device(device)
        data = self._scoring_images(data, num_workers)
        wants_estimates = "estimates" in self.needs
        try:  # a dataset's DataLoader draws its base seed from torch's generator: given back, as train does
            with torch.random.fork_rng(devices=[]):
                g, losses = estimate_gradients(bare_model(model), data, self.labels,
                                               kind=self.gradients if wants_estimates else "logits",
                                               batch_size=batch_size, device=device, transform=preprocess,
                                               num_workers=num_workers, dim=self.gradient_dim, seed=self.seed,
                                               with_losses=True, losses_only=not wants_estimates)
        except RuntimeError as exc:  # torch's collate of a batch of images of different sizes
            sizes = re.search(r"stack expects each tensor to be equal size, but got \[([\d, ]*)\] at entry (\d+) "
                              r"and \[([\d, ]*)\] at entry (\d+)", str(exc))
            if sizes is None:
                raise
            shape = lambda text: "x".join(text.replace(" ", "").split(","))  # noqa: E731
            first, other = (text.replace(" ", "").split(",") for text in (sizes[1], sizes[3]))
            if len(first) != 3 and first[1:] == other[1:]:  # not (C, H, W), and only the first differs: sequences
                raise UsageError(f"the data to score has items of different lengths ({shape(sizes[1])} and "
                                 f"{shape(sizes[3])} in "
                                 "one batch): pad them to one length (torch.nn.utils.rnn.pad_sequence) and score "
                                 "that tensor, or select from your own forward: select(epoch, logits=...)") from None
            raise UsageError(f"the data to score has images of different sizes ({shape(sizes[1])} and "
                             f"{shape(sizes[3])} in one batch): give its transform a fixed size "
                             "(T.Resize and T.CenterCrop, say)") from None
        out = {"losses": losses} if "losses" in self.needs else {}
        if wants_estimates:
            out["estimates"] = g
        return out

    def _scoring_images(self, data, num_workers):
        """`data` as scores reads it: a dataset's items checked to be (image tensor, label) pairs (or
        image tensors) and, as its batches are read, its labels against this method's (a dataset in
        another order)."""
        if isinstance(data, (torch.Tensor, np.ndarray, Images)) or not len(data):
            return data
        item = data[0]
        if isinstance(item, (torch.Tensor, np.ndarray)):
            return DatasetImages(data, num_workers)  # images alone: no labels to check
        image = item[0] if isinstance(item, (tuple, list)) and len(item) >= 2 else None
        if not isinstance(image, (torch.Tensor, np.ndarray)):
            held = f"a {type(item).__name__}" if image is None else f"a pair whose image is a {type(image).__name__}"
            raise UsageError("the data to score must be a tensor of images or a dataset of (image tensor, label) "
                             f"pairs, with the evaluation transform (T.ToTensor(), say); its item 0 is {held}")
        return DatasetImages(data, num_workers, labels=self.labels)

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

        Under an initialised `torch.distributed` process group (DDP), only rank `src` decides
        whether a selection is due, scores and selects; every rank whose state differs from
        rank `src`'s (a selection made there, a state loaded there alone) then adopts its state,
        so that the ranks' plans are one plan and `sampler()` shards it exactly. Every rank must
        call this. A DistributedDataParallel model scores through its module (`ddp.module`); a
        model that shards its parameters (FSDP, tensor parallel: `shards_parameters`) scores on
        every rank, from rank `src`'s state, each passing the model and the same data.
        """
        epoch = check_epoch(epoch)
        if self.epoch is not None and epoch < self.epoch and self.loss_count:  # (a notebook cell run again)
            warn_at_caller(f"start_epoch({epoch}) after epoch {self.epoch}: strategy {self.strategy!r} selects on the "
                           "losses of every selection so far, and this object keeps those of the training it ran "
                           "(a new training would select on them); make a new CoresetAugmentation for a new training")
        unknown = sorted(set(estimate_options) - set(SCORE_OPTIONS))
        if unknown:
            raise UsageError(f"start_epoch got unknown option(s) {', '.join(unknown)}; the options of scores() are "
                             f"{', '.join(SCORE_OPTIONS)}")
        self.plan = None  # drawn below, not also by a selection's use()
        if _world_size() > 1:  # every strategy: full and none select nothing, but shuffle their plans by the seed
            marks = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(marks, (self._fingerprint(), shards_parameters(model),
                                                        model is not None and data is not None))
            _check_same_settings([mark[0][-1] for mark in marks], src)  # (the strategy among them)
            if self.selects and any(mark[1] for mark in marks):
                self._start_sharded(epoch, model, data, src, estimate_options, marks)
            elif self.selects:
                self._start_on_every_rank(epoch, model, data, src, estimate_options)
        elif self.due(epoch):
            self._select_now(epoch, model, data, estimate_options)
        self.epoch, self.plan = epoch, self.plan_for(epoch)
        self.epochs_started += 1
        return self.plan

    def _select_now(self, epoch, model, data, estimate_options):
        if self.needs_model_at(epoch) and (model is None or data is None):
            raise UsageError(f"a {self.strategy} selection is due at epoch {epoch}: pass the model and the "
                             "training data, start_epoch(epoch, model, data), or select(...) first")
        if self.needs_model_at(epoch):
            self._warn_if_untrained(epoch, model)
        self.select(epoch, **(self.scores(model, data, **estimate_options) if self.needs_model_at(epoch) else {}))

    def _warn_if_untrained(self, epoch, model):
        """Warn (once) where the model to score has the parameters start_epoch scored at an earlier
        selection: a loop that trains a copy of them (torch.func) would select on the untrained model."""
        if self._scored == "warned":
            return
        mark = parameters_mark(model)
        earlier, self._scored = self._scored, (epoch, mark)
        same = earlier is not None and mark is not None and earlier[1] is not None and torch.equal(mark, earlier[1])
        if same and earlier[0] < epoch:
            self._scored = "warned"
            warn_at_caller(f"start_epoch({epoch}) scores a model whose parameters are those it scored at epoch "
                           f"{earlier[0]}: a {self.strategy} selection reads the model as it is trained; where your "
                           "loop trains a copy of its parameters (torch.func.functional_call with a dict of them), "
                           "pass a module that holds the trained ones, or select(epoch, logits=...) from your own "
                           "forward (where only its BatchNorm statistics were to change, all is well)")

    def _start_sharded(self, epoch, model, data, src, estimate_options, marks):
        """start_epoch's selection where a rank's model shards its parameters (FSDP, tensor parallel): its
        forward gathers them from every rank, so every rank scores, from rank `src`'s state, and selects
        alike (adopting `src`'s selection where one differs). `marks`: each rank's fingerprint, whether its
        model is sharded, and whether it passed a model and data."""
        if any(mark[0] != marks[src][0] for mark in marks):
            self.share_selection(src)
        if not (self.due(epoch) and self.needs_model_at(epoch)):
            if self.due(epoch):  # a rule that reads no model this time (the first of an every-other rule, say)
                self._select_now(epoch, model, data, estimate_options)
            return
        lacking = [rank for rank, mark in enumerate(marks) if not mark[2]]
        if lacking:
            raise UsageError(f"a {self.strategy} selection is due at epoch {epoch} and the model shards its "
                             "parameters between the ranks (FSDP or tensor parallel): its forward runs on every "
                             "rank together, so every rank scores; pass the model and the training data to "
                             f"start_epoch on every rank (rank {lacking[0]} did not pass both)")
        self._select_now(epoch, model, data, estimate_options)
        after = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(after, self._fingerprint())
        if any(mark != after[src] for mark in after):  # scores that differ in their last bits between ranks
            self.share_selection(src)

    def _start_on_every_rank(self, epoch, model, data, src, estimate_options):
        """start_epoch's selection under a process group: rank `src` alone decides and selects; every
        rank gathers every rank's fingerprint of its state (or src's error, raised on every rank)
        and, where any differs from src's, all adopt src's state, so that no rank's own state
        decides which collectives it joins."""
        dist = torch.distributed
        failed = None
        if dist.get_rank() == src:
            try:
                if self.due(epoch):
                    self._select_now(epoch, model, data, estimate_options)
            except Exception as exc:  # noqa: BLE001 -- raised again below, on every rank
                failed = exc
        marks = [None] * dist.get_world_size()
        mine = ("failed", isinstance(failed, UsageError), str(failed)) if failed is not None else self._fingerprint()
        dist.all_gather_object(marks, mine)
        if failed is not None:
            raise failed
        _raise_if_failed(marks, src, epoch)  # (the settings were compared by start_epoch's first gather)
        if any(mark != marks[src] for mark in marks):
            self.share_selection(src)

    def _fingerprint(self):
        """What tells two ranks' states apart, in a few numbers: when and what was selected, and the loss history."""
        s = self.selection
        chosen = None if s is None else (zlib.crc32(np.asarray(s.indices, dtype=np.int64).tobytes()),
                                         zlib.crc32(np.asarray(s.weights, dtype=np.float32).tobytes()))
        sums = None if self.loss_sums is None else zlib.crc32(self.loss_sums.numpy().tobytes())
        return ("state", self.selected_at, chosen, self.loss_count, sums, self._plan_settings())

    def _plan_settings(self):
        """What, besides the selection, decides each epoch's plan: every rank's must be the same, or their
        shares of it overlap (`_check_same_settings`)."""
        return {**self._settings(), "seed": self.seed, "copies": self.copies,
                "weight_augmented": self.weight_augmented}

    def share_selection(self, src=0):
        """Every rank of the `torch.distributed` process group adopts rank `src`'s current
        selection (with its epoch and diagnostics); all ranks must call it. (`start_epoch` calls it
        where a rank's state differs from rank `src`'s.)"""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise UsageError("share_selection needs an initialised torch.distributed process group; without one "
                             "there is no other process to share the selection with")
        state = [self.state_dict() if torch.distributed.get_rank() == src else None]
        torch.distributed.broadcast_object_list(state, src=src)
        self.load_state_dict(state[0])

    def plan_for(self, epoch):
        """The `EpochPlan` of `epoch` for the current selection (shuffled by the seed and epoch)."""
        epoch = check_epoch(epoch)
        if self.selects and self.selection is None:
            raise UsageError("no selection yet: call start_epoch(epoch, model, data) or select(...) first")
        mixup = self.selects and self.rule.mixup
        with torch.inference_mode(False):  # a plan made under the caller's inference mode could not enter a loss
            indices, weights = self._selected() if self.selects else (None, None)
            return epoch_plan(len(self), strategy=self.strategy, mode=self.mode, selected=indices, weights=weights,
                              copies=self.copies, weight_augmented=self.weight_augmented,
                              generator=epoch_generator(self.seed, epoch, 0),
                              partner_labels=self.labels if mixup else None)

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
        process group's (1 and 0 without one), read when it is iterated (a sampler made before
        `init_process_group` still shards)."""
        from .dataset_face import PlanSampler

        return PlanSampler(self, num_replicas, rank)

    # Checkpoints ---------------------------------------------------------------------------

    def state_dict(self):
        """What a checkpoint needs to continue: the current selection and when it was made (and
        a loss_history rule's running sums and held-out counts), with the settings it was made
        under (`load_state_dict` checks them)."""
        s = self.selection
        return {"settings": self._plan_settings(),  # (seed, copies and weight_augmented: warned about, not refused)
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
        made elsewhere is adopted with `use`; another seed, copies or weight_augmented is warned
        about: the plans from there on differ from the saving run's), and for anything else (a
        model's state_dict, a whole checkpoint). Under a process group, call it on every rank (on rank `src` alone,
        `start_epoch` hands its state to the others)."""
        if not isinstance(state, dict) or not any(key in state for key in STATE_KEYS):
            keys = ", ".join(map(str, list(state)[:5])) if isinstance(state, dict) else type(state).__name__
            raise UsageError("this is not a CoresetAugmentation state_dict(): "
                             f"{'its keys are ' + (keys or '(none)') if isinstance(state, dict) else 'a ' + keys}; "
                             "pass the dict that state_dict() returned (e.g. checkpoint['method'])")
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
        if state.get("settings") is None:
            self._check_older_state(selection)
        self.use(selection, state.get("selected_at"), state.get("diagnostics"))  # checks it before changing anything
        self.loss_sums, self.loss_count = state.get("loss_sums"), state.get("loss_count", 0)
        self.loss_held = state.get("loss_held")

    def _settings(self):
        """What a state's selection depends on beyond its examples: the rule's settings and the labels
        (a CRC-32 of them, to tell a reordered training set)."""
        return {"strategy": self.strategy, "fraction": self.fraction, "balance": self.balance, "mode": self.mode,
                "labels": zlib.crc32(self.labels.numpy().tobytes())}

    def _check_older_state(self, selection):
        """An older coreaug's state kept no settings: UsageError where its own selection tells
        another strategy (a rule other than random, which a warm-up selects by) or another
        fraction (its size, more than one example from this method's budget) than this method's."""
        if selection is None:
            return
        saved, size = selection.strategy, len(np.asarray(selection.indices))
        if not self.selects:
            differ = [f"a {saved} selection (this method: strategy {self.strategy!r}, which selects nothing)"]
        else:
            budget = budget_size(self.fraction, len(self))
            differ = ([f"strategy {saved!r} (this method: {self.strategy!r})"]
                      if saved in RULES and saved not in ("random", self.strategy) else [])
            if abs(size - budget) > 1:  # one apart: a budget rounded otherwise in that version
                differ.append(f"a selection of {size} examples (this method's fraction {self.fraction!r} "
                              f"selects {budget})")
        if differ:
            raise UsageError(f"the state (of an older coreaug) was saved under other settings: {', '.join(differ)}; "
                             "load it into a CoresetAugmentation made with the same ones (or adopt a selection "
                             "with use())")

    def _check_settings(self, saved):
        """UsageError naming the settings that differ between a state's `saved` ones (None: a state of
        an older coreaug, which kept none: see `_check_older_state`) and this method's."""
        if saved is None:
            return
        mine = self._settings()
        differ = ["labels (other labels, or the same in another order)" if key == "labels"
                  else f"{key} {saved[key]!r} (this method: {mine[key]!r})"
                  for key in mine if key in saved and not _same_setting(key, saved[key], mine[key])]
        if differ:
            raise UsageError(f"the state was saved under other settings: {', '.join(differ)}; load it into a "
                             "CoresetAugmentation made with the same ones (or adopt a selection with use())")
        plans = self._plan_settings()  # (an older coreaug's state kept the selection's settings alone)
        unread = ("copies", "weight_augmented") if self.strategy == "none" else ()  # no copies to make or weigh
        differ = [f"{key} {saved[key]!r} (this method: {plans[key]!r})" for key in plans
                  if key not in mine and key not in unread and key in saved and saved[key] != plans[key]]
        if differ:
            warn_at_caller(f"the state was saved under other settings: {', '.join(differ)}; its selection is "
                           "kept, but the plans from here on are not those the run that saved it would have made "
                           "(make the CoresetAugmentation with the same ones to continue that run)")

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


# The options start_epoch passes on to scores (checked up front: a misspelt one would stop a run at its first selection)
SCORE_OPTIONS = tuple(name for name, p in inspect.signature(CoresetAugmentation.scores).parameters.items()
                      if p.kind == p.KEYWORD_ONLY)


def check_epoch(epoch):
    """`epoch` as a Python int (a numpy or 0-dim torch integer taken as one), else a UsageError naming it."""
    if isinstance(epoch, torch.Tensor) and epoch.dim() == 0 and not epoch.is_floating_point() \
            and epoch.dtype != torch.bool:
        epoch = epoch.item()
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise UsageError(f"epoch must be an integer >= 0, got {epoch!r}")
    return int(epoch)


def _same_setting(key, saved, mine):
    """Whether a state's setting `saved` is this method's `mine` (a fraction given as a float32, e.g.
    np.float32(0.3), is the same fraction: both select the same budget)."""
    if key == "fraction" and isinstance(saved, numbers.Real) and isinstance(mine, numbers.Real):
        return math.isclose(saved, mine, rel_tol=1e-6)
    return saved == mine


def _raise_if_failed(marks, src, epoch):
    """On a rank other than `src`: the error `src` met selecting, from the marks gathered from every rank."""
    if marks[src][0] == "failed":
        error = UsageError if marks[src][1] else RuntimeError
        raise error(f"rank {src} failed to select at epoch {epoch}: {marks[src][2]}")


def _check_same_settings(ranks, src):
    """UsageError, raised on every rank alike, naming the plan settings (`_plan_settings`, one dict per
    rank in `ranks`) in which a rank differs from rank `src`: each rank would draw a plan of its own and
    shard it, so the shards would overlap (a per-rank seed) or differ in length (a DDP hang)."""
    first = ranks[src]
    differ = []
    for key in first:
        other = [rank for rank, settings in enumerate(ranks) if not _same_setting(key, first[key], settings[key])]
        if other:
            shown = f"other labels on rank {other[0]} (or the same in another order)" if key == "labels" else \
                f"{first[key]!r} on rank {src}, {ranks[other[0]][key]!r} on rank {other[0]}"
            differ.append(f"{key}: {shown}")
    if differ:
        raise UsageError(f"CoresetAugmentation's settings differ between the ranks ({'; '.join(differ)}): every rank "
                         "shards one plan, so make it with the same settings, labels and seed on every rank "
                         "(not a seed plus the rank)")


def check_map_style(data, what, use, batching, from_image_dataset):
    """UsageError for `data` that cannot be read by index in the labels' order: coreaug's own
    ImageDataset, a DataLoader, an IterableDataset, a generator. `use` says what the data is for
    ("score it"), `batching` what batches it instead of a DataLoader, `from_image_dataset` what to
    pass of an ImageDataset."""
    if isinstance(data, ImageDataset):
        raise UsageError(f"{what} is a coreaug ImageDataset (what load_dataset returns): to {use}, pass "
                         f"{from_image_dataset}")
    from .dataset_face import PlanDataset

    wrapped = data.dataset if isinstance(data, torch.utils.data.DataLoader) else data
    if isinstance(wrapped, PlanDataset):  # (the training DataLoader's .dataset: "pass its .dataset" led here)
        fix = ("pass the training set itself in the labels' order, with a fixed evaluation transform (the one you "
               "wrapped, if it draws nothing at random)" if use == "score it" else
               "pass the training set itself (method.dataset(train_set), once)")
        raise UsageError(f"{what} is {'a DataLoader over ' if wrapped is not data else ''}method.dataset()'s "
                         f"wrapped set (each example and its strong copy, with the training transforms): to {use}, "
                         f"{fix}")
    if isinstance(data, torch.utils.data.DataLoader):
        raise UsageError(f"{what} is a DataLoader: pass its .dataset, a map-style dataset in the labels' order "
                         f"({batching})")
    if isinstance(data, torch.utils.data.IterableDataset) or not hasattr(data, "__len__") \
            or not hasattr(data, "__getitem__"):
        raise UsageError(f"{what} must be a tensor of images or a map-style dataset (with len() and indexing) in "
                         f"the labels' order, got a {type(data).__name__}, which cannot be read by index")


def shards_parameters(model):
    """Whether `model` holds parameters sharded between the ranks (FSDP's `fully_shard` or
    `FullyShardedDataParallel`, tensor parallel's DTensors): its forward is then a collective."""
    if not isinstance(model, torch.nn.Module) or not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FullyShardedDataParallel

    inner = getattr(model, "_orig_mod", model)
    if any(isinstance(module, FullyShardedDataParallel) for module in inner.modules()):
        return True
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch before 2.5
        from torch.distributed._tensor import DTensor
    return any(isinstance(parameter, DTensor) for parameter in inner.parameters())


def parameters_mark(model):
    """Each parameter's sum (a shard's, for a sharded one) as a float64 CPU tensor, None for a model
    without parameters: what tells a trained model from the one scored before. Not its buffers: a
    torch.func loop's forward in training mode moves the module's BatchNorm statistics while its
    weights stay as they were."""
    if not isinstance(model, torch.nn.Module):
        return None
    tensors = [getattr(t, "_local_tensor", t) for t in bare_model(model).parameters() if t.is_floating_point()]
    if not tensors:
        return None
    with torch.no_grad():
        return torch.stack([t.detach().sum(dtype=torch.float64) for t in tensors]).cpu()  # (no float64 copies)


def bare_model(model):
    """The module to score with: a DistributedDataParallel model's `.module` (its forward would start
    collectives the other ranks do not join while rank src scores alone), compiled or not."""
    ddp = torch.nn.parallel.DistributedDataParallel
    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper, without importing dynamo
    if isinstance(inner, ddp):
        return inner.module
    return model


def _bool_mask(mask, name):
    """`mask` as a bool tensor, else a UsageError (0.5 or indices read as a mask would be nonsense)."""
    values = torch.as_tensor(np.asarray(mask) if isinstance(mask, (list, tuple)) else mask)
    if values.dtype != torch.bool:
        raise UsageError(f"{name} must be a bool mask, one True/False per example (not {values.dtype} values: "
                         f"for indices, make a mask with mask[indices] = True)")
    return values


def _losses_on_cpu(losses):
    """Losses on the CPU in a dtype numpy reads (float32 for bfloat16 and float16), None kept."""
    losses = _on_cpu(losses)
    if losses is not None and losses.is_floating_point() and losses.dtype not in (torch.float32, torch.float64):
        losses = losses.float()
    return losses


def _world_size():
    """Processes in the initialised torch.distributed group (1 without one)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _on_cpu(scores):
    """Scores as CPU tensors (the selection runs on the host), None kept."""
    return None if scores is None else torch.as_tensor(scores).detach().cpu()
