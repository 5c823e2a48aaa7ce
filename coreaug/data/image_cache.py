"""Decoded images on disk: a folder's images decoded and resized once, then read by rows.

A cache is a folder ``<cache_dir>/<key>/`` holding one split per pair of files:
``<split>.u8`` (the images, uint8, C x H x W per row, rows back to back) and
``<split>.labels.npy``, plus ``meta.json`` (shape, classes, per-channel statistics, skipped
files). The key hashes the image size, the format version and every file's path, label, size
and modification time, so a changed folder gets a new cache. It is built in a build folder
next to its place and renamed into it, so a killed build leaves no half cache behind, and the
next build removes a killed build's folder (coreaug.data.cache_builds, which also makes
processes that want one cache at once wait for one of them to build it).

``DiskImages`` reads rows of a split without holding the split in memory: one ``pread`` per
row into the batch's buffer. (A memory map would gather rows in one numpy call, but a fault
maps the whole page-cache folio around a row, up to megabytes, so the resident set grew with
the file: 1.9 GB of mapped cache at 224 px, measured in experiments/results/data.md.)
"""
import hashlib
import json
import os
import queue
import shutil
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from coreaug.errors import UsageError

from .cache_builds import STALL_SECONDS, claim, remove_stale, wait_for
from .dataset import channel_histograms, stats_of_histograms
from .images import Images, TensorImages, consecutive, device_batches  # noqa: F401 (consecutive: a public name here)

FORMAT_VERSION = 2  # 2: 16-bit images scaled to 8 bits, EXIF orientation applied


def default_cache_dir() -> str:
    """$COREAUG_CACHE_DIR, else $XDG_CACHE_HOME/coreaug/decoded, else ~/.cache/coreaug/decoded."""
    if os.environ.get("COREAUG_CACHE_DIR"):
        return os.environ["COREAUG_CACHE_DIR"]
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "coreaug", "decoded")


def default_workers() -> int:
    """Processes decoding a folder's images when not told: one per core, up to 8."""
    return min(8, os.cpu_count() or 1)


def cache_key(splits, image_size: int) -> Tuple[str, str]:
    """(the cache's name, a hash of the files alone): hashes of the format version, the image
    size and each split's (path, label, size, mtime) list, and of that list alone."""
    files = files_digest(splits)
    name = hashlib.sha256(f"coreaug-cache-v{FORMAT_VERSION} size={image_size} {files}".encode()).hexdigest()[:24]
    return name, files


def files_digest(splits) -> str:
    """A hash of each split's (path, label, size, mtime) list: which data a folder holds now."""
    digest = hashlib.sha256()
    for name, files in splits:
        digest.update(f"[{name}]\n".encode())
        for path, label in files:
            try:
                stat = os.stat(path)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:  # a dangling link, say: decoding it fails, as a bad image
                size, mtime = -1, -1
            digest.update(os.fsencode(path) + f"\t{label}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()[:24]


class DiskImages(Images):
    """uint8 images (N, C, H, W) in a cache file, read by rows; in memory only while read.

    An `Images` (coreaug.data.images): ``len``, ``shape`` and ``dtype`` read like a tensor's;
    ``images[rows]`` (a slice, or an integer array or tensor of positions) is a view of some
    rows, still on disk; ``read(rows)`` returns those rows as a uint8 tensor;
    ``batches(row_batches)`` reads batches ahead in a background thread; ``to(device)`` loads
    them all.
    """

    dtype = torch.uint8

    def __init__(self, path: str, count: int, image_shape: Tuple[int, int, int], rows: Optional[np.ndarray] = None):
        self.path, self.count, self.image_shape = path, count, tuple(image_shape)
        self.rows = rows  # positions in the file, or None for all of them in order
        self._fd = None

    def __len__(self) -> int:
        return self.count if self.rows is None else len(self.rows)

    @property
    def shape(self) -> Tuple[int, ...]:
        return (len(self), *self.image_shape)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.image_shape))

    def __getitem__(self, rows) -> "DiskImages":
        if isinstance(rows, slice):
            chosen = np.arange(len(self))[rows]
        else:
            chosen = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.int64)
        file_rows = chosen if self.rows is None else self.rows[chosen]
        return DiskImages(self.path, self.count, self.image_shape, file_rows)

    def read(self, rows, pin: bool = False) -> torch.Tensor:
        """The images at positions ``rows`` (int64 array or CPU tensor, or a slice), in that
        order, as a (len, C, H, W) tensor (in pinned memory if ``pin``). Raises IndexError for
        a position out of range."""
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        file_rows = rows if self.rows is None else self.rows[rows]
        if file_rows.size and (file_rows.min() < 0 or file_rows.max() >= self.count):
            raise IndexError(f"rows out of range for {len(self)} images: {rows.min()}..{rows.max()}")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        size = self.row_bytes
        if pin:  # page-locked, so the copy to the GPU can run while the step computes
            out = torch.empty((len(rows), size), dtype=torch.uint8, pin_memory=True)
            buffer = out.numpy()  # a view of host memory: no device involved
        else:
            buffer = np.empty((len(rows), size), dtype=np.uint8)
            out = torch.from_numpy(buffer)
        for i, row in enumerate(file_rows.tolist()):  # a syscall per row, which waits on the disk
            if os.preadv(self._fd, [buffer[i]], row * size) != size:
                raise UsageError(f"{self.path} is shorter than its {self.count} images; delete its folder to rebuild the cache")
        return out.view(len(rows), *self.image_shape)

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def load(self) -> torch.Tensor:
        """Every image of this view in memory, as one (N, C, H, W) tensor."""
        if self.rows is None:
            data = np.fromfile(self.path, dtype=np.uint8, count=self.count * self.row_bytes)
            return torch.from_numpy(data).view(self.count, *self.image_shape)
        return self.read(np.arange(len(self)))

    def to(self, device) -> TensorImages:
        """Every image of this view in memory on ``device``."""
        return TensorImages(self.load().to(device))

    def batches(self, row_batches: Sequence[np.ndarray], pin: bool = False, depth: int = 4):
        """Yield ``read(rows)`` for each array of positions in ``row_batches``, read up to
        ``depth`` batches ahead in a thread (pinned, for asynchronous copies to a GPU, if ``pin``).
        Stopping early (closing the generator) stops the thread."""
        ahead: queue.Queue = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def offer(item):
            """Put `item` once there is room; False if the reader stopped first. Every put goes
            through here: a blocking put would hang the reader's join when it stops early."""
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for rows in row_batches:
                    if not offer(self.read(rows, pin=pin)):
                        return
                offer(None)
            except BaseException as exc:  # handed to the reader, which raises it
                offer(exc)

        thread = threading.Thread(target=produce, name="coreaug-read-ahead", daemon=True)
        thread.start()
        try:
            while True:
                item = ahead.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def __repr__(self) -> str:
        return f"DiskImages({self.path!r}, shape={self.shape})"


class ImageCache:
    """An opened cache folder: ``images(split)`` (DiskImages), ``labels(split)``, ``meta``."""

    def __init__(self, folder: str):
        self.folder = folder
        with open(os.path.join(folder, "meta.json")) as f:
            self.meta = json.load(f)

    def images(self, split: str) -> DiskImages:
        count = self.meta["counts"][split]
        return DiskImages(os.path.join(self.folder, f"{split}.u8"), count, tuple(self.meta["image_shape"]))

    def labels(self, split: str) -> torch.Tensor:
        return torch.from_numpy(np.load(os.path.join(self.folder, f"{split}.labels.npy")))

    def bytes(self) -> int:
        """The disk space the cache's files take."""
        return sum(entry.stat().st_size for entry in os.scandir(self.folder) if entry.is_file())


def open_or_build(splits, classes, image_size: int, decode, cache_dir: Optional[str] = None,
                  workers: int = 0, skip_bad: bool = False, progress: bool = True,
                  source: Optional[str] = None, stall_after: float = STALL_SECONDS) -> ImageCache:
    """The cache of ``splits`` ([(name, [(path, label)])]) of the folder ``source``, built first
    if absent. With ``progress``, a new build says how much older caches of ``source`` (other
    sizes, or the folder before it changed) still take, and how to remove them.

    ``decode(path) -> (H, W, 3) uint8 array`` (it raises ValueError/OSError for a bad image)
    runs in ``workers`` DataLoader worker processes (0: in this process). A bad image is a
    UsageError naming it, unless ``skip_bad``; then it is left out and counted in
    ``meta["skipped"]``. Raises UsageError before decoding anything when the cache folder
    lacks the disk space the decoded images need.

    Several processes (torchrun's ranks, other runs, other nodes on a shared disk) may ask for
    one cache at once: one decodes it and the others wait for it, without a time limit while
    it progresses, and raise UsageError once it has made no progress for ``stall_after``
    seconds. Builds left by killed processes are removed first (coreaug.data.cache_builds).
    """
    root = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    key, fingerprint = cache_key(splits, image_size)
    folder = os.path.join(root, key)
    built = False
    while not built and not os.path.isfile(os.path.join(folder, "meta.json")):
        os.makedirs(root, exist_ok=True)
        remove_stale(root, stall_after)
        build, leader = claim(root, key)
        if build is not None:
            _build(build, folder, splits, classes, image_size, decode, workers, skip_bad, progress, source, fingerprint)
            built = True
        else:  # another process (another rank, another run) decodes it
            if progress:
                tqdm.write(f"waiting for {leader} to finish the decoded cache")
            wait_for(leader, folder, stall_after)
    others = [cache for cache in caches_in(root, source) if cache.folder != folder] if built and source else []
    if others and progress:
        caches = "cache" if len(others) == 1 else "caches"
        tqdm.write(f"{len(others)} other decoded {caches} of {shown(source)} (other image sizes, or the folder "
                   f"before it changed) take {sum(c.bytes() for c in others) / 2**20:.0f} MiB in {root}; "
                   f"`coreaug datasets {shown(source)} --clear-cache` removes them")
    return ImageCache(folder)


def _build(build, folder, splits, classes, image_size, decode, workers, skip_bad, progress, source, fingerprint):
    """Decode ``splits`` into ``build`` and rename it into ``folder``; a failure removes it."""
    try:
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
        build.finish(folder)
    finally:
        build.remove()


def caches_in(cache_dir: Optional[str] = None, source: Optional[str] = None) -> List[ImageCache]:
    """The decoded caches in ``cache_dir`` (default: default_cache_dir()), or only those of the
    folder ``source``. Builds in progress are not caches yet and are left out."""
    root = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    if not os.path.isdir(root):
        return []
    found = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if ".building-" not in entry.name and os.path.isfile(os.path.join(entry.path, "meta.json")):
            cache = ImageCache(entry.path)
            if source is None or cache.meta.get("source") == os.path.abspath(os.path.expanduser(str(source))):
                found.append(cache)
    return found


def clear_caches(cache_dir: Optional[str] = None, source: Optional[str] = None) -> Tuple[int, int]:
    """Remove the decoded caches in ``cache_dir`` (all, or only those of the folder ``source``);
    returns (how many, bytes freed). A run reading one of them must not be going on: later
    runs rebuild what they need."""
    removed = caches_in(cache_dir, source)
    freed = sum(cache.bytes() for cache in removed)
    for cache in removed:
        shutil.rmtree(cache.folder)
    return len(removed), freed


def shown(path) -> str:
    """``path`` printable: a file name that is not valid UTF-8 (its undecodable bytes held as
    surrogates, os.fsdecode's way) shows those bytes as ``\\xff`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def bad_image(description):
    """The error for an unreadable image (`description`: its path and Pillow's reason)."""
    return UsageError(f"cannot read image {description}; fix or remove it, or pass "
                      "--skip-bad-images to leave unreadable images out")


def _check_space(root, needed):
    free = shutil.disk_usage(root).free
    if needed > 0.95 * free:
        raise UsageError(f"the decoded images need {needed / 2**30:.1f} GiB but {root} has {free / 2**30:.1f} GiB "
                         "free; pass --cache-dir on a larger disk or a smaller --image-size")


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
                                         collate_fn=_stack, worker_init_fn=_fixed_mmap_threshold)
    labels, histogram = [], torch.zeros(3, 256, dtype=torch.int64)
    with open(os.path.join(folder, f"{name}.u8"), "wb") as out, \
            tqdm(total=len(files), desc=f"decoding {name}", unit="img", disable=not progress, leave=False) as bar:
        for images, batch_labels, errors, batch_histogram in loader:
            if errors and not skip_bad:
                raise bad_image(errors[0])
            skipped += errors
            if images is not None:
                out.write(memoryview(images.numpy()).cast("B"))
                labels += batch_labels
                histogram += batch_histogram
            bar.update(len(batch_labels) + len(errors))
            build.beat(bar.n)
    if not labels:
        raise UsageError(f"the {name} split has no readable images")
    np.save(os.path.join(folder, f"{name}.labels.npy"), np.asarray(labels, dtype=np.int64))
    return len(labels), histogram
