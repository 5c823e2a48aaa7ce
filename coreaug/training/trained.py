"""A finished run's model, ready to use: `model.pt` (written at the end of a run) and `load_run`.

model.pt holds the weights with everything needed to use them: the model's name (or import
path) and arguments, the class names, the image size, the normalisation and the run's
settings. `load_run(RUN)` rebuilds the model from it and reads images as the run's evaluation
did: decoded, shorter side resized to the image size, centre-cropped, normalised.
"""
import dataclasses
import json
import numbers
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

from coreaug.data import is_folder_dataset
from coreaug.errors import UnreadableImage, UsageError, first_line, mismatch_reason
from coreaug.models import create_model

from .config import INSTANCE
from .distributed import pick_device
from .inputs import Normalize
from .run_files import CHECKPOINT, MODEL

FORMAT = "coreaug-model"


def model_file(config, model, data, history):
    """The contents of model.pt for `model` trained by `config` on `data` (RunData)."""
    return {
        "format": FORMAT, "version": 1,
        "model": config.model, "in_channels": data.in_channels, "num_classes": data.num_classes,
        "state_dict": {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()},
        # images are read at store_size (a folder's stored size) and their centre image_size square evaluated
        # (a registered dataset's images keep their own size: config.image_size is a folder's)
        "class_names": list(data.class_names),
        "image_size": int(config.image_size if is_folder_dataset(config.dataset) else data.test_images.shape[-1]),
        "store_size": int(data.test_images.shape[-1]),
        "mean": data.preprocess.mean.flatten().tolist(), "std": data.preprocess.std.flatten().tolist(),
        "config": dataclasses.asdict(config), "epochs": len(history),
        "final_test_accuracy": history[-1]["test_accuracy"] if history else None,
    }


@dataclass
class Prediction:
    """One image's `top_k` classes, most probable first, with their probabilities."""

    image: str
    classes: List[str]
    probabilities: List[float]


@dataclass
class Evaluation:
    """Accuracy of a run's model on a labelled set, overall and per class (name -> (correct, total))."""

    accuracy: float
    correct: int
    total: int
    per_class: Dict[str, Tuple[int, int]]


class TrainedModel:
    """A finished run's model (in eval mode) with its preprocessing and class names.

    `read(image)` decodes a file (or PIL image) as the run's evaluation did, `preprocess` turns
    images (files, PIL images, or uint8 tensors as `read` gives) into the model's normalised
    input, `probabilities` and `predict` run the model, `evaluate` scores a labelled dataset.
    `config` is the run's settings (a dict).
    """

    def __init__(self, model, class_names, image_size, in_channels, mean, std, config, device="cpu", store_size=None):
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.class_names, self.image_size, self.in_channels = list(class_names), image_size, in_channels
        self.store_size = store_size or image_size
        self.mean, self.std, self.config = tuple(mean), tuple(std), config
        self.normalize = Normalize(self.mean, self.std, self.device, crop=image_size)

    def __repr__(self):
        return (f"TrainedModel(model={self.config.get('model')!r}, classes={len(self.class_names)}, "
                f"image_size={self.image_size}, in_channels={self.in_channels})")

    def read(self, image):
        """uint8 (C, H, W) of an image file's path or a PIL image: converted to RGB (or grayscale
        for a one-channel model), shorter side resized to `store_size` (the run's stored size,
        `image_size` unless the run stored larger for resized crops), centre-cropped; `preprocess`
        then takes its centre `image_size` square, as the run's evaluation did.
        Raises UnreadableImage (a UsageError) naming the file when it is not a readable image."""
        from coreaug.data.image_folder import decode_square

        if not hasattr(image, "convert") and not os.path.isfile(image):
            raise FileNotFoundError(f"image {image} does not exist; give the path of an image file")
        try:
            pixels = decode_square(image, self.store_size, "L" if self.in_channels == 1 else "RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImage(image, first_line(exc)) from None
        pixels = torch.from_numpy(pixels.copy())
        return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()

    def preprocess(self, images):
        """The model's input, float (N, C, S, S) on the model's device, of image files, PIL images
        or a uint8 tensor ((N, C, S, S), or (C, S, S) for one): read, then normalised."""
        return self.normalize(self._batch(images).to(self.device))

    def _batch(self, images):
        """uint8 (N, C, H, W) from a uint8 tensor ((C, H, W) for one image) or a list of paths / PIL images."""
        if isinstance(images, torch.Tensor):
            images = images.unsqueeze(0) if images.ndim == 3 else images
            expected = (self.in_channels, self.store_size, self.store_size)
            if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
                raise UsageError(f"images must be uint8 (N, {expected[0]}, {expected[1]}, {expected[2]}) as the run "
                                 f"trained on, got {images.dtype} {tuple(images.shape)}; or give image files")
            return images
        images = image_files(images)
        if not images:
            return torch.zeros((0, self.in_channels, self.store_size, self.store_size), dtype=torch.uint8)
        return torch.stack([self.read(image) for image in images])

    def probabilities(self, images, batch_size=256):
        """Softmax probabilities (N, classes), float32 on the CPU, of images as `_batch` takes them."""
        images = self._batch(images)
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = self.normalize(images[start:start + batch_size].to(self.device))
                out.append(torch.softmax(self.model(batch).float(), dim=1).cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.class_names)))

    def predict(self, images, top_k=1):
        """A `Prediction` per image (file paths, folders of image files, PIL images, or a uint8
        tensor): its `top_k` classes and their probabilities, most probable first; a folder's
        images (recursively, sorted by path) in its place, each named by its path."""
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise UsageError(f"top_k must be an integer >= 1, got {top_k!r}")
        top_k = int(top_k)
        if not isinstance(images, torch.Tensor):
            images = image_files(images)
        names = [str(x) for x in images] if isinstance(images, list) else None
        probabilities = self.probabilities(images)
        values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        names = names or [str(i) for i in range(len(probabilities))]
        return [Prediction(name, [self.class_names[i] for i in row.tolist()], p.tolist())
                for name, row, p in zip(names, indices, values)]

    def evaluate(self, dataset=None, data_dir=None, download=False):
        """An `Evaluation` on the test split of `dataset` (a registered name or a folder of images,
        read as `coreaug train` reads it, with the run's cache folder, workers and skip_bad_images;
        default: the run's own dataset, in the run's `data_dir` unless `data_dir` is given). A
        folder's classes are matched to the run's by name."""
        from coreaug.data import is_folder_dataset, load_dataset
        from coreaug.data.cache_decode import default_workers

        if not dataset or dataset == self.config["dataset"]:  # the run's own: where the run found it
            dataset, data_dir = self.config["dataset"], data_dir or self.config.get("data_dir")
        if is_folder_dataset(dataset):  # decoded where and as the run decoded it
            workers = self.config.get("workers")
            data = load_dataset(dataset, progress=False, image_size=self.image_size, store_size=self.store_size,
                                val_fraction=self.config.get("val_fraction", 0.1),
                                cache_dir=self.config.get("cache_dir"), skip_bad_images=self.config.get("skip_bad_images", False),
                                workers=default_workers() if workers is None else workers)
        else:
            data = load_dataset(dataset, data_dir, download=download, progress=False)
        run_index = torch.tensor([self._class_index(data, label) for label in range(data.num_classes)])
        labels = run_index[data.test_labels]
        predicted = self.probabilities(data.test_images).argmax(1)
        hits = predicted == labels
        per_class = {}
        for index, name in enumerate(self.class_names):
            rows = labels == index
            if rows.any():
                per_class[name] = (int(hits[rows].sum()), int(rows.sum()))
        correct, total = int(hits.sum()), len(labels)
        return Evaluation(correct / total if total else float("nan"), correct, total, per_class)

    def _class_index(self, data, label):
        """The run's class index of `data`'s class `label`, by name where `data` names its classes."""
        if data.class_names is None:
            if data.num_classes != len(self.class_names):
                raise UsageError(f"{data.name} has {data.num_classes} classes, the run's model {len(self.class_names)}; "
                                 "evaluate on a dataset of the run's classes")
            return label
        name = data.class_names[label]
        if name not in self.class_names:
            raise UsageError(f"class {name!r} of {data.source} is not one of the run's classes "
                             f"({', '.join(self.class_names[:10])}); evaluate on a dataset of the run's classes")
        return self.class_names.index(name)


def image_files(images):
    """`images` (an image file's path, a folder, a PIL image, or a list or tuple of them) as a list,
    a folder's image files (recursively, sorted by path) in its place: those a dataset folder's
    scan reads (coreaug.data.image_folder.images_under: no hidden files or folders, `._name`
    or `__MACOSX/`). Raises UsageError for a path that does not exist or a folder that holds no
    images."""
    from coreaug.data.image_folder import IMAGE_EXTENSIONS, images_under

    if isinstance(images, (str, os.PathLike)) or hasattr(images, "convert"):
        images = [images]
    files = []
    for image in images:
        if hasattr(image, "convert"):
            files.append(image)
        elif not isinstance(image, (str, os.PathLike)):
            raise UsageError(f"a list of images holds a {type(image).__name__}; give paths, folders or PIL images in "
                             "a list, or the images as one uint8 tensor (N, C, S, S)")
        elif os.path.isdir(image):
            found = sorted(images_under(image))
            if not found:
                raise UsageError(f"folder {image} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif os.path.exists(image):
            files.append(image)
        else:
            raise UsageError(f"image {image} does not exist; give image files or folders of them")
    return files


def load_run(run, model=None, device="cpu"):
    """The model of a finished run folder (`coreaug train --out RUN`) as a `TrainedModel`.

    The model is rebuilt from model.pt (a registered name, or the run's `package.module:function`
    imported again); a run that trained a module passed to `coreaug.train(config, model=...)`
    needs that module's like passed as `model`, whose weights are then replaced by the run's.
    `device` is what `coreaug train --device` takes: "auto" (CUDA when available), "cpu" or
    "cuda[:N]". Raises ValueError for a folder that holds no run, a run that is not finished, a
    model that does not fit the weights, or a device that is not one of those or not on this machine.
    """
    state = read_model_file(run)
    if model is None:
        if str(state["model"]).startswith(INSTANCE):
            raise UsageError(f"{run} trained a model passed to coreaug.train ({state['model'][len(INSTANCE):]}), "
                             "which the run cannot rebuild; pass one like it: coreaug.load_run(RUN, model=...)")
        model = create_model(state["model"], state["in_channels"], state["num_classes"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise UsageError(f"the model does not fit the weights of {run} "
                         f"({mismatch_reason(exc)}); pass a model built as the run's was") from None
    return TrainedModel(model, state["class_names"], state["image_size"], state["in_channels"],
                        state["mean"], state["std"], state["config"], device, state.get("store_size"))


def read_model_file(run):
    """model.pt of the run folder `run`, as a dict; ValueError saying why there is none."""
    run = os.fspath(run)
    path = os.path.join(run, MODEL)
    if not os.path.isdir(run):
        raise UsageError(f"{run} is not a folder; give the folder of a coreaug run (the --out of coreaug train)")
    if not os.path.exists(path):
        if os.path.exists(os.path.join(run, "config.json")) or os.path.exists(os.path.join(run, CHECKPOINT)):
            raise UsageError(f"{run} holds a run that is not finished ({_progress(run)}; no {MODEL} yet); "
                             f"wait for it to end, or continue it with coreaug train ... --resume --out {run}")
        raise UsageError(f"{run} holds no coreaug run (no {MODEL}); give the --out folder of a finished coreaug train")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and EOF errors all mean a damaged file
        again = ("`coreaug train` with the run's settings and --resume writes it again from checkpoint.pt"
                 if os.path.isfile(os.path.join(os.path.dirname(path), "checkpoint.pt")) else "train the run again")
        raise UsageError(f"{path} is truncated or corrupt ({first_line(exc)}); {again}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a coreaug model file; give the folder of a coreaug run")
    return state


def _progress(run):
    """'N of M epochs done', from the folder's metrics.jsonl and config.json."""
    try:
        with open(os.path.join(run, "metrics.jsonl")) as f:
            done = sum(1 for line in f if line.strip())
    except OSError:
        done = 0
    try:
        with open(os.path.join(run, "config.json")) as f:
            return f"{done} of {json.load(f)['epochs']} epochs done"
    except (OSError, ValueError, KeyError):
        return f"{done} epochs done"
