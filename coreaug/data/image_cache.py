"""Decoded images on disk: a folder's images decoded and resized once, then read by rows.

A cache is a folder ``<cache_dir>/<key>/`` holding one split per pair of files:
``<split>.u8`` (the images, uint8, C x H x W per row, rows back to back) and
``<split>.labels.npy``, plus ``meta.json`` (shape, classes, per-channel statistics, skipped
files). The key hashes the image size, the format version and every file's path, label, size
and modification time, so a changed folder gets a new cache. It is built in a build folder
next to its place and renamed into it, so a killed build leaves no half cache behind, and the
next build removes a killed build's folder (coreaug.data.cache_builds, which also makes
processes that want one cache at once wait for one of them to build it).

The jobs live apart: a cache's name (coreaug.data.cache_key), reading its rows from disk
(coreaug.data.disk_images.DiskImages), decoding a build in parallel (coreaug.data.cache_decode),
the builds' claims and waits (coreaug.data.cache_builds); this module opens, builds, lists and
removes caches, and keeps the names that were public here importable from it.
"""
import contextlib
import contextvars
import multiprocessing
import os
import re
import shlex
import shutil
import sys
from typing import List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from coreaug.deprecation import keyword_only
from coreaug.errors import CachesKept, UsageError, first_line, path_given
from coreaug.files import size_text, warn_at_caller

from .cache_builds import STALL_SECONDS, claim, read_meta, remove_stale, stale_builds, wait_for
from .cache_decode import bad_image, build_cache, default_workers, shown  # noqa: F401 (public here too)
from .cache_decode import disk_refused
from .cache_key import FORMAT_VERSION, cache_key, default_cache_dir, files_digest  # noqa: F401 (public here too)
from .disk_images import DiskImages
from .images import consecutive, device_batches  # noqa: F401 (public here)

_KEY = re.compile(r"[0-9a-f]{24}")  # a cache's folder name (cache_key)
_BUILDS_SHOWN = contextvars.ContextVar("builds_shown", default=None)  # builds_shown's setting


@contextlib.contextmanager
def builds_shown(show: bool):
    """Within the block, a cache this process builds shows its progress (and the note on older
    caches) when ``show``, whatever ``progress`` open_or_build is given, which still rules the
    rest ("waiting for ..."). Under torchrun only rank 0 prints, but whichever rank claims a
    cache first builds it: the trainer so shows the build on the rank that makes it."""
    token = _BUILDS_SHOWN.set(show)
    try:
        yield
    finally:
        _BUILDS_SHOWN.reset(token)


class ImageCache:
    """An opened cache folder: ``images(split)`` (DiskImages), ``labels(split)``, ``meta``
    (``meta``: its meta.json when already read); a UsageError naming the folder to delete when
    its meta.json is missing or unreadable."""

    def __init__(self, folder: str, meta: Optional[dict] = None):
        self.folder = folder
        self.meta = read_meta(folder) if meta is None else meta
        if self.meta is None:
            raise UsageError(f"{os.path.join(folder, 'meta.json')} is missing or unreadable (a removal or a crash cut "
                             f"short); delete {folder} to rebuild the cache")

    def images(self, split: str) -> DiskImages:
        """The split's images on disk; a UsageError when its file is not the size its count and
        shape take (cut short by a full disk or a copy), so no mode of reading it meets that later."""
        count, shape = self.meta["counts"][split], tuple(self.meta["image_shape"])
        path = os.path.join(self.folder, f"{split}.u8")
        size, expected = os.path.getsize(path) if os.path.isfile(path) else None, count * int(np.prod(shape))
        if size != expected:
            found = "is missing" if size is None else f"holds {size} bytes, not the {expected}"
            raise UsageError(f"{path} {found} of its {count} images; delete {self.folder} to rebuild the cache")
        return DiskImages(path, count, shape)

    def labels(self, split: str) -> torch.Tensor:
        """The split's labels; a UsageError naming the folder to delete when their file is missing,
        cut short or holds another count than the split's images."""
        path, count = os.path.join(self.folder, f"{split}.labels.npy"), self.meta["counts"][split]
        try:
            labels = np.load(path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path} cannot be read ({first_line(exc)}); delete {self.folder} to rebuild "
                             "the cache") from None
        if labels.shape != (count,):
            raise UsageError(f"{path} holds {labels.size} labels, not the {count} of its images; delete "
                             f"{self.folder} to rebuild the cache")
        return torch.from_numpy(labels)

    def bytes(self) -> int:
        """The disk space the cache's files take."""
        return _files_size(self.folder)


UNGUARDED = ("this process is a worker started with spawn (the default on macOS and Windows) that is importing "
             "the calling script, which reads a folder of images at its top level while that folder's decoded "
             "cache is being built, by this worker's parent among others: put the script's calls under "
             "`if __name__ == \"__main__\":` (or build the cache first: `coreaug datasets FOLDER`; or pass "
             "workers=0 to coreaug's decoding)")


def refuse_in_a_starting_worker():
    """RuntimeError in a process still importing the main script (spawn runs a script's top level
    again in every worker) that would build or wait for a cache: without the `__main__` guard a
    decoding worker would wait for the cache its parent is building, and the parent for the worker."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # multiprocessing's own test
        raise RuntimeError(UNGUARDED)


@keyword_only
def open_or_build(splits, classes, *, image_size: int, decode, cache_dir: Optional[str] = None,
                  workers: int = 0, skip_bad: bool = False, progress: bool = True,
                  source: Optional[str] = None, stall_after: float = STALL_SECONDS) -> ImageCache:
    """The cache of ``splits`` ([(name, [(path, label)])]) of the folder ``source``, built first
    if absent. With ``progress``, a new build shows its progress and says how much older caches
    of ``source`` (other sizes, or the folder before it changed) still take, and how to remove
    them (builds_shown may decide this for a build apart from ``progress``).

    ``decode(path) -> (H, W, 3) uint8 array`` (it raises ValueError/OSError for a bad image)
    runs in ``workers`` DataLoader worker processes (0: in this process). A bad image is a
    UsageError naming it, unless ``skip_bad``; then it is left out and counted in
    ``meta["skipped"]``. Raises UsageError before decoding anything when the cache folder
    lacks the disk space the decoded images need, and one naming it when its disk fills (or
    /dev/shm, for the workers) as they are written.

    Several processes (torchrun's ranks, other runs, other nodes on a shared disk) may ask for
    one cache at once: one decodes it and the others wait for it, without a time limit while
    it progresses, and raise UsageError once it has made no progress for ``stall_after``
    seconds. Builds left by killed processes are removed first (coreaug.data.cache_builds).
    """
    root = _root(cache_dir)
    unreadable = []
    key, fingerprint = cache_key(splits, image_size, unreadable)
    folder = os.path.join(root, key)
    if unreadable and not skip_bad and read_meta(folder) is None:  # all named now, not one per decoding
        raise _known_unreadable(unreadable)
    built, show_build = False, progress if _BUILDS_SHOWN.get() is None else _BUILDS_SHOWN.get()
    while not built and read_meta(folder) is None:
        _refuse_unreadable(folder)
        refuse_in_a_starting_worker()  # (a cache already built opens in any process)
        _make_cache_folder(root, cache_dir)
        try:
            remove_stale(root, stall_after, key)
            build, leader = claim(root, key)
            if build is not None:
                build_cache(build, folder, splits=splits, classes=classes, image_size=image_size, decode=decode,
                            workers=workers, skip_bad=skip_bad, progress=show_build, source=source,
                            fingerprint=fingerprint)
                built = True
            else:  # another process (another rank, another run) decodes it
                if progress:
                    tqdm.write(f"waiting for {leader} to finish the decoded cache", file=sys.stderr)
                wait_for(leader, folder, stall_after)
        except OSError as exc:  # a full disk: the OS's error names no file, or a build's
            refused = disk_refused(exc, root)
            if refused is None:
                raise
            raise refused from exc
    others = [cache for cache in caches_in(root, source) if cache.folder != folder] if built and source else []
    if others:  # quiet (a sweep), a warning: each edit of the folder keeps a whole decoded copy more
        caches, take = ("cache", "takes") if len(others) == 1 else ("caches", "take")
        here = "" if root == _root(None) else f" --cache-dir {shlex.quote(root)}"  # the folder counted, not the default
        note = (f"{len(others)} other decoded {caches} of {shown(source)} (other image sizes, or the folder "
                f"before it changed) {take} {size_text(sum(c.bytes() for c in others))} in {root}; "
                f"`coreaug datasets {shlex.quote(shown(source))} --clear-cache{here}` removes every cache of it, "
                "this one included, when no run reads them")
        if show_build:  # beside the build's bar, on stderr: evaluate's stdout is its result (--format json)
            tqdm.write(note, file=sys.stderr)
        else:
            warn_at_caller(note, CachesKept)
    return ImageCache(folder)


def _refuse_unreadable(folder):
    """UsageError, before decoding, where the cache is there but this user may not read it (another user's,
    in a cache folder users share): a build of ours could not take its place, and failed once decoded."""
    if os.path.isdir(folder) and not os.access(folder, os.R_OK | os.X_OK):
        try:
            owner = f" (user id {os.stat(folder).st_uid})"
        except OSError:
            owner = ""
        raise UsageError(f"the decoded cache {folder} is another user's{owner}, which this user may not read: use a "
                         "cache folder of your own (--cache-dir, or COREAUG_CACHE_DIR), or ask them to share it")


def _known_unreadable(files):
    """The UsageError for the image files (path, why) known unreadable before decoding (empty files,
    links to nothing): every one counted, the first three named."""
    if len(files) == 1:
        return bad_image(f"{shown(files[0][0])} ({files[0][1]})")
    first = "; ".join(f"{shown(path)} ({why})" for path, why in files[:3])
    return UsageError(f"cannot read {len(files)} images (first: {first}{' ...' if len(files) > 3 else ''}); fix or "
                      "remove them, or pass --skip-bad-images to leave unreadable images out")


def _make_cache_folder(root: str, cache_dir: Optional[str]) -> None:
    """Create the cache folder ``root``, or a UsageError naming it and where it came from."""
    try:
        if os.path.exists(root) and not os.path.isdir(root):
            raise NotADirectoryError("it is a file")
        os.makedirs(root, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        # A run's config fills cache_dir with default_cache_dir() when none was given: that one is not --cache-dir's.
        given = cache_dir and os.path.realpath(_root(cache_dir)) != os.path.realpath(_root(None))
        origin = (" (from --cache-dir)" if given else " (from COREAUG_CACHE_DIR)" if os.environ.get("COREAUG_CACHE_DIR")
                  else " (the default)")
        raise UsageError(f"cannot use {root} as the decoded-image cache{origin}: {exc.strerror or first_line(exc)}; "
                         "pass --cache-dir or set COREAUG_CACHE_DIR to a folder you can write") from None


def _root(cache_dir: Optional[str]) -> str:
    """The cache folder `cache_dir` names (None: default_cache_dir()), absolute."""
    return os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))


def caches_in(cache_dir: Optional[str] = None, source: Optional[str] = None) -> List[ImageCache]:
    """The decoded caches in ``cache_dir`` (default: default_cache_dir()), or only those of the
    folder ``source`` (those whose meta.json names it by any path: coreaug 0.2 recorded a folder
    reached through a link by the link's). Builds in progress are not caches yet and are left out,
    and so are folders without a readable meta.json (damaged_in)."""
    root = _root(cache_dir)
    if not os.path.isdir(root):
        return []
    found, wanted = [], source and os.path.realpath(os.path.expanduser(str(source)))
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        meta = read_meta(entry.path) if ".building-" not in entry.name else None  # None: no cache (damaged_in)
        if meta is not None and (source is None or _real(meta.get("source")) == wanted):
            found.append(ImageCache(entry.path, meta))
    return found


def _real(path):
    """The real path of a meta.json's ``source`` (None for one that is not a path, or one this
    locale cannot encode: `写真`, cached in a UTF-8 session, read under Latin-1 or C names no folder
    of this session, and os.path.realpath raised UnicodeEncodeError for every dataset's cache)."""
    if not isinstance(path, str):
        return None
    try:
        return os.path.realpath(path)
    except (UnicodeError, ValueError):
        return None


def damaged_in(cache_dir: Optional[str] = None) -> List[str]:
    """The folders in ``cache_dir`` named as caches but without a readable meta.json: no
    caches, and no one's (builds in progress are ``.building-`` folders, not these)."""
    root = _root(cache_dir)
    if not os.path.isdir(root):
        return []
    return [entry.path for entry in sorted(os.scandir(root), key=lambda e: e.name)
            if _KEY.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False) and read_meta(entry.path) is None]


def _files_size(folder: str) -> int:
    """The bytes of the files in ``folder``, those another process removes meanwhile left out
    (FileNotFoundError where the folder itself is gone)."""
    size = 0
    for entry in os.scandir(folder):
        with contextlib.suppress(FileNotFoundError):
            size += entry.stat().st_size if entry.is_file() else 0
    return size


def _remove_tree(folder: str) -> None:
    """shutil.rmtree, where another process removing files in ``folder`` meanwhile is no failure;
    FileNotFoundError where the folder itself went (another process removed it first)."""
    for _ in range(3):
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            if not os.path.lexists(folder):
                raise
    shutil.rmtree(folder)


def clear_caches(cache_dir: Optional[str] = None, source: Optional[str] = None) -> Tuple[int, int]:
    """Remove the decoded caches in ``cache_dir`` (all, or only those of the folder ``source``),
    and the damaged ones (damaged_in: their folder is unknown), and, clearing all, the builds
    left by killed processes (is_stale: a live build is kept); returns (how many, bytes freed).
    A run reading one of them must not be going on: later runs rebuild what they need. Each
    cache's meta.json goes first, so a removal cut short leaves no cache that reads as whole. One
    that cannot be removed (another user's, a read-only disk) is left, the others removed, and
    then a UsageError says what was removed and names the first left. One that another process
    removes meanwhile (two clears at once) is gone: not counted, and no error."""
    if cache_dir is not None:  # "" would clear every cache of the default folder, source="" every cache
        cache_dir = path_given(cache_dir, "cache_dir", "a folder, or None for the default")
    if source is not None:
        source = path_given(source, "source", "a folder, or None")
    found = [cache.folder for cache in caches_in(cache_dir, source)] + damaged_in(cache_dir)
    root = _root(cache_dir)
    if source is None and os.path.isdir(root):  # a killed build's folder holds what it decoded: maybe most
        found += stale_builds(root)
    removed, freed, failed = 0, 0, []
    for folder in found:
        try:
            size = _files_size(folder)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, "meta.json"))
            _remove_tree(folder)
        except FileNotFoundError:  # another process (a second --clear-cache) removed it first: gone, not ours
            continue
        except OSError as exc:
            failed.append((folder, exc))
            continue
        removed, freed = removed + 1, freed + size
    if failed:
        folder, exc = failed[0]
        with contextlib.suppress(OSError):
            folder += f", user id {os.stat(folder).st_uid}"
        raise UsageError(f"removed {removed} decoded cache{'s' * (removed != 1)} ({size_text(freed)}) from {root}, "
                         f"but could not remove {len(failed)} (the first: {folder}: {exc.strerror or exc}): another "
                         "user's caches are theirs to remove, and a read-only disk's are kept")
    return removed, freed
