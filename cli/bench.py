"""`coreaug bench`: a grid of training runs and its speed-up tables."""
import click

import coreaug.bench
from coreaug.bench.tables import read_run
from coreaug.errors import UsageError

from coreaug.training.config import SELECTING

from .errors import user_errors
from .train import make_config, train_options


def _list(flag, text, convert=str):
    try:
        return [convert(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be a comma-separated list like 0.1,0.3, got {text!r}") from None


def _report(run, status, position, total):
    prefix = f"[{position}/{total}] {run.name}:"
    if status == "skipped":
        click.echo(f"{prefix} finished before, skipped ({run.folder})")
        return
    row = read_run(run)  # the figures the tables will show
    resumed = " resumed," if status == "resumed" else ""
    click.echo(f"{prefix}{resumed} final {row['final_accuracy']:.2%} (best {row['best_accuracy']:.2%}), "
               f"{row['total_seconds']:.1f} s training, {row['selection_seconds']:.1f} s selection")


@click.command("bench")
@click.option("--subsets", default="0.1,0.3,0.5", show_default=True, help="Selection fractions, comma-separated.")
@click.option("--strategies", default="coreset,random,maxloss", show_default=True,
              help="Selecting strategies (selection rules), comma-separated: " + ", ".join(SELECTING) + ".")
@click.option("--references", default="none,full", show_default=True,
              help="Reference runs, comma-separated (full: augment everyone; none: no one).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per cell: --seed, --seed + 1, ...")
@click.option("--target", type=float,
              help="Accuracy for time-to-target, in (0, 1] [default: 99% of full's final accuracy].")
@train_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Grid folder: runs/<run>/, results.csv, results.md, accuracy_vs_time.png.")
@user_errors
def bench(subsets, strategies, references, seeds, target, out, **flags):
    """Train strategies x subsets x seeds plus references; tabulate speed-ups and accuracy."""
    result = coreaug.bench.run_grid(
        make_config(**flags), out, subsets=_list("--subsets", subsets, float),
        strategies=_list("--strategies", strategies), references=_list("--references", references),
        seeds=seeds, target=target, report=_report)
    written = ", ".join(result.files.values())
    click.echo(f"{len(result.rows)} runs ({result.trained} trained now), target {result.target:.2%}; wrote {written}"
               + ("" if "png" in result.files else " (install matplotlib for accuracy_vs_time.png)"))
