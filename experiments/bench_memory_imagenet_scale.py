"""Host memory of selection's inputs at ImageNet's size: N = 1,281,167 examples, C = 1000 classes.

Usage:
    python experiments/bench_memory_imagenet_scale.py [--n N] [--out experiments/results/memory_imagenet_scale.md]

Each case runs in a fresh process and reports its peak resident memory (ru_maxrss) and what it
produced, on the CPU of this machine:

  estimates-logits       coreaug.estimate_gradients, kind "logits", over N examples of a model
                         with 1000 outputs and a 2048-wide last layer (ResNet-50's shape), the
                         trainer's settings: projected to --gradient-dim 512, float16
  estimates-last-layer   the same, kind "last_layer": (softmax - onehot) x h is 2,048,000
                         numbers per example, sketched to at most 512
  training-logits        --estimates training: the epoch's logit sums (N, C + 1) and the stored
                         logits (N, C), float16 at this size, merged, then turned into scores
  select                 select_coreset at 10% on the estimates-logits output (float16, converted
                         a class at a time)

The model's inputs are one number per example (the images' cost is the data path's, measured
in data.md), so the figures are the estimates' own. The machine is shared: read times as rough.
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch
from torch import nn
from script_checks import checked, run_child

N, CLASSES, EMBEDDING, DIM = 1_281_167, 1000, 2048, 512


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(1, EMBEDDING), nn.ReLU(), nn.Linear(EMBEDDING, CLASSES))


def inputs(n):
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 1, 1, generator=generator), torch.randint(0, CLASSES, (n,), generator=generator)


def case_estimates(n, kind):
    from coreaug.selection import estimate_gradients
    from coreaug.selection.gradients import estimate_dtype

    x, y = inputs(n)
    net = model()
    out = estimate_gradients(net, x, y, kind=kind, batch_size=4096, dim=DIM, dtype=estimate_dtype(n, DIM))
    if kind == "logits":
        np.save(os.environ["ESTIMATES_FILE"], out.numpy())
    return {"shape": list(out.shape), "dtype": str(out.dtype).replace("torch.", ""), "gb": out.nelement() * out.element_size() / 1e9}


def case_training_logits(n):
    from coreaug.selection.gradients import estimate_dtype
    from coreaug.training.selector import scores_from_logits
    from coreaug.training.trainer import _merge_logits

    _, y = inputs(n)
    dtype = estimate_dtype(n, CLASSES)
    sums = torch.zeros((n, CLASSES + 1), dtype=dtype)
    generator = torch.Generator().manual_seed(2)
    for start in range(0, n, 65536):  # one epoch's training batches add their logits
        rows = torch.randn(min(65536, n - start), CLASSES, generator=generator)
        sums[start:start + len(rows)] = torch.cat([rows, torch.ones(len(rows), 1)], 1).to(dtype)
    stored = _merge_logits(None, sums)
    del sums
    scores = scores_from_logits(stored, y, ("estimates",), DIM)["estimates"]
    return {"store": f"{tuple(stored.shape)} {str(stored.dtype).replace('torch.', '')}",
            "shape": list(scores.shape), "dtype": str(scores.dtype).replace("torch.", ""),
            "gb": stored.nelement() * stored.element_size() / 1e9}


def case_select(n):
    import coreaug

    features = np.load(os.environ["ESTIMATES_FILE"], mmap_mode="r")
    _, y = inputs(n)
    start = time.perf_counter()
    selection = coreaug.select_coreset(np.asarray(features), y.numpy(), 0.1)
    return {"selected": len(selection.indices), "select_seconds": time.perf_counter() - start}


def run_case(name, n):
    start = time.perf_counter()
    result = {"estimates-logits": lambda: case_estimates(n, "logits"),
              "estimates-last-layer": lambda: case_estimates(n, "last_layer"),
              "training-logits": lambda: case_training_logits(n), "select": lambda: case_select(n)}[name]()
    result.update(seconds=time.perf_counter() - start, peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=N,
                        help="examples N in every case (default: %(default)s, ImageNet's training set)")
    parser.add_argument("--out", default="experiments/results/memory_imagenet_scale.md",
                        help="the markdown table's path; the cases' temporary .estimates.npy goes beside it "
                             "(default: %(default)s)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = checked(parser, parser.parse_args())
    if args.case:
        return run_case(args.case, args.n)
    os.environ.setdefault("ESTIMATES_FILE", os.path.join(os.path.dirname(os.path.abspath(args.out)), ".estimates.npy"))
    rows = []
    try:
        for case in ("estimates-logits", "estimates-last-layer", "training-logits", "select"):
            load = os.getloadavg()[0]
            proc = run_child([sys.executable, __file__, "--case", case, "--n", str(args.n)], f"case {case}")
            rows.append((case, load, json.loads(proc.stdout.strip().splitlines()[-1])))
            print(case, rows[-1][2], flush=True)
    finally:
        if os.path.exists(os.environ["ESTIMATES_FILE"]):
            os.remove(os.environ["ESTIMATES_FILE"])
    write_table(args, rows)


def write_table(args, rows):
    n = args.n
    lines = [
        "# Selection's memory at ImageNet's size (issue 12, item 5)", "",
        f"Command: `python experiments/bench_memory_imagenet_scale.py{'' if n == N else f' --n {n}'}`. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), torch {torch.__version__}. "
        f"N = {n:,}, C = {CLASSES}, last layer {EMBEDDING} wide, --gradient-dim {DIM}. Each case is a fresh process; "
        "peak = its ru_maxrss.", "",
        "| case | load before | output | output GB | peak RSS GB | seconds |", "|---|---|---|---|---|---|",
    ]
    for case, load, r in rows:
        output = (f"{r['selected']:,} selected" if case == "select"
                  else f"{r.get('store', '') + ' -> ' if 'store' in r else ''}{tuple(r['shape'])} {r['dtype']}")
        gb = f"{r['gb']:.2f}" if "gb" in r else ""
        lines.append(f"| {case} | {load:.1f} | {output} | {gb} | {r['peak_gb']:.2f} | {r['seconds']:.0f} |")
    lines += [
        "",
        "What the same steps held before (computed from the shapes, not measured): the clean pass kept every "
        f"logit and then the gradients, N x C float32 twice = {2 * n * CLASSES * 4 / 1e9:.1f} GB; last-layer "
        f"estimates were the full N x (C x {EMBEDDING}) float32 matrix = {n * CLASSES * EMBEDDING * 4 / 1e12:,.1f} TB "
        "(the trainer could not run them), or with a projection a dense (C x E, dim) Gaussian of "
        f"{CLASSES * EMBEDDING * DIM * 4 / 1e9:.1f} GB; the training-logit store was (N, C + 1) float32 sums plus (N, C) "
        f"float32 logits = {n * (2 * CLASSES + 1) * 4 / 1e9:.1f} GB on the training device.",
        "",
        f"Under torchrun, rank 0 gathers the estimates: N x {DIM} float16 = {n * DIM * 2 / 1e9:.2f} GB on its device "
        "and host (each other rank sends only its slice); before, N x C float32 = "
        f"{n * CLASSES * 4 / 1e9:.1f} GB.",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
