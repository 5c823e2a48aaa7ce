"""Turn a user's mistake into one line on stderr and exit code 2, never a traceback."""
import errno
import functools
import sys

import click

from coreaug.errors import TrainingDiverged, UsageError
from coreaug.files import DISK_ERRORS

# The API's UsageError, and the OS's word for a path the user gave that is missing or not
# usable. Any other error, a ValueError from torch or from coreaug's invariants included,
# is a failure and keeps its traceback.
USER_ERRORS = (UsageError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def fail(message, code=2):
    """Print `error: message` on stderr and exit with `code` (2: the user's mistake)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def user_errors(command):
    """Decorator: the API's UsageError/FileNotFoundError become `fail(...)`."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as exc:
            text = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.strerror}: {exc.filename}"
            fail(" ".join(text.split()))
        except OSError as exc:
            if exc.errno not in DISK_ERRORS + (errno.ENAMETOOLONG,):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            advice = "; free some space and run it again (a run goes on from its last epoch with --resume)" \
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            fail(f"{exc.strerror}{where}{advice}")
        except TrainingDiverged as exc:  # not the user's mistake as such, and no traceback helps: exit 1
            fail(str(exc), code=1)
    return wrapper
