"""`--compile`: the whole step compiled with fixed shapes; graphs built in the first epoch only.

torch.compile on the CPU builds C++ and takes minutes per graph on a loaded machine, so one
compiled run (`compiled_run`) serves several tests.
"""
import contextlib

import pytest
import torch
import torch.nn.functional as F

import coreaug
from coreaug import files
from coreaug.training import compiled_step
from coreaug.training.plan import epoch_plan, fixed_step_layout, fixed_step_plan
from coreaug.training.sync_audit import syncs_per_step
from test_compile_support import needs_compile

pytestmark = needs_compile

RUN = dict(dataset="synthetic", train_limit=96, test_limit=32, batch_size=32, epochs=3, quiet=True,
           strategy="coreset", select_every=1, subset=0.3, augment="randaugment", seed=3)


def train(**settings):
    return coreaug.train(coreaug.TrainConfig(**{**RUN, **settings}))


@pytest.fixture(scope="module")
def compiled_run():
    from torch._dynamo.utils import counters

    breaks_before = sum(counters["graph_break"].values())
    result = train(compile=True)
    return result, sum(counters["graph_break"].values()) - breaks_before


def test_compile_builds_graphs_in_the_first_epoch_only_across_selections(compiled_run):
    result, _ = compiled_run
    compiled = [m["graphs_compiled"] for m in result.history]
    assert all(m["selected"] for m in result.history)  # a new selection every epoch
    assert compiled[0] >= 1 and compiled[1:] == [0, 0], compiled
    assert result.final_test_accuracy > 0.1  # chance; the compiled model trains


def test_the_compiled_step_has_no_graph_break(compiled_run):
    # The augment + forward + loss unit is fullgraph (a break would raise); the update is counted.
    assert compiled_run[1] == 0


def test_compiled_epochs_count_what_they_trained(compiled_run):
    result, _ = compiled_run
    selected = round(0.3 * 96)
    steps, per_step = fixed_step_layout(96, selected, 32)
    for m in result.history:
        assert m["n_trained"] == steps * 32 and m["n_augmented"] == steps * per_step >= selected


def test_compiled_losses_match_the_same_step_run_eagerly(compiled_run, monkeypatch):
    """The same layout and draws without torch.compile: the same losses within float tolerance."""
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)
    eager = train(compile=True)
    got = [m["train_loss"] for m in compiled_run[0].history]
    want = [m["train_loss"] for m in eager.history]
    assert got == pytest.approx(want, rel=1e-3), (got, want)


def test_the_compiled_step_keeps_the_training_logits_for_the_next_selection(monkeypatch):
    """estimates="training": the compiled step's logits of the originals feed the next selection."""
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)  # the same Python, eagerly
    stored = []
    real = coreaug.training.trainer._merge_logits
    monkeypatch.setattr(coreaug.training.trainer, "_merge_logits",
                        lambda previous, sums: stored.append(sums.clone()) or real(previous, sums))
    result = train(compile=True, estimates="training", epochs=2, test_limit=16)
    assert [m["selected"] for m in result.history] == [True, True]
    (sums,) = stored
    assert (sums[:, -1] >= 1).all()  # every original trained (top-ups twice), counted once per pass
    assert torch.isfinite(sums).all() and sums[:, :-1].abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment, optimizer, one_graph, precision", [
    ("randaugment", "sgd", True, "bf16"), ("maxloss", "sgd", True, "bf16"), ("randaugment", "adamw", True, "bf16"),
    ("randaugment", "adamw", False, "bf16"), ("randaugment", "sgd", True, "fp16")])
def test_compiled_cuda_steps_raise_on_any_sync(monkeypatch, augment, optimizer, one_graph, precision):
    """On a GPU (CUDA graphs), torch raises on a sync inside a compiled step after the first
    epoch's steps (warm-up and graph capture); max-loss scores its candidates inside the step.
    SGD's and AdamW's steps are one graph (fp16's loss scaling too); where they are two units
    (torchrun), forward + loss and then the update reading the backward's gradients are one path
    of CUDA graph trees."""
    if not one_graph:
        monkeypatch.setattr(compiled_step, "one_graph_update", lambda *args: False)
    calls, real = [], compiled_step.CompiledStep.__call__

    def call(self, *args):
        calls.append(1)
        if len(calls) <= 4:  # epoch 1: compiling, warming up and capturing
            return real(self, *args)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real(self, *args)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    monkeypatch.setattr(compiled_step.CompiledStep, "__call__", call)
    result = train(compile=True, device="cuda", epochs=2, augment=augment, optimizer=optimizer, precision=precision)
    assert len(calls) > 4 and result.history[1]["graphs_compiled"] == 0
    assert [m["cudagraph_skips"] for m in result.history] == [0, 0]  # every compiled graph replays


def test_a_cpu_run_counts_no_cuda_graph_skips(compiled_run):
    assert all("cudagraph_skips" not in m for m in compiled_run[0].history)  # the CPU asks for no CUDA graphs


def test_graphs_run_without_cuda_graphs_are_counted_and_warned_about(monkeypatch):
    """Graphs compiled for CUDA graphs (compile_mode "reduce-overhead") that inductor runs
    without them (on the CPU: every one, the CPU being a reason) are counted in the epochs'
    history, with one warning a run."""
    # Every step is marked as one for CUDA graph trees, before its units run.
    steps, marks, real = [], [], compiled_step.CompiledStep._step
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(len(steps)))
    monkeypatch.setattr(compiled_step.CompiledStep, "_step", lambda self, *args: steps.append(1) or real(self, *args))
    with pytest.warns(RuntimeWarning, match="without CUDA graphs") as warned:
        result = train(compile=True, compile_mode="reduce-overhead", epochs=2, strategy="none", test_limit=16)
    skips = [m["cudagraph_skips"] for m in result.history]
    assert skips[0] >= 1 and skips[1] == 0, skips
    assert len([w for w in warned if "CUDA graphs" in str(w.message)]) == 1
    assert len(steps) == 6 and marks == list(range(1, 7)), marks  # 3 steps an epoch, each marked once


def test_a_cuda_graph_mode_on_the_cpu_is_warned_about_as_the_cpus_not_the_graphs():
    """It said "torch logged no reason ... slower than with graph replay": a CPU has no replay to lose."""
    from coreaug.training.trainer import warn_cuda_graph_skips

    skips = compiled_step.CudaGraphSkips()
    skips.count = 1
    with pytest.warns(RuntimeWarning, match=r"asks for CUDA graphs, which the cpu does not have, .*compiled as by "
                                            r"--compile-mode default less its C\+\+ wrapper.*auto off a GPU") as warned:
        warn_cuda_graph_skips(skips, torch.device("cpu"))
    assert "no reason" not in str(warned[0].message)
    with pytest.warns(RuntimeWarning, match="torch logged no reason"):  # on CUDA: the graphs' own reasons
        warn_cuda_graph_skips(skips, torch.device("cuda"))


def test_cuda_graph_skips_keep_the_reasons_torch_logs_inside_their_context():
    from torch._inductor import cudagraph_utils

    cudagraph_utils.log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to before")  # not counted
    with compiled_step.CudaGraphSkips() as skips:
        for reason in ("mutated inputs", "cpu device", "mutated inputs"):
            cudagraph_utils.log_cudagraph_skip_and_bump_counter(f"skipping cudagraphs due to {reason}")
    cudagraph_utils.log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to after")  # not counted
    assert skips.count == 3
    assert skips.reasons == ["skipping cudagraphs due to mutated inputs", "skipping cudagraphs due to cpu device"]


@pytest.mark.parametrize("make", [
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.05)])
def test_primed_optimizer_state_steps_exactly_as_a_fresh_one(make):
    torch.manual_seed(0)
    start, grads = torch.randn(5, 3), [torch.randn(5, 3) for _ in range(3)]
    fresh, primed = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    a, b = make([fresh]), make([primed])
    compiled_step.prime_optimizer_state(b)
    assert torch.equal(primed, start) and b.state[primed]
    for grad in grads:
        fresh.grad, primed.grad = grad.clone(), grad.clone()
        a.step()
        b.step()
    assert torch.allclose(fresh, primed, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind, nesterov, weight_decay, norm_decay", [
    ("sgd", True, 5e-4, False), ("sgd", False, 0.0, True), ("adamw", False, 0.05, False)])
def test_the_one_graph_step_updates_as_autograd_and_the_optimizer_do(monkeypatch, kind, nesterov, weight_decay,
                                                                     norm_decay):
    """The one-graph step's gradients (`torch.func.grad`) and functional SGD or AdamW move a model
    as `loss.backward()` and `optimizer.step()` do, run eagerly (compile=False) for a few steps,
    with two parameter groups (biases and BatchNorm weights undecayed), a frozen layer left
    alone, and BatchNorm's running statistics updated the same."""
    from coreaug.augment import create_policy

    def run(one_graph):
        monkeypatch.setattr(compiled_step, "one_graph_update", lambda *args: one_graph)
        torch.manual_seed(0)
        model = coreaug.create_model("cnn", 3, 4).to(memory_format=torch.channels_last)
        frozen = model.features[0][0].weight
        frozen.requires_grad_(False)
        config = coreaug.TrainConfig(optimizer=kind, nesterov=nesterov, weight_decay=weight_decay,
                                     norm_decay=norm_decay, lr=0.1 if kind == "sgd" else 0.01, compile=True)
        from coreaug.training.trainer import make_optimizer

        optimizer = make_optimizer(config, model, compiled_update=True)
        step = compiled_step.CompiledStep(model, optimizer, create_policy("weak"), create_policy("randaugment"),
                                          lambda x: x.float() / 255, contextlib.nullcontext, None,
                                          label_smoothing=0.1, copies_per_step=3, device="cpu", compile=False)
        assert step.one_graph == one_graph
        generator = torch.Generator().manual_seed(1)
        sums = []
        for s in range(4):
            images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, 4, (8,), generator=generator)
            keys = torch.arange(8) + 8 * s
            sums.append(step(images, labels, torch.rand(8, generator=generator) + 0.5, keys, config.lr)[0])
        return model, frozen, torch.stack(sums)

    (one, one_frozen, one_sums), (two, two_frozen, two_sums) = run(True), run(False)
    assert torch.allclose(one_sums, two_sums, rtol=1e-5)
    torch.manual_seed(0)
    initial = coreaug.create_model("cnn", 3, 4)
    assert torch.equal(one_frozen, initial.features[0][0].weight) and torch.equal(two_frozen, one_frozen)
    assert not torch.allclose(one.classifier.weight, initial.classifier.weight)  # trained
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name


def eager_backend(fn, *, device, fullgraph, mode="auto"):
    """dynamo as compile_unit uses it (caches, guards, fullgraph), without inductor's code generation."""
    return torch.compile(fn, fullgraph=fullgraph, backend="eager")


def test_many_compiled_runs_in_one_process_stay_under_the_recompile_limit(monkeypatch):
    """Each run's CompiledStep compiles its units again (new model, optimizer, policies); before
    the units had their own code objects, earlier runs' cache entries counted towards torch's
    recompile limit and the run after the limit failed (FailOnRecompileLimitHit). dynamo's
    "eager" backend keeps the caching as it is and skips inductor's code generation."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(compiled_step, "compile_unit", eager_backend)
    limit = 2
    with torch._dynamo.config.patch(recompile_limit=limit):
        results = [train(compile=True, epochs=1, test_limit=16, subset=subset)
                   for subset in (0.3, 0.3, 0.5, 0.2)[:limit + 2]]
    assert all(r.history[0]["graphs_compiled"] >= 1 for r in results)
    assert not counters["recompiles"].get("recompile_limit_hit")


def test_guards_are_checked_through_the_first_epoch_then_at_each_epochs_first_step(monkeypatch):
    monkeypatch.setattr(compiled_step, "compile_unit", eager_backend)
    stances, real = [], torch.compiler.set_stance
    monkeypatch.setattr(torch.compiler, "set_stance", lambda *a, **k: stances.append(k) or real(*a, **k))
    result = train(compile=True, epochs=3, test_limit=16)
    steps, _ = fixed_step_layout(96, round(0.3 * 96), 32)
    assert steps > 1 and len(result.history) == 3
    assert stances == [dict(skip_guard_eval_unsafe=True)] * (2 * (steps - 1))  # epochs 2 and 3, after their first step


def test_a_change_between_epochs_is_seen_by_the_next_epochs_first_step(monkeypatch):
    """Guards skipped within an epoch must not hide what changed between epochs."""
    monkeypatch.setattr(compiled_step, "compile_unit", eager_backend)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, foreach=True)
    step = compiled_step.CompiledStep(model, optimizer, lambda images, source: images, None, lambda x: x.float() / 255,
                                      contextlib.nullcontext, None, label_smoothing=0.0, copies_per_step=0,
                                      device="cpu")
    images, labels = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 3, (8,))
    weights, key = torch.ones(8), torch.tensor(7)

    def loss_sum(smoothing):
        with torch.no_grad():
            return F.cross_entropy(model(images.float() / 255), labels, reduction="sum", label_smoothing=smoothing)

    for epoch in range(3):
        step.new_epoch()
        for _ in range(2):
            want = loss_sum(0.0)
            assert step(images, labels, weights, key, 0.1)[0][0].item() == pytest.approx(want.item(), rel=1e-5)
    step.label_smoothing = 0.4  # between epochs: the next epoch's first step checks the guards and recompiles
    step.new_epoch()
    want = loss_sum(0.4)
    assert step(images, labels, weights, key, 0.1)[0][0].item() == pytest.approx(want.item(), rel=1e-5)


def test_a_compiled_adamw_update_trains_on_the_cpu_as_its_eager_twin(monkeypatch):
    """AdamW's foreach form refuses the compiled update's tensor learning rate off CUDA; the CPU
    takes the single-tensor form."""
    monkeypatch.setattr(compiled_step, "compile_unit", eager_backend)
    compiled = train(compile=True, optimizer="adamw", test_limit=16)
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)
    twin = train(compile=True, optimizer="adamw", test_limit=16)
    assert [m["graphs_compiled"] for m in compiled.history][1:] == [0, 0]
    assert [m["train_loss"] for m in compiled.history] == pytest.approx([m["train_loss"] for m in twin.history],
                                                                        rel=1e-4)


def test_a_run_that_compiles_its_step_says_so_once_before_the_wait(monkeypatch, capsys):
    from coreaug.training.trainer import COMPILING

    monkeypatch.setattr(compiled_step, "compile_unit", eager_backend)
    train(compile=True, epochs=2, test_limit=16, quiet=False)
    assert capsys.readouterr().out.count(COMPILING) == 1  # with the epochs' log lines
    train(compile=True, epochs=1, test_limit=16)  # quiet
    assert COMPILING not in capsys.readouterr().out


def test_graph_counts_are_logged_only_with_compile():
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32,
                                               epochs=1, quiet=True))
    assert "graphs_compiled" not in result.history[0]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_compiled_step_never_waits_on_the_device(monkeypatch, precision):
    """torch.compile does not run under the audit's dispatch mode, so the audit runs the step's
    units eagerly: it sees every op they trace (a sync inside a fullgraph unit would not compile
    anyway) and every op of the loop around them. fp16's loss scaling included (GradScaler's own
    `step` reads its inf flag on the host)."""
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)
    base = dict(RUN, epochs=1, test_limit=16, compile=True, precision=precision,
                dataset="digits" if precision == "fp16" else RUN["dataset"])  # 8x8: fp16 convs are slow on a CPU
    per_step, counts = syncs_per_step(base)  # trains each setting once before its audited run
    assert per_step == 0, counts


@pytest.mark.parametrize("settings, named", [
    (dict(strategy="crust", selection_warmup=0), "strategy"), (dict(augment_steps=2), "augment_steps")])
def test_compile_refuses_what_the_compiled_step_cannot_trace(settings, named, tmp_path):
    with pytest.raises(coreaug.UsageError, match=named):
        train(compile=True, out=str(tmp_path / "run"), **settings)
    assert not (tmp_path / "run").exists()


MAXLOSS = dict(augment="maxloss", candidates=2)


@pytest.fixture(scope="module")
def compiled_maxloss_run():
    """Max-loss transforms compiled: the candidates scored by the model in eval mode, in the graph."""
    from torch._dynamo.utils import counters

    from coreaug.training import trainer

    breaks_before = sum(counters["graph_break"].values())
    modes, result_of = [], trainer._result

    def recording(config, history, model, distributed):  # the mode the last step left (the result is eval'd)
        modes.append(model.training)
        return result_of(config, history, model, distributed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "_result", recording)
        result = train(compile=True, **MAXLOSS)
    return result, sum(counters["graph_break"].values()) - breaks_before, modes


def test_compiled_maxloss_trains_without_graph_breaks_or_recompiles(compiled_maxloss_run):
    result, breaks, modes = compiled_maxloss_run
    assert breaks == 0
    assert all(m["selected"] for m in result.history)
    assert result.history[0]["graphs_compiled"] >= 1 and [m["graphs_compiled"] for m in result.history[1:]] == [0, 0]
    assert result.final_test_accuracy > 0.1 and modes == [True]  # the candidates' eval mode did not outlast the step


def test_compiled_maxloss_matches_the_same_step_run_eagerly(compiled_maxloss_run, monkeypatch):
    """The same draws and the same candidate chosen: the same losses, and the same BatchNorm
    statistics (scoring in eval mode reads them and never updates them, compiled or not)."""
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)
    eager = train(compile=True, **MAXLOSS)
    compiled = compiled_maxloss_run[0]
    got, want = [m["train_loss"] for m in compiled.history], [m["train_loss"] for m in eager.history]
    assert got == pytest.approx(want, rel=1e-3), (got, want)
    buffers = dict(eager.model.named_buffers())
    for name, buffer in compiled.model.named_buffers():
        if name.endswith("num_batches_tracked"):  # one per training forward; scoring would add more
            assert torch.equal(buffer, buffers[name]), name
        else:
            assert torch.allclose(buffer, buffers[name], rtol=1e-2, atol=1e-2), name  # 3 epochs of float drift


def test_the_compiled_maxloss_step_never_waits_on_the_device(monkeypatch):
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)
    base = dict(RUN, epochs=1, test_limit=16, compile=True, **MAXLOSS)
    per_step, counts = syncs_per_step(base)
    assert per_step == 0, counts


def plan_of(n=100, selected=25, copies=1, mode="append", seed=0):
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(n, generator=generator)[:selected]
    return epoch_plan(n, strategy="coreset", mode=mode, selected=picked,
                      weights=torch.rand(selected, generator=generator) + 0.5, copies=copies, weight_augmented=True,
                      generator=generator)


@pytest.mark.parametrize("n, selected, copies, batch", [(100, 25, 1, 32), (96, 29, 2, 32), (50, 50, 1, 16),
                                                        (100, 10, 1, 7)])
def test_fixed_step_plan_gives_every_batch_the_same_shape_and_copies(n, selected, copies, batch):
    plan = plan_of(n, selected, copies)
    fixed = fixed_step_plan(plan, batch, generator=torch.Generator().manual_seed(1))
    steps, per_step = fixed_step_layout(n, selected * copies, batch)
    assert len(fixed) == steps * batch
    augmented = fixed.augmented.view(steps, batch)
    assert (augmented[:, batch - per_step:]).all() and not augmented[:, :batch - per_step].any()
    assert fixed.n_augmented >= plan.n_augmented  # the method's budget never shrinks
    # every entry of the plan is trained, and top-ups come from the plan's own entries
    for kind in (True, False):
        was = plan.indices[plan.augmented == kind].bincount(minlength=n)
        now = fixed.indices[fixed.augmented == kind].bincount(minlength=n)
        assert (now >= was).all() and ((now > 0) == (was > 0)).all()


@pytest.mark.parametrize("world", [2, 4])
def test_every_process_shares_each_fixed_step_with_the_same_copies_in_its_last_rows(world):
    """Under torchrun the compiled layout is made for the global batch, its copies a multiple of
    the processes, and sharded: every process's batch then has batch / world entries, the same
    copies in its last rows, step after step, and the shares together are the layout."""
    plan = plan_of(100, 29, 1)
    fixed = plan.fixed_steps(32, generator=torch.Generator().manual_seed(1), world_size=world)
    steps, per_step = fixed_step_layout(100, 29, 32, world)
    assert per_step % world == 0 and per_step >= fixed_step_layout(100, 29, 32)[1] and len(fixed) == steps * 32
    shares = [fixed.shard(rank, world) for rank in range(world)]
    for share in shares:
        augmented = share.augmented.view(steps, 32 // world)
        copies = per_step // world
        assert augmented[:, 32 // world - copies:].all() and not augmented[:, :32 // world - copies].any()
    assert sorted(torch.cat([share.indices * 2**17 + share.slots for share in shares]).tolist()) == \
        sorted((fixed.indices * 2**17 + fixed.slots).tolist())


def test_fixed_step_plan_keeps_weights_with_their_examples():
    plan = plan_of()
    fixed = fixed_step_plan(plan, 32, generator=torch.Generator().manual_seed(1))
    weight_of = {(int(i), bool(a)): float(w) for i, w, a in zip(plan.indices, plan.weights, plan.augmented)}
    pairs = zip(fixed.indices, fixed.weights, fixed.augmented)
    assert all(weight_of[(int(i), bool(a))] == float(w) for i, w, a in pairs)


def test_a_compiled_layout_far_larger_than_its_plan_is_warned_about_with_the_copies_share(monkeypatch):
    """A plan of about a batch or less is topped up to whole batches: the docs said "slightly more
    entries", but 10 originals and 10 copies at batch 64 train 64 entries, the copies 16% of them."""
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)  # the same Python, eagerly
    with pytest.warns(RuntimeWarning, match=r"an epoch trains 64 entries, 3\.2x the plan's 20: whole batches of "
                                            r"64, .*the strong copies are 16% of the rows trained rather than 50%") \
            as warned:
        result = train(compile=True, strategy="random", mode="subset", subset=0.1, batch_size=64, epochs=2,
                       test_limit=16)
    assert len([w for w in warned if "topped up" in str(w.message)]) == 1  # once a run
    assert [m["n_trained"] for m in result.history] == [64, 64]
    fixed = plan_of(100, 25, 1, "append").fixed_steps(32, generator=torch.Generator().manual_seed(0))
    assert compiled_step.warn_layout_growth(fixed, 32) < compiled_step.GROWTH_WARNED  # 128 for 125: no warning


def test_fixed_step_layout_is_the_same_for_every_selection_of_a_budget():
    shapes = {tuple(fixed_step_plan(plan_of(seed=s), 32, generator=torch.Generator().manual_seed(s))
                    .augmented.view(-1, 32).sum(1).tolist()) for s in range(5)}
    assert len(shapes) == 1


# Tensor factories that take a device: called without one inside a compiled unit, they make a
# CPU tensor even on a GPU, a CPU node in the graph, and inductor then runs the graph without
# CUDA graphs ("skipping cudagraphs due to cpu device").
FACTORIES = (torch.tensor, torch.as_tensor, torch.scalar_tensor, torch.arange, torch.linspace, torch.zeros,
             torch.ones, torch.full, torch.empty, torch.eye, torch.rand, torch.randn, torch.randint)


@pytest.mark.parametrize("augment, optimizer, one_graph, precision", [
    ("randaugment", "sgd", True, "fp32"), ("autoaugment", "sgd", True, "fp32"), ("maxloss", "sgd", True, "fp32"),
    ("randaugment", "adamw", True, "fp32"), ("randaugment", "adamw", False, "fp32"),
    ("randaugment", "sgd", True, "fp16")])
def test_the_compiled_units_keep_to_what_cuda_graphs_can_replay(monkeypatch, augment, optimizer, one_graph,
                                                                precision):
    """Read from the graphs dynamo and AOT autograd trace on the CPU (SGD and AdamW: the step is
    one graph, fp16's loss scaling included; two units where one is not possible (torchrun),
    forward + loss with its backward, and the update): no tensor made without a
    device and nothing read back to the host (on a GPU, a CPU node), no input mutated in place
    unless it is static (parameters, buffers, optimizer state: a CUDA graph may write them where
    they are; any other mutated input makes inductor skip CUDA graphs, "mutated inputs"), no
    op inductor will not capture (torch's own check: data-dependent shapes, unsafe ops), and in
    the one graph no input but the step's own arguments that is not static (the policies' cached
    tables, the learning rates: a CUDA graph copies each other input at every replay)."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.utils import get_first_incompatible_cudagraph_node

    graphs, units, unsafe = [], [], []
    # What dynamo learnt from earlier compiles of the same step's code (an earlier test's AdamW
    # step: automatic dynamic sizes) may make it trace this one twice: a fresh start, as a process.
    torch._dynamo.reset()

    def forward_compiler(gm, example_inputs):
        meta = torch._guards.TracingContext.try_get().fw_metadata
        mutated = [i for i, info in enumerate(meta.input_info) if info.mutates_data or info.mutates_metadata]
        units.append((mutated, set(meta.static_input_indices)))
        return backward_compiler(gm, example_inputs)

    def backward_compiler(gm, example_inputs):
        unsafe.append(get_first_incompatible_cudagraph_node(gm))  # e.g. an op of data-dependent shape
        return gm

    aot = aot_autograd(fw_compiler=forward_compiler, bw_compiler=backward_compiler)

    def capture(gm, example_inputs):
        graphs.append(gm)
        return aot(gm, example_inputs)

    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, *, device, fullgraph, mode="auto": torch.compile(
        fn, fullgraph=fullgraph, dynamic=False, backend=capture))
    if not one_graph:
        monkeypatch.setattr(compiled_step, "one_graph_update", lambda *args: False)
    train(compile=True, epochs=1, test_limit=16, augment=augment, optimizer=optimizer, precision=precision)
    calls = [node for gm in graphs for node in gm.graph.nodes if node.op in ("call_function", "call_method")]
    assert len(graphs) == len(units) == (1 if one_graph else 2) and len(calls) > 100  # the step, traced
    deviceless = [f"{node.target.__name__}: {node.meta.get('stack_trace', '').strip().splitlines()[-2:]}"
                  for node in calls if node.target in FACTORIES and "device" not in node.kwargs]
    to_host = [node.target for node in calls if node.target in ("cpu", "numpy", "tolist", "item")]
    assert not deviceless and not to_host, deviceless + to_host
    # BatchNorm's running statistics, the parameters, the optimizer's state: one graph's, or the two units'
    assert all(mutated for mutated, _ in units)
    assert all(set(mutated) <= static for mutated, static in units), units
    assert len(unsafe) >= (1 if one_graph else 3) and unsafe == [None] * len(unsafe), unsafe
    if one_graph:  # CUDA graphs copy each input not static into their own buffer at every replay
        names = [node.name for node in graphs[0].graph.nodes if node.op == "placeholder"]
        moving = {name for i, name in enumerate(names) if i not in units[0][1]}
        assert moving <= {"l_images_", "l_labels_", "l_weights_", "l_key_", "l_numbers_"}, moving  # the step's own


@pytest.mark.parametrize("channels", [3, 1])
def test_a_compiled_evaluation_pads_its_last_batch_instead_of_compiling_again(channels):
    """The evaluation of a compiled run: one graph for every batch, the same sums as the eager model.
    One channel, channels-last (digits, MNIST as coreaug holds them): the padded last batch
    keeps the strides of the others, which for one channel differ from a contiguous batch's."""
    from torch._dynamo.utils import counters

    from coreaug.data.images import as_images
    from coreaug.training.evaluate import evaluation_sums

    class Net(torch.nn.Module):  # its own forward code: no graph of an earlier test is reused
        def __init__(self):
            super().__init__()
            self.body = coreaug.create_model("cnn", channels, 10)

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    model = Net()
    model(torch.rand(4, channels, 16, 16))  # BatchNorm statistics of some images, not the initial ones
    stored = torch.randint(0, 256, (40, 16, 16, channels), dtype=torch.uint8).permute(0, 3, 1, 2)  # channels-last
    images = as_images(stored if channels == 1 else stored.contiguous())
    labels = torch.randint(0, 10, (40,))
    scale = lambda x: x.float() / 255  # noqa: E731
    before = counters["stats"]["unique_graphs"]
    compiled = evaluation_sums(torch.compile(model, backend="eager"), images, labels, scale, 32, contextlib.nullcontext)
    assert counters["stats"]["unique_graphs"] - before == 1  # batches of 32 and 8: not a second graph
    assert compiled == pytest.approx(evaluation_sums(model, images, labels, scale, 32, contextlib.nullcontext),
                                     rel=1e-5)


@pytest.mark.parametrize("device,mode,expected,graphs", [
    ("cpu", "auto", {"options": {"cpp_wrapper": True}}, False),
    ("cuda", "auto", {"mode": "reduce-overhead"}, True),
    ("cuda", "default", {"mode": None}, False),
    ("cpu", "reduce-overhead", {"mode": "reduce-overhead"}, True),
    ("cuda", "max-autotune", {"mode": "max-autotune"}, True),
    ("cuda", "max-autotune-no-cudagraphs", {"mode": "max-autotune-no-cudagraphs"}, False)])
def test_the_compile_mode_reaches_torch_compile(monkeypatch, device, mode, expected, graphs):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: calls.append(options) or fn)
    compiled_step.compile_unit(lambda x: x, device=device, fullgraph=True, mode=mode)
    assert calls == [dict(fullgraph=True, dynamic=False, **expected)]
    assert compiled_step.uses_cuda_graphs(device, mode) is graphs


def test_a_bad_or_idle_compile_mode_is_refused_before_anything_is_written(tmp_path):
    for settings, message in ((dict(compile=True, compile_mode="fast"), "unknown compile_mode 'fast'"),
                              (dict(compile_mode="default"), "applies to a compiled step")):
        with pytest.raises(coreaug.UsageError, match=message):
            train(out=str(tmp_path / "run"), **settings)
        assert not (tmp_path / "run").exists()


def test_a_failure_inside_cuda_graph_trees_names_the_mode_without_them(monkeypatch):
    """As on the H200 under torch 2.11: an error raised in torch's CUDA graph trees (here from a
    function whose code claims that file) reaches the user with the way round it, the cause kept."""
    namespace = {}
    exec(compile("def replay():\n    raise AssertionError('dealloc_current_path_weakrefs')\n",
                 "/torch/_inductor/cudagraph_trees.py", "exec"), namespace)
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, **options: fn)
    monkeypatch.setattr(compiled_step.CompiledStep, "__call__", lambda self, *args: namespace["replay"]())
    with pytest.raises(RuntimeError, match="CUDA graph trees .*AssertionError: dealloc_current_path_weakrefs.*"
                                           "--compile-mode default") as raised:
        train(compile=True, compile_mode="reduce-overhead", epochs=1, test_limit=16)
    assert isinstance(raised.value.__cause__, AssertionError)
    # Raised elsewhere, or without CUDA graphs, an error passes unchanged.
    monkeypatch.setattr(compiled_step.CompiledStep, "__call__", lambda self, *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(compile=True, compile_mode="reduce-overhead", epochs=1, test_limit=16)
    monkeypatch.setattr(compiled_step.CompiledStep, "__call__", lambda self, *args: namespace["replay"]())
    with pytest.raises(AssertionError):
        train(compile=True, epochs=1, test_limit=16)


class BranchingModel(torch.nn.Module):
    """Trains eagerly; dynamo cannot trace its forward whole (a Python branch on a tensor's value)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.conv(x)).mean((2, 3))
        if h.sum() > 0:
            h = h * 2
        return self.fc(h)


def test_a_model_compile_cannot_trace_whole_is_refused_in_one_line_naming_its_line(monkeypatch):
    """It was dynamo's 100-line traceback; the reason and the model's line were deep inside it."""
    monkeypatch.setattr(compiled_step, "compile_unit", eager_backend)
    config = coreaug.TrainConfig(**{**RUN, "epochs": 1, "test_limit": 16, "compile": True})
    with pytest.raises(coreaug.UsageError, match=r"^compile cannot trace the training step into one graph: "
                                                  r"Data-dependent branching at .*test_training_compile\.py:\d+ in "
                                                  r"forward \(`if h\.sum\(\) > 0:`\); .*drop --compile$") as raised:
        coreaug.train(config, model=BranchingModel())
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value.__cause__, torch._dynamo.exc.Unsupported)  # torch's whole message, chained


def test_code_compile_cannot_trace_is_the_users_only_outside_torch_and_coreaug():
    """The same refusal raised in coreaug's own code is coreaug's failure: it keeps its traceback."""
    def refusal(filename):
        namespace = {}
        exec(compile("def step(x):\n    if x.sum() > 0:\n        x = x * 2\n    return x\n", filename, "exec"),
             namespace)
        try:
            torch.compile(namespace["step"], fullgraph=True, backend="eager")(torch.ones(3))
        except torch._dynamo.exc.Unsupported as error:
            return compiled_step.untraceable_code(error)
        raise AssertionError("dynamo traced a data-dependent branch")

    assert "at /elsewhere/model.py:2 in step;" in str(refusal("/elsewhere/model.py"))
    assert refusal(f"{files.COREAUG_DIR}/models/model.py") is None
    assert compiled_step.untraceable_code(ValueError("a model's own error")) is None


def _cnn_step(monkeypatch=None, compile=False, backend=None, optimizer="sgd", copies=2, scaler=None,
              autocast=contextlib.nullcontext):
    from coreaug.augment import create_policy
    from coreaug.training.trainer import make_optimizer

    torch.manual_seed(0)
    model = coreaug.create_model("cnn", 3, 4).to(memory_format=torch.channels_last)
    config = coreaug.TrainConfig(optimizer=optimizer, lr=0.1, compile=True, weight_decay=5e-4, nesterov=True,
                                 norm_decay=False)
    opt = make_optimizer(config, model, compiled_update=True)
    if backend is not None:
        monkeypatch.setattr(compiled_step, "compile_unit",
                            lambda fn, *, device, fullgraph, mode="auto": torch.compile(
                                fn, fullgraph=fullgraph, dynamic=False, backend=backend))  # as compile_unit
    step = compiled_step.CompiledStep(model, opt, create_policy("weak"), create_policy("randaugment"),
                                      lambda x: x.float() / 255, autocast, scaler, label_smoothing=0.0,
                                      copies_per_step=copies, device="cpu", compile=compile)
    return model, opt, step


def _batch(s):
    generator = torch.Generator().manual_seed(s)
    return (torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=generator),
            torch.randint(0, 4, (8,), generator=generator), torch.ones(8), torch.arange(8) + 8 * s, 0.1)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_one_graph_step_keeps_parameters_buffers_and_state_in_a_few_flat_tensors(optimizer):
    """The model's parameters and buffers and the optimizer's state become views of a few flat
    tensors (per group, state key and buffer dtype), with their values and memory layouts; the
    step updates them there, and an optimizer state loaded between epochs is read from then on."""
    torch.manual_seed(0)
    model = coreaug.create_model("cnn", 3, 4).to(memory_format=torch.channels_last)
    before = {name: (t.clone(), t.stride()) for name, t in model.state_dict().items()}
    model, opt, step = _cnn_step(optimizer=optimizer)
    assert step.flat is not None
    tensors = [*model.parameters(), *model.buffers(), *(v for s in opt.state.values() for v in s.values())]
    storages = {t.untyped_storage().data_ptr() for t in tensors}
    keys = len(next(iter(opt.state.values())))  # momentum; moments and step count
    assert len(tensors) > 30 and len(storages) == len(opt.param_groups) * (1 + keys) + 2  # buffers: float, int64
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name][0]) and t.stride() == before[name][1], name  # channels-last kept
    step(*_batch(0))
    changed = [name for name, t in model.state_dict().items() if not torch.equal(t, before[name][0])]
    assert "classifier.weight" in changed and any("running_mean" in name for name in changed)
    # A state loaded between epochs (new tensors): the next epoch's step reads and updates those.
    state = opt.state_dict()
    key = "momentum_buffer" if optimizer == "sgd" else "exp_avg"
    for entry in state["state"].values():
        entry[key] = torch.full_like(entry[key], 0.5)
    opt.load_state_dict(state)
    assert not step._flat_still_held()
    step.new_epoch()
    assert step._flat_still_held()
    held = [s[key] for s in opt.state.values()]
    assert all(torch.equal(t, torch.full_like(t, 0.5)) for t in held)
    step(*_batch(1))
    assert all(not torch.equal(t, torch.full_like(t, 0.5)) for t in held)  # the views the step updates


def test_the_compiled_one_graph_step_takes_a_few_flat_inputs_not_one_per_tensor(monkeypatch):
    inputs = []

    def backend(gm, example_inputs):
        inputs.append(len(example_inputs))
        return gm

    model, _, step = _cnn_step(monkeypatch, compile=True, backend=backend)
    step(*_batch(0))
    step(*_batch(1))
    monkeypatch.setattr(compiled_step.CompiledStep, "_flatten", lambda self: setattr(self, "flat", None))
    model, _, unflat = _cnn_step(monkeypatch, compile=True, backend=backend)
    unflat(*_batch(0))
    per_tensor = len(list(model.parameters())) + len(list(model.buffers()))
    assert len(inputs) == 2 and inputs[0] + per_tensor <= inputs[1], inputs  # one graph each, no recompile


def test_a_second_step_with_other_shapes_in_one_process_compiles_static_shapes(monkeypatch):
    """dynamo remembers sizes per code location: without dynamic=False, a second run's step with
    another number of copies in the same process (a bench grid's worker) was traced with a
    symbolic size instead of its own fixed shapes."""
    real_compile, graphs = torch.compile, []

    def backend(gm, example_inputs):
        graphs.append([type(x).__name__ for x in example_inputs if not isinstance(x, torch.Tensor)])
        return gm

    def compile_with_backend(fn, *, fullgraph, dynamic=None, mode=None, options=None):
        return real_compile(fn, fullgraph=fullgraph, dynamic=dynamic, backend=backend)

    monkeypatch.setattr(torch, "compile", compile_with_backend)
    torch._dynamo.reset()
    for copies in (2, 3):
        _, _, step = _cnn_step(copies=copies)
        step.compiled = True
        step.train_step = compiled_step.compile_unit(compiled_step.own_code(step._train_step), device="cpu",
                                                     fullgraph=True)
        step(*_batch(copies))
    assert graphs == [[], []]  # tensors only: no symbolic size


def _fp16_steps(monkeypatch, optimizer, one_graph, compile=False):
    """Six fp16 steps of the cnn with a GradScaler (small growth interval, factors that are not
    powers of two), its scale set to overflow fp16 before the fourth: the model, optimizer and
    scaler, the scale after each step, whether each step left the parameters as they were, and
    whether it backed the scale off."""
    monkeypatch.setattr(compiled_step, "one_graph_update", lambda *args: one_graph)
    scaler = torch.amp.GradScaler("cpu", growth_interval=2, growth_factor=1.7, backoff_factor=0.3)
    model, opt, step = _cnn_step(optimizer=optimizer, scaler=scaler, compile=compile,
                                 autocast=lambda: torch.autocast("cpu", dtype=torch.float16))
    assert step.one_graph == one_graph
    scales, unchanged, before = [], [], []
    for s in range(6):
        if s == 3:  # a scale whose products overflow fp16: the next steps are skipped
            scaler.load_state_dict({**scaler.state_dict(), "scale": 1e30})
        before.append(scaler.get_scale())
        params = [p.detach().clone() for p in model.parameters()]
        step(*_batch(s))
        scales.append(scaler.get_scale())
        unchanged.append(all(torch.equal(a, b) for a, b in zip(params, model.parameters())))
    backed_off = [now < then for now, then in zip(scales, before)]
    return model, opt, scaler, scales, unchanged, backed_off


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fp16s_loss_scaling_in_the_one_graph_step_is_gradscalers(monkeypatch, optimizer):
    """fp16: the one-graph step scales the loss, unscales and checks the gradients, skips the update
    of a step with an inf and grows or backs off the scale as GradScaler's `scale`, `step` and
    `update` do (the two-unit step runs them), bit for bit, without reading anything on the host;
    a scale loaded into the scaler between steps is the one the step uses."""
    one, two = _fp16_steps(monkeypatch, optimizer, True), _fp16_steps(monkeypatch, optimizer, False)
    assert one[3:] == two[3:]
    scales, unchanged, backed_off = one[3:]
    assert unchanged == backed_off, (unchanged, scales)  # a step with an inf is skipped, and only such a step
    assert unchanged[3] and not all(unchanged) and max(scales[:3]) > 2.0 ** 16, scales  # skipped; trained; grown
    assert one[2].state_dict() == two[2].state_dict()
    for (name, a), b in zip(one[0].state_dict().items(), two[0].state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(one[1].state_dict()["state"].values(), two[1].state_dict()["state"].values()):
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_compiled_fp16_step_skips_exactly_the_steps_whose_scale_it_backs_off(monkeypatch):
    """The same six steps, the one graph compiled by inductor."""
    _, _, _, scales, unchanged, backed_off = _fp16_steps(monkeypatch, "sgd", True, compile=True)
    assert unchanged == backed_off and unchanged[3] and not all(unchanged), (unchanged, scales)
