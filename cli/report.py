"""`coreaug report`: any grid's runs (folder or archive) as Markdown + CSV tables and a plot."""
import os
import shlex

import click

import coreaug.bench
from coreaug.errors import UsageError, path_given

from .errors import user_errors


def _source(argument):
    """PATH or PATH=LABEL; a path that exists as given wins over a split at '='."""
    if "=" not in argument or os.path.exists(os.path.expanduser(argument)):
        return argument, ""
    path, _, label = argument.rpartition("=")
    if not path.strip() or not label:
        raise UsageError(f"{argument!r} must be PATH or PATH=LABEL (e.g. grids/A-40=40 epochs)")
    return path, label


def _command(paths, out, target, baseline, paper_figures, epoch_seconds, subsets, name, title):
    words = ["coreaug", "report", *paths, "--out", out]
    for flag, value in (("--target", target), ("--baseline", baseline),
                        ("--paper-figures", paper_figures), ("--epoch-seconds", epoch_seconds),
                        ("--subsets", subsets), ("--name", None if name == "report" else name), ("--title", title)):
        if value is not None:
            words += [flag, repr(value) if isinstance(value, float) else value]  # as given: 0.5365, not rounded
    return shlex.join(words)


@click.command("report")
@click.argument("paths", nargs=-1, required=True, metavar="PATH [PATH=LABEL ...]")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for NAME.md, NAME-runs.csv, NAME-cells.csv and NAME.png.")
@click.option("--target", type=float,
              help="Accuracy for time-to-target, in (0, 1] [default: 99% of full's mean final accuracy; "
                   "without a finished full run, 99% of the best final accuracy].")
@click.option("--baseline",
              help="Strategy the paired differences are taken against; comma-separated for more tables "
                   "(full and none pair with the references); one the runs lack is refused "
                   "[default: random, when the runs have it].")
@click.option("--paper-figures", type=click.Path(dir_okay=False),
              help="CSV strategy,subset,accuracy (percent, 75.3 not 0.753: a figure of at most 1 is refused "
                   "as a fraction; subset empty for full and none): a column of published figures and their "
                   "share of full's gain.")
@click.option("--epoch-seconds", type=click.Path(dir_okay=False),
              help="CSV strategy,subset,seconds_per_epoch measured elsewhere (e.g. a quiet machine; positive "
                   "seconds): times become epochs x these instead of the runs' own. An optional label column "
                   "gives another grid's (PATH=LABEL) cells their own rates; without a row of their own they "
                   "take the first grid's.")
@click.option("--subsets", help="Only these fractions (and the references), comma-separated; a fraction no grid "
                                "has is refused.")
@click.option("--name", default="report", show_default=True, help="Stem of the files written (not empty).")
@click.option("--title", help="Heading of the Markdown [default: NAME].")
@user_errors
def report(paths, out, target, baseline, paper_figures, epoch_seconds, subsets, name, title):
    """Tables of a grid: accuracy per cell, paired differences with 95% t-intervals, share of
    full's gain, seconds per epoch and time-to-target, selection diagnostics, a plot.

    PATH is a grid folder (the --out of `coreaug bench`) or an archive from `coreaug archive`.
    PATH=LABEL adds another grid's runs as rows "<strategy>, LABEL", compared with that grid's
    own baseline and references where it has them. Runs that are missing or unfinished are
    listed in the report; the rest is still written.
    """
    path_given(paths[0], "PATH", "a grid folder or a grid archive (.runs.jsonl.xz)")  # (write_report: 'path is empty')
    sources = [_source(p) for p in paths]
    for path, label in sources[1:]:
        path_given(path, "a PATH=LABEL", "another grid's folder or archive, and its label")
    if sources[0][1]:
        raise UsageError(f"the first PATH is the grid the others are compared with and takes no label; "
                         f"give {sources[0][0]} first without =LABEL")
    for path, label in sources[1:]:
        if not label:
            raise UsageError(f"another grid {path} needs a label for its rows: give it as {path}=LABEL")
    try:
        wanted = None if subsets is None else [float(s) for s in subsets.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--subsets must be a comma-separated list like 0.1,0.3, got {subsets!r}") from None
    result = coreaug.bench.write_report(
        sources[0][0], out=out, also=sources[1:], target=target, baseline=baseline, paper_figures=paper_figures,
        epoch_seconds=epoch_seconds, subsets=wanted, name=name, title=title,
        command=_command(paths, out, target, baseline, paper_figures, epoch_seconds, subsets, name, title))
    lacking = len(result.problems) - result.missing_runs  # lines of cells that lack a seed another cell has
    notes = ([f"{result.missing_runs} run{'s' * (result.missing_runs != 1)} missing or unfinished"]
             if result.missing_runs else []) + (
        [f"{lacking} cell{'s lack' if lacking != 1 else ' lacks'} a seed"] if lacking else [])
    notes += result.pooling  # ("runs trained on 1 and 2 CPU threads pooled", ...)
    note = f"; {', '.join(notes)} (listed in the report)" if notes else ""
    cells = len(result.cells)
    click.echo(f"{result.runs} run{'s' * (result.runs != 1)} in {cells} cell{'s' * (cells != 1)}{note}; "
               f"wrote {', '.join(result.files.values())}" + (f" ({result.no_plot})" if result.no_plot else ""))
