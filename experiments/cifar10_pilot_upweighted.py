"""Pilot (issue 16, grid A's setting, one seed): a random 10% whose strongly augmented copies
weigh 1/fraction (per class: class size / class budget), so that the copies' loss is an
unbiased estimate of augmenting everyone. Not a rule: the weights swamp the batch (the
README of experiments/results/cifar10 has the figure).

Usage: python experiments/cifar10_pilot_upweighted.py DATA SEED OUT
"""
import dataclasses
import sys

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


def main():
    data, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    rules.RULES["random"] = upweighted(rules.RULES["random"])
    result = coreaug.train(coreaug.TrainConfig(
        dataset=data, model="cnn", strategy="random", subset=0.1, select_every=2, augment="maxloss", epochs=20,
        batch_size=64, train_limit=2000, test_limit=2000, image_size=32, seed=seed, weight_augmented=True,
        out=out, overwrite=True, quiet=True))
    print(f"random 10%, copies weighted 1/fraction, seed {seed}: final test accuracy {result.final_test_accuracy:.2%}")


if __name__ == "__main__":
    main()
