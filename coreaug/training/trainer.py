"""`train(TrainConfig) -> TrainResult`: the epoch loop of coreset-augmented training."""
import contextlib
import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from coreaug.augment import create_policy
from coreaug.models import create_model

from .config import TrainConfig
from .distributed import check_world_size, join_run
from .evaluate import evaluation_sums
from .inputs import load_run_data
from .plan import epoch_plan
from .run_files import RunFolder
from .schedule import learning_rate
from .selector import select_examples

SELECTING = ("coreset", "random", "maxloss")


@dataclass
class TrainResult:
    """What a run produced: per-epoch metrics, headline figures and the trained model."""

    config: TrainConfig
    history: list
    final_test_accuracy: float
    best_test_accuracy: float
    total_seconds: float
    selection_seconds: float
    model: torch.nn.Module = field(repr=False)
    out: str = None
    rank: int = 0
    world_size: int = 1


def epoch_generator(seed, epoch, stream, rank=0):
    """A generator seeded by (seed, epoch, stream, rank): an epoch's randomness needs no saved state.

    Every process draws the same plan (rank left at 0) but its own augmentations (its rank),
    so that no two processes apply the same random transforms. The CPU generator keeps only
    a seed's low 32 bits, so the rank enters there, spread by an odd (invertible) multiplier.
    """
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 8 + stream + rank * 0x9E3779B1) % 2 ** 32)


def _strong_policy(config):
    kwargs = {"candidates": config.candidates} if "maxloss" in config.augment else {}
    return create_policy(config.augment, **kwargs)


def train(config):
    """Train `config.model` on `config.dataset`, strongly augmenting the chosen examples.

    Every `select_every` epochs the strategy picks round(subset * n) examples (coreset:
    weighted facility location over gradient estimates on clean images in eval mode); each
    epoch trains the plan of `epoch_plan` with SGD (Nesterov momentum, weight decay, the
    configured schedule) on the weighted cross-entropy. With `config.out`, writes
    config.json, metrics.jsonl, summary.json and checkpoint.pt there; `resume` continues
    from the checkpoint. Raises ValueError / FileNotFoundError for bad settings or missing
    data before anything is written. Returns a TrainResult.

    Launched by torchrun with several processes, each process trains its disjoint share
    of every epoch's plan (`EpochPlan.shard`) in DistributedDataParallel, with
    `batch_size` as the global batch; rank 0 selects (from gradient estimates that every
    process computes on a slice of the training set) and broadcasts the selection, logged
    metrics count every process's examples, and only rank 0 writes files or prints.
    """
    config = config.resolved() if isinstance(config, TrainConfig) else TrainConfig(**config).resolved()
    distributed = join_run(config.device)
    try:
        return _run(config, distributed)
    finally:
        distributed.close()


def _open_run(config, distributed):
    """(run folder or None, checkpoint or None, data), every check passed before a file is written.

    Only rank 0 holds the folder: it reads it, and every process resumes from what it read
    (so the processes need no shared disk).
    """
    identity = config.identity()
    folder = RunFolder(config.out) if config.out and distributed.is_main else None
    checkpoint = distributed.on_main(lambda: folder.check(identity, config.resume)) if config.out else None
    with distributed.node_main_first():  # a --download happens once per node
        data = load_run_data(config, distributed.device)
    check_world_size(config, len(data.train_labels), distributed.world_size)
    if folder:
        folder.start(identity, fresh=checkpoint is None)
    return folder, checkpoint, data


def _run(config, distributed):
    if not distributed.is_main:
        config = dataclasses.replace(config, quiet=True)  # one progress bar and log: rank 0's
    identity, device = config.identity(), distributed.device
    strong, weak = _strong_policy(config), create_policy("weak", flip=config.flip)
    folder, checkpoint, data = _open_run(config, distributed)
    torch.manual_seed(config.seed)
    model = create_model(config.model, data.in_channels, data.num_classes).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    history, selection, start_epoch, train_logits = [], None, 0, None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        history, selection, start_epoch = checkpoint["history"], checkpoint["selection"], checkpoint["epoch"]
        train_logits = _to(checkpoint.get("train_logits"), device)
    record = config.estimates == "training" and config.strategy in ("coreset", "maxloss")
    # Evaluation, selection and max-loss augmentation run the bare model: DDP's forward is a
    # collective, and those passes may differ in number between processes.
    forward = torch.compile(model) if config.compile else model
    train_forward = forward
    if distributed.world_size > 1:
        train_forward = distributed.wrap(model)
        train_forward = torch.compile(train_forward) if config.compile else train_forward
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda"
                else contextlib.nullcontext)

    n = len(data.train_labels)
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        sel_times = {"estimate_seconds": 0.0, "facility_location_seconds": 0.0}
        selected_now = config.strategy in SELECTING and (epoch % config.select_every == 0 or selection is None)
        if selected_now:
            selection = select_examples(config, model, data, epoch, autocast, distributed=distributed,
                                        train_logits=train_logits)
            sel_times = selection[2]
        indices, weights = (selection[0], selection[1]) if selection else (None, None)
        # Every process draws the same plan and trains its own disjoint share of it.
        plan = epoch_plan(n, config.strategy, config.mode, indices, weights, config.copies,
                          config.weight_augmented, epoch_generator(config.seed, epoch, 0))
        share = plan.shard(distributed.rank, distributed.world_size)
        logit_sums = torch.zeros((n, data.num_classes + 1), device=device) if record else None
        loss_sum, correct = _train_epoch(config, train_forward, forward, optimizer, data, share, strong, weak,
                                         epoch, autocast, distributed, logit_sums)
        if record:
            train_logits = _merge_logits(train_logits, distributed.all_reduce_tensor(logit_sums))
        distributed.broadcast_buffers(model)
        loss_sum, correct, n_trained, n_augmented = distributed.all_reduce_sum(
            [loss_sum, correct, len(share), share.n_augmented])
        n_trained, n_augmented = int(n_trained), int(n_augmented)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        test_rows = distributed.row_slice(len(data.test_labels))
        test_loss, test_correct = distributed.all_reduce_sum(evaluation_sums(
            forward, data.test_images[test_rows], data.test_labels[test_rows], data.preprocess, 1024, autocast))
        test_loss, test_accuracy = test_loss / len(data.test_labels), test_correct / len(data.test_labels)
        elapsed = (history[-1]["elapsed_seconds"] if history else 0.0) + epoch_seconds
        history.append({
            "epoch": epoch, "train_loss": loss_sum / n_trained, "train_accuracy": correct / n_trained,
            "test_loss": test_loss, "test_accuracy": test_accuracy,
            "lr": learning_rate(config, epoch + 1), "epoch_seconds": epoch_seconds,
            "selection_seconds": sum(sel_times.values()), **sel_times,
            "eval_seconds": time.perf_counter() - t1, "elapsed_seconds": elapsed,
            "n_trained": n_trained, "n_augmented": n_augmented, "selected": selected_now,
        })
        if folder:
            folder.save_epoch({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "selection": selection, "history": history, "config": identity,
                               "train_logits": _to(train_logits, "cpu")}, history)
        if not config.quiet:
            m = history[-1]
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}  loss {m['train_loss']:.4f}  "
                       f"test acc {test_accuracy:.2%}  {epoch_seconds:.1f} s "
                       f"(selection {m['selection_seconds']:.2f} s)  {n_trained} trained, {n_augmented} augmented")

    result = _result(config, history, model, distributed)
    if folder:
        folder.save_summary(_summary(config, result, device))
    return result


def _to(tensor, device):
    return None if tensor is None else tensor.to(device)


def _merge_logits(previous, logit_sums):
    """The newest training logits per example: `logit_sums` rows hold summed logits and a count
    in the last column; examples no process trained this epoch keep their previous logits."""
    count = logit_sums[:, -1:]
    fresh = logit_sums[:, :-1] / count.clamp(min=1)
    return fresh if previous is None else torch.where(count > 0, fresh, previous)


def _train_epoch(config, forward, eval_forward, optimizer, data, plan, strong, weak, epoch, autocast, distributed,
                 logit_sums=None):
    """One pass over `plan`: weak augmentation for all, strong for the copies; weighted loss.

    With `logit_sums` (n, c + 1), adds each original (not strongly augmented) example's logits and
    a count of 1 to its row: the free gradient estimates of `estimates="training"`.

    `plan` is this process's share; its batches are batch_size / world_size, so the
    processes' batches of one step make up one global batch of the epoch's plan.
    """
    device, world = distributed.device, distributed.world_size
    batch_size = config.batch_size // world
    generator = epoch_generator(config.seed, epoch, 1, distributed.rank)
    steps = -(-len(plan) // batch_size)
    loss_sum = correct = 0.0
    forward.train()
    # The bar (rank 0's) counts every process's examples: the shares are equal.
    bar = tqdm(total=len(plan) * world, desc=f"epoch {epoch + 1}/{config.epochs}", unit="img",
               disable=config.quiet, leave=False, dynamic_ncols=True)
    start_time = time.perf_counter()
    for step in range(steps):
        take = slice(step * batch_size, (step + 1) * batch_size)
        idx, aug = plan.indices[take].to(device), plan.augmented[take].to(device)
        images, labels = data.train_images[idx], data.train_labels[idx]
        images = weak(images, generator)
        if aug.any():
            context = ({"model": eval_forward, "labels": labels[aug], "preprocess": data.preprocess}
                       if strong.needs_model else {})
            images[aug] = strong(images[aug], generator, **context)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch + step / steps)
        with autocast():
            logits = forward(data.preprocess(images))
            losses = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=config.label_smoothing)
            loss = (losses * plan.weights[take].to(device)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if logit_sums is not None:
            originals = ~aug
            rows = logits.detach().float()[originals]
            logit_sums.index_add_(0, idx[originals], torch.cat([rows, torch.ones(len(rows), 1, device=device)], 1))
        loss_sum += float(losses.detach().sum())
        correct += float((logits.argmax(1) == labels).sum())
        bar.update(len(idx) * world)
        if step % 10 == 0 or step == steps - 1:
            seen = min((step + 1) * batch_size, len(plan))
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}",
                            ex_s=f"{seen * world / (time.perf_counter() - start_time):.0f}")
    bar.close()
    return loss_sum, correct


def _result(config, history, model, distributed):
    accuracies = [m["test_accuracy"] for m in history] or [float("nan")]
    return TrainResult(
        config=config, history=history, final_test_accuracy=accuracies[-1], best_test_accuracy=max(accuracies),
        total_seconds=sum(m["epoch_seconds"] for m in history),
        selection_seconds=sum(m["selection_seconds"] for m in history), model=model, out=config.out,
        rank=distributed.rank, world_size=distributed.world_size,
    )


def _summary(config, result, device):
    history = result.history
    return {
        "config": dataclasses.asdict(config),
        "final_test_accuracy": result.final_test_accuracy, "best_test_accuracy": result.best_test_accuracy,
        "total_seconds": result.total_seconds, "selection_seconds": result.selection_seconds,
        "estimate_seconds": sum(m["estimate_seconds"] for m in history),
        "facility_location_seconds": sum(m["facility_location_seconds"] for m in history),
        "eval_seconds": sum(m["eval_seconds"] for m in history),
        "epochs": len(history), "n_trained": sum(m["n_trained"] for m in history),
        "n_augmented": sum(m["n_augmented"] for m in history),
        "device": str(device), "world_size": result.world_size,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus"
                   + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
    }
