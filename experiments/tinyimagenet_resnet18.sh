#!/usr/bin/env bash
# TinyImageNet (200 classes, 100k training images at 64 px), ResNet-18 with the CIFAR stem
# (3x3 first convolution, no max-pool: the usual choice at 64 px), RandAugment as the strong
# augmentation, append mode: coreset vs random subsets at 10/30/50%, with the `none` and `full`
# references. Images are decoded once into coreaug's cache (~1.2 GB at 64 px), then held in
# memory (or streamed with --stream always).
#
# Data: the official tiny-imagenet-200 folder (train/<wnid>/images/*.JPEG, val/images +
# val/val_annotations.txt, which coreaug reads as the test split).
# How long: 8 cells x 1 seed of 100 epochs; not run here (no data, no GPU), unmeasured.
# Usage: experiments/tinyimagenet_resnet18.sh --data-dir DIR/tiny-imagenet-200 [OUT] [coreaug bench flags]
set -euo pipefail
NEEDS_DATA_DIR=1
source "$(dirname "$0")/recipe_args.sh"
OUT="${OUT:-experiments/results/tinyimagenet-resnet18}"
exec coreaug bench --dataset "$DATA_DIR" --image-size 64 --model resnet18 --weak pad-crop \
    --mode append --augment randaugment --epochs 100 --batch-size 256 --lr 0.1 --weight-decay 5e-4 \
    --subsets 0.1,0.3,0.5 --strategies coreset,random --references none,full --seeds 1 \
    --quiet --out "$OUT" "${EXTRA[@]}"
