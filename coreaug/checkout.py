"""Finding the CLI of a source tree whose coreaug/ shadows an installed coreaug."""
import os


def find_checkouts_cli():
    """Make `coreaug.cli` importable where this tree's coreaug/ shadows the installed package.

    `python -m coreaug` and `python -m pytest` put the current folder first on sys.path: in a
    source checkout or an unpacked sdist after a non-editable `pip install .`, `coreaug` is then
    the tree's coreaug/, whose CLI lies beside it in cli/ (setup.cfg installs that folder as
    coreaug.cli). Anything else that stops `import coreaug.cli` is raised as it is.
    """
    import coreaug

    try:
        import coreaug.cli  # noqa: F401
    except ModuleNotFoundError as exc:
        checkout = os.path.dirname(os.path.dirname(os.path.abspath(coreaug.__file__)))
        if exc.name != "coreaug.cli" or not os.path.isfile(os.path.join(checkout, "cli", "main.py")):
            raise
        coreaug.__path__.append(checkout)
