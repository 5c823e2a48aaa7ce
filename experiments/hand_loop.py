"""A hand-written training loop of the model coreaug trains: the reference a fast step is held to.

What a speed-minded engineer writes when nothing but speed matters (airbench's habits): the
training set on the device as one uint8 tensor; each step gathers its batch by index, pads by 4
and crops at a random offset and flips, in a few batched ops on the whole batch; the model
from ``coreaug.create_model`` (the same network coreaug trains), channels_last, bf16 autocast on
CUDA (none on the CPU unless asked); plain cross-entropy (no label smoothing, no weights); SGD
with Nesterov momentum (foreach, fused, or compiled with a tensor learning rate); coreaug's
default schedule shape (cosine decay to 0 over the run, set every step) and the dataset's batch
size and rates from ``coreaug.training.config.DATASET_DEFAULTS``. The last partial batch of an
epoch is dropped, so every step has the same shapes (what a compiled or graph-captured step
needs). Nothing in a step waits for the device: loss sums stay there until the epoch ends.

With ``compile``, the forward unit (augmentation, normalisation, model, loss) is one
``torch.compile`` graph whose backward AOTAutograd compiles too, and the optimizer update is a
second compiled function (the learning rate a device tensor copied from a precomputed
schedule, so no step recompiles). ``compile_mode`` passes through, e.g. "reduce-overhead" (CUDA
graphs) or "max-autotune-no-cudagraphs" on CUDA.

Ops per step are counted apart from the timing, on a few more steps, two ways:

- aten ops (eager only): every op dispatched under a ``TorchDispatchMode`` (``OpCounter``, views
  included; on CUDA each non-view op is at least one kernel launch). torch.compile runs a
  compiled function eagerly while such a mode is active, so this count cannot see compiled code.
- launches (eager and compiled): under ``torch.profiler``; on CUDA the kernels, copies and fills
  the device ran; on the CPU the outermost aten ops the host issued plus the compiled C++
  kernels (``record_compiled_kernels()`` must be called before compiling for the profiler to
  see them).

    python experiments/hand_loop.py --dataset digits --epochs 3 [--batch-size 32] [--compile]
        [--device cpu|cuda] [--precision auto|bf16|fp32] [--compile-mode reduce-overhead]

prints the result as JSON. ``experiments/bench_trainer.py`` runs this loop beside coreaug's
strategies in one table.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch
import torch.nn.functional as F

from coreaug.training.config import DATASET_DEFAULTS, FALLBACK_DEFAULTS
from coreaug.training.sync_audit import OpCounter
from script_checks import checked

PRECISIONS = ("auto", "bf16", "fp32")
OPTIMIZERS = ("auto", "foreach", "fused", "compiled")


def record_compiled_kernels():
    """Make inductor's C++ kernels (the CPU's compiled code) visible to torch.profiler, so that
    `count_launches` counts them; call before anything is compiled. A no-op cost while no
    profiler runs."""
    import torch._inductor.config

    torch._inductor.config.cpp.enable_kernel_profile = True


CUDA_LAUNCHES = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaMemcpyAsync",
                 "cudaMemsetAsync", "cudaGraphLaunch"}


def is_runtime_call(name):
    """True for a CUDA runtime or driver API call's profiler name (cudaLaunchKernel, cuMemAlloc...)."""
    return name.startswith("cuda") or (name.startswith("cu") and name[2:3].isupper())


def runtime_calls(events):
    """{name: (host microseconds, calls)} of the CUDA runtime and driver API calls among profiler
    `events`: where a GPU step's host time goes besides Python and torch's dispatch."""
    calls = {}
    for event in events:
        if is_runtime_call(event.name):
            micros, count = calls.get(event.name, (0.0, 0))
            calls[event.name] = (micros + event.cpu_time_total, count + 1)
    return calls


def count_launches(run, device, host=None):
    """How many launches `run()` makes, under torch.profiler: on CUDA, the device's kernel, copy
    and fill events (or, where the profiler reports none, the host's launch calls); on the CPU,
    the outermost aten ops plus inductor's compiled kernels (see `record_compiled_kernels`).
    With a dict `host`, it is given `runtime_calls` of what ran (empty on the CPU)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        run()
        if cuda:
            torch.cuda.synchronize()
    events = prof.events()
    if host is not None:
        host.update(runtime_calls(events))
    if cuda:
        on_device = sum(1 for e in events if e.device_type == DeviceType.CUDA)
        return on_device or sum(1 for e in events if e.name in CUDA_LAUNCHES)
    return sum(1 for e in events if _outermost_launch(e))


def _outermost_launch(event):
    if not (event.name.startswith("aten::") or "cpp_fused" in event.name):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def pad_crop_flip(images, *, pad=4, flip=True):
    """Pad a uint8 (B, C, H, W) batch by `pad` zero pixels, crop it back at a uniformly random
    offset per example, and mirror half the examples (with `flip`): one gather over the batch.
    Draws from torch's default generator on the batch's device (traceable by torch.compile)."""
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (batch, 1, 1), device=device)
    left = torch.randint(0, 2 * pad + 1, (batch, 1, 1), device=device)
    cols = torch.arange(width, device=device).view(1, 1, width)
    if flip:
        cols = torch.where(torch.rand(batch, 1, 1, device=device) < 0.5, width - 1 - cols, cols)
    rows = top + torch.arange(height, device=device).view(1, height, 1)
    index = (rows * (width + 2 * pad) + left + cols).view(batch, 1, height * width)
    picked = padded.flatten(2).gather(2, index.expand(batch, channels, height * width))
    return picked.view(batch, channels, height, width)


def cosine_rates(lr, steps_per_epoch, epochs):
    """The learning rate of every step: cosine decay from `lr` to 0 over the run (coreaug's
    default schedule, no warm-up), as a float64 list."""
    total = steps_per_epoch * epochs
    return [lr * 0.5 * (1 + math.cos(math.pi * step / total)) for step in range(total)]


def dataset_defaults(dataset):
    """(batch size, lr, weight decay, flip) coreaug uses for `dataset` (a registered name; a folder
    or anything else takes the fallback, CIFAR's)."""
    d = DATASET_DEFAULTS.get(dataset, FALLBACK_DEFAULTS)
    return d["batch_size"], d["lr"], d["weight_decay"], d["flip"]


def _check(images, labels, epochs, batch_size, precision, optimizer):
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images must be a uint8 tensor of shape (N, C, H, W); convert them with "
                         f"images.to(torch.uint8), got {getattr(images, 'dtype', type(images))}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),):
        raise ValueError(f"labels must be a tensor of shape ({len(images)},), one label per image")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= len(images):
        raise ValueError(f"batch_size must be an integer in [1, {len(images)}] (the number of images), "
                         f"got {batch_size!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")


def run_hand_loop(images, labels, *, model="cnn", epochs=2, batch_size=128, device="cpu", compile=False,
                  compile_mode=None, lr=0.1, weight_decay=5e-4, momentum=0.9, flip=True, precision="auto",
                  optimizer="auto", channels_last=True, count_steps=3, num_classes=None, seed=0):
    """Train `model` (a name for ``coreaug.create_model``) on `images` (uint8 (N, C, H, W)) and
    `labels` (N,) for `epochs`, and time it.

    Every epoch trains N // batch_size full batches of a fresh permutation (the last partial
    batch dropped: fixed shapes). `precision` "auto" is bf16 autocast on CUDA, fp32 on the CPU.
    `optimizer`: "foreach" SGD, "fused" SGD (CUDA), or "compiled" (the update compiled, with a
    tensor learning rate); "auto" is "compiled" with `compile`, else "foreach". After timing,
    `count_steps` more steps run under `OpCounter` (0: no count).

    Returns a dict: examples_per_s and ms_per_step (over the epochs after the first; the first
    alone when there is one), epoch_seconds (each epoch), compile_seconds (the first epoch's
    excess over the others, with `compile` and more than one epoch, else None), ops_per_step
    (aten ops under OpCounter; None when compiled), launches_per_step (`count_launches`),
    host_calls (per step, {CUDA runtime call: (host microseconds, calls)}; empty on the CPU),
    steps_per_epoch, batch_size, train_loss (the last epoch's mean), precision, optimizer.
    """
    _check(images, labels, epochs, batch_size, precision, optimizer)
    device = torch.device(device)
    torch.manual_seed(seed)
    images, labels = images.to(device), labels.to(device).long()
    num_classes = num_classes or int(labels.max()) + 1
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    optimizer = optimizer if optimizer != "auto" else ("compiled" if compile else "foreach")
    net = coreaug.create_model(model, images.shape[1], num_classes)
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # The training set's own mean and std, as coreaug normalises (norm="dataset"), folded into one
    # scale and shift per channel.
    pixels = images.float().div_(255)
    mean, std = pixels.mean((0, 2, 3)), pixels.std((0, 2, 3)).clamp_(min=1e-3)
    scale, shift = (1 / (255 * std)).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)
    del pixels
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward_loss(batch, targets):
        x = pad_crop_flip(batch, flip=flip)
        x = (x.float() * scale + shift).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), targets)
        return loss, (logits.argmax(1) == targets).sum()

    steps = len(images) // batch_size
    rates_host = cosine_rates(lr, steps, epochs)
    rates = torch.tensor(rates_host, dtype=torch.float32, device=device)
    lr_now = rates[:1].clone()  # the compiled update reads the rate from here
    opt = torch.optim.SGD(net.parameters(), lr=lr_now if optimizer == "compiled" else lr, momentum=momentum,
                          nesterov=True, weight_decay=weight_decay,
                          **({"fused": True} if optimizer == "fused" else {"foreach": True}))
    step_loss = torch.compile(forward_loss, mode=compile_mode) if compile else forward_loss
    update = torch.compile(opt.step, mode=compile_mode) if optimizer == "compiled" else opt.step

    def train_step(batch, targets, step):
        if compile:  # one step, one path of CUDA graph trees: the compiled update reads the backward's gradients
            torch.compiler.cudagraph_mark_step_begin()
        if optimizer == "compiled":
            lr_now.copy_(rates[step])
        else:
            rate = rates_host[step]
            for group in opt.param_groups:
                group["lr"] = rate
        loss, correct = step_loss(batch, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        update()
        return loss.detach(), correct

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    net.train()
    epoch_seconds, train_loss = [], float("nan")
    for epoch in range(epochs):
        sync()
        start = time.perf_counter()
        order = torch.randperm(len(images), device=device)
        sums = torch.zeros(2, device=device)
        for i in range(steps):
            take = order[i * batch_size:(i + 1) * batch_size]
            loss, correct = train_step(images.index_select(0, take), labels.index_select(0, take), epoch * steps + i)
            sums += torch.stack([loss, correct.float()])
        sync()
        epoch_seconds.append(time.perf_counter() - start)
        train_loss = sums[0].item() / steps
    steady = epoch_seconds[1:] or epoch_seconds
    seconds = sum(steady) / len(steady)
    host_calls = {}
    ops, launches = count_step_ops(train_step, images, labels, batch_size, count_steps, steps * epochs - 1,
                                   dispatch=not compile, host=host_calls)
    return {
        "examples_per_s": steps * batch_size / seconds, "ms_per_step": 1000 * seconds / steps,
        "epoch_seconds": epoch_seconds,
        "compile_seconds": epoch_seconds[0] - seconds if compile and epochs > 1 else None,
        "ops_per_step": ops, "launches_per_step": launches, "host_calls": host_calls, "steps_per_epoch": steps,
        "batch_size": batch_size,
        "train_loss": train_loss,
        "precision": "bf16" if bf16 else "fp32", "optimizer": optimizer, "compile": bool(compile),
        "compile_mode": compile_mode, "device": str(device),
    }


def count_step_ops(train_step, images, labels, batch_size, count_steps, last_step, *, dispatch=True, host=None):
    """(aten ops, launches) per `train_step`, means over `count_steps` steps: under OpCounter
    (None without `dispatch`, e.g. for compiled steps, which run eagerly under it) and under
    torch.profiler (`count_launches`; a dict `host` is given the runtime calls per step,
    {name: (microseconds, calls)}). (None, None) for `count_steps` 0."""
    if not count_steps:
        return None, None
    batch, targets = images[:batch_size], labels[:batch_size]
    train_step(batch, targets, last_step)  # one step outside the count: anything still lazy is built

    def steps():
        for _ in range(count_steps):
            train_step(batch, targets, last_step)

    ops = None
    if dispatch:
        with OpCounter() as counter:
            steps()
        ops = counter.total / count_steps
    calls = {}
    launches = count_launches(steps, images.device, calls)
    if host is not None:
        host.update({name: (micros / count_steps, count / count_steps) for name, (micros, count) in calls.items()})
    return ops, launches / count_steps


def main():
    """The CLI: load a registered dataset with coreaug.load_dataset, run the loop, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits",
                        help="a registered dataset, loaded with coreaug.load_dataset (default: %(default)s)")
    parser.add_argument("--model", default=None, help="default: the dataset's coreaug default")
    parser.add_argument("--epochs", type=int, default=2, help="epochs to train (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the dataset's")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="keep only this many training images, the first ones (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU (default: %(default)s)")
    parser.add_argument("--optimizer", default="auto", choices=OPTIMIZERS,
                        help="the SGD update: foreach, fused (CUDA) or compiled; auto: compiled with --compile, "
                             "else foreach")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the forward unit (augmentation, model, loss); with --optimizer auto "
                             "the update too")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile's mode with --compile, e.g. reduce-overhead (default: torch's default)")
    args = checked(parser, parser.parse_args())
    record_compiled_kernels()
    data = coreaug.load_dataset(args.dataset, progress=False)
    images, labels = torch.as_tensor(data.train_images), torch.as_tensor(data.train_labels)
    if args.train_limit:
        images, labels = images[:args.train_limit], labels[:args.train_limit]
    batch_size, lr, weight_decay, flip = dataset_defaults(args.dataset)
    model = args.model or DATASET_DEFAULTS.get(args.dataset, FALLBACK_DEFAULTS)["model"]
    result = run_hand_loop(images, labels, model=model, epochs=args.epochs, batch_size=args.batch_size or batch_size,
                           device=args.device, compile=args.compile, compile_mode=args.compile_mode, lr=lr,
                           weight_decay=weight_decay, flip=flip, precision=args.precision, optimizer=args.optimizer,
                           num_classes=data.num_classes)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
