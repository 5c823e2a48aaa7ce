#!/usr/bin/env bash
# Keep the finished runs of the CIFAR-10 grids in the repository (their config.json,
# metrics.jsonl and summary.json: a few KB each; never checkpoints or weights), and put them back
# into a grid folder in a later session, so that `coreaug bench` skips them and the grid goes on.
#
# Usage: experiments/cifar10_runs.sh save OUT      OUT/<grid>/runs/* -> experiments/results/cifar10/runs/
#        experiments/cifar10_runs.sh restore OUT   the reverse (then rerun cifar10_evidence.sh DATA OUT ...)
# The runs record the data folder they read (config.json "dataset"): extract the archive to the same
# path (/work/data here) or `coreaug bench` treats them as another config.
set -euo pipefail
MODE="${1:?usage: cifar10_runs.sh save|restore OUT}"
OUT="${2:?usage: cifar10_runs.sh save|restore OUT}"
KEPT="$(dirname "$0")/results/cifar10/runs"
case $MODE in
  save)
    for summary in "$OUT"/*/runs/*/summary.json; do
      run="$(dirname "$summary")"; grid="$(basename "$(dirname "$(dirname "$run")")")"
      mkdir -p "$KEPT/$grid/$(basename "$run")"
      cp "$run"/config.json "$run"/metrics.jsonl "$run"/summary.json "$KEPT/$grid/$(basename "$run")/"
    done ;;
  restore)
    for run in "$KEPT"/*/*; do
      grid="$(basename "$(dirname "$run")")"
      mkdir -p "$OUT/$grid/runs"
      cp -rn "$run" "$OUT/$grid/runs/"
    done ;;
  *) echo "unknown mode $MODE (save or restore)" >&2; exit 2 ;;
esac
