"""Training under torchrun: this process's rank and device, and the few collectives the trainer needs.

torchrun (torch.distributed.run) starts one process per device and tells each its place
through RANK, WORLD_SIZE and LOCAL_RANK. `join_run` reads them, joins the process group
(NCCL on CUDA, gloo on the CPU) and returns a `Distributed`; without them it returns the
single-process `Distributed`, whose collectives give back their input unchanged.
"""
import atexit
import contextlib
import datetime
import functools
import gc
import os
import re

import torch
import torch.distributed as dist

from coreaug.devices import check_cuda_present
from coreaug.errors import UsageError, listed

# The other processes wait in a broadcast while rank 0 selects alone, minutes at ImageNet's
# size; NCCL's default of 10 minutes could end the run there, so both backends get gloo's 30.
TIMEOUT = datetime.timedelta(minutes=30)


DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")


def pick_device(name):
    """The torch.device for `--device` ("auto": CUDA when available, "cpu", "cuda[:N]"; or a
    torch.device of those kinds): the one check of train, evaluate, predict and load_run.
    Raises UsageError for any other name and for a GPU this machine does not have."""
    text = str(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE_NAME.fullmatch(text):
        raise UsageError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return check_cuda_present(torch.device(text), text, "use --device cpu", "use one of them, or --device cuda")


def _rank_device(name, local_rank):
    """Under torchrun every process of a node takes the GPU numbered by its LOCAL_RANK."""
    device = pick_device(name)
    if device.type != "cuda":
        return device
    if device.index is not None and device.index != local_rank:
        raise UsageError(f"under torchrun each process uses cuda:LOCAL_RANK, but --device {name} was given "
                         f"to the process with LOCAL_RANK={local_rank}; pass --device cuda (or auto)")
    if local_rank >= torch.cuda.device_count():
        raise UsageError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} visible GPUs; "
                         "launch at most that many processes per node (--nproc-per-node)")
    return torch.device("cuda", local_rank)


class Distributed:
    """This process's place in a run and the collectives that keep the processes in step.

    rank, world_size: this process's number and how many there are (1: a single process).
    local_rank: its number on this node, which picks its GPU. device: where it trains.
    Every collective is called by all processes in the same order; with world_size 1
    each one returns its input.
    """

    def __init__(self, rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), owns_group=False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = torch.device(device)
        self.owns_group = owns_group

    @property
    def is_main(self):
        """Rank 0 selects the coreset, writes the run's files and prints progress."""
        return self.rank == 0

    def row_slice(self, n):
        """This process's contiguous share of `n` rows: shares differ by at most one row, in rank order."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def gather_rows(self, rows):
        """Every process's `rows` (its `row_slice` of a tensor) joined in rank order, on the main process.

        Shares of unequal length are padded to the longest for the collective and cut back
        after. Returns the (sum of rows, ...) tensor on the main process, on `rows`' device,
        and None on the others, which so never hold the whole set (N x d floats: 5 GB for
        ImageNet's logit gradients).
        """
        if self.world_size == 1:
            return rows
        counts = torch.zeros(self.world_size, dtype=torch.int64, device=self.device)
        counts[self.rank] = len(rows)
        dist.all_reduce(counts)
        longest = int(counts.max())
        padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        padded[:len(rows)] = rows.to(self.device)
        shares = [torch.empty_like(padded) for _ in range(self.world_size)] if self.is_main else None
        dist.gather(padded, shares, dst=0)
        if not self.is_main:
            return None
        return torch.cat([share[:count] for share, count in zip(shares, counts.tolist())]).to(rows.device)

    def broadcast(self, value):
        """The main process's `value` (any picklable object, e.g. a selection) on every process."""
        if self.world_size == 1:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def on_main(self, work):
        """Call `work()` on the main process only; return its result, or raise its exception, everywhere.

        For what only rank 0 may do, such as reading the run folder, while every process
        needs the outcome (a checkpoint to resume from, or the error to stop on).
        """
        outcome = None
        if self.is_main:
            try:
                outcome = (True, work())
            except Exception as exc:  # noqa: BLE001 - re-raised on every process just below
                outcome = (False, exc)
        ok, value = self.broadcast(outcome)
        if not ok:
            raise value
        return value

    def all_reduce_sum(self, values):
        """Element-wise sums over the processes of a list of numbers, as Python floats (float64)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def all_reduce_tensor(self, tensor):
        """`tensor` summed element-wise over the processes (in place; returned)."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def broadcast_buffers(self, model):
        """Copy rank 0's buffers (BatchNorm running statistics) into every process's `model`.

        DDP keeps parameters equal, but each process updates its running statistics on its
        own batches; after an epoch they are made equal again so that evaluation, the next
        selection and the checkpoint all see one model.
        """
        if self.world_size == 1:
            return
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)

    def broadcast_state(self, model):
        """Copy rank 0's parameters and buffers into every process's `model` (what DDP does when
        it wraps a model), so that every process starts from one model."""
        if self.world_size == 1:
            return
        for parameter in model.parameters():
            dist.broadcast(parameter.data, src=0)
        self.broadcast_buffers(model)

    def average_gradients(self, parameters):
        """Replace each of `parameters`' gradients by its mean over the processes, as DDP does
        in its backward (each process's gradients divided by world_size, then summed), here in
        one all-reduce of them all flattened: for a step that runs without DDP (the compiled
        step, between its backward and its update). Nothing waits on the host on CUDA (NCCL
        queues the collective on the stream). Parameters without a gradient are left alone
        (every process has the same ones: they run one model)."""
        if self.world_size == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:
            torch._foreach_copy_(grads, self.mean_of(grads))

    def mean_of(self, tensors):
        """`tensors` averaged over the processes, as new tensors: divided by world_size, then
        summed (DDP's arithmetic), in one all-reduce of them all flattened, with torch's
        functional collectives, which dynamo traces into a compiled graph (the one-graph
        compiled step averages its gradients so, between their gather and the update) and which
        run eagerly too (`average_gradients`)."""
        if self.world_size == 1:
            return list(tensors)
        from torch.distributed._functional_collectives import all_reduce

        flat = torch.cat([t.reshape(-1) for t in tensors]) / self.world_size
        summed = all_reduce(flat, "sum", dist.group.WORLD)
        return [mean.view(t.shape) for mean, t in zip(summed.split([t.numel() for t in tensors]), tensors)]

    @contextlib.contextmanager
    def node_main_first(self):
        """Run the block on each node's LOCAL_RANK 0 before its other processes (a download, say)."""
        if self.world_size > 1 and self.local_rank != 0:
            dist.barrier()
        try:
            yield
        finally:
            if self.world_size > 1 and self.local_rank == 0:
                dist.barrier()

    def wrap(self, model):
        """`model` in DistributedDataParallel when there are several processes, else itself."""
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def close(self, completed=False):
        """Done with the process group if `join_run` created it.

        After a `completed` run every process first waits for the others: one that tore its
        connections down while rank 0 was still writing the run's files, or while a peer was
        in the last collective, could abort that peer (gloo, SIGABRT); a failed run leaves at once
        (a barrier would wait for a process that is gone). Either way the group is then kept for
        the process's next `train` (a script training several runs, a learning-rate sweep catching
        TrainingDiverged: under torchrun a group initialised again, the ranks arriving at other
        times, waited for good) and destroyed when the process exits; a script's own distributed
        work after `train` uses it (`dist.is_initialized()`). Objects still holding the group (a
        DDP wrapper in a reference cycle) are collected first.
        """
        if self.owns_group and dist.is_initialized():
            if completed and self.world_size > 1:
                dist.barrier()
            gc.collect()
            _destroy_group_at_exit()


@functools.lru_cache(maxsize=None)
def _destroy_group_at_exit():
    """Destroy the default process group when this process exits (registered once)."""
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def _environment_int(name, default):
    """The environment variable `name` (set by torchrun) as an integer >= 0, `default` where unset."""
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip().isdigit():
        raise UsageError(f"{name}={value!r} is not a process count or rank (torchrun sets it): unset {name}, or "
                         "launch with torchrun")
    return int(value)


def launched_world_size():
    """The number of processes torchrun launched (WORLD_SIZE; 1 where unset). UsageError for a value torchrun
    would not set, or a WORLD_SIZE above 1 without the rest of a torchrun launch (RANK, MASTER_ADDR): a variable
    left over in a job script, which would otherwise end in torch's traceback."""
    world_size = _environment_int("WORLD_SIZE", 1)
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if world_size > 1 and missing and not dist.is_initialized():
        raise UsageError(f"WORLD_SIZE={world_size} is set but {listed(missing)} {'is' if len(missing) == 1 else 'are'} "
                         "not: this is no torchrun launch; unset WORLD_SIZE, or launch with torchrun")
    return world_size


def join_run(device_name):
    """This process's `Distributed`, joining torchrun's process group when launched by it.

    Reads WORLD_SIZE, RANK and LOCAL_RANK (set by torchrun); with WORLD_SIZE above 1 it
    initialises the default process group from MASTER_ADDR/MASTER_PORT (NCCL when the
    device is CUDA, gloo on the CPU) unless the caller already has, and each process
    trains on cuda:LOCAL_RANK or the CPU. Otherwise a single-process `Distributed` on
    `pick_device(device_name)`. Raises UsageError for a device the node cannot give.
    """
    world_size = launched_world_size()
    if world_size <= 1 and not dist.is_initialized():
        device = pick_device(device_name)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # so that code using "cuda" means the chosen GPU too
        return Distributed(device=device)
    local_rank = _environment_int("LOCAL_RANK", 0)
    device = _rank_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:  # NCCL is bound to this process's GPU up front, so collectives need not guess it
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device, timeout=TIMEOUT)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, device, owns_group)


def check_world_size(config, n_train, world_size):
    """Raise UsageError unless `world_size` processes can split the run's work evenly.

    Every process needs the same number of steps per epoch (DDP's collectives must pair
    up), so the global batch is split into equal per-process batches, each process takes
    an equal share of every epoch's plan (at least one example), and of the training
    set for the gradient estimates (at least one example).
    """
    if world_size == 1:
        return
    if config.sync_bn and (config.device == "cpu" or not torch.cuda.is_available()):
        raise UsageError("--sync-bn synchronises BatchNorm across GPUs and needs CUDA (NCCL); "
                         "drop --sync-bn for CPU processes")
    from coreaug.selection import budget_size

    from .plan import plan_length

    fix = f"launch fewer processes (--nproc-per-node x --nnodes is {world_size})"
    if config.batch_size % world_size:
        lower = config.batch_size - config.batch_size % world_size
        raise UsageError(f"batch_size {config.batch_size} is the global batch and must split evenly over the "
                         f"{world_size} processes; use a multiple of {world_size} such as "
                         f"{lower or world_size} or {lower + world_size}, or {fix}")
    if n_train < world_size:
        raise UsageError(f"the training set has {n_train} examples, fewer than the {world_size} processes; "
                         f"raise --train-limit or {fix}")
    planned = plan_length(n_train, config.strategy, config.mode, budget_size(config.subset, n_train), config.copies)
    if planned < world_size:
        raise UsageError(f"each epoch trains {planned} examples, fewer than the {world_size} processes; "
                         f"raise --subset or --train-limit, or {fix}")
