"""Entry point of the `coreaug` console script."""
import atexit
import contextlib
import sys
import warnings

import click

from coreaug import __version__
from coreaug.errors import one_line_warning

from .archive import archive
from .bench import bench
from .errors import fail, open_closed_streams, writes_utf8
from .datasets import datasets
from .evaluate import evaluate
from .predict import predict
from .report import report
from .select import select
from .train import train


# click 8.2+ raises this UsageError for a group run without arguments; older clicks print the help themselves.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coreaug")
def app():
    """coreaug: strongly augment a re-selected subset of each class (random by default, or the paper's weighted
    coreset) instead of every example."""


app.add_command(datasets)
app.add_command(bench)
app.add_command(select)
app.add_command(train)
app.add_command(predict)
app.add_command(evaluate)
app.add_command(report)
app.add_command(archive)


def _raw_names_on_stdout():
    """Let stdout write a file name that is not valid UTF-8 (Python holds its odd bytes as
    surrogates, "caf\\udce9") as its own bytes, as `ls` does: a UTF-8 locale's strict stdout
    raised UnicodeEncodeError at predict's CSV row or evaluate's class line of such a name. A
    stdout of another encoding (cp1252; ASCII under the C locale without UTF-8 mode, whose
    surrogateescape handler writes only such bytes) writes what it cannot encode as escapes (\\u732b)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and getattr(sys.stdout, "errors", None) in ("strict", "surrogateescape"):
        utf8 = writes_utf8(sys.stdout)
        with contextlib.suppress(ValueError, OSError):  # (a stream that takes no new error handler)
            reconfigure(errors="surrogateescape" if utf8 else "backslashreplace")


def main(args=None):
    """Run the app; a usage mistake (bad flag or value) is one line on stderr and exit code 2."""
    shown, warnings.formatwarning = warnings.formatwarning, one_line_warning
    open_closed_streams()
    _raw_names_on_stdout()
    try:
        app.main(args=args, standalone_mode=False)
        if args is None:  # this process's own command, done: a stop in its teardown is no failure (at exit:
            from coreaug.bench.workers import stops_ignored_once_finished  # a caller that goes on keeps its stops)

            atexit.register(stops_ignored_once_finished)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except NO_ARGS_IS_HELP as exc:  # a bare `coreaug` (click >= 8.2 raises it): the help, not an error
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.UsageError as exc:
        fail(exc.format_message())
    except click.Abort:
        sys.exit(130)
    finally:  # (main called in a process that goes on: a test, a notebook)
        warnings.formatwarning = shown
