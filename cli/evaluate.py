"""`coreaug evaluate`: a finished run's accuracy on a dataset's test split, overall and per class."""
import json
import sys
import unicodedata

import click

from coreaug.data import is_folder_dataset
from coreaug.data.cache_key import CACHE_DIR_TEXT
from coreaug.data.registry import read_in_place_error
from coreaug.errors import UsageError
from coreaug.selection.selection import LISTED_CLASSES

from .errors import check_stdout_open, one_process, refuse_empty, user_errors, without_controls
from .predict import MODEL_HELP, is_terminal, load_named


@click.command("evaluate")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--dataset", help="A registered dataset or a folder of images, read as training reads it; a "
                                "folder without train/ is scored whole (its val/ or test/, or its class folders) "
                                "[default: the run's own].")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset (or its standard folder).")
@click.option("--download/--no-download", default=False, show_default=True, help="Download missing files (checksummed).")
@click.option("--skip-bad-images/--no-skip-bad-images", default=None,
              help="Folder datasets: leave unreadable images out instead of stopping [default: as the run did].")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="The run's own folder dataset: where its images are decoded to [default: the run's cache "
                   f"folder, or, where it is gone or cannot be written, {CACHE_DIR_TEXT}].")
@click.option("--device", default="cpu", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:N.")
@click.option("--model", metavar="PACKAGE.MODULE:FUNCTION", default=None, help=MODEL_HELP)
@click.option("--all-classes", is_flag=True,
              help=f"Text: a line for every class [default: every class up to {LISTED_CLASSES}; past that, the "
                   f"spread and the {LISTED_CLASSES} lowest].")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object, {dataset, scored, accuracy (a fraction), correct, total, per_class: {class: "
                   "[correct, total]}, unscored: [class], skipped: [why]}, for scripts.")
@user_errors
def evaluate(run, dataset, data_dir, download, skip_bad_images, cache_dir, device, model, all_classes, fmt):
    """Accuracy of the finished run RUN's model on the test split of --dataset, overall and per class
    (a folder other than the run's own: its val/ or test/, else all its labelled images). Text:
    "accuracy A% (correct/total) on the SPLIT of DATASET", then a line a class (past
    20 classes, their spread and the 20 lowest); unreadable images skipped are named on stderr."""
    one_process("evaluate")
    if not run.strip():  # (the OS's " is not a folder")
        raise UsageError("RUN is empty; give the folder of a finished coreaug run (the --out of coreaug train)")
    refuse_empty(dataset=dataset, data_dir=data_dir, cache_dir=cache_dir, model=model)
    check_stdout_open("the accuracy", "coreaug evaluate RUN > accuracy.txt")
    trained = load_named(run, model, device)
    dataset = dataset or trained.config["dataset"]
    given = [flag for flag, value in (("--data-dir", data_dir), ("--download", download)) if value]
    if given and is_folder_dataset(dataset):  # as the API refuses them, in the flags' names
        raise read_in_place_error(dataset, given)
    result = trained.evaluate(dataset, data_dir=data_dir, download=download, skip_bad_images=skip_bad_images,
                              cache_dir=cache_dir)
    for what in result.skipped:  # as predict names them
        click.echo(f"skipped: {without_controls(what)}", err=True)
    if result.skipped:
        count, seen = len(result.skipped), len(result.skipped) + result.total
        click.echo(f"skipped {count} unreadable image{'s' if count != 1 else ''} of {seen}", err=True)
    if fmt == "json":
        click.echo(json.dumps({"dataset": dataset, "scored": result.scored, "accuracy": result.accuracy,
                               "correct": result.correct, "total": result.total,
                               "per_class": {name: list(counts) for name, counts in result.per_class.items()},
                               "unscored": result.unscored, "skipped": result.skipped}))  # (ASCII: odd bytes escaped)
        return
    click.echo(f"accuracy {result.accuracy:.2%} ({result.correct}/{result.total}) on the {result.scored} of {dataset}")
    shown = without_controls if is_terminal(sys.stdout) else str  # (to a file, click drops ANSI colour codes)
    per_class = {shown(name): counts for name, counts in result.per_class.items()}
    if len(per_class) > LISTED_CLASSES and not all_classes:  # 20,000 lines would bury the few a reader wants
        rates = sorted(correct / total for correct, total in per_class.values())
        click.echo(f"  per class, {len(rates)} classes: lowest {rates[0]:.2%}, median {rates[len(rates) // 2]:.2%}, "
                   f"highest {rates[-1]:.2%}; the {LISTED_CLASSES} lowest (every class: --all-classes):")
        lowest = sorted(per_class.items(), key=lambda item: item[1][0] / item[1][1])[:LISTED_CLASSES]
        per_class = dict(lowest)
    width = max(map(columns, per_class), default=0)
    for name, (correct, total) in per_class.items():
        click.echo(f"  {name}{' ' * (width - columns(name))}  {correct / total:.2%} ({correct}/{total})")
    if result.unscored:  # a class missing from the table would pass unseen among hundreds
        more = f" and {len(result.unscored) - 10} more" if len(result.unscored) > 10 else ""
        click.echo(f"  no images of {len(result.unscored)} of the run's classes here: "
                   f"{', '.join(map(shown, result.unscored[:10]))}{more}")


def columns(text):
    """The terminal columns `text` takes: two for a wide character (CJK, most emoji), none for a
    combining mark, one for the others."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
