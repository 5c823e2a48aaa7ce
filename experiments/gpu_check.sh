#!/usr/bin/env bash
# The CUDA check, for the day a GPU is lent: run it on a machine with an NVIDIA GPU and a CUDA
# build of torch installed in the environment (e.g. `make install TORCH_SPEC="torch --index-url
# https://download.pytorch.org/whl/cu124"` on a machine with internet), then commit
# experiments/results/gpu.md and the tables it links.
#
# It runs: the CUDA tests (policies on the GPU, the training step under
# torch.cuda.set_sync_debug_mode("error")), bench_augment.py --device cuda, bench_trainer.py
# --device cuda on CIFAR-shaped synthetic data with resnet20, and, with two or more GPUs, a
# two-process NCCL run under torchrun. About 10 minutes on one H100.
# Usage: experiments/gpu_check.sh [PYTHON]   (default: .venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
RESULTS=experiments/results
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ]; then
    echo "gpu_check: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')); nothing to check" >&2
    exit 2
fi
{
    echo "# GPU check"
    echo
    echo "Command: \`experiments/gpu_check.sh\`, $(date -u +%Y-%m-%d)."
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"
    echo '```'
    echo
    echo "## CUDA tests"
    echo
    echo '```'
    "$PY" -m pytest -q -rs tests/test_augment_policies.py tests/test_training_sync.py -k cuda 2>&1 | tail -5
    echo '```'
} > "$RESULTS/gpu.md"
"$PY" experiments/bench_augment.py --device cuda --out "$RESULTS/gpu_augment.md"
"$PY" experiments/bench_trainer.py --device cuda --dataset synthetic-cifar --model resnet20 --epochs 3 \
    --out "$RESULTS/gpu_trainer.md"
{
    echo
    echo "## Augmentation ([gpu_augment.md](gpu_augment.md))"
    echo
    sed -n '/^|/p' "$RESULTS/gpu_augment.md"
    echo
    echo "## Trainer, resnet20 on CIFAR-shaped synthetic data ([gpu_trainer.md](gpu_trainer.md))"
    echo
    sed -n '/^|/p' "$RESULTS/gpu_trainer.md"
    echo
    echo "## Two processes over NCCL"
    echo
    if [ "$GPUS" -ge 2 ]; then
        echo '```'
        "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m coreaug train --dataset synthetic-cifar \
            --train-limit 4096 --test-limit 1024 --epochs 2 --subset 0.3 --device cuda --quiet 2>&1 | tail -3
        "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m coreaug train --dataset synthetic-cifar \
            --train-limit 4096 --test-limit 1024 --epochs 2 --subset 0.3 --device cuda --sync-bn --quiet 2>&1 | tail -3
        echo '```'
    else
        echo "Skipped: one GPU (NCCL needs one GPU per process)."
    fi
} >> "$RESULTS/gpu.md"
cat "$RESULTS/gpu.md"
