#!/usr/bin/env bash
# Issue 16's evidence grids on real CIFAR-10 (the JPEG copy in ../shared/data, quality 75: expect
# accuracies a little below the original files'), at CPU scale.
#
# Setting (chosen in experiments/results/cifar10/README.md): a fixed sample of 2,000 training
# images and 2,000 test images, the small CNN (`--model cnn`), 20 epochs, batch 64, lr 0.1
# (cosine), re-selection every 2 epochs (the paper's R = 20 of 200 epochs: ten selections).
# One `full` run with max-loss transforms takes about 3 minutes on one core; it beats weak
# augmentation alone by about 6 points (pilot, seed 0: 56.4% vs 50.1%).
#
# Usage: experiments/cifar10_evidence.sh DATA OUT GRID [PART]
#   DATA   the extracted archive (holds train/ and test/)
#   GRID   A-maxloss | A-randaugment | B | C | rules-A-maxloss | ...  (see the case below)
#   PART   1 or 2: half of the grid's cells, so that two processes share the two cores; run
#          without PART (or again after both halves) to train what is left and write the tables.
# Every run is single-threaded; `coreaug bench` skips finished runs, so a grid resumes.
set -euo pipefail
DATA="${1:?usage: cifar10_evidence.sh DATA OUT GRID [PART]}"
OUT="${2:?usage: cifar10_evidence.sh DATA OUT GRID [PART]}"
GRID="${3:?usage: cifar10_evidence.sh DATA OUT GRID [PART]}"
PART="${4:-all}"
export OMP_NUM_THREADS=1
SET="--dataset $DATA --image-size 32 --model cnn --train-limit 2000 --test-limit 2000 --epochs 20
     --batch-size 64 --select-every 2 --seeds 5 --quiet"
SELECTING="coreset,random,maxloss"

half() {  # half <subsets of part 1> <refs of part 1> <subsets of part 2> <refs of part 2> <all subsets> <all refs>
  case $PART in
    1) echo "--subsets=$1 --references=$2" ;;
    2) echo "--subsets=$3 --references=$4" ;;
    *) echo "--subsets=$5 --references=$6" ;;
  esac
}

case $GRID in
  A-maxloss|A-randaugment)
    coreaug bench $SET --augment "${GRID#A-}" --strategies "$SELECTING" \
      $(half 0.1 none,full 0.05,0.3 "" 0.05,0.1,0.3 none,full) --out "$OUT/A-${GRID#A-}" ;;
  *) echo "unknown grid $GRID" >&2; exit 2 ;;
esac
