"""Training under torchrun: two CPU processes (gloo) agree on the selection, split each epoch
without overlap, count like one process, resume, fail together, and only rank 0 writes."""
import copy
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import coreaug
from coreaug.training.compiled_step import compile_supported
from coreaug.training.method import CoresetAugmentation
from coreaug.training import trainer as trainer_module
from coreaug.training.distributed import Distributed, check_world_size
from coreaug.training.plan import EpochPlan, fixed_step_layout
from test_compile_support import needs_compile

ARGS = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
        "--epochs", "2", "--subset", "0.25", "--strategy", "coreset", "--device", "cpu", "--quiet"]
RUN = dict(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=2, subset=0.25,
           device="cpu", quiet=True, strategy="coreset")
WORLD = 2
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ONE_THREAD.pop(name, None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scores(history):
    """Per-epoch metrics without the timings."""
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in history]


def recorded_run(out):
    """A run that notes every selection and every epoch plan with this process's share of it."""
    selections, shares = [], []
    real_use, real_shard = CoresetAugmentation.use, EpochPlan.shard

    def use(method, selection, epoch, diagnostics=None):
        selections.append((torch.from_numpy(selection.indices), torch.from_numpy(selection.weights)))
        return real_use(method, selection, epoch, diagnostics)

    def shard(plan, rank, world_size):
        share = real_shard(plan, rank, world_size)
        shares.append((plan, share))
        return share

    with mock.patch.object(CoresetAugmentation, "use", use), mock.patch.object(EpochPlan, "shard", shard):
        result = coreaug.train(coreaug.TrainConfig(**RUN, out=out))
    return {"history": result.history, "world_size": result.world_size, "selections": selections, "shares": shares}


def resumed_run(out):
    """(history and weights of an uninterrupted run, the same of a run cut after 2 epochs and resumed)."""
    config = dict(RUN, epochs=4, select_every=3)
    whole = coreaug.train(coreaug.TrainConfig(**config, out=f"{out}/whole"))
    real_epoch = trainer_module._train_epoch

    def interrupt_at_epoch_2(config, run, data, plan, strong, weak, epoch, *args, **kwargs):
        if epoch == 2:  # every process stops at the same point, after two checkpoints
            raise KeyboardInterrupt
        return real_epoch(config, run, data, plan, strong, weak, epoch, *args, **kwargs)

    with mock.patch.object(trainer_module, "_train_epoch", interrupt_at_epoch_2), \
            pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config, out=f"{out}/cut"))
    resumed = coreaug.train(coreaug.TrainConfig(**config, out=f"{out}/cut", resume=True))
    return [(scores(r.history), r.model.state_dict()) for r in (whole, resumed)]


def error_of(work):
    try:
        work()
    except ValueError as exc:
        return str(exc)
    return None


def own_loop_selection(rank):
    """An own loop's coreset at epoch 0 and this rank's sampler share, with a model that differs
    between ranks (as BatchNorm statistics and cuDNN make them differ on GPUs)."""
    torch.manual_seed(rank)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % 4
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    method = coreaug.CoresetAugmentation(labels, fraction=0.25)
    method.start_epoch(0, model, images, preprocess=lambda x: x.float() / 255)
    return {"indices": method.selection.indices.tolist(), "share": list(method.sampler(WORLD, rank))}


COMPILED = dict(RUN, epochs=3, select_every=1, augment="randaugment")


def compiled_runs(rank, out):
    """A `compile` run under torchrun (dynamo and AOT autograd; inductor's C++ builds, minutes
    per graph on a loaded machine, are left out) of a model passed in, initialised differently
    in each process (as a user's unseeded model would be), its graph breaks, and the same steps
    run without torch.compile (the layout and draws of the compiled step, eagerly)."""
    from torch._dynamo.utils import counters

    from coreaug.training import compiled_step

    def model():
        torch.manual_seed(rank)
        return coreaug.create_model("cnn", 3, 10)

    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.utils import get_first_incompatible_cudagraph_node

    units, unsafe = [], []

    def check(gm, example_inputs):
        unsafe.append(get_first_incompatible_cudagraph_node(gm))  # e.g. a collective CUDA graphs cannot replay
        return gm

    def traced(fn, *, device, fullgraph, mode="auto"):
        aot = aot_autograd(fw_compiler=check, bw_compiler=check)
        return torch.compile(fn, fullgraph=fullgraph, backend=lambda gm, inputs: units.append(gm) or aot(gm, inputs))

    breaks = sum(counters["graph_break"].values())
    with mock.patch.object(compiled_step, "compile_unit", traced):
        compiled = coreaug.train(coreaug.TrainConfig(**COMPILED, compile=True, out=f"{out}/compiled"), model=model())
    breaks = sum(counters["graph_break"].values()) - breaks
    collectives = [str(node.target) for gm in units for node in gm.graph.nodes if "all_reduce" in str(node.target)]
    with mock.patch.object(compiled_step, "compile_unit", lambda fn, **options: fn):
        twin = coreaug.train(coreaug.TrainConfig(**COMPILED, compile=True), model=model())
    return {"history": compiled.history, "twin": twin.history, "breaks": breaks, "units": len(units),
            "unsafe": unsafe, "collectives": collectives,
            "model": {k: v.clone() for k, v in compiled.model.state_dict().items()}}


def gradients_beside_ddp(rank):
    """One backward of a model on this rank's own batch, in DistributedDataParallel and bare with
    `Distributed.average_gradients` after it: (DDP's gradients, the averaged ones, the local ones)."""
    torch.manual_seed(0)
    model = coreaug.create_model("cnn", 3, 4).to(memory_format=torch.channels_last)
    ddp, bare = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(model)), copy.deepcopy(model)
    images = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(rank))
    ddp(images).logsumexp(1).mean().backward()
    bare(images).logsumexp(1).mean().backward()
    local = [p.grad.clone() for p in bare.parameters()]
    here = Distributed(rank, WORLD)
    means = [m.clone() for m in here.mean_of(local)]  # the one-graph step's average, run eagerly
    here.average_gradients(list(bare.parameters()))
    return [p.grad for p in ddp.parameters()], [p.grad for p in bare.parameters()], local, means


def worker(rank, port, out):
    """One of WORLD processes, set up as torchrun would set it up."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        here = Distributed(rank, WORLD)
        record = {
            "gathered": here.gather_rows(torch.full((3 - 2 * rank, 2), float(rank))),
            "own_loop": own_loop_selection(rank),
            "gradients": gradients_beside_ddp(rank),
            "compiled": compiled_runs(rank, out) if compile_supported() else None,
            "recorded": recorded_run(f"{out}/recorded"),
            "resumed": resumed_run(out),
            "too_small": error_of(lambda: coreaug.train(coreaug.TrainConfig(**dict(RUN, train_limit=1)))),
            "other_config": error_of(lambda: coreaug.train(coreaug.TrainConfig(**dict(RUN, subset=0.5),
                                                                               out=f"{out}/recorded"))),
        }
    finally:
        dist.destroy_process_group()
    torch.save(record, f"{out}/rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of two spawned processes saw, and the folder they shared."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The same run in one process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return recorded_run(str(tmp_path_factory.mktemp("single") / "recorded"))
    finally:
        torch.set_num_threads(threads)


def test_every_rank_trains_on_the_same_selection(ranks):
    (zero, one), _ = ranks
    assert len(zero["recorded"]["selections"]) == 2
    for (i0, w0), (i1, w1) in zip(zero["recorded"]["selections"], one["recorded"]["selections"]):
        assert torch.equal(i0, i1) and torch.equal(w0, w1)


def test_an_own_loop_selects_on_rank_0_and_every_rank_shards_that_one_plan(ranks):
    first, second = (r["own_loop"] for r in ranks[0])
    assert first["indices"] == second["indices"]
    shares = first["share"] + second["share"]
    assert len(shares) == len(set(shares)) == 64 + 16  # originals and copies, each once


def test_first_selection_matches_the_single_process_one(ranks, single):
    """Same initial model, estimates gathered in order: rank 0 selects what one process selects."""
    (zero, _), _ = ranks
    (i_ddp, w_ddp), (i_one, w_one) = zero["recorded"]["selections"][0], single["selections"][0]
    assert torch.equal(i_ddp, i_one) and torch.allclose(w_ddp, w_one)


def test_shares_are_disjoint_equal_and_cover_the_epoch_plan(ranks):
    (zero, one), _ = ranks
    for (plan0, share0), (plan1, share1) in zip(zero["recorded"]["shares"], one["recorded"]["shares"]):
        assert torch.equal(plan0.indices, plan1.indices) and torch.equal(plan0.augmented, plan1.augmented)
        assert len(share0) == len(share1) == len(plan0) // 2
        pairs = lambda p: Counter(zip(p.indices.tolist(), p.augmented.tolist()))  # noqa: E731
        assert max(pairs(plan0).values()) == 1  # each (example, augmented?) once: a plain set
        assert pairs(share0) + pairs(share1) == pairs(plan0)


def test_example_counts_and_metrics_are_global_and_the_same_on_every_rank(ranks, single):
    (zero, one), _ = ranks
    counts = lambda h: [(m["n_trained"], m["n_augmented"]) for m in h]  # noqa: E731
    assert counts(zero["recorded"]["history"]) == counts(single["history"]) == [(64 + 16, 16)] * 2
    assert scores(zero["recorded"]["history"]) == scores(one["recorded"]["history"])
    assert zero["recorded"]["world_size"] == 2


def test_averaged_gradients_are_ddps(ranks):
    (zero, one), _ = ranks
    for record in (zero, one):
        ddp, averaged, local, means = record["gradients"]
        assert all(torch.equal(a, b) for a, b in zip(ddp, averaged))
        assert len(means) == len(ddp) and all(torch.equal(a, b) for a, b in zip(ddp, means))
    assert not all(torch.equal(a, b) for a, b in zip(zero["gradients"][2], one["gradients"][2]))  # the batches differ


@needs_compile
def test_the_compiled_step_under_torchrun_keeps_every_process_on_one_model(ranks):
    """`compile` with two processes: the whole step compiled in each (no DDP) as one graph, rank
    0's model given to both at the start and the gradients averaged inside the graph (one
    functional all-reduce, which CUDA graphs can replay), so that both processes hold one model
    at the end, with no graph break and no graph compiled after the first epoch across selections."""
    (zero, one), _ = ranks
    for record in (zero, one):
        compiled = record["compiled"]
        assert compiled["units"] == 1 and len(compiled["collectives"]) == 1, compiled["collectives"]
        assert compiled["unsafe"] and compiled["unsafe"] == [None] * len(compiled["unsafe"]), compiled["unsafe"]
    models = [record["compiled"]["model"] for record in (zero, one)]
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    history = zero["compiled"]["history"]
    assert all(m["selected"] for m in history) and [m["graphs_compiled"] for m in history][1:] == [0, 0]
    assert zero["compiled"]["breaks"] == one["compiled"]["breaks"] == 0
    assert scores(history) == scores(one["compiled"]["history"])


@needs_compile
def test_the_compiled_step_under_torchrun_trains_as_its_eager_twin_and_counts_the_global_layout(ranks):
    (zero, _), _ = ranks
    compiled, twin = zero["compiled"]["history"], zero["compiled"]["twin"]
    assert [m["train_loss"] for m in compiled] == pytest.approx([m["train_loss"] for m in twin], rel=1e-4)
    steps, per_step = fixed_step_layout(64, 16, 32, WORLD)  # every original, a 25% subset's copies
    assert [(m["n_trained"], m["n_augmented"]) for m in compiled] == [(steps * 32, steps * per_step)] * 3


def test_rows_of_unequal_shares_are_gathered_in_rank_order_on_rank_0(ranks):
    (zero, one), _ = ranks
    assert zero["gathered"].tolist() == [[0.0, 0.0]] * 3 + [[1.0, 1.0]]
    assert one["gathered"] is None


def test_resume_reaches_the_uninterrupted_run(ranks):
    (zero, one), _ = ranks
    for record in (zero, one):
        (whole, whole_weights), (resumed, resumed_weights) = record["resumed"]
        assert resumed == whole and len(whole) == 4
        assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)


def test_errors_are_raised_on_every_rank_before_training(ranks):
    (zero, one), _ = ranks
    # (a limit of 1 draws one class, refused in each process as it loads the data)
    assert zero["too_small"] == one["too_small"] and "drew training examples of one class only" in zero["too_small"]
    assert zero["other_config"] == one["other_config"] and "different config" in zero["other_config"]


def test_world_size_must_split_the_global_batch_and_the_plan():
    config = coreaug.TrainConfig(**dict(RUN, batch_size=33)).resolved()
    with pytest.raises(ValueError, match="batch_size 33 is the global batch .* multiple of 2 such as 32 or 34"):
        check_world_size(config, 64, 2)
    config = coreaug.TrainConfig(**dict(RUN, mode="subset", subset=0.01, batch_size=8)).resolved()
    with pytest.raises(ValueError, match="each epoch trains 2 examples, fewer than the 4 processes"):
        check_world_size(config, 64, 4)
    check_world_size(config, 64, 2)
    with pytest.raises(ValueError, match="the training set has 1 examples, fewer than the 2 processes"):
        check_world_size(coreaug.TrainConfig(**RUN).resolved(), 1, 2)


def test_a_completed_run_waits_for_every_rank_before_leaving_and_a_failed_one_does_not():
    """The group is kept for the process's next train (destroyed at exit), a completed run's and a failed one's."""
    calls = []
    with mock.patch.object(dist, "is_initialized", return_value=True), \
            mock.patch.object(dist, "barrier", lambda: calls.append("barrier")), \
            mock.patch.object(dist, "destroy_process_group", lambda: calls.append("destroy")), \
            mock.patch("coreaug.training.distributed._destroy_group_at_exit", lambda: calls.append("at exit")):
        Distributed(1, 2, 1, owns_group=True).close(completed=True)
        Distributed(1, 2, 1, owns_group=True).close()
        Distributed(1, 2, 1, owns_group=False).close(completed=True)  # the caller's group stays
    assert calls == ["barrier", "at exit", "at exit"]


def test_torchrun_launch_writes_what_a_single_process_writes_from_rank_0_alone(tmp_path):
    """The manual's command (docs/distributed.md): torchrun --nproc-per-node 2 -m coreaug train ..."""
    (tmp_path / "cwd").mkdir()
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")  # the console script users type
    launch = [torchrun if os.path.exists(torchrun) else "torchrun", "--nproc-per-node", str(WORLD),
              "--master-port", str(free_port()), "-m", "coreaug", "train"]
    ddp = subprocess.run([*launch, *ARGS, "--out", tmp_path / "ddp"], cwd=tmp_path / "cwd", env=ONE_THREAD,
                         capture_output=True, text=True, timeout=240)
    assert ddp.returncode == 0, ddp.stderr[:4000] + "\n...\n" + ddp.stderr[-2000:]  # the failing rank's traceback first
    one = subprocess.run([sys.executable, "-m", "coreaug", "train", *ARGS, "--out", tmp_path / "one"],
                         env=ONE_THREAD, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-3000:]

    assert ddp.stdout.count("final test accuracy") == 1  # rank 0 speaks for the run
    assert list((tmp_path / "cwd").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    metrics = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
               for run in ("ddp", "one")]
    counts = lambda h: [(m["epoch"], m["n_trained"], m["n_augmented"]) for m in h]  # noqa: E731
    assert counts(metrics[0]) == counts(metrics[1]) == [(0, 80, 16), (1, 80, 16)]
    summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("ddp", "one")]
    assert (summaries[0]["world_size"], summaries[1]["world_size"]) == (2, 1)
    assert (tmp_path / "ddp" / "config.json").read_text() == (tmp_path / "one" / "config.json").read_text()


def test_torchrun_streams_a_folder_that_rank_0_decodes_once(tmp_path):
    from test_data_image_folder import write_split

    write_split(tmp_path / "data", "train", per_class=8)
    write_split(tmp_path / "data", "val", per_class=2)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    launch = [torchrun if os.path.exists(torchrun) else "torchrun", "--nproc-per-node", str(WORLD),
              "--master-port", str(free_port()), "-m", "coreaug", "train"]
    env = {**ONE_THREAD, "COREAUG_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([*launch, "--dataset", tmp_path / "data", "--image-size", "12", "--model", "cnn",
                          "--stream", "always", "--epochs", "1", "--batch-size", "8", "--subset", "0.25",
                          "--quiet", "--out", tmp_path / "run"], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(os.listdir(tmp_path / "cache")) == 1  # one cache, no half-built copy
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["n_trained"], m["n_augmented"]) for m in history] == [(30, 6)]
