"""The small constant tensors the policies make once and cache (tables, grids, index ranges)."""
import torch


def static(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, marked as a static input of compiled graphs (`torch._dynamo.mark_static_address`):
    a compiled step then reads it where it is. Under CUDA graphs every other tensor input is
    copied into the graph's own buffer at each replay: a copy per cached table per step, for
    tensors that never change. Nothing changes for eager code. Made while dynamo traces (a
    policy first called inside a user's compiled function), it is left unmarked: dynamo
    forbids the call there, and the tensor is then the graph's own constant."""
    if not torch.compiler.is_compiling():
        torch._dynamo.mark_static_address(tensor)
    return tensor
