#!/usr/bin/env bash
# CIFAR-10 with 50% symmetric label noise, ResNet-20, subset mode (train on the weighted 50%
# selection plus its strongly augmented copies), max-loss transforms, 200 epochs: coreset vs
# random vs max-loss 50% subsets, against `full` (all noisy examples, all augmented) and `none`.
#
# Reproduces: Liu & Mirzasoleiman (NeurIPS 2022), label noise: training on 50% coresets of
# label-noisy CIFAR-10 beats training on all of it (coresets gather the clean, central
# examples; max-loss subsets gather the mislabelled ones). Read results.md: "final acc" of
# coreset 0.5 against full; a positive "speed-up vs full" comes with it. Re-selected every 20
# epochs (--select-every 20), the paper's R = 20.
#
# How long: 5 cells x 3 seeds = 15 runs of 200 epochs on 50k images; not run on the
# development machine (no CIFAR-10 files, no GPU); estimate 3-6 GPU-hours, unmeasured.
# The noise is fixed per seed, so every strategy of a seed sees the same flipped labels.
# Usage: experiments/cifar10_label_noise.sh [OUT] [extra coreaug bench flags]
#        (OUT: a folder given before the flags, or --out OUT anywhere; see experiments/recipe_args.sh)
set -euo pipefail
source "$(dirname "$0")/recipe_args.sh"
OUT="${OUT:-experiments/results/cifar10-label-noise}"
exec coreaug bench --dataset cifar10 --model resnet20 --label-noise 0.5 --mode subset --augment maxloss \
    --candidates 4 --epochs 200 --select-every 20 --subsets 0.5 --strategies coreset,random,maxloss \
    --references none,full --seeds 3 --quiet --out "$OUT" "${EXTRA[@]}"
