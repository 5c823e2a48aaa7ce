#!/usr/bin/env bash
# Issue 16's evidence grids on real CIFAR-10 (the JPEG copy in ../shared/data, quality 75: expect
# accuracies a little below the original files'), at CPU scale; the tables of
# experiments/results/cifar10/ come from them (see its README).
#
# Setting (chosen in experiments/results/cifar10/README.md): a fixed sample of 2,000 training
# images and 2,000 test images, the small CNN (`--model cnn`), 20 epochs, batch 64, lr 0.1
# (cosine), re-selection every 2 epochs (the paper's R = 20 of 200 epochs: ten selections).
# One `full` run with max-loss transforms takes about 3 minutes on one core; it beats weak
# augmentation alone by about 6 points (pilot, seed 0: 56.4% vs 50.1%).
#
# Usage: experiments/cifar10_evidence.sh DATA OUT [GRID]
#   DATA   the extracted archive (holds train/ and test/)
#   OUT    the grids' folders: OUT/<grid>/runs/<run>/ (a rerun skips finished runs, resumes the others)
#   GRID   one grid only (default: all, in this order):
#          A-maxloss, A-randaugment: all data + augmented subsets (append mode) at 5/10/30%.
#          A-time: other training lengths, for accuracy against time at equal budgets (quiet
#             rates: full 7.0 s/epoch, none 1.9, 10% subsets 2.6-3.0): full for 8 and 40 epochs,
#             weak only for 30, 40 and 60, random and coreset at 10% for 40.
#          A-weighted: the coreset at 10% with its copies weighted by cluster size
#             (--weight-augmented: the weighted sum the paper's analysis is about).
#          B: tiny subsets trained alone (subset mode) at 0.5/1/2/5% of a 10,000-image sample
#             (50 to 500 images: the paper's 0.1-1% of CIFAR-10 in numbers of images), 200 epochs,
#             R = 10, test accuracy every 10 epochs.
#          C: 50% symmetric label noise on a 500-image sample, 100 epochs, randaugment: all data
#             + augmented subsets at 10/30/50%; C-subset: subset mode at 50%.
#          C-crust: grid C's crust cells after crust's fix (163cf68: before it, crust's picks were the
#             coreset's from about 30% on), beside random rerun by the same code.
# Environment: JOBS (default 2) runs at a time, each in its own process with its share of the
# cores (`coreaug bench --jobs`); SHARD=I/N trains only that share of every grid (e.g. one task
# of a Slurm array: every task writes to the same OUT); REPORTS (default OUT/reports) is where
# `coreaug report` writes each grid's tables, after the grid's runs.
# Seeds per cell (as the results README reports them): 5, and more where a comparison was close:
# grid A-maxloss 10 for every rule at 5% and 10%, 30 for random, crust and coreset-history at 5%,
# 40 for random, coreset and maxloss at 10%;
# grid C 10 for the references and random and coreset-history at 50%, and five rules at 30%;
# grid C-subset 10 for random, coreset-lowloss, coreset-history and coreset-heldout.
set -euo pipefail
DATA="${1:?usage: cifar10_evidence.sh DATA OUT [GRID]}"
OUT="${2:?usage: cifar10_evidence.sh DATA OUT [GRID]}"
ONLY="${3:-}"
JOBS="${JOBS:-2}"
REPORTS="${REPORTS:-$OUT/reports}"
export OMP_NUM_THREADS=1  # with JOBS=1 too, every run is single-threaded
# The settings below define the runs (a run folder is reused only by the same settings): keep them.
SET="--dataset $DATA --image-size 32 --model cnn --train-limit 2000 --test-limit 2000 --epochs 20
     --batch-size 64 --select-every 2 --seeds 5 --quiet"
NOISE="--dataset $DATA --image-size 32 --model cnn --train-limit 500 --test-limit 2000 --epochs 100
       --batch-size 64 --select-every 5 --seeds 5 --quiet --label-noise 0.5 --augment randaugment"
PAPER="coreset,random,maxloss"
BEYOND="coreset-history,coreset-lowloss,crust,infobatch,ccs"
GRIDS="A-maxloss A-randaugment A-time A-weighted B C C-subset C-crust"

bench() { coreaug bench "$@" --jobs "$JOBS" ${SHARD:+--shard "$SHARD"}; }
report() { coreaug report "$OUT/$1" --out "$REPORTS" --name "$1"; }

grid() {
  case $1 in
    A-maxloss|A-randaugment)
      bench $SET --augment "${1#A-}" --strategies=$PAPER,$BEYOND --subsets=0.05,0.1,0.3 --references=none,full \
        --out "$OUT/$1"
      if [ "$1" = A-maxloss ]; then
        bench $SET --augment maxloss --strategies=$PAPER,$BEYOND --subsets=0.05,0.1 --references= --seeds 10 \
          --out "$OUT/$1"
        bench $SET --augment maxloss --strategies=random,crust,coreset-history --subsets=0.05 --references= \
          --seeds 30 --out "$OUT/$1"
        bench $SET --augment maxloss --strategies=$PAPER --subsets=0.1 --references= --seeds 40 --out "$OUT/$1"
      fi
      report "$1" ;;
    A-time)
      bench $SET --augment maxloss --epochs 8 --strategies= --references=full --out "$OUT/A-time-full8"
      bench $SET --augment maxloss --epochs 30 --strategies= --references=none --out "$OUT/A-time-none30"
      bench $SET --augment maxloss --epochs 60 --strategies= --references=none --out "$OUT/A-time-none60"
      bench $SET --augment maxloss --epochs 40 --strategies=random,coreset --subsets=0.1 --references= \
        --out "$OUT/A-time-subsets40"
      bench $SET --augment maxloss --epochs 40 --strategies= --references=full --out "$OUT/A-time-full40"
      bench $SET --augment maxloss --epochs 40 --strategies= --references=none --out "$OUT/A-time-none40"
      for part in full8 none30 none60 subsets40 full40 none40; do report "A-time-$part"; done ;;
    A-weighted)
      bench $SET --augment maxloss --weight-augmented --strategies=coreset --subsets=0.1 --references= \
        --out "$OUT/A-weighted"
      report A-weighted ;;
    B)
      for subset in 0.005 0.01 0.02 0.05; do  # one fraction at a time: a stopped grid has whole comparisons
        bench --dataset "$DATA" --image-size 32 --model cnn --train-limit 10000 --test-limit 2000 \
          --epochs 200 --eval-every 10 --batch-size 64 --select-every 10 --seeds 5 --quiet --augment maxloss --mode subset \
          --strategies "$PAPER,$BEYOND" --subsets $subset --references= --out "$OUT/B"
      done
      report B ;;
    C)
      bench $NOISE --strategies=$PAPER,$BEYOND --subsets=0.1,0.3,0.5 --references=none,full --out "$OUT/C"
      bench $NOISE --strategies=random,coreset-history --subsets=0.5 --references=none,full --seeds 10 --out "$OUT/C"
      bench $NOISE --strategies=random,coreset,maxloss,infobatch,coreset-history --subsets=0.3 --references= \
        --seeds 10 --out "$OUT/C"
      report C ;;
    C-subset)
      bench $NOISE --mode subset --strategies "$PAPER,$BEYOND,coreset-heldout" --subsets 0.5 --references= \
        --out "$OUT/C-subset"
      bench $NOISE --mode subset --strategies random,coreset-lowloss,coreset-history,coreset-heldout --subsets 0.5 \
        --references= --seeds 10 --out "$OUT/C-subset"
      report C-subset ;;
    C-crust)
      bench $NOISE --strategies=random,crust --subsets=0.1,0.3,0.5 --references= --out "$OUT/C-crust"
      report C-crust ;;
    *) echo "unknown grid $1; choose one of: $GRIDS" >&2; exit 2 ;;
  esac
}

for name in ${ONLY:-$GRIDS}; do
  grid "$name"
done
