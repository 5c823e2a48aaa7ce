"""Counting the ops that make a CUDA device wait for the host, while code runs on the CPU.

On the CPU nothing waits, but the same ops reach the dispatcher: reading a value
(`.item()`, `float(t)`, `bool(t)`, `int(t)`: `_local_scalar_dense`), shapes that depend on
values (`nonzero`, boolean-mask indexing and assignment, `masked_select`, `bincount`,
`unique`, `repeat_interleave` without an output size), and tensors made from host data
(`torch.tensor(list)`: `lift_fresh`, a host-to-device copy on CUDA). `.tolist()` and
`.numpy()` never reach the dispatcher on the CPU, so they are counted where Python calls them.
"""
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SYNCING = {
    aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
    aten.bincount.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    aten.masked_scatter.default, aten.is_nonzero.default, aten.equal.default, aten.lift_fresh.default,
    aten.repeat_interleave.Tensor, aten.nonzero_static.default,
}
INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


# Ops that launch no kernel on a GPU: views, empty tensors, profiler records.
LAUNCH_FREE = frozenset({
    "view", "_unsafe_view", "unsqueeze", "squeeze", "expand", "t", "transpose", "permute", "select", "slice",
    "as_strided", "as_strided_", "unbind", "split", "split_with_sizes", "alias", "detach", "_reshape_alias",
    "reshape", "flatten", "unflatten", "view_as", "expand_as", "chunk", "narrow", "diagonal", "empty",
    "empty_strided", "new_empty", "new_empty_strided", "lift_fresh", "_record_function_enter_new",
    "_record_function_exit"})


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active (use as a context manager), by name in
    `counts`: `total`, and `kernels`, those that launch a kernel on a GPU (all but LAUNCH_FREE's).
    Each op is at least one kernel launch on CUDA, so on the CPU this measures a GPU step's
    launch cost. A subclass sees each op's name in `count`."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))

    def count(self, name):
        self.counts[name] += 1

    @property
    def total(self):
        return sum(self.counts.values())

    @property
    def kernels(self):
        return sum(count for name, count in self.counts.items() if name not in LAUNCH_FREE)


class SyncAudit(TorchDispatchMode):
    """Counts syncing ops by name in `counts` while active (use as a context manager)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCING or (func in INDEXING and _has_bool_index(args)):
            self.counts[str(func)] += 1
        return func(*args, **kwargs)

    def __enter__(self):
        self._patched = {}
        for name in ("tolist", "numpy"):
            real = getattr(torch.Tensor, name)
            self._patched[name] = real

            def counted(tensor, *a, _real=real, _name=name, **k):
                self.counts[f"Tensor.{_name}"] += 1
                return _real(tensor, *a, **k)
            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, real in self._patched.items():
            setattr(torch.Tensor, name, real)
        return super().__exit__(*exc)

    @property
    def total(self):
        return sum(self.counts.values())


def _has_bool_index(args):
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (indices or ()) if i is not None)


def syncs_per_step(base, batch_sizes=(8, 16), **settings):
    """Syncing ops per training step of `coreaug.train(TrainConfig(**base, **settings))` (settings
    override base: a base that names the strategy can be audited with another).

    Trains twice, at two batch sizes over the same data and epochs, under `SyncAudit`, and
    divides the difference in counts by the difference in steps: work done once per epoch
    (selection, evaluation, logging) cancels out. Each is trained once before, unaudited: the
    policies build constant tables once a process at their first use (a few per batch layout,
    `lift_fresh`), which would otherwise fall in whichever audited run met that layout first.
    Returns (per step, (counts, counts)).
    """
    import coreaug

    for batch_size in batch_sizes:
        coreaug.train(coreaug.TrainConfig(**{**base, **settings, "batch_size": batch_size}))
    runs = []
    for batch_size in batch_sizes:
        with SyncAudit() as audit:
            result = coreaug.train(coreaug.TrainConfig(**{**base, **settings, "batch_size": batch_size}))
        steps = sum(-(-m["n_trained"] // batch_size) for m in result.history)
        runs.append((audit.total, steps, dict(audit.counts)))
    (count_a, steps_a, a), (count_b, steps_b, b) = runs
    return (count_a - count_b) / (steps_a - steps_b), (a, b)
