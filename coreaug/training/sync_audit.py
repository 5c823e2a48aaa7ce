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
