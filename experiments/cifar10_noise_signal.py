"""Can the model's losses tell flipped labels apart in grid C's setting? (issue 16, item 5)

Trains one grid C run (50% symmetric noise, 500 images, 100 epochs, RandAugment, R = 5) and, at
every selection, records the clean losses the rule is given and which labels were flipped (the
record a rule never sees; here only to measure). Reports per selection the AUC with which
(a) the current loss and (b) the mean of the losses over the selections so far rank flipped
labels above clean ones (0.5: no signal, 1: perfect), and the flipped share of each class's
lower-loss half under each score (what a loss filter at the clean share 1 - noise would keep;
50% when the score says nothing).

Usage: python experiments/cifar10_noise_signal.py DATA OUT.md [--seeds 0,1,2] [--strategy maxloss]
"""
import argparse
import os

import numpy as np
import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from coreaug.training.method import CoresetAugmentation


def auc(score, positive):
    """Probability that a positive's score exceeds a negative's (ties count half)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(score.size)
    ranks[order] = np.arange(1, score.size + 1)
    for value in np.unique(score):  # average the ranks of ties
        tied = score == value
        ranks[tied] = ranks[tied].mean()
    n1, n0 = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def flipped_in_low_half(score, labels, flipped):
    """Flipped share of the examples in the lower half of their class by `score`."""
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        kept.append(members[np.argsort(score[members], kind="stable")[:members.size // 2]])
    return flipped[np.concatenate(kept)].mean()


def one_run(data, seed, strategy, out):
    """[(epoch, auc current, auc mean, flipped share low half current, ... mean)] of one run."""
    records = []
    choose = CoresetAugmentation.choose

    def recording(self, epoch, **scores):
        if scores.get("losses") is not None:
            records.append((epoch, scores["losses"].numpy().copy(), self.labels.numpy().copy(), self.noisy.numpy().copy()))
        return choose(self, epoch, **scores)

    CoresetAugmentation.choose = recording
    try:
        coreaug.train(coreaug.TrainConfig(
            dataset=data, model="cnn", strategy=strategy, subset=0.5, select_every=5, augment="randaugment",
            epochs=100, batch_size=64, label_noise=0.5, train_limit=500, test_limit=2000, image_size=32, seed=seed,
            out=os.path.join(out, f"{strategy}-seed{seed}"), overwrite=True, quiet=True))
    finally:
        CoresetAugmentation.choose = choose
    rows, total = [], 0
    for k, (epoch, loss, labels, flipped) in enumerate(records):
        total = total + loss
        mean = total / (k + 1)
        rows.append((epoch, auc(loss, flipped), auc(mean, flipped),
                     flipped_in_low_half(loss, labels, flipped), flipped_in_low_half(mean, labels, flipped)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the CIFAR-10 image folder (grid C's dataset)")
    parser.add_argument("out", help="the markdown report's path")
    parser.add_argument("--seeds", default="0",
                        help="seeds, comma-separated: a run each, the figures averaged (default: %(default)s)")
    parser.add_argument("--strategy", default="maxloss", help="the runs' selection rule (default: %(default)s)")
    parser.add_argument("--runs", default="/tmp/coreaug-noise-signal", help="where the runs' folders go")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed = np.array([one_run(args.data, seed, args.strategy, args.runs) for seed in seeds])  # seeds x passes x 5
    mean = per_seed.mean(axis=0)
    lines = ["# Do the losses tell flipped labels apart? (grid C's setting)", "",
             f"Command: `python experiments/cifar10_noise_signal.py {args.data} {args.out} --seeds {args.seeds} "
             f"--strategy {args.strategy}`", "",
             f"One grid C run per seed ({', '.join(map(str, seeds))}; the `{args.strategy}` rule at 50%, append mode), "
             "means over the seeds. AUC: how often a flipped label's score exceeds a clean one's (0.5 = no signal). "
             "Low half: the flipped share of each class's lower-score half (50% = no better than random).", "",
             "| epoch | AUC, current loss | AUC, mean loss over the selections so far | flipped in low half, current | "
             "flipped in low half, mean |", "|---|---|---|---|---|"]
    for epoch, a, b, c, d in mean:
        lines.append(f"| {int(epoch)} | {a:.3f} | {b:.3f} | {100 * c:.1f}% | {100 * d:.1f}% |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
