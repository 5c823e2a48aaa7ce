"""`python -m coreaug ...` runs the same click app as the `coreaug` console script."""
from coreaug.cli.main import main

if __name__ == "__main__":
    main()
