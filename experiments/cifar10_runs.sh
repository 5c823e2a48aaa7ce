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
      # the kept runs first (a finished run already in OUT stays as it is), so the archive loses none; a run
      # of OUT named as a kept one but of other settings or figures (trained on another copy of the data, a
      # test on a sample) would replace the kept one: refused, nothing written
      if [ -f "$KEPT/$grid.runs.jsonl.xz" ]; then
        python3 - "$KEPT/$grid.runs.jsonl.xz" "$OUT/$grid/runs" <<'EOF'
import json, lzma, os, sys
kept, runs = sys.argv[1:]
other = []
with lzma.open(kept, "rt", encoding="utf-8") as f:
    for line in f:
        record = json.loads(line)
        path = os.path.join(runs, record["name"], "summary.json")
        try:
            with open(path, encoding="utf-8") as g:
                summary = json.load(g)
        except (OSError, ValueError):
            continue  # not in OUT (restored below), or unfinished there
        theirs, ours = record.get("summary") or {}, summary
        if (theirs.get("config", {}).get("dataset"), theirs.get("final_test_accuracy")) != \
                (ours.get("config", {}).get("dataset"), ours.get("final_test_accuracy")):
            other.append(record["name"])
if other:
    sys.exit(f"{runs} holds {len(other)} run(s) named as kept ones of {kept} but trained otherwise (another dataset "
             f"folder or other figures: {', '.join(other[:5])}); move them away, or save into a copy of the archive")
EOF
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
