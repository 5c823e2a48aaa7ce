#!/usr/bin/env bash
# The GPU check: sized to finish within a 15-minute lease of one GPU (BUDGET_S, default 840 s, counted
# from the script's start), on real CIFAR-10. Then commit experiments/results/gpu.md.
#
# Needs: a Python with a CUDA build of torch and coreaug's dependencies (numpy, scipy, faiss, apricot,
# scikit-learn, click, tqdm, numba, Pillow); nothing from the internet. coreaug itself is taken from
# this tree (an offline `pip install --no-deps -e .` when it is not importable). Whatever is missing
# is printed, and the script exits 2. The data: ../shared/data/cifar10-jpeg.tar.gz beside the
# repository (real CIFAR-10 as JPEG class folders, quality 75: figures come out a little below those
# of the original files), extracted into a temporary folder and trained with --image-size 32.
#
# In this order, each step under `timeout` so the whole never overruns, each section appended to
# gpu.md as soon as it is measured (a run cut short keeps what ran; earlier runs stay in the file):
#   1. the CUDA tests, short (-x -q, TESTS_S seconds at most), the compiled step's (CUDA graphs, any sync raises) last;
#   2. the speed table (experiments/bench_trainer.py --device cuda, resnet20, batch 128, TRAIN_LIMIT
#      training images, TABLE_EPOCHS epochs: those after the first are measured): the hand-written loop
#      (experiments/hand_loop.py) and coreaug's weak only (none), full RandAugment, random 10% and
#      30%, and the max-loss rule at 10% with max-loss transforms, each eager and compiled (a row
#      that --compile refuses, such as crust, is skipped with the reason), then full and random 30%
#      with --augment-steps 8 (eager only: one weak and one strong call for 8 steps); a compiled row that
#      fails (say inside CUDA graph trees) is measured again with --compile-mode default (bench_trainer.py
#      --fallback-mode default: compiled kernels, no CUDA graphs), its failure still named; columns
#      examples/s, ms per step, aten ops and launches per step, syncs per step, compile seconds, CUDA graph skips;
#      capped at TABLE_SHARE of the budget (rows not reached are missing from the table);
#   3. with the time left, the paper's recipe: resnet20 on the whole training set, --strategy coreset
#      --subset 0.1 --augment maxloss --select-every 20, 200 epochs if they fit, else as many as the
#      speed table's max-loss epoch time says fit in what is left (eager or compiled, whichever fits
#      more, compile time counted, in the compile mode that row was measured in: experiments/gpu_plan.py),
#      the cosine schedule set for that length; its test accuracy is
#      written beside the paper's (ResNet20, 200 epochs: weak only 89.46, 10% coreset 91.54, full
#      max-loss 93.50). Cut short by the budget, the last evaluated epoch is reported as such;
#   4. with two or more GPUs and a minute left, a two-process NCCL run with --sync-bn; with 3 minutes
#      more, one with --compile (the whole step compiled in each process).
#
# BUDGET_S is the script's own time, from its start: a lease that counts the machine's start-up too, or caps
# each command (e.g. at 600 s), needs a smaller one (e.g. BUDGET_S=540 in one 600 s command).
# Usage: [BUDGET_S=840] [TRAIN_LIMIT=10000] experiments/gpu_check.sh [PYTHON]
#        (PYTHON: default .venv/bin/python if present, else python3)
# Settings (environment): BUDGET_S, TRAIN_LIMIT (speed table), ROWS and MODES (bench_trainer.py's
#   --rows / --modes), TABLE_EPOCHS (3), COMPILE_MODE (the compiled rows' and recipe's --compile-mode:
#   auto, or e.g. default for compiled kernels without CUDA graphs), COUNT_STEPS, COUNT_MODES (eager:
#   the modes whose rows are counted), TABLE_SHARE (0.6: each compiled row compiles; the recipe has what
#   is left), TESTS_S (150; 0 skips the tests), RECIPE_EPOCHS (most, 200),
#   RECIPE_LIMIT (training images of the recipe; default all), EVAL_EVERY (10), MODEL (resnet20),
#   BATCH (128), IMAGE_SIZE (32), CIFAR_TAR (the archive), CIFAR_DIR (an extracted folder instead),
#   GPU_CHECK_RESULTS (the file appended to; default experiments/results/gpu.md on CUDA, and for a dry run a file
#   in $TMPDIR, named at the end: the project's GPU figures are not a CPU's), GPU_CHECK_LOGS (a folder
#   the logs are copied to at the end).
# coreaug not installed: the script installs this tree (`pip install --no-deps -e .`, offline); a Python that
# cannot install (a leased machine's read-only one) runs the tree's source from PYTHONPATH, with cli/ linked
# as coreaug/cli for the run. On a lease that lacks packages: experiments/gpu_lease.sh (wheels and archive
# carried, this script run into the folder the lease returns).
# Dry run on a CPU, everything tiny (what tests/test_gpu_check.py runs on an image folder it makes):
#   GPU_CHECK_DEVICE=cpu BUDGET_S=60 TRAIN_LIMIT=256 MODES=eager CIFAR_DIR=... experiments/gpu_check.sh
set -uo pipefail
START=$(date +%s)
# The settings given in the environment, for the heading's command (so that it reproduces the run); BUDGET_S
# and TRAIN_LIMIT are always shown. A value with characters outside [A-Za-z0-9_.,:@/+=-] is single-quoted.
SETTINGS=""
for name in ROWS TABLE_EPOCHS MODES COMPILE_MODE COUNT_STEPS COUNT_MODES TABLE_SHARE TESTS_S RECIPE_EPOCHS \
        RECIPE_LIMIT EVAL_EVERY MODEL BATCH IMAGE_SIZE; do
    value="${!name:-}"
    case "$value" in
        "") continue ;;
        *[!A-Za-z0-9_.,:@/+=-]*) value="'${value//\'/\'\\\'\'}'" ;;
    esac
    SETTINGS+="$name=$value "
done
cd "$(dirname "$0")/.."
PY="${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
BUDGET_S="${BUDGET_S:-840}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
TRAIN_LIMIT="${TRAIN_LIMIT:-10000}"
# max-loss early (the recipe's epoch estimate), then --augment-steps (eager only, never measured on a GPU:
# before the rows whose compiled twins compile cold, which a short lease's table is cut in)
ROWS="${ROWS:-hand,none,maxloss:0.1@maxloss,full/1,random:0.3/1,full,random:0.1,random:0.3}"
TABLE_EPOCHS="${TABLE_EPOCHS:-3}"
MODES="${MODES:-eager,compiled}"
COMPILE_MODE="${COMPILE_MODE:-auto}"
COUNT_STEPS="${COUNT_STEPS:-8}"
COUNT_MODES="${COUNT_MODES:-eager}"  # a compiled row's counts compile its step three more times: time the lease lacks
TABLE_SHARE="${TABLE_SHARE:-0.6}"
TESTS_S="${TESTS_S:-150}"
RECIPE_EPOCHS="${RECIPE_EPOCHS:-200}"
RECIPE_LIMIT="${RECIPE_LIMIT:-}"
EVAL_EVERY="${EVAL_EVERY:-10}"
MODEL="${MODEL:-resnet20}"
BATCH="${BATCH:-128}"
IMAGE_SIZE="${IMAGE_SIZE:-32}"
CIFAR_TAR="${CIFAR_TAR:-../shared/data/cifar10-jpeg.tar.gz}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
if [ "$DEVICE" = cuda ]; then OUT="${GPU_CHECK_RESULTS:-experiments/results/gpu.md}"
else OUT="${GPU_CHECK_RESULTS:-$(mktemp --suffix=.md "${TMPDIR:-/tmp}/gpu_check-dry-run.XXXXXX")}"; fi
export COREAUG_CACHE_DIR="${COREAUG_CACHE_DIR:-$WORK/decoded}"
# The benchmark scripts import torch before coreaug: OpenMP's wait policy set where they start.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# GPU_CHECK_LOGS (a folder): the logs and the speed table's files are copied there at the end, for a lease
# whose temporary folders do not come back.
keep_logs() {
    [ -n "${GPU_CHECK_LOGS:-}" ] || return 0
    mkdir -p "$GPU_CHECK_LOGS" && cp "$WORK"/*.log "$WORK"/*.md "$WORK"/*.json* "$GPU_CHECK_LOGS"/ 2> /dev/null
    return 0
}
trap 'keep_logs; rm -rf "$WORK"; [ -z "${LINKED_CLI:-}" ] || rm -f "$LINKED_CLI"' EXIT

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
append() { printf '%s\n' "$@" >> "$OUT"; }
section() { append "" "### $1" ""; }
missing() { echo "gpu_check: $1" >&2; exit 2; }

# -- What the machine has. ------------------------------------------------------------------------
# One Python start for every check (an import of torch costs seconds): the packages are looked up, not
# imported; torch is imported for its version and, on cuda, its devices.
check() {
    "$PY" - "$DEVICE" <<'EOF'
import importlib.util, sys
# Looked up as a script in experiments/ will import them: `python -` puts the working folder first (""), where
# coreaug's source is found but not its cli package, which an install maps (or PYTHONPATH with cli linked).
sys.path[:] = [p for p in sys.path if p != ""]
names = {"torch": "torch (a CUDA build)", "numpy": "numpy", "scipy": "scipy", "faiss": "faiss-cpu",
         "apricot": "apricot-select", "sklearn": "scikit-learn", "click": "click", "tqdm": "tqdm",
         "numba": "numba", "PIL": "pillow", "coreaug": "coreaug"}
lacking = [package for module, package in names.items() if importlib.util.find_spec(module) is None]
if lacking:
    print("missing " + " ".join(lacking))
    sys.exit(0)
import torch
if sys.argv[1] == "cuda" and torch.cuda.device_count() < 1:
    print(f"nocuda torch {torch.__version__} sees no CUDA device")
    sys.exit(0)
bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
print(f"ok torch {torch.__version__} cuda {torch.version.cuda} bf16 {bf16}")
EOF
}
FOUND=$(check) || missing "$PY does not run: pass a Python as the first argument"
LINKED_CLI=""
if [ "$FOUND" = "missing coreaug" ]; then
    echo "gpu_check: coreaug is not importable; installing this tree offline (pip install --no-deps -e .)" >&2
    if ! "$PY" -m pip install --no-index --no-deps --no-build-isolation -q -e . > "$WORK/pip.log" 2>&1; then
        # A Python that cannot install (read-only, no build tools): this tree's source first on PYTHONPATH, its cli
        # package linked where an install maps it (coreaug.cli), the link removed at the end.
        tail -3 "$WORK/pip.log" >&2
        if [ ! -e coreaug/cli ]; then
            ln -s ../cli coreaug/cli && LINKED_CLI=coreaug/cli
        fi
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
        echo "gpu_check: pip could not install it; running this tree's source from PYTHONPATH" >&2
    fi
    FOUND=$(check)
fi
case "$FOUND" in
    missing*) missing "$PY lacks Python packages: ${FOUND#missing } (install them from local wheels; torch must be a CUDA build)" ;;
    nocuda*) missing "${FOUND#nocuda }: a CUDA build of torch and a GPU are needed (GPU_CHECK_DEVICE=cpu makes a dry run)" ;;
    ok*) TORCH_LINE="${FOUND#ok }" ;;
    *) missing "$PY failed to check the packages: $FOUND" ;;
esac
if [ -n "${CIFAR_DIR:-}" ]; then
    DATA="$CIFAR_DIR"
else
    [ -f "$CIFAR_TAR" ] || missing "no CIFAR-10 archive at $CIFAR_TAR (see ../shared/data/README.md), or set CIFAR_DIR"
    mkdir -p "$WORK/data"
    # 60,000 small files: seconds on a GPU machine's disk, a minute or more on a busy small one.
    EXTRACT_S=$(( $(left) / 3 > 60 ? $(left) / 3 : 60 ))
    timeout "$EXTRACT_S" tar -xzf "$CIFAR_TAR" -C "$WORK/data" \
        || missing "could not extract $CIFAR_TAR into $WORK/data in $EXTRACT_S s (a third of the budget left, at least 60)"
    DATA="$(dirname "$(find "$WORK/data" -maxdepth 3 -type d -name train | head -1)")"
fi
[ -d "$DATA/train" ] || missing "no train/ folder of class folders in $DATA"

# -- The run's heading, and the machine. -----------------------------------------------------------
[ -f "$OUT" ] || append "# GPU checks" "" "Each run of experiments/gpu_check.sh appends a section, newest last."
DRY_NOTE=$( [ "$DEVICE" = cuda ] || echo " (dry run on $DEVICE)")
append "" "## Run of $(date -u '+%Y-%m-%d %H:%M') UTC: \
\`BUDGET_S=$BUDGET_S TRAIN_LIMIT=$TRAIN_LIMIT ${SETTINGS}experiments/gpu_check.sh\`$DRY_NOTE"
section "Machine"
append '```'
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT" 2>&1
fi
echo "$TORCH_LINE" >> "$OUT"
echo "load average: $(cat /proc/loadavg 2> /dev/null)" >> "$OUT"
echo "data: $DATA ($(find "$DATA/train" -type f | wc -l) training images)" >> "$OUT"
append '```'
status=0

# -- 1. The CUDA tests. ----------------------------------------------------------------------------
section "CUDA tests"
if [ "$DEVICE" = cuda ] && [ "$TESTS_S" -gt 0 ]; then
    append '```'
    # The compiled steps last (they compile for tens of seconds): the others are reported even if the time runs out.
    timeout --kill-after=5 "$TESTS_S" "$PY" -m pytest -x -q -p no:cacheprovider tests/test_augment_policies.py \
        tests/test_training_sync.py tests/test_selection_rules.py tests/test_data_streaming.py \
        tests/test_method_object.py tests/test_augment_draw_table.py tests/test_training_compile.py \
        -k "(cuda or gpu or pinned) and not cuda_graph" \
        > "$WORK/tests.log" 2>&1
    rc=$?
    tail -6 "$WORK/tests.log" >> "$OUT"
    append '```'
    [ "$rc" -eq 0 ] || { status=1; append "" "Exit code $rc$( [ "$rc" -eq 124 ] && echo " (cut at $TESTS_S s)")."; }
elif [ "$DEVICE" = cuda ]; then
    append "Skipped: TESTS_S=0."
else
    append "Skipped: a dry run on $DEVICE (the CUDA tests skip themselves without a GPU)."
fi
echo "gpu_check: tests done, $(left) s left" >&2

# -- 2. The speed table. ---------------------------------------------------------------------------
TABLE_S=$(awk -v b="$BUDGET_S" -v s="$TABLE_SHARE" -v l="$(left)" 'BEGIN { t = int(b * s); if (t > l - 30) t = l - 30; print (t > 0 ? t : 0) }')
section "Speed table: coreaug beside a hand-written loop ($MODEL, batch $BATCH, $TRAIN_LIMIT training images, at most $TABLE_S s)"
if [ "$TABLE_S" -gt 0 ]; then
    timeout --kill-after=10 "$TABLE_S" "$PY" experiments/bench_trainer.py --device "$DEVICE" --dataset "$DATA" \
        --image-size "$IMAGE_SIZE" --model "$MODEL" --batch-size "$BATCH" --epochs "$TABLE_EPOCHS" --train-limit "$TRAIN_LIMIT" \
        --test-limit 1000 --rows "$ROWS" --modes "$MODES" --compile-mode "$COMPILE_MODE" --count-steps "$COUNT_STEPS" \
        --count-modes "$COUNT_MODES" --fallback-mode default --out "$WORK/speed.md" --json "$WORK/speed.json" > "$WORK/speed.log" 2>&1
    rc=$?
    if [ -f "$WORK/speed.md" ]; then
        sed -n '/^Command/p; /^Device/p' "$WORK/speed.md" >> "$OUT"
        append ""
        # The tables (speed; on CUDA, host time in runtime calls) and the failures, a blank line between.
        awk '/^\|/ { print; table = 1; next } /^Failed|^Host time/ { if (table) print ""; print; print ""; table = 0 }' \
            "$WORK/speed.md" >> "$OUT"
    fi
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || status=1
        append "" "Exit code $rc$( { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && echo ": cut at $TABLE_S s, rows not reached are missing"). Last lines:" "" '```'
        grep -v "^USDT:" "$WORK/speed.log" | tail -5 >> "$OUT"  # (torch 2.13 prints a USDT line per profiler start)
        append '```'
    fi
    append "" "Columns: see experiments/bench_trainer.py. Targets (issue 26, for 50,000 images: scale examples/s): weak only at most 1.0 s an epoch, full RandAugment 1.6 s, 10% max-loss 1.5 s; coreaug within 1.15x of the compiled hand loop on weak only."
else
    append "Skipped: no time left."
fi
echo "gpu_check: speed table done, $(left) s left" >&2

# -- 3. The paper's recipe, as long as fits. ------------------------------------------------------
section "Paper recipe: $MODEL, coreset 10% with max-loss transforms, R = 20"
TRAIN_IMAGES=$(find "$DATA/train" -type f | wc -l)
[ -n "$RECIPE_LIMIT" ] && [ "$RECIPE_LIMIT" -lt "$TRAIN_IMAGES" ] && TRAIN_IMAGES=$RECIPE_LIMIT
LEFT=$(left)
# Epochs that fit, eager or compiled, from the speed table (experiments/gpu_plan.py says how).
PLAN=$("$PY" experiments/gpu_plan.py "$WORK/speed.json" "$LEFT" "$TRAIN_IMAGES" "$TRAIN_LIMIT" "$RECIPE_EPOCHS")
read -r EPOCHS_FIT MODE EPOCH_S COMPILE_S LEFT_AT FALLBACK BASIS <<< "$PLAN"
# The compiled row measured only in the table's fallback mode (CUDA graphs failed): the recipe compiles in that one.
RECIPE_COMPILE_MODE="$COMPILE_MODE" SHOWN_MODE="$MODE"
if [ -n "${FALLBACK:-}" ] && [ "$FALLBACK" != - ]; then RECIPE_COMPILE_MODE="$FALLBACK" SHOWN_MODE="$MODE ($FALLBACK mode)"; fi
EPOCHS_FIT="${EPOCHS_FIT:-0}"
append "Epochs that fit: $EPOCHS_FIT = min($RECIPE_EPOCHS, floor(($LEFT_AT s left - 20 reserve - 30 start-up - $COMPILE_S compile) / $EPOCH_S s per epoch)), mode $SHOWN_MODE; the epoch estimate is ${BASIS//_/ } of the speed table, scaled to $TRAIN_IMAGES training images, x 1.15 for evaluation and selection."
if [ "$EPOCHS_FIT" -ge 1 ]; then
    RUN="$WORK/recipe"
    LIMIT_ARG=()
    [ -n "$RECIPE_LIMIT" ] && LIMIT_ARG=(--train-limit "$RECIPE_LIMIT" --test-limit "$RECIPE_LIMIT")
    COMPILE_ARG=()
    [ "$MODE" = compiled ] && COMPILE_ARG=(--compile --compile-mode "$RECIPE_COMPILE_MODE")
    RECIPE_S=$(( $(left) - 15 ))
    append "" "Command: \`coreaug train --dataset CIFAR10_JPEG --image-size $IMAGE_SIZE --model $MODEL --strategy coreset --subset 0.1 --augment maxloss --select-every 20 --epochs $EPOCHS_FIT --batch-size $BATCH --eval-every $EVAL_EVERY --device $DEVICE ${COMPILE_ARG[*]} ${LIMIT_ARG[*]}\` (at most $RECIPE_S s)"
    timeout --kill-after=10 "$RECIPE_S" "$PY" -m coreaug train --dataset "$DATA" --image-size "$IMAGE_SIZE" --model "$MODEL" \
        --strategy coreset --subset 0.1 --augment maxloss --select-every 20 --epochs "$EPOCHS_FIT" --batch-size "$BATCH" \
        --eval-every "$EVAL_EVERY" --device "$DEVICE" "${COMPILE_ARG[@]}" "${LIMIT_ARG[@]}" --out "$RUN" --quiet \
        > "$WORK/recipe.log" 2>&1
    rc=$?
    cp "$RUN/metrics.jsonl" "$WORK/recipe_metrics.jsonl" 2> /dev/null
    "$PY" - "$RUN/metrics.jsonl" "$EPOCHS_FIT" "$rc" >> "$OUT" <<'EOF'
import json, sys
path, planned, rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    history = [json.loads(line) for line in open(path)]
except OSError:
    history = []
tested = [m for m in history if m.get("test_accuracy") is not None]
print()
print("| epochs planned | epochs run | last tested epoch | test accuracy there | s per epoch (training + selection) "
      "| paper, 200 epochs: weak only / 10% coreset / full max-loss |")
print("|---|---|---|---|---|---|")
last = tested[-1] if tested else None
seconds = sum(m["epoch_seconds"] for m in history) / len(history) if history else float("nan")
print(f"| {planned} | {len(history)} | {last['epoch'] + 1 if last else '—'} | "
      f"{format(last['test_accuracy'], '.2%') if last else '—'} | {seconds:.2f} | 89.46 / 91.54 / 93.50 |")
print()
if rc != 0:
    print(f"Exit code {rc}" + (": cut by the time budget before the schedule ended, so the accuracy is not "
                                "a finished run's." if rc in (124, 137) else "."))
elif len(history) < 200:
    print(f"A shorter schedule than the paper's ({planned} epochs, cosine set for that length): expect less "
          "than its figures; the JPEG copy of CIFAR-10 costs a little more.")
EOF
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
        status=1
        append "" '```'
        grep -v "^USDT:" "$WORK/recipe.log" | tail -5 >> "$OUT"
        append '```'
    fi
else
    append "" "Skipped: no epoch fits in the time left."
fi
# -- 4. With two or more GPUs and time left, a two-process NCCL run. --------------------------------
section "Two processes over NCCL"
GPUS=0
[ "$DEVICE" = cuda ] && GPUS=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU')
if [ "$GPUS" -ge 2 ] && [ "$(left)" -gt 60 ]; then
    append '```'
    timeout --kill-after=5 $(( $(left) - 5 )) "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m coreaug \
        train --dataset synthetic-cifar --train-limit 4096 --test-limit 1024 --epochs 2 --strategy coreset --subset 0.3 \
        --device cuda --sync-bn --quiet 2>&1 | tail -3 >> "$OUT"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    append '```'
    if [ "$(left)" -gt 180 ]; then  # the whole step compiled in each process (no DDP), gradients averaged in it
        append "" "With --compile (no --sync-bn):" "" '```'
        timeout --kill-after=5 $(( $(left) - 5 )) "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 \
            -m coreaug train --dataset synthetic-cifar --train-limit 4096 --test-limit 1024 --epochs 2 \
            --strategy coreset --subset 0.3 --device cuda --compile --quiet 2>&1 | tail -3 >> "$OUT"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        append '```'
    fi
else
    append "Skipped: $( [ "$GPUS" -ge 2 ] && echo "no time left" || echo "fewer than two GPUs (NCCL needs one GPU per process)")."
fi
section "End"
append "Finished after $(( $(date +%s) - START )) s of the $BUDGET_S s budget; exit status $status."
echo "gpu_check: done in $(( $(date +%s) - START )) s; results appended to $OUT" >&2
exit $status
