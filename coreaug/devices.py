"""The check that a CUDA device asked for is one this machine has, shared by `coreaug train`'s
--device (coreaug.training.distributed.pick_device) and the API's device= arguments
(`api_device`: estimate_gradients, CoresetAugmentation.scores, EpochPlan.on_device)."""
import os

import torch

from coreaug.errors import UsageError


def usable_cores():
    """The cores this process may run on (a taskset or Slurm share, a container's cpuset), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def check_cuda_present(device, name, no_cuda, other_index):
    """`device` (a torch.device; `name` as the user wrote it) when it is not CUDA or is a CUDA
    device torch sees, else a UsageError ending with the advice `no_cuda` (no CUDA device at all)
    or `other_index` (an index past the devices there are)."""
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UsageError(f"device {name!r} was asked for but torch sees no CUDA device; {no_cuda}")
    if device.index is not None and device.index >= count:
        raise UsageError(f"device {name!r} was asked for but torch sees {count} CUDA device(s), cuda:0 to "
                         f"cuda:{count - 1}; {other_index}")
    return device


def api_device(device):
    """The torch.device a Python API's `device=` names: "auto" (CUDA when available, else the
    CPU), or anything `torch.device` takes ("cpu", "cuda:1", "mps", an index: 0 is cuda:0 on a
    CUDA machine), unlike `--device`, which is CPU or CUDA only. A UsageError for a name torch
    does not know or a device this machine lacks (a CUDA index past its devices, mps or xpu
    where torch has none)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        if isinstance(device, int) and not isinstance(device, bool):  # an index: torch's accelerator's, none here
            raise UsageError(f"device {device} (an index of an accelerator, as torch reads it) was asked for but "
                             "torch sees none; pass device='cpu' (or 'auto')") from None
        raise UsageError("device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:N' or 'mps', "
                         f"got {device!r}") from None
    check_cuda_present(checked, str(device), "pass device='cpu'", "pass one of them")
    if checked.type not in ("cpu", "cuda", "meta") and not _device_type_available(checked.type):
        raise UsageError(f"device {str(device)!r} was asked for but this torch has no {checked.type} device; "
                         "pass device='cpu' (or 'auto')")
    return checked


def _device_type_available(kind):
    """Whether torch can use devices of `kind` ("mps", "xpu", ...) here: its backend's is_available(),
    True where torch offers none to ask (the first use of the device then tells)."""
    if kind == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    return bool(available()) if callable(available) else True
