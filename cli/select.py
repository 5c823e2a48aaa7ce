"""`coreaug select`: a selection from saved features and labels, written as .npz."""
import os

import click
import numpy as np

import coreaug
from coreaug.errors import UsageError
from coreaug.selection.coreset import DEFAULT_KNN

from .errors import user_errors


def _load_npy(path, name):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--{name} {path} is not a readable .npy file ({exc})") from None


@click.command("select")
@click.option("--features", "features_path", type=click.Path(dir_okay=False), help="(n, d) .npy of gradient estimates (coreset).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False), required=True, help="(n,) .npy of integer labels.")
@click.option("--fraction", type=float, required=True, help="Subset size as a fraction of n, in (0, 1].")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="Where to write the .npz.")
@click.option("--strategy", type=click.Choice(["coreset", "random", "maxloss"]), default="coreset", show_default=True)
@click.option("--losses", "losses_path", type=click.Path(dir_okay=False), help="(n,) .npy of losses (maxloss).")
@click.option("--balance", type=click.Choice(["equal", "proportional"]), default="equal", show_default=True)
@click.option("--knn", type=int, default=DEFAULT_KNN, show_default=True, help="Neighbours per example in the graph.")
@click.option("--backend", type=click.Choice(["own", "apricot"]), default="own", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random strategy.")
@user_errors
def select(features_path, labels_path, fraction, out_path, strategy, losses_path, balance, knn, backend, seed):
    """Select a weighted subset and write it to OUT (.npz with keys indices, weights)."""
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out {out_path}: folder {out_dir} does not exist; create it first")
    labels = _load_npy(labels_path, "labels")
    if strategy == "coreset":
        if features_path is None:
            raise UsageError("--features is required with --strategy coreset")
        result = coreaug.select_coreset(_load_npy(features_path, "features"), labels, fraction,
                                        balance=balance, knn=knn, backend=backend, seed=seed)
    elif strategy == "random":
        result = coreaug.select_random(labels, fraction, balance=balance, seed=seed)
    else:
        if losses_path is None:
            raise UsageError("--losses is required with --strategy maxloss")
        result = coreaug.select_maxloss(_load_npy(losses_path, "losses"), labels, fraction, balance=balance)
    result.save(out_path)
    click.echo(result.summary())
    click.echo(f"wrote {out_path}")
