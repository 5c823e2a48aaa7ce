#!/usr/bin/env bash
# Keep the finished runs of the CIFAR-10 grids in the repository, one archive per grid
# (experiments/results/cifar10/runs/<grid>.runs.jsonl.xz, written by `coreaug archive`: each run's
# config.json, metrics.jsonl and summary.json; never checkpoints or weights), and put them back
# into grid folders in a later session, so that `coreaug bench` skips them and the grid goes on.
#
# Usage: experiments/cifar10_runs.sh save OUT      OUT/<grid>/runs/* merged into runs/<grid>.runs.jsonl.xz
#        experiments/cifar10_runs.sh restore OUT   the reverse (then rerun cifar10_evidence.sh DATA OUT ...)
# The runs record the data folder they read (config.json "dataset"): extract the archive to the same
# path (/work/data here) or `coreaug bench` treats them as another config.
set -euo pipefail
MODE="${1:?usage: cifar10_runs.sh save|restore OUT}"
OUT="${2:?usage: cifar10_runs.sh save|restore OUT}"
KEPT="$(dirname "$0")/results/cifar10/runs"
case $MODE in
  save)
    for runs in "$OUT"/*/runs; do
      grid="$(basename "$(dirname "$runs")")"
      # the kept runs first (a finished run already in OUT stays as it is), so the archive loses none
      if [ -f "$KEPT/$grid.runs.jsonl.xz" ]; then
        coreaug archive --restore "$KEPT/$grid.runs.jsonl.xz" --out "$OUT/$grid"
      fi
      coreaug archive "$OUT/$grid" --to "$KEPT/$grid.runs.jsonl.xz"
    done ;;
  restore)
    for archive in "$KEPT"/*.runs.jsonl.xz; do
      coreaug archive --restore "$archive" --out "$OUT/$(basename "$archive" .runs.jsonl.xz)"
    done ;;
  *) echo "unknown mode $MODE (save or restore)" >&2; exit 2 ;;
esac
