"""`coreaug datasets`: list the datasets, or find (and optionally download) one and describe it."""
import click

import coreaug

from .errors import user_errors


@click.command("datasets")
@click.argument("name", required=False)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset (or its standard folder).")
@click.option("--download/--no-download", default=False, show_default=True, help="Download missing files (checksummed).")
@user_errors
def datasets(name, data_dir, download):
    """Without NAME, list the datasets; with NAME, load it (downloading with --download) and describe it."""
    if name is None:
        click.echo("\n".join(coreaug.available_datasets()))
        return
    from coreaug.data.image_folder import is_image_folder

    if is_image_folder(name) and name not in coreaug.available_datasets():  # decoded to the cache, not into memory
        data = coreaug.load_dataset(name, on_disk=True)
    else:
        data = coreaug.load_dataset(name, data_dir, download=download)
    click.echo(f"{data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images of shape "
               f"{tuple(data.image_shape)}, {data.num_classes} classes, from {data.source}")
