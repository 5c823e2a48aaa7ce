"""What selection costs at ImageNet's size, for the multi-GPU/multi-node notes (issue 6).

Usage:
    python experiments/bench_selection_imagenet_scale.py [--quick] [--out experiments/results/selection_imagenet_scale.md]

Under torchrun every process estimates gradients on its slice of the training set, rank 0
gathers them and runs facility location alone, so rank 0's selection is the part that does
not shrink with more GPUs. Measured here, on the CPU of this machine:

  select-10d     select_coreset on 1.28 M x 10 random features in 1000 classes (fractions 0.1, 0.3)
  select-1000d   the same with 1000-d features (ImageNet's logit gradients, softmax - onehot);
                 per-class work is independent, so it runs 100 of the 1000 classes and reports x10
  gather         Distributed.gather_rows of 1.28 M x 10 float32 from 2 gloo processes on this
                 machine (the code path and its padding at full size; NCCL between GPUs is faster)

`--quick` runs 1/10 of the examples. The machine is shared: read the figures as rough.
"""
import argparse
import os
import platform
import resource
import socket
import time

import numpy as np
import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from coreaug.training.distributed import Distributed
from script_checks import checked

N, CLASSES = 1_281_167, 1000


def random_features(n, dim, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.integers(0, classes, n)


def timed_selection(features, labels, fraction):
    """(seconds end to end, "knn / greedy / weights" seconds, examples selected)."""
    start = time.perf_counter()
    selection = coreaug.select_coreset(features, labels, fraction)
    seconds = time.perf_counter() - start
    stages = " / ".join(f"{selection.timings.get(k, 0):.1f}" for k in ("knn", "greedy", "weights"))
    return seconds, stages, len(selection.indices)


def gather_worker(rank, port, n, dim, seconds):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    here = Distributed(rank, 2)
    rows = torch.randn(len(range(n)[here.row_slice(n)]), dim)
    dist.barrier()
    start = time.perf_counter()
    gathered = here.gather_rows(rows)
    if here.is_main:
        seconds[0] = time.perf_counter() - start
        assert gathered.shape == (n, dim)
    dist.destroy_process_group()


def timed_gather(n, dim):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seconds = torch.zeros(1).share_memory_()
    mp.spawn(gather_worker, args=(port, n, dim, seconds), nprocs=2)
    return float(seconds[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1/10 of the examples")
    parser.add_argument("--out", default="experiments/results/selection_imagenet_scale.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args())
    n = N // 10 if args.quick else N
    rows, load_before = [], os.getloadavg()[0]
    timed_selection(*random_features(2000, 10, 10), 0.1)  # compiles the greedy kernel (numba) once

    features, labels = random_features(n, 10, CLASSES)
    for fraction in (0.1, 0.3):
        seconds, stages, picked = timed_selection(features, labels, fraction)
        rows.append(("select-10d", f"{n:,} x 10, {CLASSES} classes", fraction, f"{seconds:.1f}", stages, f"{picked:,}"))
        print(rows[-1], flush=True)
    del features

    features, labels = random_features(n // 10, 1000, CLASSES // 10, seed=1)
    for fraction in (0.1, 0.3):
        seconds, stages, picked = timed_selection(features, labels, fraction)
        rows.append(("select-1000d", f"{n // 10:,} x 1000, {CLASSES // 10} classes; x10 for {CLASSES}",
                     fraction, f"{seconds:.1f} (x10: {10 * seconds:.0f})", stages, f"{picked:,}"))
        print(rows[-1], flush=True)
    del features

    seconds = timed_gather(n, 10)
    rows.append(("gather", f"{n:,} x 10 float32 ({n * 40 / 1e6:.0f} MB), 2 gloo processes", "", f"{seconds:.2f}", "", ""))
    print(rows[-1], flush=True)

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    lines = [
        "# Selection at ImageNet scale (issue 6)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared, noisy), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after (other work shared the CPUs). Random Gaussian features: no cluster structure, so the kNN graph "
        "and the greedy do their full work. Command: `python experiments/bench_selection_imagenet_scale.py"
        + (" --quick`." if args.quick else "`."),
        "",
        "| case | size | fraction | seconds | knn / greedy / weights s | selected |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(str(c) for c in row)} |" for row in rows],
        "",
        f"Peak resident memory of the benchmark process: {peak_gb:.1f} GB.",
        f"Gradient estimates held by rank 0 after the gather: N x d x 4 bytes = {N * 10 * 4 / 1e9:.2f} GB "
        f"at d = 10, {N * 1000 * 4 / 1e9:.1f} GB at d = 1000 (logit gradients of 1000 classes); "
        "every other rank holds only its 1/world_size slice.",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
