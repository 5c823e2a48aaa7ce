#!/usr/bin/env bash
# CIFAR-10, ResNet-20, append mode, max-loss transforms (Wu et al. 2020, 4 candidates) as the
# strong augmentation, 200 epochs: coreset vs random vs max-loss subsets at 5/10/30/50%, plus
# the `full` (augment every example) and `none` (weak augmentation only) references.
#
# Reproduces: Liu & Mirzasoleiman (NeurIPS 2022), the CIFAR-10 table: augmenting 10% coresets
# reaches full augmentation's accuracy 6.3x faster and is 7.7 points more accurate than
# augmenting max-loss subsets of the same size. Read results.md: "time-to-target speed-up" of
# coreset 0.1 (target: 99% of full's accuracy) and "final acc" of coreset vs maxloss at 0.1.
#
# How long: 14 cells x 3 seeds = 42 runs of 200 epochs on 50k images. Not run on the
# development machine (no CIFAR-10 files, no GPU); a GPU is needed. The `full` runs dominate
# (100k images per epoch, 4 max-loss candidates for half of them): estimate 10-20 GPU-hours
# in all on one H100-class GPU, unmeasured. Rerunning resumes (finished runs are skipped).
# Data: cifar-10-batches-py under --data-dir, $COREAUG_DATA or ~/.cache/coreaug (add --download).
# Usage: experiments/cifar10_resnet20.sh [OUT] [extra coreaug bench flags, e.g. --seeds 1]
set -euo pipefail
OUT="${1:-experiments/results/cifar10-resnet20}"
shift || true
exec coreaug bench --dataset cifar10 --model resnet20 --mode append --augment maxloss --candidates 4 \
    --epochs 200 --subsets 0.05,0.1,0.3,0.5 --strategies coreset,random,maxloss --references none,full \
    --seeds 3 --quiet --out "$OUT" "$@"
