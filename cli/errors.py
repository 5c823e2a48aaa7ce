"""Turn a user's mistake into one line on stderr and exit code 2, never a traceback."""
import codecs
import errno
import functools
import os
import re
import sys

import click

from coreaug.errors import TrainingDiverged, UsageError, out_of_memory, without_controls
from coreaug.files import DISK_ERRORS

# The API's UsageError, and the OS's word for a path the user gave that is missing or not
# usable. Any other error, a ValueError from torch or from coreaug's invariants included,
# is a failure and keeps its traceback.
USER_ERRORS = (UsageError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def writes_utf8(stream):
    """Whether `stream` encodes as UTF-8 (where a name's undecodable bytes can go out as they are)."""
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "utf-8"
    except LookupError:
        return False


def program_words():
    """How to run coreaug again, as this process was run: `coreaug`, or where it runs as `python -m
    coreaug` (a cron job's or a job script's venv, not on PATH) this Python's path with `-m coreaug`."""
    root = click.get_current_context().find_root()
    if root.info_name and root.info_name.endswith("-m coreaug"):  # (click's name for a module run)
        return [sys.executable, "-m", "coreaug"]
    return ["coreaug"]


def open_closed_streams():
    """A standard stream closed when coreaug started (`>&-`, `<&-`: a daemon's or a job launcher's)
    as os.devnull (sys.stdout was None: a run stopped at its first epoch line with an AttributeError,
    and `--files-from -` met click's RuntimeError); a command whose output is stdout refuses it
    (`check_stdout_open`)."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")
        sys.stdin.coreaug_closed = True
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        sys.stdout.coreaug_closed = True


def check_stdout_open(what, example):
    """UsageError where stdout was closed at the start: `what` (the command's output) would go nowhere."""
    if getattr(sys.stdout, "coreaug_closed", False):
        raise UsageError(f"stdout is closed, and {what} is written to it: send it to a file ({example})")


def fail(message, code=2):
    """Print `error: message` on stderr and exit with `code` (2: the user's mistake)."""
    click.echo(f"error: {without_controls(message)}", err=True)
    sys.exit(code)


def one_process(command):
    """UsageError when launched by torchrun with several processes: `command` runs whole in one (every
    process would print its whole output)."""
    world = os.environ.get("WORLD_SIZE", "1")  # with RANK: torchrun's (a WORLD_SIZE left in a job script alone is not)
    if world.strip().isdigit() and int(world) > 1 and "RANK" in os.environ:
        raise UsageError(f"coreaug {command} runs in one process and cannot be launched by torchrun "
                         f"(WORLD_SIZE={world}): each process would print it whole; run it without torchrun")


def refuse_empty(**values):
    """UsageError for an option typed empty (`--cache-dir "$UNSET"`), which the command would read as
    left out and act on its default (clearing every cache, scoring the run's own dataset)."""
    for name, value in values.items():
        if isinstance(value, str) and not value.strip():
            what = "a folder" if name.endswith("_dir") else "a registered dataset's name or a folder" \
                if name == "dataset" else "an import path, package.module:function"
            raise UsageError(f"--{name.replace('_', '-')} is empty; give {what}, or leave it out for its default")


def user_errors(command=None, *, again="run it again"):
    """Decorator: the API's UsageError/FileNotFoundError become `fail(...)`, and so does a disk that
    cannot take a file (full, over quota, read-only, file too large), naming the file where the OS
    did. `again`: what the user does once space is freed, for the command it wraps (train: its
    --resume; bench: the same command, which continues the grid). Used bare or as
    `@user_errors(again=...)`."""
    if command is None:
        return functools.partial(user_errors, again=again)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as exc:
            text = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.strerror}: {exc.filename}"
            fail(joined_lines(as_flags(text) if isinstance(exc, UsageError) else text) + _from_environment(exc))
        except OSError as exc:
            if exc.errno not in DISK_ERRORS + (errno.ENAMETOOLONG,):
                raise
            fail(disk_error_line(exc, again) + _from_environment(exc))
        except TrainingDiverged as exc:  # not the user's mistake as such, and no traceback helps: exit 1
            fail(str(exc), code=1)
        except (MemoryError, RuntimeError) as exc:  # torch's allocators' (CPU and CUDA), Python's
            if not out_of_memory(exc):
                raise
            fail(out_of_memory_line(exc, again), code=1)
    return wrapper


# Folders torch takes from the environment and makes as it imports its compiler (torch.optim's constructor
# imports it, so an eager run too): a path the user never typed on this command line.
TORCH_FOLDERS = {"TORCHINDUCTOR_CACHE_DIR": "torch's compile cache", "TRITON_CACHE_DIR": "triton's cache"}


def _from_environment(exc):
    """" (the folder of torch's compile cache, which $TORCHINDUCTOR_CACHE_DIR names: ...)" where the
    OSError `exc` names a folder an environment variable of `TORCH_FOLDERS` gave, or one above it
    (making it made them), else "": not a path inside it (a run's --out there is the user's own)."""
    path = getattr(exc, "filename", None)
    if not isinstance(path, str):
        return ""
    for variable, what in TORCH_FOLDERS.items():
        folder = os.path.abspath(os.environ.get(variable) or os.sep)
        if folder != os.sep and (folder + os.sep).startswith(os.path.abspath(path).rstrip(os.sep) + os.sep):
            return (f" (the folder of {what}, which ${variable} names: set it to a folder this user can write, "
                    "or unset it)")
    return ""


def out_of_memory_line(exc, again):
    """The line for a run that ran out of host or device memory (a 40-line traceback through torch's
    allocator said no more), with the settings that use less, and the process's address-space limit
    (ulimit -v: a cluster's h_vmem) where one is set."""
    from coreaug.training.inputs import address_space_limit

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    soft = address_space_limit()
    limit = f"; this process may use {soft / 2 ** 30:.1f} GiB (ulimit -v)" if soft is not None else ""
    ctx = click.get_current_context(silent=True)
    flags = {param.name for param in ctx.command.params} if ctx is not None else set()
    less = [option for name, option in (("batch_size", "a smaller --batch-size"), ("stream", "for an image folder "
            "--stream always (its decoded images are otherwise held in memory)")) if name in flags]
    raise_it = "raise the limit (ulimit -v)" if limit else ""
    if less:
        how = f"use less with {' or '.join(less)}{f', or {raise_it}' if raise_it else ''}, then {again}"
    else:
        how = f"{raise_it or 'free some memory'} and {again}"
    return f"out of memory ({first[:200]}){limit}: {how}"


def joined_lines(text):
    """`text` on one line: each line break, with the spaces around it, becomes one space; the spaces
    inside a line (a file name's run of spaces: "a  b.png") are kept."""
    return re.sub(r"[ \t]*[\r\n]+[ \t]*", " ", text).strip()


LISTED_AFTER_FLAGS = re.compile(r"(?:--[\w-]+(?:, | and ))+(\w+)\b")  # a one-word name in a list of flags


def as_flags(text):
    """`text` (an API's message) with the settings it names by their Python names written as this
    command's flags, as the command line's user typed them: those with an underscore (compile_mode,
    select_every: --compile-mode) wherever they stand, one-word ones (epochs) where they begin the
    message or a list that does ("epochs must be ...", "data_dir and download apply ..."); a name
    followed by its flag in brackets ("give out (--out)") by the flag alone. A name
    inside a path or a quoted value is kept. "or None", the API's way to leave a setting out, is
    dropped: on the command line the flag is left out."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return text
    given = set()  # the values typed: a folder named data_dir is not the setting
    for value in ctx.params.values():
        given |= {str(v) for v in (value if isinstance(value, (list, tuple)) else [value])}
    flags = {param.name: param.opts[0] for param in ctx.command.params
             if param.name and param.opts and param.opts[0].startswith("--") and param.name not in given}
    for name, flag in flags.items():  # "give pretrained (--pretrained FILE)": the flag alone, said once
        # ("pass it as the dataset (--dataset X)": a noun, and "leave it out (--out)": a verb's, kept)
        text = re.sub(rf"(?<![\w/.'\"-])(?<!the )(?<!\ba )(?<!\ban )(?<!\bit ){name} "
                      rf"\(({re.escape(flag)}(?: [^()]*)?)\)", r"\1", text)
    for name, flag in flags.items():
        if "_" in name:
            text = re.sub(rf"(?<![\w/.'\"-]){name}(?![\w/.'\"-])", flag, text)
        else:  # "epochs must be", "model 'x': ...", not "download of ... is truncated" or "out of memory"
            text = re.sub(rf"^{name}(?= (?:must|is|applies|apply|and)\b| '|,)", flag, text)
    opening = LISTED_AFTER_FLAGS.match(text)  # "--data-dir and download apply ..."
    while opening and opening.group(1) in flags:
        text = text[:opening.start(1)] + flags[opening.group(1)] + text[opening.end(1):]
        opening = LISTED_AFTER_FLAGS.match(text)
    return re.sub(r" or None(?: \([^)]*\))?(?=,)| \(or None\)", "", text)


def disk_error_line(exc, again="run it again", done=""):
    """The line for a disk that refused a file: the OS's reason, the file (when the OSError names
    one), `done` (what was written before it, if anything) and, for a full disk, what to do."""
    where = f": {exc.filename}" if exc.filename else ""
    done = f"; {done}" if done else ""
    advice = f"; free some space and {again}" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{exc.strerror}{where}{done}{advice}"
