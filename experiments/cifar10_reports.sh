#!/usr/bin/env bash
# Regenerate every CIFAR-10 table under experiments/results/cifar10/ from the grids' archives
# (experiments/results/cifar10/runs/<grid>.runs.jsonl.xz, written by `coreaug archive`).
# Run from the repository root; each .md records the exact command that produced it.
#
# Usage: experiments/cifar10_reports.sh [RUNS]   RUNS: where the archives (or grid folders) are
#        (default experiments/results/cifar10/runs; a grid still running can be given as its folder)
# Without an activated environment: COREAUG=".venv/bin/python -m coreaug" PYTHON=.venv/bin/python
set -euo pipefail
RUNS="${1:-experiments/results/cifar10/runs}"
RESULTS=experiments/results/cifar10
PAPER=experiments/paper
COREAUG="${COREAUG:-coreaug}"
PYTHON="${PYTHON:-python}"
grid() { if [ -d "$RUNS/$1" ]; then echo "$RUNS/$1"; else echo "$RUNS/$1.runs.jsonl.xz"; fi; }

$COREAUG report "$(grid A-maxloss)" "$(grid A-weighted)=weighted copies" "$(grid A-time-full8)=8 epochs" \
  "$(grid A-time-none30)=30 epochs" "$(grid A-time-none60)=60 epochs" "$(grid A-time-subsets40)=40 epochs" \
  "$(grid A-time-full40)=40 epochs" "$(grid A-time-none40)=40 epochs" \
  --paper-figures $PAPER/table4.csv --epoch-seconds $RESULTS/timing-maxloss-rules.csv --out $RESULTS --name A-maxloss \
  --title "Grid A, max-loss transforms: all data + augmented subsets (append mode), CIFAR-10 at CPU scale"
$COREAUG report "$(grid A-randaugment)" --epoch-seconds $RESULTS/timing-randaugment.csv --out $RESULTS \
  --name A-randaugment --title "Grid A, RandAugment: all data + augmented subsets (append mode), CIFAR-10 at CPU scale"
$COREAUG report "$(grid B)" --paper-figures $PAPER/tiny.csv --out $RESULTS --name B \
  --title "Grid B: tiny subsets trained alone (subset mode), max-loss transforms, CIFAR-10 at CPU scale"
$COREAUG report "$(grid C)" "$(grid C-subset)=subset mode" --baseline random,none,full --paper-figures $PAPER/noise.csv \
  --out $RESULTS --name C \
  --title "Grid C: 50% symmetric label noise, all data + augmented subsets, CIFAR-10 at CPU scale"
$COREAUG report "$(grid C-crust)" --out $RESULTS --name C-crust \
  --title "Grid C, crust after its fix (163cf68) beside random run by the same code: 50% label noise"
# accuracy against time at 10%, on the quiet machine's seconds per epoch, against 95% of full's 20-epoch accuracy
$COREAUG report "$(grid A-maxloss)" "$(grid A-time-full8)=8 epochs" "$(grid A-time-none30)=30 epochs" \
  "$(grid A-time-none40)=40 epochs" "$(grid A-time-none60)=60 epochs" "$(grid A-time-subsets40)=40 epochs" \
  "$(grid A-time-full40)=40 epochs" --subsets 0.1 --target 0.5365 --epoch-seconds $RESULTS/timing-maxloss-rules.csv \
  --out $RESULTS --name time-maxloss --title "Grid A, max-loss transforms, 10%: accuracy against training time"
# the flipped share of each selection over the epochs (first and last selection: not in the report)
$PYTHON experiments/cifar10_flipped.py "$(grid C)" $RESULTS/C-flipped
$PYTHON experiments/cifar10_flipped.py "$(grid C-subset)" $RESULTS/C-subset-flipped
