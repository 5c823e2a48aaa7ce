"""A finished run's model, ready to use: `model.pt` (written at the end of a run) and `load_run`.

model.pt holds the weights with everything needed to use them: the model's name (or import
path) and arguments, the class names, the image size, the normalisation and the run's
settings. `load_run(RUN)` rebuilds the model from it and reads images as the run's evaluation
did: decoded, shorter side resized to the image size, centre-cropped, normalised.
"""
import collections
import dataclasses
import json
import numbers
import os
import sys
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

from coreaug.data import is_folder_dataset
from coreaug.data.cache_decode import shown
from coreaug.data.cache_key import EMPTY_FILE
from coreaug.data.image_cache import builds_shown
from coreaug.data.image_folder import cache_dataset, pillow_warnings_off
from coreaug.data.registry import names_registered_dataset, read_in_place_error
from coreaug.errors import (UnreadableImage, UsageError, empty_path, first_line, mismatch_reason, not_applicable,
                            one_line, path_given)
from coreaug.files import saved_by_torch, warn_at_caller
from coreaug.models import available_models, create_model
from coreaug.models.pretrained import why_unreadable
from coreaug.models.registry import is_import_path
from coreaug.selection.gradients import check_model_logits

from .config import INSTANCE
from .distributed import pick_device
from .inputs import Normalize
from .precision import autocast_for, cpu_runs_bf16, resolve_precision
from .run_files import (CHECKPOINT, MODEL, checkpoint_fingerprint, folder_in_use, metrics_rows, read_otherwise,
                        recorded_folder, relative_folder, same_files)

FORMAT = "coreaug-model"
SKIPPED_NAMED = 3  # unreadable images predict(skip_bad_images=True) names in its warning; the rest counted
SKIP_ADVICE = "fix or remove it, or pass --skip-bad-images to leave unreadable images out"
READING_BAR = 512  # images from which reading them shows a bar on stderr (a terminal's; elsewhere a line a minute)


def _own_copy(tensor):
    """`tensor` on the CPU, contiguous, in a storage of its own size: a compiled step's parameters are views
    of one flat tensor a group, which torch.save would write whole for each (a model.pt twice the size)."""
    tensor = tensor.detach().cpu()
    if tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.nbytes:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def model_inputs(config, data):
    """What model.pt records of the model besides its weights, and summary.json too (its "model", for
    programs that read no torch file): its name, channels and classes, and what its input is made of."""
    return {
        "model": config.model, "in_channels": data.in_channels, "num_classes": data.num_classes,
        # images are read at store_size (a folder's stored size) and their centre image_size square evaluated
        # (a registered dataset's images keep their own size: config.image_size is a folder's)
        "class_names": list(data.class_names),
        "image_size": int(config.image_size if is_folder_dataset(config.dataset) else data.test_images.shape[-1]),
        "store_size": int(data.test_images.shape[-1]),
        "mean": data.preprocess.mean.flatten().tolist(), "std": data.preprocess.std.flatten().tolist(),
        "channels_last": data.preprocess.memory_format == torch.channels_last,  # False: a model that cannot take it
    }


def model_file(config, model, data, history):
    """The contents of model.pt for `model` trained by `config` on `data` (RunData)."""
    return {
        "format": FORMAT, "version": 1,
        **model_inputs(config, data),
        "state_dict": {name: _own_copy(tensor) for name, tensor in model.state_dict().items()},
        "config": dataclasses.asdict(config), "epochs": len(history),
        "final_test_accuracy": history[-1]["test_accuracy"] if history else None,
        "data_fingerprint": data.fingerprint,  # a folder's files (None for a registered dataset)
    }


@dataclass
class Prediction:
    """One image's `top_k` classes, most probable first, with their probabilities."""

    image: str
    classes: List[str]
    probabilities: List[float]


@dataclass
class Evaluation:
    """Accuracy of a run's model on a labelled set, overall and per class (name -> (correct, total));
    `scored` says which images: "test split" (a folder's val/ or test/), or "labelled images" (a
    folder's without one, all);
    `skipped`, the unreadable images of a labelled folder that `skip_bad_images` left out, each
    "cannot read image PATH (why)" (not counted in `total`); `unscored`, the run's classes with no
    image in the set (a val/ without them, a class whose held-out images were unreadable), which
    `per_class` leaves out."""

    accuracy: float
    correct: int
    total: int
    per_class: Dict[str, Tuple[int, int]] = dataclasses.field(repr=False)  # (20,000 classes: 100 KB in a notebook)
    scored: str = "test split"
    skipped: List[str] = dataclasses.field(default_factory=list)
    unscored: List[str] = dataclasses.field(default_factory=list)


class TrainedModel:
    """A finished run's model (in eval mode) with its preprocessing and class names.

    `read(image)` decodes a file (or PIL image) as the run's evaluation did, `preprocess` turns
    images (files, PIL images, or uint8 tensors as `read` gives) into the model's normalised
    input, `probabilities` and `predict` run the model, `evaluate` scores a labelled dataset.
    The model runs under the run's precision (its autocast, as the run's own evaluation did, so
    `evaluate` gives back its test accuracy: of the whole test split, where a run with `test_limit`
    scored a sample of it), as that precision resolves on this device: "auto" is fp32 on the CPU;
    fp16 runs in fp32 on the CPU, where torch's float16 autocast is 10-50x slower, and so does bf16
    on a CPU without bf16 instructions (`precision.cpu_runs_bf16`), where it is 9-15x slower
    (probabilities may then differ from the run's in the last digits).

    Attributes:
        model: the trained nn.Module, in eval mode on `device`.
        class_names: one name per output, in the model's order.
        image_size: the square side the model sees.
        store_size: the side images are stored at before the centre crop to `image_size` (larger
            for a run with resized crops; else `image_size`).
        in_channels: 1 (grayscale) or 3 (RGB).
        mean: the per-channel mean of the normalisation, in [0, 1] units (`(x / 255 - mean) / std`).
        std: the per-channel standard deviation of the normalisation, in [0, 1] units.
        config: the run's settings (a dict, as config.json holds them).
        device: the torch.device the model runs on.
        run: the run folder it was loaded from (None where unknown).
        data_fingerprint: a folder dataset's files as the run trained on them (None: another dataset).
        older: written by coreaug 0.2 or older.
    """

    def __init__(self, model, class_names, image_size, in_channels, mean, std, config, device="cpu", store_size=None,
                 data_fingerprint=None, *, channels_last=True, run=None, older=False):
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.class_names, self.image_size, self.in_channels = list(class_names), image_size, in_channels
        self.store_size = store_size or image_size
        self.mean, self.std, self.config = tuple(mean), tuple(std), config
        self.data_fingerprint = data_fingerprint  # the files of the run's folder, as it trained on them
        self.run = run  # the run folder (None: unknown), which places a dataset an older coreaug recorded relative
        self.older = older  # written by coreaug 0.2 or older (model.pt without data_fingerprint)
        self.normalize = Normalize(self.mean, self.std, self.device, crop=image_size,
                                   memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.autocast = autocast_for(_precision(config.get("precision"), self.device), self.device)

    def __repr__(self):
        return (f"TrainedModel(model={self.config.get('model')!r}, classes={len(self.class_names)}, "
                f"image_size={self.image_size}, in_channels={self.in_channels})")

    def read(self, image):
        """uint8 (C, H, W) of an image file's path or a PIL image: converted to RGB (or grayscale
        for a one-channel model), shorter side resized to `store_size` (the run's stored size,
        `image_size` unless the run stored larger for resized crops), centre-cropped; `preprocess`
        then takes its centre `image_size` square, as the run's evaluation did.
        Raises UnreadableImage (a UsageError) naming the file when it is not a readable image (or a
        PIL image without pixels, or of floating-point or 32-bit integer pixels outside 0..255, as
        such a file is; a link to a file that is gone included), UsageError for a folder,
        FileNotFoundError for a missing file. `~` in a path is the home folder."""
        from coreaug.data.image_folder import decode_square

        if hasattr(image, "read") and not isinstance(image, (str, bytes, os.PathLike)):  # a file object, BytesIO
            raise UsageError(f"image is a file object ({type(image).__name__}); give its path, or the image opened: "
                             "PIL.Image.open(f)")
        if not hasattr(image, "convert"):
            image = os.path.expanduser(path_given(image, "image", "an image file's path or a PIL image"))
        if not hasattr(image, "convert") and os.path.isdir(image):
            raise UsageError(f"{image} is a folder; read takes one image file (predict takes folders)")
        problem = None if hasattr(image, "convert") else _file_problem(image)
        if problem == NO_FILE:
            raise FileNotFoundError(f"image {image} does not exist; give the path of an image file")
        if problem:
            raise UnreadableImage(image, problem)
        if hasattr(image, "convert") and 0 in image.size:
            raise _unreadable(image, f"no pixels: {image.size[0]}x{image.size[1]}")
        if hasattr(image, "convert") and getattr(image, "tile", None) and getattr(image, "fp", 1) is None:
            raise _unreadable(image, "its file was closed before its pixels were read: call image.load() inside the "
                                     "`with Image.open(...)` block, or give the path")
        try:
            pixels = decode_square(image, self.store_size, "L" if self.in_channels == 1 else "RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise _unreadable(image, first_line(exc)) from None
        pixels = torch.from_numpy(pixels.copy())
        return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()

    def preprocess(self, images):
        """The model's input, float (N, C, S, S) on the model's device, of image files, PIL images
        or a uint8 tensor ((N, C, S, S), or (C, S, S) for one): read, then normalised."""
        return self.normalize(self._batch(images).to(self.device))

    def _batch(self, images):
        """uint8 (N, C, H, W) from a uint8 tensor ((C, H, W) for one image: at `store_size`, as `read`
        gives it, or already its centre `image_size` square) or a list of paths / PIL images."""
        if isinstance(images, torch.Tensor):
            given = images
            images = images.unsqueeze(0) if images.ndim == 3 else images
            sizes = sorted({self.store_size, self.image_size})
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != self.in_channels \
                    or images.shape[2] != images.shape[3] or images.shape[3] not in sizes:
                size = " or ".join(f"(N, {self.in_channels}, {s}, {s})" for s in reversed(sizes))
                raise UsageError(f"images must be uint8 {size} as the run trained on, got {given.dtype} "
                                 f"{tuple(given.shape)}{self._layout_hint(given)}; or give image files")
            return images
        images = image_files(images)
        if not images:
            return torch.zeros((0, self.in_channels, self.store_size, self.store_size), dtype=torch.uint8)
        return torch.stack([self.read(image) for image in images])

    def _layout_hint(self, images):
        """The fix for a tensor of the run's images in another layout or scale, else ""."""
        channels, shape = self.in_channels, tuple(images.shape)
        if images.ndim == 4 and shape[-1] == channels and shape[1] != channels:
            return ": channels last? images.permute(0, 3, 1, 2)"
        if images.ndim == 3 and shape[-1] == channels and shape[0] != channels:
            return ": one image, channels last? images.permute(2, 0, 1)"
        if images.ndim == 3 and channels == 1 and shape[0] != 1:
            return ": grey images without a channel dimension? images.unsqueeze(1)"
        if images.is_floating_point() and images.ndim in (3, 4):
            return ": floats in [0, 1]? (images * 255).round().to(torch.uint8)"
        return ""

    def probabilities(self, images, batch_size=None):
        """Softmax probabilities (N, classes), float32 on the CPU, of images as `predict` takes them
        (file paths, folders of image files, PIL images, or a uint8 tensor), `batch_size` at a
        time (None: the trainer's no-grad batch, `inference_batch_size`); files are decoded a
        batch at a time, so a folder of any size fits in memory."""
        batch_size = self._batch_size(batch_size)
        images = self._batch(images) if isinstance(images, torch.Tensor) else image_files(images)
        out = []
        with torch.no_grad(), self.autocast():
            for start in range(0, len(images), batch_size):
                batch = self.normalize(self._batch(images[start:start + batch_size]).to(self.device))
                out.append(torch.softmax(self.model(batch).float(), dim=1).cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.class_names)))

    def _batch_size(self, batch_size):
        """`batch_size` checked (None: `self.batch_size`): UsageError unless an integer >= 1."""
        if batch_size is None:
            return self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise UsageError(f"batch_size must be an integer >= 1 (None: the run's), got {batch_size!r}")
        return int(batch_size)

    @property
    def batch_size(self):
        """The trainer's no-grad batch for the run: its training batch on the CPU (larger ones
        overflow the caches), at least 1024 on a GPU."""
        from .trainer import inference_batch_size

        return inference_batch_size(self.config.get("batch_size") or 128, self.device)

    def predict(self, images, top_k=1, batch_size=None, skip_bad_images=False):
        """A `Prediction` per image (file paths, folders of image files, PIL images, or a uint8
        tensor): its `top_k` classes and their probabilities, most probable first; a folder's
        images (recursively, sorted by path) in its place, each named by its path (a PIL image by
        the file it was opened from, else, as a tensor's images, by its position). `top_k` is 1,
        the answer a program acts on, where `coreaug predict --top-k` shows five, a ranking to read.
        `batch_size`: as `probabilities`. An unreadable image raises a UsageError naming it; with
        `skip_bad_images` it is left out of the list instead (as `coreaug predict --skip-bad-images`),
        the images left out named in one warning (a UsageError when every image is unreadable)."""
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise UsageError(f"top_k must be an integer >= 1, got {top_k!r}")
        if not isinstance(skip_bad_images, bool):  # "no" would mean yes
            raise UsageError(f"skip_bad_images must be True or False, got {skip_bad_images!r}")
        top_k, batch_size = int(top_k), self._batch_size(batch_size)
        if not isinstance(images, torch.Tensor):
            images = image_files(images, missing_ok=skip_bad_images)
        names = [image_name(x, str(i)) for i, x in enumerate(images)] if isinstance(images, list) else None
        if skip_bad_images and names:
            names, probabilities = self._readable_probabilities(images, names, batch_size)
        else:
            probabilities = self.probabilities(images, batch_size)
        values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        names = names or [str(i) for i in range(len(probabilities))]
        return [Prediction(name, [self.class_names[i] for i in row.tolist()], p.tolist())
                for name, row, p in zip(names, indices, values)]

    def _readable_probabilities(self, images, names, batch_size):
        """`names` of the readable `images` and their probabilities; the others named in a warning."""
        kept, out, skipped = [], [], []
        for positions, batch in self._read_batches(images, batch_size, True, skipped):
            kept += [names[i] for i in positions]
            out.append(self.probabilities(batch, batch_size))
        if skipped and not kept:
            raise UsageError(f"{all_unreadable(len(images), 'image', skipped[0])}; there is nothing to predict")
        if skipped:
            more = f" and {len(skipped) - SKIPPED_NAMED} more" if len(skipped) > SKIPPED_NAMED else ""
            warn_at_caller(f"left out {len(skipped)} unreadable image{'s' if len(skipped) != 1 else ''} of "
                           f"{len(images)}: {'; '.join(skipped[:SKIPPED_NAMED])}{more}")
        return kept, torch.cat(out)

    def evaluate(self, dataset=None, data_dir=None, download=False, skip_bad_images=None, batch_size=None,
                 cache_dir=None):
        """An `Evaluation` on the test split of `dataset` (a registered name or a folder of images,
        read as `coreaug train` reads it, with the run's workers and cache folder, or `cache_dir`,
        or, where the run's cannot be made or written here, COREAUG_CACHE_DIR's or the default;
        default: the run's own dataset, in the run's `data_dir` unless `data_dir` is given; `download`
        fetches a built-in dataset's missing files, as `load_dataset` does). A folder's images
        are read at the run's size (in grayscale for a one-channel model, as `read` reads a file),
        `batch_size` at a time (None: as `probabilities`; never all in memory), and its classes
        matched to the run's by name; `skip_bad_images` (None: the run's setting) leaves its
        unreadable images out (named in the Evaluation's `skipped`; a UsageError when it leaves
        out every image). A folder other than the run's own is read as image files, never
        decoded into a cache: every image of its val/ or test/ split (its train/ split, if any,
        is not read), or, without a split, of its class folders. A registered dataset's images
        must be of the run's channels and size. In memory, `dataset` is an ImageDataset (as
        `coreaug.load_dataset` returns: its test split, scored as a registered dataset's) or a pair
        (images, labels): images as `predict` takes them, labels a tensor of the run's class indices.
        Every test image is scored: a run with `test_limit` scored a sample, so its figures differ."""
        from coreaug.data import is_folder_dataset, load_dataset
        from coreaug.data.image_folder import one_listing
        from coreaug.data.registry import names_registered_dataset, reads_no_files

        batch_size = self._batch_size(batch_size)
        asked_skip = bool(skip_bad_images)  # (None: the run's setting)
        if skip_bad_images is None:
            skip_bad_images = self.config.get("skip_bad_images", False)
        if not isinstance(skip_bad_images, bool):  # "no" would mean yes
            raise UsageError(f"skip_bad_images must be True, False or None, got {skip_bad_images!r}")
        if dataset is not None and not isinstance(dataset, (str, os.PathLike)):  # before `not dataset`: a tensor's
            return self._evaluate_in_memory(dataset, batch_size, skip_bad_images)  # truth is ambiguous
        if dataset is not None:  # "" is no dataset (it scored the run's own); a Path stays one (a folder, not a name)
            path_given(dataset, "dataset", "a dataset's name or a folder's path, or None for the run's own")
        if data_dir is not None:  # "" is no folder (the working folder), nor " " (a folder of that name)
            data_dir = path_given(data_dir, "data_dir", "a folder's path, or None for the run's own")
        if cache_dir is not None:
            cache_dir = path_given(cache_dir, "cache_dir", "a folder, or None for the run's own")
        given = [name for name, value in (("data_dir", data_dir), ("download", download)) if value]
        own = self._own_dataset(dataset)
        unregistered = relative_folder(own) and not self.older  # this version records folders whole: a name
        if not dataset or dataset in (own, self.config["dataset"]) or is_folder_dataset(dataset) and \
                is_folder_dataset(own) and not unregistered and \
                os.path.realpath(os.path.expanduser(str(dataset))) == os.path.realpath(own):
            if not data_dir and not reads_no_files(own):  # where the run found it (0.2 recorded one for digits too)
                data_dir = self._recorded_folder("data_dir")
            dataset = own
            if unregistered:  # not a folder here of the same name, given as --dataset ./NAME: scored as files
                here = f" (the folder {own} here: --dataset ./{own})" if os.path.isdir(own) else ""
                raise UsageError(f"the run's dataset {own!r} is not a built-in dataset nor one registered in this "
                                 "process: register it (import the module that calls register_dataset) and evaluate "
                                 "in Python, coreaug.load_run(RUN).evaluate(), or give a folder of labelled images "
                                 f"as --dataset{here}")
            if relative_folder(own):  # not found from here nor from the run folder's parents
                raise UsageError(f"the run's dataset folder was recorded as the relative path {own} (coreaug 0.2 "
                                 "kept paths as typed), which names no folder from here or from the run folder's "
                                 "parents: run evaluate from the folder the run was trained in, or give the folder's "
                                 "path as --dataset (dataset= in Python; the folder the run trained on is scored on "
                                 "its test split)")
            if not names_registered_dataset(own) and not os.path.isdir(os.path.expanduser(str(own))):
                raise UsageError(f"the run's dataset folder {own} does not exist here (moved or deleted); give "
                                 "its new path as --dataset (dataset= in Python; without val/ or test/ it is then "
                                 "scored whole, training images included), or a folder of new labelled images")
        folder = is_folder_dataset(dataset)
        if folder and given:  # never read: the images are where the folder is
            raise read_in_place_error(dataset, given)
        if cache_dir and not (folder and dataset == own):  # nothing is decoded: ignored before
            what = "another folder, read as image files" if folder else "a built-in dataset, loaded as it is"
            raise not_applicable(["cache_dir"], "the run's own folder dataset, decoded into a cache",
                                 f"{dataset} is {what}")
        if asked_skip and not folder:  # its files are no images to skip: ignored before
            raise not_applicable(["skip_bad_images"], "a folder of images",
                                 f"{dataset} is a built-in dataset, loaded as it is")
        if folder and dataset != own:  # read as files: its train/ split, if any, is not decoded for nothing
            from coreaug.data.image_folder import test_split_folder

            split = test_split_folder(os.path.expanduser(str(dataset)))  # the images labelled_images reads
            return self._evaluate_files(labelled_images(dataset), batch_size, skip_bad_images,
                                        "test split" if split else "labelled images")
        if folder:  # the change checks' listing of the folder is the loading's (one_listing)
            with one_listing():
                return self._evaluate_own_folder(dataset, batch_size, cache_dir, skip_bad_images)
        data = load_dataset(dataset, data_dir, download=download, progress=False)
        return self._scored_test_split(data, folder, batch_size)

    def _evaluate_own_folder(self, dataset, batch_size, cache_dir, skip_bad_images):
        """`evaluate` of the run's own folder `dataset`: its test split as the run decoded it, or read as
        files where its images changed since the run and it has a val/ or test/ split."""
        from coreaug.data import load_dataset
        from coreaug.data.cache_decode import default_workers

        if self._split_folder_changed(dataset):  # its val/ read alone, as another folder's
            print(f"the images of {dataset} changed since the run trained: its test split is read as image files, "
                  "not decoded into a new cache with the training split", file=sys.stderr, flush=True)
            return self._evaluate_files(labelled_images(dataset), batch_size, skip_bad_images, "test split")
        cache_dir = cache_dir or _usable_cache_dir(self._recorded_folder("cache_dir", must_exist=False))
        try:
            files = self._check_split_unchanged(dataset)  # decoded where and as the run decoded it
        except UsageError:  # the folder changed: the run's own decoded cache may still hold its test split
            kept = self._kept_cache(dataset, cache_dir)
            if kept is None:
                raise
            print(f"the images of {dataset} changed since the run trained: its test split is scored from the run's "
                  f"decoded cache, which still holds it ({kept.folder})", file=sys.stderr, flush=True)
            return self._scored_test_split(cache_dataset(kept, os.path.realpath(dataset)), True, batch_size)
        workers = self.config.get("workers")
        self._say_decoding(dataset, files, cache_dir)
        with builds_shown(True):  # a new cache's decoding shows its bar, as train's does
            data = load_dataset(dataset, progress=False, image_size=self.image_size, store_size=self.store_size,
                                val_fraction=self.config.get("val_fraction", 0.1), on_disk=True,
                                cache_dir=cache_dir, skip_bad_images=skip_bad_images,
                                workers=default_workers() if workers is None else workers)
        return self._scored_test_split(data, True, batch_size)

    def _kept_cache(self, root, cache_dir):
        """The decoded cache (in `cache_dir`, None: COREAUG_CACHE_DIR's or the default) of the run's own
        folder `root` as the run trained on it (its files' fingerprint, this format, the run's stored
        size), else None."""
        from coreaug.data.cache_key import FORMAT_VERSION
        from coreaug.data.image_cache import caches_in

        for cache in caches_in(cache_dir, os.path.realpath(os.path.expanduser(str(root)))):
            meta, size = cache.meta, list(cache.meta.get("image_shape") or [])[-1:]
            if self.data_fingerprint and meta.get("files") == self.data_fingerprint \
                    and meta.get("version") == FORMAT_VERSION and size == [self.store_size]:
                return cache
        return None

    def _scored_test_split(self, data, folder, batch_size):
        """The `Evaluation` of the ImageDataset `data`'s test split (`folder`: a folder's, decoded in RGB)."""
        run_index = torch.tensor([self._class_index(data, label) for label in range(data.num_classes)])
        predicted = [self.probabilities(batch, batch_size).argmax(1)
                     for batch in self._test_batches(data, folder, batch_size)]
        return self._scored(run_index[data.test_labels.long()], predicted)

    def _split_folder_changed(self, root):
        """Whether the run's own folder has train/ and a val/ or test/ split, and other files than the
        run trained on: a cache of both splits would be decoded again (ImageNet's 1.28 M training
        images) to score the test split, and a class folder added to train/ alone would fail it."""
        from coreaug.data.image_folder import test_split_folder

        real = os.path.realpath(os.path.expanduser(str(root)))
        if self.data_fingerprint is None or not os.path.isdir(os.path.join(real, "train")) \
                or not test_split_folder(real):
            return False
        return self._files_now(root)[1]

    def _check_split_unchanged(self, root):
        """UsageError when the run's own folder, whose test split is drawn from its files (no val/
        or test/ folder), has other files than the run trained on: the split drawn again would hold
        images the run trained on (a run of coreaug 0.2 on the folder as given, through a link, is
        the same files: `same_files`). Returns the folder's fingerprint now, None where not checked
        (a folder with train/, or a run written before coreaug recorded the files)."""
        given, root = root, os.path.realpath(os.path.expanduser(str(root)))
        if self.data_fingerprint is None or os.path.isdir(os.path.join(root, "train")):
            return None
        now, changed = self._files_now(given)
        if changed:
            other = read_otherwise(root, self.config.get("val_fraction", 0.1)) if self.older else ""
            if other:
                raise UsageError(f"the run was trained by an older coreaug, which read {root} otherwise: this "
                                 f"version also reads {other}, so its test split drawn again would hold images "
                                 "the run trained on. Move those out of the folder to evaluate the run on its own "
                                 "test split, or evaluate on a folder of new labelled images (scored whole)")
            raise UsageError(f"the images in {root} changed (files added, removed or modified) since the run "
                             "trained; its test split is drawn from the folder's files, so drawn again it would "
                             "hold images the run trained on. Evaluate on a folder of new labelled images "
                             "instead (scored whole), or restore the folder")
        return now

    def _files_now(self, given):
        """(the fingerprint of the run's own folder `given` now, whether it holds other files than the
        run trained on): a run of coreaug 0.2 on the folder as given, through a link, is the same
        files (`same_files`)."""
        from coreaug.data.image_folder import folder_fingerprint

        root, val_fraction = os.path.realpath(os.path.expanduser(str(given))), self.config.get("val_fraction", 0.1)
        now = folder_fingerprint(root, val_fraction)
        return now, now != self.data_fingerprint and not same_files(self.data_fingerprint, root, val_fraction, [given])

    def _own_dataset(self, given):
        """The run's dataset as its config records it, but for a folder an older coreaug recorded as a
        relative path (`relative_note`): `given` where that is the same folder (found from the run folder's
        parents, or holding the files the run trained on), else the folder it names from the run
        folder's parents or here (`recorded_folder`), else the path as recorded."""
        own = self.config["dataset"]
        if not self.older or not relative_folder(own):  # a relative name of this version's: a registered dataset
            return own
        run = self.run or os.path.join(".", "run")  # a model without its folder: its dataset from here only
        if given and is_folder_dataset(given) and os.path.isdir(os.path.expanduser(str(given))):
            given = os.path.abspath(os.path.expanduser(str(given)))
            if recorded_folder(own, run, like=given) or self.data_fingerprint and \
                    same_files(self.data_fingerprint, given, self.config.get("val_fraction", 0.1), [given]):
                return given
        return recorded_folder(own, run) or own

    def _recorded_folder(self, key, must_exist=True):
        """The run's cache folder (`key` "cache_dir") or data folder ("data_dir"), placed as `_own_dataset`
        places a relative one (coreaug 0.2 kept them as typed). A relative one that names no folder from the
        run folder's parents or here: None, or (`must_exist`) a UsageError saying so."""
        folder = self.config.get(key)
        if not isinstance(folder, str) or os.path.isabs(os.path.expanduser(folder)):
            return folder
        found = recorded_folder(folder, self.run or os.path.join(".", "run"))
        if found is None and must_exist:  # (the commands name `key` by its flag)
            raise UsageError(f"the run's {key} was recorded as the relative path {folder} (coreaug 0.2 kept paths as "
                             "typed), which names no folder from here or from the run folder's parents: run evaluate "
                             f"from the folder the run was trained in, or give the folder's path as {key}")
        return found

    def _say_decoding(self, root, files, cache_dir):
        """Say on stderr that `evaluate` decodes the folder `root` into a new cache, when no cache in `cache_dir`
        (None: COREAUG_CACHE_DIR's or the default) holds its files now (fingerprint `files`; None: not listed, and
        then only when it has no cache of the run's size at all): for a large folder a long wait, and a second
        copy on disk where the run's own cache is elsewhere."""

        from coreaug.data.cache_key import FORMAT_VERSION
        from coreaug.data.image_cache import _make_cache_folder, _root, caches_in

        root = os.path.realpath(os.path.expanduser(str(root)))
        if any(files in (None, cache.meta.get("files")) and cache.meta.get("version") == FORMAT_VERSION
               and list(cache.meta.get("image_shape", []))[-1:] == [self.store_size]
               for cache in caches_in(cache_dir, root)):
            return
        where = _root(cache_dir)
        _make_cache_folder(where, cache_dir)  # a folder it cannot write is refused before "decoding ..." is said
        unrecorded = "" if self.config.get("cache_dir") else (
            "; the run recorded no cache folder (coreaug 0.2 did not, where COREAUG_CACHE_DIR chose it): pass "
            "--cache-dir (cache_dir= in Python) the folder of the run's cache to use that one")
        print(f"decoding the images of {root} into a new cache in {where} (no cache there holds them at "
              f"{self.store_size} px){unrecorded}", file=sys.stderr, flush=True)

    def _evaluate_in_memory(self, dataset, batch_size, skip_bad_images=False):
        """The `Evaluation` of an ImageDataset's test split (checked as a registered loader's; its classes
        matched as a registered dataset's) or of (images, labels): images as `probabilities` takes them,
        labels an integer tensor (N,) of the run's class indices (with `skip_bad_images`, unreadable image
        files are left out with their labels). UsageError for anything else."""
        from coreaug.data import ImageDataset
        from coreaug.data.dataset import check_dataset, check_labels

        if isinstance(dataset, ImageDataset):
            check_dataset(dataset, dataset.name)
            if not len(dataset.test_images):
                raise UsageError(f"dataset {dataset.name!r} has no test images; there is nothing to score")
            return self._scored_test_split(dataset, dataset.fingerprint is not None, batch_size)  # a folder's: RGB
        if not isinstance(dataset, tuple) or len(dataset) != 2:
            raise UsageError(f"dataset must be a registered name, a folder path, an ImageDataset or (images, labels), "
                             f"got {type(dataset).__name__}; images without labels: predict(images)")
        images, labels = dataset
        if not isinstance(labels, torch.Tensor):
            names = isinstance(labels, (list, tuple)) and bool(labels) and isinstance(labels[0], str)
            fix = ("class names? torch.tensor([run.class_names.index(name) for name in labels])" if names
                   else "torch.as_tensor(labels)")
            raise UsageError(f"evaluate((images, labels)): labels must be a tensor of the run's class indices, got "
                             f"{type(labels).__name__} ({fix})")
        classes = len(self.class_names)
        check_labels(labels, classes, "evaluate((images, labels)): labels",
                     f"the run's classes [0, {classes}); give the index of each image's class in class_names")
        if skip_bad_images and not isinstance(images, torch.Tensor):
            files = image_files(images)
            if not files and not len(labels):
                raise UsageError("evaluate((images, labels)): no images given; there is nothing to score")
            if len(files) != len(labels):
                raise UsageError(f"evaluate((images, labels)): {len(files)} images but {len(labels)} labels; "
                                 "give one label per image, in order")
            kept, predicted, skipped = [], [], []
            for positions, batch in self._read_batches(files, self._batch_size(batch_size), True, skipped):
                kept += positions
                predicted.append(self.probabilities(batch, batch_size).argmax(1))
            if skipped and not kept:
                raise UsageError(f"{all_unreadable(len(files), 'labelled image', skipped[0])}; there is nothing to "
                                 "score")
            result = self._scored(labels.long().cpu()[kept], predicted, "labelled images")
            result.skipped = skipped
            return result
        probabilities = self.probabilities(images, batch_size)
        if len(probabilities) != len(labels):
            raise UsageError(f"evaluate((images, labels)): {len(probabilities)} images but {len(labels)} labels; "
                             "give one label per image, in order")
        if not len(labels):
            raise UsageError("evaluate((images, labels)): no images given; there is nothing to score")
        return self._scored(labels.long().cpu(), [probabilities.argmax(1)], "labelled images")

    def _evaluate_files(self, files, batch_size, skip_bad_images, scored="labelled images"):
        """An `Evaluation` of [(path, class name, where)] image files, read as `read` reads them,
        `batch_size` at a time; a missing file (a val_annotations.txt line naming none) is unreadable."""
        # each class looked up once, in file order (the first class the run lacks is the one named)
        indices = {key: self._run_class(*key) for key in dict.fromkeys((name, where) for _, name, where in files)}
        labels, predicted, skipped = [], [], []
        paths = [path for path, _, _ in files]
        if not skip_bad_images:  # a file that is not an image, found before any is decoded (Pillow reads headers only)
            check_headers(paths, SKIP_ADVICE)
        for kept, images in self._read_batches(paths, batch_size, skip_bad_images, skipped, progress=True):
            labels += [indices[files[i][1:]] for i in kept]
            predicted.append(self.probabilities(images, batch_size).argmax(1))
        if skipped and not labels:
            raise UsageError(f"{all_unreadable(len(files), 'labelled image', skipped[0])}; there is nothing to "
                             "score")
        result = self._scored(torch.tensor(labels, dtype=torch.long), predicted, scored)
        result.skipped = skipped
        return result

    def _read_batches(self, images, batch_size, skip_bad_images, skipped, progress=False):
        """(positions, uint8 batch) of `images` (paths or PIL images) read as `read` reads them,
        `batch_size` at a time. An unreadable image (a missing file too) raises a UsageError, or,
        with `skip_bad_images`, is left out and its reason appended to `skipped`. With `progress`,
        a bar on stderr counts the images read (`reading_bar`)."""
        with reading_bar(len(images), "evaluating", progress) as bar:
            for start in range(0, len(images), batch_size):
                kept, pixels = self.read_readable(images[start:start + batch_size], skip_bad_images, skipped)
                bar.update(min(batch_size, len(images) - start))
                if pixels:
                    yield [start + i for i in kept], torch.stack(pixels)

    def read_readable(self, images, skip_bad_images, skipped):
        """(positions in `images`, their uint8 pixels as `read` gives them) of the images that can be read.
        An unreadable one (a file gone since it was listed too) raises a UsageError (its `what` the reason,
        "cannot read image PATH (why)"), or, with `skip_bad_images`, is left out and its reason appended to
        `skipped`."""
        kept, pixels = [], []
        for position, image in enumerate(images):
            try:
                if isinstance(image, str) and empty_path(image):
                    raise FileNotFoundError(image)  # a blank line or cell (read would call it a mistake)
                pixels.append(self.read(image))
            except (UnreadableImage, FileNotFoundError) as error:
                what = getattr(error, "what", f"cannot read image {image} (no such file)" if str(image).strip() else
                               f"cannot read image {image!r} (an empty path)")
                if not skip_bad_images:
                    unreadable = UsageError(f"{what}; {SKIP_ADVICE}")
                    unreadable.what = what
                    raise unreadable from None
                skipped.append(what)
                continue
            kept.append(position)
        return kept, pixels

    def _scored(self, labels, predicted, scored="test split"):
        """The `Evaluation` of run class indices `labels` against a list of predicted batches."""
        hits = torch.cat(predicted) == labels if predicted else torch.zeros(0, dtype=torch.bool)
        per_class, unscored = {}, []
        for index, name in enumerate(self.class_names):
            rows = labels == index
            if rows.any():
                per_class[name] = (int(hits[rows].sum()), int(rows.sum()))
            else:
                unscored.append(name)
        correct, total = int(hits.sum()), len(labels)
        return Evaluation(correct / total if total else float("nan"), correct, total, per_class, scored,
                          unscored=unscored)

    def _test_batches(self, data, folder, batch_size):
        """`data`'s test images, `batch_size` at a time, as the model takes them: a folder's
        (decoded in RGB) in grayscale for a one-channel model, as `read` converts a file.
        UsageError naming both kinds of image when they are of another channel count or size."""
        from coreaug.data.images import as_images, consecutive

        images = as_images(data.test_images)
        gray = folder and self.in_channels == 1 and images.shape[1] == 3
        channels, height, width = (1 if gray else images.shape[1]), *images.shape[-2:]
        if (channels, height, width) != (self.in_channels, self.store_size, self.store_size):
            size = f"{width} px" if width == height else f"{width}x{height} px"
            raise UsageError(f"the run's model takes {self.in_channels}-channel {self.store_size} px images, "
                             f"{data.name} has {channels}-channel {size} ones; evaluate on a dataset of "
                             "the run's kind of images, or on a folder of images (read at the run's size)")
        for batch in images.batches(consecutive(len(images), batch_size)):
            yield grayscale(batch) if gray else batch

    def _class_index(self, data, label):
        """The run's class index of `data`'s class `label`, by name where `data` names its classes (a
        folder's by the name with "/" written "_")."""
        if data.class_names is None:
            if data.num_classes != len(self.class_names):
                raise UsageError(f"{data.name} has {data.num_classes} classes, the run's model {len(self.class_names)}; "
                                 "evaluate on a dataset of the run's classes")
            return label
        return self._run_class(data.class_names[label], data.source)

    def _run_class(self, name, source):
        """The run's class index of the class `name` of `source` (a folder's: "/" written "_")."""
        # A folder cannot be named "T-shirt/top" (Fashion-MNIST's): "T-shirt_top" stands for it.
        as_folders = [c.replace("/", "_") for c in self.class_names]
        if name in self.class_names:
            return self.class_names.index(name)
        if name in as_folders:
            return as_folders.index(name)
        composed = [unicodedata.normalize("NFC", c) for c in as_folders]  # a folder zipped on macOS: "café" as e + ´
        if unicodedata.normalize("NFC", name) in composed:
            return composed.index(unicodedata.normalize("NFC", name))
        raise UsageError(f"class {name!r} of {source} is not one of the run's classes "
                         f"({', '.join(as_folders[:10])}{' ...' if len(as_folders) > 10 else ''}, as folder "
                         "names); evaluate on a dataset of the run's classes")


def labelled_images(root):
    """[(path, class name, class folder)] of every image of the labelled folder `root`: of its val/
    or test/ split's class folders when it has one, else of its own class folders (images in
    <class>/<image>, recursively; hidden files and folders left out, as a dataset's scan leaves
    them), or, for TinyImageNet's layout, of val/images as val/val_annotations.txt labels them (the
    class folder given as that file). UsageError for a folder without class folders of images, or
    with train/ alone."""
    from coreaug.data.image_folder import (images_under, is_tiny_imagenet_val, listed_folders, test_split_folder,
                                           tiny_imagenet_annotations)

    root = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(root):
        raise UsageError(f"{root} is not a folder of images")
    split = test_split_folder(root) or root
    if split == root and os.path.isdir(os.path.join(root, "train")):
        raise UsageError(f"{root} has train/ but no val/ or test/ folder to evaluate on; give the folder of "
                         "labelled images to score")
    if is_tiny_imagenet_val(split):  # as training reads it: val/images is not a class
        annotations = os.path.join(split, "val_annotations.txt")
        files = [(path, name, annotations) for path, name, _ in tiny_imagenet_annotations(split)]
        if not files:
            raise UsageError(f"{annotations} lists no images; a line per image: file name, tab, class")
        return files
    unread = collections.Counter()
    files = [(path, name, os.path.join(split, name)) for name in listed_folders(split)
             for path in images_under(os.path.join(split, name), unread)]
    if not files:
        raise UsageError(f"{split} holds no class folders of images; a labelled set goes in <folder>/<class>/<image>")
    _warn_unread(unread, split)
    return files


def _warn_unread(unread, folder):
    """A warning for the files of image formats not read (HEIC, AVIF: counted by extension in
    `unread`) that a listing of `folder` left out, as training counts them in a line."""
    from coreaug.data.image_folder import unread_files

    if unread:
        warn_at_caller(f"left out {unread_files(unread)} in {shown(folder)}; convert them to JPEG or PNG to read them")


def grayscale(images, chunk=4096):
    """uint8 (N, 1, H, W) of uint8 RGB (N, 3, H, W): the ITU-R 601-2 luma of Pillow's convert("L"),
    in Pillow's integer arithmetic, so a gray image's three equal channels give back its own value."""
    out = torch.empty((len(images), 1, *images.shape[-2:]), dtype=torch.uint8)
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
    for start in range(0, len(images), chunk):
        rgb = images[start:start + chunk].to(torch.int32)
        out[start:start + chunk] = ((rgb * weights).sum(1, keepdim=True) + 0x8000) >> 16
    return out


def _unreadable(image, reason):
    """UnreadableImage for a path or a PIL image: named by its file, or, for a PIL image made in memory
    (no file to name or replace), as "a PIL image", with advice for such an image."""
    if not hasattr(image, "convert") or getattr(image, "filename", ""):
        return UnreadableImage(image_name(image, ""), reason)
    return UnreadableImage(None, reason, "images are read from PIL images of 8- or 16-bit pixels (mode L, RGB or "
                           "I;16, say) and from image files", name="a PIL image")


def image_name(image, default):
    """A path's text, or the file a PIL image was opened from (`default` for one made in memory)."""
    if hasattr(image, "convert"):
        return str(getattr(image, "filename", "") or default)
    return str(image)


def reading_bar(total, description, shown=True):
    """A progress bar on stderr over `total` images to read (a terminal's, cleared when done; elsewhere a
    line a minute), shown from READING_BAR images: decoding large PNG or TIFF scans takes ~0.1 s each."""
    from coreaug.progress import progress_bar

    return progress_bar(total, description, "image", disable=not shown or total < READING_BAR, leave=False)


NO_FILE = "no such file"


def _file_problem(path):
    """Why the file at `path` is no image before it is opened (a link to nothing, a pipe or device, NO_FILE, an
    empty file, as training names them), else None: what `read` and `check_headers` check first."""
    from coreaug.data.image_folder import NOT_REGULAR, special_file

    if os.path.islink(path) and not os.path.exists(path):
        return f"a link to {os.readlink(path)}, which does not exist"
    if special_file(path):
        return NOT_REGULAR
    if not os.path.isfile(path):
        return NO_FILE
    if os.path.getsize(path) == 0:
        return EMPTY_FILE
    return None


def check_headers(files, advice):
    """UsageError (UnreadableImage, then `advice`) naming the first of `files` (paths; PIL images are let
    through) that is not an image by its header: a cheap pass (no pixel is decoded) before a long one
    that would otherwise stop at it. Worded as `TrainedModel.read` words it (an empty file, a dead link);
    a file damaged past its header is found when decoded."""
    from PIL import Image

    for path in files:
        if hasattr(path, "convert"):
            continue
        problem = _file_problem(path)
        if problem:
            raise UnreadableImage(path, problem, advice)
        try:
            with pillow_warnings_off():  # (the pixels are not decoded here)
                with Image.open(path):
                    pass
        except Exception as exc:  # noqa: BLE001 - Pillow's errors for a file that is not an image vary
            raise UnreadableImage(path, first_line(exc), advice) from None


def image_files(images, missing_ok=False, arguments=None):
    """`images` (an image file's path, a folder, a PIL image, or a list or tuple of them) as a list,
    a folder's image files (recursively, sorted by path) in its place: those a dataset folder's
    scan reads (coreaug.data.image_folder.images_under: no hidden files or folders, `._name`
    or `__MACOSX/`); `~` in a path is the home folder. Raises UsageError for a path that does not
    exist (kept as a file, which reading then finds gone, where `missing_ok`: --skip-bad-images skips it)
    or a folder that holds no images, and for an empty path (a blank cell of a CSV: skipped where
    `missing_ok`), named by its position in the list, or as the command's `arguments` (IMAGES)."""
    from coreaug.data.image_folder import IMAGE_EXTENSIONS, images_under

    single = isinstance(images, (str, os.PathLike)) or hasattr(images, "convert") or hasattr(images, "read")
    if single:
        images = [images]
    try:
        iter(images)  # a list, or what `for` reads as one (a map-style dataset of paths)
    except TypeError:
        raise UsageError(f"images must be an image file's path, a folder, a PIL image or a list of them, or the "
                         f"images as one uint8 tensor (N, C, S, S); got {type(images).__name__}") from None
    files = []
    for position, image in enumerate(images):
        if isinstance(image, str) and not missing_ok:
            path_given(image, f"{arguments} argument {position + 1}" if arguments else "images" if single else
                       f"images[{position}]", "an image file's or a folder's path")
        if hasattr(image, "convert"):
            files.append(image)
        elif hasattr(image, "read") and not isinstance(image, (str, os.PathLike)):  # a file object, BytesIO
            raise UsageError(f"images holds a file object ({type(image).__name__}); give its path, or the image "
                             "opened: PIL.Image.open(f)")
        elif type(images).__module__ == "numpy" and images.dtype.kind in "uifbc":  # pixels, iterated row by row
            raise UsageError(f"images is a numpy array {images.shape}; give it as a tensor: torch.from_numpy(images) "
                             "(N, C, S, S) uint8, or torch.from_numpy(images).permute(0, 3, 1, 2) for (N, S, S, C)")
        elif not isinstance(image, (str, os.PathLike)):
            raise UsageError(f"a list of images holds a {type(image).__name__}; give paths, folders or PIL images in "
                             "a list, or the images as one uint8 tensor (N, C, S, S)")
        elif os.path.isdir(os.path.expanduser(image)):
            image = os.path.expanduser(image)
            unread = collections.Counter()
            found = sorted(images_under(image, unread))
            if not found:
                raise UsageError(f"folder {image} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            _warn_unread(unread, image)  # a phone's .HEIC among its JPEGs
            files += found
        elif os.path.lexists(os.path.expanduser(image)) or missing_ok:  # a link to a file that is gone: read says so
            files.append(os.path.expanduser(image))
        else:
            raise UsageError(f"image {image} does not exist; give image files or folders of them")
    return files


def load_run(run, model=None, device="cpu"):
    """The model of a finished run folder (`coreaug train --out RUN`) as a `TrainedModel`.

    The model is rebuilt from model.pt: a registered name, or the run's `package.module:function`
    imported again, which runs that module's code, so it is imported only when named as `model`
    (the run's own path, as a string: `load_run(RUN, model="mynets:small")`, for a run you trust);
    a run that trained a module passed to `coreaug.train(config, model=...)` needs that module's
    like passed as `model`, whose weights are then replaced by the run's.
    `device` is what `coreaug train --device` takes: "auto" (CUDA when available), "cpu" or
    "cuda[:N]". Raises ValueError for a folder that holds no run, a run that is not finished, a
    `model` that is neither a module nor an import path (or not the run's), does not fit the
    weights or does not return (B, classes) logits
    (tried on two images), or a device that is not one of those
    or not on this machine; UntrustedModel (a UsageError) for a run of an import path not named.
    """
    run = path_given(run, "run", "a run folder's path")
    if model is not None and not isinstance(model, torch.nn.Module) and not is_import_path(model):
        raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}; pass a module built as the "
                         "run's was, its import path (package.module:function) for a run that trained one, or "
                         "leave it out for a run of a registered model")
    state = read_model_file(run)
    advice = PASS_A_MODEL
    if isinstance(model, str):  # the user names the code to import: it must be what the run trained
        if model.strip() != str(state["model"]):
            recorded = str(state["model"])
            advice = ("pass a module built as the run's was (model=...)" if recorded.startswith(INSTANCE) else
                      "name that one" if is_import_path(recorded) else "leave it out")
            raise UsageError(f"model {model!r} is not the model {run} trained ({recorded!r}); {advice}")
        model = None
    elif model is None and is_import_path(state["model"]) and not str(state["model"]).startswith(INSTANCE):
        raise UntrustedModel(run, state["model"])
    if model is None:
        if str(state["model"]).startswith(INSTANCE):
            raise UsageError(f"{run} trained a model passed to coreaug.train ({state['model'][len(INSTANCE):]}), "
                             "which the run cannot rebuild; pass one like it: coreaug.load_run(RUN, model=...)")
        if ":" not in state["model"] and state["model"].lower() not in available_models():
            raise UsageError(f"{run} trained model {state['model']!r}, a name this process does not know: one "
                             "registered with coreaug.models.register_model is known only in the process that "
                             "registered it; register it again before coreaug.load_run(RUN), or pass a model built "
                             "as the run's was (model=...). coreaug predict and evaluate cannot: for runs they "
                             "use, train with --model package.module:function")
        with torch.random.fork_rng(devices=[]):  # its initial weights, replaced next, draw from a copy of the caller's
            model = create_model(state["model"], state["in_channels"], state["num_classes"])
        if ":" in str(state["model"]):
            advice = _rebuilt_advice(state["model"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise UsageError(f"the model does not fit the weights of {run} ({mismatch_reason(exc)}); {advice}") from None
    older = "data_fingerprint" not in state  # coreaug 0.2 kept it in checkpoint.pt alone
    fingerprint = state.get("data_fingerprint")
    if older and not names_registered_dataset(state["config"].get("dataset")):
        fingerprint = checkpoint_fingerprint(run)
    image_size = state["image_size"]
    if state.get("store_size") and names_registered_dataset(state["config"].get("dataset")):
        image_size = state["store_size"]  # its images keep their own size (0.2 recorded the folder default, 64)
    trained = TrainedModel(model, state["class_names"], image_size, state["in_channels"],
                           state["mean"], state["std"], state["config"], device, state.get("store_size"),
                           fingerprint, channels_last=state.get("channels_last", True), run=os.fspath(run), older=older)
    check_loaded_model(trained, run, advice)
    return trained


class UntrustedModel(UsageError):
    """A run whose model is built by a `package.module:function` that loading it would import and
    run, which was not named: a run folder may come from someone else, and reading one never runs
    code of its own accord. `path`: the import path; `line(name_it)`: the message, `name_it` the way
    to name it (the API's `model=...`, a command's --model)."""

    def __init__(self, run, path):
        self.run, self.path = run, path
        super().__init__(self.line(f"coreaug.load_run(RUN, model={path!r})"))

    def __reduce__(self):  # raised in a process pool's worker, it reaches the caller whole
        return type(self), (self.run, self.path)

    def line(self, name_it):
        return (f"{self.run} trained the model that {self.path} builds: loading it imports module "
                f"{self.path.partition(':')[0]!r} and runs its code, which a run folder (it may come from someone "
                f"else) is never left to do; for a run you trust, name it: {name_it}")


def _rebuilt_advice(path):
    """What to do when the run's `package.module:function`, imported again, builds another model than
    the run's: the file it was imported from named (edited since, or another of the same name found)."""
    module = sys.modules.get(path.partition(":")[0])
    where = getattr(module, "__file__", None) or "its module"
    return (f"{path} (imported from {where}) now builds another model than the run trained: restore that file as "
            "it was, or make the run's own importable (its folder first on PYTHONPATH)")


PASS_A_MODEL = "pass a model built as the run's was"  # what a model that does not fit the run's weights is told


def check_loaded_model(trained, run, advice=PASS_A_MODEL):
    """UsageError unless `trained`'s model maps two (zero) images of the run to floating (2, classes) logits, as
    predict and evaluate need: a module passed to load_run, or a factory edited since the run, may return
    (logits, features) or fail on the run's images; one small forward, as `coreaug.train` tries a model."""
    images = torch.zeros((2, trained.in_channels, trained.image_size, trained.image_size), dtype=torch.uint8,
                         device=trained.device)
    what = f"the model for {run}"
    try:
        with torch.no_grad(), trained.autocast():
            out = trained.model(trained.normalize(images))
    except Exception as error:  # noqa: BLE001 - the user's module: its error, named as theirs
        raise UsageError(f"{what} fails on a batch of the run's images, shape {tuple(images.shape)}: "
                         f"{one_line(error)}; {advice}") from error
    check_model_logits(out, 2, what, len(trained.class_names))


def _training_now(run):
    """Whether a live coreaug process holds the lock of the run folder `run` (it trains there now)."""
    try:
        return folder_in_use(run)
    except OSError:  # a folder that cannot be opened: nothing known, the plain advice stands
        return False


def read_model_file(run):
    """model.pt of the run folder `run`, as a dict; ValueError saying why there is none."""
    run = os.path.expanduser(os.fspath(run))
    path = os.path.join(run, MODEL)
    if not os.path.isdir(run):
        raise UsageError(f"{run} is not a folder; give the folder of a coreaug run (the --out of coreaug train)")
    if not os.path.exists(path):
        if os.path.exists(os.path.join(run, "summary.json")) and os.path.isfile(os.path.join(run, CHECKPOINT)):
            raise UsageError(f"{run} holds a finished run without its {MODEL} (removed?); coreaug train with the "
                             f"run's settings and --resume --out {run} writes it again from {CHECKPOINT}")
        if os.path.exists(os.path.join(run, "summary.json")):
            raise UsageError(f"{run} holds a finished run whose weights are not kept (no {MODEL}: it was restored "
                             f"from an archive, which keeps no models, or {MODEL} was removed); only training it "
                             f"again gives a model: coreaug train ... --overwrite --out {run}")
        if os.path.exists(os.path.join(run, "config.json")) or os.path.exists(os.path.join(run, CHECKPOINT)):
            if _training_now(run):  # --resume would be refused: the folder is in use
                raise UsageError(f"{run} holds a run that is still training ({_progress(run)}; another coreaug "
                                 f"process holds its folder, and it writes {MODEL} when it ends); wait for it to end")
            diverged = _diverged_at(run)
            if diverged:  # a --resume goes on from the epoch before, where the same learning rate diverges again
                raise UsageError(f"{run} holds a run that diverged at epoch {diverged} (its metrics.jsonl marks it; "
                                 f"no {MODEL}); lower --lr and train it again: coreaug train ... --overwrite "
                                 f"--out {run}")
            raise UsageError(f"{run} holds a run that is not finished ({_progress(run)}; no {MODEL} yet); "
                             f"wait for it to end, or continue it with coreaug train ... --resume --out {run}")
        grid = os.path.join(run, "runs")
        runs = sorted(e.name for e in os.scandir(grid) if e.is_dir()) if os.path.isdir(grid) else []
        if runs:
            raise UsageError(f"{run} is a bench grid, not a run; give one of its runs, "
                             f"e.g. {os.path.join(grid, runs[0])}")
        raise UsageError(f"{run} holds no coreaug run (no {MODEL}); give the --out folder of a finished coreaug train")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:  # not damaged: the CLI names the file and the reason
        raise
    except Exception as exc:  # noqa: BLE001 - zip, pickle and EOF errors all mean a damaged file
        again = ("`coreaug train` with the run's settings and --resume writes it again from checkpoint.pt"
                 if os.path.isfile(os.path.join(os.path.dirname(path), "checkpoint.pt")) else "train the run again")
        if "Weights only load failed" in str(exc) and saved_by_torch(path):  # a pickled object: never unpickled
            raise UsageError(f"{path} is not a coreaug model file: {why_unreadable(exc, path)} (it may come from "
                             f"someone else's archive); {again}") from None
        raise UsageError(f"{path} is truncated or corrupt ({first_line(exc)}); {again}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a coreaug model file; give the folder of a coreaug run")
    return state


def _precision(name, device):
    """The precision a run of precision `name` is used at on `device` (see TrainedModel): fp32 for
    a run from before coreaug recorded it, for fp16 on the CPU, and for bf16 on a CPU without bf16
    instructions (both many times slower than fp32 there)."""
    if not name or device.type == "cpu" and (name == "fp16" or name == "bf16" and not cpu_runs_bf16()):
        return "fp32"
    return resolve_precision(name, device)


def all_unreadable(count, what, first):
    """ "the only image is unreadable (first)", "all 3 images are unreadable (the first: first)" """
    if count == 1:
        return f"the only {what} is unreadable ({first})"
    return f"all {count} {what}s are unreadable (the first: {first})"


def _usable_cache_dir(cache_dir):
    """`cache_dir` (a run's recorded cache folder) when it is there and can be written, else None
    (COREAUG_CACHE_DIR's, or the default): a run copied from another machine or user may record a
    folder that is not there or not theirs, and a user who removed it (caches moved to another disk,
    COREAUG_CACHE_DIR pointing there) wants it left gone, as a --resume leaves it."""
    if not cache_dir:
        return None
    root = os.path.abspath(os.path.expanduser(cache_dir))
    return cache_dir if os.path.isdir(root) and os.access(root, os.W_OK | os.X_OK) else None


def _diverged_at(run):
    """The epoch (from 1) at which the run in the folder `run` diverged: its metrics.jsonl's last row is
    marked so (the trainer stops there, keeping the row and not the checkpoint); else None."""
    try:
        with open(os.path.join(run, "metrics.jsonl")) as f:
            rows = [line for line in f if line.strip()]
        row = json.loads(rows[-1]) if rows else {}
    except (OSError, ValueError):
        return None
    return row.get("epoch", len(rows) - 1) + 1 if isinstance(row, dict) and row.get("diverged") is True else None


def _progress(run):
    """'N of M epochs done', from the folder's metrics.jsonl and config.json."""
    done = metrics_rows(run) or 0
    try:
        with open(os.path.join(run, "config.json")) as f:
            return f"{done} of {json.load(f)['epochs']} epochs done"
    except (OSError, ValueError, KeyError):
        return f"{done} epochs done"
