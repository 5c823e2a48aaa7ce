"""The compiled step's two forms under torchrun, paired in each process (CPU, gloo): one graph
(the gradients averaged inside it by a functional all-reduce, `Distributed.mean_of`) against
two units (forward + loss, autograd's backward, `Distributed.average_gradients` eagerly, then
the compiled update), on bench_step_forms.py's case (the cnn on 8x8 one-channel images, a
process's share of batch 32: 16 rows, 7 RandAugment copies, SGD), inductor's Python wrapper
(whose kernels the profiler counts one by one; `--compile` on the CPU uses the C++ one).

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_step_forms_torchrun.py [--processes 2] [--repeats 10] [--steps 30]
        [--out experiments/results/step_forms_torchrun.md]

Spawns `--processes` processes (gloo on 127.0.0.1, one thread each); each builds both forms on
the same model (seed 0), warms them up, then times `--steps` steps of each in turn, `--repeats`
times (both processes step together: each collective waits for the other). Rank 0 writes ms a
step (median, fastest), the median per-repeat ratio to the two units, launches a step
(bench_step_forms' count, 10 steps, rank 0) and the largest difference between the forms'
parameters and BatchNorm statistics after 20 steps from the same start.
"""
import argparse
import os
import platform
import socket
import statistics
import sys
import time

import coreaug  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from coreaug.training import compiled_step
from coreaug.training.distributed import Distributed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step_forms  # noqa: E402
from hand_loop import count_launches, record_compiled_kernels  # noqa: E402
from script_checks import checked  # noqa: E402

FORMS = {"two units": False, "one graph": True}


def build(one_graph, processes):
    def unit(fn, *, device, fullgraph, mode="auto"):
        # inductor's Python wrapper: the profiler then sees each kernel it launches (bench_step_forms.py)
        return torch.compile(fn, fullgraph=fullgraph, dynamic=False)

    return bench_step_forms.step_for(processes=processes, count=16, patches=(
        (compiled_step, "compile_unit", unit), (compiled_step, "one_graph_update", lambda *args: one_graph)))


def worker(rank, world, port, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        bench_step_forms.BATCH = 32 // world  # this process's share of each batch
        record_compiled_kernels()
        here = Distributed(rank, world)
        forms = {}
        for form, one_graph in FORMS.items():
            train_step, warm_up, _, _ = build(one_graph, here)
            warm_up()
            forms[form] = train_step
        times = {form: [] for form in forms}
        for _ in range(args.repeats):
            for form, train_step in forms.items():
                dist.barrier()
                start = time.perf_counter()
                for s in range(args.steps):
                    train_step(s)
                times[form].append((time.perf_counter() - start) / args.steps * 1e3)
        launches = {form: count_launches(lambda: [train_step(s) for s in range(10)], "cpu") / 10
                    for form, train_step in forms.items()}
        states = {}
        for form, one_graph in FORMS.items():  # fresh copies, the same 20 steps
            train_step, _, model, _ = build(one_graph, here)
            for s in range(20):
                train_step(s)
            states[form] = [t.detach().float().clone() for t in model.state_dict().values()]
        difference = max((a - b).abs().max().item() for a, b in zip(*states.values()))
        if rank == 0:
            torch.save({"times": times, "launches": launches, "difference": difference}, args.result)
    finally:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2,
                        help="gloo processes, one thread each, sharing each batch of 32 (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="rounds of --steps steps of each form in turn (median and fastest kept; "
                             "default: %(default)s)")
    parser.add_argument("--steps", type=int, default=30,
                        help="steps timed per form in each round (default: %(default)s)")
    parser.add_argument("--out", default="experiments/results/step_forms_torchrun.md",
                        help="the markdown table's path; rank 0's figures pass through OUT.pt beside it "
                             "(default: %(default)s)")
    args = checked(parser, parser.parse_args())
    args.result = args.out + ".pt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    load_before = open("/proc/loadavg").read().strip()
    mp.spawn(worker, args=(args.processes, port, args), nprocs=args.processes)
    load_after = open("/proc/loadavg").read().strip()
    result = torch.load(args.result)
    os.remove(args.result)
    times, first = result["times"], next(iter(FORMS))
    lines = [
        "# The compiled step's forms under torchrun, paired in each process (CPU, gloo)", "",
        f"Command: `OMP_NUM_THREADS=1 python experiments/bench_step_forms_torchrun.py --processes {args.processes} "
        f"--repeats {args.repeats} --steps {args.steps}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, one thread a process; "
        f"load (/proc/loadavg) before: `{load_before}`, after: `{load_after}`.", "",
        f"The cnn on 8x8 one-channel images, {32 // args.processes} rows a process (a batch of 32 over "
        f"{args.processes} processes), {bench_step_forms.COPIES} RandAugment copies a process, SGD (Nesterov, "
        f"weight decay), inductor's Python wrapper; {args.repeats} repeats of {args.steps} steps of each form in turn after their warm-up, rank 0's "
        "times. Largest difference: parameters and BatchNorm statistics after 20 steps from the same start.", "",
        "| form | ms / step (median) | fastest | ratio to two units (median) | launches / step |",
        "|---|---|---|---|---|",
    ]
    for form in FORMS:
        ratio = statistics.median(t / f for t, f in zip(times[form], times[first]))
        lines.append(f"| {form} | {statistics.median(times[form]):.2f} | {min(times[form]):.2f} | {ratio:.2f} | "
                     f"{result['launches'][form]:.0f} |")
    lines += ["", f"Largest difference between the forms after 20 steps: {result['difference']:.1e}."]
    with open(args.out, "w") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
