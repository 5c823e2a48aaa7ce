#!/usr/bin/env bash
# CIFAR-100, ResNet-20, append mode, max-loss transforms as the strong augmentation, 200 epochs:
# coreset vs random vs max-loss subsets at 5/10/30/50%, plus the `full` and `none` references.
#
# Reproduces: Liu & Mirzasoleiman (NeurIPS 2022), the CIFAR-100 rows of the append-mode table:
# coresets above random and max-loss subsets of the same size, at a fraction of full
# augmentation's time. With 100 classes a 5% budget is 25 examples per class. Re-selected every
# 20 epochs (--select-every 20), the paper's R = 20.
#
# How long: 42 runs of 200 epochs on 50k images, like experiments/cifar10_resnet20.sh
# (estimate 10-20 GPU-hours on one H100-class GPU, unmeasured; not run on the development
# machine). Rerunning resumes (finished runs are skipped).
# Data: cifar-100-python under --data-dir, $COREAUG_DATA or ~/.cache/coreaug (add --download).
# Usage: experiments/cifar100_resnet20.sh [OUT] [extra coreaug bench flags]
#        (OUT: a folder given before the flags, or --out OUT anywhere; see experiments/recipe_args.sh)
set -euo pipefail
source "$(dirname "$0")/recipe_args.sh"
OUT="${OUT:-experiments/results/cifar100-resnet20}"
exec coreaug bench --dataset cifar100 --model resnet20 --mode append --augment maxloss --candidates 4 \
    --epochs 200 --select-every 20 --subsets 0.05,0.1,0.3,0.5 --strategies coreset,random,maxloss \
    --references none,full --seeds 3 --quiet --out "$OUT" "${EXTRA[@]}"
