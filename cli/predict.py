"""`coreaug predict`: a finished run's classes and probabilities for image files."""
import csv
import json
import sys
import warnings

import click
import torch

import coreaug
from coreaug.errors import UnreadableImage, UsageError, first_line
from coreaug.training.trained import image_files

from .errors import one_process, user_errors

CHUNK = 256  # images read and classified at a time, so a large folder never sits in memory


@click.command("predict")
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes shown per image, most probable first (at most the run's classes); five, a "
                   "ranking to read, where Python's TrainedModel.predict gives one (top_k=1).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: image,rank,class,probability rows; json: a list of {image, classes, probabilities}.")
@click.option("--device", default="cpu", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:N.")
@click.option("--skip-bad-images", is_flag=True,
              help="Leave unreadable images out (each named on stderr, then counted) instead of stopping. "
                   "Without it, a file that is not an image stops predict before anything is printed; "
                   "a damaged one found only when decoded stops it after the rows of the images before it.")
@user_errors
def predict(run, images, top_k, fmt, device, skip_bad_images):
    """Classify IMAGES (files, or folders of them: their images, recursively, sorted, without hidden
    files, `._name` or `__MACOSX/`, as training reads a folder) with the model of the finished run RUN."""
    one_process("predict")
    trained = coreaug.load_run(run, device=device)
    files = image_files(images)
    if not skip_bad_images:
        _check_headers(files)
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(["image", "rank", "class", "probability"])
    rows, skipped, done = [], 0, 0
    for start in range(0, len(files), CHUNK):
        chunk, pixels = [], []
        for path in files[start:start + CHUNK]:
            try:
                pixels.append(trained.read(path))
                chunk.append(path)
            except UnreadableImage as exc:  # the whole chunk is read before any of its rows is written
                what = exc.what
                if not skip_bad_images:
                    printed = f"the rows of the {done} images before it were printed; " if writer and done else ""
                    raise UsageError(f"{what}; {printed}pass --skip-bad-images to leave unreadable images out") \
                        from None
                click.echo(f"skipped: {what}", err=True)
                skipped += 1
        if not pixels:
            continue
        for path, p in zip(chunk, trained.predict(torch.stack(pixels), top_k=top_k)):
            if writer:
                writer.writerows([path, rank, name, f"{prob:.6f}"]
                                 for rank, (name, prob) in enumerate(zip(p.classes, p.probabilities), 1))
            else:
                rows.append({"image": path, "classes": p.classes, "probabilities": p.probabilities})
        done += len(chunk)
    if not writer:
        _write_json(rows)
    _flush_or_exit()
    if skipped:
        click.echo(f"skipped {skipped} unreadable image{'s' if skipped != 1 else ''} of {len(files)}", err=True)


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


def _check_headers(files):
    """UsageError naming the first file whose header is not an image's: a cheap pass (no pixel is
    decoded) that stops predict before any row is printed. A file damaged past its header is
    found when decoded."""
    from PIL import Image

    from coreaug.data.image_folder import NOT_REGULAR, special_file

    for path in files:
        if special_file(path):
            raise UnreadableImage(path, NOT_REGULAR, "give image files, or pass --skip-bad-images to leave "
                                  "unreadable ones out")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixels are not decoded here
                with Image.open(path):
                    pass
        except Exception as exc:  # noqa: BLE001 - Pillow's errors for a file that is not an image vary
            raise UnreadableImage(path, first_line(exc), "give image files (JPEG, PNG, WebP, BMP, GIF, TIFF), or pass "
                                  "--skip-bad-images to leave unreadable ones out") from None
