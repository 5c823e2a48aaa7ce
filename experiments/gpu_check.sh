#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU and a CUDA build of torch in the environment
# (e.g. `make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`), then
# commit experiments/results/gpu.md and the tables it links.
#
# It runs, in this order, appending to gpu.md after each step (so a run cut short keeps what it did):
#   1. the CUDA tests: policies on the GPU, selection from GPU scores, the own-loop object with
#      every tensor on the GPU, pinned reads, and the training step under
#      torch.cuda.set_sync_debug_mode("error");
#   2. bench_trainer.py --device cuda, resnet20 on CIFAR-shaped synthetic data, RandAugment;
#   3. the same with max-loss transforms (the paper's strong augmentation: its speed-up claim);
#   4. gpu_augment_steps.py: trainer epochs with the copies augmented one step per call against
#      8 steps per call (--augment-steps; the default stays 1 until this has been measured);
#   5. bench_augment.py --device cuda (coreaug's policies on the GPU against per-image Pillow);
#   6. with two or more GPUs, a two-process NCCL run under torchrun.
# Sized for a 15-minute lease with the defaults below (EPOCHS=2: the second epoch is the one
# measured; TRAIN_LIMIT=25000 of the 50,000 synthetic images); EPOCHS=3 TRAIN_LIMIT= for the full set.
# Usage: [EPOCHS=2] [TRAIN_LIMIT=25000] experiments/gpu_check.sh [PYTHON]
#        (PYTHON: default .venv/bin/python if present, else python3)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
EPOCHS="${EPOCHS:-2}"
TRAIN_LIMIT="${TRAIN_LIMIT-25000}"
RESULTS=experiments/results
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ]; then
    echo "gpu_check: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')); nothing to check" >&2
    exit 2
fi
LIMIT_ARG=()
[ -n "$TRAIN_LIMIT" ] && LIMIT_ARG=(--train-limit "$TRAIN_LIMIT")
status=0
{
    echo "# GPU check"
    echo
    echo "Command: \`EPOCHS=$EPOCHS TRAIN_LIMIT=$TRAIN_LIMIT experiments/gpu_check.sh\`, $(date -u +%Y-%m-%d)."
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"
    echo '```'
    echo
    echo "## CUDA tests"
    echo
    echo '```'
    "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_augment_policies.py tests/test_training_sync.py \
        tests/test_selection_rules.py tests/test_data_streaming.py tests/test_method_object.py \
        -k "cuda or gpu or pinned" 2>&1 | tail -15
    echo '```'
} > "$RESULTS/gpu.md"
grep -q " passed" "$RESULTS/gpu.md" && ! grep -q -E " failed| error" "$RESULTS/gpu.md" || status=1
cat "$RESULTS/gpu.md"

trainer() {  # trainer AUGMENT OUT TITLE
    if "$PY" experiments/bench_trainer.py --device cuda --dataset synthetic-cifar --model resnet20 \
        --epochs "$EPOCHS" "${LIMIT_ARG[@]}" --augment "$1" --out "$2"; then
        { echo; echo "## $3 ([$(basename "$2")]($(basename "$2")))"; echo; sed -n '/^|/p' "$2"; } >> "$RESULTS/gpu.md"
    else
        status=1; { echo; echo "## $3: failed (see the run's output)"; } >> "$RESULTS/gpu.md"
    fi
}
trainer randaugment "$RESULTS/gpu_trainer.md" "Trainer, resnet20 on CIFAR-shaped synthetic data, RandAugment"
trainer maxloss "$RESULTS/gpu_trainer_maxloss.md" "Trainer, resnet20 on CIFAR-shaped synthetic data, max-loss transforms"
if "$PY" experiments/gpu_augment_steps.py --device cuda --train-limit "${TRAIN_LIMIT:-50000}" --epochs "$EPOCHS" \
    --out "$RESULTS/gpu_augment_steps.md"; then
    { echo; echo "## Steps per augmentation call ([gpu_augment_steps.md](gpu_augment_steps.md))"; echo
      sed -n '/^|/p' "$RESULTS/gpu_augment_steps.md"; } >> "$RESULTS/gpu.md"
else
    status=1
fi
if "$PY" experiments/bench_augment.py --device cuda --out "$RESULTS/gpu_augment.md"; then
    { echo; echo "## Augmentation ([gpu_augment.md](gpu_augment.md))"; echo; sed -n '/^|/p' "$RESULTS/gpu_augment.md"; } >> "$RESULTS/gpu.md"
else
    status=1
fi
{
    echo
    echo "## Two processes over NCCL"
    echo
    if [ "$GPUS" -ge 2 ]; then
        echo '```'
        "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m coreaug train --dataset synthetic-cifar \
            --train-limit 4096 --test-limit 1024 --epochs 2 --strategy coreset --subset 0.3 --device cuda --quiet 2>&1 | tail -3
        "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m coreaug train --dataset synthetic-cifar \
            --train-limit 4096 --test-limit 1024 --epochs 2 --strategy coreset --subset 0.3 --device cuda --sync-bn --quiet 2>&1 | tail -3
        echo '```'
    else
        echo "Skipped: one GPU (NCCL needs one GPU per process)."
    fi
} >> "$RESULTS/gpu.md"
exit $status
