"""The object every loader returns: a dataset as uint8 image tensors plus its metadata."""
import hashlib
import math
import numbers
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from coreaug.augment.validation import whole_number
from coreaug.errors import UsageError


@dataclass(eq=False)  # (tensors: == compared element-wise and raised; datasets compare as objects)
class ImageDataset:
    """A labelled image dataset held in memory, ready to move to a device in one copy.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        train_images: the training images, a ``torch.uint8`` tensor of shape ``(N, C, H, W)``.
        train_labels: their labels, a ``torch.int64`` tensor of shape ``(N,)``, values in
            ``[0, num_classes)``.
        test_images: the test images, as ``train_images``.
        test_labels: their labels, as ``train_labels``.
        num_classes: number of classes.
        class_names: one name per class, or ``None`` where the format carries none.
        mean: per-channel mean of the train images in [0, 1] units, for normalisation
            (``(x / 255 - mean) / std``).
        std: per-channel standard deviation of the train images, in the same units.
        source: the folder the files were read from, or ``"generated"``.
        fingerprint: for a folder of images, a hash of its files (path, label, size,
            modification time), which changes when the folder does; else None.

    A registered loader's dataset is checked against this when ``load_dataset`` loads it
    (`check_dataset`): float images, for one, are refused rather than trained on as near-black.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    class_names: Optional[List[str]]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    source: str
    fingerprint: Optional[str] = None

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train_images.shape[1:])

    @property
    def in_channels(self) -> int:
        """Number of image channels, the ``in_channels`` of a model for this data."""
        return int(self.train_images.shape[1])

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes}, source={self.source!r})")


def content_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A hash of in-memory training ``images`` and ``labels`` (their shapes and bytes): a resumed run of a
    registered dataset checks it, as a folder's runs check its files (about 0.2 s for CIFAR-10's 150 MB). The
    labels by their values (a loader that now gives them as int32 trains the same run)."""
    digest = hashlib.sha1()
    for tensor in (images, labels.long()):
        digest.update(f"{tuple(tensor.shape)} {tensor.dtype};".encode())
        rows = max(1, (64 << 20) // max(1, tensor[:1].numel() * tensor.element_size()))  # 64 MiB at a time
        for start in range(0, len(tensor), rows):  # (a permuted numpy array is never copied whole)
            values = tensor[start:start + rows].detach().to("cpu").contiguous()
            digest.update(values.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def check_dataset(data, name: str) -> None:
    """UsageError, naming dataset ``name`` and the fix, unless ``data`` is an `ImageDataset`
    as its docstring describes: uint8 (N, C, H, W) images of 1 or 3 channels, one shape in both
    splits, a whole-number label in [0, num_classes) per image, num_classes >= 2, one class name
    and one mean and std per class and channel (a number is taken for every channel). Checked once
    where a user's dataset comes in (a registered loader's result, an ImageDataset given to
    evaluate): the trainer divides every image by 255, so float images in [0, 1] would train as
    near-black, silently."""
    from .images import Images

    if not isinstance(data, ImageDataset):
        raise UsageError(f"dataset {name!r}: its loader returned {type(data).__name__}, not a coreaug.ImageDataset")
    classes = data.num_classes
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 2:
        raise UsageError(f"dataset {name!r}: num_classes is {classes!r}; a classifier needs two or more")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        for what, value, kinds in (("images", images, (torch.Tensor, Images)), ("labels", labels, torch.Tensor)):
            if not isinstance(value, kinds):
                kind = "a numpy array" if isinstance(value, np.ndarray) else f"of type {type(value).__name__}"
                raise UsageError(f"dataset {name!r}: {split} {what} are {kind}; ImageDataset holds torch tensors "
                                 "(torch.from_numpy(array))")
        _check_images(images, f"dataset {name!r}: {split} images")
        if labels.dim() == 1 and len(labels) != len(images):
            raise UsageError(f"dataset {name!r}: {len(labels)} {split} labels for {len(images)} {split} images; "
                             "give one label per image, in order")
        check_labels(labels, classes, f"dataset {name!r}: {split} labels", f"[0, num_classes) = [0, {classes}); "
                     "number its classes 0 to num_classes - 1, or raise num_classes")
    if tuple(data.test_images.shape[1:]) != tuple(data.train_images.shape[1:]):
        raise UsageError(f"dataset {name!r}: test images are (C, H, W) = {tuple(data.test_images.shape[1:])}, "
                         f"train images {tuple(data.train_images.shape[1:])}; both splits need one shape")
    if not len(data.train_images):
        raise UsageError(f"dataset {name!r} has no train images")
    channels = data.train_images.shape[1]
    for stat in ("mean", "std"):  # one number (MNIST-style, as torch broadcasts it): the same for every channel
        value = getattr(data, stat)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            setattr(data, stat, (float(value),) * channels)
    means, stds = _count(data.mean), _count(data.std)
    if means != channels or stds != channels:
        raise UsageError(f"dataset {name!r}: {means} mean and {stds} std values for "
                         f"{channels}-channel images; give one of each per channel (channel_stats(images))")
    for stat in ("mean", "std"):
        setattr(data, stat, _check_stat(getattr(data, stat), stat, name))
    if data.class_names is not None and len(data.class_names) != data.num_classes:
        raise UsageError(f"dataset {name!r}: {len(data.class_names)} class names for {data.num_classes} classes; "
                         "give one name per class, or class_names=None")
    _check_class_names(data.class_names, name)


def _check_class_names(names, name: str) -> None:
    """UsageError unless ``names`` (or None) are distinct strings: runs are evaluated and predicted
    by class name, so a repeated name would score one class's images against the other's."""
    if names is None:
        return
    odd = next((n for n in names if not isinstance(n, str)), None)
    if odd is not None:
        raise UsageError(f"dataset {name!r}: class names must be strings, got {odd!r} of type "
                         f"{type(odd).__name__}; give class_names=[str(c) for c in names]")
    seen = {}
    for index, class_name in enumerate(names):
        if class_name in seen:
            raise UsageError(f"dataset {name!r}: class name {class_name!r} is given for classes {seen[class_name]} "
                             f"and {index}; class names must be distinct (evaluate and predict go by name)")
        seen[class_name] = index


def _check_stat(values, stat: str, name: str) -> tuple:
    """A per-channel mean or std as floats: finite numbers in the [0, 1] units of images scaled by 1/255
    (a mean in [0, 1], a std in [0, 1]; 0 is a constant channel's), else UsageError."""
    try:
        floats = tuple(float(v) for v in values if not isinstance(v, (str, bytes)))
    except (TypeError, ValueError):
        floats = ()
    if len(floats) != len(values):
        raise UsageError(f"dataset {name!r}: {stat} {tuple(values)!r} holds something other than numbers; give "
                         "one number per channel (channel_stats(images))")
    if not all(math.isfinite(v) for v in floats):
        raise UsageError(f"dataset {name!r}: {stat} {floats} is not finite; give the channels' {stat} "
                         "(channel_stats(images))")
    if not all(0 <= v <= 1 for v in floats):
        hint = " (given in 0-255 units? divide by 255)" if any(v > 1 for v in floats) else ""
        raise UsageError(f"dataset {name!r}: {stat} {floats} is outside [0, 1], the units of images scaled to "
                         f"[0, 1]{hint}; channel_stats(images) gives them")
    return floats


def _count(values) -> int:
    """How many values a per-channel statistic holds (a number or None: none)."""
    return len(values) if hasattr(values, "__len__") else 0


def _check_images(images, what: str) -> None:
    """UsageError starting with ``what`` unless ``images`` are uint8 (N, C, H, W), C 1 or 3."""
    shape = tuple(images.shape)
    if len(shape) != 4:
        hint = " (grayscale: images.unsqueeze(1))" if len(shape) == 3 else ""
        raise UsageError(f"{what} have shape {shape}; ImageDataset holds (N, C, H, W) images{hint}")
    if shape[1] not in (1, 3):
        hint = "; channels last? images.permute(0, 3, 1, 2)" if shape[-1] in (1, 3) else ""
        raise UsageError(f"{what} have {shape[1]} channels in shape {shape}; ImageDataset holds (N, C, H, W) "
                         f"images of 1 (grayscale) or 3 (RGB) channels{hint}")
    dtype = getattr(images, "dtype", torch.uint8)
    if dtype == torch.uint8:
        return
    values = images.float() if isinstance(images, torch.Tensor) and images.numel() else torch.zeros(1)
    low, high = float(values.min()), float(values.max())
    if dtype.is_floating_point and 0 <= low and high <= 1:
        convert = "(images * 255).round().to(torch.uint8)"
    elif 0 <= low and high <= 255:
        convert = "images.round().to(torch.uint8)" if dtype.is_floating_point else "images.to(torch.uint8)"
    else:
        convert = "values scaled to 0-255 first"
    raise UsageError(f"{what} are {str(dtype).replace('torch.', '')} in [{low:g}, {high:g}]; ImageDataset holds "
                     f"uint8 images (0-255), which training divides by 255: convert them with {convert}")


def validate_positive(name: str, value: int, minimum: int) -> int:
    """``value`` as an int, or a UsageError naming ``name`` unless it is an integer (Python's or
    numpy's, or a 0-dim integer tensor: `labels.max() + 1`) >= ``minimum``."""
    whole = whole_number(value)
    if whole is None or whole < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return whole


def check_labels(labels: torch.Tensor, num_classes: int, what: str, outside: str) -> None:
    """UsageError starting with ``what`` unless ``labels`` are whole numbers (N,) in [0, num_classes)
    (``outside``: what the message says of labels outside, the range and the fix)."""
    if labels.dim() != 1:
        raise UsageError(f"{what} have shape {tuple(labels.shape)}; give one label per image, shape (N,): "
                         "labels.reshape(-1)")
    if labels.dtype == torch.bool and num_classes != 2:  # (a mask passed for the labels was scored as 0s and 1s)
        raise UsageError(f"{what} are bool (a mask?) for {num_classes} classes; give class indices (int64)")
    if labels.is_complex() or labels.is_floating_point() and not bool((labels == labels.floor()).all()
                                                                       and labels.isfinite().all()):
        raise UsageError(f"{what} are {str(labels.dtype).replace('torch.', '')} values that are not all whole "
                         "numbers; give class indices (int64)")
    if labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise UsageError(f"{what} in [{low}, {high}], outside {outside}")


def file_labels(values, path, low: int, high: int) -> np.ndarray:
    """The int64 labels (N,) of a dataset file's label array, or a UsageError naming the file when
    they are not whole numbers in low..high (strings, fractions, NaN: a damaged or foreign file)."""
    labels = np.asarray(values).reshape(-1)
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not np.array_equal(labels, np.floor(labels))):
        raise UsageError(f"{path} holds labels that are not whole numbers ({labels.dtype}): corrupted")
    if labels.size and (labels.min() < low or labels.max() > high):
        raise UsageError(f"{path} holds labels outside {low}..{high}: corrupted")
    return labels.astype(np.int64)


def channel_histograms(images: torch.Tensor) -> torch.Tensor:
    """Pixel counts per channel and level, int64 ``(C, 256)``, of uint8 ``(N, C, H, W)`` images."""
    return torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])])


def stats_of_histograms(counts: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel (mean, standard deviation) in [0, 1] from ``(C, 256)`` pixel counts."""
    counts = counts.double()
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(1)
    mean = (counts * levels).sum(1) / total
    std = ((counts * (levels - mean[:, None]) ** 2).sum(1) / total).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def channel_stats(images: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Exact per-channel mean and standard deviation of uint8 ``(N, C, H, W)`` images, in [0, 1].

    Computed from a 256-bin histogram per channel, so it never makes a float copy of the data
    (CIFAR-10 as float32 would be 600 MB).
    """
    return stats_of_histograms(channel_histograms(images))


def make_dataset(name: str, train: Tuple[torch.Tensor, torch.Tensor],
                 test: Tuple[torch.Tensor, torch.Tensor], num_classes: int,
                 class_names: Optional[List[str]], source: str) -> ImageDataset:
    """Assemble an `ImageDataset` from ``(images, labels)`` pairs, computing mean/std.

    Loaders call this last; the checks here are invariants of the loaders, not user input.
    """
    for images, labels in (train, test):
        assert images.dtype == torch.uint8 and images.dim() == 4, (images.dtype, images.shape)
        assert labels.dtype == torch.int64 and labels.shape == images.shape[:1]
    mean, std = channel_stats(train[0])
    return ImageDataset(name=name, train_images=train[0], train_labels=train[1],
                        test_images=test[0], test_labels=test[1], num_classes=num_classes,
                        class_names=class_names, mean=mean, std=std, source=source)
