"""Progress on stderr: tqdm's redrawn bar on a terminal (and, redrawn less often, in a notebook);
elsewhere (a log file, `nohup`, a batch job), where the bar's carriage-return frames would make one
endless line, a plain line now and then."""
import sys
import time

from tqdm import tqdm

from coreaug.files import size_text

PLAIN_PROGRESS_SECONDS = 60  # how often a plain progress line is written where stderr is no terminal


def say(line):
    """`line` on stdout, above any progress bar, and flushed: a log file or a pipe (`> log`, `| tee`,
    a batch job), where stdout is block-buffered, gets each line as it happens, not ~8 KB later (and a
    closed pipe is found at this line)."""
    tqdm.write(line)
    sys.stdout.flush()


KERNEL_BAR_SECONDS = 5.0  # how often a bar in a Jupyter kernel redraws: a notebook run headless (nbclient,
# papermill) keeps each frame as an output of its own


def in_a_kernel():
    """Whether stderr is a Jupyter kernel's stream."""
    return type(sys.stderr).__module__.startswith("ipykernel.")


def bar_seconds():
    """The least time between a bar's redraws: tqdm's 0.1 s, KERNEL_BAR_SECONDS in a Jupyter kernel."""
    return KERNEL_BAR_SECONDS if in_a_kernel() else 0.1


def stderr_is_terminal():
    """Whether stderr is a terminal, or a Jupyter kernel's stream (a notebook shows a bar's
    carriage-return frames as one line redrawn), where a progress bar may redraw itself."""
    if in_a_kernel():  # (its isatty() is False: no bar, a line a minute)
        return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class PlainProgress:
    """A tqdm stand-in for where stderr is no terminal: `update` writes "description: done/total
    unit (share)" at most every PLAIN_PROGRESS_SECONDS (bytes as KiB/MiB/GiB)."""

    def __init__(self, total, description, unit):
        self.total, self.description, self.unit, self.n = total, description, unit, 0
        self.shown = time.perf_counter()

    def update(self, count):
        self.n += count
        now = time.perf_counter()
        if now - self.shown >= PLAIN_PROGRESS_SECONDS:
            self.shown = now
            tqdm.write(f"{self.description}: {self.text()}", file=sys.stderr)

    def text(self):
        amount = size_text if self.unit == "B" else str
        done = amount(self.n) if self.total is None else f"{amount(self.n)}/{amount(self.total)}"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        return f"{done}{'' if self.unit == 'B' else ' ' + self.unit}{share}"

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(total, description, unit, disable=False, **tqdm_options):
    """tqdm's bar on a terminal (or none when `disable`), a PlainProgress elsewhere."""
    if disable or stderr_is_terminal():
        return tqdm(total=total, desc=description, unit=unit, disable=disable,
                    **{"mininterval": bar_seconds(), **tqdm_options})
    return PlainProgress(total, description, unit)
