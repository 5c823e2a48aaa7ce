"""The one error type of a user's mistake, so that it can be told apart from a failure; and the
commands' one-line form of coreaug's warnings."""
import os
import re
import sys
import warnings


class UsageError(ValueError):
    """A mistake in what the user gave: a setting, a flag, a file or a folder. The message names
    it, says what was wrong and what to do.

    A ValueError, so ``except ValueError`` still catches it. The CLI prints it as one line on
    stderr with exit code 2; any other ValueError (from torch, or one of coreaug's own
    invariants) is a failure, and keeps its traceback.
    """


class UnreadableImage(UsageError):
    """An image file that cannot be decoded. ``what`` is the short form, "cannot read image PATH
    (why)", for callers that give their own advice after it (predict's --skip-bad-images).
    ``name`` replaces "image PATH" for an image that is no file (a PIL image made in memory).

    It pickles whole (raised in a process pool's worker, it reaches the caller); one message alone,
    ``UnreadableImage(message)``, is how torch's DataLoader raises a worker's error again in the main
    process, so that ``except UsageError`` still catches it there (``path`` is then None, and
    ``what`` the worker's short form)."""

    def __init__(self, path, reason=None, advice="give image files (JPEG, PNG, WebP, BMP, GIF, TIFF)", name=None):
        self.path, self.reason, self.advice, self.name = path, reason, advice, name
        if reason is None:  # a message alone: torch's re-raise ends it with "...UnreadableImage: <what>; <advice>"
            message = str(path)
            self.path = None
            last = message.strip().splitlines()[-1] if message.strip() else ""
            self.what = last.partition("UnreadableImage: ")[2].rpartition("; ")[0] or message
            super().__init__(message)
            return
        self.what = f"cannot read {name or f'image {path}'} ({reason})"
        super().__init__(f"{self.what}; {advice}")

    def __reduce__(self):
        if self.reason is None:  # a message alone
            return type(self), (str(self),)
        return type(self), (self.path, self.reason, self.advice, self.name)


class TrainingDiverged(RuntimeError):
    """Training made the model's weights NaN or infinite (a learning rate too high, say): the
    run cannot go on, and its later epochs would only train on NaN."""


def path_given(value, name, what="a path"):
    """`value` as a str path (bytes decoded as os.fsdecode does), or the UsageError naming `name`
    when it is no path (5, None, a tensor, an empty string or one of spaces that names nothing), in place
    of os.fspath's TypeError or the OS's puzzling message about "" from deep inside."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise UsageError(f"{name} must be {what} (a string or a pathlib.Path), got {type(value).__name__}")
    path = os.fsdecode(value)
    if empty_path(path):
        raise UsageError(f"{name} is empty; give {what}")
    return path


def empty_path(path):
    """Whether the str `path` names nothing: "" (the working folder to the OS), or spaces alone that
    name no file (a file named " " is a path)."""
    return not path.strip() and not (path and os.path.lexists(path))


def first_line(exc):
    """An exception's reason as one line: its message's first line, or its type's name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def mismatch_reason(exc):
    """load_state_dict's RuntimeError as one line: its first two mismatches (its first line only
    says "Error(s) in loading state_dict for Sequential:")."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    return "; ".join(lines[1:3]) if len(lines) > 1 else first_line(exc)


def chain(error, handled=None, suppressed=False):
    """`error` and the errors it was raised from (`__cause__`, else `__context__`), each once, up to
    `handled` (the exception a caller was already handling: its own, not the one at hand). With
    `suppressed`, a `raise ... from None` ends the chain there, as its traceback does."""
    seen = set()
    while error is not None and error is not handled and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or (None if suppressed and error.__suppress_context__ else error.__context__)


OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory", re.IGNORECASE)  # torch's CPU and CUDA allocators


def out_of_memory(error):
    """Whether `error` is the process running out of host or device memory: Python's MemoryError, or
    torch's allocators' RuntimeError (torch.cuda.OutOfMemoryError among them)."""
    return isinstance(error, MemoryError) or isinstance(error, RuntimeError) and bool(OUT_OF_MEMORY.search(str(error)))


CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 control characters but tab and line feed


def without_controls(text):
    """`text` with its control characters written as escapes (ESC as \\x1b): a name from someone
    else's folder or run (a file or class named with an escape sequence) printed on a terminal
    would otherwise retitle or clear it."""
    return CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def one_line(exc):
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_PYTHON_FORMAT = warnings.formatwarning


def listed(words) -> str:
    """Words as a message lists them: "a", "a and b", "a, b and c"."""
    words = list(words)
    return " and ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} and {words[-1]}"


def not_applicable(given, applies_to, why) -> UsageError:
    """The refusal of the settings (or flags) `given`, which apply to `applies_to` only, `why` saying
    what this run has instead: "a and b apply to X; Y: leave them out"."""
    several = len(given) > 1
    return UsageError(f"{listed(given)} appl{'y' if several else 'ies'} to {applies_to}; {why}: leave "
                      f"{'them' if several else 'it'} out")


class CallerWarning(UserWarning):
    """A coreaug warning attributed to the user's call (`files.warn_at_caller`), not to coreaug's line:
    the commands still show it as their one line. Being the caller's, a filter by module does not
    reach it; filter by this category (`warnings.filterwarnings("ignore", category=coreaug.CallerWarning)`)."""


class CachesKept(CallerWarning):
    """The earlier decoded caches of a changed folder, kept on disk: said by whichever process built
    the new cache (under torchrun, not always rank 0, whose warnings alone a command shows)."""


def one_line_warning(message, category, filename, lineno, line=None):
    """A `warnings.formatwarning` for the commands (and their bench workers): a warning from
    coreaug's code, its package or its commands, as their other notes read, "warning: ...", not
    Python's file:line and source line; any other warning as Python shows it."""
    commands = [sys.modules.get(name) for name in ("coreaug.cli.main", "cli.main")]  # (installed, or a checkout's)
    ours = [os.path.dirname(__file__)] + [os.path.dirname(module.__file__) for module in commands if module]
    if issubclass(category, CallerWarning) or \
            os.path.abspath(filename).startswith(tuple(os.path.abspath(folder) + os.sep for folder in ours)):
        return f"warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)
