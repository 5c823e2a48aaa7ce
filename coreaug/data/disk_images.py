"""Decoded images on disk, read by rows with read-ahead, without holding them in memory.

``DiskImages`` reads rows of a cache split (coreaug.data.image_cache) with one ``pread`` per
row into the batch's buffer. (A memory map would gather rows in one numpy call, but a fault
maps the whole page-cache folio around a row, up to megabytes, so the resident set grew with
the file: 1.9 GB of mapped cache at 224 px, measured in experiments/results/data.md.)
"""
import os
import queue
import threading
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from coreaug.errors import UsageError

from .images import Images, TensorImages


class _OpenFile:
    """A cache file opened once for every view of it (`DiskImages[rows]`), closed with the last: a run
    keeps reading what it opened when the cache is removed under it (`coreaug datasets --clear-cache`),
    where each epoch's new views opened the path again and stopped the run."""

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def get(self) -> int:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                raise UsageError(f"{self.path} is gone: its decoded cache was removed before this process opened it "
                                 "(`coreaug datasets --clear-cache` while a run read it?); run the command again to "
                                 "rebuild it (a training run with --resume goes on from its last checkpoint)") from None
        return self.fd

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)


class DiskImages(Images):
    """uint8 images (N, C, H, W) in a cache file, read by rows; in memory only while read.

    An `Images` (coreaug.data.images): ``len``, ``shape`` and ``dtype`` read like a tensor's;
    ``images[rows]`` (a slice, or an integer array or tensor of positions) is a view of some
    rows, still on disk; ``read(rows)`` returns those rows as a uint8 tensor;
    ``batches(row_batches)`` reads batches ahead in a background thread; ``to(device)`` loads
    them all.
    """

    dtype = torch.uint8

    def __init__(self, path: str, count: int, image_shape: Tuple[int, int, int], rows: Optional[np.ndarray] = None,
                 opened: Optional[_OpenFile] = None):
        self.path, self.count, self.image_shape = path, count, tuple(image_shape)
        self.rows = rows  # positions in the file, or None for all of them in order
        self._file = opened or _OpenFile(path)  # shared with the views made of this one

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
        return DiskImages(self.path, self.count, self.image_shape, file_rows, self._file)

    def read(self, rows, pin: bool = False) -> torch.Tensor:
        """The images at positions ``rows`` (int64 array or CPU tensor, or a slice), in that
        order, as a (len, C, H, W) tensor (in pinned memory if ``pin``). Raises IndexError for
        a position out of range."""
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        file_rows = rows if self.rows is None else self.rows[rows]
        if file_rows.size and (file_rows.min() < 0 or file_rows.max() >= self.count):
            raise IndexError(f"rows out of range for {len(self)} images: {rows.min()}..{rows.max()}")
        fd = self._file.get()
        size = self.row_bytes
        if pin:  # page-locked, so the copy to the GPU can run while the step computes
            out = torch.empty((len(rows), size), dtype=torch.uint8, pin_memory=True)
            buffer = out.numpy()  # a view of host memory: no device involved
        else:
            buffer = np.empty((len(rows), size), dtype=np.uint8)
            out = torch.from_numpy(buffer)
        for i, row in enumerate(file_rows.tolist()):  # a syscall per row, which waits on the disk
            if os.preadv(fd, [buffer[i]], row * size) != size:
                raise UsageError(f"{self.path} is shorter than its {self.count} images; delete its folder to rebuild the cache")
        return out.view(len(rows), *self.image_shape)

    def __getstate__(self):
        """Without the open file: a copy, or a process it is pickled into (a DataLoader worker
        started with spawn), opens its own; the number would name another file there, and be
        closed twice."""
        return {**self.__dict__, "_file": _OpenFile(self.path)}

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
