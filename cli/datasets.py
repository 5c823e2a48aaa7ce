"""`coreaug datasets`: list the datasets, or find (and optionally download) one and describe it."""
import os

import click

import coreaug
from coreaug.data.cache_key import CACHE_DIR_TEXT
from coreaug.errors import UsageError, path_given
from coreaug.files import size_text

from .errors import refuse_empty, user_errors


@click.command("datasets")
@click.argument("name", required=False)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset (or its standard folder).")
@click.option("--download/--no-download", default=False, show_default=True, help="Download missing files (checksummed).")
@click.option("--clear-cache", is_flag=True,
              help="Remove decoded caches of folders of images: NAME's (a folder), or all of them without NAME.")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help=f"Where folders' images are decoded to [default: {CACHE_DIR_TEXT}].")
@click.option("--image-size", type=int,
              help="A folder: square size to decode to, as `coreaug train --image-size` "
                   "[default: the images' own size when they share one, else 64].")
@click.option("--store-size", type=int,
              help="A folder: size the images are stored at, as `coreaug train --store-size` [default: a "
                   "run's with --weak auto: 256/224 x --image-size from 128 px on, else --image-size]. Above "
                   "--image-size it serves only runs with resized crops (--weak resized-crop below 128 px).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="A folder without val/ or test/: share of each class held out, as in `coreaug train`.")
@click.option("--skip-bad-images", is_flag=True, help="A folder: leave unreadable images out (counted).")
@click.option("--workers", type=int, help="A folder: processes decoding images [default: the usable cores, up to 8].")
@user_errors
def datasets(name, data_dir, download, clear_cache, cache_dir, image_size, store_size, val_fraction, skip_bad_images,
             workers):
    """Without NAME, list the datasets; with NAME, load it (downloading with --download) and describe it.

    A folder of images is decoded into its cache, the one `coreaug train --dataset NAME` with the
    same --image-size, --store-size, --val-fraction and --cache-dir reads: so a cache can be built
    ahead of a run."""
    from coreaug.data.image_cache import default_workers
    from coreaug.data import is_folder_dataset
    from coreaug.data.image_folder import DEFAULT_IMAGE_SIZE, LARGE_IMAGES, default_store_size, own_image_size
    from coreaug.training.config import refuse_own_split_fraction
    from coreaug.data.registry import reads_no_files, reads_no_files_error

    refuse_empty(data_dir=data_dir, cache_dir=cache_dir)
    if name is not None:  # (clear_caches would say 'source is empty')
        path_given(name, "NAME", "the folder whose caches to clear, or leave it out to clear every cache" if clear_cache
                   else "a dataset's name or a folder of images, or leave it out to list the datasets")
    ctx = click.get_current_context()

    def given(*params):
        """The flags of `params` the user gave (a flag left at its default is not named, nor --no-download,
        which asks for nothing: train takes it with a folder too)."""
        return [f"--{param.replace('_', '-')}" for param in params
                if ctx.get_parameter_source(param) is not click.core.ParameterSource.DEFAULT
                and not (param == "download" and not download)]

    if clear_cache:
        _check_clears_a_folder(name)  # before the flags: no advice to drop flags that cannot make it work
        flags = given("image_size", "store_size", "val_fraction", "skip_bad_images", "workers", "download", "data_dir")
        if flags:  # a user naming a size expects only that cache to go; every size's would
            raise UsageError(f"--clear-cache removes every decoded cache of {name or 'every folder'}, whatever its "
                             f"size and split: leave {', '.join(flags)} out")
        _clear(name, cache_dir)
        return
    if name is None:
        click.echo("\n".join(coreaug.available_datasets()))
        return
    if is_folder_dataset(name):  # decoded to the cache, not into memory
        ignored = given("data_dir", "download")
        if ignored:
            raise UsageError(f"{', '.join(ignored)} {'apply' if len(ignored) > 1 else 'applies'} to a built-in "
                             f"dataset; {name} is a folder of images, read where it is: leave "
                             f"{'them' if len(ignored) > 1 else 'it'} out")
        refuse_own_split_fraction(name, val_fraction, "--val-fraction", typed=bool(given("val_fraction")))
        if image_size is None:
            image_size = own_image_size(name) or DEFAULT_IMAGE_SIZE
        if store_size is None:  # what a run with --weak auto stores
            store_size = default_store_size(image_size, image_size >= LARGE_IMAGES)
        data = coreaug.load_dataset(name, on_disk=True, cache_dir=cache_dir, image_size=image_size,
                                    store_size=store_size, val_fraction=val_fraction, skip_bad_images=skip_bad_images,
                                    workers=default_workers() if workers is None else workers)
        folder = os.path.dirname(data.train_images.path)
        taken = sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
        click.echo(f"decoded cache: {folder} ({size_text(taken)})")
    else:
        ignored = given("image_size", "store_size", "val_fraction", "cache_dir", "skip_bad_images", "workers")
        if reads_no_files(name) and given("data_dir", "download"):
            raise reads_no_files_error(name, given("data_dir", "download"))
        if ignored:
            several = len(ignored) > 1
            raise UsageError(f"{', '.join(ignored)} {'apply' if several else 'applies'} to a folder of images; "
                             f"{name} is a built-in dataset, loaded as it is: leave {'them' if several else 'it'} out")
        data = coreaug.load_dataset(name, data_dir, download=download)
    click.echo(f"{data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images of shape "
               f"{tuple(data.image_shape)}, {data.num_classes} classes, from {data.source}")
    click.echo(class_sizes(data))


SHOWN_CLASSES = 12  # classes listed one by one; more are summed up by their range and smallest ones


def class_sizes(data):
    """One line of the images each class has, train/test: "per class (train/test): cat 120/14, dog
    30/3"; of many classes, the range and the smallest ones (an imbalance to see before training)."""
    import torch

    counts = [torch.bincount(torch.as_tensor(labels).long().flatten(), minlength=data.num_classes).tolist()
              for labels in (data.train_labels, data.test_labels)]
    names = list(data.class_names or map(str, range(data.num_classes)))
    if data.num_classes <= SHOWN_CLASSES:
        return "per class (train/test): " + ", ".join(f"{name} {train}/{test}"
                                                      for name, train, test in zip(names, *counts))
    fewest = sorted(range(data.num_classes), key=lambda label: (counts[0][label], label))[:3]
    return (f"per class: {min(counts[0])}-{max(counts[0])} train, {min(counts[1])}-{max(counts[1])} test images "
            f"(fewest training images: {', '.join(f'{names[label]} {counts[0][label]}' for label in fewest)})")


def _check_clears_a_folder(name):
    """UsageError when NAME is a built-in dataset (or names something that is not a folder):
    --clear-cache removes the decoded caches of folders of images."""
    from coreaug.data import is_folder_dataset
    from coreaug.data.registry import names_registered_dataset

    if name is not None and not is_folder_dataset(name):
        registered = names_registered_dataset(name)
        if registered or os.path.lexists(os.path.expanduser(name)):
            hint = f" (write ./{name} for the folder of that name)" if os.path.isdir(os.path.expanduser(name)) else ""
            what = f"{name} is a built-in dataset{hint}" if registered else f"{name} is not a folder"
            raise UsageError(f"--clear-cache removes the decoded caches of a folder of images; {what} "
                             "(leave NAME out to remove every decoded cache)")
        # else a folder deleted since its caches were built: they are found by its path


def _clear(name, cache_dir):
    from coreaug.data.image_cache import clear_caches, default_cache_dir

    count, freed = clear_caches(cache_dir, name)
    if name is not None and not count and not os.path.isdir(os.path.expanduser(name)):
        raise UsageError(f"{name} is not a folder, and no decoded cache in {cache_dir or default_cache_dir()} "
                         "was built from a folder of that path")
    caches = "cache" if count == 1 else "caches"
    whose = f" of {name}" if name else ""
    where = cache_dir or default_cache_dir()
    click.echo(f"removed {count} decoded {caches}{whose} ({size_text(freed)}) from {where}")
