"""Pilot (issue 16, grid A's setting, one seed): a random 10% whose strongly augmented copies
weigh 1/fraction (per class: class size / class budget), so that the copies' loss is an
unbiased estimate of augmenting everyone. Not a rule: the weights swamp the batch (the
README of experiments/results/cifar10 has the figure).

Usage: python experiments/cifar10_pilot_upweighted.py DATA SEED OUT
"""
import argparse
import dataclasses

import numpy as np
import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from coreaug.selection import rules


def upweighted(rule):
    """`rule` with its selection's weights multiplied by each class's size over its budget."""
    def choose(labels, fraction, **options):
        selection = rule.choose(labels, fraction, **options)
        y = np.asarray(labels)
        sizes = np.bincount(y)
        picked = np.bincount(y[selection.indices], minlength=sizes.size)
        scale = (sizes / np.maximum(picked, 1))[y[selection.indices]]
        return dataclasses.replace(selection, weights=(np.asarray(selection.weights) * scale).astype(np.float32))
    return dataclasses.replace(rule, choose=choose)


def parse_args(argv=None):
    """DATA, SEED and OUT from the command line (argparse's usage line and exit 2 when missing)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\nUsage:")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", metavar="DATA", help="the CIFAR-10 class folders (grid A's dataset)")
    parser.add_argument("seed", metavar="SEED", type=int, help="the run's seed")
    parser.add_argument("out", metavar="OUT", help="the run folder (overwritten)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    data, seed, out = args.data, args.seed, args.out
    torch.set_num_threads(1)
    rules.RULES["random"] = upweighted(rules.RULES["random"])
    result = coreaug.train(coreaug.TrainConfig(
        dataset=data, model="cnn", strategy="random", subset=0.1, select_every=2, augment="maxloss", epochs=20,
        batch_size=64, train_limit=2000, test_limit=2000, image_size=32, seed=seed, weight_augmented=True,
        out=out, overwrite=True, quiet=True))
    print(f"random 10%, copies weighted 1/fraction, seed {seed}: final test accuracy {result.final_test_accuracy:.2%}")


if __name__ == "__main__":
    main()
