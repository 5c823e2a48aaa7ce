"""Benchmark of coreset selection: seconds and objective against apricot-select.

Usage:
    python experiments/bench_selection.py [--quick] [--out experiments/results/selection.md]

Cases (synthetic features shaped like the gradient estimates the trainer produces):
  logits-50k:     50,000 x 10 softmax - onehot of noisy 10-class logits
  gauss-500k:     500,000 x 10 Gaussian clusters in 100 classes
  lastlayer-50k:  50,000 x 640 (softmax - onehot) ⊗ h, 10 classes x 64-d embeddings

Methods, all end to end (kNN graph or dense matrix + greedy + weights):
  own             select_coreset(backend="own")
  apricot-sparse  select_coreset(backend="apricot"): apricot on the same kNN graph
  apricot-dense   per class, the dense similarity d_max - d (as CRAIG, CORDS and DeepCore
                  build it) given to apricot as precomputed, then the same weights

Every selection is scored on the dense objective per class, F(S) = sum_i (d_max - min_{j in S} d(i, j)),
with d_max the class's largest pairwise distance; "objective" is relative to apricot-dense's
(or to own's where dense was not run), "coverage" is mean min_{j in S} d(i, j) relative to the same.
"""
import argparse
import platform
import time

import coreaug  # first: it sets OMP_WAIT_POLICY before faiss and torch load OpenMP
import faiss
import numpy as np
import torch

from coreaug.selection import budget_size, class_budgets, cluster_sizes, last_layer_gradients, logit_gradients
from script_checks import checked


def logits_case(n, classes, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) * 2.0
    logits[np.arange(n), labels] += rng.gamma(2.0, 2.0, n)  # most confident, some not
    return logit_gradients(logits.astype(np.float32), labels), labels


def gauss_case(n, classes, dim, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, 4, dim)) * 3
    sub = rng.integers(0, 4, n)
    return (centres[labels, sub] + rng.normal(size=(n, dim))).astype(np.float32), labels


def lastlayer_case(n, classes, emb, seed=0):
    x, labels = logits_case(n, classes, seed)
    rng = np.random.default_rng(seed + 1)
    h = np.maximum(rng.normal(size=(n, emb)) + labels[:, None] % 3, 0).astype(np.float32)
    logits = np.log(np.clip(x + np.eye(classes, dtype=np.float32)[labels], 1e-6, 1))
    return last_layer_gradients(logits, h, labels), labels


def dense_similarity(x):
    t = torch.from_numpy(x).double()
    d = torch.cdist(t, t).numpy()
    return d.max() - d, d.max()


def apricot_dense(x, y, fraction):
    """Peers' approach: dense per-class similarity into apricot, then the same weights."""
    from apricot import FacilityLocationSelection

    start = time.perf_counter()
    classes, sizes = np.unique(y, return_counts=True)
    budgets = class_budgets(sizes, budget_size(fraction, y.size), "equal")
    picked, counts = [], []
    for c, b in zip(classes, budgets):
        members = np.flatnonzero(y == c)
        sim, _ = dense_similarity(x[members])
        ranking = FacilityLocationSelection(int(b), metric="precomputed", optimizer="lazy").fit(sim).ranking
        del sim
        picked.append(members[ranking])
        counts.append(cluster_sizes(x[members], np.asarray(ranking)))
    return np.concatenate(picked), time.perf_counter() - start


def dense_scores(x, y, indices):
    """(dense objective, total nearest-selected distance) summed over classes."""
    value = dist_sum = 0.0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        chosen = np.intersect1d(indices, members)
        _, d_max = dense_similarity(x[members])
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(np.ascontiguousarray(x[chosen]))
        d2, _ = index.search(np.ascontiguousarray(x[members]), 1)
        d = np.sqrt(np.maximum(d2[:, 0], 0)).astype(np.float64)
        value += (d_max - d).sum()
        dist_sum += d.sum()
    return value, dist_sum


def run_case(name, x, y, fractions, methods, rows, apricot_fractions=None):
    coreaug.select_coreset(x[:2000], y[:2000], 0.1)  # load the compiled kernel outside the timings
    for f in fractions:
        results = {}
        for method in methods:
            if method != "own" and apricot_fractions is not None and f not in apricot_fractions:
                continue
            if method == "apricot-dense":
                indices, seconds = apricot_dense(x, y, f)
                results[method] = (seconds, indices, "")
            else:
                backend = "own" if method == "own" else "apricot"
                sel = coreaug.select_coreset(x, y, f, backend=backend)
                t = sel.timings
                results[method] = (t["total"], sel.indices, f"knn {t['knn']:.2f} + greedy {t['greedy']:.2f} + weights {t['weights']:.2f}")
            print(f"{name} {f:.0%} {method}: {results[method][0]:.2f} s", flush=True)
        ref_name = "apricot-dense" if "apricot-dense" in results else "own"  # own: relative to itself
        scores = {m: dense_scores(x, y, r[1]) for m, r in results.items()}
        for method, (seconds, indices, split) in results.items():
            value, dist = scores[method]
            speedup = results[ref_name][0] / seconds if ref_name != "own" else float("nan")
            rows.append((name, f"{f:.0%}", method, f"{seconds:.2f}", split, f"{value / scores[ref_name][0]:.5f}",
                         f"{dist / scores[ref_name][1]:.4f}", "" if np.isnan(speedup) else f"{speedup:.1f}x"))


def knn_sweep(x, y, rows):
    for k in (5, 10, 20, 50):
        sel = coreaug.select_coreset(x, y, 0.3, knn=k)
        value, dist = dense_scores(x, y, sel.indices)
        rows.append((k, f"{sel.timings['total']:.2f}", f"{value:.6g}", f"{dist / len(y):.5f}"))


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller cases (apricot still compiles its kernels on "
                        "every fit, ~2 s a class: well over 5 minutes on 2 cores)")
    parser.add_argument("--out", default="experiments/results/selection.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args())
    s = 10 if args.quick else 1
    fractions = (0.1, 0.3, 0.5)
    all_methods = ("own", "apricot-sparse", "apricot-dense")
    rows = []
    x, y = logits_case(50_000 // s, 10)
    run_case(f"logits-{50 // s}k x 10", x, y, fractions, all_methods, rows)
    sweep = []
    knn_sweep(x, y, sweep)
    # apricot compiles its kernels on every fit (~2 s per class here, and numba's memory
    # grows with each compile): on 100 classes it runs at 10% only.
    big = gauss_case(500_000 // s, 100, 10)
    run_case(f"gauss-{500 // s}k x 10 (100 classes)", *big, fractions, all_methods, rows, apricot_fractions=(0.1,))
    del big
    x, y = lastlayer_case(50_000 // s, 10, 64)
    run_case(f"lastlayer-{50 // s}k x 640", x, y, fractions, all_methods, rows)
    command = "python experiments/bench_selection.py" + (" --quick" if args.quick else "")
    text = "\n\n".join([
        "# Selection benchmark",
        f"Command: `{command}`  \nMachine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {faiss.omp_get_max_threads()} faiss threads, "
        f"torch {torch.__version__}, faiss {faiss.__version__}. Seconds are end to end "
        "(kNN graph or dense matrix, greedy, weights); default knn = 20.",
        "objective: the dense facility-location value relative to apricot-dense's (1 = equal). "
        "coverage: mean distance from an example to its nearest selected example, relative to "
        "apricot-dense's (lower is better; this is the part of the objective that differs). "
        "speed-up: apricot-dense seconds / this method's seconds.",
        table(("case", "fraction", "method", "seconds", "split (s)", "objective", "coverage", "speed-up"), rows),
        "## knn sweep (logits case, 30%, own backend)",
        table(("knn", "seconds", "dense objective", "mean nearest-selected distance"), sweep),
    ]) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
