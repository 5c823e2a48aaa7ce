"""`python -m coreaug ...` runs the same click app as the `coreaug` console script."""
from coreaug.checkout import find_checkouts_cli

find_checkouts_cli()  # a source tree after a non-editable `pip install .`: its cli/ beside coreaug/

from coreaug.cli.main import main  # noqa: E402

if __name__ == "__main__":
    main()
