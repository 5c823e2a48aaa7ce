"""`python -m coreaug ...` runs the same click app as the `coreaug` console script."""
import os

try:
    from coreaug.cli.main import main
except ModuleNotFoundError as exc:
    # In a source checkout after a non-editable `pip install .`, the checkout's coreaug/ (the
    # current directory comes first on sys.path) shadows the installed one, and its CLI lies beside
    # it in cli/ (setup.cfg installs that folder as coreaug.cli): find coreaug.cli there.
    import coreaug

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(coreaug.__file__)))
    if exc.name != "coreaug.cli" or not os.path.isfile(os.path.join(checkout, "cli", "main.py")):
        raise
    coreaug.__path__.append(checkout)
    from coreaug.cli.main import main

if __name__ == "__main__":
    main()
