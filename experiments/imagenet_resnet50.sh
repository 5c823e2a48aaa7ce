#!/usr/bin/env bash
# ImageNet (ILSVRC-2012, 1.28M training images, 1000 classes) at 224 px, ResNet-50 from scratch:
# a 50% coreset re-selected every 15 epochs, 90 epochs, against a random 50% subset and full
# augmentation. Each run trains under torchrun on all of this machine's GPUs (coreaug bench
# runs one process, so the three runs are launched one after another here; each resumes).
# Streams the decoded images from disk (~260 GB cache: stored at 256 px for --weak resized-crop
# at 224, ~190 GB with --store-size 224; put --cache-dir on a fast disk with room); gradient
# estimates are projected to 512 numbers and kept in float16.
#
# Data: a folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the usual ImageNet layout).
# How long: 3 runs x 90 epochs of ResNet-50; days of 8-GPU time, unmeasured.
# Usage: GPUS=8 experiments/imagenet_resnet50.sh --data-dir DIR [OUT] [coreaug train flags]
#        (OUT, or --out OUT, holds the three runs' folders: OUT/coreset-0.5, OUT/random-0.5, OUT/full-1.0)
set -euo pipefail
NEEDS_DATA_DIR=1
source "$(dirname "$0")/recipe_args.sh"
OUT="${OUT:-experiments/results/imagenet-resnet50}"
for run in "coreset 0.5" "random 0.5" "full 1.0"; do
    set -- $run
    torchrun --standalone --nproc_per_node="${GPUS:-8}" -m coreaug train --dataset "$DATA_DIR" \
        --image-size 224 --stream always --model resnet50 --weak resized-crop --augment randaugment \
        --mode append --strategy "$1" --subset "$2" --select-every 15 --epochs 90 --batch-size 1024 \
        --lr 0.4 --weight-decay 1e-4 --no-norm-decay --warmup-epochs 5 --label-smoothing 0.1 \
        --out "$OUT/$1-$2" --resume "${EXTRA[@]}"
done
