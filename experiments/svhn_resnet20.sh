#!/usr/bin/env bash
# SVHN, ResNet-20, append mode, max-loss transforms as the strong augmentation, 200 epochs:
# coreset vs random vs max-loss subsets at 5/10/30/50%, plus the `full` and `none` references.
#
# Reproduces: Liu & Mirzasoleiman (NeurIPS 2022), SVHN: a 2.2x speed-up for augmenting 30% coresets
# against augmenting everything. Read results.md: "speed-up vs full" and "final acc" of coreset 0.3
# against full's ("time-to-target speed-up" is "—" unless the coreset reaches 99% of full's accuracy,
# or the --target you give). Re-selected every 20 epochs (--select-every 20), the paper's R = 20.
# (No horizontal flips: the SVHN default, since a mirrored digit is not a digit.)
#
# How long: 14 cells x 3 seeds = 42 runs of 200 epochs on 73k images. Not run on the
# development machine (no SVHN files, no GPU); estimate 15-30 GPU-hours on one H100-class GPU,
# unmeasured. Rerunning resumes (finished runs are skipped).
# Data: train_32x32.mat / test_32x32.mat under --data-dir, $COREAUG_DATA or ~/.cache/coreaug.
# Usage: experiments/svhn_resnet20.sh [OUT] [extra coreaug bench flags]
#        (OUT: a folder given before the flags, or --out OUT anywhere; see experiments/recipe_args.sh)
set -euo pipefail
source "$(dirname "$0")/recipe_args.sh"
OUT="${OUT:-experiments/results/svhn-resnet20}"
exec coreaug bench --dataset svhn --model resnet20 --mode append --augment maxloss --candidates 4 \
    --epochs 200 --select-every 20 --subsets 0.05,0.1,0.3,0.5 --strategies coreset,random,maxloss \
    --references none,full --seeds 3 --quiet --out "$OUT" "${EXTRA[@]}"
