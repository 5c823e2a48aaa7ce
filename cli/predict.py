"""`coreaug predict`: a finished run's classes and probabilities for image files."""
import codecs
import contextlib
import csv
import json
import os
import shlex
import sys

import click
import torch
from tqdm import tqdm

import coreaug
from coreaug.errors import UsageError
from coreaug.models.registry import is_import_path
from coreaug.training.trained import UntrustedModel, all_unreadable, check_headers, image_files, reading_bar

from .errors import check_stdout_open, one_process, refuse_empty, user_errors, without_controls, writes_utf8

MODEL_HELP = ("A run trained with --model package.module:function: that path, to import it again (its code runs: "
              "name it for a run you trust). Without it such a run is refused; a run of a built-in model needs none.")


def load_named(run, model, device):
    """`coreaug.load_run` for a command: the import path the user named (--model), if any, and the
    refusal of a run whose code was not named worded with the flag."""
    if model is not None and not is_import_path(model):
        raise UsageError(f"--model {model!r} is not an import path (package.module:function): it names the code of "
                         "a run trained with one, to import it again")
    try:
        return coreaug.load_run(run, model=model, device=device)
    except UntrustedModel as exc:
        raise UsageError(exc.line(f"--model {shlex.quote(exc.path)}")) from None


CHUNK = 256  # images read and classified at a time, so a large folder never sits in memory


def _source_name(files_from):
    """The --files-from file's name as the user gave it: a closed stdin is read as os.devnull."""
    given = getattr(files_from, "_file", files_from)  # (click's wrapper of stdin)
    closed = getattr(sys.stdin, "coreaug_closed", False) and given is sys.stdin.buffer
    return "<stdin> (closed)" if closed else files_from.name


class _ListFile(click.File):
    """click.File, with `~` as the home folder (--files-from=~/list.txt reaches us as typed)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.startswith("~"):
            value = os.path.expanduser(value)
        return super().convert(value, param, ctx)


@click.command("predict")
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--files-from", type=_ListFile("rb"), default=None,
              help="Also classify the image files and folders listed in this file, one path a line ('-': "
                   "stdin, e.g. find ... | coreaug predict RUN --files-from -): one header and one model for "
                   "any number, where xargs would split the list into several commands.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes shown per image, most probable first (at most the run's classes); five, a "
                   "ranking to read, where Python's TrainedModel.predict gives one (top_k=1).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: image,rank,class,probability rows; json: a list of {image, classes, probabilities}.")
@click.option("--device", default="cpu", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:N.")
@click.option("--model", metavar="PACKAGE.MODULE:FUNCTION", default=None,
              help=MODEL_HELP)
@click.option("--skip-bad-images", is_flag=True,
              help="Leave unreadable images out (each named on stderr, then counted) instead of stopping, and "
                   "--files-from lines whose file is gone; exit code 2 still when none can be read (and for a "
                   "path typed here that does not exist). Without it, a file that is not an image stops "
                   "predict before anything is printed; a damaged one found only when decoded stops it "
                   "after the rows of the images before it.")
@user_errors
def predict(run, images, files_from, top_k, fmt, device, model, skip_bad_images):
    """Classify IMAGES (files, or folders of them: their images, recursively, sorted, without hidden
    files, `._name` or `__MACOSX/`, as training reads a folder) with the model of the finished run RUN.
    From 512 images a bar on stderr counts those read."""
    one_process("predict")
    if not run.strip():  # (the OS's " is not a folder")
        raise UsageError("RUN is empty; give the folder of a finished coreaug run (the --out of coreaug train)")
    refuse_empty(model=model)
    check_stdout_open("the predictions table", "coreaug predict RUN IMAGES > predictions.csv")
    listed = _listed(files_from) if files_from is not None else []
    if not images and not listed:
        raise UsageError("give IMAGES (files or folders), or a list of them with --files-from"
                         + (f" ({_source_name(files_from)} lists none)" if files_from is not None else ""))
    trained = load_named(run, model, device)
    # a listed file gone since it was listed is skipped as unreadable; a path typed here that is not there, a typo
    files = image_files(list(images), arguments="IMAGES") + image_files(listed, missing_ok=skip_bad_images)
    if not skip_bad_images:
        check_headers(files, "give image files (JPEG, PNG, WebP, BMP, GIF, TIFF), or pass --skip-bad-images to "
                             "leave unreadable ones out")
    if fmt == "csv" and writes_utf8(sys.stdout):  # a name not UTF-8 (an old archive's Latin-1) written as its bytes, as
        with contextlib.suppress(AttributeError, ValueError):  # ls does; another encoding escapes what it cannot write
            sys.stdout.reconfigure(errors="surrogateescape")
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    shown = without_controls if is_terminal(sys.stdout) else str  # a file gets the names as they are
    rows, skipped, done = [], [], 0  # the CSV header comes with the first rows: none when no image can be read
    with reading_bar(len(files), "predicting") as bar:
        for start in range(0, len(files), CHUNK):  # the whole chunk is read before any of its rows is written
            chunk = files[start:start + CHUNK]
            before = len(skipped)
            try:
                kept, pixels = trained.read_readable(chunk, skip_bad_images, skipped)
            except UsageError as error:
                if not hasattr(error, "what"):  # not an unreadable image's
                    raise
                printed = f"the rows of the {done} images before it were printed; " if writer and done else ""
                raise UsageError(f"{error.what}; {printed}pass --skip-bad-images to leave unreadable images out") \
                    from None
            for what in skipped[before:]:  # above a terminal's bar, not into it
                tqdm.write(f"skipped: {without_controls(what)}", file=sys.stderr)
            bar.update(len(chunk))
            if not pixels:
                continue
            if writer and not done:
                writer.writerow(["image", "rank", "class", "probability"])
            for i, p in zip(kept, trained.predict(torch.stack(pixels), top_k=top_k)):
                if writer:
                    # six significant digits: 0.000084 and 0.000084 of 20,000 classes were ranks 2-4 alike
                    writer.writerows([shown(chunk[i]), rank, shown(name), f"{prob:.6g}"]
                                     for rank, (name, prob) in enumerate(zip(p.classes, p.probabilities), 1))
                else:
                    rows.append({"image": chunk[i], "classes": p.classes, "probabilities": p.probabilities})
            done += len(kept)
    if skipped and len(skipped) == len(files):  # nothing classified is no success: exit 2, as in Python
        _flush_or_exit()  # (nothing printed: no CSV header, no JSON list, as when predict stops)
        raise UsageError(f"{all_unreadable(len(files), 'image', skipped[0])}; there is nothing to predict")
    if not writer:
        _write_json(rows)
    _flush_or_exit()
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image{'s' if len(skipped) != 1 else ''} of {len(files)}",
                   err=True)


def is_terminal(stream):
    """Whether `stream` is a terminal (where a name's escape sequence would act rather than show)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def _listed(lines):
    """The paths a --files-from file lists, one a line (blank lines left out, the line's own spaces kept),
    as the file system names them (bytes that are not UTF-8 kept, as a folder's scan keeps them); a
    UTF-8 byte-order mark before the first (Notepad's, PowerShell's) is no part of it."""
    lines = list(lines)
    if lines and lines[0].startswith(codecs.BOM_UTF8):
        lines[0] = lines[0][len(codecs.BOM_UTF8):]
    if lines and lines[0].startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UsageError("--files-from takes a list of paths in UTF-8 (or the file system's bytes); this one is "
                         "UTF-16 (saved by PowerShell or Notepad?): save it as UTF-8")
    paths = [os.fsdecode(line.rstrip(b"\r\n")) for line in lines if line.strip()]
    if any("\0" in path for path in paths):
        raise UsageError("--files-from takes one path a line; this list holds NUL characters (find ... -print0?): "
                         "list them without -print0")
    return paths


def _write_json(rows):
    """json.dumps(rows, indent=1) on stdout, an element at a time (as CSV's rows are written), so
    that a reader who goes away fails a later write rather than leaving a whole list half read."""
    if not rows:
        sys.stdout.write("[]\n")
        return
    for i, row in enumerate(rows):
        sys.stdout.write(("[\n" if i == 0 else ",\n") + json.dumps([row], indent=1)[2:-2])
    sys.stdout.write("\n]\n")


def _flush_or_exit():
    """Flush stdout; exit 1 (as click does when a write fails on a closed pipe) when its reader has
    gone: the last rows may have fitted in the pipe before it went, so no write failed."""
    from .train import stdout_closed

    sys.stdout.flush()
    if stdout_closed():
        sys.exit(1)
