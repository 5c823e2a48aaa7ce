"""Review round 22: the own-loop object in other training stacks (FSDP), the CLI in scripts, many classes."""
import copy
import datetime
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import coreaug

N = 48
LABELS = torch.arange(N) % 4
FLOATS = torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _sharded_model(fsdp1):
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard

    torch.manual_seed(0)  # the same weights on every rank, as a run's start makes them
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    reference = copy.deepcopy(model)  # unsharded
    if fsdp1:
        return FullyShardedDataParallel(model, use_orig_params=True, device_id=torch.device("cpu")), reference
    fully_shard(model[1])
    fully_shard(model[3])
    fully_shard(model)
    return model, reference


def fsdp_worker(rank, port, out):
    """Two gloo processes, a model sharded by FSDP2 (`fully_shard`) and by FSDP1: start_epoch on every
    rank with a rule that reads the model."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    record = {}
    try:
        for fsdp1 in (False, True):
            model, reference = _sharded_model(fsdp1)
            for gradients in ("logits", "last_layer"):
                method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25, gradients=gradients)
                alone = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25, gradients=gradients)
                method.start_epoch(0, model, FLOATS)
                alone.select(0, **alone.scores(reference, FLOATS))  # the unsharded weights, in this process alone
                record[(fsdp1, gradients)] = (method.selection.indices.tolist(), alone.selection.indices.tolist(),
                                              list(method.sampler()))
            lacking = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
            try:  # rank 1 lacks the data: both ranks refuse, before any forward
                lacking.start_epoch(0, model, FLOATS if rank == 0 else None)
            except coreaug.UsageError as exc:
                record[(fsdp1, "lacking")] = str(exc)
            model(FLOATS[:4]).sum().backward()  # the ranks still agree on their collectives
    finally:
        dist.destroy_process_group()
    torch.save(record, f"{out}/rank{rank}.pt")
    os._exit(0)  # (gloo's threads now and then abort the interpreter's teardown)


def test_a_model_sharded_by_fsdp_scores_on_every_rank_and_selects_as_unsharded(tmp_path):
    """Rank 0 scored alone while rank 1 waited in all_gather_object: FSDP's forward is a collective, so
    rank 1 aborted on rank 0's parameter shard ("2080 vs 4. Received data size doesn't match"), and rank 0
    had scored with garbage weights (explore22-frameworks #1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(fsdp_worker, args=(port, str(tmp_path)), nprocs=2)
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    for fsdp1 in (False, True):
        for gradients in ("logits", "last_layer"):
            chosen, alone, share = zero[(fsdp1, gradients)]
            assert chosen == one[(fsdp1, gradients)][0] == alone  # every rank, as the unsharded model selects
            assert len(chosen) == N // 4
            assert not set(share) & set(one[(fsdp1, gradients)][2])  # disjoint shares of one plan
        for record in (zero, one):
            assert "pass the model and the training data to start_epoch on every rank (rank 1 passed none)" \
                in record[(fsdp1, "lacking")]
