"""Which cache a folder's images decode to: the cache folder and each cache's name.

A cache's name hashes the image size, the format version and every file's path, label, size
and modification time, so a changed folder (or another size, or a new format) gets a new
cache; the files' hash alone is kept in its meta.json to tell which data a run read.
"""
import hashlib
import os
from stat import S_ISREG
from typing import Optional, Tuple

from coreaug.files import user_cache

CACHE_DIR_TEXT = "$COREAUG_CACHE_DIR, else $XDG_CACHE_HOME/coreaug/decoded, else ~/.cache/coreaug/decoded"
FORMAT_VERSION = 2  # 2: 16-bit images scaled to 8 bits, EXIF orientation applied
EMPTY_FILE = "an empty file"  # an unreadable image's reason, as training and predict name it


def default_cache_dir() -> str:
    """$COREAUG_CACHE_DIR, else $XDG_CACHE_HOME/coreaug/decoded, else ~/.cache/coreaug/decoded
    (coreaug.files.user_cache: a temporary folder where no home can be found)."""
    if os.environ.get("COREAUG_CACHE_DIR", "").strip():  # (set but blank: as unset, not a folder named " ")
        return os.environ["COREAUG_CACHE_DIR"]
    return user_cache("decoded")


def cache_key(splits, image_size: int, unreadable: Optional[list] = None) -> Tuple[str, str]:
    """(the cache's name, a hash of the files alone): hashes of the format version, the image
    size and each split's (path, label, size, mtime) list, and of that list alone (`files_digest`,
    which adds the files known unreadable to ``unreadable``)."""
    files = files_digest(splits, unreadable)
    name = hashlib.sha256(f"coreaug-cache-v{FORMAT_VERSION} size={image_size} {files}".encode()).hexdigest()[:24]
    return name, files


def files_digest(splits, unreadable: Optional[list] = None) -> str:
    """A hash of each split's (path, label, size, mtime) list: which data a folder holds now. The
    paths of empty files and of links to nothing (known unreadable before any decoding) are
    added to ``unreadable`` when one is given."""
    digest = hashlib.sha256()
    for name, files in splits:
        digest.update(f"[{name}]\n".encode())
        for path, label in files:
            try:
                stat = os.stat(path)
                size, mtime, regular = stat.st_size, stat.st_mtime_ns, S_ISREG(stat.st_mode)
            except OSError:  # a dangling link, say: decoding it fails, as a bad image
                size, mtime, regular = -1, -1, True
            if (size <= 0 or not regular) and unreadable is not None:
                why = EMPTY_FILE if size == 0 else "gone: deleted, or a link to nothing"
                unreadable.append((path, why if regular else "not a regular file"))
            digest.update(os.fsencode(path) + f"\t{label}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()[:24]
