"""CoresetAugmentation at the edges of an own loop: epochs, states, scoring data, devices and the
dataset face used other than as documented are clear errors (or work), never a silent change of
training; under torchrun no rank's own state splits the collectives."""
import dataclasses
import datetime
import io
import re
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from PIL import Image

import coreaug
from coreaug.training.trainer import mix_with_partners

N = 40
LABELS = torch.arange(N) % 4
IMAGES = torch.randint(0, 256, (N, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
FLOATS = IMAGES.float() / 255


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))


class Pairs(torch.utils.data.Dataset):
    """(image, label) items of the tiny set, in the order `order`."""

    def __init__(self, order=None, item=None):
        self.order = list(range(N)) if order is None else list(order)
        self.item = item or (lambda i: (FLOATS[i], int(LABELS[i])))

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        return self.item(self.order[i])


def test_crusts_partners_mix_with_the_plain_uint8_tensor_of_the_docs_loop():
    """mix_with_partners(copies, images, ...) with the tensor loop's images was AttributeError: no .read."""
    method = coreaug.CoresetAugmentation(LABELS, strategy="crust", fraction=0.5)
    batches = method.start_epoch(0, tiny_model(), IMAGES, preprocess=lambda x: x.float() / 255).on_device(16, "cpu")
    weak, strong = coreaug.create_policy("weak"), coreaug.create_policy("randaugment")
    draws, mixed = batches.draws(0, 0), 0
    for step in range(batches.steps):
        take, rows = batches.batch(step)
        if rows is None:
            continue
        source = draws.source(take).select(rows)
        x = IMAGES[batches.indices[take]]
        picked = strong(x.index_select(0, rows), source)
        out = mix_with_partners(picked, IMAGES, batches.partners[take].index_select(0, rows), weak, source)
        assert out.shape == picked.shape and out.dtype == torch.uint8
        mixed += len(out)
    assert mixed == method.plan.n_augmented > 0


def test_epochs_are_python_ints_checked_before_anything_is_selected(tmp_path):
    """np.int64 epochs died after the selection was adopted, and select() stored them so that the
    checkpoint no longer loaded with weights_only=True; bad epochs were blamed on `seed`."""
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    for bad in (-1, 1.5, 2.0, torch.tensor(1.0), "1", True):
        with pytest.raises(coreaug.UsageError, match=re.escape(f"epoch must be an integer >= 0, got {bad!r}")):
            method.start_epoch(bad, tiny_model(), FLOATS)
        with pytest.raises(coreaug.UsageError, match="epoch must be an integer"):
            method.select(bad, logits=torch.randn(N, 4))
    assert method.selection is None and method.plan is None
    method.start_epoch(np.int64(0), tiny_model(), FLOATS)
    assert type(method.selected_at) is int and method.epoch == 0
    method.select(torch.tensor(1), logits=torch.randn(N, 4))
    for epoch in np.arange(2, 4):
        method.select(epoch, logits=torch.randn(N, 4))
    assert type(method.selected_at) is int
    torch.save({"method": method.state_dict()}, tmp_path / "ck.pt")
    assert torch.load(tmp_path / "ck.pt")["method"]["selected_at"] == 3  # torch.load's default weights_only


def test_bfloat16_losses_select_like_float32_ones():
    losses = torch.rand(N).bfloat16()
    method = coreaug.CoresetAugmentation(LABELS, strategy="maxloss", fraction=0.3)
    picked = method.select(0, losses=losses)
    same = coreaug.CoresetAugmentation(LABELS, strategy="maxloss", fraction=0.3).select(0, losses=losses.float())
    assert np.array_equal(picked.indices, same.indices)


def test_a_dataset_in_another_order_than_the_labels_is_refused_naming_the_first_item():
    perm = np.random.RandomState(1).permutation(N)
    method = coreaug.CoresetAugmentation(LABELS, strategy="maxloss", fraction=0.3)
    first = next(i for i in range(N) if LABELS[perm[i]] != LABELS[i])
    with pytest.raises(coreaug.UsageError, match=rf"item {first}'s label is {int(LABELS[perm[first]])} but "
                                                 rf"labels\[{first}\] is {int(LABELS[first])}: pass the training"):
        method.start_epoch(0, tiny_model(), Pairs(perm))
    assert method.selection is None
    method.start_epoch(0, tiny_model(), Pairs(), batch_size=16, num_workers=0)  # the same set in order
    assert method.selection is not None


def test_scoring_items_that_are_not_image_tensor_pairs_are_one_line_saying_what_is_needed():
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    as_dicts = Pairs(item=lambda i: {"image": FLOATS[i], "label": int(LABELS[i])})
    as_pil = Pairs(item=lambda i: (Image.fromarray(IMAGES[i, 0].numpy()), int(LABELS[i])))
    for data, held in ((as_dicts, "its item 0 is a dict"), (as_pil, "its item 0 is a pair whose image is a Image")):
        with pytest.raises(coreaug.UsageError, match=f"dataset of \\(image tensor, label\\) pairs, with the "
                                                     f"evaluation transform .*; {held}"):
            method.start_epoch(0, tiny_model(), data)


def test_load_state_dict_refuses_what_is_not_a_state_and_changes_nothing():
    """A model's state_dict, the whole checkpoint or {} wiped the selection and the loss history."""
    model = tiny_model()
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset-history", fraction=0.3, select_every=5)
    method.start_epoch(0, model, FLOATS)
    before = (method.selection, method.selected_at, method.loss_count)
    checkpoint = {"model": model.state_dict(), "method": method.state_dict(), "epoch": 3}
    for wrong, keys in ((checkpoint["model"], "its keys are 1.weight, 1.bias"),
                        (checkpoint, r"its keys are model, method, epoch.*checkpoint\['method'\]"),
                        ({}, r"its keys are \(none\)"), (None, "a NoneType")):
        with pytest.raises(coreaug.UsageError, match=f"not a CoresetAugmentation state_dict\\(\\): {keys}"):
            method.load_state_dict(wrong)
        assert (method.selection, method.selected_at, method.loss_count) == before
    method.load_state_dict(checkpoint["method"])


def test_score_options_are_checked_at_the_first_epoch_and_devices_as_corearugs_own():
    """A misspelt option passed silently until the first model-based selection; device='gpu' or a
    missing CUDA was torch's bare error."""
    method = coreaug.CoresetAugmentation(LABELS, strategy="crust", fraction=0.3, epochs=10)
    with pytest.raises(coreaug.UsageError, match="unknown option.* batchsize; the options of scores.* batch_size"):
        method.start_epoch(0, tiny_model(), FLOATS, batchsize=16)
    assert method.selection is None
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    with pytest.raises(coreaug.UsageError, match="device must be 'auto' or a torch device"):
        method.start_epoch(0, tiny_model(), FLOATS, device="gpu")
    plan = method.start_epoch(0, tiny_model(), FLOATS, device="cpu")
    with pytest.raises(coreaug.UsageError, match="device must be"):
        plan.on_device(16, "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(coreaug.UsageError, match="torch sees no CUDA device"):
            plan.on_device(16, "cuda")


def test_a_plan_made_under_inference_mode_enters_the_loss():
    """start_epoch right after a validation pass under inference_mode: backward failed later."""
    model = tiny_model()
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3, mode="subset")
    with torch.inference_mode():
        plan = method.start_epoch(0, model, FLOATS)
    batches = plan.on_device(16, "cpu")
    take, _ = batches.batch(0)
    idx = batches.indices[take]
    (F.cross_entropy(model(FLOATS[idx]), LABELS[idx], reduction="none") * batches.weights[take]).mean().backward()
    assert not method.copy_weights.is_inference() and not method.original_weights.is_inference()


def test_api_edges_are_usage_errors():
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.3)
    assert method.scores(tiny_model(), None) == {}  # random: no pass over the data, documented
    with pytest.raises(coreaug.UsageError, match="needs an initialised torch.distributed process group"):
        method.share_selection()
    batches = method.start_epoch(0).on_device(16, "cpu")
    assert batches.batch(batches.steps - 1)[0].stop == len(method.plan)
    for step in (batches.steps, -1, 0.0):
        with pytest.raises(coreaug.UsageError, match=r"step must be an integer in \[0, steps\)"):
            batches.batch(step)
    with pytest.raises(coreaug.UsageError, match="must be a positive multiple of world_size"):
        method.plan.fixed_steps(15, generator=torch.Generator(), world_size=2)
    with pytest.raises(coreaug.UsageError, match="batch_size must be an integer >= 1"):
        method.plan.fixed_steps(0, generator=torch.Generator())
    with pytest.raises(coreaug.UsageError, match="a batch of 2 cannot hold strong copies"):  # was a ValueError
        method.plan.fixed_steps(2, generator=torch.Generator(), world_size=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(noisy=np.full(N, 0.5)), "noisy must be a bool mask"),
    (dict(noisy=np.arange(N)), "noisy must be a bool mask.*mask\\[indices\\] = True"),
    (dict(strategy="crust", epochs=-10), "epochs must be an integer >= 1"),
    (dict(strategy="crust", epochs="10"), "epochs must be an integer >= 1"),
    (dict(weight_augmented="false"), "weight_augmented must be True or False, got 'false'"),
])
def test_settings_of_the_wrong_kind_are_refused(kwargs, match):
    with pytest.raises(coreaug.UsageError, match=match):
        coreaug.CoresetAugmentation(LABELS, **kwargs)
    coreaug.CoresetAugmentation(LABELS, noisy=[True] + [False] * (N - 1), weight_augmented=np.bool_(True), epochs=3)


def test_the_dataset_face_refuses_copies_outside_the_plan_and_works_like_distributed_sampler(monkeypatch):
    """A DataLoader without the sampler trained every copy with weight 1; a sampler made before
    init_process_group gave every rank the whole plan; set_epoch was an AttributeError."""
    from coreaug.training import method as method_module

    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25)
    data = method.dataset(Pairs())
    sampler = method.sampler()  # before the process group
    method.start_epoch(0)
    outside = next(i for i in range(N) if i not in set(method.selection.indices.tolist()))
    with pytest.raises(coreaug.UsageError, match=f"item {N + outside} is a strongly augmented copy of example "
                                                 f"{outside}, which .*sampler=method.sampler"):
        data[N + outside]
    with pytest.raises(coreaug.UsageError, match="strongly augmented copy"):
        list(torch.utils.data.DataLoader(data, batch_size=8, shuffle=True))
    whole = list(sampler)
    assert len(whole) == len(method.plan) and all(data[i][2] == 1 for i in whole)
    sampler.set_epoch(0)  # orders nothing (start_epoch orders the epoch): the plan's epoch, as loops call it
    monkeypatch.setattr(method_module, "_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    assert list(sampler) == whole[1::2][:len(whole) // 2] and len(sampler) == len(whole) // 2


def test_a_persistent_worker_holding_an_earlier_selection_is_refused():
    """persistent_workers kept the first epoch's weights: newly selected examples trained with weight 0."""
    method = coreaug.CoresetAugmentation(LABELS, fraction=0.25, mode="subset")
    loader = torch.utils.data.DataLoader(method.dataset(Pairs()), batch_size=8, sampler=method.sampler(),
                                         num_workers=1, persistent_workers=True)
    method.start_epoch(0)
    assert sum(len(batch[0]) for batch in loader) == len(method.plan)
    method.start_epoch(1)  # a new selection; the worker holds the old one
    with pytest.raises(coreaug.UsageError, match="holds the weights of an earlier selection.*persistent_workers off"):
        list(loader)


# Under torchrun ------------------------------------------------------------------------------


def ddp_worker(rank, port, out):
    """Two gloo processes: a DDP model passed to start_epoch, a state loaded on rank 0 alone, and a
    select() on rank 0 with share_selection forgotten, each followed by a DDP forward and backward
    (a collective the ranks would not agree on would abort or hang there)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a collective the ranks disagree on fails in a minute rather than hanging the suite
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(rank)  # models that differ between ranks, as BatchNorm statistics make them
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                    torch.nn.Flatten(), torch.nn.Linear(144, 4))
        ddp = torch.nn.parallel.DistributedDataParallel(model)

        def train_step():
            ddp(FLOATS[:8]).sum().backward()

        record = {}
        first = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3, select_every=2)
        first.start_epoch(0, ddp, FLOATS)  # the DDP wrapper, not ddp.module
        train_step()
        record["ddp_model"] = first.selection.indices.tolist()
        resumed = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3, select_every=2)
        if rank == 0:
            resumed.load_state_dict(torch.load(io.BytesIO(_saved(first.state_dict()))))
        resumed.start_epoch(1, ddp, FLOATS)  # rank 0: not due; rank 1: no selection of its own
        train_step()
        record["rank_0_load"] = (resumed.selection.indices.tolist(), resumed.selected_at, list(resumed.sampler()))
        own = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
        if rank == 0:
            own.select(0, logits=torch.randn(N, 4))
        own.start_epoch(0)  # share_selection forgotten
        train_step()
        record["forgotten_share"] = own.selection.indices.tolist()
        failing = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
        try:
            failing.start_epoch(0, model, FLOATS if rank else None)  # rank 0 lacks the data: fails on both
        except coreaug.UsageError as exc:
            record["failed"] = str(exc)
        train_step()
        for name, options in (("seed", dict(seed=7 + rank)), ("copies", dict(copies=1 + rank)),
                              ("labels", dict(labels=LABELS.flip(0) if rank else LABELS)),
                              ("full", dict(seed=7 + rank, strategy="full")),  # no selection, a shuffled plan
                              ("strategy", dict(strategy="full" if rank else "random"))):
            options = {"labels": LABELS, "strategy": "random", "fraction": 0.3, **options}
            differing = coreaug.CoresetAugmentation(options.pop("labels"), **options)
            try:  # each rank shuffled and sharded a plan of its own: shares that overlap, or of other lengths
                differing.start_epoch(0)
            except coreaug.UsageError as exc:
                record[f"differing_{name}"] = str(exc)
            train_step()
    finally:
        dist.destroy_process_group()
    torch.save(record, f"{out}/rank{rank}.pt")
    # gloo's threads now and then abort the interpreter's teardown ("terminate called without an
    # active exception", SIGABRT) after all the work: leave without it
    os._exit(0)


def _saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_under_torchrun_rank_src_alone_decides_and_a_ddp_model_scores_through_its_module(tmp_path):
    """A DDP model, a state loaded on rank 0 alone or a forgotten share_selection made the ranks
    disagree on a collective (gloo abort, NCCL hang); a failure on rank 0 left rank 1 waiting."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_worker, args=(port, str(tmp_path)), nprocs=2)
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    for key in ("ddp_model", "rank_0_load", "forgotten_share"):
        assert zero[key] == one[key] if key != "rank_0_load" else zero[key][:2] == one[key][:2]
    assert zero["rank_0_load"][1] == 0  # rank 0's loaded selection of epoch 0, not a new one on rank 1
    shares = zero["rank_0_load"][2] + one["rank_0_load"][2]
    assert len(shares) == len(set(shares))
    assert "selection is due at epoch 0: pass the model" in zero["failed"]
    assert one["failed"].startswith("rank 0 failed to select at epoch 0: a coreset selection is due")
    for name, shown in (("seed", "seed: 7 on rank 0, 8 on rank 1"), ("copies", "copies: 1 on rank 0, 2 on rank 1"),
                        ("labels", "labels: other labels on rank 1"), ("full", "seed: 7 on rank 0, 8 on rank 1"),
                        ("strategy", "strategy: 'random' on rank 0, 'full' on rank 1")):
        assert zero[f"differing_{name}"] == one[f"differing_{name}"]
        assert f"settings differ between the ranks ({shown}" in zero[f"differing_{name}"]


def test_use_refuses_a_selection_that_could_not_train():
    """use() checked a user's Selection's size and range only: negative weights trained by gradient ascent."""
    labels = torch.arange(30) % 3
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3)
    good = coreaug.select_random(labels.numpy(), 0.3, seed=0)
    for bad, message in ((dataclasses.replace(good, weights=-good.weights), "weights must be finite and >= 0"),
                         (dataclasses.replace(good, weights=good.weights * np.nan), "weights must be finite"),
                         (dataclasses.replace(good, indices=np.repeat(good.indices[:1], len(good.indices))),
                          "indices repeat an example"),
                         (np.arange(5), "not a coreaug.Selection")):
        with pytest.raises(coreaug.UsageError, match=message):
            method.use(bad, 0)
        assert method.selection is None  # nothing adopted
    method.use(good, 0)
    assert np.array_equal(method.selection.indices, good.indices)


def test_api_device_arguments_take_any_torch_device_and_auto(monkeypatch):
    """scores(device=) and plan.on_device took only --device's 'cpu'/'cuda' names, refusing an own
    loop on Apple's 'mps'; the API's device= arguments take any device torch knows, and 'auto'."""
    from coreaug import devices
    from coreaug.devices import api_device
    from coreaug.training.distributed import pick_device

    monkeypatch.setattr(devices, "_device_type_available", lambda kind: True)  # as on a Mac (mps), an XPU box
    assert api_device("mps") == torch.device("mps") and api_device(torch.device("xpu:1")) == torch.device("xpu:1")
    assert api_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(coreaug.UsageError, match="device must be 'auto' or a torch device.*got 'gpu'"):
        api_device("gpu")
    with pytest.raises(coreaug.UsageError, match="device must be 'auto', 'cpu' or 'cuda"):
        pick_device("mps")  # --device: CPU or CUDA only
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    plan = method.start_epoch(0, tiny_model(), FLOATS, device="auto")
    assert plan.on_device(16, "auto").indices.device == api_device("auto")


def test_a_wrapped_dataset_that_changes_size_is_refused_at_its_next_item_not_read_as_other_examples():
    """A copy of example i was decoded as item - len(dataset now): one example appended, and copies
    loaded as their neighbours until an index fell outside the weights (IndexError)."""
    class Growing(Pairs):
        extra = 0

        def __len__(self):
            return N + self.extra

        def __getitem__(self, i):
            return super().__getitem__(i % N)

    method = coreaug.CoresetAugmentation(LABELS, strategy="full")
    base = Growing()
    data = method.dataset(base)
    method.start_epoch(0)
    items = list(method.sampler())
    assert len(data) == 2 * N and all(data[i][1] == LABELS[i % N] for i in items)
    base.extra = 1  # the training set grew in place after it was wrapped
    with pytest.raises(coreaug.UsageError, match=f"now has {N + 1} examples but the labels .* {N}: .*new "
                                                 "CoresetAugmentation"):
        data[items[-1]]
