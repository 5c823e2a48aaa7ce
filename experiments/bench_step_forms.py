"""The compiled step's forms side by side in one process: two units or one graph, inductor's
Python or C++ wrapper (issue 26's CPU case: the cnn on 8x8 one-channel images, batch 32, 7
RandAugment copies a step, SGD with Nesterov momentum).

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_step_forms.py [--repeats 20] [--steps 50] [--optimizer sgd]
        [--out experiments/results/step_forms.md]

`--optimizer adamw`: the same with coreaug's AdamW (its defaults: lr 1e-3, weight decay 0.05; the
one graph runs torch's functional AdamW, `torch.optim.adamw.adamw`).
`--precision fp16`: the step in fp16 autocast with a GradScaler (the one graph scales, checks and
skips inside the graph, `compiled_step.LossScaling`; the two units run GradScaler's eager `step`
and `update`, which read its inf flag on the host each step).

Builds one `coreaug.training.compiled_step.CompiledStep` per form, each on its own copy of the
same model (the same seed), compiles them (a few warm-up steps), then times `--steps` steps of
each in turn, `--repeats` times, and reports ms a step (median and fastest) and the median of
the per-repeat ratios against the first form: in one process the forms share the process's
speed, which on a virtual machine differs from process to process by more than the gaps
measured. Launches a step: torch.profiler's outermost aten ops plus inductor's kernels over
10 steps (hand_loop.count_launches, as bench_trainer.py counts them; not for the C++ wrapper,
whose calls the profiler does not show one aten op per launch: its kernels are the Python
wrapper's). After the timing, fresh copies of each form train 20 steps on the same batches and
their parameters and BatchNorm statistics are compared with the first form's (largest absolute
difference). The forms:

- two units, Python wrapper: forward + loss compiled, autograd's backward, `optimizer.step()`
  compiled (the step before the one graph);
- one graph, Python wrapper: augmentation, forward, loss, `torch.func.grad` and torch's
  functional SGD in one graph, inductor's default wrapper;
- one graph, C++ wrapper: the same with `cpp_wrapper` (what `--compile` does on the CPU).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from coreaug.augment import create_policy
from coreaug.augment.sampling import RandomSource
from coreaug.training import compiled_step
from coreaug.training.config import TrainConfig
from coreaug.training.trainer import make_optimizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hand_loop import count_launches, record_compiled_kernels  # noqa: E402
from script_checks import checked  # noqa: E402

FORMS = {  # name: (one graph?, inductor options)
    "two units, Python wrapper": (False, None),
    "one graph, Python wrapper": (True, None),
    "one graph, C++ wrapper": (True, {"cpp_wrapper": True}),
}
BATCH, COPIES, BATCHES = 32, 7, 64


def batches(channels=1, size=8, count=BATCHES):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, BATCH, channels, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (count, BATCH), generator=generator)
    keys = [RandomSource.image_keys(torch.arange(BATCH) + BATCH * b, 0) for b in range(count)]
    return images, labels, keys


def step_for(model_name="cnn", channels=1, size=8, optimizer_name="sgd", patches=(), count=BATCHES,
             precision="fp32", processes=None):
    """(train_step(s), warm_up(), model, step): a `CompiledStep` of `model_name` (seed 0) with
    `optimizer_name`, built while each (object, attribute, value) of `patches` is set, training
    on `count` random batches of `BATCH` uint8 images (`COPIES` RandAugment copies a step) in
    `precision` ("fp32", or "fp16": autocast and a GradScaler); `processes`: a `Distributed` under
    torchrun (the step averages the gradients over its processes)."""
    torch.manual_seed(0)
    model = coreaug.create_model(model_name, channels, 10).to(memory_format=torch.channels_last)
    config = TrainConfig(dataset="digits", compile=True, optimizer=optimizer_name).resolved()
    optimizer = make_optimizer(config, model, compiled_update=True)
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, value in patches:
        setattr(obj, name, value)
    try:
        step = compiled_step.CompiledStep(
            model, optimizer, create_policy("weak"), create_policy("randaugment"), lambda x: x.float() / 255,
            lambda: torch.autocast("cpu", dtype=torch.float16, enabled=precision == "fp16"),
            torch.amp.GradScaler("cpu") if precision == "fp16" else None, label_smoothing=0.0,
            copies_per_step=COPIES, device="cpu", processes=processes)
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
    images, labels, keys = batches(channels, size, count)
    weights = torch.ones(BATCH)
    model.train()

    def train_step(s):
        return step(images[s % count], labels[s % count], weights, keys[s % count], 0.05)

    def warm_up():
        for s in range(3):  # the first epoch: compiles, guards checked every step
            train_step(s)
        step.new_epoch()
        step.new_epoch()  # from here as in a later epoch: guards at its first step only
        train_step(3)

    return train_step, warm_up, model, step


def build(form, optimizer_name="sgd", precision="fp32"):
    """(a function training step s, its warm-up, the model) for `form`, training with
    `optimizer_name` in `precision`."""
    one_graph, options = FORMS[form]

    def unit(fn, *, device, fullgraph, mode="auto"):
        return torch.compile(fn, fullgraph=fullgraph, options=options)

    train_step, warm_up, model, _ = step_for(optimizer_name=optimizer_name, precision=precision, patches=(
        (compiled_step, "compile_unit", unit), (compiled_step, "one_graph_update", lambda *args: one_graph)))
    return train_step, warm_up, model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20,
                        help="rounds of --steps steps of each form in turn (median and fastest kept; "
                             "default: %(default)s)")
    parser.add_argument("--steps", type=int, default=50,
                        help="steps timed per form in each round (default: %(default)s)")
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"),
                        help="sgd (Nesterov momentum) or coreaug's adamw (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                        help="fp32, or fp16 autocast with a GradScaler (default: %(default)s)")
    parser.add_argument("--out", default="experiments/results/step_forms.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args())
    torch.set_num_threads(1)
    record_compiled_kernels()
    load_before = open("/proc/loadavg").read().strip()
    forms, compile_s = {}, {}
    for form in FORMS:
        train_step, warm_up, _ = build(form, args.optimizer, args.precision)
        start = time.perf_counter()
        warm_up()
        compile_s[form] = time.perf_counter() - start
        forms[form] = train_step
    times = {form: [] for form in forms}
    for _ in range(args.repeats):
        for form, train_step in forms.items():
            start = time.perf_counter()
            for s in range(args.steps):
                train_step(s)
            times[form].append((time.perf_counter() - start) / args.steps * 1e3)
    launches = {form: count_launches(lambda: [train_step(s) for s in range(10)], "cpu") / 10
                for form, train_step in forms.items() if not FORMS[form][1]}
    first = next(iter(FORMS))
    differences = {}
    reference = None
    for form in FORMS:  # fresh copies: 20 steps each on the same batches
        train_step, _, model = build(form, args.optimizer, args.precision)
        for s in range(20):
            train_step(s)
        state = [t.detach().float().clone() for t in model.state_dict().values()]
        reference = reference or state
        differences[form] = max((a - b).abs().max().item() for a, b in zip(state, reference))
    load_after = open("/proc/loadavg").read().strip()
    lines = [
        "# The compiled step's forms, paired in one process (CPU)", "",
        f"Command: `OMP_NUM_THREADS=1 python experiments/bench_step_forms.py --repeats {args.repeats} "
        f"--steps {args.steps}{' --optimizer adamw' if args.optimizer == 'adamw' else ''}"
        f"{' --precision fp16' if args.precision == 'fp16' else ''}"
        f"{'' if args.out == 'experiments/results/step_forms.md' else ' --out ' + args.out}`  ",
        f"Machine: {platform.machine()}, torch {torch.__version__}, 1 thread; load (/proc/loadavg) before: "
        f"`{load_before}`, after: `{load_after}`.", "",
        f"The cnn on 8x8 one-channel images, batch {BATCH}, {COPIES} RandAugment copies a step, "
        f"{'SGD (Nesterov, weight decay)' if args.optimizer == 'sgd' else 'AdamW (lr 1e-3, weight decay 0.05)'}"
        f"{', fp16 autocast and a GradScaler' if args.precision == 'fp16' else ''}; "
        f"{args.repeats} repeats of {args.steps} steps of each form in turn, after their warm-up "
        "(compile s: the warm-up's 4 steps, reading inductor's cache when it holds the graphs). Ratio: the "
        f"median over the repeats of the form's time / the first form's in the same repeat. Largest difference: "
        "parameters and BatchNorm statistics after 20 steps from the same start, against the first form's.", "",
        "| form | ms / step (median) | fastest | ratio to the first (median) | launches / step | compile s "
        "| largest difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for form in FORMS:
        ratio = statistics.median(t / f for t, f in zip(times[form], times[first]))
        counted = f"{launches[form]:.0f}" if form in launches else "—"
        lines.append(f"| {form} | {statistics.median(times[form]):.2f} | {min(times[form]):.2f} | {ratio:.2f} | "
                     f"{counted} | {compile_s[form]:.1f} | {differences[form]:.1e} |")
    with open(args.out, "w") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
