"""`TrainConfig`: every setting of a training run, with per-dataset defaults."""
import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from coreaug.deprecation import keyword_only
from coreaug.errors import UsageError, not_applicable
from coreaug.models.registry import import_factory, is_import_path
from coreaug.selection.checks import BALANCES, GRADIENT_KINDS, check_choice, check_int, is_number
from coreaug.selection.coreset import DEFAULT_KNN
from coreaug.selection.rules import RULES, check_loss_filter

from .compiled_step import COMPILE_MODES
from .precision import PRECISIONS

SELECTING = tuple(RULES)  # coreset, random, maxloss and the rules beyond the paper (the CLI's choices)
REFERENCE_STRATEGIES = ("full", "none")  # everyone strongly augmented, or no one
STRATEGIES = SELECTING + REFERENCE_STRATEGIES


def strategies():
    """Every strategy the API takes now: the rules registered so far (a user's `register_rule`
    included, which the import-time STRATEGIES of the CLI lack) and the references."""
    return tuple(RULES) + REFERENCE_STRATEGIES


# The default rule, set by the CIFAR-10 grids (docs/evidence.md): at the default 30% a random subset ties
# every rule on clean labels; under 50% label noise no rule beats it beyond one std and the coreset,
# maxloss and infobatch fall below it; and it needs no selection pass. Pass strategy="coreset" for the paper's method.
DEFAULT_STRATEGY = "random"
MODES = ("append", "subset")
SCHEDULES = ("cosine", "multistep")
ESTIMATES = ("clean", "training")
STREAMS = ("auto", "always", "never")
WEAK = ("auto", "pad-crop", "resized-crop")
OPTIMIZERS = ("sgd", "adamw")
# The dataset defaults' lr and weight decay are SGD's; AdamW's usual ones replace them.
OPTIMIZER_DEFAULTS = {"sgd": {}, "adamw": dict(lr=1e-3, weight_decay=0.05)}
# config.model of a module passed to train(config, model=...): "instance:" and its class.
INSTANCE = "instance:"
NORMS = ("imagenet", "dataset", "pretrained")
# Fields checked for their kind before anything else (TrainConfig._check_types).
BOOLEANS = ("download", "weight_augmented", "nesterov", "flip", "skip_bad_images", "norm_decay", "compile", "sync_bn",
            "resume", "overwrite", "quiet", "tensorboard")
PATHS = ("dataset", "data_dir", "cache_dir", "pretrained", "out")
NAMES = ("model", "strategy", "mode", "augment", "gradients", "estimates", "balance", "optimizer", "schedule", "stream",
         "weak", "norm", "device", "precision", "compile_mode")
# The most each of these integers takes: past them a run would allocate candidates x batch images, copies x
# the selection, a batch of more images than any dataset, or overflow torch's 64-bit seed (2**64 - 1).
UPPER_BOUNDS = {"batch_size": 2 ** 20, "copies": 64, "candidates": 64, "seed": 2 ** 64 - 1}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's weights expect these

# Common practice for each dataset (He et al. 2016 for the CIFAR ResNets; the paper trains
# 200 epochs). flip is off where a mirrored image is another class or not an image of one.
DATASET_DEFAULTS = {
    "cifar10": dict(model="resnet20", epochs=200, batch_size=128, lr=0.1, weight_decay=5e-4, flip=True),
    "cifar100": dict(model="resnet20", epochs=200, batch_size=128, lr=0.1, weight_decay=5e-4, flip=True),
    "svhn": dict(model="resnet20", epochs=100, batch_size=128, lr=0.05, weight_decay=5e-4, flip=False),
    "fashion-mnist": dict(model="cnn", epochs=15, batch_size=128, lr=0.05, weight_decay=5e-4, flip=True),
    "mnist": dict(model="cnn", epochs=10, batch_size=128, lr=0.05, weight_decay=5e-4, flip=False),
    "digits": dict(model="cnn", epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4, flip=False),
    "synthetic": dict(model="cnn", epochs=5, batch_size=64, lr=0.05, weight_decay=5e-4, flip=True),
    "synthetic-cifar": dict(model="resnet20", epochs=200, batch_size=128, lr=0.1, weight_decay=5e-4, flip=True),
}
FALLBACK_DEFAULTS = dict(model="resnet20", epochs=100, batch_size=128, lr=0.1, weight_decay=5e-4, flip=True)
# The built-in datasets' image sizes (synthetic at its loader's default size), which their runs record
# as image_size. A dataset registered by the user has no entry: its size is known once it is loaded.
IMAGE_SIZES = {"cifar10": 32, "cifar100": 32, "svhn": 32, "fashion-mnist": 28, "mnist": 28, "digits": 8,
               "synthetic": 32, "synthetic-cifar": 32}


@keyword_only(positional=1)
@dataclass
class TrainConfig:
    """One training run. Fields left as None take the dataset's default (DATASET_DEFAULTS). Every
    field but `dataset` is given by keyword.

    dataset, data_dir, download: a registered dataset's name (coreaug.available_datasets()) or a
        folder of images; the folder holding a registered dataset's files (None: searched in
        `$COREAUG_DATA`, `~/.cache/coreaug`, `/usr/share/datasets/<name>`), and whether missing files
        are downloaded (checksummed).
    strategy: which examples get strong augmentation: "random" (the default, DEFAULT_STRATEGY),
        "coreset" (the paper), "maxloss" (highest current loss), a rule beyond the paper (see
        coreaug.selection.rules), "full" (everyone) or "none" (no one).
    mode: "append" trains all examples weakly augmented plus `copies` strongly augmented
        copies of the selection each epoch; "subset" trains the weighted selection plus its copies.
    subset: the selection's fraction of the training set, in (0, 1].
    select_every: re-select every R epochs (at epochs 0, R, 2R, ...).
    augment: strong augmentation policy name (see coreaug.augment.available_policies());
        "maxloss" uses `candidates` candidates per example.
    copies: strongly augmented copies per selected example, each epoch.
    weight_augmented: give the augmented copies the coreset weights (else weight 1).
    gradients, knn, balance: what the coreset selects on ("logits": softmax - onehot, or
        "last_layer": its product with the last nn.Linear's input), facility location's
        neighbours per example (20, DEFAULT_KNN), and the per-class budgets ("equal", as the paper, or
        "proportional").
    estimates: "clean" computes gradient estimates (or max-loss losses) with an extra eval-mode
        pass over the clean training set, as in the paper; "training" reuses the logits of the
        previous epoch's training passes over the (weakly augmented) originals, which costs
        nothing (append mode, logit gradients; the first selection is a clean pass, or, after a
        selection warm-up, reads the warm-up's last epoch).
    loss_filter: the loss-filtered coresets' share of each class's highest losses cut before
        facility location (None: estimated per class; coreset-lowloss: the examples the model
        rates below chance, coreset-history and coreset-heldout: the high group of a two-group split
        of the mean losses).
    epochs, batch_size, lr, momentum, nesterov, weight_decay: the run's length, the global batch
        (split over the processes under torchrun) and the optimizer's settings.
    schedule, milestones, warmup_epochs: the learning rate's schedule: "cosine" (to 0 at the
        end) or "multistep" (divided by 10 at each milestone, fractions of the run), after a
        linear warm-up of `warmup_epochs` (coreaug.training.schedule.learning_rate).
    label_smoothing: of the cross-entropy. label_noise: the share of training labels flipped
        to another class, drawn by `seed` (for experiments on noisy labels).
    flip: whether the pad-crop weak augmentation flips images (None: the dataset's default).
    seed: seeds the model's initialisation, the selections, plans and augmentation draws
        (an integer in [0, 2**64)). Selections, plans and augmentations read the whole seed; the
        initialisation, dropout on the CPU and label_noise draw from torch's CPU generator, which
        keeps a seed's low 32 bits, so seeds 2**32 apart share those (below 2**32: one seed, one run).
    device: "auto" (CUDA when available), "cpu" or "cuda[:N]".
    quiet: no progress bars or messages.
    eval_every: evaluate on the test set after every N-th epoch and after the last (epochs
        between carry no test figures: None in the history).
    selection_warmup: epochs before the first model-based selection (random selections of the
        same budget until then); None takes the rule's own share (crust: 20% of the epochs, else 0),
        at most the epoch of the run's last selection (default_selection_warmup); a rule that reads
        the model refuses a value past that epoch.
    train_limit, test_limit: use a fixed random sample of this many examples (for quick runs).
    image_size, val_fraction, skip_bad_images: for a `dataset` that is a folder of images
        (coreaug.data.image_folder): the square size images are resized and cropped to
        (None: the images' own size when they share one, else 64; resolved() fills it in; a
        built-in dataset's images keep their own size, IMAGE_SIZES, which it records and which is
        the one size it accepts; one registered by the user records None and accepts none), the
        share of each class held out when the folder has no val/ or test/ split, and whether
        unreadable images are left out (counted) rather than an error.
    gradient_dim: gradient estimates wider than this are randomly projected to at most this
        many numbers per example (coreaug.selection.gradients.GradientSketch): last-layer gradients
        always, logit gradients past `gradient_dim` classes.
    stream: for a folder dataset, "never" holds the decoded images in memory (on the device),
        "always" reads each batch from the decoded cache on disk, ahead of the step, and copies
        it to the device; "auto" streams when the decoded images would take more than half the
        free host memory (or of what the process's cgroup limit leaves, in a container or a
        Slurm job; one copy per process of the node under torchrun, and every process streams
        if one node lacks it) or of the free GPU memory.
    cache_dir, workers: where a folder's images are decoded to (coreaug.data.image_cache;
        default `$COREAUG_CACHE_DIR`, else `$XDG_CACHE_HOME/coreaug/decoded`, else
        `~/.cache/coreaug/decoded`) and by how many worker processes (default: up to 8).
    weak: the weak augmentation every example gets: "pad-crop" (4-pixel pad-and-crop, then a
        flip unless `flip` is off), "resized-crop" (random-resized crop and flip, for large
        images), or "auto": resized-crop for folder datasets of 128 px and more, else pad-crop.
    model: a registered name (coreaug.available_models()), or "package.module:function", your
        own factory called as function(in_channels, num_classes); a module passed to
        train(config, model=...) is recorded as "instance:" and its class.
    optimizer: "sgd" (momentum, Nesterov) or "adamw" (with `betas`; its lr and weight decay
        default to 1e-3 and 0.05); both skip weight decay on 1-D parameters without `norm_decay`.
    tensorboard: also write each epoch's metrics as TensorBoard scalars to `out`/tensorboard
        (needs the tensorboard package: pip install 'coreaug[tensorboard]').
    store_size: a folder's images are stored at this size and cropped to `image_size`: random-
        resized crops cut from the whole stored image, evaluation and the clean estimate pass
        take its centre `image_size` square (None: image_size * 256/224, rounded, when the weak
        augmentation is resized-crop, as ImageNet's resize-to-256, crop-224; else image_size;
        coreaug.data.image_folder.default_store_size). Larger needs weak "resized-crop".
    pretrained: a local state dict file (coreaug.models.load_pretrained) the model starts from;
        a classifier of another class count is left freshly initialised.
    norm: the mean and std that normalise the model's input: "imagenet" (0.485, 0.456, 0.406 /
        0.229, 0.224, 0.225, what torchvision's weights were trained with; RGB only) or
        "dataset" (the training set's own) or "pretrained" (what the `pretrained` file records: a
        coreaug model.pt's); None: "imagenet" with `pretrained`, else "dataset".
    norm_decay: apply weight decay to normalisation weights and biases too (off is the
        usual fine-tuning choice).
    precision: "auto" (bf16 on a GPU that has it, fp16 with a gradient scaler on older GPUs,
        fp32 on the CPU), "bf16", "fp16" or "fp32": the autocast of training and no-grad passes.
    compile: compile the whole training step (augmentation, forward, loss, update; fixed shapes,
        see coreaug.training.compiled_step; graphs built in the first epoch, reused after; CUDA
        graphs on a GPU, those skipped warned about and counted per epoch, "cudagraph_skips");
        max-loss augmentation scored inside it; refuses crust and augment_steps. Under torchrun
        too (each process its share of every batch; with sync_bn: the model only).
    compile_mode: torch.compile's mode for the step with `compile`: "auto" ("reduce-overhead",
        CUDA graphs, on a GPU; torch's default elsewhere), "default", "reduce-overhead",
        "max-autotune" or "max-autotune-no-cudagraphs" (e.g. "default" on a GPU: compiled
        kernels launched one by one, without CUDA graphs' memory pool).
    augment_steps: how many steps' batches one weak and one strong augmentation call take (the
        same augmented images, each example drawing from its own key, in fewer calls; on a GPU a
        RandAugment call costs about the same for 64 images as for 2,048). None: 8 in an eager run
        on a GPU for images stored at most 64 px wide, else 1. Always 1 for max-loss transforms and
        crust; a compiled step augments its own batch.
    sync_bn: under torchrun on GPUs, BatchNorm statistics over the global batch (SyncBatchNorm)
        instead of each process's own share.
    out, resume, overwrite: the run's folder (config.json, metrics.jsonl, summary.json,
        checkpoint.pt; a leading "~" is the home folder); `resume` continues the run there from
        its checkpoint; a folder that holds a run's results is refused unless `resume`, or
        `overwrite`, which starts the run again (deleting them, and replacing a run of another
        config).
    """

    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    download: bool = False
    model: Optional[str] = None
    strategy: str = DEFAULT_STRATEGY
    mode: str = "append"
    subset: float = 0.3
    select_every: int = 1
    augment: str = "randaugment"
    candidates: int = 4
    copies: int = 1
    weight_augmented: bool = False
    gradients: str = "logits"
    estimates: str = "clean"
    knn: int = DEFAULT_KNN
    balance: str = "equal"
    selection_warmup: Optional[int] = None
    loss_filter: Optional[float] = None
    epochs: Optional[int] = None
    eval_every: int = 1
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: Optional[float] = None
    schedule: str = "cosine"
    milestones: Tuple[float, ...] = (0.5, 0.75)
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    label_noise: float = 0.0
    flip: Optional[bool] = None
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    image_size: Optional[int] = None
    val_fraction: float = 0.1
    skip_bad_images: bool = False
    stream: str = "auto"
    cache_dir: Optional[str] = None
    workers: Optional[int] = None
    weak: str = "auto"
    store_size: Optional[int] = None
    gradient_dim: int = 512
    pretrained: Optional[str] = None
    norm: Optional[str] = None
    norm_decay: bool = True
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    compile_mode: str = "auto"
    augment_steps: Optional[int] = None
    sync_bn: bool = False
    seed: int = 0
    out: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    tensorboard: bool = False

    def __post_init__(self):
        # numpy scalars (seeds from np.arange, values read from a DataFrame) and 0-d tensors (a
        # torch.logspace sweep's) as Python's own numbers: torch's generators and config.json's writer refuse them
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if _plain(value) is not value:
                setattr(self, field.name, _plain(value))
            elif isinstance(value, (list, tuple)) and any(_plain(v) is not v for v in value):  # betas, milestones
                setattr(self, field.name, type(value)(_plain(v) for v in value))
            elif field.name in ("betas", "milestones") and isinstance(value, (torch.Tensor, np.ndarray)) \
                    and value.ndim == 1:  # their values, a float32 one by its shortest digits (not .tolist()'s)
                setattr(self, field.name, tuple(_plain(v) for v in value))
            elif isinstance(value, numbers.Real) and not isinstance(value, (int, float)):  # a Fraction: a float
                setattr(self, field.name, float(value))  # (config.json could not hold it)
        if type(self.device).__module__ == "torch":  # a torch.device: its name, as summary.json records it
            self.device = str(self.device)
        # out is a path from here on (the run folder, TrainResult.out): "~/runs/x" means the home
        # folder's, as --dataset's "~" does, not a folder named "~" in the working folder.
        if isinstance(self.out, (str, os.PathLike)) and str(os.fspath(self.out)).startswith("~"):
            self.out = os.path.expanduser(os.fspath(self.out))

    def resolved(self):
        """A copy with the dataset's defaults filled in and every field validated."""
        self._check_types()  # before the defaults are looked up by dataset and milestones made a tuple
        name = self.dataset
        if not _folder(name) and _registered(name):  # "Digits" takes digits' defaults, as it is recorded as digits
            from coreaug.data.registry import registered_name

            name = registered_name(name)
        defaults = {**DATASET_DEFAULTS.get(name, FALLBACK_DEFAULTS), **OPTIMIZER_DEFAULTS.get(self.optimizer, {})}
        filled = {k: v if v is not None or k not in defaults else defaults[k]
                  for k, v in dataclasses.asdict(self).items()}
        filled["milestones"] = tuple(filled["milestones"])
        # policy names are case-insensitive, as create_policy takes them: recorded as listed ("RandAugment" ->
        # "randaugment"), so that the run's checks ("maxloss" in augment) and its identity read one spelling
        filled["augment"] = "+".join(part.strip().lower() for part in filled["augment"].split("+"))
        if _folder(self.dataset):  # one folder, one name: from any working folder, typed any way
            filled["dataset"] = os.path.realpath(os.path.expanduser(os.fspath(self.dataset)))
        elif _registered(self.dataset):  # one name, as registered: "Digits" is "digits"
            filled["dataset"] = name
        # A folder dataset's cache folder: the one this run uses (COREAUG_CACHE_DIR's or the default when not
        # given), so that evaluate, from anywhere and without that variable, reads the same cache.
        if filled["cache_dir"] is None and _folder(self.dataset):
            from coreaug.data.image_cache import default_cache_dir

            filled["cache_dir"] = default_cache_dir()
        for name in ("data_dir", "pretrained", "cache_dir"):  # paths, likewise (evaluate reads them from elsewhere)
            if filled[name] is not None and not str(os.fspath(filled[name])).strip():  # not the working folder
                raise UsageError(f"{name} is empty; give a {'file' if name == 'pretrained' else 'folder'}, or "
                                 "leave it out for its default")
            if filled[name] is not None:
                filled[name] = os.path.realpath(os.path.expanduser(os.fspath(filled[name])))
        if filled["out"] is not None:  # a pathlib.Path as given (relative stays relative), as the files record it
            filled["out"] = os.fspath(filled["out"])
        if filled["image_size"] is None and _folder(self.dataset):
            from coreaug.data.image_folder import DEFAULT_IMAGE_SIZE, own_image_size

            # a resume keeps the size its run recorded: the default's rule may have changed since
            recorded = _recorded_image_size(self.out) if self.resume else None
            filled["image_size"] = recorded or own_image_size(self.dataset) or DEFAULT_IMAGE_SIZE
        elif filled["image_size"] is None:  # a registered dataset's own size (None: one registered by the user)
            filled["image_size"] = _own_size(self.dataset)
        filled["betas"] = tuple(filled["betas"]) if isinstance(filled["betas"], (list, tuple)) else filled["betas"]
        if filled["store_size"] is None:
            from coreaug.data.image_folder import default_store_size

            filled["store_size"] = default_store_size(filled["image_size"], weak_is_resized_crop(
                filled["dataset"], filled["weak"], filled["image_size"]) and _folder(filled["dataset"]))
        if filled["norm"] is None:
            filled["norm"] = "imagenet" if filled["pretrained"] else "dataset"
        if isinstance(filled["model"], str) and filled["model"].lower() in _models():
            filled["model"] = filled["model"].lower()  # "CNN", "MyNet" as create_model takes them, recorded as listed
        config = TrainConfig(**filled)
        config._validate()
        return config

    def _check_folder_settings(self):
        """image_size and store_size size a folder's images; a registered dataset's keep their own
        size, the one value let through (resolved() fills it in; None for a dataset the user registered).
        val_fraction and skip_bad_images apply to a folder only; data_dir and download to a built-in dataset."""
        if _folder(self.dataset):
            given = [name for name in ("data_dir", "download") if getattr(self, name)]
            if given:  # ignored before, and the data_dir recorded where nothing was read
                from coreaug.data.registry import read_in_place_error

                raise read_in_place_error(self.dataset, given)
            refuse_own_split_fraction(self.dataset, self.val_fraction)  # ignored before, and bound its --resume
            return
        from coreaug.data.registry import reads_no_files, reads_no_files_error

        given = [name for name in ("data_dir", "download") if getattr(self, name)]
        if given and reads_no_files(self.dataset):  # ignored before, and the data_dir recorded where nothing was read
            raise reads_no_files_error(self.dataset, given)
        if self.data_dir is not None and not self.download:  # download: the files are asked for there
            from coreaug.data.image_folder import images_not_files_of

            if images_not_files_of(self.data_dir, self.dataset):
                default = " (the default dataset)" \
                    if self.dataset == TrainConfig.__dataclass_fields__["dataset"].default else ""
                raise UsageError(f"data_dir {self.data_dir} holds class folders of images, not the files of "
                                 f"{self.dataset}{default}: to train on those images, pass the folder as the dataset "
                                 f"(--dataset {self.data_dir}) and leave data_dir out")
        own = _own_size(self.dataset)
        for name in ("image_size", "store_size"):
            value = getattr(self, name)
            if value is not None and value != own:
                size = f"are {own} px, so pass {own} or leave {name} out" if own else f"keep their own size, so " \
                    f"leave {name} out"
                raise UsageError(f"{name} sizes the images of a folder dataset; {self.dataset}'s images {size} "
                                 f"(got {value!r})")
        default = TrainConfig.__dataclass_fields__["val_fraction"].default
        if self.val_fraction != default or self.skip_bad_images:  # silently ignored before
            flag = "val_fraction" if self.val_fraction != default else "skip_bad_images"
            raise UsageError(f"{flag} applies to a folder of images; {self.dataset} is a built-in dataset with its own "
                             f"test split, loaded as it is: leave {flag} out")
        given = [name for name in ("workers", "cache_dir") if getattr(self, name) is not None]
        if given:  # nothing is decoded: silently ignored before
            raise not_applicable(given, "a folder of images, decoded into a cache",
                                 f"{self.dataset} is a built-in dataset, loaded as it is")

    def check_pretrained_file(self) -> None:
        """FileNotFoundError when ``pretrained`` names no file; UsageError when its first bytes are not
        torch.save's (an empty file, a PNG): known before a folder dataset is decoded."""
        if self.pretrained is None:
            return
        path = os.path.expanduser(str(self.pretrained))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained weights {self.pretrained} do not exist; give the path of a "
                                    "state dict saved with torch.save (nothing is downloaded)")
        from coreaug.models.pretrained import not_torch_saved, unreadable_checkpoint

        foreign = not_torch_saved(path)
        if foreign:
            raise unreadable_checkpoint(path, foreign)

    def identity(self):
        """The fields that define what a run computes (not where, how fast or how verbosely): a
        run may go on on another device, compiled or not, with another `augment_steps` (K steps'
        batches augmented in one call are the same images). `eval_every` is kept (the run's record
        says which epochs it evaluated) but not compared (run_files.MEASURED_ONLY)."""
        skip = {"out", "resume", "overwrite", "quiet", "tensorboard", "data_dir", "download", "device", "compile",
                "compile_mode", "stream", "cache_dir", "workers", "augment_steps"}
        # Runs from before store_size and norm existed computed what these values compute now.
        if self.store_size == self.image_size:
            skip.add("store_size")
        if self.norm == "dataset":
            skip.add("norm")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def _check_selection_warmup(self):
        """UsageError for a selection_warmup that leaves a model-based rule no selection of its own (every
        selection random: a 'coreset' run that is a random one), as warmup_epochs >= epochs is refused.
        The default (None) never does: default_selection_warmup stops at the last selection."""
        check_selection_warmup(self.strategy, self.selection_warmup, self.epochs, self.select_every)

    def _check_types(self):
        """UsageError for a field of the wrong kind: a yes/no field that is not True or False
        (overwrite="False" would delete a finished run), a path or name that is not a string, an
        array or tensor (a sweep's `torch.logspace` value) where numbers go."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (torch.Tensor, np.ndarray)):  # (numpy's scalars are numbers, and taken)
                kind = "tensor" if isinstance(value, torch.Tensor) else "numpy array"
                if value.ndim == 0:
                    give = "its number: .item()"
                elif field.name in ("betas", "milestones"):
                    give = "one row of numbers (a 1-d array), or a list of them"
                else:  # lr=torch.logspace(...)[1:2]: .tolist() would give a list, refused too
                    count = value.numel() if isinstance(value, torch.Tensor) else value.size
                    give = "its one number: .item()" if count == 1 else "one number"
                    kind = f"{kind} of {count} values" if count != 1 else f"{kind} of one value"
                raise UsageError(f"{field.name} is a {kind}, {value!r}; give {give}")
        for name in BOOLEANS:
            value = getattr(self, name)
            if not isinstance(value, bool) and not (value is None and name == "flip"):
                raise UsageError(f"{name} must be True or False{' or None' if name == 'flip' else ''}, got {value!r}")
        for name in PATHS:
            value = getattr(self, name)
            if not (value is None and name != "dataset") and not isinstance(value, (str, os.PathLike)):
                raise UsageError(f"{name} must be a path (a string){'' if name == 'dataset' else ' or None'}, "
                                 f"got {value!r}")
        for name in NAMES:
            value = getattr(self, name)
            if not (value is None and name in ("model", "norm")) and not isinstance(value, str):
                raise UsageError(f"{name} must be a name (a string), got {value!r}")
        if not isinstance(self.milestones, (list, tuple)):
            raise UsageError(f"milestones must be a list of fractions of training in (0, 1), got {self.milestones!r}")

    def validate(self):
        """Raise UsageError naming the first bad field and what it accepts: the checks `train` makes
        before it reads any data, on this config with its dataset's defaults filled in (resolved())."""
        self.resolved()

    def _validate(self):
        """validate() of a resolved config."""
        from coreaug.augment import available_policies
        from coreaug.data import available_datasets
        from coreaug.data.registry import check_folder_exists
        from coreaug.models import available_models

        self._check_types()
        if not _folder(self.dataset):
            check_folder_exists(self.dataset)  # a path that names no folder: FileNotFoundError, not "unknown dataset"
            if not _registered(self.dataset):  # any case, _ or - ("Fashion_MNIST")
                check_choice(self.dataset, "dataset", available_datasets(), unknown=True)
        self._check_folder_settings()
        check_int(self.image_size, "image_size", 4, optional=not _folder(self.dataset))
        if not is_number(self.val_fraction) or not 0 < self.val_fraction < 1:
            raise UsageError(f"val_fraction must be a fraction in (0, 1), got {self.val_fraction!r}")
        if str(self.model).startswith(INSTANCE):
            pass  # the module passed to train (checked there)
        elif is_import_path(self.model):
            import_factory(self.model)
        else:
            _check_registered(self.model, "model", available_models())
        check_choice(self.optimizer, "optimizer", OPTIMIZERS, unknown=True)
        if (not isinstance(self.betas, tuple) or len(self.betas) != 2
                or not all(is_number(b) and 0 <= b < 1 for b in self.betas)):
            raise UsageError(f"betas must be two numbers in [0, 1) like 0.9,0.999, got {self.betas!r}")
        if self.out is not None and not str(os.fspath(self.out)).strip():  # it trained and kept nothing
            raise UsageError("out is empty; give the run's folder, or leave it out (--out) for runs/<name>")
        if self.tensorboard:
            _check_tensorboard(self.out)
        _check_registered(self.strategy, "strategy", strategies())
        check_choice(self.mode, "mode", MODES, unknown=True)
        check_choice(self.schedule, "schedule", SCHEDULES, unknown=True)
        check_choice(self.gradients, "gradients", GRADIENT_KINDS, unknown=True)
        check_choice(self.estimates, "estimates", ESTIMATES, unknown=True)
        if self.estimates == "training" and (self.mode != "append" or self.gradients != "logits"):
            raise UsageError("estimates 'training' needs mode 'append' (every example is trained each epoch) "
                             f"and gradients 'logits', got mode {self.mode!r} and gradients {self.gradients!r}")
        check_choice(self.balance, "balance", BALANCES, unknown=True)
        check_choice(self.stream, "stream", STREAMS, unknown=True)
        check_choice(self.weak, "weak", WEAK, unknown=True)
        check_choice(self.norm, "norm", NORMS, unknown=True)
        if self.norm == "pretrained" and self.pretrained is None:
            raise UsageError("norm 'pretrained' reads the mean and std the pretrained file records: give pretrained "
                             "(--pretrained FILE), or norm 'imagenet' or 'dataset'")
        if self.store_size != self.image_size:
            if isinstance(self.store_size, bool) or not isinstance(self.store_size, numbers.Integral) \
                    or self.store_size < self.image_size:
                raise UsageError(f"store_size must be an integer >= image_size ({self.image_size}), "
                                 f"got {self.store_size!r}")
            if not _folder(self.dataset):
                raise UsageError(f"store_size is for a folder of images; {self.dataset!r} is a built-in dataset")
            if not weak_is_resized_crop(self.dataset, self.weak, self.image_size):
                raise UsageError(f"store_size {self.store_size} > image_size {self.image_size} needs the resized-crop "
                                 "weak augmentation (pad-crop trains on the stored images as they are); pass "
                                 "--weak resized-crop, or leave --store-size out")
        if self.stream == "always" and not _folder(self.dataset):
            raise UsageError(f"stream 'always' reads a folder of images from disk; {self.dataset!r} is a built-in "
                             "dataset, which is held in memory")
        if self.stream == "always" and mixes_partners(self.strategy):  # (known before the folder is decoded)
            raise streamed_mixup_error(self.strategy)
        check_int(self.workers, "workers", 0, optional=True)
        if not self.resume:  # a resumed run's checkpoint holds every weight: its file is read only when it starts
            self.check_pretrained_file()
        check_choice(self.precision, "precision", PRECISIONS, unknown=True)
        check_choice(self.compile_mode, "compile_mode", COMPILE_MODES, unknown=True)
        if self.compile_mode != "auto" and not self.compile:
            raise UsageError(f"compile_mode {self.compile_mode!r} applies to a compiled step; add compile (--compile) "
                             "or leave compile_mode out")
        for part in self.augment.split("+"):
            if not part.strip():
                raise UsageError(f"augment {self.augment!r} has an empty part; chain policies with '+' between "
                                 "names, as randaugment+cutout")
            _check_registered(part.strip(), "augment", available_policies())
        if not is_number(self.subset) or not 0 < self.subset <= 1:
            raise UsageError(f"subset must be a fraction in (0, 1], got {self.subset!r}")
        for name in ("select_every", "eval_every", "epochs", "batch_size", "copies", "candidates", "knn", "gradient_dim"):
            check_int(getattr(self, name), name)
        for name in ("train_limit", "test_limit"):
            check_int(getattr(self, name), name, optional=True)
        check_int(self.seed, "seed", 0)
        for name, high in UPPER_BOUNDS.items():  # sizes of tensors and plans: a typo, not a run, past these
            if getattr(self, name) > high:
                low = int(name != "seed")
                raise UsageError(f"{name} must be an integer in [{low}, {high}], got {getattr(self, name)!r}")
        # momentum 1 never forgets a gradient, label smoothing 1 trains on uniform targets: open above
        for name, low, high, closed in (("lr", 0, math.inf, True), ("weight_decay", 0, math.inf, True),
                                        ("momentum", 0, 1, False), ("label_smoothing", 0, 1, False),
                                        ("label_noise", 0, 1, True), ("warmup_epochs", 0, math.inf, True)):
            value = getattr(self, name)
            if not is_number(value) or not low <= value <= high or (value == high and not closed) \
                    or (name == "lr" and value == 0):
                if high == math.inf:
                    what = "a finite number > 0" if name == "lr" else f"a finite number >= {low}"
                else:
                    what = f"a number in [{low}, {high}{']' if closed else ')'}"
                raise UsageError(f"{name} must be {what}, got {value!r}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise UsageError("nesterov=True needs a momentum above 0, got momentum=0; set nesterov=False for plain "
                             "SGD, or a momentum such as 0.9")
        check_int(self.selection_warmup, "selection_warmup", 0, optional=True, unit="epochs")
        self._check_selection_warmup()
        check_int(self.augment_steps, "augment_steps", optional=True, unit="steps")
        check_loss_filter(self.strategy, self.loss_filter)
        if self.warmup_epochs >= self.epochs:
            raise UsageError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs})")
        if not all(is_number(m) and 0 < m < 1 for m in self.milestones):
            raise UsageError(f"milestones must be fractions of training in (0, 1), got {self.milestones!r}")
        if list(self.milestones) != sorted(set(self.milestones)):  # 0.5,0.5 divided the rate twice at once
            raise UsageError(f"milestones must be increasing fractions, each once, got {self.milestones!r}")
        if self.schedule == "multistep" and not self.milestones:
            raise UsageError("schedule 'multistep' divides the learning rate at its milestones and none were given; "
                             "pass milestones (--milestones), fractions of training in (0, 1) such as 0.5,0.75, or "
                             "schedule 'cosine'")
        early = [float(m) for m in self.milestones if m * self.epochs <= self.warmup_epochs]
        if self.schedule == "multistep" and early:  # the warm-up ramps past it to the full rate, then drops 10x
            raise UsageError(f"milestone {early[0]:g} (epoch {early[0] * self.epochs:g} of {self.epochs}) falls "
                             f"within the learning-rate warm-up (warmup_epochs {self.warmup_epochs:g}), which ignores "
                             f"it: give milestones above {self.warmup_epochs / self.epochs:g} (--milestones), or "
                             "fewer warmup_epochs (--warmup-epochs)")
        if self.resume and self.overwrite:
            raise UsageError("resume (--resume) continues the run in out (--out) and overwrite (--overwrite) starts it "
                             "again: pass one of them")
        if self.resume and self.out is None:  # (it would train a new run that nothing keeps)
            raise UsageError("resume continues the run in out; give out (--out), the folder of the run to continue")
        from .distributed import DEVICE_NAME  # the names pick_device takes

        if self.device != "auto" and not DEVICE_NAME.fullmatch(str(self.device)):
            raise UsageError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")


def last_selection(epochs, select_every):
    """The epoch of a run's last selection: selections are at epochs 0, R, 2R, ... below `epochs`."""
    return (epochs - 1) // select_every * select_every


def check_selection_warmup(strategy, selection_warmup, epochs, select_every):
    """UsageError for a `selection_warmup` past the last selection of `epochs` (every `select_every`) of a rule
    that reads the model: it would never select by the model. None (the default) passes."""
    rule = RULES.get(strategy)
    if selection_warmup is None or rule is None or not rule.needs:
        return
    last = last_selection(epochs, select_every)
    if selection_warmup > last:
        raise UsageError(f"selection_warmup ({selection_warmup}) must be at most {last}, the epoch of the "
                         f"run's last selection (epochs {epochs}, select_every {select_every}): after it "
                         f"{strategy!r} would never select by the model, every selection random")


def default_selection_warmup(strategy, epochs, select_every=1):
    """The warm-up a run takes when selection_warmup is None: the rule's own share of `epochs`
    (`Rule.warmup_share`, rounded: crust's 20%; 0 for the others, full and none), cut to the epoch of
    the run's last selection, which the rule then makes by the model (crust over 5 epochs selecting
    every 5: 0, not 1, which would leave its one selection random)."""
    rule = RULES.get(strategy)
    share = rule.warmup_share if rule is not None else 0.0
    return min(int(round(share * epochs)), last_selection(epochs, select_every))


def unused_options(settings):
    """{field: (what it applies to, what this run has instead)} for the fields of `settings` (a resolved
    TrainConfig, or its dict) that another of its options makes unused: candidates without maxloss
    augmentation, augment_steps with it (always 1 step a call), betas with SGD, momentum and nesterov with
    AdamW, milestones with the cosine schedule.
    `coreaug train` refuses them when given on its command line, as compile_mode without compile; the
    API lets them be, since a sweep shares one base config across options."""
    get = settings.get if isinstance(settings, dict) else lambda name: getattr(settings, name)
    unused = {}
    if "maxloss" not in str(get("augment")).split("+"):
        unused["candidates"] = ("augment 'maxloss'", f"augment {get('augment')!r}")
    else:  # scored with the model as it is at each step: one step's batch a call
        unused["augment_steps"] = ("augmentation that does not score with the model", f"augment {get('augment')!r}")
    if get("optimizer") == "sgd":
        unused["betas"] = ("optimizer 'adamw'", "optimizer 'sgd'")
    else:
        unused.update(dict.fromkeys(("momentum", "nesterov"), ("optimizer 'sgd'", f"optimizer {get('optimizer')!r}")))
    if get("schedule") == "cosine":
        unused["milestones"] = ("schedule 'multistep'", "schedule 'cosine'")
    return unused


def _plain(value):
    """A numpy scalar or 0-d tensor as Python's number (a float32 one by its shortest digits, 0.05 rather
    than 0.05000000074505806, as typed and as a --resume types it again); anything else as it is."""
    if type(value).__module__.split(".")[0] not in ("numpy", "torch") or getattr(value, "ndim", None) != 0:
        return value
    number = value.item()
    narrow = value.dtype.is_floating_point and value.element_size() < 8 if isinstance(value, torch.Tensor) \
        else value.dtype.kind == "f" and value.dtype.itemsize < 8
    return float(str(np.float32(number))) if isinstance(number, float) and narrow else number


def mixes_partners(strategy):
    """Whether rule `strategy` mixes copies with partners drawn from the whole training set (crust)."""
    return bool(getattr(RULES.get(strategy), "mixup", False))


def streamed_mixup_error(strategy):
    """The refusal of streaming a folder's images for a rule that mixes copies with partners."""
    return UsageError(f"mixing copies with partners (strategy {strategy}) needs the images in memory; use "
                      "--stream never, or another strategy")


def unused_settings(settings):
    """The fields of `settings` (a TrainConfig or its dict) that its run never reads: `unused_options`'
    and those its strategy leaves unread (gradients, knn and gradient_dim without gradient estimates;
    estimates and selection_warmup for random, full and none; select_every and weight_augmented for full
    and none; the strong augmentation's for none; augment_steps for crust). A --resume or a bench rerun
    need not repeat them."""
    get = settings.get if isinstance(settings, dict) else lambda name: getattr(settings, name)
    rule = RULES.get(get("strategy"))
    needs = rule.needs if rule else ()
    unused = set(unused_options(settings))
    if "estimates" not in needs:
        unused.update(("gradients", "knn", "gradient_dim"))
    if not needs:
        unused.update(("estimates", "selection_warmup"))
    if get("strategy") in REFERENCE_STRATEGIES:  # everyone strongly augmented (full) or no one (none); subset,
        unused.update(("select_every", "weight_augmented"))  # balance and mode stay: the method's state holds them
    if get("strategy") == "none":
        unused.update(("augment", "copies", "candidates"))
    if rule is not None and rule.mixup:  # copies mixed with partners drawn per step: one step's batch a call
        unused.add("augment_steps")
    if _folder(get("dataset")) and _split_folder(get("dataset")):  # (runs recorded before it was refused)
        unused.add("val_fraction")
    return unused


def _check_tensorboard(out):
    if not out:
        raise UsageError("tensorboard writes into the run's folder; give out (--out) too")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UsageError("tensorboard needs the tensorboard package: pip install 'coreaug[tensorboard]' "
                         "(or pip install tensorboard)") from None


def _models():
    from coreaug.models import available_models

    return available_models()


def _check_registered(value, name, choices):
    """`check_choice(value, name, choices, unknown=True)` for a registered model or policy name; in a worker
    process of run_grid (jobs >= 2), which re-imports the calling script, its message says where a name
    registered in the calling process, but not here, must be registered."""
    try:
        check_choice(value, name, choices, unknown=True)
    except UsageError as error:
        import multiprocessing
        if name == "model":  # (a dot where the colon goes: mynets.seq)
            module, _, function = str(value).rpartition(".")
            hint = f" (did you mean {module}:{function}?)" if module and function else ""
            error = UsageError(f"{error}, or give your own as package.module:function{hint}")
        if not multiprocessing.current_process().name.startswith("coreaug-bench-worker"):  # workers.py names them
            raise error from None
        raise UsageError(f"{error}. This worker process (run_grid with jobs >= 2) knows only the names registered "
                         "when it imports the calling script and its modules: call register_model/register_policy/"
                         "register_rule at a module's top level, not under `if __name__ == \"__main__\":`") from None


def _registered(dataset):
    from coreaug.data.registry import names_registered_dataset

    return names_registered_dataset(dataset)


def weak_is_resized_crop(dataset, weak, image_size):
    """Whether the weak augmentation is the random-resized crop: asked for, or "auto" on a folder
    of images of LARGE_IMAGES (128) px and more."""
    from coreaug.data.image_folder import LARGE_IMAGES

    return weak == "resized-crop" or (weak == "auto" and _folder(dataset) and image_size >= LARGE_IMAGES)


def _recorded_image_size(out):
    """The image_size the run in the folder `out` recorded (config.json), None where it has none."""
    import json

    try:
        with open(os.path.join(os.path.expanduser(os.fspath(out)), "config.json")) as f:
            size = json.load(f).get("image_size")
    except (OSError, ValueError, TypeError, AttributeError):  # no folder or file yet, or not a run's
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 4 else None


def _own_size(dataset):
    """A registered dataset's image size (IMAGE_SIZES), None for one the user registered."""
    return IMAGE_SIZES.get(str(dataset).lower().replace("_", "-"))


def _folder(dataset):
    from coreaug.data import is_folder_dataset

    return is_folder_dataset(dataset)


def _split_folder(dataset):
    from coreaug.data.image_folder import has_own_split

    return has_own_split(dataset)


def refuse_own_split_fraction(folder, val_fraction, flag="val_fraction", typed=False):
    """UsageError where a `val_fraction` other than the default is given (as `flag`; any value where it was
    `typed` on a command line) with a folder that has its own test split, where it splits nothing off (a
    registered name is no folder: cifar10 where ./cifar10/ holds train/ and test/)."""
    given = typed or val_fraction != TrainConfig.__dataclass_fields__["val_fraction"].default
    if given and _folder(folder) and _split_folder(folder):
        raise UsageError(f"{flag} splits off the test images of a folder of class folders; {folder} has train/ "
                         f"and its own test split (val/ or test/): leave {flag} out")
