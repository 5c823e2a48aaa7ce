"""`coreaug train`: the flags map one to one onto coreaug.TrainConfig."""
import dataclasses
import os
import select
import shlex
import sys
import time
import warnings

import click
from click.core import ParameterSource

import coreaug
from coreaug.bench.workers import Terminated, sigterm_raises
from coreaug.data import is_folder_dataset
from coreaug.data.cache_key import CACHE_DIR_TEXT
from coreaug.errors import CachesKept, UsageError, listed
from coreaug.training.config import (BALANCES, ESTIMATES, GRADIENT_KINDS, MODES, NORMS, OPTIMIZERS,
                                     REFERENCE_STRATEGIES, SCHEDULES, STRATEGIES, STREAMS, WEAK,
                                     refuse_own_split_fraction, unused_options, unused_settings)
from coreaug.training.compiled_step import COMPILE_MODES
from coreaug.training.precision import PRECISIONS
from coreaug.training.run_files import RESULTS, epochs_kept

from .errors import program_words, user_errors


def _floats(text, flag="--milestones", example="0.5,0.75"):
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated numbers like {example}, got {text!r}") from None


def _default(field):
    """TrainConfig's default of `field`: the one place defaults are written."""
    return coreaug.TrainConfig.__dataclass_fields__[field].default


def _flag_default(field):
    """A TrainConfig default as click shows and parses it (tuples as comma-separated text)."""
    value = _default(field)
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value


def train_options(command):
    """The TrainConfig flags, shared by `coreaug train` and `coreaug bench`."""
    options = [
        click.option("--dataset", default=_default("dataset"), show_default=True,
                     help=f"{', '.join(coreaug.available_datasets())}, or a folder of images."),
        click.option("--image-size", type=int,
                     help="Folder datasets: square size of the images "
                          "[default: their own size when they share one, else 64]."),
        click.option("--store-size", type=int,
                     help="Folder datasets: size the images are stored at for resized-crop runs, which crop "
                          "from it; evaluation takes the centre --image-size square "
                          "[default: 256/224 x --image-size with --weak resized-crop, else --image-size]."),
        click.option("--val-fraction", type=float, default=_default("val_fraction"), show_default=True,
                     help="Folder datasets without val/ or test/: share of each class held out for testing."),
        click.option("--skip-bad-images", is_flag=True, help="Folder datasets: leave unreadable images out (counted) instead of stopping."),
        click.option("--stream", type=click.Choice(STREAMS), default=_default("stream"), show_default=True,
                     help="Folder datasets: always|never|auto: read batches from the decoded cache on disk instead of "
                          "holding the images in memory (auto: when the node's processes' copies would take over half the free "
                          "host (or cgroup-limited) or GPU memory)."),
        click.option("--cache-dir", type=click.Path(file_okay=False),
                     help=f"Folder datasets: where images are decoded to [default: {CACHE_DIR_TEXT}]."),
        click.option("--workers", type=int,
                     help="Folder datasets: processes decoding images [default: the usable cores, up to 8]."),
        click.option("--weak", type=click.Choice(WEAK), default=_default("weak"), show_default=True,
                     help="Weak augmentation every example gets: pad-crop (pad 4, random crop, flip), resized-crop (random-resized crop, scale 0.08-1, ratio 3/4-4/3, and flip), auto (resized-crop for folder datasets of --image-size 128 and more, else pad-crop)."),
        click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset (or its standard folder) [default: search $COREAUG_DATA, ~/.cache/coreaug, /usr/share/datasets/<name>]."),
        click.option("--download/--no-download", default=_default("download"), show_default=True, help="Download missing files (checksummed)."),
        click.option("--model", help="resnet20|32|56, resnet18, wrn-16-8, cnn (small images); resnet18_imagenet, "
                                     "resnet34|50|101, wide_resnet50_2 (ImageNet stem); or your own as "
                                     "package.module:function, called with in_channels and num_classes "
                                     "[default: per dataset]."),
        click.option("--pretrained", type=click.Path(dir_okay=False),
                     help="Start from this local state dict file (e.g. torchvision's); nothing is downloaded, and a "
                          "classifier of another class count stays freshly initialised."),
        click.option("--norm", type=click.Choice(NORMS),
                     help="Input mean/std: imagenet (0.485,0.456,0.406 / 0.229,0.224,0.225, what torchvision's "
                          "weights expect), dataset (the training set's) or pretrained (what the --pretrained file "
                          "records: a coreaug model.pt's) [default: imagenet with --pretrained, else dataset]."),
        click.option("--norm-decay/--no-norm-decay", default=_default("norm_decay"), show_default=True,
                     help="Weight decay on biases and normalisation weights too (--no-norm-decay is common "
                          "when fine-tuning; --pretrained leaves it as given)."),
        click.option("--mode", type=click.Choice(MODES), default=_default("mode"), show_default=True, help="append: all examples + augmented copies of the selection; subset: the weighted selection + its copies."),
        click.option("--select-every", type=int, default=_default("select_every"), show_default=True, help="Re-select every R epochs: at epochs 0, R, 2R, ..."),
        click.option("--augment", default=_default("augment"), show_default=True, help="Strong augmentation policy: randaugment, trivialaugment, autoaugment (CIFAR-10 policy), autoaugment-imagenet, cutout, maxloss (best of --candidates by loss), weak, resized-crop, or a chain like randaugment+cutout."),
        click.option("--candidates", type=int, default=_default("candidates"), show_default=True, help="Candidates per example for --augment maxloss (Wu et al., ICML 2020)."),
        click.option("--copies", type=int, default=_default("copies"), show_default=True, help="Augmented copies per selected example."),
        click.option("--weight-augmented", is_flag=True, help="Give augmented copies the coreset weights (else weight 1)."),
        click.option("--gradients", type=click.Choice(GRADIENT_KINDS), default=_default("gradients"), show_default=True, help="Gradient estimate: softmax - onehot (logits) or its product with the last layer's input."),
        click.option("--estimates", type=click.Choice(ESTIMATES), default=_default("estimates"), show_default=True,
                     help="clean: an eval pass over the clean training set at each selection (the paper); training: reuse "
                          "the previous epoch's training logits, at no cost (append mode, logit gradients; the "
                          "first selection is a clean pass)."),
        click.option("--gradient-dim", type=int, default=_default("gradient_dim"), show_default=True,
                     help="Gradient estimates wider than this (last-layer gradients; logit gradients past this many "
                          "classes) are randomly projected to at most this size, batch by batch; float16 when they "
                          "would exceed 1 GiB."),
        click.option("--knn", type=int, default=_default("knn"), show_default=True, help="Neighbours per example in the selection graph."),
        click.option("--balance", type=click.Choice(BALANCES), default=_default("balance"), show_default=True, help="Per-class budgets: equal (each class the same number, the paper's; with classes of unequal sizes, small ones weigh more) or proportional (each class in proportion to its size; the smallest get a pick at some selections, at their share's rate)."),
        click.option("--loss-filter", type=float,
                     help="coreset-lowloss, coreset-history, coreset-heldout: share of each class's highest "
                          "losses cut [default: estimated: the examples the model rates below chance "
                          "(coreset-lowloss), the high group of a two-group split of the mean losses (the others)]."),
        click.option("--selection-warmup", type=int,
                     help="Epochs of random selections before the first model-based one [default: the rule's: 20% "
                          "of --epochs for crust, at most the epoch of the last selection; else 0]."),
        click.option("--epochs", type=int, help="Epochs [default: per dataset]."),
        click.option("--eval-every", type=int, default=_default("eval_every"), show_default=True,
                     help="Evaluate on the test set after every N-th epoch and after the last (the others log null test figures)."),
        click.option("--batch-size", type=int, help="Batch size [default: per dataset]."),
        click.option("--lr", type=float, help="Peak learning rate [default: per dataset; 1e-3 with --optimizer adamw]."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_default("optimizer"), show_default=True,
                     help="sgd (momentum, Nesterov) or adamw (--betas; lr 1e-3 and weight decay 0.05 by default)."),
        click.option("--momentum", type=float, default=_default("momentum"), show_default=True, help="SGD's momentum."),
        click.option("--nesterov/--no-nesterov", default=_default("nesterov"), show_default=True, help="SGD's Nesterov momentum."),
        click.option("--betas", default=_flag_default("betas"), show_default=True, help="AdamW's betas."),
        click.option("--weight-decay", type=float, help="Weight decay [default: per dataset; 0.05 with --optimizer adamw]."),
        click.option("--schedule", type=click.Choice(SCHEDULES), default=_default("schedule"), show_default=True,
                     help="Learning-rate schedule: cosine, or multistep (lr / 10 at --milestones)."),
        click.option("--milestones", default=_flag_default("milestones"), show_default=True, help="multistep: fractions of training where lr drops 10x."),
        click.option("--warmup-epochs", type=float, default=_default("warmup_epochs"), show_default=True,
                     help="Epochs of linear learning-rate warm-up before the schedule."),
        click.option("--label-smoothing", type=float, default=_default("label_smoothing"), show_default=True,
                     help="Label smoothing of the cross-entropy."),
        click.option("--label-noise", type=float, default=_default("label_noise"), show_default=True, help="Fraction of training labels flipped to another class, uniformly (symmetric noise)."),
        click.option("--flip/--no-flip", default=None, help="Horizontal flips in weak augmentation [default: per dataset]."),
        click.option("--train-limit", type=int,
                     help="Train on a fixed random sample of this many examples (the same for every seed; a folder "
                          "is decoded whole first)."),
        click.option("--test-limit", type=int, help="Evaluate on a fixed random sample of this many examples (the same for every seed)."),
        click.option("--device", default=_default("device"), show_default=True, help="auto, cpu, cuda, cuda:N (a single process makes N the current GPU)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=_default("precision"), show_default=True,
                     help="auto (bf16 on GPUs that have it, else fp16 with a gradient scaler; fp32 on the CPU), bf16, fp16, "
                          "fp32; the resolved value is in summary.json."),
        click.option("--compile", is_flag=True, help="Compile the whole training step: augmentation, model and update, fixed shapes (the step's graphs built in the first epoch, the evaluation's at the first evaluation, and reused; graphs_compiled in metrics.jsonl), replayed as CUDA graphs on a GPU (cudagraph_skips counts graphs that are not)."),
        click.option("--compile-mode", type=click.Choice(COMPILE_MODES), default=_default("compile_mode"),
                     show_default=True,
                     help="torch.compile's mode with --compile: auto (reduce-overhead, CUDA graphs, on a GPU; torch's "
                          "default elsewhere), default (no CUDA graphs), reduce-overhead, max-autotune, "
                          "max-autotune-no-cudagraphs."),
        click.option("--augment-steps", type=int,
                     help="Steps' batches augmented per call: fewer, larger calls, the same images [default: 8 "
                          "eager on a GPU for images of at most 64 px, else 1; maxloss (refused) and crust (ignored) take "
                          "one step's batch a call]."),
        click.option("--sync-bn", is_flag=True, help="Under torchrun on GPUs: BatchNorm statistics over the global batch."),
        click.option("--seed", type=int, default=_default("seed"), show_default=True,
                     help="Seed of everything random (CPU runs repeat exactly at the same thread count)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines."),
        click.option("--tensorboard", is_flag=True,
                     help="Also write each epoch's metrics as TensorBoard scalars to the run's tensorboard/ folder."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_config(**flags):
    """A TrainConfig from click's flag values (milestones parsed from text)."""
    if flags["optimizer"] == "sgd" and flags["nesterov"] and flags["momentum"] == 0:  # TrainConfig names its fields
        raise UsageError("Nesterov momentum (on by default) needs a --momentum above 0, got --momentum 0; pass "
                         "--no-nesterov for plain SGD, or a momentum such as 0.9")
    flags["milestones"] = _floats(flags["milestones"])
    flags["betas"] = _floats(flags["betas"], "--betas", "0.9,0.999")
    return coreaug.TrainConfig(**flags)


@click.command("train")
@click.option("--subset", type=float, default=_default("subset"), show_default=True, help="Selection size as a fraction of the training set, in (0, 1].")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=_default("strategy"), show_default=True, help="A selection rule: coreset (the paper's), random, maxloss (highest current loss), or one beyond "
                   "the paper (the manual's Training page describes each); or a reference: full (augment all), "
                   "none (weak only).")
@train_options
@click.option("--out", type=click.Path(),
              help="Run folder for config.json, metrics.jsonl, summary.json, checkpoint.pt and model.pt; the line "
                   "'run folder: DIR' names the default one "
                   "[default: a folder in runs/ named by dataset, strategy, subset, time and seed].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint (the same final metrics as an uninterrupted run).")
@click.option("--overwrite", is_flag=True, help="Start the run in --out again, deleting its results (and replacing a run of other settings).")
@user_errors(again="run it again with --resume (it goes on after the last epoch it saved, if any)")
def train(**flags):
    """Train a classifier, strongly augmenting only a re-selected subset (random by default, or the paper's
    coreset: --strategy).

    Stopped by Ctrl-C (exit code 130) or SIGTERM (143; SIGHUP 129, SIGUSR1 138), it says after which epoch and prints the
    command that continues it (--resume). A --resume of a finished run prints its result and
    writes nothing."""
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for the run
    if not main_process:  # its warnings too (the process ends with the command), but the note of the
        warnings.simplefilter("ignore")  # caches a changed folder keeps, from whichever rank built the new one
        warnings.simplefilter("default", CachesKept)
    named = flags["out"] is None
    if named:
        if flags["resume"]:
            raise UsageError("--resume continues the run in --out; give --out, the folder of the run to continue")
        flags["out"] = default_out(flags["dataset"], flags["strategy"], flags["subset"], flags["seed"])
    config = make_config(**flags).resolved()  # a mistake in the settings is refused before a folder is named
    refuse_unused_flags(config)
    made = []  # the folders this command created, removed again if the run is refused
    if named and main_process:  # a folder of its own, even beside a run started in the same second
        made = [path for path in ("runs",) if not os.path.isdir(path)]
        flags["out"] = claim_folder(flags["out"])
        made.append(flags["out"])
        config = dataclasses.replace(config, out=flags["out"])
    elif flags["resume"] and not flags["quiet"] and main_process:  # (bench resumes every run it trains: not here)
        note = fresh_resume_note(flags["out"])
        if note:
            click.echo(note)

    def announce(path):  # the folder is named once the trainer's own checks (device, channels, weights) pass too
        click.echo(f"run folder: {flags['out']}")
    try:
        with sigterm_raises():
            try:
                result = coreaug.train(config, on_start=announce) if made else coreaug.train(config)
            except BaseException:
                for path in reversed(made):  # refused before writing: the folder claimed for it goes
                    _remove_if_empty(path)
                raise
        if result.rank == 0:
            click.echo(f"final test accuracy {result.final_test_accuracy:.2%} (best {result.best_test_accuracy:.2%}), "
                       f"{result.total_seconds:.1f} s training ({result.selection_seconds:.1f} s of it selection)"
                       + (f"; outputs in {result.out}" if result.out else ""))
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        if main_process:
            click.echo(stopped_line(f"terminated ({exc.signal_name})" if terminated else "interrupted", flags["out"],
                                    config.epochs), err=True)
        sys.exit(exc.exit_code if terminated else 130)
    except BrokenPipeError:
        if not stdout_closed():  # another pipe (a worker's): a failure, with its traceback
            raise
        silence_stdout()  # stdout's reader went away (`| head`, a `| tee` that died): said on stderr
        if main_process:
            click.echo(stopped_line("stdout closed", flags["out"], config.epochs), err=True)
        sys.exit(1)


def _as_typed(param, value):
    """The flag of `param` as the command line gave it: --no-nesterov for a switch turned off, not --nesterov."""
    if getattr(param, "secondary_opts", None) and value is False:
        return param.secondary_opts[0]
    return param.opts[0]


def refuse_unused_flags(config, strategy=True):
    """UsageError for a flag given on this command line that another option makes unused (--candidates
    without --augment maxloss, --betas with SGD, ...: config.unused_options), as --compile-mode without
    --compile is refused. Flags the strategy leaves unread (--knn with --strategy random: config.unused_settings)
    are let through, since a loop over strategies shares them, with a warning naming them (not with
    `strategy` False: bench's grid has strategies of its own)."""
    ctx = click.get_current_context()
    given = {p.name: _as_typed(p, ctx.params.get(p.name)) for p in ctx.command.params
             if p.name and ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE}
    if "val_fraction" in given:  # (the default's value typed too, which the API cannot tell; but a --resume
        # of a run whose stop line repeated it, from before it was refused)
        refuse_own_split_fraction(config.dataset, config.val_fraction, "--val-fraction", typed=not config.resume)
    options = unused_options(config)
    for name, (needs, instead) in options.items():
        if name in given:
            has = "this run has" if strategy else "the grid's runs have"
            raise UsageError(f"{given[name]} applies to {needs}; {has} {instead}, which never reads it: "
                             f"leave {given[name]} out")
    unread_by_strategy = unused_settings(config) - set(options) if strategy else set()
    if "val_fraction" in given and "val_fraction" in unread_by_strategy:  # (a --resume's, at the default)
        warnings.warn(f"--val-fraction has no effect: {config.dataset} has its own test split (val/ or test/)")
    unread = [flag for name, flag in given.items() if name in unread_by_strategy and name != "val_fraction"]
    # full and none augment everyone or no one: the subset's settings change nothing, but the method's state
    # records them, so a --resume still compares them (said, as the others are not compared)
    recorded = [flag for name, flag in given.items()
                if strategy and config.strategy in REFERENCE_STRATEGIES and name in ("subset", "balance", "mode")]
    if unread or recorded:
        several = len(unread + recorded) > 1
        compared = (f" ({listed(recorded)} {'are' if len(recorded) > 1 else 'is'} still recorded, and a --resume "
                    f"compares {'them' if len(recorded) > 1 else 'it'})" if recorded else "")
        warnings.warn(f"{listed(unread + recorded)} {'are' if several else 'is'} not read by --strategy "
                      f"{config.strategy}: {'they have' if several else 'it has'} no effect on this run{compared}")


def fresh_resume_note(out):
    """The line a --resume into `out` prints when it finds no run to continue (None when it finds one)."""
    path = os.path.expanduser(out)
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "config.json")):
        return f"--resume: no run in {out} yet; starting it"
    if not any(os.path.exists(os.path.join(path, name)) for name in RESULTS):
        return f"--resume: the run in {out} stopped before its first epoch ended (nothing to resume); starting it again"
    return None


def stopped_line(how, out, epochs):
    """One line for a run stopped from outside: how, after which epoch (as its folder `out` keeps
    it), and the command that continues it."""
    done = epochs_kept(out)
    if done >= epochs and os.path.exists(os.path.join(out, "summary.json")):
        return f"{how}: the run had finished; its result: {resume_command(out)}"
    where = f"after epoch {done} of {epochs}" if done else "before its first epoch ended"
    return f"{how}: the run stopped {where}; continue it with: {resume_command(out)}"


def resume_command(out):
    """`coreaug train` with the flags given on this command line, --out `out` and --resume; under
    torchrun, launched as this run was: `torchrun --nproc-per-node N -m coreaug train ...` with N
    this node's processes (LOCAL_WORLD_SIZE), and over several nodes a word on the launch's other options."""
    ctx = click.get_current_context()
    per_node = os.environ.get("LOCAL_WORLD_SIZE")  # set by torchrun
    words = ["torchrun", "--nproc-per-node", per_node, "-m", "coreaug"] if per_node else program_words()
    words += ["train"]
    for param in ctx.command.params:
        if param.name in ("out", "resume", "overwrite") or \
                ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            words += [param.opts[0]] if value else param.secondary_opts[:1]
        else:
            words += [param.opts[0], str(value)]
    given = ctx.get_parameter_source("cache_dir") is ParameterSource.COMMANDLINE
    if os.environ.get("COREAUG_CACHE_DIR") and not given and is_folder_dataset(ctx.params["dataset"]):
        # the variable's folder, named: a shell without it would decode the whole folder again elsewhere
        words += ["--cache-dir", os.path.realpath(os.path.expanduser(os.environ["COREAUG_CACHE_DIR"]))]
    command = shlex.join(words + ["--out", out, "--resume"])
    if per_node and int(os.environ.get("WORLD_SIZE", per_node)) > int(per_node):
        command += " (on every node, with the launch's --nnodes and --rdzv-* options)"
    return command


def stdout_closed():
    """Whether stdout is a pipe whose reader has gone (polling its end reports an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (io.UnsupportedOperation is an OSError)
        return False


def silence_stdout():
    """Point stdout at /dev/null, so that Python's flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        pass


def default_out(dataset, strategy, subset, seed=0):
    """runs/<dataset>-<strategy>-<subset>-<time>-seed<seed>: a folder's name for a folder dataset, cut
    so that the whole name fits a file system's 255 bytes (with claim_folder's -N): a folder named in
    over ~200 bytes (80 CJK characters) made a name that the file system refused."""
    name = os.path.basename(os.path.abspath(os.path.expanduser(dataset))) or "dataset"  # ".": the folder's own name
    suffix = f"-{strategy}-{subset:g}-{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    while name and len(os.fsencode(name + suffix)) > 255 - len("-9999"):
        name = name[:-1]
    return os.path.join("runs", name + suffix)


def claim_folder(out):
    """Create `out`, or `out`-2, `out`-3, ... when it exists (another run named it in the same second),
    and return the one created: os.mkdir creates it or fails, so two runs never share one."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    for number in range(1, 10_000):
        path = out if number == 1 else f"{out}-{number}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise UsageError(f"{out} and 9,998 numbered folders beside it exist already; give --out")


def _remove_if_empty(path):
    """Remove the folder `path` if nothing was written into it (a run refused before its first file)."""
    try:
        os.rmdir(path)
    except OSError:
        pass
