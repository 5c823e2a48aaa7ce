"""Decoding a folder's images into a cache build, in parallel DataLoader worker processes.

Each split becomes ``<split>.u8`` (uint8 C x H x W rows back to back) and
``<split>.labels.npy`` in the build folder, and ``meta.json`` records the shape, classes,
per-channel statistics and skipped files; the build is then renamed into the cache's place
(coreaug.data.cache_builds holds the builds' claims and heartbeats).
"""
import errno
import json
import os
import shutil
import stat
import sys

import numpy as np
import torch

from coreaug.deprecation import keyword_only
from coreaug.devices import usable_cores
from coreaug.errors import UsageError
from coreaug.files import DISK_ERRORS, size_text
from coreaug.progress import progress_bar

from .cache_key import FORMAT_VERSION
from .dataset import channel_histograms, stats_of_histograms


def default_workers() -> int:
    """Processes decoding a folder's images when not told: one per core this process may use, up to 8."""
    return min(8, usable_cores())


@keyword_only
def build_cache(build, folder, *, splits, classes, image_size, decode, workers, skip_bad, progress, source,
                fingerprint):
    """Decode ``splits`` into ``build`` and rename it into ``folder``; a failure removes it. The
    cache's folder is no more open than the folder ``source`` (a private folder's decoded copy is
    private too: its files are written with the umask, readable by all, but not reachable)."""
    try:
        _keep_as_private_as(build.path, source)
        _check_space(os.path.dirname(folder), sum(len(files) for _, files in splits) * 3 * image_size * image_size)
        meta = {"version": FORMAT_VERSION, "image_shape": [3, image_size, image_size], "classes": list(classes),
                "counts": {}, "skipped": [], "files": fingerprint, "source": source}
        for name, files in splits:
            meta["counts"][name], histogram = _write_split(build, name, files, decode, workers, skip_bad,
                                                           meta["skipped"], progress)
            if name == "train":
                meta["mean"], meta["std"] = stats_of_histograms(histogram)
        with open(os.path.join(build.path, "meta.json"), "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash then leaves no empty meta.json
        build.finish(folder)
    finally:
        build.remove()


def _keep_as_private_as(path, source):
    """Give the folder ``path`` the access the folder ``source`` grants group and others, at most (its
    owner keeps full access), with the source's group (a team's: its members read the cache as they
    read the images); where that group cannot be given (the builder is no member), no group access
    unless others have it anyway. Nothing for a source that is no folder here."""
    try:
        if not (source and os.path.isdir(source)):
            return
        folder, made = os.stat(source), os.stat(path)
        granted = stat.S_IMODE(folder.st_mode)
        mode = stat.S_IMODE(made.st_mode) & (granted | 0o700) | 0o700
        if made.st_gid != folder.st_gid:
            try:
                os.chown(path, -1, folder.st_gid)
            except OSError:  # the builder's own group is another group than the images'
                if not granted & 0o007:
                    mode &= ~0o070
        os.chmod(path, mode)
    except OSError:  # a file system without modes: the cache is as open as the disk makes it
        pass


def shown(path) -> str:
    """``path`` printable: a file name that the file system's encoding cannot decode (its bytes held
    as surrogates, os.fsdecode's way; a Latin-1 name under UTF-8) shows those bytes as ``\\xff``
    escapes. Decoded as the file system's encoding, not always UTF-8: a name of an EUC-JP locale
    reads as its characters there, and under the C locale without UTF-8 mode a UTF-8 name is
    escaped, where it came back as characters that the ASCII stdout could not write."""
    encoding = sys.getfilesystemencoding()
    return os.fsencode(path).decode(encoding, "backslashreplace")


def bad_image(description):
    """The error for an unreadable image (`description`: its path and Pillow's reason)."""
    return UsageError(f"cannot read image {description}; fix or remove it, or pass "
                      "--skip-bad-images to leave unreadable images out")


def _check_space(root, needed):
    free = shutil.disk_usage(root).free
    if needed > 0.95 * free:
        need, have = size_text(needed / 0.95), size_text(free)
        if need == have:  # ("need 2 MiB but has 2 MiB free"): to the KiB
            need, have = (f"{size / 2 ** 10:,.0f} KiB" for size in (needed / 0.95, free))
        raise UsageError(f"the decoded images need {need} (5% to spare included) but {root} has "
                         f"{have} free; pass --cache-dir on a larger disk or a smaller --image-size")


def disk_refused(exc, root):
    """The UsageError for a build in the cache folder ``root`` whose write failed with the OSError
    ``exc`` (a full, over-quota or read-only disk, a file too large: the errnos of DISK_ERRORS), else
    None. It names the folder (the file, a build's, means nothing to the user, and the OS often
    names none) and what to change: no epoch ran, so --resume is no help."""
    if exc.errno not in DISK_ERRORS:
        return None
    if exc.errno == errno.EFBIG:
        why = ("a decoded split is larger than this process's file-size limit (ulimit -f) or the file system's; "
               "raise the limit, or pass --cache-dir on another disk or a smaller --image-size")
    elif exc.errno == errno.EROFS:
        why = ("the decoded-image cache cannot be written there; pass --cache-dir or set COREAUG_CACHE_DIR to a "
               "folder you can write")
    else:
        why = ("the decoded images did not fit in this cache folder; free some space there, or pass --cache-dir on a "
               "larger disk or a smaller --image-size")
    return UsageError(f"{exc.strerror}: {root}: {why}")


def _shared_memory_error(exc, workers):
    """The UsageError for DataLoader workers that could not hand a batch over in shared memory
    (/dev/shm: docker's default is 64 MB), or None for another RuntimeError."""
    text = str(exc)
    if "shared memory" not in text and "</torch_" not in text and "Too many open files" not in text:
        return None
    if "Too many open files" in text:  # torch's own advice comes last, under 5,000 lines of tracebacks
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        why = (f"this process may open {soft} files at once (ulimit -n), too few for the batches they hand over; "
               "raise it (ulimit -n 1024) or pass --workers 0")
    elif "File too large" in text:
        why = ("the file-size limit (ulimit -f) is smaller than the batches of images they hand over in shared "
               "memory (and than the cache's files); raise it")
    else:
        total = shutil.disk_usage("/dev/shm").total if os.path.isdir("/dev/shm") else None
        why = (f"/dev/shm{f' ({size_text(total)})' if total else ''} is too small for the images they hand over; "
               "pass --workers 0 (or fewer), or give the container more shared memory (docker run --shm-size=1g)")
    return UsageError(f"decoding with {workers} worker process{'es' if workers > 1 else ''} failed: {why}")


class _Decoding(torch.utils.data.Dataset):
    """Files decoded by index, for a DataLoader: (image or None, label, error or None).

    The paths are one numpy bytes array, not a list of Python strings: a forked worker that
    touched a million strings' reference counts would copy the pages holding them (the worker's
    memory grew with the folder, 33 MB per 15,000 files at 64 px)."""

    def __init__(self, files, decode):
        self.paths = np.array([os.fsencode(path) for path, _ in files])
        self.labels = np.array([label for _, label in files], dtype=np.int64)
        self.decode = decode

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        path, label = os.fsdecode(self.paths[i]), int(self.labels[i])
        try:
            return self.decode(path), label, None
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for bad or truncated files
            return None, label, shown(f"{path} ({exc})")


def _fixed_mmap_threshold(worker_id=None):
    """Fix glibc's mmap threshold at 1 MiB in a decoding worker. Left dynamic, it rises to the
    largest block freed so far, so the decoder's many image-sized buffers come from the heap,
    which fragments: a worker's private memory grew from 320 to 600 MB over a 20,000-image build
    at 224 px (experiments/results/data.md). Elsewhere than glibc, nothing happens."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: keep freed heap for the next batch
    except (OSError, AttributeError):
        pass


def _stack(items):
    """A worker's batch, ready to write: the good images as one (k, 3, H, W) uint8 tensor, made
    in shared memory (it reaches the main process without a copy, and a worker's heap does not
    fragment on batch-sized buffers), their labels, the errors, and the batch's 256-bin
    histogram per channel (for the split's mean and std)."""
    good = [(image, label) for image, label, error in items if error is None]
    errors = [error for _, _, error in items if error is not None]
    if not good:
        return None, [], errors, torch.zeros(3, 256, dtype=torch.int64)
    height, width, channels = good[0][0].shape
    shape = (len(good), channels, height, width)
    if torch.utils.data.get_worker_info() is not None:  # as DataLoader's own collate does
        images = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(int(np.prod(shape)))).view(shape)
    else:
        images = torch.empty(shape, dtype=torch.uint8)
    array = images.numpy()
    for i, (image, _) in enumerate(good):  # decoding is per image anyway
        array[i] = image.transpose(2, 0, 1)
    return images, [label for _, label in good], errors, channel_histograms(images)


def _write_split(build, name, files, decode, workers, skip_bad, skipped, progress):
    """Decode `files` into `<build.path>/<name>.u8` and its labels, beating the build's heartbeat
    as batches arrive; returns (count, channel histograms)."""
    folder = build.path
    loader = torch.utils.data.DataLoader(_Decoding(files, decode), batch_size=64, num_workers=workers,
                                         collate_fn=_stack, worker_init_fn=_fixed_mmap_threshold,
                                         generator=torch.Generator())  # its base seed not drawn from the caller's RNG
    labels, histogram = [], torch.zeros(3, 256, dtype=torch.int64)
    with open(os.path.join(folder, f"{name}.u8"), "wb") as out, \
            progress_bar(len(files), f"decoding {name}", "img", disable=not progress, leave=False) as bar:
        batches = iter(loader)
        try:
            for images, batch_labels, errors, batch_histogram in batches:
                if errors and not skip_bad:
                    raise bad_image(errors[0])
                skipped += errors
                if images is not None:
                    out.write(memoryview(images.numpy()).cast("B"))
                    labels += batch_labels
                    histogram += batch_histogram
                bar.update(len(batch_labels) + len(errors))
                build.beat(bar.n)
        except RuntimeError as exc:  # a worker's, re-raised by the DataLoader with its 70-line traceback as text
            short_of_memory = _shared_memory_error(exc, workers)
            if short_of_memory is None:
                raise
            raise short_of_memory from None
        finally:  # on an error too, the workers stop now, not when the garbage collector finds them (after 5 s)
            getattr(batches, "_shutdown_workers", lambda: None)()
    if not labels:
        if not files:
            raise UsageError(f"the {name} split has no images")
        raise UsageError(f"the {name} split has no readable images: --skip-bad-images left out all {len(files)} of "
                         f"them (the first: {skipped[-len(files)]})")
    np.save(os.path.join(folder, f"{name}.labels.npy"), np.asarray(labels, dtype=np.int64))
    return len(labels), histogram
