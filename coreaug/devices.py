"""The check that a CUDA device asked for is one this machine has, shared by `coreaug train`'s
--device (coreaug.training.distributed.pick_device) and the API's device= arguments
(coreaug.selection.gradients)."""
import torch

from coreaug.errors import UsageError


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
