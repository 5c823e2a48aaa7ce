"""What a selection holds, logged with every selection: noisy labels, losses, overlap, objective."""
import numpy as np


def selection_diagnostics(indices, weights, n, previous=None, losses=None, noisy=None, class_objectives=None):
    """Figures about one selection, for metrics.jsonl (None where the run cannot know them).

    Takes the selected `indices` and their `weights` out of `n` examples, the `previous`
    selection's indices, per-example `losses` (n,) on clean images when the selection pass
    computed them, the bool `noisy` (n,) marking labels flipped by `label_noise`, and the
    facility-location objective per class. Returns a dict:
    selection_noisy_fraction (share of picks with a flipped label) and its weighted share,
    selection_loss_selected / selection_loss_rest (mean loss of picks and of the others),
    selection_overlap (share of picks also picked last time), selection_objective (per class).
    """
    picked = np.zeros(n, dtype=bool)
    picked[np.asarray(indices)] = True
    w = np.asarray(weights, dtype=np.float64)
    out = {"selection_noisy_fraction": None, "selection_noisy_weighted": None,
           "selection_loss_selected": None, "selection_loss_rest": None,
           "selection_overlap": None, "selection_objective": None}
    if not picked.any():  # an empty selection (a rule of one's own may return one): no figure of the picks
        indices = None
    if noisy is not None and bool(np.asarray(noisy).any()) and indices is not None:
        flipped = np.asarray(noisy)[np.asarray(indices)]
        out["selection_noisy_fraction"] = float(flipped.mean())
        out["selection_noisy_weighted"] = float((flipped * w).sum() / w.sum()) if w.sum() > 0 else None
    if losses is not None and indices is not None:
        values = np.asarray(losses, dtype=np.float64)
        out["selection_loss_selected"] = float(values[picked].mean())
        out["selection_loss_rest"] = float(values[~picked].mean()) if (~picked).any() else None
    if previous is not None and indices is not None:
        out["selection_overlap"] = float(np.isin(np.asarray(indices), np.asarray(previous)).mean())
    if class_objectives is not None:
        out["selection_objective"] = [float(v) for v in class_objectives]
    return out

