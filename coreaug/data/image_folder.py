"""Your own images: a folder in torchvision's ImageFolder convention, decoded once into a cache.

Layouts recognised under ``root``:

- ``train/<class>/<image>`` with ``val/<class>/...`` or ``test/<class>/...``;
- TinyImageNet's: ``train/<class>/images/<image>`` and ``val/images/<image>`` labelled by
  ``val/val_annotations.txt`` (file name, tab, class);
- ``<class>/<image>`` with no split (Caltech256's): a seeded, per-class ``val_fraction`` of
  each class becomes the test split.

Classes are the training split's folder names, sorted, and the test split uses the same list.
Every image (JPEG, PNG, WebP, BMP, GIF, TIFF; grayscale, RGB, RGBA, CMYK, palette) is
converted to RGB, its shorter side resized to ``store_size`` (by default ``image_size``; larger
for random-resized crops, see default_store_size) and centre-cropped to a square, and stored in
a cache on disk (coreaug.data.image_cache) that later runs read instead.
"""
import collections
import contextlib
import contextvars
import functools
import numbers
import os
import stat
import threading
import unicodedata
import warnings
from typing import List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from coreaug.augment.validation import whole_number
from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError, first_line, listed, path_given
from coreaug.files import warn_at_caller

from .cache_decode import bad_image, shown
from .dataset import ImageDataset, validate_positive
from .cache_key import default_cache_dir, files_digest
from .image_cache import open_or_build

# .jfif/.jpe: JPEGs as some browsers save them; .apng: an animated PNG, read (as a GIF is) by its first frame
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TEST_SPLITS = ("val", "test")
# Spellings of the splits of a train/val layout other than train/ and val/ or test/ (compared in lower case):
# folders so named are refused as classes (Kaggle's Train/ and Val/ would be a two-class dataset of "which split").
TRAIN_NAMES = ("train", "training")
TEST_NAMES = ("val", "valid", "validation", "test", "testing")
# Image formats not read, counted when a listing leaves them out (a phone's .HEIC among JPEGs trains on a part)
UNREAD_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".dng", ".cr2", ".cr3", ".nef", ".arw",
                           ".orf", ".rw2", ".raf", ".psd", ".svg", ".ico", ".pbm", ".pgm", ".ppm", ".pnm", ".exr",
                           ".hdr", ".dcm", ".tga")
MACOS_METADATA = "__MACOSX"  # the folder of `._name` files that macOS's Archive Utility zips alongside


def _is_listed(name) -> bool:
    """Whether a file or folder name is the user's: not hidden (`.name`, macOS's `._name`
    included) and not macOS's `__MACOSX` metadata folder."""
    return not name.startswith(".") and name != MACOS_METADATA


def is_image_folder(path) -> bool:
    """Whether ``path`` names an existing folder (whether a dataset argument means a folder or a
    registered dataset is coreaug.data.is_folder_dataset's to say)."""
    return isinstance(path, (str, os.PathLike)) and os.path.isdir(os.path.expanduser(str(path)))


DEFAULT_IMAGE_SIZE = 64  # for a folder whose images' sizes differ (or are below MIN_IMAGE_SIZE)
MIN_IMAGE_SIZE = 4  # the smallest image_size; a folder of smaller images is trained at DEFAULT_IMAGE_SIZE
LARGE_IMAGES = 128  # `--weak auto` trains folders of this size and more with random-resized crops
LARGE_OWN_SIZE = 512  # an own size above this (camera photos) gets a note suggesting --image-size
STORE_RATIO = 256 / 224  # ImageNet's evaluation resize over its crop


def default_store_size(image_size: int, resized_crop: bool) -> int:
    """The size a folder's images are stored at to train at ``image_size``: STORE_RATIO times it
    (256 px for 224) when training takes random-resized crops, so that crops cut from more than
    the centre ``image_size`` square and evaluation takes that square of a larger image, as
    ImageNet's resize-to-256, centre-crop-224 does; else ``image_size`` itself."""
    return round(image_size * STORE_RATIO) if resized_crop else image_size


def own_image_size(root, sample: int = 64) -> Optional[int]:
    """The shorter side of the images under ``root`` when they share one width and height (and
    it is at least MIN_IMAGE_SIZE), else None. Reads the headers of up to ``sample`` images (at
    most 8 per folder, so a large folder is not walked to its end); no image is decoded."""
    shorter = _shared_size(_sampled_sizes(root, sample))
    return shorter if shorter is not None and shorter >= MIN_IMAGE_SIZE else None


def _sampled_sizes(root, sample=64):
    """The set of (shorter, longer) sides of up to ``sample`` images under ``root`` (see
    own_image_size), read until a second size turns up."""
    from PIL import Image

    sizes = set()
    root = os.path.expanduser(str(root))
    if os.path.isdir(os.path.join(root, "train")):  # the training images decide (a test/ not read sorts first)
        root = os.path.join(root, "train")
    for parent, names in _walk_listed(root):
        for name in sorted(n for n in names if _is_listed(n) and n.lower().endswith(IMAGE_EXTENSIONS))[:8]:
            if special_file(os.path.join(parent, name)):
                continue
            try:
                with Image.open(os.path.join(parent, name)) as image:
                    sizes.add(tuple(sorted(image.size)))  # (shorter, longer): rotated photos match
            except Exception:  # noqa: BLE001 - a bad image is reported by the decoding pass
                continue
            sample -= 1
            if len(sizes) > 1 or sample == 0:
                return sizes
    return sizes


def _shared_size(sizes):
    return next(iter(sizes))[0] if len(sizes) == 1 else None


def image_size_note(root, image_size: int) -> str:
    """Why ``image_size`` fits ``root``'s images, for the first line of a run."""
    sizes = _sampled_sizes(root)
    shorter = _shared_size(sizes)
    if shorter == image_size:  # camera photos would train (and be cached) at 2000 px and more
        large = f"; over {LARGE_OWN_SIZE} px: --image-size 224, say, trains and stores them smaller" \
            if image_size > LARGE_OWN_SIZE else ""
        return f"the images' own size{large}"
    if shorter is not None and shorter < MIN_IMAGE_SIZE and image_size == DEFAULT_IMAGE_SIZE:
        return f"their own {shorter} px is below the {MIN_IMAGE_SIZE} px minimum"
    if shorter is not None:
        return f"resized from their own {shorter} px"
    return "resized from sizes that differ" if sizes else "no image's size could be read"


def lies_among(folder: str, path: str) -> bool:
    """Whether `path` is `folder` or lies among what a listing of `folder` reads: no hidden name
    (".cache", or ".." out of it) on the way down."""
    inside = os.path.relpath(os.path.realpath(os.path.expanduser(str(path))), os.path.realpath(folder))
    return inside == "." or all(map(_is_listed, inside.split(os.sep)))


def read_as_part(root: str, path: str) -> Optional[str]:
    """The folder of the image-folder dataset `root` that `path` lies among the listed files of
    (`root` itself, or its train/ or test/ split), where a folder written there would be read as
    a class (or a split) of the dataset; None when it is outside them (a hidden folder is)."""
    if not os.path.isdir(root):
        return None  # _find_files says so
    train = os.path.join(root, "train")
    read = [train, test_split_folder(root)] if os.path.isdir(train) else [root]
    return next((folder for folder in filter(None, read) if lies_among(folder, path)), None)


def _check_cache_outside(root: str, cache_dir: Optional[str]) -> None:
    """A UsageError when the decoded cache would sit among the folder's listed files: built once,
    it would then be read as a class (or a split) of the dataset. A hidden folder is fine."""
    cache = os.path.realpath(os.path.expanduser(str(cache_dir or default_cache_dir())))
    folder = read_as_part(root, cache)
    if folder is not None:
        raise UsageError(f"the decoded-image cache {cache} is inside {folder}, where it would be read as part "
                         "of the dataset; pass a --cache-dir (or COREAUG_CACHE_DIR) outside it, or a hidden "
                         "one such as .cache")


@keyword_only
def load_image_folder(root, *, image_size: Optional[int] = None, val_fraction: float = 0.1, seed: int = 0,
                      skip_bad_images: bool = False, progress: bool = True, on_disk: bool = False,
                      cache_dir: Optional[str] = None, workers: int = 0,
                      store_size: Optional[int] = None) -> ImageDataset:
    """Decode the images under ``root`` (see the module docstring) into an ImageDataset.

    ``image_size`` None takes the images' own size when they share one (own_image_size), else
    64; with ``progress``, the first line printed says the size used and why. The images are
    stored (and returned) at ``store_size`` (None: ``image_size``; see default_store_size),
    which a trainer crops to ``image_size``.

    Images are decoded once, in ``workers`` DataLoader worker processes, into a cache under
    ``cache_dir`` (default: coreaug.data.image_cache.default_cache_dir()) that later calls
    reuse while the folder is unchanged. The dataset's images are uint8 tensors in memory, or,
    with ``on_disk``, ``DiskImages`` that read rows from the cache as they are needed.

    Raises UsageError, naming the file or folder, for a folder without images, an empty class
    folder, a test class the training split lacks, splits spelt otherwise than train/ and val/ or
    test/ (Train/, validation/ ...), a folder reached (through a link) from two class folders, or
    an unreadable, truncated or empty image (unless ``skip_bad_images``, which leaves such files
    out and says how many); with ``progress``, files of image formats not read (.heic ...) are
    counted in a line after the first.
    """
    root = os.path.realpath(os.path.expanduser(str(root)))  # one folder, one cache, however it is reached
    if cache_dir is not None:  # "" is no folder (it was the working folder, " " a folder named so)
        cache_dir = path_given(cache_dir, "cache_dir", "a folder, or None for the default")
    if image_size is None:
        image_size = own_image_size(root) or DEFAULT_IMAGE_SIZE
    image_size = validate_positive("image_size", image_size, 4)
    store_size = image_size if store_size is None else store_size
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0:
        raise UsageError(f"workers must be an integer >= 0 (0: decode in this process), got {workers!r}")
    store = whole_number(store_size)
    if store is None or store < image_size:
        raise UsageError(f"store_size must be an integer >= image_size ({image_size}), got {store_size!r}")
    store_size = store
    if not 0 < val_fraction < 1:
        raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise UsageError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(skip_bad_images, (bool, np.bool_)):  # "no" would mean yes
        raise UsageError(f"skip_bad_images must be True or False, got {skip_bad_images!r}")
    _check_cache_outside(root, cache_dir)
    classes, train_files, test_files, listing = _find_files(root, val_fraction, seed)
    if progress:
        stored = f", stored at {store_size} px" if store_size != image_size else ""
        tqdm.write(f"{shown(root)}: {len(train_files)} train / {len(test_files)} test images at {image_size} px "
                   f"({image_size_note(root, image_size)}){stored}")
    above = os.path.dirname(root)
    split = test_split_folder(above) if os.path.basename(root) == "train" and not test_split_folder(root) else None
    if split:  # the train/ of a split folder, given alone: a share of it held out, the split's own not read
        warn_at_caller(f"{shown(root)} is the train/ split of {shown(above)}, whose {os.path.basename(split)}/ is "
                       f"not read: a share of train/ is held out as the test set instead; give {shown(above)} to "
                       f"test on its {os.path.basename(split)}/")
    alike = _named_alike(classes, str.casefold)  # "Cat" and "cat": two folders on Linux, one on macOS and Windows
    if alike:
        warn_at_caller(f"{shown(root)} holds class folders named alike but for case ({' and '.join(alike[0])}"
                       f"{f', and {len(alike) - 1} more such' if len(alike) > 1 else ''}): they are trained as "
                       "separate classes; merge each such pair into one folder if they are one class")
    # What is left out is a warning (stderr in the CLI), quiet or not: a class folder on a disk not mounted
    # would otherwise train without that class in silence.
    if listing.gone:
        first = listing.gone[0]
        with contextlib.suppress(OSError):  # (removed since it was listed: named alone)
            first = f"{first} -> {os.readlink(first)}"
        _left_out(f"left out {len(listing.gone)} link{'s' * (len(listing.gone) != 1)} to files or folders that "
                  f"are gone (first: {shown(first)}): a class folder on a disk not mounted is not trained on")
    if listing.loose:  # ImageNet's val/ half sorted into class folders tested on the sorted few
        _left_out(f"left out {len(listing.loose)} image file{'s' * (len(listing.loose) != 1)} beside the class "
                  f"folders (first: {shown(listing.loose[0])}): only <folder>/<class>/ images are read")
    if listing.unread:
        _left_out(f"left out {unread_files(listing.unread)}; convert them to JPEG or PNG to train on them")
    cache = open_or_build([("train", train_files), ("test", test_files)], classes, image_size=store_size,
                          decode=functools.partial(decode_square, size=store_size), cache_dir=cache_dir,
                          workers=workers, skip_bad=skip_bad_images, progress=progress, source=root)
    skipped = cache.meta["skipped"]
    if skipped and not skip_bad_images:  # a cache built by an earlier run that skipped them
        raise bad_image(skipped[0])
    if skipped:
        _left_out(f"skipped {len(skipped)} unreadable image{'s' * (len(skipped) != 1)} (first: {skipped[0]})")
    train_labels = cache.labels("train")
    # only skipped images can leave a class empty (a class folder without images is refused when listed)
    empty = [name for name, count in zip(classes, np.bincount(train_labels.numpy(), minlength=len(classes)))
             if not count] if skipped else []
    if empty:  # a class the model would have an output for and never learn
        more = " ..." if len(empty) > 5 else ""
        raise UsageError(f"--skip-bad-images left class {shown(', '.join(empty[:5]))}{more} with no readable "
                         "training image; fix its images or remove its folder")
    return cache_dataset(cache, root, on_disk, train_labels)


def cache_dataset(cache, root, on_disk=True, train_labels=None):
    """The ImageDataset of the folder ``root`` that the opened decoded ``cache`` holds (its images read
    from disk as needed, or loaded unless ``on_disk``)."""
    train, test = cache.images("train"), cache.images("test")
    if not on_disk:
        train, test = train.load(), test.load()
    classes = list(cache.meta["classes"])
    return ImageDataset(name=os.path.basename(root), train_images=train,
                        train_labels=cache.labels("train") if train_labels is None else train_labels,
                        test_images=test, test_labels=cache.labels("test"), num_classes=len(classes),
                        class_names=classes, mean=tuple(cache.meta["mean"]), std=tuple(cache.meta["std"]),
                        source=root, fingerprint=cache.meta.get("files"))


def folder_fingerprint(root, val_fraction: float = 0.1, seed: int = 0) -> str:
    """The hash of ``root``'s files that ``load_image_folder`` with these arguments records
    (ImageDataset.fingerprint), from a listing of the files alone: nothing is decoded."""
    _, train_files, test_files, _ = _find_files(os.path.realpath(os.path.expanduser(str(root))), val_fraction, seed)
    return files_digest([("train", train_files), ("test", test_files)])


_LISTED = contextvars.ContextVar("coreaug_listed", default=None)  # inside `one_listing`: this thread's memo


@contextlib.contextmanager
def one_listing():
    """Within the block, each folder is listed once (`_find_files`) by this thread (or task): a
    check of a folder's files followed by its loading walks it once, not twice (ImageNet's 1.28 M
    files). Not for a block in which the folder may change."""
    token = _LISTED.set({} if _LISTED.get() is None else _LISTED.get())
    try:
        yield
    finally:
        _LISTED.reset(token)


def _find_files(root, val_fraction, seed):
    """(classes, [(path, label)] train, [(path, label)] test, _Listing) of the layout under ``root``;
    a UsageError for a folder that is not one, with a hint where it holds a built-in dataset's files."""
    listed = _LISTED.get()
    if listed is None:
        return _listed_files(root, val_fraction, seed)
    key = (root, val_fraction, seed)
    if key not in listed:
        listed[key] = _listed_files(root, val_fraction, seed)
    return listed[key]


def _listed_files(root, val_fraction, seed):
    """`_find_files`, listed now."""
    if not os.path.isdir(root):
        raise UsageError(f"{root} is not a folder of images")
    try:
        listing = _Listing()
        return (*_layout_files(root, val_fraction, seed, listing), listing)
    except UsageError as error:
        builtin = _builtin_datasets_in(root)
        if not builtin:
            raise
        datasets = f"dataset {builtin[0]}" if len(builtin) == 1 else f"datasets {', '.join(builtin)}"
        name = builtin[0] if len(builtin) == 1 else "NAME"
        raise UsageError(f"{error}. {shown(root)} holds the files of the built-in {datasets}: use "
                         f"--dataset {name} --data-dir {shown(root)}") from None


def images_not_files_of(data_dir, dataset) -> bool:
    """Whether the folder ``data_dir``, given as the built-in ``dataset``'s data folder, holds class
    folders of images (in itself or its train/: two or more folders, each of its first 8 with an
    image file among its first entries) and not the files of ``dataset``: "my data" read as
    `--data-dir`, which would advise downloading CIFAR-10 into it. A data folder shared with a
    folder of images or two (``~/data/my-photos/``) is not one."""
    root = os.path.expanduser(str(data_dir))
    builtin = ("cifar10", "cifar100", "svhn", "mnist", "fashion-mnist")
    if dataset not in builtin or not os.path.isdir(root) or dataset in _builtin_datasets_in(root):
        return False
    for base in (root, os.path.join(root, "train")):
        folders = listed_folders(base)[:8] if os.path.isdir(base) else []
        if len(folders) >= 2 and all(_holds_images(os.path.join(base, name)) for name in folders):
            return True
    return False


def _holds_images(folder) -> bool:
    """Whether an image file is among the first 64 entries of ``folder``."""
    with os.scandir(folder) as entries:
        first = [entry.name for _, entry in zip(range(64), entries)]
    return any(_is_listed(n) and n.lower().endswith(IMAGE_EXTENSIONS) for n in first)


def _builtin_datasets_in(root) -> List[str]:
    """The built-in datasets whose files ``root`` holds (in itself or its standard folders)."""
    from pathlib import Path

    from .cifar import CIFAR10_LAYOUT, CIFAR100_LAYOUT
    from .locate import candidate_folders, files_in
    from .mnist import idx_layout
    from .svhn import SVHN_LAYOUT

    layouts = {"cifar10": CIFAR10_LAYOUT, "cifar100": CIFAR100_LAYOUT, "svhn": SVHN_LAYOUT,
               "mnist": idx_layout("MNIST", "mnist"), "fashion-mnist": idx_layout("FashionMNIST", "fashion-mnist")}
    return [name for name, layout in layouts.items() if any(len(files_in(folder, layout)) == len(layout.files)
                                                            for folder in candidate_folders([Path(root)], layout))]


class _Listing:
    """What listing a dataset's class folders met besides its images: each real folder walked, with
    the path and class folder it was reached by (a folder reached from two class folders is an
    error: its images would train under two labels), and the files of image formats not read, by
    extension."""

    def __init__(self):
        self.folders = {}
        self.unread = collections.Counter()
        self.loose = []  # image files beside the class folders, where only class folders are read
        self.gone = []  # links to nothing (links_to_nothing): a class folder on a disk not mounted, say


def _layout_files(root, val_fraction, seed, listing):
    train_dir = os.path.join(root, "train")
    if os.path.isdir(train_dir):
        if not listed_folders(train_dir) and images_under(train_dir):  # Pascal VOC has a class named train
            raise UsageError(f"{shown(train_dir)} holds images but no class folders: a train/ folder makes "
                             f"{shown(root)} a train/ + val/ layout, its classes in train/<class>/<image>; a class "
                             "named train among class folders needs another folder name (train_class/, say)")
        classes = _class_folders(train_dir)
        train = _labelled_files(train_dir, classes, listing=listing)
        test_dir = test_split_folder(root)
        listing.loose += _loose_images(train_dir) + (_loose_images(test_dir) if test_dir else [])
        listing.gone += links_to_nothing(train_dir)
        gone = links_to_nothing(root, ["val", "test"])
        if gone:  # a split on a disk not mounted: not "add one", nor test/ read in val/'s place
            raise UsageError(f"{shown(gone[0])} is a link to {shown(os.readlink(gone[0]))}, which does not exist (a "
                             "disk not mounted?); mount it, or remove the link")
        if test_dir is None:
            other = [f"{name}/" for name in listed_folders(root) if name.lower() in TEST_NAMES]
            named = f" ({', '.join(other)} is not read: name it val/)" if other else ""
            raise UsageError(f"{root} has train/ but no val/ or test/ folder{named}; add one, or put the class "
                             "folders directly in the root to split off --val-fraction")
        if is_tiny_imagenet_val(test_dir):
            test = _tiny_imagenet_val(test_dir, classes)
            if not test:  # found now, not after the training split is decoded
                raise UsageError(f"{shown(os.path.join(test_dir, 'val_annotations.txt'))} lists no images; the test "
                                 "split needs some (a line per image: file name, tab, class)")
        else:
            test = _test_files(test_dir, classes, listing)
        return classes, train, test
    _check_no_splits_as_classes(root)
    classes = _class_folders(root)
    listing.loose += _loose_images(root)
    listing.gone += links_to_nothing(root)
    class_folders = [os.path.join(root, c) for c in classes]
    return (classes, *_split(_labelled_files(root, classes, listing=listing), class_folders, val_fraction, seed))


def _split_like(folder, whole=False) -> List[str]:
    """The subfolders of ``folder`` named like a train/val layout's splits in another spelling
    (TRAIN_NAMES, TEST_NAMES, any case: Train/ and Val/, training/ and validation/): a training one
    and a test one, the training one holding folders (or, with ``whole``, no other folders beside
    them); else []. A class's own cats/train/*.jpg and cats/test/*.jpg are not."""
    names = listed_folders(folder)
    train = [n for n in names if n.lower() in TRAIN_NAMES]
    test = [n for n in names if n.lower() in TEST_NAMES]
    if train and test and (listed_folders(os.path.join(folder, train[0]))
                           or whole and len(train) + len(test) == len(names)):
        return train + test
    return []


def _folder_list(names) -> str:
    """Folder names as a message lists them: "Train/ and Val/", "a/, b/ and c/"."""
    return listed(f"{shown(name)}/" for name in names)


def _check_no_splits_as_classes(root):
    """UsageError for class folders that are a train/val layout's splits, which would train as
    classes ("which split"): ``root``'s own (Train/ and Val/), or a class folder's (a folder that
    wraps a whole dataset, as unzipping often leaves one)."""
    splits = _split_like(root, whole=True)
    if splits:
        raise UsageError(f"{shown(root)} holds {_folder_list(splits)}, named like the splits of a "
                         "train/val layout, which would be read as classes: name them train/ and val/ (or test/), "
                         "with the classes in train/<class>/<image>")
    for name in listed_folders(root):
        folder = os.path.join(root, name)
        splits = _split_like(folder)
        if splits:
            raise UsageError(f"{shown(folder)} holds {_folder_list(splits)}: a dataset of its own, "
                             f"which would be read as one class; pass it as the dataset (--dataset {shown(folder)})")


def has_own_split(root) -> bool:
    """Whether the folder dataset ``root`` is a train/ + val/ (or test/) layout, whose test split is
    its own folder (no ``val_fraction`` is split off); a train/ alone is an error of its own."""
    root = os.path.expanduser(str(root))
    return os.path.isdir(os.path.join(root, "train")) and test_split_folder(root) is not None


def test_split_folder(root) -> Optional[str]:
    """``root``'s val/ (else test/) folder, or None when it has neither."""
    return next((os.path.join(root, s) for s in TEST_SPLITS if os.path.isdir(os.path.join(root, s))), None)


def listed_folders(folder) -> List[str]:
    """The names of ``folder``'s subfolders a dataset reads (hidden ones left out), sorted."""
    return sorted(e.name for e in os.scandir(folder) if _is_folder(e) and _is_listed(e.name))


def _is_folder(entry) -> bool:
    """Whether the scandir ``entry`` is a folder or a link to one; False for a link that loops
    (a link to itself: os.walk files it with the names too, and links_to_nothing names it)."""
    try:
        return entry.is_dir()
    except OSError:  # ELOOP: "Too many levels of symbolic links"
        return False


def links_to_nothing(folder, names=None) -> List[str]:
    """The paths of ``folder``'s listed entries (or of ``names`` in it) that are links to nothing:
    a class folder on a disk not mounted, or a file not fetched (a DataLad dataset's README),
    which a listing leaves out (`_Listing.gone`, counted in a line)."""
    if names is None:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.is_symlink()]
    return [os.path.join(folder, n) for n in sorted(names) if _is_listed(n) and os.path.islink(os.path.join(folder, n))
            and not os.path.exists(os.path.join(folder, n))]


def _named_alike(names, key):
    """The groups of two or more `names` that `key` makes one (a case or a Unicode form apart)."""
    groups = collections.defaultdict(list)
    for name in names:
        groups[key(name)].append(name)
    return [group for group in groups.values() if len(group) > 1]


def _class_folders(folder) -> List[str]:
    classes = listed_folders(folder)
    if not classes:
        raise UsageError(f"{folder} holds no class folders; images go in <folder>/<class>/<image>")
    # "café" written with é, and with e and a combining accent (macOS)
    twins = _named_alike(classes, functools.partial(unicodedata.normalize, "NFC"))
    if twins:  # two classes that print alike, and a val/ folder matched to both: its images scored twice
        written = " and ".join(map(ascii, twins[0]))
        raise UsageError(f"{folder} holds class folders named alike in two Unicode forms ({written}, shown as "
                         f"{unicodedata.normalize('NFC', twins[0][0])!r}): they would be two classes that print "
                         "the same; merge them into one folder")
    if len(classes) == 1:  # it trained to 100% with nothing to tell apart
        raise UsageError(f"{folder} holds one class folder ({classes[0]}); a classifier needs two or more, "
                         "images in <folder>/<class>/<image>")
    return classes


def unread_files(unread: collections.Counter) -> str:
    """"3 files of image formats not read (.heic, .avif)": `unread`, counted by extension (_Listing)."""
    count = sum(unread.values())
    return (f"{count} file{'s' * (count != 1)} of image formats not read "
            f"({', '.join(ext for ext, _ in unread.most_common())})")


def images_under(folder, unread: Optional[collections.Counter] = None) -> List[str]:
    """The image files under ``folder``, recursively (each folder's files, sorted, then its
    subfolders, sorted): the files a dataset reads, and `coreaug predict FOLDER` too. Names
    with an image extension (IMAGE_EXTENSIONS, any case) only; hidden files and folders
    (``.name``, macOS's ``._name`` included) and ``__MACOSX/`` folders are left out. Linked
    folders are followed (a folder assembled from several disks), each real folder once: a link
    back up the tree is not walked again. ``unread``, a Counter, counts the files of image formats
    not read (HEIC, AVIF, ...) by extension."""
    listing = _Listing()
    images = _images_under(folder, listing)
    if unread is not None:
        unread.update(listing.unread)
    return images


def _images_under(folder, listing) -> List[str]:
    """images_under's files, counting those of image formats not read in ``listing`` (see _Listing)."""
    images = []
    for parent, names in _walk_listed(folder, listing.folders):
        others = []  # a link to a folder that is gone is among the files (os.walk cannot tell): names
        for name in sorted(names):
            lower = name.lower()
            if not _is_listed(name):
                continue
            if lower.endswith(IMAGE_EXTENSIONS):  # a link to an image that is gone: named when decoded
                images.append(os.path.join(parent, name))
            elif lower.endswith(UNREAD_IMAGE_EXTENSIONS):
                listing.unread[os.path.splitext(lower)[1]] += 1
            elif "." not in name:  # of no extension only: a sidecar file per image (.json) costs no lstat
                others.append(name)
        listing.gone += links_to_nothing(parent, others)
    return images


def _walk_listed(folder, seen=None):
    """(folder, file names) of ``folder`` and its listed subfolders, in images_under's order,
    following links to folders, each real folder once. ``seen`` (real path -> the path and the
    walked folder that first reached it), shared by the walks of several class folders, makes a
    folder that two of them reach (through a link) a UsageError naming both paths."""
    seen = {} if seen is None else seen
    _first_visit(seen, folder, folder)
    for parent, dirs, names in os.walk(folder, followlinks=True, onerror=_unlistable):
        dirs[:] = [d for d in sorted(dirs) if _is_listed(d) and _first_visit(seen, os.path.join(parent, d), folder)]
        yield parent, names


def _unlistable(error):
    """os.walk's onerror: a subfolder it cannot list (no permission) is an error, not a folder of no
    images (its images left out of the dataset without a word)."""
    raise error


def _first_visit(seen, path, walked):
    """Whether the folder ``path`` (reached by the walk of ``walked``) is a real folder not walked
    before; a UsageError when another class folder's walk reached it."""
    real = os.path.realpath(path)
    if real not in seen:
        seen[real] = (path, walked)
        return True
    first, first_walked = seen[real]
    if first_walked != walked:
        by = "" if (path, first) == (walked, first_walked) else f", reached from class folders {shown(walked)} " \
            f"and {shown(first_walked)}"
        raise UsageError(f"{shown(path)} and {shown(first)} are one folder (through a link){by}: its images would "
                         "train under two labels (or be tested on while trained on); remove the link, or copy them")
    return False


def _loose_images(folder) -> List[str]:
    """The image files directly in ``folder``, whose images are read from its class folders only."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if _is_listed(e.name) and e.name.lower().endswith(IMAGE_EXTENSIONS)
                 and not _is_folder(e)]
    return [os.path.join(folder, name) for name in sorted(names)]


def _labelled_files(folder, classes, labels=None, listing=None) -> List[Tuple[str, int]]:
    """[(path, label)] of the images of each class folder (labels: ``labels``, else 0, 1, ...); a
    UsageError for a class folder without images, or for a folder that two class folders reach
    (``listing``, shared by a dataset's splits)."""
    listing = _Listing() if listing is None else listing
    files = []
    for label, name in zip(labels or range(len(classes)), classes):
        images = _images_under(os.path.join(folder, name), listing)
        if not images:
            raise UsageError(f"class folder {shown(os.path.join(folder, name))} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder")
        files += [(path, label) for path in images]
    return files


def _test_files(folder, classes, listing):
    """The test split's [(path, label)]: its class folders, any subset of the training split's (one
    class alone included), matched by name, or by the name's Unicode NFC form (macOS's zip writes
    été as e + accent where another tool wrote one character)."""
    listing.gone += links_to_nothing(folder)
    names = listed_folders(folder)
    if not names:
        raise UsageError(f"{folder} holds no class folders; images go in <folder>/<class>/<image>")
    by_form = {unicodedata.normalize("NFC", name): name for name in names}
    exact = set(names)
    present = [(label, c if c in exact else by_form.get(unicodedata.normalize("NFC", c)))
               for label, c in enumerate(classes)]
    present = [(label, name) for label, name in present if name is not None]
    extra = sorted(set(names) - {name for _, name in present})
    if extra:
        raise UsageError(f"{folder} has classes the training split lacks: {shown(', '.join(extra[:5]))}"
                         f"{' ...' if len(extra) > 5 else ''}; each of its classes needs a folder in the "
                         "training split too (it may leave training classes out)")
    return _labelled_files(folder, [name for _, name in present], labels=[label for label, _ in present],
                           listing=listing)


def is_tiny_imagenet_val(folder):
    """Whether ``folder`` (a val/ split) is TinyImageNet's: images/ labelled by val_annotations.txt."""
    return os.path.isfile(os.path.join(folder, "val_annotations.txt")) and os.path.isdir(os.path.join(folder, "images"))


def tiny_imagenet_annotations(folder) -> List[Tuple[str, str, int]]:
    """[(image path, class name, line number)] of TinyImageNet's ``folder``/val_annotations.txt:
    a line per image, its file name and class separated by tabs (further columns, the box, are
    ignored); lines without both are skipped."""
    annotations = []
    with open(os.path.join(folder, "val_annotations.txt")) as f:
        for line_number, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) >= 2:
                annotations.append((os.path.join(folder, "images", fields[0]), fields[1], line_number))
    return annotations


def _tiny_imagenet_val(folder, classes):
    # by name, or by the name's NFC form, as the test split's folders are matched
    index = {**{unicodedata.normalize("NFC", name): label for label, name in enumerate(classes)},
             **{name: label for label, name in enumerate(classes)}}
    files = []
    for path, name, line_number in tiny_imagenet_annotations(folder):
        name = name if name in index else unicodedata.normalize("NFC", name)
        if name not in index:
            raise UsageError(f"{folder}/val_annotations.txt line {line_number} labels {os.path.basename(path)} with "
                             f"class {name!r}, which the training split lacks")
        files.append((path, index[name]))
    return files


def _split(files, class_folders, val_fraction, seed):
    """A seeded split of each class: round(val_fraction * size) images (at least one, and one
    left to train on) go to the test split."""
    rng = np.random.default_rng(seed)
    labels = np.array([label for _, label in files], dtype=np.int64)
    order = np.argsort(labels, kind="stable")  # each class's rows in file order, found once for all classes
    bounds = np.searchsorted(labels[order], np.arange(len(class_folders) + 1))
    single = np.flatnonzero(np.diff(bounds) < 2)
    if len(single) == 1:
        raise UsageError(f"class folder {shown(class_folders[single[0]])} has {np.diff(bounds)[single[0]]} image; with "
                         "no val/ folder each class needs at least two (one to train on, one to test)")
    if len(single):  # all of them at once: a long-tailed folder was fixed one class a run
        named = ", ".join(shown(class_folders[k]) for k in single[:3])
        more = f" and {len(single) - 3} more" if len(single) > 3 else ""
        raise UsageError(f"{len(single)} class folders have one image ({named}{more}); with no val/ folder each class "
                         "needs at least two (one to train on, one to test)")
    test_rows = []
    for label, folder in enumerate(class_folders):
        rows = order[bounds[label]:bounds[label + 1]]
        take = min(len(rows) - 1, max(1, round(val_fraction * len(rows))))
        test_rows += rng.permutation(rows)[:take].tolist()
    is_test = np.zeros(len(files), dtype=bool)
    is_test[test_rows] = True
    return [f for f, t in zip(files, is_test) if not t], [f for f, t in zip(files, is_test) if t]


NOT_REGULAR = "not a regular file (a named pipe or a device)"


def special_file(path) -> bool:
    """Whether ``path`` names something other than a regular file (a named pipe, a device, a
    folder), which opening to read could wait on forever (`NOT_REGULAR`); False for a path that
    names nothing. One stat."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _left_out(message):
    """Say that files of the folder are not trained on: a warning (at the user's call), which --quiet does
    not hide."""
    warn_at_caller(message)


_PILLOW_QUIET = threading.Lock()  # guards the two below
_pillow_quiet = {"decoding": 0, "saved": None}  # decodes under way in this process's threads; the filters' keeper


@contextlib.contextmanager
def pillow_warnings_off():
    """Pillow's warnings that a decode here makes no better, off while the block runs: its
    DecompressionBombWarning from MAX_IMAGE_PIXELS on (a JPEG's draft bounds what it costs, and the
    warning would land inside the progress bar) and "Palette images with Transparency" (printed
    once per such image: the RGB is right). One warnings.catch_warnings spans the decodes under way
    in all threads, entered by the first and left by the last: one per decode (not thread-safe
    before Python 3.14) left these filters in the process's own after decodes in several threads
    at once (predict from a thread pool), silencing Pillow's guard for the rest of the process."""
    from PIL import Image

    with _PILLOW_QUIET:
        if not _pillow_quiet["decoding"]:
            saved = warnings.catch_warnings()
            saved.__enter__()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
            _pillow_quiet["saved"] = saved
        _pillow_quiet["decoding"] += 1
    try:
        yield
    finally:
        with _PILLOW_QUIET:
            _pillow_quiet["decoding"] -= 1
            if not _pillow_quiet["decoding"]:
                _pillow_quiet["saved"].__exit__(None, None, None)
                _pillow_quiet["saved"] = None


def decode_square(path, size, mode="RGB"):
    """The image at ``path`` (or a PIL image) in ``mode`` ("RGB", or "L" for one channel), upright (its EXIF
    orientation applied, as photo viewers do), resized and centre-cropped to (size, size, 3) or (size, size)
    uint8; a 16-bit image is scaled to 8 bits, a file of 32-bit integer or float pixels is refused
    (ValueError: their range is unknown).

    A JPEG is decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 scale that keeps twice ``size``
    (Pillow's draft, as its thumbnail does), so a 144-megapixel photo takes a few MB, not half
    a GB. Raises OSError/ValueError/SyntaxError (Pillow's) for an unreadable or truncated file
    (Pillow's other errors on a malformed file, struct.error or ZeroDivisionError from a camera's
    EXIF, say, as a ValueError naming them), and ValueError for one over Pillow's pixel limit
    (PIL.Image.MAX_IMAGE_PIXELS, twice over)."""
    try:
        return _decode_square(path, size, mode)
    except (OSError, ValueError, SyntaxError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's errors for a malformed file vary (its issues 4238, 8605)
        raise ValueError(f"{type(exc).__name__}: {first_line(exc)}") from exc


def _decode_square(path, size, mode):
    from PIL import Image

    with pillow_warnings_off():
        if isinstance(path, Image.Image):  # refused or scaled as its file would be
            _check_depth(path)
            return _square(_in_mode(_upright(_eight_bit_levels(path), Image), mode), size, Image, mode)
        if special_file(path):
            raise ValueError(NOT_REGULAR)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as exc:  # not an OSError: name it as a bad image
            raise ValueError(f"{str(exc).split(', could be')[0]}, Pillow's guard against decompression "
                             "bombs; shrink the image") from None
        with image:
            _check_depth(image)
            image.draft("RGB", (2 * size, 2 * size))
            return _square(_in_mode(_upright(image, Image), mode), size, Image, mode)


def _upright(image, Image):
    """``image`` turned as its EXIF orientation says; itself when it says nothing to do (Pillow's
    exif_transpose copies the whole decoded image even then: half a GB more for a large scan, and it
    writes the EXIF back, which fails on a camera's malformed tag). Loaded first: a TIFF's load turns
    it upright itself and drops the tag (read before, it would be turned twice)."""
    image.load()
    turn = _TURNS.get(image.getexif().get(ORIENTATION, 1))
    return image if turn is None else image.transpose(getattr(Image.Transpose, turn))


_TURNS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
          7: "TRANSVERSE", 8: "ROTATE_90"}  # EXIF orientation -> the transpose that shows it upright


ORIENTATION = 0x0112  # the EXIF tag: 1 is upright


def _check_depth(image):
    """A ValueError for an image file of 32-bit integer or floating-point pixels (scientific TIFFs):
    what range its values span (0..1, 0..255, 0..65535 ...) is not in the file, and read as 16-bit
    it would turn black or white. Pillow reads 16-bit files as I;16 (or, older, as I: kept)."""
    tile = getattr(image, "tile", None)  # a file's (an image made in memory has none)
    rawmode = tile[0][3] if tile and len(tile[0]) > 3 else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    if image.mode == "F" or (image.mode == "I" and isinstance(rawmode, str) and not rawmode.startswith("I;16")):
        kind = "floating-point" if image.mode == "F" else "32-bit integer"
        raise ValueError(f"{kind} pixels, whose range is not known; save it as an 8- or 16-bit image")


def _eight_bit_levels(image):
    """A PIL image of 32-bit integer pixels made in memory (mode I with no file behind it, as
    ``Image.fromarray`` makes of an int32 array) as 8-bit levels when they all lie in 0..255; other
    values are refused as a file of them is (a ValueError: their range is not known). Any other
    image is returned as it is."""
    if image.mode != "I" or getattr(image, "tile", None):
        return image
    low, high = image.getextrema()
    if low < 0 or high > 255:
        raise ValueError(f"32-bit integer pixels ({low}..{high}), whose range is not known; give 8-bit levels "
                         "(0..255, as mode L or RGB) or a 16-bit image (mode I;16)")
    return image.convert("L")


def _in_mode(image, mode="RGB"):
    """``image`` in ``mode``, or grey (mode L) for RGB: `_square` makes it RGB once resized. 16-bit
    grayscale (PNG, TIFF; Pillow's modes I;16 and I) keeps its top 8 bits: Pillow's own conversion
    clips every level over 255, turning the image white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        from PIL import Image

        levels = np.array(image)  # uint16 (I;16) or int32 (I), each step below in place, in that size
        if levels.dtype.kind != "u":
            np.clip(levels, 0, 65535, out=levels)
        levels >>= 8
        image = Image.fromarray(levels.astype(np.uint8), "L")
    if image.mode == mode or image.mode == "L" and mode == "RGB":  # grey made RGB once resized (_square): the
        return image  # same pixels, a third of the memory; and convert copies an image already in `mode`
    return image.convert(mode)


def _square(image, size, Image, mode=None):
    """Shorter side resized to ``size`` (bilinear, antialiased), then a centre crop: done in one
    step, resizing only the source box that the crop keeps (Pillow's ``box``), so a long thin image
    (a 5000 x 1 banner) costs size x size pixels, not a (5000 * size) x size intermediate. The box
    is the crop's own square mapped back to the source, so the pixels are those of resizing the
    whole image and then cropping, within one level (the box's edges round otherwise)."""
    width, height = image.size
    scale = size / min(width, height)
    resized_width, resized_height = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (resized_width - size) // 2, (resized_height - size) // 2
    x_scale, y_scale = width / resized_width, height / resized_height
    box = (left * x_scale, top * y_scale, (left + size) * x_scale, (top + size) * y_scale)
    square = image.resize((size, size), Image.BILINEAR, box=box)
    return np.asarray(square if mode is None or square.mode == mode else square.convert(mode))

