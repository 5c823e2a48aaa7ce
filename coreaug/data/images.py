"""The images a run reads, behind one small interface, whatever holds them.

Three sources: a tensor in memory or on the device (`TensorImages`), the decoded cache on disk
(`coreaug.data.disk_images.DiskImages`), and a map-style dataset of (image, label) pairs read
by a DataLoader (`DatasetImages`). Each has ``len``, ``shape``, ``images[rows]`` (a view of
some rows, of the same source), ``read(rows)`` (those rows as a tensor, in that order),
``batches(row_batches, pin=False)`` (``read`` of each batch of rows, in order, read ahead
where the source reads slowly; pinned for asynchronous copies to a GPU if ``pin``) and
``to(device)`` (the images in memory on ``device``: `TensorImages`). ``rows_device`` says
how rows are best given: as index tensors on that device, or (None) as numpy positions on the
host, read from there. Callers never ask which source they hold;
`as_images` wraps a plain tensor, array or dataset at the public boundary.

Rows are an int64 array or tensor of positions, or a slice (a view of a tensor, no copy).
"""
import contextlib
import random
from typing import Iterator, List

import numpy as np
import torch

from coreaug.errors import UsageError


class Images:
    """What every source of images offers (see the module docstring)."""

    rows_device = None  # numpy positions on the host; a device: index tensors there

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self):
        raise NotImplementedError

    @property
    def row_bytes(self) -> int:
        """Bytes one image takes (uint8: its number of values)."""
        return int(np.prod(self.shape[1:]))

    def __getitem__(self, rows) -> "Images":
        raise NotImplementedError

    def read(self, rows, pin: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def batches(self, row_batches, pin: bool = False) -> Iterator[torch.Tensor]:
        """``read(rows)`` for each batch of rows in ``row_batches``, in order."""
        for rows in row_batches:
            yield self.read(rows, pin=pin)

    def to(self, device) -> "TensorImages":
        raise NotImplementedError


class TensorImages(Images):
    """Images held by a tensor (on the CPU or the device); reading them copies nothing more
    than the rows asked for, and ``pin`` is not needed."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    @property
    def device(self):
        return self.tensor.device

    @property
    def rows_device(self):
        return self.tensor.device

    @property
    def dtype(self):
        return self.tensor.dtype

    def __len__(self) -> int:
        return len(self.tensor)

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    def __getitem__(self, rows) -> "TensorImages":
        return TensorImages(self.tensor[rows])

    def read(self, rows, pin: bool = False) -> torch.Tensor:
        if isinstance(rows, slice):
            return self.tensor[rows]
        return self.tensor.index_select(0, torch.as_tensor(rows, device=self.tensor.device))

    def to(self, device) -> "TensorImages":
        return TensorImages(self.tensor.to(device))

    def __repr__(self) -> str:
        return f"TensorImages(shape={self.shape}, dtype={self.dtype}, device={self.device})"


IN_ORDER = "pass the training set in the order of the labels"


@contextlib.contextmanager
def kept_random_states():
    """Give torch's CPU generator, Python's `random` and numpy's global generator back the states
    they had on entering."""
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


def _workers_generator() -> torch.Generator:
    """A DataLoader's generator: its base seed (the seed of the workers' random transforms) drawn
    from torch's global RNG, as a DataLoader without one draws it, but without moving that RNG (a
    fixed generator gave every run's workers the same seeds; none moved the user's own draws)."""
    with torch.random.fork_rng(devices=[]):
        seed = int(torch.empty((), dtype=torch.int64).random_())
    return torch.Generator().manual_seed(seed)


class DatasetImages(Images):
    """The images of a map-style dataset of (image, label) pairs (or of images), read in the
    batches asked for by a DataLoader with ``num_workers`` worker processes. With ``labels``
    (one per item of the dataset), every batch's labels are checked against them: a UsageError
    names the first item whose label differs (a dataset in another order than the labels)."""

    def __init__(self, dataset, num_workers: int = 0, rows=None, labels=None, advice=IN_ORDER):
        self.dataset, self.num_workers = dataset, num_workers
        self.rows = rows  # positions in the dataset, or None for all of them in order
        self.labels, self.advice = labels, advice

    def __len__(self) -> int:
        return len(self.dataset) if self.rows is None else len(self.rows)

    @property
    def shape(self):
        if not len(self):
            return (0,)
        with kept_random_states():  # a dataset's random transforms draw none of the caller's numbers
            return (len(self), *self.read([0]).shape[1:])

    def _positions(self, rows) -> np.ndarray:
        chosen = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        return chosen if self.rows is None else self.rows[chosen]

    def __getitem__(self, rows) -> "DatasetImages":
        return DatasetImages(self.dataset, self.num_workers, self._positions(rows), self.labels, self.advice)

    def batches(self, row_batches, pin: bool = False) -> Iterator[torch.Tensor]:
        sampler = [self._positions(rows).tolist() for rows in row_batches]
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                                             pin_memory=pin, generator=_workers_generator())
        for positions, batch in zip(sampler, loader):
            if self.labels is not None and isinstance(batch, (list, tuple)) and len(batch) > 1:
                _check_labels(positions, batch[1], self.labels, self.advice)
            yield batch[0] if isinstance(batch, (list, tuple)) else batch

    def read(self, rows, pin: bool = False) -> torch.Tensor:
        return next(iter(self.batches([rows], pin=pin)))

    def to(self, device) -> TensorImages:
        return TensorImages(torch.cat(list(self.batches(consecutive(len(self), 256))))).to(device)


def _check_labels(positions, got, labels, advice=IN_ORDER):
    """UsageError naming the first of the items at `positions` whose label (`got`) is not `labels`' own,
    then `advice`."""
    if not isinstance(got, torch.Tensor) or got.numel() != len(positions):
        return  # labels of another kind (one-hot, names): estimate_gradients reads the caller's
    got = got.reshape(-1).long()
    want = torch.as_tensor(labels)[torch.as_tensor(positions, dtype=torch.long)].long()
    differ = torch.nonzero(got != want).flatten()
    if len(differ):
        first = int(differ[0])
        raise UsageError(f"item {positions[first]}'s label is {int(got[first])} but labels[{positions[first]}] is "
                         f"{int(want[first])}: {advice}")


def as_images(images, num_workers: int = 0, labels=None, advice=IN_ORDER) -> Images:
    """``images`` as an `Images`: a source as it is, a tensor or array as `TensorImages`, any
    other sized, indexable collection as a map-style dataset (`DatasetImages`, read by a
    DataLoader with ``num_workers`` workers, its items' labels checked against ``labels``, a
    difference a UsageError ending in ``advice``)."""
    if isinstance(images, Images):
        return images
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return TensorImages(torch.as_tensor(images))
    return DatasetImages(images, num_workers, labels=labels, advice=advice)


def consecutive(count: int, batch_size: int) -> List[slice]:
    """Row batches 0..count-1 in order, ``batch_size`` at a time."""
    return [slice(s, min(s + batch_size, count)) for s in range(0, count, batch_size)]


def device_batches(images: Images, batch_size: int, device) -> Iterator[torch.Tensor]:
    """Consecutive batches of ``images`` on ``device``, read ahead (pinned on a GPU) where
    the source reads slowly and copied without waiting."""
    device = torch.device(device)
    for batch in images.batches(consecutive(len(images), batch_size), pin=device.type == "cuda"):
        yield batch.to(device, non_blocking=True)
