"""Atomic file writes: a reader sees the old file or the new one, never a partial one; folder locks."""
import contextlib
import errno
import os
import stat
import sys
import tempfile
import warnings

from coreaug.errors import CallerWarning, chain

try:
    import fcntl
except ImportError:  # Windows: no flock (coreaug runs on Linux and macOS; there, WSL)
    fcntl = None

# A disk that cannot take the file: the OS's reason is what the user needs, not the error of the
# library that was writing (torch.save's says "[enforce fail at inline_container.cc] unexpected pos").
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
# A file system that takes no locks: Lustre mounted without flock (its default), NFS without a lock service.
NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
_UNLOCKED = set()  # the folders already warned about


def markdown_of(path):
    """The text of the Markdown file `path` (a result's tables), or None where there is none: what a
    notebook shows for a result object that ends a cell (`_repr_markdown_`; None: its repr)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, TypeError, ValueError):  # gone, never written (None), or not text
        return None


def size_text(size: float) -> str:
    """A byte count as a person reads it: "740 KiB", "12 MiB", "1.3 GiB" (never "0 MiB")."""
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if unit == "GiB" else f"{size / scale:.0f} {unit}"
    return f"{size / 2 ** 10:.0f} KiB"


def user_cache(*parts, xdg=True):
    """A folder of coreaug's in the user's cache: $XDG_CACHE_HOME/coreaug/`parts` (with `xdg`),
    else ~/.cache/coreaug/`parts`, else, where no home folder can be found (HOME unset and a user
    id without an account, as under systemd's DynamicUser), <temp folder>/coreaug-<uid>/`parts`:
    never a folder named "~" in the working folder."""
    if xdg and os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "coreaug", *parts)
    home = os.path.expanduser("~")
    if home == "~":  # (expanduser gives "~" back when it finds no home)
        return os.path.join(tempfile.gettempdir(), f"coreaug-{getattr(os, 'getuid', lambda: 'user')()}", *parts)
    return os.path.join(home, ".cache", "coreaug", *parts)


def make_folder(path):
    """Create the folder `path` (and its parents) unless it exists; a link to a folder that does not exist (a
    `runs -> /scratch/...` link whose scratch was purged) creates the folder it points to, as --cache-dir does."""
    os.makedirs(os.path.realpath(os.path.expanduser(os.fspath(path))), exist_ok=True)


def lock_folder(fd, path, wait=True):
    """An exclusive lock (flock) on `fd`, the open folder `path`, let go when `fd` closes: True once
    taken; BlockingIOError at once when another process holds it and not `wait`. Where the file
    system (or the platform) takes no locks, False, with one warning a folder: two commands in
    one folder are then not kept apart, and everything else goes on."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno not in NO_LOCKS:
                raise
            reason = exc.strerror
    else:
        reason = "no file locks on this platform"
    if path not in _UNLOCKED:
        _UNLOCKED.add(path)
        warnings.warn(f"{path} cannot be locked ({reason}): another coreaug command writing into it at the "
                      "same time would not be stopped", stacklevel=3)
    return False


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def in_python_library(path, installed=False):
    """Whether the file `path` lies in Python's standard library (with `installed`, or in the installed
    packages: torch, numpy): not a user's own code."""
    import sysconfig

    keys = ("stdlib", "platstdlib") + (("purelib", "platlib") if installed else ())
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(sysconfig.get_paths()[key]) + os.sep) for key in keys)


COREAUG_DIR = os.path.dirname(os.path.abspath(__file__))  # the package's folder: its frames are not the user's


def in_coreaug(path):
    """Whether the file `path` is coreaug's own code (a frame of it is not the user's)."""
    return os.path.abspath(path).startswith(COREAUG_DIR + os.sep)


def warn_at_caller(message, category=None, past=()):
    """warnings.warn(message) attributed to the innermost frame outside coreaug: the user's call (the
    frames of coreaug's own wrappers in between would otherwise be named), and outside the folders
    `past` (torch's DataLoader, which iterates coreaug's sampler for the user's loop). A CallerWarning
    (or `category`, one of its kinds), which the commands show as their one line wherever its frame
    is (click's, a bench worker's)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 1 is this function, 2 its caller
    while frame is not None and (in_coreaug(frame.f_code.co_filename) or
                                 os.path.abspath(frame.f_code.co_filename).startswith(tuple(past))):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category or CallerWarning, stacklevel=level)


def where_raised(error):
    """" at FILE:LINE in FUNCTION" for the innermost frame of `error`'s traceback in the user's code: outside
    coreaug, Python's library and installed packages (torch, numpy), which a one-line error would otherwise
    leave to guess; else ""."""
    import traceback

    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not in_coreaug(frame.filename) and not in_python_library(frame.filename, installed=True)]
    return f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""


def atomic_write(path, write, mode="w", durable=False, through_links=True):
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`; `durable`: the
    file's data reaches the disk (fsync) before the rename, so that a power loss leaves the old file
    or the new, not an empty one in its place (a checkpoint: the whole run, not one epoch).

    A new file gets the usual permissions (0666 less the umask), not mkstemp's 0600; a file that
    exists keeps its own (a private 0600 one stays private); on any
    error the temporary file is removed and `path` is untouched. A full or read-only disk is an
    OSError naming `path` (its errno in DISK_ERRORS), whatever the writer raised around it; a
    folder that takes no new file (missing, read-only, full, no permission) is one naming that folder.
    A symbolic link is written at the file it points to, so the link keeps pointing at the new data;
    a device or pipe (/dev/null, a FIFO) is written into directly, never replaced by a file. With
    `through_links` False (a run folder's own files: the folder may come from someone else's archive,
    its links pointing anywhere), a link in the file's place is replaced by the file; links among
    the folders above it are still followed (`runs -> /scratch/runs`).
    """
    path = os.fspath(path)
    handled = sys.exc_info()[1]  # an interrupt the caller is handling (a save on Ctrl-C) is not this write's
    if through_links:
        target = os.path.realpath(path)
    else:
        target = os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))
    replaced_link = os.path.islink(target)
    if not replaced_link and _not_a_file(target):
        return _write_in_place(path, target, write, mode)
    if os.path.isdir(target) and not replaced_link:  # named as given, not by the temporary file a rename would name
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    try:  # the file it replaces keeps its permissions: writing through a link must not open someone's 0600 file
        permissions = 0o666 & ~_umask() if replaced_link else os.stat(target).st_mode & 0o777
    except OSError:
        permissions = 0o666 & ~_umask()
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    except OSError as exc:  # named by the folder that refused it, not the temporary name the user never saw
        if exc.errno in DISK_ERRORS + (errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR):
            raise OSError(exc.errno, exc.strerror, folder) from None
        raise
    try:
        with os.fdopen(fd, mode, **_utf8(mode)) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, permissions)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):  # (renamed already: the interrupt came after the rename)
            os.unlink(tmp)
        stop = _interrupt(exc, handled)
        if stop is not None and stop is not exc:  # Ctrl-C or SIGTERM inside torch.save: its zip writer's error
            raise stop                              # on the way out took its place (exit 1 where 143 was due)
        cause = _disk_error(exc)
        if cause is not None:
            raise OSError(cause.errno, cause.strerror, path) from exc
        raise


def _interrupt(exc, handled=None):
    """The interrupt in `exc`'s chain of causes (a KeyboardInterrupt: Ctrl-C, or SIGTERM raised as one;
    a SystemExit: a bench worker's SIGTERM) raised during the write, or None: the chain is read up to
    `handled`, the exception the caller was handling when it wrote (its own, not the write's)."""
    return next((raised for raised in chain(exc, handled, suppressed=True)
                 if isinstance(raised, (KeyboardInterrupt, SystemExit))), None)


def _utf8(mode):
    """UTF-8 for a text mode (coreaug's tables hold ±, —, √ and read their files back as UTF-8),
    not the locale's encoding (cp1252 on Windows, or a legacy Linux locale's); a name that is not
    UTF-8 (a Latin-1 folder from an old zip: Python holds its bytes as surrogates) is written as
    its own bytes, as `ls` shows it, where strict UTF-8 stopped the write (report.md)."""
    return {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape"}


def _not_a_file(path):
    """Whether `path` exists and is neither a regular file nor a folder: a device or a pipe, which a
    rename would replace for every other user of it (as root, `--out /dev/null` would replace /dev/null)."""
    try:
        kind = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(kind) or stat.S_ISDIR(kind))


def _write_in_place(path, target, write, mode):
    """`write(f)` on the device or pipe `target` itself (not atomic: there is no file to swap)."""
    try:
        with open(target, mode, **_utf8(mode)) as f:
            write(f)
    except BaseException as exc:
        cause = _disk_error(exc)
        if cause is not None:
            raise OSError(cause.errno, cause.strerror, path) from exc
        raise


def saved_by_torch(path):
    """Whether the file starts as torch.save writes: a zip archive, or (before torch 1.6) a pickle.
    Anything else is damaged bytes or another kind of file, not one holding foreign objects."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _disk_error(exc):
    """The OSError of a full or read-only disk in `exc`'s chain of causes, or None."""
    return next((raised for raised in chain(exc) if isinstance(raised, OSError) and raised.errno in DISK_ERRORS), None)
