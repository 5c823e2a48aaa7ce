"""The run's data on the training device (or, streamed, on disk): limits, label noise, normalisation."""
import os
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from coreaug.augment.constants import static
from coreaug.data import apply_label_noise, is_folder_dataset, load_dataset
from coreaug.data.cache_decode import default_workers
from coreaug.data.dataset import content_fingerprint
from coreaug.data.images import Images, as_images
from coreaug.data.registry import registered_by_a_user
from coreaug.errors import UsageError, without_controls
from coreaug.files import size_text

from .config import mixes_partners, streamed_mixup_error


MIN_STD = 1 / 255  # one level: the least a channel's spread is taken as


class Normalize:
    """uint8 (B, C, H, W) -> float (x / 255 - mean) / std (std at least MIN_STD), in `memory_format`
    (channels_last; torch.contiguous_format for a model of the user's that cannot take
    channels_last, as `coreaug.train` finds by trying it); with `crop`, images larger than `crop` x
    `crop` (a folder's stored images, in evaluation and the clean estimate pass) are cut to their
    centre square of that size first.

    channels_last is faster on CPUs too (oneDNN convolutions): 1.5x for a training step and
    2.5x for the eval pass of the small CNN on 2 cores, measured.
    """

    def __init__(self, mean, std, device, crop=None, memory_format=torch.channels_last):
        self.mean = static(torch.tensor(mean, device=device).view(1, -1, 1, 1))  # static: see constants.static
        # A channel constant over the training set (std 0: say, a blue channel always 0) maps to 0, not NaN.
        self.std = static(torch.tensor(std, device=device).view(1, -1, 1, 1).clamp(min=MIN_STD))
        self.crop = crop
        self.memory_format = memory_format

    def __call__(self, images):
        height, width = images.shape[-2:]
        if self.crop is not None and (height > self.crop or width > self.crop):
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
            images = images[..., top:top + self.crop, left:left + self.crop]
        # Several channels: converted straight into the memory format, which the arithmetic keeps (no copy
        # at the end: a launch a step). One channel: plain contiguous strides, which both formats take as
        # theirs; channels_last's own strides make torch's convolutions answer in channels_last even when
        # the trainer falls back to contiguous inputs (a model that .view()s its features failed)
        layout = self.memory_format if images.shape[1] > 1 else torch.contiguous_format
        x = (images.to(torch.float32, memory_format=layout) / 255 - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)


@dataclass
class RunData:
    """Training and test images (`Images`: a tensor on the device, or, `streamed`, the decoded
    cache on disk read batch by batch), labels on the device, plus what the model and the loss
    need."""

    train_images: Images
    train_labels: torch.Tensor
    test_images: Images
    test_labels: torch.Tensor
    num_classes: int
    in_channels: int
    preprocess: Normalize
    noisy: torch.Tensor  # bool (n_train,), labels flipped by label_noise
    source: str
    fingerprint: str = None  # a folder's files, hashed (ImageDataset.fingerprint)
    content: str = None  # a user-registered dataset's training images and labels, hashed (content_fingerprint)
    class_names: list = None  # one name per class (the dataset's, or "0", "1", ...)
    streamed: bool = False  # the images are read from disk as the run goes


def _sample(images, labels, limit, seed):
    """A fixed random sample of `limit` examples (the same for every run seed)."""
    if limit is None or limit >= len(labels):
        return images, labels
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:limit]
    return images[keep], labels[keep]


def _note_untrained_classes(train_y, data, config):
    """A note on stderr naming the classes with no training example (a registered dataset without
    one, or a --train-limit that drew none): the run trains on without them and never predicts them."""
    counts = torch.bincount(torch.as_tensor(train_y).long().flatten(), minlength=data.num_classes)
    missing = [label for label, count in enumerate(counts[:data.num_classes].tolist()) if count == 0]
    if not missing:
        return
    names = [without_controls(data.class_names[label]) if data.class_names else str(label) for label in missing]
    shown = ", ".join(names) if len(names) <= 6 else ", ".join(names[:5]) + f" and {len(names) - 5} more"
    cause = (f" (--train-limit {config.train_limit} drew none of them)"
             if config.train_limit is not None and config.train_limit < len(data.train_labels) else "")
    tqdm.write(f"note: {len(missing)} of {data.num_classes} classes {'has' if len(missing) == 1 else 'have'} no "
               f"training example{cause}: {shown}; the model never learns to predict "
               f"{'it' if len(missing) == 1 else 'them'}", file=sys.stderr)


def load_folder(config, progress):
    """config's folder dataset as a run reads it: decoded into its cache (built here if missing,
    in config.workers processes) and returned as images on disk."""
    workers = config.workers if config.workers is not None else default_workers()
    return load_dataset(config.dataset, progress=progress, image_size=config.image_size,
                        val_fraction=config.val_fraction, skip_bad_images=config.skip_bad_images,
                        on_disk=True, cache_dir=config.cache_dir, workers=workers, store_size=config.store_size)


def load_run_data(config, device, distributed=None, checkpoint=None):
    """Load config.dataset, apply train/test limits and label noise, move it to `device` (or,
    streaming a folder dataset, leave the images on disk). Under torchrun (`distributed`, a
    Distributed), every process streams if any process's node lacks the memory (should_stream),
    decided before any of them loads the images."""
    folder = is_folder_dataset(config.dataset)
    if folder:
        data = load_folder(config, progress=not config.quiet)
    else:
        data = load_dataset(config.dataset, config.data_dir, download=config.download, progress=not config.quiet)
    hashed = config.out and not folder and registered_by_a_user(config.dataset)  # (checked by a resume alone)
    content = (content_fingerprint(data.train_images, data.train_labels)
               if hashed and isinstance(data.train_images, torch.Tensor) else None)
    train_x, train_y = _sample(as_images(data.train_images), data.train_labels, config.train_limit, 0)
    if len(train_y) and bool((train_y == train_y[0]).all()) and len(train_y) < len(data.train_labels):
        label = int(train_y[0])
        name = data.class_names[label] if data.class_names else label
        raise UsageError(f"--train-limit {config.train_limit} drew training examples of one class only ({name}) "
                         f"from {len(data.train_labels)}; a classifier needs two classes or more: raise the limit")
    if not config.quiet:
        _note_untrained_classes(train_y, data, config)
    test_x, test_y = _sample(as_images(data.test_images), data.test_labels, config.test_limit, 1)
    for flag, limit, split, kept in (("--train-limit", config.train_limit, data.train_labels, "training"),
                                     ("--test-limit", config.test_limit, data.test_labels, "test")):
        if limit is not None and limit > len(split) and not config.quiet:  # a typo's extra 0, or the whole split
            tqdm.write(f"note: {flag} {limit} is more than the {len(split)} {kept} examples of {config.dataset}: all "
                       "are used", file=sys.stderr)
    streamed = folder and should_stream(config.stream, [train_x, test_x], device)
    if folder and distributed is not None and distributed.world_size > 1:
        streamed = distributed.all_reduce_sum([float(streamed)])[0] > 0
    if streamed and not config.quiet:
        decoded = size_text(_bytes([train_x, test_x]))
        tqdm.write(f"streaming {len(train_x) + len(test_x)} images ({decoded} decoded) from "
                   f"{os.path.dirname(train_x.path)}")
    if streamed and mixes_partners(config.strategy):  # (--stream auto chose it)
        raise streamed_mixup_error(config.strategy)
    if not streamed:
        train_x, test_x = train_x.to(device), test_x.to(device)
    noisy = torch.zeros(len(train_y), dtype=torch.bool)
    if config.label_noise > 0:
        train_y, noisy = apply_label_noise(train_y, config.label_noise, data.num_classes, seed=config.seed)
        train_y, noisy = torch.as_tensor(train_y), torch.as_tensor(noisy)
    return RunData(
        train_images=train_x, train_labels=train_y.long().to(device),
        test_images=test_x, test_labels=test_y.long().to(device),
        num_classes=data.num_classes, in_channels=data.in_channels,
        preprocess=Normalize(*_norm(config, data, checkpoint), device, crop=config.image_size if folder else None),
        noisy=noisy, source=data.source,
        fingerprint=data.fingerprint, content=content,
        class_names=list(data.class_names or map(str, range(data.num_classes))),
        streamed=streamed,
    )


def _norm(config, data, checkpoint=None):
    """(mean, std) of `config.norm`: "imagenet" (what torchvision's weights expect), "dataset", or
    "pretrained" (what the --pretrained file records; a resumed run's, what its `checkpoint`
    records: the file may have moved or changed since). A new run from a file that records another
    than ImageNet's (a coreaug model.pt) normalised by ImageNet's is warned about: 83% of a model's
    own test images right became 46% (a frozen BatchNorm) without a word."""
    from coreaug.files import warn_at_caller
    from coreaug.models.pretrained import recorded_normalisation

    from .config import IMAGENET_MEAN, IMAGENET_STD

    if config.norm == "pretrained" and checkpoint is not None and checkpoint.get("normalisation"):
        return checkpoint["normalisation"]
    recorded = recorded_normalisation(config.pretrained) if config.pretrained is not None else None
    if checkpoint is None and recorded is not None and len(recorded[0]) != data.in_channels:
        # (each --norm led to another's error: ImageNet's to a shape mismatch, the file's to --norm dataset)
        read = " (an image folder is read as RGB)" if is_folder_dataset(config.dataset) else ""
        raise UsageError(f"{config.pretrained} holds a model trained on {len(recorded[0])}-channel images, but "
                         f"{data.name} has {data.in_channels}{read}, which its first layer's weights do not fit; "
                         f"fine-tune from a model trained on {data.in_channels}-channel images, or give the data in "
                         f"{len(recorded[0])} channel(s) through a registered dataset")
    if config.norm == "dataset":
        return data.mean, data.std
    if config.norm == "pretrained":
        if not os.path.isfile(config.pretrained):
            raise UsageError(f"--pretrained {config.pretrained} does not exist or is not a file (--norm pretrained "
                             "reads the mean and std it records)")
        if recorded is None:
            raise UsageError(f"--norm pretrained reads the mean and std a coreaug model.pt records, but "
                             f"{config.pretrained} records none; pass --norm imagenet (torchvision's weights) or dataset")
        if len(recorded[0]) != data.in_channels:
            raise UsageError(f"{config.pretrained} records the mean and std of {len(recorded[0])} channel(s), but "
                             f"{data.name} has {data.in_channels}; pass --norm dataset")
        return recorded
    if data.in_channels != 3:
        other = "--norm pretrained (the file's own) or --norm dataset" if recorded else "--norm dataset"
        raise UsageError(f"norm 'imagenet' normalises RGB images, but {data.name} has {data.in_channels} channel(s); "
                         f"pass {other}")
    imagenet = recorded is not None and all(torch.allclose(torch.tensor(values), torch.tensor(expected), atol=1e-3)
                                            for values, expected in zip(recorded, (IMAGENET_MEAN, IMAGENET_STD)))
    if checkpoint is None and recorded is not None and not imagenet:  # (a resumed run keeps its norm: no advice)
        shown = ", ".join(f"{v:.3f}" for v in recorded[0]) + " / " + ", ".join(f"{v:.3f}" for v in recorded[1])
        warn_at_caller(f"{config.pretrained} records the mean and std its model was trained on ({shown}), but the "
                       "run normalises with ImageNet's (--norm imagenet); pass --norm pretrained to use the file's")
    return IMAGENET_MEAN, IMAGENET_STD


def should_stream(mode, images, device, local_world_size=None):
    """Whether to read `images` (`Images` of the decoded cache) from disk: `mode` "always"/"never", or "auto":
    when the node's processes together would hold more than half its free host memory (each
    process holds its own copy: `local_world_size` of them, default $LOCAL_WORLD_SIZE, which
    torchrun sets, else 1), or, on a GPU, when they take more than half its free memory."""
    if mode != "auto":
        return mode == "always"
    if local_world_size is None:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    needed = _bytes(images)
    if needed * local_world_size > 0.5 * available_host_memory():
        return True
    space = address_space_left()  # this process's own limit (ulimit -v), for its own copy
    if space is not None and needed > 0.5 * space:
        return True
    return device.type == "cuda" and needed > 0.5 * torch.cuda.mem_get_info(device)[0]


def available_host_memory():
    """Bytes this process can still be given: the host's (MemAvailable, or its total memory where
    /proc is absent), or less where its cgroup's limit leaves less (a container's, a Slurm job's:
    `cgroup_memory_left`), as the kernel kills a process past that limit however free the host is.
    (This process's own address-space limit is `address_space_left`.)"""
    host = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if host is None:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    left = cgroup_memory_left()
    return host if left is None else min(host, left)


def address_space_left():
    """Bytes of address space this process may still map under its `ulimit -v` (RLIMIT_AS: a cluster's
    h_vmem), its soft limit less its VmSize; None where none is set or it cannot be read. An allocation
    past it fails however free the host is."""
    soft = address_space_limit()
    if soft is None:
        return None
    try:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        return None
    return max(0, soft - size)


def address_space_limit():
    """Bytes of address space this process may map (its `ulimit -v`, RLIMIT_AS's soft limit), or None
    where none is set or it cannot be read (no `resource` module: Windows)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, ValueError, OSError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2 ** 63


def cgroup_memory_left(root="/sys/fs/cgroup", membership="/proc/self/cgroup"):
    """Bytes this process's memory cgroup can still take before its limit (the limit less the usage,
    less the reclaimable page cache), the smallest along its ancestors for cgroup v2; None where no
    limit is set or none can be read (no cgroups: macOS)."""
    try:
        with open(membership) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    paths = {controller: path for _, controller, path in (line for line in lines if len(line) == 3)}
    if "memory" in paths:  # v1: the memory controller's own tree (a container sees its own at the root)
        for folder in (os.path.join(root, "memory", paths["memory"].lstrip("/")), os.path.join(root, "memory")):
            stat = _cgroup_numbers(os.path.join(folder, "memory.stat"))
            usage = _cgroup_number(os.path.join(folder, "memory.usage_in_bytes"))
            if stat and usage is not None:
                limit = stat.get("hierarchical_memory_limit", NO_LIMIT)  # the smallest along its ancestors
                return None if limit >= NO_LIMIT else max(0, limit - usage + stat.get("total_inactive_file", 0))
        return None
    if "" not in paths:
        return None
    left, folder = None, os.path.join(root, paths[""].lstrip("/"))
    while True:  # v2: each ancestor's memory.max bounds it
        limit = _cgroup_number(os.path.join(folder, "memory.max"))
        usage = _cgroup_number(os.path.join(folder, "memory.current"))
        if limit is not None and usage is not None:
            here = max(0, limit - usage + _cgroup_numbers(os.path.join(folder, "memory.stat")).get("inactive_file", 0))
            left = here if left is None else min(left, here)
        if os.path.normpath(folder) == os.path.normpath(root) or folder == os.path.dirname(folder):
            return left
        folder = os.path.dirname(folder)


def _cgroup_number(path):
    """The integer a cgroup file holds; None for "max" (no limit) or a file that cannot be read."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def _cgroup_numbers(path):
    """A cgroup memory.stat file as {name: integer} ({} where it cannot be read)."""
    try:
        with open(path) as f:
            return {name: int(value) for name, value in (line.split()[:2] for line in f if len(line.split()) >= 2)
                    if value.isdigit()}
    except OSError:
        return {}


def _bytes(images):
    return sum(len(x) * x.row_bytes for x in images)
