"""The one-graph compiled step with a few flat inputs against one input per tensor, paired in one
process (CPU): the host time a step spends outside its graph.

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_step_inputs.py [--models cnn,resnet20] [--repeats 7]
        [--steps 10] [--out experiments/results/step_inputs.md]

The one-graph step (`coreaug.training.compiled_step.CompiledStep`, SGD with Nesterov momentum,
inductor's C++ wrapper as `--compile` uses on the CPU) reads the model's parameters and buffers and
the optimizer's momentum as a few flat tensors (`FlatTensors`); the other form keeps one graph
input per tensor (flattening patched off). For each model (cnn on 8x8 one-channel images; resnet20
on 32x32 colour ones), batch 32 with 7 RandAugment copies a step: both forms are built on copies
of the same model, compiled (a warm-up as a first epoch, then as a later one: guards at an epoch's
first step only), and timed `--steps` steps each in turn, `--repeats` times. Per step: the whole
call, and the time inside inductor's compiled graph (`CompiledFxGraph.__call__`), whose
difference is the host time outside the graph (dynamo's frame and guards, AOT autograd's wrappers,
passing the inputs); graph inputs: the compiled graph's inputs. Largest difference: parameters and
BatchNorm statistics after the timed steps (the same batches in the same order), between the forms.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import coreaug  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from coreaug.training import compiled_step

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step_forms import BATCH, COPIES, step_for  # noqa: E402
from script_checks import checked  # noqa: E402

MODELS = {"cnn": (1, 8), "resnet20": (3, 32)}  # channels, size
FORMS = ("a tensor an input", "flat tensors")
BATCHES = 8


class GraphTimer:
    """Seconds spent inside inductor's compiled graphs and the inputs of the last call, while entered."""

    def __enter__(self):
        from torch._inductor import output_code

        self.seconds, self.inputs, self._real = 0.0, set(), output_code.CompiledFxGraph.__call__
        timer = self

        def timed(graph, inputs):
            timer.inputs.add(len(inputs))
            start = time.perf_counter()
            try:
                return timer._real(graph, inputs)
            finally:
                timer.seconds += time.perf_counter() - start

        output_code.CompiledFxGraph.__call__ = timed
        return self

    def __exit__(self, *exc):
        from torch._inductor import output_code

        output_code.CompiledFxGraph.__call__ = self._real


def build(model_name, flat):
    """(train_step(s), model) of the one-graph step on `model_name`, flat or a tensor an input, warmed up."""
    channels, size = MODELS[model_name]
    patches = () if flat else ((compiled_step.CompiledStep, "_flatten", lambda self: setattr(self, "flat", None)),)
    train_step, warm_up, model, step = step_for(model_name, channels, size, patches=patches, count=BATCHES)
    assert (step.flat is not None) == flat
    warm_up()
    return train_step, model


def measure(model_name, repeats, steps):
    """{form: (ms a step [per repeat], ms outside the graph [per repeat], graph inputs)}, largest difference."""
    # dynamo keeps what it learnt per code location: an earlier model's shapes would make it trace
    # this one's with dynamic sizes (more inputs, slower graphs). A fresh start, as a process.
    torch._dynamo.reset()
    forms = {form: build(model_name, form == "flat tensors") for form in FORMS}
    results = {form: ([], [], None) for form in FORMS}
    for _ in range(repeats):
        for form, (train_step, _) in forms.items():
            with GraphTimer() as timer:
                start = time.perf_counter()
                for s in range(steps):
                    train_step(s)
                total = time.perf_counter() - start
            results[form][0].append(total / steps * 1e3)
            results[form][1].append((total - timer.seconds) / steps * 1e3)
            results[form] = (results[form][0], results[form][1], (results[form][2] or set()) | timer.inputs)
    states = [[t.detach().float() for t in model.state_dict().values()] for _, model in forms.values()]
    difference = max((a - b).abs().max().item() for a, b in zip(*states))
    return results, difference


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn,resnet20",
                        help="models to measure, comma-separated: cnn, resnet20 (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="rounds of --steps steps of each form in turn (medians kept; default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10,
                        help="steps timed per form in each round (default: %(default)s)")
    parser.add_argument("--out", default="experiments/results/step_inputs.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args())
    torch.set_num_threads(1)
    load_before = open("/proc/loadavg").read().strip()
    rows = []
    for model_name in args.models.split(","):
        results, difference = measure(model_name, args.repeats, args.steps)
        first = results[FORMS[0]]
        for form in FORMS:
            total, outside, inputs = results[form]
            paired = statistics.median(o / f for o, f in zip(outside, first[1]))
            counts = ", ".join(map(str, sorted(inputs)))  # more than one: it compiled again while timed
            rows.append(f"| {model_name} | {form} | {counts} | {statistics.median(total):.2f} "
                        f"| {statistics.median(outside):.3f} | {paired:.2f} | {difference:.1e} |")
        print("\n".join(rows[-2:]), flush=True)
    load_after = open("/proc/loadavg").read().strip()
    lines = [
        "# The one-graph step's inputs: a few flat tensors or one per tensor (CPU)", "",
        f"Command: `OMP_NUM_THREADS=1 python experiments/bench_step_inputs.py --models {args.models} "
        f"--repeats {args.repeats} --steps {args.steps}`  ",
        f"Machine: {platform.machine()}, torch {torch.__version__}, 1 thread; load (/proc/loadavg) before: "
        f"`{load_before}`, after: `{load_after}`.", "",
        f"Batch {BATCH} with {COPIES} RandAugment copies a step, SGD (Nesterov); {args.repeats} repeats of "
        f"{args.steps} steps of each form in turn, medians over the repeats. Outside the graph: the step's time "
        "less the time inside inductor's compiled graph; paired: the median over the repeats of that time / the "
        "first form's in the same repeat. Largest difference: parameters and BatchNorm statistics after "
        "the same steps, between the two forms.", "",
        "| model | form | graph inputs | ms / step | ms / step outside the graph | outside, paired to the first "
        "| largest difference |",
        "|---|---|---|---|---|---|---|", *rows]
    with open(args.out, "w") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
