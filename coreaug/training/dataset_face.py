"""The dataset face of `CoresetAugmentation`: a wrapped map-style dataset and a sampler that
follows the epoch's plan, for training loops built on `torch.utils.data.DataLoader`."""
import torch

from coreaug.errors import UsageError

from . import method as method_module


class PlanDataset(torch.utils.data.Dataset):
    """`base` seen through the method's plans: item i < N is example i under `weak`, item N + i a
    copy of example i under `strong`; each item is `(image, label, weight)`.

    `base` is any map-style dataset whose items are `(image, label)` (a torchvision dataset, say);
    `weak` and `strong` are callables on one image (torchvision transforms, say), None for
    none. The weight is the current plan's: 1 for originals in append mode, the coreset weight
    in subset mode; the copies' is the coreset weight with `weight_augmented`, else 1. Weights
    are read when an item is loaded, so start each epoch (`start_epoch`) before iterating, and
    leave the DataLoader's `persistent_workers` off: a worker that holds the weights of an
    earlier selection is refused (UsageError) when the sampler hands it an item. So is a copy
    of an example the current plans do not copy (a DataLoader without `sampler=method.sampler()`
    would train every copy).
    """

    def __init__(self, method, base, weak=None, strong=None):
        if len(base) != len(method):
            raise UsageError(f"the dataset has {len(base)} examples but the labels given to CoresetAugmentation "
                             f"have {len(method)}; wrap the same training set")
        if len(base):
            item = base[0]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise UsageError("the dataset must return (image, label) pairs (like torchvision's datasets); "
                                 f"its item 0 is a {type(item).__name__}")
        for name, transform in (("weak", weak), ("strong", strong)):
            if transform is not None and not callable(transform):
                raise UsageError(f"{name} must be a callable transform or None, got {type(transform).__name__}")
        self.method, self.base, self.weak, self.strong = method, base, weak, strong

    def __len__(self):
        return 2 * len(self.base)

    def __getitem__(self, item):
        n = len(self.base)
        version = getattr(item, "version", None)  # a PlanSampler's item: the selection it was drawn under
        if version is not None and version != self.method.version:
            raise UsageError("this DataLoader worker holds the weights of an earlier selection (persistent_workers "
                             "keeps them from the first epoch): leave persistent_workers off")
        copy = item >= n
        index = item - n if copy else item
        if copy and not self.method.copied[index]:
            raise UsageError(f"item {item} is a strongly augmented copy of example {index}, which the current plan "
                             "does not copy: iterate the dataset with sampler=method.sampler()")
        image, label = self.base[index][:2]
        transform = self.strong if copy else self.weak
        if transform is not None:
            image = transform(image)
        weights = self.method.copy_weights if copy else self.method.original_weights
        return image, label, weights[index]


class PlanItem(int):
    """A `PlanDataset` index that carries the method's `version` it was drawn under, so that a
    DataLoader worker holding an older copy of the method can tell."""

    def __new__(cls, item, version):
        self = super().__new__(cls, item)
        self.version = version
        return self

    def __reduce__(self):
        return PlanItem, (int(self), self.version)


class PlanSampler(torch.utils.data.Sampler):
    """The items of the method's current plan, in its order, as `PlanDataset` indices (i for an
    original, N + i for a copy). With `num_replicas` processes each takes the disjoint share
    `EpochPlan.shard(rank, num_replicas)`, like `DistributedSampler`; left None, they are the
    initialised process group's when the sampler is iterated (1 and 0 without one)."""

    def __init__(self, method, num_replicas=None, rank=None):
        if num_replicas is not None and rank is not None and not 0 <= rank < num_replicas:
            raise UsageError(f"rank must be in [0, num_replicas), got rank {rank} of {num_replicas}")
        self.method, self._num_replicas, self._rank = method, num_replicas, rank

    @property
    def num_replicas(self):
        return self._num_replicas if self._num_replicas is not None else method_module._world_size()

    @property
    def rank(self):
        if self._rank is not None:
            return self._rank
        return torch.distributed.get_rank() if method_module._world_size() > 1 else 0

    def set_epoch(self, epoch):
        """Nothing: `start_epoch` draws each epoch's order (here for loops written for DistributedSampler)."""

    def __iter__(self):
        if self.method.plan is None:
            raise UsageError("no plan yet: call start_epoch(epoch, model, data) before iterating the DataLoader")
        share = self.method.plan.shard(self.rank, self.num_replicas)
        items = share.indices + len(self.method) * share.augmented.long()
        version = self.method.version
        return iter([PlanItem(item, version) for item in items.tolist()])

    def __len__(self):
        """This rank's items in the current plan (before the first `start_epoch`, in the plans
        that the method's fraction makes)."""
        plan = self.method.plan
        return (len(plan) if plan is not None else self.method.plan_length()) // self.num_replicas
