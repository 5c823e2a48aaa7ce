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
            assert "pass the model and the training data to start_epoch on every rank (rank 1 did not pass both)" \
                in record[(fsdp1, "lacking")]


def _pass_items(method, sampler_iter, count=None):
    return [int(item) for item in (sampler_iter if count is None else (next(sampler_iter) for _ in range(count)))]


def test_a_sampler_pass_resumes_mid_epoch_from_its_state_and_refuses_another_plans():
    """torchdata's StatefulDataLoader restored a coreaug sampler by counting: a method whose state was
    not loaded selected anew and the count skipped into another plan (27 items wrong, no word); its
    state_dict() before the first start_epoch raised "no plan yet" though nothing was iterated
    (explore22-frameworks #4)."""
    import pytest

    labels = torch.arange(60) % 5
    saved = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3, select_every=2)
    early = iter(saved.sampler())  # a StatefulDataLoader's state_dict() before start_epoch makes it
    assert early.state_dict() == {"epoch": None, "plan": None, "length": None, "yielded": 0}
    saved.start_epoch(0)
    assert len(_pass_items(saved, early)) == len(saved.plan)  # that iterator then trains epoch 0's plan
    saved.start_epoch(1)
    running = iter(saved.sampler())
    done = _pass_items(saved, running, 7)
    state, method_state = running.state_dict(), saved.state_dict()
    rest = _pass_items(saved, running)
    assert state["epoch"] == 1 and state["yielded"] == 7 and state["length"] == len(saved.plan)
    whole = running.state_dict()  # the pass ended: a checkpoint at the epoch's end

    resumed = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3, select_every=2)
    resumed.load_state_dict(method_state)
    resumed.start_epoch(1)
    again = iter(resumed.sampler())
    again.load_state_dict(state)
    assert again.state_dict() == state  # saved again before its first item, as it was
    assert _pass_items(resumed, again) == rest and again.yielded == len(done) + len(rest)

    fresh = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3, select_every=2)
    fresh.start_epoch(1)  # its state not loaded: selects at epoch 1, another plan
    lost = iter(fresh.sampler())
    lost.load_state_dict(state)
    with pytest.raises(coreaug.UsageError, match=r"resumes epoch 1's plan after 7 of its items, but the method's is "
                                                 r"another plan of that epoch .*load the method's state"):
        next(lost)
    later = iter(resumed.sampler())
    resumed.start_epoch(2)
    later.load_state_dict(state)
    with pytest.raises(coreaug.UsageError, match="but the method's is epoch 2's plan"):
        next(later)
    after = iter(resumed.sampler())
    after.load_state_dict(whole)  # a whole pass of epoch 1, and epoch 2 begun: epoch 2's plan, whole
    assert sorted(_pass_items(resumed, after)) == sorted(int(item) for item in resumed.sampler())
    ended = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3, select_every=2)
    ended.load_state_dict(method_state)
    ended.start_epoch(1)
    done_pass = iter(ended.sampler())
    done_pass.load_state_dict(whole)  # saved after epoch 1's last batch, resumed in epoch 1: nothing of it again
    assert _pass_items(ended, done_pass) == [] and done_pass.state_dict() == whole
    with pytest.raises(coreaug.UsageError, match="not a state of a coreaug sampler's pass"):
        later.load_state_dict({"samples_yielded": 3})


def test_a_selection_that_scores_the_parameters_of_the_last_is_warned_about():
    """A torch.func loop trains a dict of parameters, and start_epoch scored the module's untouched ones at
    every selection: 0.03 accuracy against the trained 0.99, 14 of 60 examples in common with the right
    selection, no word (explore22-frameworks #3)."""
    import warnings

    import pytest
    from torch.func import functional_call, grad

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    params = {name: value.detach().clone() for name, value in model.named_parameters()}
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)

    def loss(p, x, y):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    said = []
    for epoch in range(3):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            method.start_epoch(epoch, model, FLOATS)
        g = grad(loss)(params, FLOATS, LABELS)
        params = {name: params[name] - 0.1 * g[name] for name in params}
        said.append([str(w.message) for w in caught if "parameters are those it scored" in str(w.message)])
    assert [len(messages) for messages in said] == [0, 1, 0]  # once
    assert said[1][0].startswith("start_epoch(1) scores a model whose parameters are those it scored at epoch 0")

    trained = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch in range(3):  # the module itself trained: no warning
            trained.start_epoch(epoch, model, FLOATS)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(FLOATS), LABELS).backward()
            optimizer.step()
    with pytest.warns(UserWarning, match="pass a module that holds the trained ones"):
        fixed = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
        fixed.start_epoch(0, model, FLOATS)
        fixed.start_epoch(1, model, FLOATS)



def test_a_closed_stdout_or_stdin_is_read_as_nothing_and_refused_where_it_is_the_output(tmp_path):
    """A job launcher's closed fd 1 (`>&-`): train failed after its first epoch (AttributeError:
    'NoneType' object has no attribute 'flush'), predict with a TypeError; `--files-from -` with
    stdin closed was click's RuntimeError (explore22-scripts #3, #4)."""
    import subprocess
    import sys

    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "image.png")
    coreaug_cli = f"{sys.executable} -m coreaug"

    def shell(line):
        return subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=300)

    trained = shell(f"{coreaug_cli} train --dataset digits --epochs 2 --train-limit 64 --test-limit 32 --out run >&-")
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "summary.json").exists()
    evaluated = shell(f"{coreaug_cli} evaluate run >&-")
    assert evaluated.returncode == 2 and evaluated.stderr == (
        "error: stdout is closed, and the accuracy is written to it: send it to a file "
        "(coreaug evaluate RUN > accuracy.txt)\n")
    predicted = shell(f"{coreaug_cli} predict run image.png >&-")
    assert predicted.returncode == 2 and "stdout is closed, and the predictions table" in predicted.stderr
    listed = shell(f"{coreaug_cli} predict run --files-from - <&-")
    assert listed.returncode == 2 and listed.stderr == (
        "error: give IMAGES (files or folders), or a list of them with --files-from (<stdin> (closed) lists none)\n")
    assert shell(f"{coreaug_cli} predict run image.png <&-").stdout.startswith("image,rank,class,probability\n")


def test_rules_that_read_the_losses_alone_compute_no_gradient_estimates(monkeypatch):
    """maxloss and infobatch scored the (n, c) logit gradients and projected them to --gradient-dim,
    then threw them away: twice the selection's time at 20,000 classes (explore22-classes #1)."""
    import pytest

    from coreaug.selection import gradients

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    _, expected = gradients.estimate_gradients(model, FLOATS, LABELS, dim=2, with_losses=True)

    def projected(*args, **kwargs):
        raise AssertionError("gradient estimates computed for a rule that reads the losses alone")

    monkeypatch.setattr(gradients, "_gradients", projected)
    estimates, losses = gradients.estimate_gradients(model, FLOATS, LABELS, dim=2, with_losses=True, losses_only=True)
    assert estimates is None and torch.equal(losses, expected)
    for strategy in ("maxloss", "infobatch"):
        method = coreaug.CoresetAugmentation(LABELS, strategy=strategy, fraction=0.25)
        assert torch.equal(method.scores(model, FLOATS)["losses"], expected)
        method.start_epoch(0, model, FLOATS)
        assert len(method.selection.indices) == N // 4
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=16, epochs=1,
                                               batch_size=32, strategy="maxloss", quiet=True))
    assert len(result.history) == 1 and result.history[0]["estimate_seconds"] > 0
    with pytest.raises(coreaug.UsageError, match="pass with_losses=True too"):
        gradients.estimate_gradients(model, FLOATS, LABELS, losses_only=True)


def test_evaluate_sums_up_many_classes_gives_json_and_predict_tells_small_probabilities_apart(tmp_path, monkeypatch):
    """5,000 classes: 4,287 lines of evaluate in name order, a 99 KB repr of Evaluation, and predict's
    0.000084 for ranks 2-4 of 20,000 classes (explore22-classes #3, #4); evaluate had no output for
    scripts (explore22-scripts #6)."""
    import json

    from click.testing import CliRunner
    from PIL import Image

    from coreaug.cli.main import app
    from coreaug.training import trained

    coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=100, test_limit=50, quiet=True,
                                      out=str(tmp_path / "run")))
    per_class = {f"c{k:05d}": ((k * 7) % 5, 5) for k in range(300)}
    many = trained.Evaluation(accuracy=0.4, correct=600, total=1500, per_class=per_class, unscored=["c99999"])
    monkeypatch.setattr(trained.TrainedModel, "evaluate", lambda self, *args, **kwargs: many)
    assert len(repr(many)) < 300
    runner = CliRunner()
    text = runner.invoke(app, ["evaluate", str(tmp_path / "run")])
    lines = text.output.splitlines()
    assert text.exit_code == 0 and len(lines) == 1 + 1 + 20 + 1, text.output
    assert lines[1] == ("  per class, 300 classes: lowest 0.00%, median 40.00%, highest 80.00%; the 20 lowest "
                        "(every class: --all-classes):")
    assert lines[2] == "  c00000  0.00% (0/5)" and lines[3] == "  c00005  0.00% (0/5)"
    assert len(runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--all-classes"]).output.splitlines()) == 302
    many.unscored.append("caf\udce9")  # a Latin-1 folder name's odd byte: written escaped, valid JSON (review32 #2)
    scripted = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--format", "json"])
    record = json.loads(scripted.output)
    assert scripted.output.isascii() and record["unscored"] == ["c99999", "caf\udce9"]
    assert record["accuracy"] == 0.4 and record["per_class"]["c00001"] == [2, 5]
    assert record["dataset"] == "digits" and record["scored"] == "test split"

    tiny = [trained.Prediction("x.png", ["a", "b", "c", "d"], [0.000124, 0.0000843, 0.0000838, 3e-9])]
    monkeypatch.setattr(trained.TrainedModel, "predict", lambda self, *args, **kwargs: tiny)
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    rows = runner.invoke(app, ["predict", "run", "x.png", "--top-k", "4"]).output.splitlines()
    assert [row.split(",")[3] for row in rows[1:]] == ["0.000124", "8.43e-05", "8.38e-05", "3e-09"]


def test_apricot_past_twenty_classes_is_warned_about(monkeypatch):
    """backend="apricot" compiles at every class's fit: 100 classes of 3 examples took 118 s and 620 MB
    that stayed, 20,000 classes hours, with no word in the docs or at the call (explore22-classes #2)."""
    import warnings

    import numpy as np
    import pytest

    from coreaug.selection import coreset

    monkeypatch.setattr(coreset, "apricot_greedy", coreset.lazy_greedy)  # (the warning, not apricot's minutes)
    x = np.random.default_rng(0).standard_normal((63, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"backend='apricot' compiles its kernels at every fit, one for each of 21 "
                                         r"classes: about a second and several MB a class"):
        coreaug.select_coreset(x, np.arange(63) % 21, 0.5, backend="apricot")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coreaug.select_coreset(x[:60], np.arange(60) % 20, 0.5, backend="apricot")
        coreaug.select_coreset(x, np.arange(63) % 21, 0.5)


def test_quiet_has_a_short_flag(tmp_path):
    """`coreaug train ... -q` was "error: No such option '-q'" (explore22-scripts #7)."""
    from click.testing import CliRunner

    from coreaug.cli.main import app

    done = CliRunner().invoke(app, ["train", "--dataset", "digits", "--epochs", "2", "--train-limit", "64",
                                    "--test-limit", "32", "-q", "--out", str(tmp_path / "run")])
    assert done.exit_code == 0 and done.stdout.startswith("final test accuracy ") and done.stdout.count("\n") == 1


def test_data_that_is_not_images_mixes_and_scores_with_its_own_errors():
    """mix_with_partners rounded float copies to 0 or 1 and made (2, 6) rows (2, 1, 2, 6); a token model's
    shape bug became "cannot take the int64 images ... x.float() / 255", its own line dropped
    (explore22-modalities #1, #2)."""
    import traceback

    import pytest

    from coreaug.training.trainer import mix_with_partners

    g = torch.Generator().manual_seed(0)
    floats = torch.rand(10, 1, 8, 8)
    mixed = mix_with_partners(floats[:3].clone(), floats, torch.tensor([4, 5, 6]), lambda x, s: x, g)
    assert mixed.dtype == torch.float32 and mixed.unique().numel() > 2
    lo, hi = torch.minimum(floats[:3], floats[4:7]), torch.maximum(floats[:3], floats[4:7])
    assert bool(((mixed >= lo - 1e-6) & (mixed <= hi + 1e-6)).all())  # a blend of each copy and its partner
    rows = torch.rand(10, 6)
    assert mix_with_partners(rows[:2], rows, torch.tensor([4, 5]), lambda x, s: x, g).shape == (2, 6)
    pixels = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    assert mix_with_partners(pixels[:2], pixels, torch.tensor([4, 5]), lambda x, s: x, g).dtype == torch.uint8

    class Tokens(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.embed, self.mix = torch.nn.Embedding(50, 16), torch.nn.Linear(width, 8)
            self.head = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.head(self.mix(self.embed(x)).mean(1))  # a shape bug when width != 16

    ids = torch.randint(0, 50, (N, 12))
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
    with pytest.raises(RuntimeError) as shape_bug:
        method.scores(Tokens(8), ids)
    assert not isinstance(shape_bug.value, coreaug.UsageError)
    assert "in forward" in "".join(traceback.format_exception(shape_bug.value))  # the user's own line
    with pytest.raises(coreaug.UsageError, match=r"cannot take the float32 inputs .* e\.g\. lambda x: x\.long\(\) "):
        method.scores(Tokens(16), ids.float())
    assert method.scores(Tokens(16), ids)["estimates"].shape[0] == N


def test_labels_of_several_classes_a_row_are_not_told_to_take_argmax():
    """Multi-hot targets were told "one-hot rows? class ids are labels.argmax(1)": 57 of 100 rows became
    class 0, 26 of them with no label at all (explore22-modalities #3)."""
    import pytest

    multi = (torch.rand(100, 4, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    with pytest.raises(coreaug.UsageError, match=r"rows that mark several classes \(or none\) have no class id"):
        coreaug.CoresetAugmentation(multi, strategy="coreset")
    with pytest.raises(coreaug.UsageError, match=r"got shape \(48, 0\); rows of no class"):  # (a raw ValueError)
        coreaug.select_random(torch.zeros(N, 0), 0.5)
    for rows in (torch.eye(4)[LABELS], torch.softmax(torch.randn(N, 4), 1)):  # one-hot, soft: argmax is the class
        with pytest.raises(coreaug.UsageError, match=r"one-hot or soft rows\? class ids are labels\.argmax\(1\)"):
            coreaug.select_random(rows, 0.5)


def test_a_shuffled_dataset_with_column_labels_is_refused_when_wrapped():
    """`TensorDataset(x[perm], y[perm][:, None])`, labels of shape (1,): wrapped without a word, the weights
    and copies trained on the wrong examples (scores refused it) (explore22-modalities #4)."""
    import numpy as np
    import pytest

    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.25)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    columns = LABELS[order][:, None]
    for shuffled in (torch.utils.data.TensorDataset(FLOATS[order], columns),
                     [(image, label) for image, label in zip(FLOATS[order], columns.numpy())]):  # (1,) arrays
        with pytest.raises(coreaug.UsageError, match=r"item 0's label is \d but labels\[0\] is 0: wrap the "
                                                     r"training.*stratify other targets: give the items float targets"):
            method.dataset(shuffled)
    ordered = [(image, np.array([label])) for image, label in zip(FLOATS, LABELS.tolist())]
    assert len(method.dataset(ordered)) == 2 * N
    # one pool (labels all 0, the docs' way for regression): integer targets are no class, not checked (review33 #3)
    pool = coreaug.CoresetAugmentation(torch.zeros(N, dtype=torch.long), strategy="random", fraction=0.25)
    targets = torch.randint(0, 9, (N, 1), generator=torch.Generator().manual_seed(2))  # counts, say
    counts = torch.utils.data.TensorDataset(FLOATS, targets)
    assert len(pool.dataset(counts)) == 2 * N


def test_sequences_of_their_own_lengths_are_told_how_to_be_scored():
    """Variable-length token sequences were told to "give its transform a fixed size (T.Resize and
    T.CenterCrop, say)" (explore22-modalities #7)."""
    import pytest

    lengths = torch.randint(3, 20, (N,), generator=torch.Generator().manual_seed(0))
    items = [(torch.randint(1, 50, (int(length),)), int(label)) for length, label in zip(lengths, LABELS)]
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
    with pytest.raises(coreaug.UsageError, match=r"items of different lengths \(\d+ and \d+ in one batch\): pad them "
                                                 r"to one length \(torch.nn.utils.rnn.pad_sequence\)"):
        method.scores(model, items)
    frames = [(torch.rand(int(length), 6), label) for length, (_, label) in zip(lengths, items)]  # (T, D) each
    with pytest.raises(coreaug.UsageError, match=r"items of different lengths \(\d+x6 and \d+x6 in one batch\)"):
        method.scores(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4)), frames)
    greys = [(torch.rand(8 + k % 2, 8 + k % 2), label) for k, (_, label) in enumerate(items)]  # (H, W): images
    with pytest.raises(coreaug.UsageError, match=r"images of different sizes \(8x8 and 9x9 in one batch\)"):
        method.scores(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4)), greys)  # (review34 #2)


def test_a_torch_func_loop_of_a_batch_norm_model_is_warned_about_and_the_warning_names_statistics():
    """A torch.func loop's forward in training mode moves the module's BatchNorm statistics: with buffers in the
    mark the warning went silent for any such model (review33 #2); where only the statistics were to change
    (AdaBN before fine-tuning), the warning says all is well (explore22-finetune #8)."""
    import pytest
    from torch.func import functional_call

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(144, 4))
    params = {name: value.detach() + 0.1 for name, value in model.named_parameters()}  # the loop's trained copy
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.25)
    method.start_epoch(0, model, FLOATS)
    with torch.no_grad():
        functional_call(model.train(), params, (FLOATS,))  # a training-mode forward: the module's statistics move
    with pytest.warns(UserWarning, match=r"parameters are those it scored at epoch 0.*\(where only its BatchNorm "
                                         r"statistics were to change, all is well\)"):
        method.start_epoch(1, model, FLOATS)


class _FrozenFeatures(torch.nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def frozen_features(in_channels, num_classes):
    """The usual fine-tuning recipe: the backbone frozen, its BatchNorm in eval mode."""
    model = _FrozenFeatures(in_channels, num_classes)
    model.features.requires_grad_(False).eval()
    return model


def test_a_backbone_a_factory_froze_in_eval_mode_stays_frozen_in_training(tmp_path, monkeypatch):
    """`coreaug train` called model.train() every epoch: a factory's frozen BatchNorm estimated its statistics
    again on the new data (running mean moved 0.029), only a train() override kept it (explore22-finetune #2)."""
    import dataclasses
    import sys
    import warnings

    import pytest

    monkeypatch.setitem(sys.modules, "frozen_r22", sys.modules[__name__])
    config = coreaug.TrainConfig(dataset="digits", model="frozen_r22:frozen_features", epochs=2, train_limit=64,
                                 test_limit=32, batch_size=16, quiet=True, strategy="coreset", augment="maxloss")
    result = coreaug.train(config)
    norm = result.model.features[1]
    assert torch.equal(norm.running_mean, torch.zeros(4)) and torch.equal(norm.running_var, torch.ones(4))
    assert int(norm.num_batches_tracked) == 0 and result.history[-1]["train_loss"] > 0
    given = dataclasses.replace(config, model=None)
    with pytest.warns(UserWarning, match="trained by an earlier run"):  # (returned in eval mode as a whole)
        coreaug.train(given, model=result.model)  # trained on, its frozen part still frozen (review33 #2)
    assert int(norm.num_batches_tracked) == 0
    # a backbone a loader left in eval mode, its parameters trainable (Hugging Face's from_pretrained): trained as
    # model.train() makes it, BatchNorm statistics included (review33 #1: 69.6% -> 9.2% when it was kept in eval)
    loaded = frozen_features(1, 10)
    loaded.features.requires_grad_(True)
    coreaug.train(given, model=loaded)
    assert int(loaded.features[1].num_batches_tracked) > 0
    # a BatchNorm frozen on its own under a training parent (mmdetection's norm_eval, or one without parameters)
    # stays so (review34 #4)
    for affine in (True, False):
        own = frozen_features(1, 10)
        own.features[1] = torch.nn.BatchNorm2d(4, affine=affine).eval()
        own.features.requires_grad_(True).train()
        own.features[1].eval()
        coreaug.train(given, model=own)
        assert int(own.features[1].num_batches_tracked) == 0
    # a frozen backbone left in training mode trains its statistics, in the first run and in a run on the model
    # it returned (in eval mode as a whole) alike (review34 #1)
    left = frozen_features(1, 10).train()
    for _ in range(2):
        before = int(left.features[1].num_batches_tracked)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (trained by an earlier run)
            left = coreaug.train(given, model=left).model
        assert int(left.features[1].num_batches_tracked) > before


def test_a_runs_stale_traceback_goes_when_it_is_tried_again(tmp_path, monkeypatch):
    """A crash's error.txt stayed beside a later try's other failure (a damaged checkpoint), blaming the
    old crash (review32 #3)."""
    import pytest

    from coreaug.bench import grid

    run = grid.plan_grid(coreaug.TrainConfig(dataset="synthetic", train_limit=32, test_limit=16, epochs=1, quiet=True),
                         str(tmp_path / "grid"), [0.5], ["random"], [], 1)[0]
    os.makedirs(run.folder)
    (tmp_path / "grid" / "runs" / run.name / "error.txt").write_text("Traceback: an earlier try's crash\n")

    def refused(config):
        raise coreaug.UsageError(f"{run.folder}/checkpoint.pt is truncated or corrupt")

    monkeypatch.setattr(grid, "train", refused)
    with pytest.raises(coreaug.UsageError, match="truncated"):
        grid.train_grid_run(run)
    assert not (tmp_path / "grid" / "runs" / run.name / "error.txt").exists()


def test_a_coreaug_model_file_is_normalised_as_it_records_with_norm_pretrained(tmp_path):
    """--pretrained with coreaug's own model.pt normalised with ImageNet's mean and std, not the file's:
    83.0% of the model's own test images right became 46.4% (a frozen BatchNorm), without a word; on
    1-channel data it was refused with --norm dataset as the only way (explore22-finetune #1)."""
    import types
    import warnings

    import pytest

    tiny = dict(epochs=1, train_limit=64, test_limit=32, batch_size=32, quiet=True)
    first = coreaug.train(coreaug.TrainConfig(dataset="digits", out=str(tmp_path / "digits"), **tiny))
    recorded = torch.load(tmp_path / "digits" / "model.pt", weights_only=False)["mean"]
    with pytest.raises(coreaug.UsageError, match=r"has 1 channel\(s\); pass --norm pretrained \(the file's own\) or "):
        coreaug.train(coreaug.TrainConfig(dataset="digits", pretrained=str(tmp_path / "digits" / "model.pt"), **tiny))
    again = coreaug.train(coreaug.TrainConfig(dataset="digits", pretrained=str(tmp_path / "digits" / "model.pt"),
                                              norm="pretrained", out=str(tmp_path / "again"), **tiny))
    assert torch.load(tmp_path / "again" / "model.pt", weights_only=False)["mean"] == recorded
    assert again.config.norm == "pretrained" and first.config.norm == "dataset"
    coreaug.train(coreaug.TrainConfig(dataset="synthetic", out=str(tmp_path / "rgb"), **tiny))
    with pytest.warns(UserWarning, match=r"rgb/model.pt records the mean and std its model was trained on .*; pass "
                                         r"--norm pretrained to use the file's"):
        coreaug.train(coreaug.TrainConfig(dataset="synthetic", pretrained=str(tmp_path / "rgb" / "model.pt"), **tiny))
    with pytest.raises(coreaug.UsageError, match="norm 'pretrained' reads the mean and std the pretrained file records"):
        coreaug.TrainConfig(dataset="digits", norm="pretrained").resolved()

    # review33: a resumed run reads what its checkpoint records (the file may have moved or changed since), and is
    # given no advice it cannot take; a file in torch's legacy format records its values too
    from coreaug.models.pretrained import recorded_normalisation
    from coreaug.training.inputs import _norm, load_run_data

    recorded = torch.load(tmp_path / "again" / "checkpoint.pt", weights_only=False)["normalisation"]
    assert recorded[0] == torch.load(tmp_path / "digits" / "model.pt", weights_only=False)["mean"]
    moved = types.SimpleNamespace(norm="pretrained", pretrained=str(tmp_path / "gone.pt"))  # (what _norm reads)
    data = load_run_data(coreaug.TrainConfig(dataset="digits", **tiny).resolved(), torch.device("cpu"))
    assert _norm(moved, data, {"normalisation": recorded}) == recorded
    with pytest.raises(coreaug.UsageError, match=r"gone.pt does not exist or is not a file \(--norm pretrained"):
        _norm(moved, data)
    rgb = load_run_data(coreaug.TrainConfig(dataset="synthetic", **tiny).resolved(), torch.device("cpu"))
    resumed = coreaug.TrainConfig(dataset="synthetic", pretrained=str(tmp_path / "rgb" / "model.pt"), **tiny).resolved()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _norm(resumed, rgb, {"normalisation": recorded})
    weights = torch.load(tmp_path / "rgb" / "model.pt", weights_only=False)
    torch.save(weights, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert recorded_normalisation(str(tmp_path / "legacy.pt")) == (weights["mean"], weights["std"])


def test_pretrained_files_of_wrapped_models_load_and_a_classifier_named_otherwise_is_named(tmp_path):
    """A compiled model's state dict (keys "_orig_mod.") and a LightningModule's ("model.") were refused with
    "build the model the checkpoint was saved from", as was a classifier registered before the backbone's last
    nn.Linear, whose fix is gradient_layer (explore22-finetune #6, #7)."""
    import pytest

    from coreaug.models import create_model, load_pretrained

    source = create_model("cnn", in_channels=1, num_classes=5)
    weights = source.state_dict()
    for name, saved in (("compiled", {f"_orig_mod.{k}": v for k, v in weights.items()}),
                        ("lightning", {"state_dict": {f"model.{k}": v for k, v in weights.items()}}),
                        ("lightning-compiled", {"state_dict": {f"model._orig_mod.{k}": v
                                                               for k, v in weights.items()}})):
        torch.save(saved, tmp_path / f"{name}.pt")
        model = create_model("cnn", in_channels=1, num_classes=5)
        report = load_pretrained(model, tmp_path / f"{name}.pt")
        assert not report.classifier_reset and all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
        assert str(report).endswith(", its classifier's included")
        assert ("prefix 'model.' left out" in str(report)) == name.startswith("lightning")

    class HeadFirst(torch.nn.Module):
        def __init__(self, classes):
            super().__init__()
            self.head = torch.nn.Linear(6, classes)
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 6), torch.nn.ReLU())

        def forward(self, x):
            return self.head(self.body(x))

    only = torch.nn.Module()
    only.module = torch.nn.Linear(3, 2)  # a model whose only child is named as DDP's wrapper is (review34 #3)
    torch.save({"state_dict": {f"model.{k}": v for k, v in only.state_dict().items()}}, tmp_path / "only.pt")
    assert "prefix 'model.' left out" in str(load_pretrained(only, tmp_path / "only.pt"))

    torch.save(HeadFirst(5).state_dict(), tmp_path / "head_first.pt")
    with pytest.raises(coreaug.UsageError, match=r"its classifier, of another number of classes, is 'head', not the "
                                                 r"model's last nn.Linear: name it, model.gradient_layer = 'head'"):
        load_pretrained(HeadFirst(4), tmp_path / "head_first.pt")
    named = HeadFirst(4)
    named.gradient_layer = "head"
    assert load_pretrained(named, tmp_path / "head_first.pt").classifier_reset


def test_one_selection_from_a_freshly_initialised_classifier_is_warned_about(tmp_path):
    """--pretrained turned the one-selection warning off even where the file's classifier was of another
    class count, so the one selection read a random classifier; a factory loading weights was told its model
    was "untrained" (explore22-finetune #3)."""
    import warnings

    import pytest

    from coreaug.models import create_model

    torch.save(create_model("cnn", in_channels=1, num_classes=5).state_dict(), tmp_path / "five.pt")
    torch.save(create_model("cnn", in_channels=1, num_classes=10).state_dict(), tmp_path / "ten.pt")
    once = dict(dataset="digits", epochs=2, select_every=5, strategy="maxloss", train_limit=64, test_limit=32,
                quiet=True, norm="dataset")
    with pytest.warns(UserWarning, match=r"selects once, at epoch 0, from the outputs of the model as it starts, "
                                         r"whose classifier is freshly initialised \(.*five.pt has another\)"):
        coreaug.train(coreaug.TrainConfig(**once, pretrained=str(tmp_path / "five.pt")))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*selects once")
        coreaug.train(coreaug.TrainConfig(**once, pretrained=str(tmp_path / "ten.pt")))  # its classifier too
    backbone = {k: v for k, v in torch.load(tmp_path / "ten.pt").items() if not k.startswith("classifier.")}
    torch.save(backbone, tmp_path / "backbone.pt")
    with pytest.warns(UserWarning, match=r"whose classifier is freshly initialised \(.*backbone.pt has none\)"):
        coreaug.train(coreaug.TrainConfig(**once, pretrained=str(tmp_path / "backbone.pt")))
