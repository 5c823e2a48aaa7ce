#!/usr/bin/env bash
# Caltech256 at 224 px, fine-tuning an ImageNet-pretrained ResNet-18: the setting of the
# paper's official code (30% coreset, re-selected every 5 epochs, 40 epochs, lr 1e-3,
# batch 64), with random-resized crop and flip as weak augmentation, RandAugment as strong,
# and no weight decay on biases and norms. Runs coreset and random subsets at 30% plus the
# `none` and `full` references.
#
# Data: 256_ObjectCategories/<NNN.class>/*.jpg (no split: --val-fraction 0.2 of each class is
# held out, seeded). Weights: a ResNet-18 ImageNet state dict, e.g. torchvision's
# resnet18-f37072fd.pth fetched beforehand (nothing is downloaded at run time), given with
# --pretrained FILE. The decoded cache takes ~6 GB (30k images stored at 256 px for 224 px
# training; ~4.4 GB with --store-size 224).
# How long: 4 runs x 40 epochs; not run here (no data, no GPU), unmeasured.
# Usage: experiments/caltech256_resnet18.sh --data-dir DIR/256_ObjectCategories --pretrained FILE [OUT] [flags]
#        (OUT: a folder given before the other flags, or --out OUT anywhere; see experiments/recipe_args.sh)
set -euo pipefail
NEEDS_DATA_DIR=1
source "$(dirname "$0")/recipe_args.sh"
[ -n "$PRETRAINED" ] || recipe_error "give --pretrained FILE, ImageNet weights for resnet18_imagenet"
OUT="${OUT:-experiments/results/caltech256-resnet18}"
exec coreaug bench --dataset "$DATA_DIR" --val-fraction 0.2 --image-size 224 --model resnet18_imagenet \
    --weak resized-crop --no-norm-decay --mode append --augment randaugment --subsets 0.3 --select-every 5 \
    --epochs 40 --lr 0.001 --batch-size 64 --weight-decay 5e-4 --strategies coreset,random \
    --references none,full --seeds 1 --quiet --out "$OUT" "${EXTRA[@]}"
