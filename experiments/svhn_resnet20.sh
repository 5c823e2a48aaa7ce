#!/usr/bin/env bash
# SVHN, ResNet-20, append mode, max-loss transforms as the strong augmentation, 200 epochs:
# coreset vs random vs max-loss subsets at 5/10/30/50%, plus the `full` and `none` references.
#
# Reproduces: Liu & Mirzasoleiman (NeurIPS 2022), SVHN: augmenting 30% coresets reaches full
# augmentation's accuracy 2.2x faster. Read results.md: "time-to-target speed-up" of coreset 0.3.
# (No horizontal flips: the SVHN default, since a mirrored digit is not a digit.)
#
# How long: 14 cells x 3 seeds = 42 runs of 200 epochs on 73k images. Not run on the
# development machine (no SVHN files, no GPU); estimate 15-30 GPU-hours on one H100-class GPU,
# unmeasured. Rerunning resumes (finished runs are skipped).
# Data: train_32x32.mat / test_32x32.mat under --data-dir, $COREAUG_DATA or ~/.cache/coreaug.
# Usage: experiments/svhn_resnet20.sh [OUT] [extra coreaug bench flags]
set -euo pipefail
OUT="${1:-experiments/results/svhn-resnet20}"
shift || true
exec coreaug bench --dataset svhn --model resnet20 --mode append --augment maxloss --candidates 4 \
    --epochs 200 --subsets 0.05,0.1,0.3,0.5 --strategies coreset,random,maxloss --references none,full \
    --seeds 3 --quiet --out "$OUT" "$@"
