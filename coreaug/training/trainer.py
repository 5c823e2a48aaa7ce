"""`train(TrainConfig) -> TrainResult`: the epoch loop of coreset-augmented training."""
import contextlib
import copy
import dataclasses
import difflib
import functools
import inspect
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.nn.parameter import is_lazy
from tqdm import tqdm

from coreaug import progress
from coreaug.augment import create_policy
from coreaug.augment.contract import checked_policy
from coreaug.augment.registry import takes_keyword
from coreaug.augment.sampling import uniform
from coreaug.data import is_folder_dataset
from coreaug.data.image_cache import builds_shown, refuse_in_a_starting_worker
from coreaug.data.image_folder import read_as_part
from coreaug.errors import TrainingDiverged, UsageError, mismatch_reason, one_line
from coreaug.files import warn_at_caller, where_raised
from coreaug.models import create_model, load_pretrained
from coreaug.selection.coreset import load_selection_libraries
from coreaug.selection.gradients import (check_model_logits, estimate_dtype, estimate_gradients, eval_modes, final_linear,
                                         restore_modes, saved_modes, uncompiled)

from .compiled_step import (CompiledStep, CudaGraphSkips, check_compilable, cpp_build_failed, prime_optimizer_state,
                            untraceable_code, uses_cuda_graphs, warn_layout_growth)
from .config import BOOLEANS, INSTANCE, TrainConfig, weak_is_resized_crop
from .distributed import check_world_size, join_run
from .evaluate import evaluation_sums
from .inputs import load_run_data
from .method import CoresetAugmentation, epoch_generator
from .precision import autocast_for, gradient_scaler, resolve_precision
from .run_files import OLDER, RunFolder, check_same_data, provenance
from .schedule import learning_rate
from .selector import select_examples
from .trained import model_file, model_inputs


@dataclass
class TrainResult:
    """What a run produced: per-epoch metrics, headline figures and the trained model.

    config: the resolved TrainConfig (the dataset's defaults filled in).
    history: one dict per epoch, as metrics.jsonl holds them (epoch, train_loss, test_accuracy:
        None in epochs not evaluated, epoch_seconds, selection_seconds, n_trained, n_augmented, ...).
    final_test_accuracy, best_test_accuracy: of the last and the best evaluated epoch (NaN if none).
    total_seconds, selection_seconds: summed over the epochs (selection's share included in the total).
    model: the trained module (the bare one, not its compiled or DDP wrapper), in eval mode, as
        `load_run(...).model` is (BatchNorm's running statistics, no dropout); `.train()` to train on in
        your own loop (a part you froze: back to `.eval()`); `train(config, model=...)` takes it as it is.
    out: the run's folder, None without one. rank, world_size: this process's under torchrun.
    """

    config: TrainConfig
    history: list = field(repr=False)  # every epoch's metrics: a notebook showed megabytes
    final_test_accuracy: float
    best_test_accuracy: float
    total_seconds: float
    selection_seconds: float
    model: torch.nn.Module = field(repr=False)
    out: str = None
    rank: int = 0
    world_size: int = 1

    def __repr__(self):
        """The headline figures first and the run's main settings (all of them were 1,600 characters ahead of
        the accuracy in a notebook cell's output); `config` holds the rest."""
        shown = ", ".join(f"{name}={getattr(self.config, name)!r}" for name in RESULT_SETTINGS)
        spread = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (f"TrainResult(final_test_accuracy={self.final_test_accuracy!r}, "
                f"best_test_accuracy={self.best_test_accuracy!r}, total_seconds={self.total_seconds!r}, "
                f"selection_seconds={self.selection_seconds!r}, epochs={len(self.history)}, out={self.out!r}"
                f"{spread}, config=TrainConfig({shown}, ...))")


RESULT_SETTINGS = ("dataset", "model", "strategy", "subset", "mode", "augment", "epochs", "seed")


def _strong_policy(config):
    """The strong policy; policies of one's own are checked at their first call (`checked_policy`)."""
    maxloss = "maxloss" in [part.strip().lower() for part in config.augment.split("+")]  # not "maxloss-lite"
    kwargs = {"candidates": config.candidates} if maxloss else {}
    if takes_keyword(config.augment, "flip"):  # a chained weak / resized-crop mirrors only as config.flip says
        kwargs["flip"] = config.flip
    return checked_policy(create_policy(config.augment, **kwargs), config.augment)


def weak_policy_name(config):
    """The weak augmentation's policy: "resized-crop" (asked for, or "auto" on a folder dataset
    of 128 px and more) or "weak" (pad-and-crop and flip)."""
    return "resized-crop" if weak_is_resized_crop(config.dataset, config.weak, config.image_size) else "weak"


def _weak_policy(config, folder):
    """The weak policy; a resized crop of a folder's stored images outputs `image_size` squares."""
    name = weak_policy_name(config)
    size = {"size": config.image_size} if name == "resized-crop" and folder else {}
    return create_policy(name, flip=config.flip, **size)


def train(config, model=None, *, on_start=None, on_epoch=None):
    """Train `config.model` (or `model`, any nn.Module) on `config.dataset`, strongly augmenting
    the chosen examples.

    The method's state (cadence, selection, plan, weights) is a `CoresetAugmentation`, the
    object users drive from their own loops. Every `select_every` epochs the strategy picks
    round(subset * n) examples (coreset: weighted facility location over gradient estimates on
    clean images in eval mode); each epoch trains the plan of `epoch_plan` with `config.optimizer`
    (SGD with Nesterov momentum, or AdamW; weight decay, the configured schedule) on the weighted
    cross-entropy. With `config.out`, writes config.json, metrics.jsonl, summary.json and
    checkpoint.pt there, and at the end model.pt (`coreaug.load_run` reads it); `resume`
    continues from the checkpoint. Raises UsageError / FileNotFoundError for bad settings or
    missing data before anything is written, and TrainingDiverged (a RuntimeError) when an epoch
    leaves the weights, or the outputs on the test set, NaN or infinite. Returns a TrainResult.

    `model`, your own nn.Module, maps normalised (B, C, H, W) images to (B, classes) logits; its
    last nn.Linear is the layer of `gradients="last_layer"`. It is trained in place, and the run
    records its class ("instance:module.Class" as config.model), so `load_run` needs a module
    like it passed in. (`config.model = "package.module:function"` is rebuilt by `load_run` given that
    path, `load_run(RUN, model="package.module:function")`: importing it runs its code.)
    It is fed channels_last inputs, or contiguous ones if it fails on those (a `.view` of its
    features); a model that returns more than the logits in training mode is refused too.

    torch's global random state (the CPU's and the device's), which the run seeds with
    `config.seed` (for the model's initialisation and dropout), is given back as it was on
    entry, so the caller's own draws after `train` go on as they would have without it. That
    state is the process's: runs in several threads of one process at once draw from it in turn,
    and are not reproducible by seed (train them in processes: `run_grid(jobs=N)`, a process pool).
    The caller's `torch.no_grad()` or `inference_mode()` and default dtype do not reach the run:
    it trains with gradients, in float32 unless `precision` says otherwise (a default dtype other
    than float32 is float32 while the run lasts, in every thread: torch's default is the process's).

    `on_start`, if given, is called with the run folder's path once every check has passed, just
    before the run's first file is written there (the CLI's "run folder:" line).

    `on_epoch`, if given, is called after each epoch with a copy of its metrics.jsonl row, once
    the epoch's checkpoint is written (not after an epoch that diverged): report it to a tracker
    or a pruner; an exception it raises (`optuna.TrialPruned`, say) stops the run and comes out of
    `train`, the folder resumable from that epoch. Under torchrun it is called in every process
    with the same metrics (its `*_seconds` are each process's own), so a decision made from the
    losses and accuracies stops every process alike.

    Launched by torchrun with several processes, each process trains its disjoint share
    of every epoch's plan (`EpochPlan.shard`) in DistributedDataParallel, with
    `batch_size` as the global batch; rank 0 selects (from gradient estimates that every
    process computes on a slice of the training set) and broadcasts the selection, logged
    metrics count every process's examples, and only rank 0 writes files or prints.
    """
    if not isinstance(config, TrainConfig) and not hasattr(config, "keys"):  # ** takes any mapping
        raise UsageError(f"config must be a coreaug.TrainConfig or a dict of its settings, got "
                         f"{type(config).__name__} {config!r:.80}")
    # (found after the data is loaded, or after the first epoch has trained, they would stop the run there)
    _check_hook(on_start, "on_start", "a function called with the run folder's path")
    _check_hook(on_epoch, "on_epoch", "a function called with each epoch's metrics (a dict)")
    config = config if isinstance(config, TrainConfig) else TrainConfig(**_settings(config))
    config = dataclasses.replace(config, model=given_model_name(config, model)) if model is not None else config
    config = config.resolved()
    if model is None and config.model.startswith(INSTANCE):
        raise UsageError(f"config.model {config.model!r} names a module passed to train; pass it again: "
                         "coreaug.train(config, model=...)")
    distributed = join_run(config.device)
    completed = False
    try:
        with keeps_global_rng(distributed.device), training_defaults(), contextlib.ExitStack() as others:
            if distributed.rank != 0:  # rank 0 speaks for the run: a warning once, not once per process
                others.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            result = _run(config, distributed, model, on_start, on_epoch)
        completed = True
        return result
    except KeyboardInterrupt as exc:  # (Ctrl-C, a notebook's stop button; the commands say it in their own line)
        _note_resumable(exc, config)
        raise
    finally:
        distributed.close(completed)


def _check_hook(hook, name, what):
    """UsageError unless `hook` is None or callable with one argument, as `train` calls it."""
    if hook is None:
        return
    if not callable(hook):
        raise UsageError(f"{name} must be {what}, or None, got {type(hook).__name__}")
    try:
        signature = inspect.signature(hook, follow_wrapped=False)  # (a functools.wraps wrapper's own)
    except (TypeError, ValueError):  # a builtin without a signature: taken as it is
        return
    try:
        signature.bind(None)
    except TypeError as exc:
        raise UsageError(f"{name} must be {what}: it is called with one argument ({exc})") from None


def _settings(mapping):
    """`mapping`'s settings for TrainConfig(**...), or a UsageError naming a key that is no setting (a flag's
    spelling, `train-limit`, is named with the setting's)."""
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    unknown = [key for key in mapping.keys() if key not in fields]  # (keys(): a pandas row iterates its values)
    if unknown:
        key = unknown[0]
        name = str(key).lstrip("-").replace("-", "_")
        if name.startswith("no_") and name[3:] in BOOLEANS:  # a switch's --no-X spelling
            raise UsageError(f"config has no setting {key!r}; did you mean {name[3:]!r}: False?")
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else "; TrainConfig's fields are the settings"
        raise UsageError(f"config has no setting {key!r}{hint}")
    return mapping


def _note_resumable(exc, config):
    """Add to `exc` (an interrupt of `train`) a note of the epochs its run folder keeps and how to go on,
    shown under its traceback (Python 3.11+)."""
    from .run_files import epochs_kept

    if not config.out or not hasattr(exc, "add_note") or not os.path.isfile(os.path.join(config.out, "config.json")):
        return
    exc.add_note(f"coreaug: the run stopped with {epochs_kept(config.out)} of its {config.epochs} epochs kept in "
                 f"{config.out}; train it again with resume=True (and the same settings) to go on from there")


@contextlib.contextmanager
def training_defaults():
    """torch's defaults a run needs, whatever the caller's, given back after: gradients on (a call
    inside torch.no_grad(), set_grad_enabled(False) or inference_mode stopped at its first backward
    with torch's error, its folder written) and float32 as the default dtype (a caller's float64
    trained the whole run in float64, recorded as fp32). (The caller's draws go on: keeps_global_rng.)"""
    dtype = torch.get_default_dtype()
    if dtype != torch.float32:  # (process-wide, torch's default: left alone where it is float32 already)
        torch.set_default_dtype(torch.float32)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        if dtype != torch.float32:
            torch.set_default_dtype(dtype)


CAME_IN_MODES = "_coreaug_came_in_modes"  # set on a run's module: its submodules' modes when its first run took it
TRAINED_BY = "_coreaug_trained_by"  # set on a run's module when its training starts: the run folder


def given_model_name(config, model):
    """config.model for a module passed to train: "instance:" and its class's qualified name."""
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}; or leave it out and set "
                         "config.model to a registered name or package.module:function")
    if uncompiled(model) is not model:  # its weights would be saved as "_orig_mod.*", under torch's class name
        raise UsageError("the model passed to train is torch.compile's wrapper; pass the module itself "
                         f"({type(uncompiled(model)).__name__}), and compile=True (--compile) to compile the "
                         "whole training step")
    if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):  # saved as "module.*"
        raise UsageError(f"the model passed to train is torch's {type(model).__name__} wrapper; pass the module "
                         f"itself ({type(model.module).__name__}): a run trains on one device per process, and under "
                         "torchrun coreaug wraps each process's model in DistributedDataParallel itself")
    name = f"{INSTANCE}{type(model).__module__}.{type(model).__qualname__}"
    if config.model not in (None, name):
        raise UsageError(f"config.model is {config.model!r} but a model was passed to train too; "
                         "leave config.model unset (None) when passing the model")
    if config.gradients == "last_layer":
        final_linear(model)  # a model without an nn.Linear is refused before anything is written
    return name


def check_given_model(model, data, gradients="logits", what="the model passed to train"):
    """Raise UsageError unless `model` (any the run trains: passed to train, imported, registered or
    built in; `what` in the message) maps a batch of two of the run's float32 inputs (zeros, preprocessed
    as the run's images) to floating (2, num_classes) logits in eval mode and in training mode (a
    model that returns (logits, aux) when training, as GoogLeNet does, would fail in the first
    step): run once in each without gradients, on the device its parameters are on, before
    anything is written, and leaving the model as it was (`training_output`); lazy modules get
    their shapes. With `gradients` "last_layer", the gradient layer must be the one that produces
    the logits. A model with no parameter to train (all frozen) is refused too: its first step
    could not backpropagate.

    Returns the memory format the run feeds the model in: channels_last, or, for a model that
    fails on channels_last inputs and not on contiguous ones (a `.view` of its input or its
    convolutions' features), torch.contiguous_format."""
    if not any(p.requires_grad for p in model.parameters()):
        count = sum(1 for _ in model.parameters())
        raise UsageError(f"{what} has no trainable parameters ({count} parameter tensors, none with "
                         "requires_grad=True); unfreeze what should train, e.g. its classifier's requires_grad_()")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    shape = (2, data.in_channels, *data.test_images.shape[-2:])
    inputs = data.preprocess(torch.zeros(shape, dtype=torch.uint8, device=data.train_labels.device)).to(device)
    for memory_format in (torch.channels_last, torch.contiguous_format):
        inputs, mode = inputs.contiguous(memory_format=memory_format), ""
        try:
            in_memory_format(model, inputs, memory_format)
            evaluated = eval_output(model, inputs)
            mode = " in training mode"
            trained = training_output(model, inputs)
            break
        except Exception as error:  # noqa: BLE001 - the user's module: its error, named as theirs
            failure = error
    else:
        dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                         if p.is_floating_point() and p.dtype != torch.float32})
        hint = (f"; its weights are {', '.join(dtypes)}: give a float32 model (model.float()), as --precision "
                "sets the precision a run computes in") if dtypes else ""
        raise UsageError(f"{what} fails{mode} on a batch of the run's inputs, shape {tuple(inputs.shape)}: "
                         f"{one_line(failure)}{where_raised(failure)}{hint}") from failure
    check_model_logits(evaluated, 2, what, data.num_classes)
    check_model_logits(trained, 2, f"{what} in training mode", data.num_classes)
    if gradients == "last_layer":  # the estimate's own checks, on the same two inputs
        estimate_gradients(model, inputs, torch.zeros(2, dtype=torch.long), kind="last_layer", device=device)
    return memory_format


def in_memory_format(model, inputs, memory_format):
    """Put `model`'s 4-d weights in `memory_format`, as the run will (`_start`): with one input channel a
    channels_last input has contiguous strides, so only channels_last convolution weights make the features
    channels_last, where a `.view` of them fails. A lazy module gets its shapes first (from `inputs`)."""
    if any(is_lazy(tensor) for tensor in (*model.parameters(), *model.buffers())):
        eval_output(model, inputs)
    model.to(memory_format=memory_format)


def eval_output(model, inputs):
    """`model(inputs)` in eval mode without gradients, leaving the model as it was (`kept_tensors`;
    each submodule's mode: a BatchNorm a factory froze in eval mode stays so), and torch's random
    state (a model may draw in eval mode: Monte Carlo dropout)."""
    modes = eval_modes(model)
    try:
        with kept_tensors(model), keeps_global_rng(inputs.device), torch.no_grad():
            return model(inputs)
    finally:
        restore_modes(modes)


def training_output(model, inputs):
    """`model(inputs)` in training mode without gradients, leaving the model as it was: its mode,
    its parameters and buffers (BatchNorm's running statistics and batch counts, `kept_tensors`)
    and torch's random state (dropout draws from it) restored."""
    modes = saved_modes(model)
    try:
        with kept_tensors(model), keeps_global_rng(inputs.device), torch.no_grad():
            return model.train()(inputs)
    finally:
        restore_modes(modes)


@contextlib.contextmanager
def kept_tensors(model):
    """Give `model`'s parameters and buffers (those not lazy) their values back on leaving: a probe
    must not be a model's first batch where its forward initialises itself from the data
    (ActNorm-style data-dependent initialisation: from two zero images, in eval mode)."""
    saved = [(tensor, tensor.detach().clone()) for tensor in (*model.parameters(), *model.buffers())
             if not is_lazy(tensor)]
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, value in saved:
                if tensor.shape == value.shape:
                    tensor.copy_(value)


def keeps_global_rng(device):
    """A context that gives torch's global random generators (the CPU's, and `device`'s on CUDA)
    back the state they had on entering it."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type="cuda")


def check_batch_of_one(model, data, batch_size, what, processes=1):
    """UsageError when each of `processes` trains batches of one image (`batch_size`, the global
    batch) and `model` cannot: BatchNorm in training mode needs more than one value per channel,
    which a batch of one with maps pooled to 1x1 (an ImageNet-stem ResNet on small images) does
    not give it. Tried on one input in training mode, the model left as it was."""
    batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if batch_size // processes != 1 or not batch_norm:
        return
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    shape = (1, data.in_channels, *data.test_images.shape[-2:])
    inputs = data.preprocess(torch.zeros(shape, dtype=torch.uint8, device=data.train_labels.device)).to(device)
    try:
        training_output(model, inputs)
    except ValueError as error:  # torch's "Expected more than 1 value per channel when training"
        each = f" over {processes} processes (one image each)" if processes > 1 else ""
        raise UsageError(f"{what} cannot train on batches of one image (--batch-size {batch_size}{each}): "
                         f"{one_line(error)}; its BatchNorm layers need two or more images a batch: use "
                         f"--batch-size {2 * processes} or more") from error


def check_out_outside_data(config):
    """UsageError, before anything is written, for an `out` among the files of a folder dataset
    (`config.dataset`): the run folder would be read as a class of it by the next run."""
    if not config.out or not is_folder_dataset(config.dataset):
        return
    part = read_as_part(os.path.expanduser(str(config.dataset)), config.out)
    if part is not None:
        raise UsageError(f"--out {config.out} is inside {part}, the folder of the dataset, where the run folder would "
                         "be read as one of its classes; choose an --out outside it (or a hidden folder such as "
                         ".runs)")


def check_out_is_no_grid(config):
    """UsageError, before anything is written, for an `out` that is a bench grid's folder or its runs/:
    the run's files would mix with the grid's, and bench would then refuse the grid as a run folder."""
    if not config.out:
        return
    real = os.path.realpath(os.path.expanduser(str(config.out)))
    if _is_grid(real):
        raise UsageError(f"--out {config.out} is a bench grid's folder; give a folder of its own for the run (the "
                         "grid's runs are in its runs/, and coreaug bench continues them)")
    if os.path.basename(real) == "runs" and _is_grid(os.path.dirname(real)):
        raise UsageError(f"--out {config.out} is the runs/ folder of the grid {os.path.dirname(real)}; give a "
                         "folder of its own for the run")


def _is_grid(folder):
    """Whether `folder` is a bench grid's: it holds grid.json (a grid of coreaug 0.2, without one, is not
    told from a folder of the user's that holds notes in results.md and the default runs/)."""
    from coreaug.bench.archive import PLAN

    return os.path.isfile(os.path.join(folder, PLAN))


def _warn_one_selection(config, report=None):
    """A warning when a rule that reads the model selects once, at epoch 0, on the model as it starts (a
    re-selection period not below the run's epochs, such as the paper's R = 20 on a 15-epoch run): unless
    the model starts from trained weights, classifier included (`report`, load_pretrained's), that subset
    comes from random predictions and is kept all run."""
    from coreaug.selection.rules import RULES

    rule = RULES.get(config.strategy)
    if rule is None or not rule.needs or not 1 < config.epochs <= config.select_every:
        return
    if config.pretrained is None:
        start = "the model as it starts (untrained, unless your --model loads trained weights)"
    elif report is not None and report.classifier_reset:
        other = "none" if report.classifier_absent else "another"
        start = f"the model as it starts, whose classifier is freshly initialised ({config.pretrained} has {other})"
    else:
        return
    warn_at_caller(f"--select-every {config.select_every} is not below --epochs {config.epochs}: "
                   f"{config.strategy} selects once, at epoch 0, from the outputs of {start}, and keeps that subset "
                   "for the whole run; a smaller --select-every re-selects as the model learns")


def _open_run(config, distributed, model=None, on_start=None):
    """(run folder or None, checkpoint or None, data, model), every check passed before a file is
    written: `model`, or config.model built (tried on two inputs, as `model` is, built in or the user's).

    Only rank 0 holds the folder: it reads it, and every process resumes from what it read
    (so the processes need no shared disk).
    """
    identity = config.identity()
    check_out_outside_data(config)
    check_out_is_no_grid(config)
    if is_folder_dataset(config.dataset):  # a decoding worker importing an unguarded script: said before the
        refuse_in_a_starting_worker()     # run folder its parent locked refuses it as "in use"
    folder = RunFolder(config.out, config.tensorboard) if config.out and distributed.is_main else None
    try:
        checkpoint = distributed.on_main(lambda: folder.check(identity, config.resume, config.overwrite)) if config.out else None
        if checkpoint is None and config.resume:  # validate left it to here: a checkpoint would not need it
            config.check_pretrained_file()
        # A --download happens once per node. A folder's decoded cache is built by one process
        # while the others wait on its progress (image_cache.open_or_build), not in a barrier
        # whose fixed timeout a long build would outlast.
        distributed.on_main(lambda: check_same_data(checkpoint, config))
        if config.out:
            distributed.on_main(lambda: folder.check_room(checkpoint, config.epochs))
        if checkpoint is None:
            _warn_one_selection(config)
        first = contextlib.nullcontext() if is_folder_dataset(config.dataset) else distributed.node_main_first()
        with first:
            data = load_run_data(config, distributed.device, distributed, checkpoint)
        check_world_size(config, len(data.train_labels), distributed.world_size)
        if not len(data.test_labels):  # only a registered loader's can be empty; it would divide by 0 after an epoch
            raise UsageError(f"dataset {config.dataset!r} has no test images; a run is scored on its test split, "
                             "so give the loader's ImageDataset some")
        torch.manual_seed(config.seed)  # the model's initialisation
        what = "the model passed to train" if model is not None else f"model {config.model!r}"
        trained_by = getattr(model, TRAINED_BY, None) if model is not None and checkpoint is None else None
        if trained_by is not None:
            warn_at_caller(f"the model passed to train was trained by an earlier run ({trained_by}), in place: this "
                           "run starts from its trained weights, not a fresh initialisation; build a new module for "
                           "each run to compare runs")
        if model is None:  # built here, so that a factory's failure leaves nothing written
            model = create_model(config.model, data.in_channels, data.num_classes)
            if not isinstance(model, torch.nn.Module):  # a registered factory's (create_model checks import paths')
                raise UsageError(f"{what} returned a {type(model).__name__}, not an nn.Module; its registered "
                                 "function must return the model")
            model = model.to(distributed.device)  # tried where it trains: a model of CUDA-only kernels fails on a CPU
        # Every model: a module passed to train, package.module:function, a name registered by the user or built in
        data.preprocess.memory_format = check_given_model(model, data, config.gradients, what)
        check_batch_of_one(model, data, config.batch_size, what,
                           1 if config.sync_bn else distributed.world_size)  # SyncBatchNorm: the global batch's
        report = None
        if config.pretrained and checkpoint is None:  # a file that does not fit is refused before a file is written
            report = load_pretrained(model, config.pretrained)
            _warn_one_selection(config, report)
        if checkpoint is not None:  # the run's weights, before anything is written
            try:
                model.load_state_dict(checkpoint["model"])
            except RuntimeError as exc:
                raise UsageError(f"the model does not fit the checkpoint of {config.out} ({mismatch_reason(exc)}); "
                                 "resume with a model built as the run's was, or pass --overwrite to start "
                                 "it again") from None
        if folder and folder.finished(checkpoint, config.epochs):  # reported from its files, rewritten only
            folder.sync_metrics(checkpoint["history"])  # where metrics.jsonl lacks its last epoch
            if config.tensorboard:  # asked for now: the finished run's epochs as scalars, as a resume writes them
                folder.resume_scalars(checkpoint["history"])
        elif folder:
            if on_start is not None:
                on_start(folder.path)
            folder.start(identity, fresh=checkpoint is None)
            if checkpoint is not None:
                folder.sync_metrics(checkpoint["history"])
                folder.resume_scalars(checkpoint["history"])
        if report is not None and not config.quiet:  # after on_start's line
            progress.say(str(report))
    except BaseException:
        if folder:
            folder.abandon()
        raise
    return folder, checkpoint, data, model


def _run(config, distributed, model=None, on_start=None, on_epoch=None):
    show_build = not config.quiet  # a decoded cache's build shows on the rank that makes it (builds_shown)
    if not distributed.is_main:
        config = dataclasses.replace(config, quiet=True)  # one progress bar and log: rank 0's
    if compiles_whole_step(config, distributed):
        check_compilable(config, distributed.world_size, distributed.device)  # before anything is written
    if not config.quiet and cifar_stem_on_large_images(config):
        tqdm.write(f"note: {config.model} has a CIFAR stem (no downsampling before its first stage: slow at "
                   f"{config.image_size} px); for images of 128 px and more --model resnet18_imagenet (or resnet34, "
                   "resnet50) is usually what you want", file=sys.stderr)
    with builds_shown(show_build):
        folder, checkpoint, data, model = _open_run(config, distributed, model, on_start)
    try:
        return _train_run(config, distributed, folder, checkpoint, data, model, on_epoch)
    finally:
        if folder:
            folder.release()


CIFAR_STEMS = ("resnet20", "resnet32", "resnet56", "resnet18", "wrn-16-8")  # built-ins made for 32 px images


def cifar_stem_on_large_images(config):
    """Whether `config` trains a built-in model with a CIFAR stem (resnet20, a folder's default,
    among them) on a folder of images of 128 px or more, where an ImageNet stem is the usual choice."""
    return is_folder_dataset(config.dataset) and config.image_size >= 128 and config.model.lower() in CIFAR_STEMS


@dataclass
class RunState:
    """What the epoch loop carries: the model and its compiled or DDP forms, the optimizer, the
    method's state (`CoresetAugmentation`), precision, and the training logits of
    `estimates="training"`."""

    model: torch.nn.Module
    forward: object
    train_forward: object
    optimizer: torch.optim.Optimizer
    method: CoresetAugmentation
    precision: str
    autocast: object
    scaler: object
    eval_batch: int
    history: list
    start_epoch: int = 0
    train_logits: torch.Tensor = None
    compiled_step: CompiledStep = None  # --compile in one process: built at the first epoch
    frozen: list = field(default_factory=list)  # submodules training keeps in eval mode (`frozen_modules`)

    def train_mode(self, forward):
        """`forward.train()`, the frozen submodules (`frozen_modules`: a factory's frozen backbone) kept in
        eval mode: model.train() alone would estimate a frozen backbone's BatchNorm statistics again."""
        forward.train()
        for module in self.frozen:
            module.eval()


def _train_run(config, distributed, folder, checkpoint, data, model=None, on_epoch=None):
    """The epoch loop: select if due, train the plan, evaluate, log, checkpoint."""
    run = _start(config, distributed, checkpoint, data, model)
    # trained in place: a run given the module again (result.model, or the user's) starts from these weights
    object.__setattr__(run.model, TRAINED_BY, config.out or "a run with out=None")
    strong, weak = _strong_policy(config), _weak_policy(config, is_folder_dataset(config.dataset))
    record = config.estimates == "training" and run.method.needs_model
    whole_step = compiles_whole_step(config, distributed)
    train_epoch = _train_epoch_compiled if whole_step else _train_epoch
    for epoch in range(run.start_epoch, config.epochs):
        t0 = time.perf_counter()
        selected = run.method.due(epoch)
        timings = select_examples(config, run.method, run.model, data, epoch, run.autocast, run.eval_batch,
                                  distributed, run.train_logits) if selected else dict(NO_SELECTION)
        # Every process draws the same plan and trains its own disjoint share of it.
        plan = run.method.plan_for(epoch)
        if whole_step:  # every step the same shapes, in every process
            plan = plan.fixed_steps(config.batch_size, generator=epoch_generator(config.seed, epoch, 2),
                                    world_size=distributed.world_size)
        share = plan.shard(distributed.rank, distributed.world_size)
        if selected:
            run.train_logits = None  # used by this selection (or not needed): hold no N x C store until the next
        # The store is filled only in the epoch before a selection (append mode trains every original each epoch).
        record_now = record and epoch + 1 < config.epochs and run.method.due(epoch + 1)
        logit_sums = torch.zeros((len(run.method), data.num_classes + 1), device=distributed.device,
                                 dtype=estimate_dtype(len(run.method), data.num_classes)) if record_now else None
        compiled_before = compiled_graphs()
        graph_skips = CudaGraphSkips() if whole_step and uses_cuda_graphs(distributed.device, config.compile_mode) \
            else None
        with graph_skips or contextlib.nullcontext():
            sums = train_epoch(config, run, data, share, strong, weak, epoch, distributed, logit_sums)
        if graph_skips is not None and graph_skips.count and not any(m.get("cudagraph_skips") for m in run.history):
            warn_cuda_graph_skips(graph_skips, distributed.device)
        if record_now:
            run.train_logits = _merge_logits(run.train_logits, distributed.all_reduce_tensor(logit_sums))
        distributed.broadcast_buffers(run.model)
        loss_sum, correct, n_trained, n_augmented = distributed.all_reduce_sum([*sums, len(share), share.n_augmented])
        if distributed.device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        test_loss, test_accuracy = _evaluate(run, data, distributed) if evaluates(config, epoch) else (None, None)
        eval_seconds = time.perf_counter() - t1
        run.history.append({
            "epoch": epoch, "train_loss": loss_sum / n_trained, "train_accuracy": correct / n_trained,
            "test_loss": test_loss, "test_accuracy": test_accuracy,
            "lr": learning_rate(config, epoch), "epoch_seconds": epoch_seconds,
            "selection_seconds": sum(timings.values()), **timings,
            "eval_seconds": eval_seconds,
            # cumulative: training + selection (what time-to-target counts), and with evaluation too
            "training_seconds": (run.history[-1].get("training_seconds", run.history[-1]["elapsed_seconds"])
                                 if run.history else 0.0) + epoch_seconds,
            "elapsed_seconds": (run.history[-1]["elapsed_seconds"] if run.history else 0.0) + epoch_seconds + eval_seconds,
            "n_trained": int(n_trained), "n_augmented": int(n_augmented), "selected": selected,
            "threads": torch.get_num_threads(),  # a resume on another count is said (`_check_resumed`)
            "world_size": distributed.world_size,  # (processes: the same)
            "coreaug": _version(),  # (and on another version)
            **(run.method.diagnostics if selected else {}),
            **({"graphs_compiled": compiled_graphs() - compiled_before} if config.compile else {}),
            **({"cudagraph_skips": graph_skips.count} if graph_skips is not None else {}),
        })
        diverged = divergence(run.model, run.history[-1])
        if diverged:
            run.history[-1]["diverged"] = True
        if folder and diverged:  # its row kept, its checkpoint not: a --resume must not go on from NaN weights
            folder.save_metrics(run.history)
        elif folder:
            folder.save_epoch(_checkpoint(config, run, epoch, data), run.history)
        if not config.quiet:
            _log_epoch(config, run.history[-1])
        if diverged:
            raise diverged
        if on_epoch is not None:
            on_epoch(copy.deepcopy(run.history[-1]))  # (its lists too: the run rewrites its rows each epoch)

    result = _result(config, run.history, run.model, distributed)
    if folder and not folder.done:  # a finished run's files stay as it wrote them
        folder.save_model(model_file(config, run.model, data, run.history))
        folder.save_summary(_summary(config, result, distributed.device, run.precision, data))
    return result


def divergence(model, metrics):
    """TrainingDiverged (returned, not raised) when an epoch leaves the model's weights NaN or infinite,
    or its outputs on the test set (a NaN or infinite test loss: weights too large for any output to
    be finite); else None. A NaN train loss alone is not enough: with fp16 a step GradScaler skipped
    leaves the weights finite, and the run goes on. The weights are read after an epoch with a loss
    that is not finite or without a test evaluation (`eval_every`: its last steps may have blown them
    up under a finite train loss), so an evaluated finite run never waits on the device for them."""
    train_loss, test_loss = metrics["train_loss"], metrics.get("test_loss")
    outputs_broken = test_loss is not None and not math.isfinite(test_loss)
    if math.isfinite(train_loss) and test_loss is not None and not outputs_broken:
        return None
    named = list(model.named_parameters())
    finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist() if named else []  # one read
    broken = [name for (name, _), ok in zip(named, finite) if not ok]
    if not broken and not outputs_broken:
        return None
    what = (f"{len(broken)} weight tensors are NaN or infinite (first: {broken[0]})" if broken
            else "the model's outputs on the test set are not finite")
    tested = "not measured" if test_loss is None else test_loss
    return TrainingDiverged(f"training diverged at epoch {metrics['epoch'] + 1}: the train loss is "
                            f"{train_loss:.4g}, the test loss {tested}, and {what}; lower --lr and start "
                            "the run again with --overwrite")


NO_SELECTION = {"estimate_seconds": 0.0, "facility_location_seconds": 0.0}


def as_it_came(model):
    """`model` with its submodules in the modes it came to its first run in, where it is still in eval
    mode as a whole, as a run returned it (trained on, a frozen backbone left in training mode trains
    its statistics again, and one frozen in eval mode stays so; modes set since are kept), those
    modes kept on the module for a later run."""
    modules = list(model.modules())
    came = getattr(model, CAME_IN_MODES, None)
    if came is not None and len(came) == len(modules) and not any(module.training for module in modules):
        for module, training in zip(modules, came):
            module.training = training
    object.__setattr__(model, CAME_IN_MODES, tuple(module.training for module in modules))
    return model


def frozen_modules(model):
    """The submodules frozen as a fine-tuning factory freezes them, which training keeps in eval mode:
    each in eval mode whose parameters are all frozen (`requires_grad=False`; `model.features.eval()`
    beside `model.features.requires_grad_(False)`: a frozen backbone's BatchNorm), with everything
    under it; and a normalisation layer in eval mode under a parent in training mode (a BatchNorm frozen
    on its own: mmdetection's norm_eval, or one without parameters). A submodule in eval mode whose
    parameters train (a backbone a loader left in eval mode, as Hugging Face's from_pretrained does)
    trains as model.train() makes it."""
    kept = {}
    parents = {f"{name}.{child}".lstrip("."): module for name, module in model.named_modules()
               for child, _ in module.named_children()}
    for name, module in model.named_modules():
        parameters = list(module.parameters())
        if not module.training and parameters and not any(p.requires_grad for p in parameters):
            kept.update((id(m), m) for m in module.modules())
        elif not module.training and isinstance(module, torch.nn.modules.batchnorm._NormBase) \
                and name in parents and parents[name].training:
            kept[id(module)] = module
    return list(kept.values())


def _start(config, distributed, checkpoint, data, model):
    """The model (built by `_open_run`, its pretrained or checkpoint weights loaded) on the device,
    optimizer, precision and method state of a run, restored from `checkpoint` if given."""
    device = distributed.device
    if config.sync_bn and distributed.world_size > 1:  # BatchNorm statistics over the global batch
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=data.preprocess.memory_format)  # channels_last but for some own models
    precision = resolve_precision(config.precision, device)
    whole_step = compiles_whole_step(config, distributed)
    optimizer = make_optimizer(config, model, compiled_update=whole_step, scaled=precision == "fp16")
    method = CoresetAugmentation(
        data.train_labels.cpu(), strategy=config.strategy, fraction=config.subset, select_every=config.select_every,
        mode=config.mode, copies=config.copies, weight_augmented=config.weight_augmented, gradients=config.gradients,
        knn=config.knn, balance=config.balance, seed=config.seed, noisy=data.noisy, gradient_dim=config.gradient_dim,
        selection_warmup=config.selection_warmup, epochs=config.epochs, loss_filter=config.loss_filter)
    if "estimates" in method.needs:  # loaded now, not in the first selection's seconds
        load_selection_libraries()
    # Evaluation, selection and max-loss augmentation run the bare model: DDP's forward is a
    # collective, and those passes may differ in number between processes.
    forward = torch.compile(model) if config.compile else model
    train_forward = forward
    if whole_step:
        # No DDP: the compiled step averages the gradients itself (`Distributed.mean_of` in its graph);
        # the processes start from rank 0's model, as DDP makes them.
        distributed.broadcast_state(model)
    elif distributed.world_size > 1:
        train_forward = distributed.wrap(model)
        train_forward = torch.compile(train_forward) if config.compile else train_forward
    run = RunState(model, forward, train_forward, optimizer, method, precision, autocast_for(precision, device),
                   gradient_scaler(precision, device), inference_batch_size(config.batch_size, device), [],
                   frozen=frozen_modules(as_it_came(model)))
    if checkpoint is not None:  # the model's weights were loaded by `_open_run`
        load_optimizer_state(optimizer, checkpoint["optimizer"])
        run.history, run.start_epoch = checkpoint["history"], checkpoint["epoch"]
        run.train_logits = _to(checkpoint.get("train_logits"), device)
        stored = checkpoint.get("data_content")
        try:
            if stored is not None and data.content is not None and stored != data.content:
                raise UsageError("its training images or labels changed")  # (their hash)
            method.load_state_dict(checkpoint["method"])
        except UsageError as exc:  # the settings are the run's (checked): its training set changed since
            raise UsageError(f"{config.out} holds a run that trained on another training set of {config.dataset} "
                             f"than it has now ({str(exc).split('; ')[0]}): restore the data it started on, or start "
                             "it again with --overwrite") from None
        if run.scaler is not None and checkpoint.get("scaler"):
            run.scaler.load_state_dict(checkpoint["scaler"])
        _restore_global_rng(checkpoint.get("rng"), device)
        if "rng" not in checkpoint:  # coreaug 0.2's, which recorded no version: its epochs say so from now on
            for row in run.history:
                row.setdefault("coreaug", OLDER)
        if run.start_epoch < config.epochs:  # (a finished run only reports)
            _check_resumed(run.history, device, distributed.world_size)
    return run


def _version():
    from coreaug import __version__  # here: the package imports this module
    return __version__


def _check_resumed(history, device, world_size):
    """Warn where a run resumes on another number of processes (torchrun) than its last epoch trained
    on, or a CPU run on another thread count: BatchNorm's statistics are per process, and torch's
    kernels add up in another order, so no run of one count repeats it (summary.json lists both).
    Also where its last epoch was trained by another coreaug version, whose augmentations and
    settings may compute otherwise (summary.json lists the versions)."""
    last = history[-1] if history else {}
    before, now = last.get("coreaug"), _version()
    if before is not None and before != now:
        warn_at_caller(f"the run trained epochs up to {len(history)} with coreaug {before} and goes on with {now}, "
                       "which may draw its augmentations and compute its settings otherwise (see the changelog): "
                       "its numbers will be those of neither version; train it again with --overwrite to have "
                       f"{now}'s")
    before, now = last.get("world_size"), world_size
    if before is not None and before != now:
        warn_at_caller(f"the run trained epochs up to {len(history)} in {before} process{'es' * (before != 1)} and "
                       f"goes on in {now}: its numbers will be those of neither count (BatchNorm's statistics are "
                       f"per process); resume it with torchrun --nproc-per-node {before} (over all nodes) to go on "
                       "as it started")
    before, now = last.get("threads"), torch.get_num_threads()
    if device.type == "cpu" and before is not None and before != now:
        warn_at_caller(f"the run trained epochs up to {len(history)} on {before} thread{'s' * (before != 1)} and "
                       f"goes on with {now}: its numbers will be those of neither count (torch adds up in another "
                       f"order); set OMP_NUM_THREADS={before} (in a Python process already started, "
                       f"torch.set_num_threads({before}) before train) to resume it as it started")


def make_optimizer(config, model, compiled_update=None, scaled=False):
    """`config.optimizer` over `parameter_groups`: SGD (momentum, Nesterov) or AdamW (betas),
    at `config.lr` with `config.weight_decay` (the schedule sets the rate each step).
    `compiled_update` (default: `config.compile`): the update will be compiled with a tensor
    learning rate (`CompiledStep`). `scaled`: fp16's GradScaler will step it eagerly: torch's
    fused implementation, to which the scaler hands its inf flag and the scale as tensors (the
    kernel unscales, and skips a step with an inf), where for another implementation it reads
    the flag on the host each step (a device sync)."""
    groups = parameter_groups(model, config.weight_decay, config.norm_decay)
    compiled_update = bool(config.compile) if compiled_update is None else compiled_update
    foreach = foreach_update(model)
    if config.optimizer == "adamw":
        kind, options = torch.optim.AdamW, dict(betas=config.betas)
        # A compiled update on CUDA (CUDA graphs, a tensor lr) needs the step counts on the device.
        capturable = compiled_update and next(model.parameters()).is_cuda
        # torch's foreach AdamW refuses a tensor lr unless capturable (a mode for CUDA and other
        # accelerators, not the CPU); compiled, the single-tensor form fuses the same arithmetic.
        implementation = dict(capturable=capturable, foreach=False if compiled_update and not capturable else foreach)
    else:
        kind, options = torch.optim.SGD, dict(momentum=config.momentum, nesterov=config.nesterov)
        implementation = dict(foreach=foreach)
    options.update(lr=config.lr, weight_decay=config.weight_decay)
    if scaled and not compiled_update and has_fused_step(kind, next(model.parameters()).device):
        optimizer = kind(groups, fused=True, **options)
        # torch's fused SGD makes its momentum buffers with empty_like in its first step, and a first
        # step GradScaler skips (an inf: its scale starts at 65536) leaves them unwritten, so the
        # next steps read leftover memory as momentum (NaN weights). Zero buffers step as none do.
        prime_optimizer_state(optimizer)
        return optimizer
    return kind(groups, **options, **implementation)  # under a scaler without a fused kernel: it syncs


@functools.lru_cache(maxsize=None)
def has_fused_step(kind, device):
    """Whether torch's fused `kind` (SGD, AdamW) steps on `device` in this torch: one step of a
    one-element parameter. torch 2.3 builds a fused optimizer for CPU parameters and fails at
    its first step (NotImplementedError: its fused kernels are CUDA's; the CPU's came in 2.4);
    others refuse at once (RuntimeError)."""
    weight = torch.zeros(1, device=device, requires_grad=True)
    weight.grad = torch.zeros(1, device=device)
    try:
        kind([weight], lr=0.0, fused=True).step()
    except (RuntimeError, NotImplementedError):
        return False
    return True


IMPLEMENTATION = ("foreach", "fused", "capturable")  # how an optimizer updates, not what it computes


def load_optimizer_state(optimizer, state):
    """`optimizer.load_state_dict(state)`, keeping this run's implementation of the update
    (`IMPLEMENTATION`: what `make_optimizer` chose for this run's device, precision and
    `--compile`, which may differ from the checkpoint's: an eager fp16 run's fused optimizer
    resumed compiled, a CPU run resumed on a GPU) rather than the checkpoint's, and AdamW's
    step counts where that implementation keeps them (on the parameters' device, float32, when
    fused or capturable; on the CPU otherwise, where torch's other forms read them)."""
    kept = [{key: group[key] for key in IMPLEMENTATION if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, implementation in zip(optimizer.param_groups, kept):
        group.update(implementation)
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            step = optimizer.state.get(p, {}).get("step")
            if isinstance(step, torch.Tensor):
                optimizer.state[p]["step"] = step.to(dtype=torch.float32, device=p.device) if on_device \
                    else step.to(device="cpu")


def foreach_update(model):
    """True on the CPU and CUDA: the update then runs a few ops over all parameters at once
    (torch's CPU default is a loop over them: 57 ops a step for the cnn's 11 parameters against
    7), with the same arithmetic, bitwise. None (torch's own choice) on other devices."""
    return True if next(model.parameters()).device.type in ("cpu", "cuda") else None


NORM_LAYERS = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm,
               *((torch.nn.RMSNorm,) if hasattr(torch.nn, "RMSNorm") else ()))


def parameter_groups(model, weight_decay, norm_decay=True):
    """The optimizer's parameter groups: one, or, without `norm_decay`, the weights of
    convolutions and linear layers (decayed) apart from biases and normalisation weights
    (not decayed: every parameter of a normalisation layer, every bias, and any other 1-D
    parameter), the usual choice when fine-tuning."""
    if norm_decay:
        return [{"params": list(model.parameters())}]
    undecayed = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    undecayed |= {id(p) for name, p in model.named_parameters() if p.ndim <= 1 or name.rpartition(".")[2] == "bias"}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) not in undecayed]},
            {"params": [p for p in params if id(p) in undecayed], "weight_decay": 0.0}]


def evaluates(config, epoch):
    """Whether `epoch` ends with a test evaluation: every `eval_every`-th epoch, and the last."""
    return (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs


def _evaluate(run, data, distributed):
    """(test loss, test accuracy) over every process's slice of the test set."""
    rows = distributed.row_slice(len(data.test_labels))
    loss, correct = distributed.all_reduce_sum(evaluation_sums(
        run.forward, data.test_images[rows], data.test_labels[rows], data.preprocess, run.eval_batch, run.autocast))
    return loss / len(data.test_labels), correct / len(data.test_labels)


def _checkpoint(config, run, epoch, data):
    return {"epoch": epoch + 1, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "method": run.method.state_dict(), "history": run.history, "config": config.identity(),
            "train_logits": _to(run.train_logits, "cpu"),  # None except before a selection
            "data_fingerprint": data.fingerprint,
            "data_content": data.content,  # a user-registered dataset's training images and labels, hashed
            # the input's mean and std: a --norm pretrained run resumes with them, not its file's again
            "normalisation": (data.preprocess.mean.flatten().tolist(), data.preprocess.std.flatten().tolist()),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": _global_rng_state(next(run.model.parameters()).device)}


def _global_rng_state(device):
    """torch's global generators (CPU, and the device's on CUDA): what a model's own random
    draws (dropout) come from. coreaug's selections, plans and augmentations draw from generators
    seeded by (seed, epoch), so a resume needs these alone to go on as an uninterrupted run."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _restore_global_rng(state, device):
    if state is None:  # a checkpoint from before coreaug saved them: the seed's stream
        return
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _log_epoch(config, m):
    accuracy = "-" if m["test_accuracy"] is None else f"{m['test_accuracy']:.2%}"
    progress.say(f"epoch {m['epoch'] + 1}/{config.epochs}  loss {m['train_loss']:.4f}  "
                 f"test acc {accuracy}  {m['epoch_seconds']:.1f} s "
                 f"(selection {m['selection_seconds']:.2f} s)  {m['n_trained']} trained, {m['n_augmented']} augmented")


def inference_batch_size(train_batch_size, device):
    """Batch size of the no-grad passes (evaluation, estimates): on the CPU the training batch,
    since larger batches overflow the caches (an eval pass of the small CNN over 20,000 images
    took 3.4 s at 128 and 6 s at 512); on a GPU 1024, to fill it."""
    return train_batch_size if device.type == "cpu" else max(train_batch_size, 1024)


def warn_cuda_graph_skips(skips, device=None):
    """Say (a warning, once a run) that some of the compiled step's graphs run without CUDA graphs;
    on a `device` other than CUDA (a CUDA graph mode asked for on the CPU) that there are none to
    replay there, rather than blame the graphs."""
    if device is not None and torch.device(device).type != "cuda":
        warnings.warn(f"compile: --compile-mode asks for CUDA graphs, which the {torch.device(device).type} does not "
                      f"have, so the step's {skips.count} graph(s) run without CUDA graphs, compiled as by "
                      "--compile-mode default less its C++ wrapper (the epochs' 'cudagraph_skips' count them); leave "
                      "--compile-mode at auto off a GPU", RuntimeWarning, stacklevel=3)
        return
    why = "; ".join(reason.splitlines()[0] for reason in skips.reasons) or "torch logged no reason"  # no stack traces
    warnings.warn(f"compile: {skips.count} of the compiled step's graphs run without CUDA graphs ({why}), so their "
                  "kernels are launched one by one and the step is slower than with graph replay; the epochs' "
                  "'cudagraph_skips' count them", RuntimeWarning, stacklevel=3)


def compiled_graphs():
    """How many graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _to(tensor, device):
    return None if tensor is None else tensor.to(device)


def _merge_logits(previous, logit_sums):
    """The newest training logits per example: `logit_sums` rows hold summed logits and a count
    in the last column; examples no process trained this epoch keep their previous logits."""
    count = logit_sums[:, -1:]
    fresh = logit_sums[:, :-1] / count.clamp(min=1)
    return fresh if previous is None else torch.where(count > 0, fresh, previous)


class EpochTotals:
    """Loss sum, correct count and logit store of an epoch, accumulated on the device.

    The host reads them (`read`) once at the end of the epoch, and the progress bar at most
    about once a second: a training step never waits for them.
    """

    def __init__(self, device, logit_sums=None):
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)
        self.logit_sums = logit_sums

    def add(self, losses, logits, labels, indices, augmented):
        """Add a batch: per-example `losses`, `logits`, `labels`; with a logit store, the logits
        of the entries not `augmented` (bool; the originals) at rows `indices`."""
        correct = (logits.argmax(1) == labels).sum()
        self.sums[0].add_(losses.detach().sum())  # into the float64 rows as they are: no casts nor stack
        self.sums[1].add_(correct)
        if self.logit_sums is not None:  # (the mask's two kernels a step only where it is read)
            keep = (~augmented).float().unsqueeze(1)
            rows = torch.cat([logits.detach().float() * keep, keep], 1)
            self.logit_sums.index_add_(0, indices, rows.to(self.logit_sums.dtype))

    def add_sums(self, sums, logits, indices, augmented=None):
        """Add a batch's (loss sum, correct) `sums` computed by the step (float64 (2,)); with a
        logit store, the `logits` of the entries not `augmented` (bool) at rows `indices`."""
        self.sums += sums
        if self.logit_sums is not None:
            keep = (~augmented).float().unsqueeze(1)
            rows = torch.cat([logits.float() * keep, keep], 1)
            self.logit_sums.index_add_(0, indices, rows.to(self.logit_sums.dtype))

    def read(self):
        """(loss sum, correct) as Python floats: one device sync."""
        loss_sum, correct = self.sums.tolist()
        return loss_sum, correct


def _train_epoch(config, run, data, plan, strong, weak, epoch, distributed, logit_sums=None):
    """One pass over `plan`: weak augmentation for all, strong for the copies; weighted loss.

    Trains `run.train_forward` (DDP-wrapped or compiled) with `run.optimizer` (and `run.scaler`
    under fp16) in `run.autocast`; max-loss candidates are scored by the bare `run.forward`.

    With `logit_sums` (n, c + 1), adds each original (not strongly augmented) example's logits and
    a count of 1 to its row: the free gradient estimates of `estimates="training"`.

    `plan` is this process's share; its batches are batch_size / world_size, so the
    processes' batches of one step make up one global batch of the epoch's plan. Every step
    is queued on the device without waiting on it: the plan moves there once, random draws
    come from `RandomSource`s keyed per entry on the device (`DevicePlan.draws`), sizes are known
    on the host, and the totals stay on the device until the epoch ends.
    """
    forward, optimizer, autocast, scaler = run.train_forward, run.optimizer, run.autocast, run.scaler
    device, world = distributed.device, distributed.world_size
    batches = plan.on_device(config.batch_size // world, device)
    draws = batches.draws(config.seed, epoch)
    totals = EpochTotals(device, logit_sums)
    context = {"model": run.forward, "preprocess": data.preprocess, "autocast": autocast} if strong.needs_model else {}
    run.train_mode(forward)
    # The bar (rank 0's) counts every process's examples: the shares are equal.
    bar = ProgressBar(len(plan) * world, f"epoch {epoch + 1}/{config.epochs}", config.quiet, world)
    per_call = steps_per_augment_call(config, strong, batches, device)
    for step, images in augmented_steps(batches, data, weak, strong, draws, context, per_call):
        take = batches.batch(step)[0]
        idx = batches.indices[take]
        labels = data.train_labels.index_select(0, idx)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch + step / batches.steps)
        with autocast():
            logits = forward(data.preprocess(images))
            losses = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=config.label_smoothing)
            loss = (losses * batches.weights[take]).mean()
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        totals.add(losses, logits, labels, idx, batches.augmented[take])
        bar.update(len(idx) * world, totals)
    bar.close()
    return totals.read()


def compiles_whole_step(config, distributed):
    """Whether the run trains with `CompiledStep` (augmentation, forward, loss and update
    compiled): `compile`, in one process or several; with `sync_bn` under torchrun (its
    BatchNorm layers call collectives inside the forward) `compile` compiles the model only."""
    return bool(config.compile) and not (config.sync_bn and distributed.world_size > 1)


COMPILING = ("compile: the first steps compile the training step (seconds when torch's compiler cache holds its "
             "graphs, a minute or more when it is empty); the later steps and epochs reuse it")


def recompiling(before, now):
    """The note for a compiled step built again: the selection's size changed the copies a step
    holds (a rule of the user's own that selects a size of its own each time; the built-in ones keep one)."""
    return (f"compile: this selection gives {now} strong copies a step ({before} before), which changes the compiled "
            "step's shapes: it is compiled again (seconds to minutes); a rule that selects the same number "
            "each time keeps one compiled step")


def _train_epoch_compiled(config, run, data, plan, strong, weak, epoch, distributed, logit_sums=None):
    """`_train_epoch` for `compile`: `plan` is laid out by `EpochPlan.fixed_steps` (every batch
    of batch_size, its copies in its last k rows) and each step is one `CompiledStep` call, its
    draws from a `RandomSource` keyed per entry, as the eager step's. Under torchrun `plan` is
    this process's share (batches of batch_size / world_size) and the step averages the
    gradients over the processes inside its graph. Returns (loss sum, correct)."""
    device, world = distributed.device, distributed.world_size
    batches = plan.on_device(config.batch_size // world, device)
    copies = batches.bounds[1] - batches.bounds[0] if batches.steps else 0
    # built once: the built-in rules' layout never changes (a rule of the user's own may select other sizes)
    if run.compiled_step is None or run.compiled_step.copies != copies:
        before = None if run.compiled_step is None else run.compiled_step.copies
        run.compiled_step = CompiledStep(run.model, run.optimizer, weak, strong, data.preprocess, run.autocast,
                                         run.scaler, label_smoothing=config.label_smoothing, copies_per_step=copies,
                                         device=device, compile_mode=config.compile_mode,
                                         processes=distributed if world > 1 else None)
        if distributed.is_main:
            warn_layout_growth(plan, config.batch_size)
        if not config.quiet:  # else the bar sits at 0 while torch compiles
            progress.say(COMPILING if before is None else recompiling(before, copies))
    step_fn = run.compiled_step
    step_fn.new_epoch()
    draws = batches.draws(config.seed, epoch)
    totals = EpochTotals(device, logit_sums)
    run.train_mode(run.model)
    bar = ProgressBar(len(plan) * world, f"epoch {epoch + 1}/{config.epochs}", config.quiet, world)
    for step, images in enumerate(batches.step_images(data.train_images)):
        take = batches.batch(step)[0]
        idx = batches.indices[take]
        labels = data.train_labels.index_select(0, idx)
        keys, numbers = draws.rows(take)
        try:
            sums, logits = step_fn(images, labels, batches.weights[take], keys,
                                   learning_rate(config, epoch + step / batches.steps), numbers)
        except Exception as error:
            if step_fn.cuda_graphs and raised_in_cuda_graph_trees(error):
                raise RuntimeError(
                    f"the compiled step failed inside torch's CUDA graph trees ({one_line(error)}); "
                    "--compile-mode default (compile_mode='default') compiles the step without CUDA graphs") from error
            untraceable = untraceable_code(error) or cpp_build_failed(error)  # at the first step
            if untraceable is not None:
                raise untraceable from error
            raise
        totals.add_sums(sums, logits, idx, batches.augmented[take] if logit_sums is not None else None)
        bar.update(len(idx) * world, totals)
    bar.close()
    return totals.read()


def raised_in_cuda_graph_trees(error):
    """True when `error` was raised inside torch's CUDA graph trees (torch/_inductor/cudagraph_trees.py),
    which record and replay the compiled step's graphs under "reduce-overhead"."""
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.endswith("cudagraph_trees.py"):
            return True
        trace = trace.tb_next
    return False


GPU_AUGMENT_STEPS = 8  # augment_steps None on a GPU: experiments/results/gpu.md, RandAugment 5.9 -> 0.7 ms a step
GPU_AUGMENT_STEPS_SIDE = 64  # ... for images stored at most this wide (the K batches' working copies stay small)


def steps_per_augment_call(config, strong, batches, device):
    """`augment_call_steps` of a run (`config`) on `device` for an epoch's `batches`."""
    return augment_call_steps(config.augment_steps, strong, batches.partners is not None, device,
                              config.store_size or config.image_size)


def augment_call_steps(augment_steps, strong, mixes_partners=False, device=None, side=None):
    """How many steps' batches one weak and one strong call augment: `augment_steps`, by default
    (None) GPU_AUGMENT_STEPS on a CUDA `device` for images stored at most GPU_AUGMENT_STEPS_SIDE
    wide (`side`), where a step's augmentation costs its kernel launches, and 1 elsewhere; always 1
    for max-loss transforms (they score with the model as it is at the step) and for copies mixed
    with partners (crust). The images are the same whatever the number (each entry draws from its
    own key)."""
    if strong.needs_model or mixes_partners:
        return 1
    if augment_steps is None:
        small = side is not None and side <= GPU_AUGMENT_STEPS_SIDE
        return GPU_AUGMENT_STEPS if device is not None and torch.device(device).type == "cuda" and small else 1
    return augment_steps


def augmented_steps(batches, data, weak, strong, draws, context, per_call=1):
    """(step, its weakly augmented uint8 images with the strong copies in place), step after step.

    `draws` (`DevicePlan.draws`) gives every entry its own `RandomSource` stream: an entry
    draws its weak augmentation, and a copy then its strong one, from it, so each entry is
    augmented the same whatever batch, layout, process or call it is in. With `per_call` 1 each
    step's batch is augmented on its own (max-loss candidates scored with the model as it is
    then; crust's copies mixed with their partners). With more, the batches of `per_call` steps
    are augmented by one weak and one strong call and split again: the same images in a
    fraction of the calls."""
    stream = batches.step_images(data.train_images)
    if per_call == 1:
        for step, images in enumerate(stream):
            take, strong_rows = batches.batch(step)
            source = draws.source(take)
            images = weak(images, source)
            if strong_rows is not None:
                labels_of = ({"labels": data.train_labels.index_select(0, batches.indices[take].index_select(0, strong_rows))}
                             if strong.needs_model else {})
                copies = source.select(strong_rows)
                picked = strong(images.index_select(0, strong_rows), copies, **context, **labels_of)
                if batches.partners is not None:
                    picked = mix_with_partners(picked, data.train_images, batches.partners[take].index_select(0, strong_rows),
                                               weak, copies)
                images = images.index_copy_(0, strong_rows, picked)
            yield step, images
        return
    for first in range(0, batches.steps, per_call):
        steps = range(first, min(first + per_call, batches.steps))
        block = [next(stream) for _ in steps]
        sizes = [len(images) for images in block]
        source = draws.source(slice(first * batches.batch_size, first * batches.batch_size + sum(sizes)))
        images = weak(torch.cat(block), source)
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]  # host integers: no wait on the device
        rows = [strong_rows + offset for offset, strong_rows in zip(offsets, (batches.batch(s)[1] for s in steps))
                if strong_rows is not None]
        if rows:
            rows = torch.cat(rows)
            images = images.index_copy_(0, rows, strong(images.index_select(0, rows), source.select(rows)))
        yield from zip(steps, images.split(sizes))


def mix_with_partners(copies, train_images, partners, weak, source):
    """Mixup within a class (CRUST): each strongly augmented copy blended with its partner
    (weakly augmented) by a weight drawn uniformly from [0, 1] (Beta(1, 1)); labels stay.
    `train_images` are in memory on the device (load_run_data refuses to stream for crust): an
    `Images`, or the uint8 tensor of an own loop. `source` is the copies' own (its draws
    continue after their strong augmentation). Any layout whose first dimension is the copies' (a
    float blend of float data; an integer one rounded). uint8 images and float copies (or the other
    way round) are brought to the copies' units as the policies read them (0-255, 0-1): blended as
    they were, a [0, 1] batch held values up to 196, or the copies darkened."""
    if not hasattr(train_images, "read"):
        from coreaug.data.images import as_images
        train_images = as_images(train_images)
    mates = weak(train_images.read(partners), source).float()
    if copies.is_floating_point() and train_images.dtype == torch.uint8:
        mates = mates / 255
    elif copies.dtype == torch.uint8 and train_images.dtype.is_floating_point:
        mates = mates * 255
    lam = uniform(len(copies), source, copies.device).view(-1, *[1] * (copies.dim() - 1))
    blend = lam * copies.float() + (1 - lam) * mates
    return blend.to(copies.dtype) if copies.is_floating_point() else blend.round_().to(copies.dtype)


class ProgressBar:
    """tqdm over an epoch's examples (every process's) whose loss and accuracy (this process's)
    are read from the device at most once a second: each read waits for the queued steps.

    Where stderr is not a terminal (a log file, `nohup`, a batch job) a bar's carriage-return
    frames would fill the log with one endless line: there a plain line on stderr every
    progress.PLAIN_PROGRESS_SECONDS says how far the epoch is instead."""

    def __init__(self, total, description, quiet, world_size=1):
        self.plain = not quiet and not progress.stderr_is_terminal()
        self.bar = tqdm(total=total, desc=description, unit="img", disable=quiet or self.plain, leave=False,
                        dynamic_ncols=True, mininterval=progress.bar_seconds())
        self.total, self.description = total, description
        self.quiet, self.world_size, self.seen = quiet, world_size, 0
        self.every = progress.PLAIN_PROGRESS_SECONDS if self.plain else max(1.0, progress.bar_seconds())
        self.start = self.shown = time.perf_counter()

    def update(self, count, totals):
        self.bar.update(count)
        self.seen += count
        now = time.perf_counter()
        if not self.quiet and now - self.shown >= self.every:
            self.shown = now
            loss_sum, correct = totals.read()
            mine = self.seen / self.world_size
            loss, accuracy, rate = f"{loss_sum / mine:.3f}", f"{correct / mine:.1%}", self.seen / (now - self.start)
            if self.plain:
                tqdm.write(f"{self.description}: {self.seen}/{self.total} img ({self.seen / self.total:.0%})  "
                           f"loss {loss}  acc {accuracy}  {rate:.0f} img/s", file=sys.stderr)
            else:
                self.bar.set_postfix(loss=loss, acc=accuracy)  # the bar shows its own img/s

    def close(self):
        self.bar.close()


def _result(config, history, model, distributed):
    model.eval()  # the user's first call on it predicts (train mode gave a test image 0.21 where eval gave 0.95)
    accuracies = [m["test_accuracy"] for m in history if m["test_accuracy"] is not None] or [float("nan")]
    return TrainResult(
        config=config, history=history, final_test_accuracy=accuracies[-1], best_test_accuracy=max(accuracies),
        total_seconds=sum(m["epoch_seconds"] for m in history),
        selection_seconds=sum(m["selection_seconds"] for m in history), model=model, out=config.out,
        rank=distributed.rank, world_size=distributed.world_size,
    )


def _cpus():
    """"2", or "1 of 2" where this process may use fewer cores than the machine has (a taskset, Slurm or
    container share, which a CPU run's seconds depend on)."""
    from coreaug.devices import usable_cores

    usable, machine = usable_cores(), os.cpu_count()
    return str(machine) if usable == machine else f"{usable} of {machine}"


def _summary(config, result, device, precision, data):
    history = result.history
    threads = list(dict.fromkeys(m["threads"] for m in history if "threads" in m)) or [torch.get_num_threads()]
    versions = list(dict.fromkeys(m["coreaug"] for m in history if "coreaug" in m)) or [_version()]
    sizes = list(dict.fromkeys(m["world_size"] for m in history if "world_size" in m)) or [result.world_size]
    return {
        "config": dataclasses.asdict(config), "precision": precision,
        "final_test_accuracy": result.final_test_accuracy, "best_test_accuracy": result.best_test_accuracy,
        "total_seconds": result.total_seconds, "selection_seconds": result.selection_seconds,
        "estimate_seconds": sum(m["estimate_seconds"] for m in history),
        "facility_location_seconds": sum(m["facility_location_seconds"] for m in history),
        "eval_seconds": sum(m["eval_seconds"] for m in history),
        "epochs": len(history), "n_trained": sum(m["n_trained"] for m in history),
        "n_augmented": sum(m["n_augmented"] for m in history),
        "device": str(device), "world_size": sizes[0] if len(sizes) == 1 else sizes,  # a list: resumed on others
        "coreaug": versions[0] if len(versions) == 1 else versions, "torch": torch.__version__,  # (a list: resumed)
        "threads": threads[0] if len(threads) == 1 else threads,  # a list: resumed on other counts
        "machine": f"{platform.machine()} {_cpus()} cpus"
                   + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        **provenance(data, config),
        "model": model_inputs(config, data),  # (model.pt's, readable without torch)
    }
