"""`coreaug predict`: a finished run's classes and probabilities for image files."""
import csv
import json
import sys

import click

import coreaug
from coreaug.training.trained import image_files

from .errors import user_errors

CHUNK = 256  # images read and classified at a time, so a large folder never sits in memory


@click.command("predict")
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes shown per image, most probable first (at most the run's classes).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: image,rank,class,probability rows; json: a list of {image, classes, probabilities}.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N.")
@user_errors
def predict(run, images, top_k, fmt, device):
    """Classify IMAGES (files, or folders of them) with the model of the finished run RUN."""
    trained = coreaug.load_run(run, device=device)
    files = image_files(images)
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(["image", "rank", "class", "probability"])
    rows = []
    for start in range(0, len(files), CHUNK):
        for p in trained.predict(files[start:start + CHUNK], top_k=top_k):
            if writer:
                writer.writerows([p.image, rank, name, f"{prob:.6f}"]
                                 for rank, (name, prob) in enumerate(zip(p.classes, p.probabilities), 1))
            else:
                rows.append({"image": p.image, "classes": p.classes, "probabilities": p.probabilities})
    if not writer:
        click.echo(json.dumps(rows, indent=1))
