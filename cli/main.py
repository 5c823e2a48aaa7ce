"""Entry point of the `coreaug` console script."""
import click

from coreaug import __version__

from .select import select


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coreaug")
def app():
    """coreaug: augment a weighted coreset instead of every example."""


app.add_command(select)


def main():
    app()
