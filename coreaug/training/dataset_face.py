"""The dataset face of `CoresetAugmentation`: a wrapped map-style dataset and a sampler that
follows the epoch's plan, for training loops built on `torch.utils.data.DataLoader`."""
import torch

from coreaug.errors import UsageError


class PlanDataset(torch.utils.data.Dataset):
    """`base` seen through the method's plans: item i < N is example i under `weak`, item N + i a
    copy of example i under `strong`; each item is `(image, label, weight)`.

    `base` is any map-style dataset whose items are `(image, label)` (a torchvision dataset, say);
    `weak` and `strong` are callables on one image (torchvision transforms, say), None for
    none. The weight is the current plan's: 1 for originals in append mode, the coreset weight
    in subset mode; the copies' is the coreset weight with `weight_augmented`, else 1. Weights
    are read when an item is loaded, so start each epoch (`start_epoch`) before iterating, and
    leave the DataLoader's `persistent_workers` off (its workers would keep the first epoch's).
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
        copy = item >= n
        index = item - n if copy else item
        image, label = self.base[index][:2]
        transform = self.strong if copy else self.weak
        if transform is not None:
            image = transform(image)
        weights = self.method.copy_weights if copy else self.method.original_weights
        return image, label, weights[index]


class PlanSampler(torch.utils.data.Sampler):
    """The items of the method's current plan, in its order, as `PlanDataset` indices (i for an
    original, N + i for a copy). With `num_replicas` processes each takes the disjoint share
    `EpochPlan.shard(rank, num_replicas)`, like `DistributedSampler`."""

    def __init__(self, method, num_replicas=1, rank=0):
        if not 0 <= rank < num_replicas:
            raise UsageError(f"rank must be in [0, num_replicas), got rank {rank} of {num_replicas}")
        self.method, self.num_replicas, self.rank = method, num_replicas, rank

    def __iter__(self):
        if self.method.plan is None:
            raise UsageError("no plan yet: call start_epoch(epoch, model, data) before iterating the DataLoader")
        share = self.method.plan.shard(self.rank, self.num_replicas)
        items = share.indices + len(self.method) * share.augmented.long()
        return iter(items.tolist())

    def __len__(self):
        """This rank's items in the current plan (before the first `start_epoch`, in the plans
        that the method's fraction makes)."""
        plan = self.method.plan
        return (len(plan) if plan is not None else self.method.plan_length()) // self.num_replicas
