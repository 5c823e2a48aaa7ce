"""Numeric precision of a run: the autocast a step runs under and the gradient scaler fp16 needs."""
import contextlib

import torch

from coreaug.files import warn_at_caller

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve_precision(name, device, warn=True):
    """The precision `name` means on `device`: "auto" is bf16 on a GPU with bf16 arithmetic
    (compute capability 8.0 on: A100, H100, RTX 30 and later), fp16 (with a gradient scaler) on
    an older GPU (V100, T4), and fp32 on the CPU. Not `torch.cuda.is_bf16_supported()`, which
    says yes on older GPUs too, where bf16 is emulated, slowly. fp16 on the CPU is warned about
    (unless `warn` is False): torch's float16 autocast there makes a step 10-50x slower than fp32;
    so is bf16 on a CPU without bf16 instructions (`cpu_runs_bf16`)."""
    if name == "fp16" and device.type == "cpu" and warn:
        warn_at_caller("precision fp16 is for GPUs: on the CPU torch's float16 autocast makes each step 10-50x "
                       "slower than fp32; pass --precision fp32")
    if name == "bf16" and device.type == "cpu" and warn and not cpu_runs_bf16():
        warn_at_caller("precision bf16 on this CPU, which lacks bf16 instructions (AVX512-BF16 or AMX), makes "
                       "each step several times slower than fp32 (9-15x measured on an AVX2 CPU); pass "
                       "--precision fp32")
    if name != "auto":
        return name
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"


def cpu_runs_bf16():
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX: oneDNN's check), where bf16 autocast
    runs at about fp32's speed; elsewhere torch emulates it, many times slower. True where torch cannot
    say (an unknown CPU is not warned about)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def autocast_for(precision, device):
    """A zero-argument factory of the autocast context for `precision` ("fp32": no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def gradient_scaler(precision, device):
    """A GradScaler for fp16 (its range is too narrow for small gradients), else None.

    Neither step reads its inf check on the host: the eager step's optimizer is torch's fused
    one (`make_optimizer(scaled=True)`), which takes the scaler's flag and scale as tensors,
    and the compiled one-graph step does the scaler's work in its graph
    (`compiled_step.LossScaling`). bf16 needs no scaler.
    """
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
