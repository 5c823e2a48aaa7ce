"""Datasets found by name: ``load_dataset("cifar10", "~/data", download=True)``."""
import inspect
import numbers
import os
from typing import Callable, Dict, List, Optional

import numpy as np

from coreaug.errors import UsageError, not_applicable, path_given
from coreaug.registering import qualified_name, same_definition

from .dataset import ImageDataset, check_dataset
from .locate import PathLike

DatasetLoader = Callable[..., ImageDataset]

_LOADERS: Dict[str, DatasetLoader] = {}
_READS_NO_FILES = set()  # the names registered with reads_files=False

# Parameters every loader takes; the rest of its signature are dataset-specific options.
COMMON_PARAMETERS = ("data_dir", "download", "progress")


def register_dataset(name: str, *, reads_files: bool = True) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator making ``loader(data_dir, *, download, progress, **options) -> ImageDataset``
    available to `load_dataset` under ``name``. ``reads_files=False``: the loader ignores
    ``data_dir`` and ``download`` (its data is made in memory or ships with a package), so a
    TrainConfig that gives them is refused rather than recording a folder nothing was read from."""
    key = _key(name)  # as every look-up spells it: "My_Data" is "my-data"

    def decorate(loader: DatasetLoader) -> DatasetLoader:
        if key in _LOADERS and not same_definition(_LOADERS[key], loader):  # (a cell run again replaces its own)
            raise UsageError(f"a dataset named {key!r} is already registered ({qualified_name(_LOADERS[key])}); "
                             f"register {qualified_name(loader)} under another name")
        _LOADERS[key] = loader
        if reads_files:
            _READS_NO_FILES.discard(key)
        else:
            _READS_NO_FILES.add(key)
        return loader

    return decorate


def reads_no_files(name) -> bool:
    """Whether the registered dataset ``name`` ignores ``data_dir`` and ``download``."""
    return names_registered_dataset(name) and _key(os.fspath(name)) in _READS_NO_FILES


def reads_no_files_error(name, given) -> UsageError:
    """The refusal of `given` (data_dir, download or their flags) for dataset ``name``, which reads no files."""
    return not_applicable(given, "a dataset read from files",
                          f"{name} reads none (its images are made in memory or ship with a package)")


def read_in_place_error(folder, given) -> UsageError:
    """The refusal of `given` (data_dir, download or their flags) for `folder`, a folder of images:
    nothing is looked for or fetched, its images are read where they are."""
    return not_applicable(given, "a built-in dataset", f"{folder} is a folder of images, read where it is")


def available_datasets() -> List[str]:
    """Names accepted by `load_dataset`, sorted."""
    return sorted(_LOADERS)


def is_folder_dataset(name) -> bool:
    """Whether the dataset argument ``name`` means a folder of images rather than a registered
    dataset; the one rule that loading, TrainConfig, the trainer, ``load_run(...).evaluate`` and
    ``coreaug datasets`` follow.

    A registered name wins (``cifar10`` is CIFAR-10 even where ``./cifar10/`` exists), unless
    the argument is written as a path: it holds a path separator (``./cifar10``,
    ``data/cifar10``, ``/abs/cifar10``), starts with ``~`` or ``.``, or is a ``pathlib.Path``.
    Any other existing folder (``pets``) is a folder dataset. A path that names no folder is not
    one (check_folder_exists refuses it as a missing folder, not an unknown name).
    """
    if not isinstance(name, (str, os.PathLike)):
        return False
    text = os.fspath(name)
    if not isinstance(text, str) or not os.path.isdir(os.path.expanduser(text)):
        return False
    return not names_registered_dataset(name)


def names_registered_dataset(name) -> bool:
    """Whether the dataset argument ``name`` names a registered dataset: a registered name not
    written as a path (``cifar10``, not ``./cifar10``), whether or not a folder of that name exists."""
    return not _written_as_path(name) and _key(os.fspath(name)) in _LOADERS


def _written_as_path(name) -> bool:
    """Whether the dataset argument ``name`` can only mean a path: a ``pathlib.Path``, or text
    with a path separator or starting with ``~`` or ``.`` (no registered name does)."""
    if not isinstance(name, str):
        return isinstance(name, os.PathLike)
    return os.sep in name or bool(os.altsep and os.altsep in name) or name.startswith(("~", "."))


def check_folder_exists(name) -> None:
    """Raise FileNotFoundError, naming the absolute path, when the dataset argument ``name`` is
    written as a path (see is_folder_dataset) but names no folder: a mistyped folder, which
    would otherwise be reported as an unknown dataset name."""
    if _written_as_path(name) and not is_folder_dataset(name):
        path = os.path.abspath(os.path.expanduser(os.fspath(name)))
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        where = f" ({path})" if path != os.fspath(name) else ""  # the absolute path, once
        raise FileNotFoundError(f"dataset folder {os.fspath(name)} {what}{where}; give the path of a folder of "
                                "images, or a registered dataset's name")


def registered_by_a_user(name) -> bool:
    """Whether the dataset argument ``name`` names a dataset registered outside coreaug (a user's loader,
    whose data may change between a run and its resume without any file saying so)."""
    return names_registered_dataset(name) and not _LOADERS[_key(os.fspath(name))].__module__.startswith("coreaug.")


def registered_name(name) -> str:
    """The registered dataset ``name`` as runs record it: lower case, ``-`` for ``_`` (``Fashion_MNIST``
    is ``fashion-mnist``)."""
    return _key(os.fspath(name))


def _key(name) -> str:
    """A dataset name as registered: lower case, ``-`` for ``_``."""
    return str(name).lower().replace("_", "-")


def dataset_options(name: str) -> List[str]:
    """The dataset-specific keyword options of dataset ``name`` (e.g. ``n_train`` for synthetic)."""
    parameters = inspect.signature(_LOADERS[_key(name)]).parameters
    return [option for option in parameters if option not in COMMON_PARAMETERS]


def load_dataset(name: str, data_dir: Optional[PathLike] = None, *, download: bool = False,
                 progress: bool = True, **kwargs) -> ImageDataset:
    """Load a dataset by name as uint8 tensors.

    Args:
        name: one of `available_datasets` (case-insensitive; ``_`` may stand for ``-``),
            or the path of a folder of images (see `coreaug.data.image_folder`; options
            ``image_size``, ``val_fraction``, ``seed``, ``skip_bad_images``).
        data_dir: a folder holding the dataset's standard folder (e.g. the parent of
            ``cifar-10-batches-py``) or that folder itself, the only folder searched (None:
            ``$COREAUG_DATA``, ``~/.cache/coreaug`` and ``/usr/share/datasets/<name>``, in order).
        download: fetch missing files from the official source (MD5-checked) into ``data_dir``,
            else ``$COREAUG_DATA``, else ``~/.cache/coreaug``.
        progress: show a progress bar while downloading.
        **kwargs: dataset-specific options (see `dataset_options`), e.g.
            ``load_dataset("synthetic", n_train=500)``.

    Returns:
        An `ImageDataset`.

    Raises:
        UsageError: unknown name or option; a corrupted file (the message names it); a registered
            loader's result unlike what `ImageDataset` describes (float images, labels outside
            ``[0, num_classes)`` or not one per image, ...: see ``coreaug.data.dataset.check_dataset``);
            ``data_dir`` or ``download`` given for a folder of images or a dataset that reads no files
            (digits, synthetic).
        FileNotFoundError: ``name`` is written as a path (see `is_folder_dataset`) but
            names no folder.
        DatasetNotFoundError: the files are nowhere (the message lists every folder searched);
            a ``data_dir`` without them raises its subclass DataDirLacksDataset, a UsageError too.
    """
    from .image_folder import load_image_folder

    if data_dir is not None:  # "" is no folder (read as the working folder)
        data_dir = path_given(data_dir, "data_dir", "a folder's path, or None for the default folders")
    for flag, value in (("download", download), ("progress", progress)):
        if value is not None and not isinstance(value, (bool, np.bool_, numbers.Integral)):  # numpy's, 0 and 1 too
            raise UsageError(f"{flag} must be True or False, got {value!r}")
    download, progress = bool(download), bool(progress)
    given = [setting for setting, value in (("data_dir", data_dir), ("download", download)) if value]
    if is_folder_dataset(name):
        if given:  # not read: the images are where the folder is
            raise read_in_place_error(name, given)
        return load_image_folder(name, progress=progress, **kwargs)
    check_folder_exists(name)
    key = _key(name)
    if key not in _LOADERS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: "
                         f"{', '.join(available_datasets())}, or give the path of a folder of images")
    if given and reads_no_files(key):
        raise reads_no_files_error(key, given)
    unknown = sorted(set(kwargs) - set(dataset_options(key)))
    if unknown:
        allowed = ", ".join(dataset_options(key)) or "none"
        raise UsageError(f"dataset {key!r} has no option {', '.join(unknown)}; "
                         f"its options: {allowed}")
    data = _LOADERS[key](data_dir=data_dir, download=download, progress=progress, **kwargs)
    check_dataset(data, key)  # a user's loader may give float images or mismatched labels: refused here, once
    if len(data.train_labels) and bool((data.train_labels == data.train_labels[0]).all()):  # as a folder of one class
        raise UsageError(f"dataset {key!r}: every training label is {int(data.train_labels[0])}; a classifier "
                         "needs examples of two classes or more (too few examples, or labels shifted or "
                         "filtered by the loader or in its files?)")
    return data
