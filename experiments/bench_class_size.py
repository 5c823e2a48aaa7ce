"""How selection time grows with the size of a class (docs/how-it-works.md, docs/evidence.md).

Usage:
    python experiments/bench_class_size.py [--sizes 20000,40000,80000] [--dim 64] [--classes 10]
        [--fraction 0.1] [--threads 1] [--out experiments/results/class_size.md]

select_coreset on N x dim standard-normal features in `classes` equal classes, at `fraction`, on
`threads` CPU threads (torch's and faiss'), one row per N: end-to-end seconds (the kNN graph of
each class, the greedy, the weights). The kNN search compares every pair of a class's examples,
so the time grows with the square of the class size times dim. One measurement per size, after a
warm-up call (which pays faiss' and torch's first-call set-up); the machine is shared: read the
figures as rough.
"""
import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np
import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from script_checks import checked, positive, positive_list


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=positive_list, default=[20000, 40000, 80000],
                        help="Numbers of examples, comma-separated (all parsed before the first is measured).")
    parser.add_argument("--dim", type=positive, default=64, help="Feature dimension.")
    parser.add_argument("--classes", type=positive, default=10, help="Equal classes.")
    parser.add_argument("--fraction", type=float, default=0.1, help="Selection fraction, in (0, 1].")
    parser.add_argument("--threads", type=positive, default=1, help="CPU threads (torch's and faiss').")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "class_size.md"), help="The table written.")
    args = checked(parser, parser.parse_args())
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    torch.set_num_threads(args.threads)
    try:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    rng = np.random.default_rng(1)  # a warm-up: faiss' and torch's first call, not the first size's, pays the set-up
    coreaug.select_coreset(rng.standard_normal((200, args.dim), dtype=np.float32), np.arange(200) % args.classes,
                           args.fraction)
    rows = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        features = rng.standard_normal((n, args.dim), dtype=np.float32)
        labels = np.arange(n) % args.classes
        start = time.perf_counter()
        coreaug.select_coreset(features, labels, args.fraction)
        seconds = time.perf_counter() - start
        rows.append((n, n // args.classes, seconds))
        print(f"{n} examples ({n // args.classes} a class): {seconds:.1f} s", flush=True)
    command = shlex.join(["python", "experiments/bench_class_size.py", *sys.argv[1:]])
    lines = ["# Selection time against class size", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
             f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; {args.threads} thread(s); "
             f"torch {torch.__version__}; coreaug {coreaug.__version__}.", "",
             f"select_coreset on N x {args.dim} standard-normal features in {args.classes} equal classes, "
             f"fraction {args.fraction}; end-to-end seconds, one measurement each, after a warm-up call on 200 "
             "examples.", "",
             "| examples | per class | seconds |", "|---|---|---|"]
    lines += [f"| {n:,} | {per_class:,} | {seconds:.1f} |" for n, per_class, seconds in rows]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
