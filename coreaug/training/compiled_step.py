"""The whole training step under `--compile`: augmentation, forward, loss and update compiled.

With torch's SGD (the default optimizer) or AdamW the step is one compiled graph (`CompiledStep`,
`one_graph_update`): the weak policy on the batch and the strong policy on its last k rows (the
step's copies: `EpochPlan.fixed_steps` puts them there, k the same every step), the model's
forward through `torch.func.functional_call`, the weighted cross-entropy, its gradients by
`torch.func.grad` and torch's functional SGD or AdamW update (`torch.optim.sgd.sgd`,
`torch.optim.adamw.adamw`: the code of their `step`) on the parameters and the optimizer's
state (momentum buffers; moments and step counts) in place, traced whole (`fullgraph=True`:
a graph break is an error). No autograd engine runs and no `.grad` is written or zeroed.

With fp16 the graph also does GradScaler's work (`LossScaling`): the loss multiplied by the
scale, the gradients divided by it and checked for infs and NaNs, the update of a step with one
undone (`torch.where`) and the scale grown or backed off, on the device (GradScaler's `step`
reads the flag on the host); the same updates and scales as GradScaler's, bit for bit.

Otherwise (an optimizer other than torch's SGD and AdamW) two compiled units:

1. augment + forward + loss, as above; its backward is AOT autograd's compiled backward, run
   by `loss.backward()`;
2. the optimizer update: `optimizer.step()` compiled (fp16: the scaler's step, eager).

Random draws come from a `RandomSource` keyed per entry (an int64 key per row,
`DevicePlan.image_keys`: a hash of seed, epoch, example and slot, the eager step's keys; their
first numbers hashed ahead, `DevicePlan.draws`), so every draw is in the graph, each entry
draws what it draws in the eager step, and a new step's keys are a new input, not a recompile.
Each parameter group's learning rate is a 0-dim tensor on the parameters' device, set by
`fill_` every step (a kernel with the value as its argument: no recompile and no host sync).

On CUDA the graphs use mode "reduce-overhead" (CUDA graphs: fixed shapes, the plan's tensors
allocated once an epoch; parameters, buffers and optimizer state updated where they are), and
each step begins with `torch.compiler.cudagraph_mark_step_begin()`, so that the units of one
step are one path of CUDA graph trees (the update reads the backward's gradients); on the CPU
the default mode. In the two-unit form fp16's GradScaler stays eager (its inf check reads a
flag on the host each step), with an eager update.

Guards: dynamo checks each compiled unit's guards (about 600 for the one with the forward: the
modules, policies and globals it reads; 0.09 ms a step on a CPU core,
experiments/results/step_guards.md) at every step of the first epoch, then at each epoch's
first step only (`CompiledStep.new_epoch`); the other steps run the units' compiled graphs
without them (`skip_guard_eval_unsafe`). Nothing they guard
changes within an epoch: shapes are fixed, the rate and the draws' key are tensor inputs, and
evaluation and selection happen between epochs.

Inputs: the one graph reads the trained parameters, the optimizer's state and the buffers as a few
flat tensors (`FlatTensors`: one per parameter group, state key and buffer dtype; the model's and
the optimizer's tensors become their views, with their own strides) and updates each group's
parameters as one tensor, so a call passes about 24 inputs instead of one per tensor (resnet20:
195), which took the host's time outside the graph from 0.81 to 0.58 ms a step on a CPU core,
the same parameters bit for bit (experiments/results/step_inputs.md); on CUDA graph trees each
static input's address is checked at every replay.

Max-loss transforms are traced with the forward: the policy's K candidates of the copies are scored
by the same model in the same graph, in eval mode (BatchNorm reads its running statistics and
does not update them) under no_grad, and dynamo replays the `eval()` / `train()` toggles as
attribute writes; the chosen copies then go through the training forward. The eager twin
(`compile=False`) makes the same draws and picks the same candidates.

What is refused (`check_compilable`, at the start of a run): torch before 2.9
(`compile_supported`), rules that mix copies with partners (crust), which read a second image
set in the middle of the step, `augment_steps` (the compiled step augments its own batch) and,
on the CPU, a machine where inductor finds no C++ compiler (`check_cpp_compiler`) or keeps its
cache on a noexec file system (`check_cache_executable`). A model whose
forward dynamo cannot trace whole is found at the first step, when it is traced
(`untraceable_code` says where and why).

Under torchrun each process runs this step on its share of every batch (`EpochPlan.fixed_steps`
with `world_size`: the copies of a batch a multiple of the processes, so every share has the
same shapes), without DDP: rank 0's model is broadcast at the start, and between the gradients
and the update (before fp16's inf check, as under DDP) the graph averages them over the
processes in one all-reduce (`Distributed.mean_of`: torch's functional collectives, traced
into the graph; DDP's average, bit for bit; in the two-unit form `Distributed.average_gradients`
between the units). With
`--sync-bn` (BatchNorm layers that call collectives in the forward) `--compile` compiles the
model only, under DDP.
"""
import inspect
import os
import re
import types
import warnings

import torch
import torch.nn.functional as F
from torch.optim.adamw import adamw as functional_adamw
from torch.optim.sgd import sgd as functional_sgd

from coreaug.augment.sampling import RandomSource
from coreaug.errors import UsageError, chain, first_line
from coreaug.files import in_coreaug
from coreaug.selection.rules import RULES
from coreaug.training.plan import REPEAT_SLOTS


COMPILES_FROM = (2, 9)  # the oldest torch release whose compiler builds and runs the step (see `compile_supported`)


def compile_supported(version=None):
    """Whether torch `version` (default: the one imported) compiles coreaug's step: 2.9 and later.

    On the CPU, coreaug's compile tests pass with torch 2.9.1, 2.11 and 2.13; with 2.8.0 a
    compiled kernel aborts the process at its first step, 2.7.1's inductor writes C++ that
    does not build, and 2.5.1 and 2.3.1 cannot trace the step (experiments/results/torch_versions.md).
    """
    release = re.match(r"(\d+)\.(\d+)", version or torch.__version__)
    return release is not None and (int(release.group(1)), int(release.group(2))) >= COMPILES_FROM


def check_compilable(config, world_size=1, device=None):
    """Raise UsageError if `config` (compile=True) asks for what the compiled step refuses, in a
    run of `world_size` processes; given the run's `device`, also if it is the CPU and inductor
    finds no C++ compiler there (`check_cpp_compiler`) or its cache cannot hold programs
    (`check_cache_executable`)."""
    if not config.compile:
        return
    rule = RULES.get(config.strategy)
    if rule is not None and rule.mixup:
        raise UsageError(f"compile does not take strategy {config.strategy!r}: its copies are mixed with partner "
                         "images read in the middle of the step, which the compiled step does not trace; "
                         "drop --compile or choose another strategy")
    if config.augment_steps not in (None, 1):
        raise UsageError(f"compile augments each step's own batch, so augment_steps ({config.augment_steps}) "
                         "does not apply; drop --augment-steps or --compile")
    if config.strategy != "none" and config.copies > 0 and config.batch_size <= world_size:
        raise UsageError(f"compile gives every batch the same strong copies, at least one per process, and an "
                         f"original besides: batch_size ({config.batch_size}) must exceed the processes' count "
                         f"({world_size}); raise --batch-size or drop --compile")
    if not compile_supported():
        raise UsageError(f"compile needs torch {'.'.join(map(str, COMPILES_FROM))} or later, and this is torch "
                         f"{torch.__version__}: older releases fail to build or run the compiled step; "
                         "upgrade torch or drop --compile")
    if device is not None and torch.device(device).type == "cpu":
        check_cpp_compiler()
        check_cache_executable()


def check_cpp_compiler():
    """Raise UsageError if inductor finds no working C++ compiler, which it runs to build the
    compiled step's code for the CPU (GPUs take Triton's kernels instead: not checked there).
    The check is torch's own search (`torch._inductor.cpp_builder.get_cpp_compiler`: $CXX, else
    g++, clang++ on macOS, each tried with `--version`, the answer cached): well under a second
    once inductor is imported, where a missing compiler otherwise ends the run with a 100-line
    traceback after its first step is traced, a minute or more in."""
    from torch._inductor import cpp_builder, exc

    search = getattr(cpp_builder, "get_cpp_compiler", None)
    if search is None:  # another torch layout: leave the question to the compile itself
        return
    try:
        search()
    except exc.InvalidCxxCompiler as error:
        raise UsageError(f"compile on the CPU needs a C++ compiler, which torch's inductor runs to build the "
                         f"compiled step, and none works here ({first_line(error)}); install g++ (e.g. "
                         "apt-get install g++) or set CXX to a compiler, or drop --compile") from error


def check_cache_executable():
    """Raise UsageError if torch's inductor keeps its cache (the libraries it builds for the CPU
    and loads, its probe of the CPU's vector instructions among them) on a file system mounted
    noexec, as /tmp is on hardened hosts: the probe failed without a word, inductor wrote code for
    no vector unit, and the run ended a minute in with a compiler error and advice to install g++."""
    noexec = getattr(os, "ST_NOEXEC", 0)
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: leave the question to the compile itself
        return
    folder = os.path.abspath(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)  # the folder is made at the compile
    try:
        flags = os.statvfs(existing).f_flag
    except OSError:
        return
    if noexec and flags & noexec:
        raise UsageError(f"compile on the CPU loads the code torch's inductor builds from its cache folder "
                         f"({folder}), which is on a file system mounted noexec; set TORCHINDUCTOR_CACHE_DIR to "
                         "a folder on a disk that allows programs (e.g. under your home), or drop --compile")


TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def untraceable_code(error):
    """A UsageError for `error` when it is dynamo refusing to trace code that is neither torch's nor
    coreaug's (a given model's forward: a Python branch on a tensor's value, `.item()`, numpy,
    print) into the step's one graph (`fullgraph=True`): what failed, where (that code's line, the
    innermost of dynamo's `real_stack` outside torch) and what to do, with `error` to chain; also
    for a model the step cannot take at all (`model_compile_cannot_train`). None for any other
    error, and for one raised in coreaug's code, a failure that keeps its traceback."""
    from torch._dynamo import exc

    known = model_compile_cannot_train(error)
    if known is not None:
        return known
    # torch 2.9 raises "Graph break under GenericContextWrappingVariable" (torch.func's context) from
    # the model's own refusal: the first refusal in the chain whose innermost code is the user's
    for raised in chain(error):
        if not isinstance(raised, (exc.Unsupported, exc.UserError)):
            continue
        frames = [frame for frame in getattr(raised, "real_stack", None) or ()
                  if not _inside(frame.filename, TORCH_DIR)]
        if not frames or in_coreaug(frames[-1].filename):
            continue
        frame = frames[-1]
        line = f" (`{frame.line.strip()}`)" if frame.line else ""
        return UsageError(f"compile cannot trace the training step into one graph: {first_line(raised)} at "
                          f"{frame.filename}:{frame.lineno} in {frame.name}{line}; the compiled step traces the "
                          "model's forward whole, which a Python branch on a tensor's value, .item(), numpy or "
                          "print prevents: rewrite that code (torch.where for a branch) or drop --compile")
    return None


# What torch says (in `error` or the errors it was raised from) when the given model itself is one
# the compiled step cannot take, and what to tell the user: the model's own code is not at fault.
CANNOT_TRAIN = (
    ("don't yet support saved tensor hooks", "its forward uses activation checkpointing (torch.utils.checkpoint, "
     "saved tensor hooks), which the step's torch.func.grad cannot run: drop --compile or the checkpointing"),
    ("can't be used with nn.DataParallel", "it is an nn.DataParallel, whose parameters the step cannot swap in: "
     "return the module itself (one process trains on one device; launch several with torchrun)"),
    ("has no attribute `_orig_mod`", "it is compiled already (torch.compile(module)): return the module itself; "
     "--compile compiles it with the whole step"),
)


def model_compile_cannot_train(error):
    """A UsageError when `error` (or one it was raised from) is torch refusing a kind of model
    the compiled step cannot train (`CANNOT_TRAIN`), else None."""
    for raised in chain(error):
        text = str(raised)
        for marker, why in CANNOT_TRAIN:
            if marker in text:
                return UsageError(f"compile cannot train this model: {why}")
    return None


def cpp_build_failed(error):
    """A UsageError when `error` (or one it was raised from) is inductor's C++ compiler failing to
    build the compiled step's code on the CPU, else None: a compiler that answers `--version`
    (`check_cpp_compiler`) but lacks the C++ standard library's headers, say, ended the run with
    a 100-line traceback at its first step. The message holds the compiler's first error line."""
    for raised in chain(error):
        if type(raised).__name__ == "CppCompileError":
            output = getattr(raised, "output", "") or str(raised)
            line = next((part.strip() for part in output.splitlines() if "error" in part.lower()), first_line(raised))
            return UsageError(f"the C++ compiler cannot build the compiled step's code ({line[:240]}); install g++ "
                              "with its C++ standard library (e.g. apt-get install g++) or set CXX to a working "
                              "compiler, or drop --compile")
    return None


def _inside(filename, folder):
    return os.path.abspath(filename).startswith(folder + os.sep)


GROWTH_WARNED = 1.5  # `warn_layout_growth` speaks from this many entries per entry of the plan


def warn_layout_growth(plan, batch_size):
    """Say (a warning) when `plan`, an epoch laid out by `EpochPlan.fixed_steps` for batches of
    `batch_size`, trains GROWTH_WARNED or more times the entries the plan itself held. The
    layout fills whole batches, each with the same number of copies, and tops the originals'
    rows up with repeats of the plan's originals (and the copies' rows with its copies): up to a
    batch more an epoch, a few percent of a plan of many batches, but for a plan of about a
    batch or less (a small subset or dataset, a large batch) a multiple, and the copies' share
    of the loss drops (14 originals and 14 copies at batch 128: one step whose 114 originals'
    rows hold 100 repeats, the 14 copies 11% of the rows rather than half). Returns the growth
    (entries trained / entries of the plan)."""
    repeats = plan.entry_slots() >= REPEAT_SLOTS
    own = len(plan) - int(repeats.sum())
    growth = len(plan) / max(own, 1)
    if growth < GROWTH_WARNED:
        return growth
    copies = ""
    if plan.n_augmented:
        share_now, share_own = plan.n_augmented / len(plan), int((plan.augmented & ~repeats).sum()) / own
        copies = f", and the strong copies are {share_now:.0%} of the rows trained rather than {share_own:.0%}"
    warnings.warn(f"compile: every step has the same shape, so an epoch trains {len(plan)} entries, {growth:.1f}x the "
                  f"plan's {own}: whole batches of {batch_size}, topped up with repeats of the plan's own "
                  f"entries{copies}; a compiled epoch trains otherwise than an eager one here (the top-up is under a "
                  "batch an epoch: a smaller --batch-size keeps it small), or drop --compile", RuntimeWarning,
                  stacklevel=3)
    return growth


COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_mode(device, mode="auto"):
    """torch.compile's mode for the step's units on `device`, for `mode` (one of COMPILE_MODES):
    "auto" is "reduce-overhead" (CUDA graphs) on CUDA and torch's default (None) elsewhere;
    "default" is None; the others are torch's modes of that name."""
    if mode == "auto":
        return "reduce-overhead" if torch.device(device).type == "cuda" else None
    return None if mode == "default" else mode


def uses_cuda_graphs(device, mode="auto"):
    """True when the step's units on `device` are compiled to replay as CUDA graphs (on the CPU
    inductor skips them, and counts each graph skipped)."""
    return compile_mode(device, mode) in CUDA_GRAPH_MODES


def compile_unit(fn, *, device, fullgraph, mode="auto"):
    """torch.compile `fn` in `compile_mode(device, mode)`; on the CPU with inductor's C++ wrapper.

    The C++ wrapper calls a graph's kernels from C++ instead of from generated Python: the
    one-graph step of the cnn on 8x8 digits took 0.95-1.00x the time without it (two runs,
    paired in one process; the same parameters bit for bit: experiments/results/step_forms.md),
    a small gain, for a few seconds more of a cold compile. On CUDA the graphs replay as CUDA
    graphs, which skip the wrapper anyway.

    Static shapes (`dynamic=False`): a step's shapes never change within a run, but dynamo keeps
    what it saw per code location, so in one process (a bench grid's worker, a notebook) a
    second run with another number of copies a step was traced with a dynamic size (a symbolic
    input, code for any size) instead of its own fixed shapes."""
    mode = compile_mode(device, mode)
    if mode is None and torch.device(device).type == "cpu":  # torch takes a mode or options, not both
        return torch.compile(fn, fullgraph=fullgraph, dynamic=False, options={"cpp_wrapper": True})
    return torch.compile(fn, fullgraph=fullgraph, dynamic=False, mode=mode)


class CudaGraphSkips:
    """Counts the compiled graphs that inductor runs without CUDA graphs although their mode asks
    for them (torch's counter "cudagraph_skips": e.g. a graph with a CPU tensor, a mutated input,
    a dynamic shape), and keeps the reasons torch logs for them ("skipping cudagraphs due to
    ..."), while the context is entered. Such a graph launches its kernels one by one, the cost
    CUDA graphs exist to remove. `count` and `reasons` cover what happened inside the context."""

    def __init__(self):
        import logging

        from torch._inductor import cudagraph_utils

        self.count, self.reasons, self._before = 0, [], None
        # torch logs a skip on its "cudagraphs" artifact log (2.11; 2.9 and older: on "perf_hints")
        self._log = getattr(cudagraph_utils, "cudagraphs_log", None) or cudagraph_utils.perf_hint_log
        reasons = self.reasons

        class Keep(logging.Handler):
            def emit(self, record):
                message = record.getMessage()
                if message not in reasons:
                    reasons.append(message)

        self._handler = Keep()

    @staticmethod
    def total():
        from torch._dynamo.utils import counters

        return counters["inductor"]["cudagraph_skips"]

    def __enter__(self):
        self._before = self.total()
        self._log.addHandler(self._handler)
        return self

    def __exit__(self, *exc):
        self._log.removeHandler(self._handler)
        self.count += self.total() - self._before


def tensor_learning_rates(optimizer, device):
    """Make each parameter group's "lr" a 0-dim float32 tensor on `device` (kept if it is one
    there already) and return them: `fill_` them to change the rate without a recompile."""
    rates = []
    for group in optimizer.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == torch.device(device)):  # e.g. restored on the CPU
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)  # once a run
        torch._dynamo.mark_static_address(group["lr"])  # read where it is (CUDA graphs: not copied in per replay)
        rates.append(group["lr"])
    return rates


def prime_optimizer_state(optimizer):
    """Create the optimizer's per-parameter state now, as its first step would (SGD's momentum
    buffers, AdamW's moments and step count, all zero), so that the compiled update is traced
    once, with the state, instead of once without and again with it. Zero state steps exactly
    as no state: SGD's first step sets the buffer to the gradient, momentum * 0 + gradient;
    AdamW's moments start at zero. A restored state is left alone."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if any(optimizer.state.get(p) for p in params):
        return
    rates, grads, values = [g["lr"] for g in optimizer.param_groups], [p.grad for p in params], \
        [p.detach().clone() for p in params]
    for group in optimizer.param_groups:
        group["lr"] = 0.0  # a float: eager foreach AdamW refuses a tensor lr off CUDA
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    with torch.no_grad():
        for p, grad, value in zip(params, grads, values):
            p.copy_(value)  # lr 0 moves nothing; the copy makes it exact
            p.grad = grad
            for state in optimizer.state[p].values():
                if isinstance(state, torch.Tensor):
                    state.zero_()
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate


def one_graph_update(optimizer):
    """Whether the step is one graph: the gradients taken with `torch.func.grad` and torch's
    functional SGD or AdamW (`torch.optim.sgd.sgd`, `torch.optim.adamw.adamw`: the arithmetic of
    their `step`) applied to them in the same graph. Then no autograd engine runs the backward,
    no `.grad` is written and zeroed, and dynamo looks up one unit's guards, not two: a compiled
    SGD or AdamW step of the cnn on 8x8 digits took 0.83-0.84x the two units' time, with the same
    results bit for bit and 30 kernel launches a step against 43 (one of them gathers a group's
    gradients into its flat tensor, `FlatTensors.gather`; experiments/results/step_forms.md,
    step_forms_adamw.md). fp16's loss scaling (`LossScaling`) and torchrun's gradient averaging
    (`Distributed.mean_of`, a functional all-reduce) are in the graph too. For torch's SGD and
    AdamW (not fused); with another optimizer two units: forward + loss, whose backward autograd
    runs, and `optimizer.step()` (torchrun: the gradients averaged between them; fp16:
    GradScaler's step, eager)."""
    return (type(optimizer) in (torch.optim.SGD, torch.optim.AdamW)
            and not any(group.get("fused") or group.get("differentiable") for group in optimizer.param_groups))


class LossScaling:
    """fp16's loss scaling inside the one-graph step, as `torch.amp.GradScaler`'s `scale`, `step`
    and `update` do it, with nothing read back to the host: the loss is multiplied by the scale,
    the gradients divided by it and checked for infs and NaNs (`unscale`: the arithmetic of
    GradScaler's `unscale_`), the update kept only where none was found (`keep`: a `torch.where` over what
    it wrote, where GradScaler's `step` reads the flag on the host and skips `optimizer.step()`),
    and the scale grown or backed off (`update`: GradScaler's `update`). The scale and
    growth tracker are the scaler's own tensors, updated in place: its `state_dict` (checkpoints),
    `get_scale` and `load_state_dict` read and write what the step uses."""

    def __init__(self, scaler, device):
        if scaler._scale is None:  # GradScaler makes its tensors at its first `scale` call
            scaler.scale(torch.ones((), device=device))
        self.scaler, self.scale, self.growth = scaler, scaler._scale, scaler._growth_tracker
        for t in (self.scale, self.growth):
            torch._dynamo.mark_static_address(t)  # updated in place by the graph
        self.read_settings()

    def read_settings(self):
        """Read the scaler's growth factor, backoff factor and growth interval (eagerly: dynamo does
        not trace GradScaler's getters; the step calls this at each epoch's start)."""
        self.settings = (self.scaler.get_growth_factor(), self.scaler.get_backoff_factor(),
                         self.scaler.get_growth_interval())

    def unscale(self, grads):
        """Divide `grads` (in place) by the scale; returns a (1,) float tensor, nonzero when one
        of them holds an inf or a NaN."""
        # GradScaler's op for this returns a list, which inductor's C++ wrapper (the CPU's) cannot
        # call: the same arithmetic in plain ops (a product by the float32 reciprocal, rounded as there).
        found = torch.stack([torch.isfinite(g).all() for g in grads]).logical_not().any().float().view(1)
        torch._foreach_mul_(grads, self.scale.double().reciprocal().float())
        return found

    @staticmethod
    def keep(found, written, before):
        """Put the tensors `written` by an update back to their values `before` it where `found`."""
        skipped = found[0] > 0
        for tensor, old in zip(written, before):
            tensor.copy_(torch.where(skipped, old, tensor))

    def update(self, found):
        """GradScaler's `update` (`torch._amp_update_scale_`) in plain ops (inductor's C++
        wrapper would call that op through a slower fallback): after a step with an inf or a NaN
        the scale is multiplied by the backoff factor; after `growth_interval` steps without one,
        by the growth factor (when the product is finite); in float64, rounded to float32, as there."""
        growth_factor, backoff_factor, interval = self.settings
        skipped, counted = found[0] > 0, self.growth + 1
        due = counted == interval
        grown = (self.scale.double() * growth_factor).float()
        scale = torch.where(skipped, (self.scale.double() * backoff_factor).float(),
                            torch.where(due & torch.isfinite(grown), grown, self.scale))
        self.growth.copy_(torch.where(skipped | due, torch.zeros_like(counted), counted))
        self.scale.copy_(scale)


def is_dense(t):
    """True when `t` covers its memory without gaps or overlaps (contiguous, channels-last, any
    permutation of a contiguous tensor): it can live in a 1-D block of `numel` elements."""
    expected = 1
    for size, stride in sorted(((t.size(i), t.stride(i)) for i in range(t.dim()) if t.size(i) != 1),
                               key=lambda pair: pair[1]):
        if stride != expected:
            return False
        expected *= size
    return True


class FlatTensors:
    """Tensors of one dtype and device kept as views into one 1-D tensor, `flat`, each with its
    own shape and memory layout (channels-last stays channels-last).

    The one-graph step reads the model's parameters and buffers and the optimizer's state as a
    few flat tensors instead of one input each: a compiled call pays its inputs one by one
    (about 1.6 µs a tensor on a CPU core, so about 0.3 ms a step for resnet20's parameters,
    buffers and momentum), and on CUDA graph trees checks each static input's address. Inside
    the graph `views(flat)` gives the tensors back (views, no copy); outside, the model's
    parameters and buffers and the optimizer's state are these views, so evaluation, selection
    and checkpoints read and write what the graph updates.
    """

    ALIGN_BYTES = 64  # each view starts as aligned as a tensor of its own (see the note in `views`)

    def __init__(self, tensors):
        tensors = list(tensors)
        self.layouts, offset = [], 0
        align = max(1, self.ALIGN_BYTES // tensors[0].element_size())
        for t in tensors:
            order = sorted(range(t.dim()), key=lambda i: (-t.stride(i), i))  # outermost first in memory
            size = -(-t.numel() // align) * align  # numel rounded up: the next view starts aligned
            self.layouts.append((offset, t.numel(), tuple(t.size()), tuple(t.stride()), order, size))
            offset += size
        self.flat = torch.zeros(offset, dtype=tensors[0].dtype, device=tensors[0].device)
        with torch.no_grad():
            for view, t in zip(self.views(self.flat), tensors):
                view.copy_(t)

    @staticmethod
    def fits(tensors):
        """Whether `tensors` (at least one) share a dtype and device and are each dense."""
        tensors = list(tensors)
        return bool(tensors) and all(isinstance(t, torch.Tensor) and t.dtype == tensors[0].dtype
                                     and t.device == tensors[0].device and is_dense(t) for t in tensors)

    def views(self, flat):
        """The tensors, as views of `flat` (this object's `flat`, or the graph's input for it)."""
        # The tensors' own strides, exactly: oneDNN picks its memory format from them (a 1-channel
        # convolution's weight is both contiguous and channels-last; any other strides change the
        # format the whole network runs in).
        return [flat.as_strided(shape, stride, offset) for offset, _, shape, stride, _, _ in self.layouts]

    def gather(self, tensors):
        """One 1-D tensor laid out as `flat`, of `tensors` shaped as the views (e.g. their
        gradients): what an update of the flat tensor as a whole reads (the gaps zero)."""
        pieces = []
        for (_, numel, _, _, order, size), t in zip(self.layouts, tensors):
            pieces.append(t.permute(order).reshape(-1))
            if size > numel:
                pieces.append(t.new_zeros(size - numel))
        return torch.cat(pieces)


class FunctionalModel:
    """`model` as max-loss scoring calls it inside the one-graph step: eval() / train() on the
    model, its forward on `tensors` (trained parameters, the others, buffers: the flat tensors'
    views), so the graph reads the model's tensors once, through the flat inputs, not again as
    the module's own parameters (inputs aliasing inputs, which CUDA graphs cannot keep static)."""

    def __init__(self, model, tensors):
        self.model, self.tensors = model, tensors

    @property
    def training(self):
        return self.model.training

    def modules(self):
        """The model's modules, whose train/eval flags max-loss scoring saves and restores."""
        return self.model.modules()

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode=True):
        self.model.train(mode)
        return self

    def __call__(self, x):
        return torch.func.functional_call(self.model, self.tensors, (x,))


def own_code(method):
    """`method` (bound) rebuilt on a copy of its function's code object.

    dynamo keeps compiled graphs per code object, and both units' guards name this step's
    objects (the optimizer, the policies, the copies per step): each new run's CompiledStep
    compiles them again, and the entries of earlier runs (even those whose optimizer is gone)
    count towards torch's recompile limit (8), so the ninth compiled run in one process (a
    bench grid in one worker, a notebook) failed with FailOnRecompileLimitHit under fullgraph.
    With its own code objects each CompiledStep has its own caches, dropped with it."""
    fn = method.__func__
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__kwdefaults__ = fn.__qualname__, fn.__kwdefaults__
    return types.MethodType(copy, method.__self__)


class CompiledStep:
    """One training step of fixed shapes, compiled (see the module docstring).

    Call `new_epoch()` before an epoch's steps: its first step checks the units' guards (and
    recompiles if, say, a policy changed between epochs); the rest skip them (`skip_guards`).

    Args:
        model: the bare nn.Module (in train mode while stepping).
        optimizer: its optimizer (learning rates become tensors, `tensor_learning_rates`).
        weak, strong: the policies; strong runs on the last `copies_per_step` rows.
        preprocess: uint8 batch -> the model's input.
        autocast: a zero-argument factory of the step's autocast context.
        scaler: a GradScaler (fp16) or None.
        label_smoothing: of the cross-entropy.
        copies_per_step: the strong copies in every batch (k of `fixed_step_layout`).
        device: the training device.
        compile: False runs the same step eagerly (the same draws: for comparisons).
        compile_mode: one of COMPILE_MODES (`compile_mode`): "auto" is CUDA graphs on CUDA.
        processes: under torchrun, the `Distributed` that averages the gradients over the
            processes: in the one graph (`mean_of`, traced), or between the two units
            (`average_gradients`, eagerly); None in one process.
    """

    def __init__(self, model, optimizer, weak, strong, preprocess, autocast, scaler, *, label_smoothing,
                 copies_per_step, device, compile=True, compile_mode="auto", processes=None):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.processes = processes
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.weak, self.strong, self.preprocess, self.autocast = weak, strong, preprocess, autocast
        self.label_smoothing, self.copies = label_smoothing, copies_per_step
        self.one_graph = one_graph_update(optimizer)
        # fp16 in two units: the scaler's eager update takes float rates, set each step as the eager trainer does.
        eager_scaler = scaler is not None and not self.one_graph
        self.rates = [] if eager_scaler else tensor_learning_rates(optimizer, device)
        self.warmed = False
        wrap = (lambda fn, fullgraph: compile_unit(fn, device=device, fullgraph=fullgraph, mode=compile_mode)) \
            if compile else (lambda fn, fullgraph: fn)
        if not eager_scaler:
            prime_optimizer_state(optimizer)
        # optimizer.step without its hooks and the graph breaks torch puts around it; traced
        # whole and run under no_grad (an inference graph: the parameters updated in place).
        self._optimizer_step = inspect.unwrap(type(optimizer).step)
        self._lr_now = None
        self.compiled, self.epochs, self.guards_due = compile, 0, True
        self.cuda_graphs = compile and uses_cuda_graphs(device, compile_mode)
        if self.one_graph:
            self.scaling = LossScaling(scaler, device) if scaler is not None else None
            self._split_parameters()
            self.train_step = wrap(own_code(self._train_step), True)
        else:
            self.forward_loss = wrap(own_code(self._forward_loss), True)
            self.update = wrap(own_code(self._update), True) if scaler is None else self._update

    def _split_parameters(self):
        """For the one-graph step: the model's parameters by name, those the optimizer updates
        (differentiated, in its groups' order; not those with requires_grad False when the step
        is built, which get no gradient from autograd either) apart from the others (held as
        they are), its buffers, and the momentum buffers marked as static addresses (on CUDA
        the graph updates them in place, as it does the parameters and buffers)."""
        updated = {id(p) for p in self.parameters if p.requires_grad}  # as autograd leaves them: no gradient
        named = dict(self.model.named_parameters())
        name_of = {id(p): name for name, p in named.items()}
        self.trained = {name: p for name, p in named.items() if id(p) in updated}
        self.held = {name: p for name, p in named.items() if id(p) not in updated}
        self.group_names = [[name_of[id(p)] for p in group["params"] if id(p) in updated]
                            for group in self.optimizer.param_groups]
        self.buffers = dict(self.model.named_buffers())
        self._flatten()  # marks the flat tensors static
        if self.flat is None:
            for p in self.parameters:
                for state in self.optimizer.state.get(p, {}).values():  # momentum; moments and step counts
                    if isinstance(state, torch.Tensor):
                        torch._dynamo.mark_static_address(state)

    def _trained_groups(self):
        """The trained parameters of each optimizer group, in the group's order."""
        return [[self.trained[name] for name in names] for names in self.group_names]

    def _flatten(self):
        """Move the trained parameters (a `FlatTensors` per optimizer group), the optimizer's tensor
        state (per group and key: momentum; moments and step counts) and the buffers (per dtype and
        device) into flat tensors, the model's parameters and buffers and the optimizer's state
        becoming views of them (same values, same layouts). `self.flat` is None, and every tensor
        its own input as before, when they do not fit (parameters of mixed dtypes in a group, a
        tensor with gaps, state held for some parameters only)."""
        self.flat = None
        groups = self._trained_groups()
        states = []
        for params in groups:
            first = self.optimizer.state.get(params[0], {}) if params else {}
            keys = [key for key, value in first.items() if isinstance(value, torch.Tensor)]
            states.append({key: [self.optimizer.state.get(p, {}).get(key) for p in params] for key in keys})
        kinds = {}
        for name, buffer in self.buffers.items():
            kinds.setdefault((buffer.dtype, buffer.device), []).append((name, buffer))
        if not (all(FlatTensors.fits(params) for params in groups if params)
                and all(FlatTensors.fits(tensors) for state in states for tensors in state.values())
                and all(FlatTensors.fits(b for _, b in named) for named in kinds.values())):
            return
        owners = {}  # a buffer may be held by several modules under several names
        for module in self.model.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    owners.setdefault(id(buffer), []).append((module, name))
        flat_params = [FlatTensors(params) if params else None for params in groups]
        flat_states = [{key: FlatTensors(tensors) for key, tensors in state.items()} for state in states]
        flat_buffers = [([name for name, _ in named], FlatTensors(b for _, b in named)) for named in kinds.values()]
        with torch.no_grad():
            for params, flat in zip(groups, flat_params):
                for param, view in zip(params, flat.views(flat.flat) if flat else []):
                    param.data = view
            for params, state in zip(groups, flat_states):
                for key, flat in state.items():
                    for param, view in zip(params, flat.views(flat.flat)):
                        self.optimizer.state[param][key] = view
            for names, flat in flat_buffers:
                for name, view in zip(names, flat.views(flat.flat)):
                    for module, attribute in owners[id(self.buffers[name])]:
                        module._buffers[attribute] = view
                    self.buffers[name] = view
        self.flat = {"params": flat_params, "states": flat_states, "buffers": flat_buffers}
        for flat in self._flat_tensors():
            torch._dynamo.mark_static_address(flat.flat)  # updated in place by the graph (CUDA graphs: static)

    def _flat_tensors(self):
        if self.flat is None:
            return []
        return [f for f in self.flat["params"] if f is not None] + \
            [f for state in self.flat["states"] for f in state.values()] + [f for _, f in self.flat["buffers"]]

    def _flat_still_held(self):
        """Whether the model's parameters and buffers and the optimizer's state are still the
        flat tensors' views (something that replaced one, say a loaded optimizer state, breaks that)."""
        def held(tensor, flat):
            return tensor is not None and tensor.untyped_storage().data_ptr() == flat.flat.untyped_storage().data_ptr()

        for params, flat, state in zip(self._trained_groups(), self.flat["params"], self.flat["states"]):
            if not all(held(p, flat) for p in params if flat is not None) or not all(
                    held(self.optimizer.state.get(p, {}).get(key), f) for key, f in state.items() for p in params):
                return False
        named = dict(self.model.named_buffers())
        return all(held(named.get(name), flat) for names, flat in self.flat["buffers"] for name in names)

    def _state_views(self):
        """(trained parameters by name, buffers by name, per group the optimizer state of each
        trained parameter) as the step reads them: views of the flat tensors (in the graph, of
        its inputs), or the tensors themselves when nothing was flattened."""
        if self.flat is None:
            return self.trained, self.buffers, [[self.optimizer.state[p] for p in params]
                                                for params in self._trained_groups()]
        trained, buffers, states = {}, {}, []
        for names, flat, state in zip(self.group_names, self.flat["params"], self.flat["states"]):
            trained.update(zip(names, flat.views(flat.flat) if flat else []))
            views = {key: f.views(f.flat) for key, f in state.items()}
            states.append([{key: views[key][i] for key in views} for i in range(len(names))])
        for names, flat in self.flat["buffers"]:
            buffers.update(zip(names, flat.views(flat.flat)))
        return trained, buffers, states

    def _augment(self, images, labels, key, numbers=None, model=None):
        source = RandomSource(key, numbers)
        images = self.weak(images, source)
        if self.copies:
            first = images.shape[0] - self.copies
            copies = source.select(slice(first, None)) if key.dim() else source
            strong = self.strong(images[first:], copies, **self._scoring(labels[first:], model))
            images = torch.cat([images[:first], strong])
        return images

    def _scoring(self, labels, model=None):
        """What a policy that scores with the model (max-loss) is called with, as the eager
        trainer calls it: the bare model (eval mode and no_grad inside the policy, traced into
        the unit), the copies' labels, the preprocessing and the step's autocast."""
        if not getattr(self.strong, "needs_model", False):
            return {}
        return {"model": model or self.model, "labels": labels, "preprocess": self.preprocess,
                "autocast": self.autocast}

    def _loss(self, forward, inputs, labels, weights):
        """(the weighted loss, per-example losses and logits detached) of `forward(inputs)`, in
        the step's autocast: what both forms of the step differentiate."""
        with self.autocast():
            logits = forward(inputs)
            losses = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=self.label_smoothing)
            loss = (losses * weights).mean()
        return loss, (losses.detach(), logits.detach())

    @staticmethod
    def _sums(losses, logits, labels):
        """float64 (2,): the batch's loss sum and correct count, the epoch's totals, in the graph."""
        correct = (logits.argmax(1) == labels).sum()
        return torch.stack([losses.sum().double(), correct.double()])

    def _forward_loss(self, images, labels, weights, key, numbers):
        images = self._augment(images, labels, key, numbers)
        loss, (losses, logits) = self._loss(self.model, self.preprocess(images), labels, weights)
        return loss, self._sums(losses, logits, labels), logits

    def _train_step(self, images, labels, weights, key, numbers):
        """Augmentation, forward, loss, gradients (`torch.func.grad`) and the SGD or AdamW
        update: one graph (`one_graph_update`)."""
        trained, buffers, states = self._state_views()
        scoring = self.model if self.flat is None else FunctionalModel(self.model, (trained, self.held, buffers))
        images = self._augment(images, labels, key, numbers, scoring)
        inputs = self.preprocess(images)

        def loss_of(trained, buffers):
            forward = lambda x: torch.func.functional_call(self.model, (trained, self.held, buffers), (x,))  # noqa: E731
            loss, aux = self._loss(forward, inputs, labels, weights)
            return (loss * self.scaling.scale if self.scaling else loss), aux  # fp16: GradScaler's scale

        grads, (losses, logits) = torch.func.grad(loss_of, has_aux=True)(trained, buffers)
        with torch.no_grad():
            groups = [i for i, names in enumerate(self.group_names) if names]
            if self.flat is None:
                group_grads = [[grads[name] for name in self.group_names[i]] for i in groups]
            else:  # each group's gradients as one flat tensor: its update runs on its flat tensors
                group_grads = [[self.flat["params"][i].gather([grads[name] for name in self.group_names[i]])]
                               for i in groups]
            if self.processes is not None:  # DDP's average, in one all-reduce, before GradScaler's check as under DDP
                means = iter(self.processes.mean_of([g for gs in group_grads for g in gs]))
                group_grads = [[next(means) for _ in gs] for gs in group_grads]
            found = self.scaling.unscale([g for gs in group_grads for g in gs]) if self.scaling else None
            for i, grad in zip(groups, group_grads):
                group = self.optimizer.param_groups[i]
                if self.flat is None:
                    params = [trained[name] for name in self.group_names[i]]
                    written = params + [t for s in states[i] for t in s.values() if isinstance(t, torch.Tensor)]
                else:
                    written = [self.flat["params"][i].flat] + [f.flat for f in self.flat["states"][i].values()]
                before = [t.clone() for t in written] if found is not None else None
                if self.flat is None:
                    self._functional_update(group, params, grad, states[i])
                else:
                    self._flat_update(group, self.flat["params"][i], self.flat["states"][i], grad[0])
                if found is not None:
                    self.scaling.keep(found, written, before)
            if found is not None:
                self.scaling.update(found)
        return self._sums(losses, logits, labels), logits

    def _flat_update(self, group, params, state, grad):
        """`_functional_update` of a group's flat parameters `params` by its gathered gradient
        `grad`, on its flat `state`, the flat tensors themselves updated (updating their views
        instead would have the graph rewrite a whole flat tensor per view). Every parameter of a
        group has the same step count: one, the first's, counts for all, and is then copied to
        the others."""
        steps = state.get("step")
        one_step = steps.views(steps.flat)[0] if steps is not None else None
        tensors = {key: (one_step if key == "step" else flat.flat) for key, flat in state.items()}
        self._functional_update(group, [params.flat], [grad], [tensors])
        if steps is not None:
            steps.flat.fill_(one_step.clone())

    def _functional_update(self, group, params, grads, state):
        """One parameter group's SGD or AdamW update of `params` by `grads`, in place, on their
        optimizer `state` (a dict per parameter), as its `step` would make it (the one-graph
        step's update)."""
        lr = group["lr"] if torch.compiler.is_compiling() else self._lr_now
        if type(self.optimizer) is torch.optim.SGD:
            functional_sgd(params, grads, [s.get("momentum_buffer") for s in state], foreach=group["foreach"],
                           weight_decay=group["weight_decay"], momentum=group["momentum"], lr=lr,
                           dampening=group["dampening"], nesterov=group["nesterov"], maximize=group["maximize"])
            return
        beta1, beta2 = group["betas"]
        # Traced, the capturable form keeps the step count and rate as tensors in the graph (the other
        # turns them into Python numbers, a read back to the host); eagerly it is for CUDA only.
        capturable = group["capturable"] or torch.compiler.is_compiling()
        functional_adamw(params, grads, [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
                         [s["max_exp_avg_sq"] for s in state] if group["amsgrad"] else [],
                         [s["step"] for s in state], foreach=group["foreach"], capturable=capturable,
                         amsgrad=group["amsgrad"], beta1=beta1, beta2=beta2, lr=lr,
                         weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])

    def _update(self):
        if torch.compiler.is_compiling():
            self._optimizer_step(self.optimizer)
            return
        # Run eagerly (compile=False, or torch.compile skipping the frame under a dispatch mode):
        # the host's float rate, as the eager trainer sets it; an eager optimizer reads a tensor
        # rate on the host (a sync per step).
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_now
        try:
            self._optimizer_step(self.optimizer)
        finally:
            for group, rate in zip(self.optimizer.param_groups, rates):
                group["lr"] = rate

    skip_guards = True  # from the second epoch, after its first step (False: check them every step)

    def new_epoch(self):
        """Check the guards again at the next step (the model, policies or optimizer may have
        changed since the last epoch: evaluation, selection). Every step of the first epoch
        checks them (it compiles)."""
        self.epochs += 1
        self.guards_due = True
        if self.one_graph and self.scaling is not None:
            self.scaling.read_settings()
        if self.one_graph and self.flat is not None and not self._flat_still_held():
            self.buffers = dict(self.model.named_buffers())  # e.g. a state loaded between epochs:
            self._flatten()  # the graph reads the tensors held now

    def __call__(self, images, labels, weights, key, lr, numbers=None):
        """Train one step on uint8 `images` with `labels` and loss `weights` (this step's rows),
        drawing from `key` (int64 on the device: a key per row, or one 0-dim key for the step; see
        `RandomSource`; with a key per row, `numbers` may hold their first numbers made ahead,
        `RandomSource.ahead`) at learning rate `lr` (a float).
        Returns (float64 (2,): the batch's loss sum and correct count, logits), detached: use
        them before the next step (under CUDA graphs the next replay overwrites them)."""
        if self.compiled and self.skip_guards and self.epochs > 1 and not self.guards_due:
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                return self._step(images, labels, weights, key, lr, numbers)
        self.guards_due = False
        return self._step(images, labels, weights, key, lr, numbers)

    def _reduce(self):
        if self.processes is not None:
            self.processes.average_gradients(self.parameters)

    def _step(self, images, labels, weights, key, lr, numbers):
        if not self.warmed:
            # Policies build their constant tables (magnitudes, layouts) on first use and cache them:
            # built eagerly here, they are read by the trace instead of recompiling it at step 2.
            with torch.no_grad():
                self._augment(images, labels, key, numbers)
            self.warmed = True
        if self.cuda_graphs:
            # A new step for CUDA graph trees: the units called until the next mark (forward, backward,
            # update) are one path of the tree. Unmarked, every compiled call starts a new generation once
            # no backward is pending, so the update would free the gradients it reads, the backward's
            # outputs, in the warm-up (torch 2.11 raised "accessing tensor output of CUDAGraphs that has
            # been overwritten" there). The last step's returned totals and logits are invalid from here.
            torch.compiler.cudagraph_mark_step_begin()
        for rate in self.rates:
            rate.fill_(lr)
        self._lr_now = lr
        if self.scaler is not None and not self.one_graph:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if self.one_graph:
            return self.train_step(images, labels, weights, key, numbers)
        self.optimizer.zero_grad(set_to_none=True)
        loss, sums, logits = self.forward_loss(images, labels, weights, key, numbers)
        if self.scaler is None:
            loss.backward()
            self._reduce()
            with torch.no_grad():
                self.update()
        else:
            self.scaler.scale(loss).backward()
            self._reduce()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return sums, logits
