"""Selection rules by name: the paper's coreset, its baselines, and rules beyond the paper.

A rule turns what the model says about each example (gradient estimates, clean losses) into a
`Selection` with the class budgets of `class_budgets`. One name works everywhere:
`coreaug train --strategy NAME`, `coreaug bench --strategies`, `CoresetAugmentation(strategy=)`.
A rule sees only what a user has (the model's outputs, the labels as given), never which labels
a benchmark flipped.

Adding a rule: write `select_x(labels, fraction, *, estimates, losses, balance, seed, knn)`
and register it with what it needs.
"""
import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np

from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError
from coreaug.registering import qualified_name, same_definition

from .baselines import per_class_selection, select_maxloss, select_random
from .budgets import class_members
from .checks import check_choice, check_features, check_fraction, check_int, check_labels, check_losses
from .coreset import DEFAULT_KNN, select_coreset
from .selection import Selection, check_selection


@dataclass(frozen=True)
class Rule:
    """A named selection rule.

    needs: the scores it reads, a subset of ("estimates", "losses"); empty for random.
    choose: (labels, fraction, *, estimates, losses, balance, seed, knn) -> Selection.
    summary: what the rule picks, in one line.
    warmup_share: share of the training epochs before the first model-based selection (random
        selections of the same budget until then): CRUST's warm-up.
    mixup: the strongly augmented copies are mixed with another selected example of their class.
    loss_history: the losses it is given are each example's mean over earlier selections and
        this one (`CoresetAugmentation` keeps the sums), not the current ones alone: "all" over
        every selection, "held-out" over those at which the example was outside the selection
        in use (in subset mode: not trained on since the last selection). "" for neither.
    """

    name: str
    needs: Tuple[str, ...]
    choose: Callable[..., Selection]
    summary: str
    warmup_share: float = 0.0
    mixup: bool = False
    loss_history: str = ""


RULES: Dict[str, Rule] = {}
NEEDS = ("estimates", "losses")


@keyword_only
def register_rule(name, needs=None, summary=None, *, warmup_share=0.0, mixup=False, loss_history=""):
    """Decorator: register `choose` as the rule `name` (see `Rule`). `needs` is checked here, at
    the decoration, so a misspelt need fails where it is written, not at the run's first selection.
    A name another rule holds (a built-in's, "coreset", "random") is refused, as are the
    references' ("full", "none"), which select nothing; registering the same function again (a
    notebook cell run twice) replaces it."""
    if not isinstance(name, str) or not name.strip() or callable(name):
        raise UsageError(f"register_rule needs a non-empty name, needs and a summary, as "
                         f"@register_rule(\"mine\", [\"losses\"], \"what it picks\"), got {name!r}")
    if name in ("full", "none"):
        raise UsageError(f"{name!r} is a reference strategy (everyone strongly augmented, or no one), which selects "
                         "nothing: register the rule under another name")
    if not isinstance(needs, (list, tuple, set, frozenset)) or any(need not in NEEDS for need in needs):
        raise UsageError(f"needs must be a list of some of {NEEDS} (empty for none), got {needs!r}")
    if not isinstance(summary, str):
        raise UsageError(f"summary must be a line saying what the rule picks, got {summary!r}")

    def decorate(choose):
        _check_signature(choose)
        taken = RULES.get(name)
        if taken is not None and not same_definition(taken.choose, choose):
            raise UsageError(f"a rule named {name!r} is already registered ({qualified_name(taken.choose)}); "
                             f"register {qualified_name(choose)} under another name")
        RULES[name] = Rule(name, tuple(needs), choose, summary, warmup_share, mixup, loss_history)
        return choose
    return decorate


def _check_signature(choose):
    """Refuse a rule that cannot be called as select_by_rule calls it, where it is decorated, not at
    a run's first selection (after its folder is made)."""
    if not callable(choose):
        raise UsageError(f"register_rule decorates a function, got {type(choose).__name__}")
    try:
        signature = inspect.signature(choose)
    except (TypeError, ValueError):  # no signature to read (a builtin): taken as it is
        return
    try:
        signature.bind(None, 0.5, estimates=None, losses=None, balance="equal", seed=0, knn=DEFAULT_KNN)
    except TypeError as exc:
        raise UsageError(f"rule {qualified_name(choose)} must take (labels, fraction, *, estimates, losses, balance, "
                         f"seed, knn), the arguments every selection passes ({exc}); add **_ for those it does "
                         "not read") from None


def _named(selection, name):
    return dataclasses.replace(selection, strategy=name)


@register_rule("coreset", ["estimates"], "the paper's weighted per-class facility location on gradient estimates")
def _coreset(labels, fraction, *, estimates, losses=None, balance="equal", seed=0, knn=20):
    return select_coreset(estimates, labels, fraction, balance=balance, knn=knn, tie_seed=seed)


@register_rule("random", [], "a uniformly random subset per class, weights 1")
def _random(labels, fraction, *, estimates=None, losses=None, balance="equal", seed=0, knn=20):
    return select_random(labels, fraction, balance=balance, seed=seed)


@register_rule("maxloss", ["losses"], "the highest-loss examples of each class, weights 1")
def _maxloss(labels, fraction, *, estimates=None, losses, balance="equal", seed=0, knn=20):
    return select_maxloss(losses, labels, fraction, balance=balance, tie_seed=seed)


def low_loss_mask(losses, labels, fraction, *, share=None, balance="equal", estimate="chance", tie_seed=None):
    """bool (n,): per class, the examples left after cutting its highest losses.

    `share` cuts that share of each class; None estimates it per class from the losses, by
    `estimate`: "chance", the examples whose label the model rates below chance (loss > ln C,
    C the number of classes among `labels`, which may be fewer than the model's outputs: a
    uniform guess among the classes it is trained on), or "split", the upper of the two groups that the best
    two-group split of the class's losses makes (`upper_group_size`). A class always keeps
    at least its budget (its lowest losses first; `tie_seed` as the selection's, `class_budgets`).
    """
    y = check_labels(labels)
    loss = check_losses(losses, y.size)
    classes, budgets, members_of = class_members(y, check_fraction(fraction), balance, tie_seed)
    keep = np.zeros(y.size, dtype=bool)
    chance = math.log(max(classes.size, 2))
    for members, budget in zip(members_of, budgets):
        order = members[np.argsort(loss[members], kind="stable")]
        if share is not None:
            cut = int(math.floor(share * members.size))
        elif estimate == "split":
            cut = upper_group_size(loss[order])
        else:
            cut = int((loss[members] > chance).sum())
        keep[order[:max(int(budget), members.size - cut)]] = True
    return keep


def upper_group_size(ascending):
    """How many of the sorted values `ascending` lie above the best split into two groups: the
    split that maximises the variance between the groups' means (Otsu's threshold in one
    dimension, equivalently two-means). 0 when all values are equal or there are fewer than two."""
    v = np.asarray(ascending, dtype=np.float64)
    n = v.size
    if n < 2 or v[-1] == v[0]:
        return 0
    below = np.arange(1, n)  # sizes of the lower group for each split point
    lower_sum = np.cumsum(v)[:-1]
    between = (lower_sum / below - (v.sum() - lower_sum) / (n - below)) ** 2 * below * (n - below)
    between[v[1:] == v[:-1]] = -1.0  # a split must fall between different values
    return int(n - below[int(np.argmax(between))])


@register_rule("coreset-lowloss", ["estimates", "losses"],
               "the coreset over each class's examples the model does not rate below chance (high losses cut first)")
def select_coreset_lowloss(labels, fraction, *, estimates, losses, balance="equal", seed=0, knn=20, share=None):
    """Facility location (`select_coreset`) on each class without its highest-loss examples
    (`low_loss_mask`): under label noise those are mostly the flipped labels."""
    keep = low_loss_mask(losses, labels, fraction, share=share, balance=balance, tie_seed=seed)
    return _named(select_coreset(estimates, labels, fraction, balance=balance, knn=knn, keep=keep, tie_seed=seed),
                  "coreset-lowloss")


@register_rule("coreset-history", ["estimates", "losses"],
               "the coreset over each class's examples of low loss averaged over every selection so far "
               "(the high group of a two-group split cut)", loss_history="all")
def select_coreset_history(labels, fraction, *, estimates, losses, balance="equal", seed=0, knn=20, share=None):
    """Facility location on each class without the examples whose mean loss over the selections
    so far falls in the class's high group (`low_loss_mask(estimate="split")`).

    `losses` are those means (`CoresetAugmentation` keeps them for a rule with `loss_history`).
    A label the model has found hard at every selection is more likely wrong than one it finds
    hard now: once the network memorises flipped labels their current losses fall, their means
    less (experiments/results/cifar10/noise-signal.md: AUC 0.68-0.72 against 0.57-0.68).
    """
    keep = low_loss_mask(losses, labels, fraction, share=share, balance=balance, estimate="split", tie_seed=seed)
    return _named(select_coreset(estimates, labels, fraction, balance=balance, knn=knn, keep=keep, tie_seed=seed),
                  "coreset-history")


@register_rule("coreset-heldout", ["estimates", "losses"],
               "for subset mode: as coreset-history, but each example's losses averaged only over the selections "
               "at which it was left out (not trained on)", loss_history="held-out")
def select_coreset_heldout(labels, fraction, *, estimates, losses, balance="equal", seed=0, knn=20, share=None):
    """`select_coreset_history` on held-out mean losses: `losses` average each example's clean
    losses over the selections at which it was outside the selection in use (its current loss
    where it never was). In subset mode the model trains on the selection alone, so a flipped
    label it has trained on loses its high loss and `coreset-history`'s mean keeps those low
    losses; held-out losses are free of that (cifar10 grid C-subset, where `coreset-lowloss`,
    whose current losses are mostly held-out ones in subset mode, beat full augmentation)."""
    return _named(select_coreset_history(labels, fraction, estimates=estimates, losses=losses, balance=balance,
                                         seed=seed, knn=knn, share=share), "coreset-heldout")


@register_rule("crust", ["estimates"],
               "CRUST-style: random until 20% of training, then the coreset without singleton clusters; "
               "copies mixed up within their class", warmup_share=0.2, mixup=True)
def select_crust(labels, fraction, *, estimates, losses=None, balance="equal", seed=0, knn=20):
    """The coreset with picks that stand for no one but themselves replaced (Mirzasoleiman et al.
    2020, CRUST: singleton clusters are mostly noisy labels). The warm-up and the mixup of copies
    are the trainer's (`Rule.warmup_share`, `Rule.mixup`)."""
    return _named(select_coreset(estimates, labels, fraction, balance=balance, knn=knn, drop_singletons=True,
                                 tie_seed=seed), "crust")


@register_rule("infobatch", ["losses"],
               "InfoBatch-style: every example above its class's mean loss, the rest of the budget "
               "drawn at random from below it; weights undo the sampling")
def select_infobatch(labels, fraction, *, estimates=None, losses, balance="equal", seed=0, knn=20):
    """Loss-proportional selection in the spirit of InfoBatch (Qin et al., ICLR 2024).

    Per class: the examples above the class's mean loss are all taken (a uniform sample of
    them when they outnumber the budget), the rest of the budget is a uniform sample of the
    others. Each pick is weighted by the inverse of its group's sampling rate (an unbiased
    estimate of the class's total), normalised to mean 1 over the selection. When the high group
    fills the budget, nothing below is sampled to stand for the rest, so its picks stand for the
    whole class (weight class size / picks). Either way, before the normalisation a class's
    weights sum to its size, so after it they sum in proportion to its size.
    """
    y = check_labels(labels)
    loss = check_losses(losses, y.size)
    rng = np.random.default_rng(seed)

    def pick(members, budget):
        high = loss[members] > loss[members].mean()
        groups = [members[high], members[~high]]
        take_high = min(budget, groups[0].size)
        out, weights = [], []
        for group, take in zip(groups, (take_high, budget - take_high)):
            if take == 0:
                continue
            out.append(rng.choice(group, size=take, replace=False))
            stands_for = members.size if take_high == budget else group.size  # the whole class, or its group
            weights.append(np.full(take, stands_for / take))
        return (np.concatenate(out), np.concatenate(weights)) if out else (members[:0], np.zeros(0))

    return per_class_selection(y, fraction, balance, "infobatch", pick, seed)


@register_rule("ccs", ["estimates"],
               "CCS-style coverage: the hardest 10% (gradient norm) cut, then an even spread over 50 difficulty strata")
def select_ccs(labels, fraction, *, estimates, losses=None, balance="equal", seed=0, knn=20, hard_cut=0.1, strata=50):
    """Coverage-centric selection in the spirit of CCS (Zheng et al., ICLR 2023).

    Per class: difficulty is the norm of the gradient estimate; the hardest `hard_cut` share is
    cut (kept only when the class would otherwise fall short of its budget); the remaining range
    of difficulty is split into `strata` equal-width strata, and the budget is spread over them
    as evenly as their sizes allow (smallest strata first, strata of one size in an order drawn
    from `seed`: a budget below the strata count goes to strata drawn at random, not to the
    hardest), uniformly at random within each. Weights 1.
    """
    x = check_features(estimates)
    y = check_labels(labels, n=x.shape[0])
    score = np.linalg.norm(np.asarray(x, dtype=np.float32), axis=1)
    rng = np.random.default_rng(seed)

    def pick(members, budget):
        order = members[np.argsort(score[members], kind="stable")]
        kept = order[:max(budget, order.size - int(math.floor(hard_cut * order.size)))]
        s = score[kept]
        edges = np.linspace(s.min(), s.max(), strata + 1)[1:-1]
        stratum = np.searchsorted(edges, s, side="right")
        sizes = np.bincount(stratum, minlength=strata)
        quota = np.zeros(strata, dtype=np.int64)
        remaining = budget
        drawn = rng.permutation(strata)  # ties of size in a seeded order (by index, the hardest got the last picks)
        for position, k in enumerate(drawn[np.argsort(sizes[drawn], kind="stable")]):  # strata, not examples
            quota[k] = min(sizes[k], remaining // (strata - position))
            remaining -= quota[k]
        chosen = [rng.choice(kept[stratum == k], size=quota[k], replace=False) for k in range(strata) if quota[k]]
        out = np.concatenate(chosen) if chosen else kept[:0]
        if out.size < budget:  # floors left a few over: draw them from the rest of the kept
            rest = np.setdiff1d(kept, out)
            out = np.concatenate([out, rng.choice(rest, size=budget - out.size, replace=False)])
        return out, np.ones(out.size)

    return per_class_selection(y, fraction, balance, "ccs", pick, seed)


LOSS_FILTERED = {"coreset-lowloss": select_coreset_lowloss, "coreset-history": select_coreset_history,
                 "coreset-heldout": select_coreset_heldout}


def check_loss_filter(strategy, loss_filter):
    """`loss_filter` if it fits `strategy` (a share in [0, 1) for the loss-filtered coresets, or None)."""
    if loss_filter is None:
        return None
    if strategy not in LOSS_FILTERED:
        raise UsageError(f"loss_filter applies to strategies {', '.join(map(repr, LOSS_FILTERED))} only, "
                         f"not {strategy!r}")
    if isinstance(loss_filter, bool) or not isinstance(loss_filter, (int, float)) or not 0 <= loss_filter < 1:
        raise UsageError(f"loss_filter must be a share in [0, 1) or None (estimated), got {loss_filter!r}")
    return float(loss_filter)


def select_by_rule(name, labels, fraction, *, estimates=None, losses=None, balance="equal", seed=0, knn=20,
                   loss_filter=None):
    """The `Selection` of rule `name` (see `RULES`), given the scores it needs. `loss_filter`
    (the loss-filtered coresets only) is the share of each class's highest losses cut; None
    estimates it. `seed` (an integer >= 0) seeds the rules that draw at random, and every rule's
    ties between classes for the budget's leftover examples (`class_budgets`). What the rule
    returns must be a `Selection` of unique indices into the labels with finite weights >= 0
    (`check_selection`), else a UsageError naming the rule."""
    check_choice(name, "strategy", tuple(RULES))
    check_int(seed, "seed", 0)
    rule = RULES[name]
    given = {"estimates": estimates, "losses": losses}
    missing = [need for need in rule.needs if given[need] is None]
    if missing:
        raise UsageError(f"strategy {name!r} needs {' and '.join(missing)} from the model; "
                         "pass them (or logits), or call start_epoch(epoch, model, data)")
    if check_loss_filter(name, loss_filter) is not None:
        selection = LOSS_FILTERED[name](labels, fraction, estimates=estimates, losses=losses, balance=balance,
                                        seed=seed, knn=knn, share=loss_filter)
    else:
        selection = rule.choose(labels, fraction, estimates=estimates, losses=losses, balance=balance, seed=seed,
                                knn=knn)
    # A registered rule is the user's code: what it returns is checked as a saved selection is
    # (negative weights would train by gradient ascent, NaN ones look like a too-high lr).
    return check_selection(selection, check_labels(labels).size, f"rule {name!r} returned")
