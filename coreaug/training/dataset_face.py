"""The dataset face of `CoresetAugmentation`: a wrapped map-style dataset and a sampler that
follows the epoch's plan, for training loops built on `torch.utils.data.DataLoader`."""
import functools
import importlib.util
import numbers
import os
import sys
import warnings
import zlib

import numpy as np
import torch

from coreaug.data.images import kept_random_states
from coreaug.errors import UsageError
from coreaug.files import warn_at_caller
from coreaug.selection.checks import check_int

from . import method as method_module


class PlanDataset(torch.utils.data.Dataset):
    """`base` seen through the method's plans: item i < N is example i under `weak`, item N + i a
    copy of example i under `strong`; each item is `(image, label, weight)`.

    `base` is any map-style dataset whose items are `(image, label)` (a torchvision dataset, say),
    in the order of the method's labels (the integer labels of a few items spread over it are
    checked against them when wrapped, not each item's as it loads: that would slow every epoch);
    fields after the label (an index, say) follow the weight, a copy's its example's. `weak` and `strong`
    are callables on one image (torchvision transforms, say), None for none. The weight is the
    current plan's: 1 for originals in append mode, the coreset weight
    in subset mode; the copies' is the coreset weight with `weight_augmented`, else 1. Weights
    are read when an item is loaded, so start each epoch (`start_epoch`) before iterating (before the
    DataLoader's iterator is made: with workers it draws items at once; a pass begun before another
    epoch or selection started is refused at its next item), and leave the DataLoader's
    `persistent_workers` off: a worker that serves a second epoch warns, and one that holds the
    weights of an earlier selection is refused (UsageError) when the sampler hands it an item. So is a copy
    of an example the current plans do not copy (a DataLoader without `sampler=method.sampler()`
    would train every copy), and an index that is not the sampler's warns once (a sampler over
    the originals alone would train no copy).
    """

    def __init__(self, method, base, weak=None, strong=None):
        method_module.check_map_style(base, "the dataset to wrap", "train on it",
                                      "build the DataLoader on method.dataset(...) instead",
                                      "TensorDataset(data.train_images, data.train_labels)")
        if len(base) != len(method):
            raise UsageError(f"the dataset has {len(base)} examples but the labels given to CoresetAugmentation "
                             f"have {len(method)}; wrap the same training set")
        if len(base):
            with kept_random_states():  # a dataset's random transforms draw none of the user's numbers
                item = base[0]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise UsageError("the dataset must return (image, label) pairs (like torchvision's datasets); "
                                 f"its item 0 is a {type(item).__name__}")
            self._check_labels(base, method.labels.numpy(), item)
        for name, transform in (("weak", weak), ("strong", strong)):
            if transform is not None and not callable(transform):
                raise UsageError(f"{name} must be a callable transform or None, got {type(transform).__name__}")
        self.method, self.base, self.weak, self.strong = method, base, weak, strong

    def __len__(self):
        return 2 * len(self.method)

    def __getitem__(self, item):
        n = len(self.method)  # the sampler's numbering: a copy of example i is item n + i
        if len(self.base) != n:
            raise UsageError(f"the wrapped dataset now has {len(self.base)} examples but the labels given to "
                             f"CoresetAugmentation {n}: a training set of another size needs a new "
                             "CoresetAugmentation (and its dataset() and sampler())")
        version = getattr(item, "version", None)  # a PlanSampler's item: the selection it was drawn under
        if version is None:
            self._warn_foreign_index()
        elif version > self.method.version:
            raise UsageError("this DataLoader worker holds the weights of an earlier selection (persistent_workers, "
                             "or a loader that keeps its workers, keeps them from the first epoch): leave "
                             "persistent_workers off")
        elif version < self.method.version:
            raise UsageError("the selection changed (start_epoch, use or load_state_dict) while the DataLoader was "
                             "iterating the plan drawn before it: start a new pass over the DataLoader after it")
        else:
            self._check_one_epoch(item.epoch)
        copy = item >= n
        index = item - n if copy else item
        if copy and not self.method.copied[index]:
            raise UsageError(f"item {item} is a strongly augmented copy of example {index}, which the current plan "
                             "does not copy: iterate the dataset with sampler=method.sampler()")
        image, label, *extra = self.base[index]
        transform = self.strong if copy else self.weak
        if transform is not None:
            image = transform(image)
        weights = self.method.copy_weights if copy else self.method.original_weights
        return (image, label, weights[index].clone(), *extra)  # not a view: an in-place op would edit the method's

    def _check_one_epoch(self, epoch):
        """A warning from the first DataLoader worker as it serves a second epoch (`epoch`: the epoch of the plan
        an item was drawn from): persistent_workers (or a loader that keeps its workers, timm's
        MultiEpochsDataLoader) keeps the worker and its copy of the method from its first epoch, which the next
        selection will refuse, epochs later (said now; a run that selects no more trains on). Two passes of one
        epoch are not two epochs (Lightning iterates a reloaded loader twice in an epoch). Strategies that
        select nothing (full, none) keep their weights, and may keep their workers."""
        worker = torch.utils.data.get_worker_info()
        if worker is None or not self.method.selects:
            return
        served = getattr(self, "_served_epoch", None)
        if served is None:
            self._served_epoch = epoch
        elif served != epoch and worker.id == 0 and not getattr(self, "_said_persistent", False):
            self._said_persistent = True
            warnings.warn("this DataLoader worker serves a second epoch with the method's state of its first "
                          "(persistent_workers, or a loader that keeps its workers): at the next selection (every "
                          f"{self.method.select_every} epochs) it would hand out the weights of an earlier one, and "
                          "is refused then: leave persistent_workers off", stacklevel=2)

    CHECKED_ITEMS = 16  # items whose labels are checked when wrapped: reading one may decode an image

    @classmethod
    def _check_labels(cls, base, labels, first):
        """UsageError where the integer label of one of a few items spread over `base` (0 and the
        last among them; `first` is item 0, already read) is not the method's (a dataset in another
        order); other labels (one-hot, smoothed) are not checked. Once, not per item: a check as each
        item loads made a small-item epoch ~1.5x slower."""
        n = len(labels)
        if not n or bool((labels == labels[0]).all()):  # one pool (multi-label, regression: the targets are no class)
            return
        with kept_random_states():  # a dataset's random transforms draw no number of the user's seeded loop
            read = {index: base[index] for index in
                    sorted({round(k * (n - 1) / (cls.CHECKED_ITEMS - 1)) for k in range(1, cls.CHECKED_ITEMS)})}
        read[0] = first
        for index in sorted(read):
            label = _one_integer(read[index][1])
            if isinstance(label, numbers.Integral) and not isinstance(label, bool) and label != labels[index]:
                raise UsageError(f"item {index}'s label is {int(label)} but labels[{index}] is {int(labels[index])}: "
                                 "wrap the training set in the order of the labels given to CoresetAugmentation "
                                 "(labels that are not the items' own, ids that stratify other targets: give the "
                                 "items float targets)")

    def _warn_foreign_index(self):
        """Once: in this process, in the method's first epoch, and in the first DataLoader worker (each worker
        holds a copy of the dataset, made again every epoch: 1,600 warnings for 8 workers over 200 epochs)."""
        worker = torch.utils.data.get_worker_info()
        if self.method.epochs_started <= 1 and (worker is None or worker.id == 0) and not getattr(self, "_warned", 0):
            self._warned = True
            warnings.warn("the dataset of method.dataset() is being read by an index that is not method.sampler()'s; "
                          "a DataLoader must iterate it with sampler=method.sampler() (a sampler over the originals "
                          "alone trains no strong copy)", stacklevel=2)


def _one_integer(label):
    """A label that holds one integer (a 0-dim or one-element tensor or array: a column's, as
    `TensorDataset(x, y[:, None])` gives) as that integer; any other label as it is."""
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        return label.reshape(()).item()
    if isinstance(label, np.ndarray) and label.size == 1 and np.issubdtype(label.dtype, np.integer):
        return label.reshape(()).item()
    return label


class PlanItem(int):
    """A `PlanDataset` index that carries the method's `version` it was drawn under and the `epoch`
    of the plan it was drawn from (class attributes of one subclass per pair, `plan_item_type`: no
    per-item dict), so that a DataLoader worker holding an older copy of the method, or serving a
    second epoch with it (persistent_workers), can tell."""

    __slots__ = ()
    version = None
    epoch = None

    def __reduce__(self):
        return self._make, (int(self),)  # the same _make for every item: pickled once per batch


@functools.lru_cache(maxsize=64)
def plan_item_type(version, epoch=None):
    """The `PlanItem` subclass of `version` and the plan of `epoch`."""
    kind = type("PlanItem", (PlanItem,), {"__slots__": (), "version": version, "epoch": epoch})
    kind._make = functools.partial(_plan_item, version, epoch)
    return kind


def _plan_item(version, epoch, item):
    return plan_item_type(version, epoch)(item)


class PlanSampler(torch.utils.data.distributed.DistributedSampler):
    """The items of the method's current plan, in its order, as `PlanDataset` indices (i for an
    original, N + i for a copy). With `num_replicas` processes each takes the disjoint share
    `EpochPlan.shard(rank, num_replicas)`, like `DistributedSampler`; left None, they are the
    initialised process group's when the sampler is iterated (1 and 0 without one). The plan is
    cut to a multiple of `num_replicas` (up to num_replicas - 1 items dropped an epoch, as the
    trainer drops them); a plan of fewer items than processes is a UsageError.

    A `DistributedSampler` (by class, not by its constructor), so that frameworks which put one
    around any other sampler under DDP (PyTorch Lightning's `use_distributed_sampler`, on by
    default) leave it as it is: sharded twice, each rank trained half of its share."""

    shuffle = True  # the plan's order, drawn by the method's seed each epoch
    drop_last = True  # the plan is cut to a multiple of the processes

    def __init__(self, method, num_replicas=None, rank=None):
        num_replicas = check_int(num_replicas, "num_replicas", optional=True)
        rank = check_int(rank, "rank", 0, optional=True)
        if num_replicas is not None and rank is not None and not rank < num_replicas:
            raise UsageError(f"rank must be in [0, num_replicas), got rank {rank} of {num_replicas}")
        self.method = method
        self._num_replicas = None if num_replicas is None else int(num_replicas)
        self._rank = None if rank is None else int(rank)
        self._epoch = None  # the epoch set_epoch named
        self._finished, self._warned = None, False  # the method's epochs_started when a pass last ended; said so

    @property
    def num_replicas(self):
        return self._num_replicas if self._num_replicas is not None else method_module._world_size()

    @property
    def rank(self):
        if self._rank is not None:
            return self._rank
        return torch.distributed.get_rank() if method_module._world_size() > 1 else 0

    @property
    def seed(self):
        return self.method.seed

    @property
    def epoch(self):
        """The epoch `set_epoch` named, else the plan's."""
        return self.method.epoch if self._epoch is None else self._epoch

    @epoch.setter
    def epoch(self, epoch):  # (DistributedSampler.set_epoch sets the attribute)
        self.set_epoch(epoch)

    @property
    def num_samples(self):
        """This rank's items, as DistributedSampler names them (`len`)."""
        return len(self)

    @property
    def total_size(self):
        return len(self) * self.num_replicas

    def set_epoch(self, epoch):
        """Orders nothing: `start_epoch` draws each epoch's order (here for loops written for
        DistributedSampler). The sampler is then iterated for that epoch only: a UsageError says
        so where the method's plan is another epoch's (start_epoch not called for it, on this rank)."""
        self._epoch = method_module.check_epoch(epoch)

    def __iter__(self):
        """This rank's items of the plan that is current at the first item (`PlanIterator`)."""
        return PlanIterator(self)

    def _share(self):
        """This rank's items of the current plan, as an int64 tensor (the checks first)."""
        if self.method.plan is None:
            raise UsageError("no plan yet: call start_epoch(epoch, model, data) before iterating the DataLoader (and "
                             "before the first state_dict() of a StatefulDataLoader with workers: it starts a pass; "
                             "accelerate's prepare() of one calls it)")
        asked = self._epoch
        if asked is not None and asked < self.method.epoch:  # set once, or by a wrapper counting its own passes
            raise UsageError(f"the plan is epoch {self.method.epoch}'s, but sampler.set_epoch({asked}) named an "
                             "earlier one: call sampler.set_epoch(epoch) every epoch (before or after start_epoch), "
                             "or not at all (set_epoch orders nothing; start_epoch draws each epoch's plan); where a "
                             "wrapper calls it with its own count of passes, tell it the epoch: accelerate's "
                             "prepared DataLoader, loader.set_epoch(epoch) after start_epoch; torchdata.nodes' "
                             "SamplerWrapper, initial_epoch=<the first epoch> (a resumed run's)")
        if asked is not None and asked != self.method.epoch:
            raise UsageError(f"the plan is epoch {self.method.epoch}'s, but sampler.set_epoch({asked}) named another: "
                             f"call method.start_epoch({asked}, model, data) on every rank before iterating (set_epoch "
                             "orders nothing; start_epoch draws each epoch's plan and selection)")
        rank, world = self.rank, self.num_replicas
        if not rank < world:
            raise UsageError(f"rank must be in [0, num_replicas), got rank {rank} of {world}")
        if len(self.method.plan) < world:  # the trainer refuses it before a run: each rank's share would be empty
            raise UsageError(f"the epoch's plan has {len(self.method.plan)} items for {world} processes, fewer than "
                             "one each: every rank would train nothing; raise the fraction or use fewer processes")
        share = self.method.plan.shard(rank, world)
        return share.indices + len(self.method) * share.augmented.long()

    def __len__(self):
        """This rank's items in the current plan (before the first `start_epoch`, in the plans
        that the method's fraction makes)."""
        plan = self.method.plan
        return (len(plan) if plan is not None else self.method.plan_length()) // self.num_replicas


class PlanIterator:
    """A `PlanSampler`'s items of one pass, read from the plan current at the first item (a
    StatefulDataLoader's `state_dict()` makes its iterator before `start_epoch`, and its pass then
    uses it). Stateful, as torchdata's StatefulDataLoader asks of a sampler's iterator: its state
    names the plan (epoch, checksum and length of this rank's items) and the items handed out, so
    that a mid-epoch resume skips those of the same plan, and refuses another plan's (a method whose
    state was not loaded selects and shuffles anew: the count would skip other items). A state of a
    whole pass resumes nothing of that plan (a checkpoint after an epoch's last batch), and the
    whole of another (the next epoch's, once start_epoch began it)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.yielded = 0
        self._for_a_loader = _called_from(_LOADERS)
        self._items = None
        self._plan = None  # (epoch, checksum, length) of the items handed out
        self._mark = None  # the method's (epoch, version) the items were drawn under
        self._began = None  # the method's epochs_started then
        self._resumed = None  # a loaded state, checked against the plan at the first item

    def __iter__(self):
        return self

    def __next__(self):
        if self._items is None:
            self._start()
        try:
            item = next(self._items)
        except StopIteration:  # (a pass with nothing left ends, whatever began since: ignite asks once more)
            if self._for_a_loader:  # (not a look at the items: list(sampler))
                self.sampler._finished = self._began  # this plan's pass has ended (ignite asks after the next began)
            raise
        if (self.sampler.method.epoch, self.sampler.method.version) != self._mark:
            self._refuse_changed_plan()
        self.yielded += 1
        return item

    def _start(self):
        items = self.sampler._share()
        method = self.sampler.method
        if self._for_a_loader and self.sampler._finished == method.epochs_started and not self.sampler._warned:
            self.sampler._warned = True
            warn_at_caller(f"the DataLoader begins another pass over epoch {method.epoch}'s plan, which a pass has "
                           "already trained: call method.start_epoch(epoch, model, data) at the start of every "
                           "epoch (it draws each epoch's plan, and every select_every epochs a new selection), "
                           "before the DataLoader's iterator is made (with workers, iter(loader) and a "
                           "StatefulDataLoader's state_dict() draw items at once)", past=_LOADERS)
        self._plan = (method.epoch, zlib.crc32(items.numpy().tobytes()), len(items))
        skip = 0
        resumed = self._resumed
        if resumed is not None and resumed["yielded"]:
            skip = resumed["yielded"]
            same = (resumed["epoch"], resumed["plan"], resumed["length"]) == self._plan
            if skip >= resumed["length"] and not same:  # a whole pass saved, and the next epoch begun
                skip = 0
            elif not same:
                saved = resumed["epoch"]
                what = "another plan of that epoch" if saved == self._plan[0] else f"epoch {self._plan[0]}'s plan"
                raise UsageError(f"the DataLoader's state resumes epoch {saved}'s plan after {skip} of its items, "
                                 f"but the method's is {what} (or this rank's share of it, with another number of "
                                 "processes): load the method's state (method.load_state_dict, saved with the "
                                 f"loader's) before iterating, and call start_epoch({saved}, ...) on it: a method "
                                 "that selects and shuffles anew would skip other items")
        self.yielded = skip
        self._mark, self._began = (method.epoch, method.version), method.epochs_started
        self._items = _items(items[skip:], plan_item_type(method.version, method.epoch))

    def _refuse_changed_plan(self):
        """A UsageError for a pass whose method began another epoch or selection (start_epoch, use,
        load_state_dict) after the pass drew its first items: its workers, forked with the method as it
        was, would train the rest of the old plan with the old weights, silently (with num_workers 0 the
        dataset refuses the items instead)."""
        epoch = self._mark[0]
        now = self.sampler.method.epoch
        what = f"the method began epoch {now}" if now != epoch else "the selection changed (use or load_state_dict)"
        raise UsageError(f"{what} while the DataLoader was iterating epoch {epoch}'s plan, whose iterator "
                         "was made before it: the rest of the pass would train the old plan and weights. Call "
                         "start_epoch(epoch, model, data) before the DataLoader's iterator is made (with workers, "
                         "iter(loader) draws items at once); under PyTorch Lightning, in train_dataloader() start "
                         "the epoch Lightning is about to train, self.trainer.fit_loop.epoch_progress.current."
                         "processed (on a resume from an epoch's end, current_epoch is still the ended epoch's there). "
                         "A loop resumed mid-epoch that trains the rest of that epoch from a fresh iterator (ignite "
                         "with a plain DataLoader) ends it early: checkpoint at epoch ends, or save a "
                         "StatefulDataLoader's state with the method's")

    def state_dict(self):
        """The plan's epoch, checksum and length (None before the first item), and the items handed out."""
        if self._plan is None and self._resumed is not None:  # loaded, not yet iterated: saved again as it is
            return dict(self._resumed)
        epoch, checksum, length = self._plan if self._plan is not None else (None, None, None)
        return {"epoch": epoch, "plan": checksum, "length": length, "yielded": self.yielded}

    def load_state_dict(self, state):
        """Resume after `state["yielded"]` items of the plan `state` names (checked at the first item)."""
        if not isinstance(state, dict) or set(state) != {"epoch", "plan", "length", "yielded"}:
            raise UsageError(f"not a state of a coreaug sampler's pass: {state!r}")
        self._resumed = dict(state)
        self._items, self._plan, self.yielded = None, None, 0


def _loader_folders():
    """The folders of the DataLoaders that iterate a sampler for a training loop: torch's, and
    torchdata's where it is installed (found without importing it)."""
    folders = [os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "utils", "data")]
    try:
        spec = importlib.util.find_spec("torchdata")
    except (ImportError, ValueError):
        spec = None
    folders += list(spec.submodule_search_locations or ()) if spec is not None else []
    return tuple(os.path.join(os.path.abspath(folder), "") for folder in folders)


_LOADERS = _loader_folders()


def _called_from(folders, depth=6):
    """Whether one of the `depth` frames that called the caller's caller runs code under `folders`."""
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if os.path.abspath(frame.f_code.co_filename).startswith(folders):
            return True
        frame = frame.f_back
    return False


def _items(items, kind, chunk=1 << 16):
    """`items` (an int64 tensor) as `kind`s, made a chunk at a time as the DataLoader asks for them."""
    for start in range(0, len(items), chunk):
        yield from map(kind, items[start:start + chunk].tolist())
