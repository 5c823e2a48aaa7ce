"""`coreaug select`: a selection from saved features and labels, written as .npz."""
import os
import zipfile

import click
import numpy as np

import coreaug
from coreaug.errors import UsageError
from coreaug.selection.checks import BALANCES, check_labels
from coreaug.selection.coreset import BACKENDS, DEFAULT_KNN
from coreaug.selection.rules import RULES, check_loss_filter, select_by_rule

from .errors import user_errors


NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def _load_npy(path, name):
    """The array that np.save wrote to `path`. An .npz archive or any other file is a UsageError that
    says what the file is: np.load would return an archive's key names, or blame pickled data."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
        if magic == NPY_MAGIC:
            return np.load(path, allow_pickle=False)
        if not magic.startswith(ZIP_MAGIC):
            raise OSError("it does not start with the .npy header; write the array with np.save(path, array)")
        with np.load(path, allow_pickle=False) as archive:
            keys = ", ".join(archive.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UsageError(f"--{name} {path} is not a readable .npy file ({exc})") from None
    raise UsageError(f"--{name} {path} is an .npz archive (arrays: {keys}), not a .npy array; "
                     "save the one array with np.save(path, array)")


def _needing(score):
    return ", ".join(name for name, rule in RULES.items() if score in rule.needs)


LONG_SELECTION = 20_000  # examples from which a selection may take seconds to minutes (a class's kNN search)


@click.command("select")
@click.option("--features", "features_path", type=click.Path(dir_okay=False),
              help=f"(n, d) .npy of gradient estimates ({_needing('estimates')}).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False), required=True, help="(n,) .npy of integer labels.")
@click.option("--fraction", type=float, required=True, help="Subset size as a fraction of n, in (0, 1].")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="Where to write the .npz.")
@click.option("--strategy", type=click.Choice(list(RULES)), default="coreset", show_default=True,
              help="A selection rule (the manual's Training page describes each).")
@click.option("--losses", "losses_path", type=click.Path(dir_okay=False),
              help=f"(n,) .npy of losses ({_needing('losses')}); for coreset-history and coreset-heldout, "
                   "each example's mean loss over earlier selections (held-out ones for coreset-heldout), "
                   "which this command does not compute: the two read the file alike.")
@click.option("--balance", type=click.Choice(BALANCES), default="equal", show_default=True,
              help="Per-class budgets: equal (each class the same number, the paper's; with classes of unequal "
                   "sizes, small ones weigh more) or proportional (each class in proportion to its size; the "
                   "smallest get a pick at some selections, at their share's rate).")
@click.option("--knn", type=int, default=DEFAULT_KNN, show_default=True, help="Neighbours per example in the graph.")
@click.option("--backend", type=click.Choice(BACKENDS), default="own", show_default=True,
              help="Facility location of --strategy coreset (other strategies refuse apricot): own kernel, "
                   "or apricot-select, a cross-check whose greedy may score lower when similarities tie (it "
                   "compiles at each class's fit: about a second and several MB a class).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random draws and of the order in which classes that tie get the budget's "
                   "leftover examples, as select_by_rule(seed=); a training run with --seed T selects "
                   "at epoch E with T * 100003 + E.")
@click.option("--loss-filter", type=float,
              help="coreset-lowloss, coreset-history, coreset-heldout: share of each class's highest losses cut "
                   "[default: estimated, as coreaug train estimates it].")
@user_errors
def select(features_path, labels_path, fraction, out_path, strategy, losses_path, balance, knn, backend, seed,
           loss_filter):
    """Select a weighted subset and write it to OUT (.npz with keys indices, weights)."""
    if not out_path.strip():  # the folder's name, refused by the OS as "[Errno 21]"
        raise UsageError("--out is empty; give the .npz file to write, such as subset.npz")
    # ~ as the shell would expand it: --out=~/x and --labels=~/l.npy reach us as typed
    out_path, features_path, labels_path, losses_path = (
        None if path is None else os.path.expanduser(path) for path in (out_path, features_path, labels_path,
                                                                         losses_path))
    out_dir = os.path.dirname(os.path.abspath(out_path))
    above = out_dir
    while not os.path.exists(above) and os.path.dirname(above) != above:  # the nearest part there: a file?
        above = os.path.dirname(above)
    if os.path.exists(above) and not os.path.isdir(above):
        raise UsageError(f"--out {out_path}: {above} is a file, not a folder; give a path in a folder")
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out {out_path}: folder {out_dir} does not exist; create it first")
    if loss_filter is not None:
        check_loss_filter(strategy, loss_filter)  # before the files are read: one line naming the flag
    if backend != "own" and strategy != "coreset":
        raise UsageError(f"--backend {backend} applies to --strategy coreset only; drop it for --strategy {strategy}")
    labels = _load_npy(labels_path, "labels")
    given = {"estimates": features_path, "losses": losses_path}
    flags = {"estimates": "--features", "losses": "--losses"}
    for need in RULES[strategy].needs:
        if given[need] is None:
            raise UsageError(f"{flags[need]} is required with --strategy {strategy}")
    for need in given:  # a file the rule would not read is refused, as --backend apricot with another rule is
        if given[need] is not None and need not in RULES[strategy].needs:
            raise UsageError(f"{flags[need]} is not read by --strategy {strategy}; drop it (the rules that read "
                             f"it: {_needing(need)})")
    features = None if features_path is None else _load_npy(features_path, "features")
    losses = None if losses_path is None else _load_npy(losses_path, "losses")
    labels = check_labels(labels)  # before the line below counts its classes (a 0-d array has no length)
    if fraction > 1 and float(fraction).is_integer():  # a count: the API's advice says "count / n", n is known here
        count, n = int(fraction), len(labels)
        advice = (f"to select {count:,} of these {n:,} examples pass --fraction {count / n:.6g}" if count < n
                  else f"there are {n:,} examples; --fraction 1 selects them all")
        raise UsageError(f"--fraction must be in (0, 1], got {fraction:g}; {advice}")
    if len(labels) >= LONG_SELECTION:  # no output until the summary: say what it is doing
        classes = len(np.unique(labels))
        click.echo(f"selecting {fraction:g} of {len(labels):,} examples in {classes:,} class{'es' * (classes != 1)} "
                   f"({strategy}) ...", err=True)
    if strategy == "coreset":  # select_by_rule("coreset") with a backend
        result = coreaug.select_coreset(features, labels, fraction, balance=balance, knn=knn, backend=backend,
                                        tie_seed=seed)
    else:
        result = select_by_rule(strategy, labels, fraction, estimates=features, losses=losses, balance=balance,
                                seed=seed, knn=knn, loss_filter=loss_filter)
    result.save(out_path)
    click.echo(result.summary())
    click.echo(f"wrote {out_path}")
