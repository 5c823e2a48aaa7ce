"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode="w"):
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`.

    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600; on any
    error the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
