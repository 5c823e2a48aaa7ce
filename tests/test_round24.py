"""Round 24: fixes from the review helpers and note57's left-alone items."""
import contextlib

import pytest

import coreaug
from coreaug.errors import chain


def _raised(make):
    try:
        make()
    except BaseException as exc:  # noqa: B902 - the test's own chains
        return exc
    raise AssertionError("nothing raised")


def test_an_errors_chain_follows_causes_then_contexts_once_each_up_to_the_one_being_handled():
    def inner():
        raise OSError(28, "No space left on device")

    def middle():
        try:
            inner()
        except OSError as exc:
            raise RuntimeError("zip writer failed") from exc

    def outer():
        try:
            middle()
        except RuntimeError:
            raise ValueError("while saving")  # its __context__, no __cause__

    error = _raised(outer)
    assert [type(e) for e in chain(error)] == [ValueError, RuntimeError, OSError]
    assert [type(e) for e in chain(error, handled=error.__context__)] == [ValueError]

    def hidden():
        try:
            inner()
        except OSError:
            raise KeyError("x") from None

    hidden_error = _raised(hidden)
    assert [type(e) for e in chain(hidden_error)] == [KeyError, OSError]
    assert [type(e) for e in chain(hidden_error, suppressed=True)] == [KeyError]

    looped = ValueError("a")
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped
    assert list(chain(looped)) == [looped, other]


def _schedule_seen(monkeypatch, compile):
    """The learning rate each training step of a 2-epoch run with a 1-epoch warm-up stepped with, by
    epoch, and the run's config: eager, the rate torch's SGD reads from its group at `step()`; compiled
    (dynamo without inductor's code generation), the rate handed to the compiled step."""
    import torch

    from coreaug.training import compiled_step

    seen, epochs = [], []
    if compile:
        monkeypatch.setattr(compiled_step, "compile_unit",
                            lambda fn, *, device, fullgraph, mode="auto": torch.compile(fn, fullgraph=fullgraph,
                                                                                         backend="eager"))
        real_call = compiled_step.CompiledStep.__call__

        def call(self, images, labels, weights, key, lr, numbers=None):
            seen.append(lr)
            return real_call(self, images, labels, weights, key, lr, numbers)
        monkeypatch.setattr(compiled_step.CompiledStep, "__call__", call)
    else:
        real_step = torch.optim.SGD.step

        def step(self, *args, **kwargs):
            seen.append(self.param_groups[0]["lr"])
            return real_step(self, *args, **kwargs)
        monkeypatch.setattr(torch.optim.SGD, "step", step)
    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=16, batch_size=16, epochs=2, quiet=True,
                                 strategy="random", subset=0.25, warmup_epochs=1, lr=0.1, compile=compile)
    coreaug.train(config, on_epoch=lambda row: epochs.append(len(seen)))
    return [seen[:epochs[0]], seen[epochs[0]:epochs[1]]], config


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_each_step_trains_at_its_own_point_of_the_schedule(monkeypatch, compile):
    """explore24-mutation #1: the rate set once an epoch (a warm-up's whole first epoch at 0) passed every test."""
    from coreaug.training.schedule import learning_rate
    from test_compile_support import needs_compile

    if compile and needs_compile.args[0]:
        pytest.skip(needs_compile.kwargs["reason"])
    by_epoch, config = _schedule_seen(monkeypatch, compile)
    assert all(len(rates) > 2 for rates in by_epoch)
    for epoch, rates in enumerate(by_epoch):
        assert rates == [pytest.approx(learning_rate(config, epoch + step / len(rates))) for step in range(len(rates))]
    assert by_epoch[0][0] == 0 and by_epoch[0] == sorted(set(by_epoch[0]))  # the warm-up rises step by step
    assert by_epoch[1] == sorted(set(by_epoch[1]), reverse=True) and by_epoch[1][0] == pytest.approx(0.1)


def test_digits_are_read_from_scikit_learns_file_without_importing_it(monkeypatch):
    """explore24-hostprofile #1: importing scikit-learn (SciPy, pandas) to read its 60 KB CSV took 1.3-1.5 s
    of every digits run's start-up; the same arrays, and load_digits where the file is not found."""
    import subprocess
    import sys

    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    from coreaug.data import digits

    code = ("import sys; from coreaug.data.digits import load_sklearn_digits; data = load_sklearn_digits(); "
            "print(len(data.train_labels) + len(data.test_labels), 'sklearn' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["1797", "False"]
    reference = load_digits()
    pixels, labels = digits._digits_table()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)
    read = digits.load_sklearn_digits()
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    fallback = digits.load_sklearn_digits()
    assert torch.equal(read.train_images, fallback.train_images) and torch.equal(read.test_labels, fallback.test_labels)


# explore24-mutation: the draws and magnitudes training uses, pinned where no test held them.

def _keyed(n):
    import torch

    from coreaug.augment.sampling import RandomSource

    return RandomSource(RandomSource.image_keys(torch.arange(n), 0, 0))


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment"])
def test_keyed_draws_give_every_op_and_bin_its_share(name):
    """#1b: with the trainer's per-image keys, RandAugment and TrivialAugment could never draw their last
    op (equalize) and no test noticed (the torch.Generator branch was checked)."""
    import torch

    policy, n = coreaug.create_policy(name), 20_000
    kind, bins, sign = policy._draws(_keyed(n), 2, n, torch.device("cpu"))
    ops = torch.bincount(kind.flatten(), minlength=len(policy._ops.names)).double() / (2 * n)
    assert len(ops) == 14 and (ops - 1 / 14).abs().max() < 0.01, ops
    assert abs(sign.double().mean() - 0.5) < 0.01
    if name == "trivialaugment":
        shares = torch.bincount(bins.flatten(), minlength=31).double() / (2 * n)
        assert len(shares) == 31 and (shares - 1 / 31).abs().max() < 0.006, shares


def test_keyed_autoaugment_draws_every_sub_policy_and_signs_apart_from_the_coin(monkeypatch):
    """#1c: the last sub-policy never drawn, or signs read from the hashes of the apply-coin, passed."""
    import torch

    from coreaug.augment import autoaugment

    drawn, seen, real = [], {}, autoaugment.integers_from
    monkeypatch.setattr(autoaugment, "integers_from", lambda *a: drawn.append(real(*a)) or drawn[-1])
    policy, n = autoaugment.AutoAugment(), 20_000
    monkeypatch.setattr(policy._ops, "apply_layers", lambda x, kind, bins, sign, *a, **k: seen.update(
        kind=kind, sign=sign) or x)
    policy(torch.zeros(n, 3, 4, 4, dtype=torch.uint8), _keyed(n))
    shares = torch.bincount(drawn[0], minlength=25).double() / n
    assert len(shares) == 25 and (shares - 1 / 25).abs().max() < 0.01, shares
    applied = seen["kind"] != policy._identity
    positive = seen["sign"] > 0
    assert abs(positive[applied].double().mean() - 0.5) < 0.02  # 0.28 for the rotations when tied to the coin
    assert abs(positive[~applied].double().mean() - 0.5) < 0.02


def _table(policy, name, size=32):
    ops = policy._ops
    return ops.ranges[ops.names.index(name)](ops.num_bins, size, size, 255.0).tolist()


def test_magnitude_ranges_are_torchvisions():
    """#1d: RandAugment rotating up to 27 degrees, shearing to 0.33 or posterizing by floor passed every test.
    The values of torchvision's `_augmentation_space` (torchvision 0.2x), written out."""
    randaugment, trivial = coreaug.create_policy("randaugment"), coreaug.create_policy("trivialaugment")
    auto = coreaug.create_policy("autoaugment")
    for policy, degrees, shear, enhance in ((randaugment, 30.0, 0.3, 0.9), (trivial, 135.0, 0.99, 0.99),
                                            (auto, 30.0, 0.3, 0.9)):
        last = policy._ops.num_bins - 1
        assert _table(policy, "rotate")[last] == pytest.approx(degrees) and _table(policy, "rotate")[0] == 0
        for name in ("shear_x", "shear_y"):
            assert _table(policy, name)[last] == pytest.approx(shear)
        for name in ("brightness", "color", "contrast", "sharpness"):
            assert _table(policy, name)[last] == pytest.approx(enhance)
        assert _table(policy, "solarize")[0] == 255 and _table(policy, "solarize")[last] == 0
    assert _table(randaugment, "translate_x", 331)[30] == 150 and _table(randaugment, "translate_y", 64)[30] == 29
    assert _table(trivial, "translate_x", 224)[30] == 32 and _table(trivial, "translate_x", 28)[30] == 32
    assert _table(randaugment, "posterize") == [8] * 4 + [7] * 8 + [6] * 7 + [5] * 8 + [4] * 4
    assert _table(trivial, "posterize") == [8] * 3 + [7] * 5 + [6] * 5 + [5] * 5 + [4] * 5 + [3] * 5 + [2] * 3
    assert _table(auto, "posterize") == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]


@pytest.mark.parametrize("keyed", [False, True], ids=["generator", "keyed"])
def test_weak_flips_half_the_images(keyed):
    """#15: weak flipping 45% of the images passed every test."""
    import torch

    n = 20_000
    images = torch.arange(4, dtype=torch.uint8).repeat(n, 1, 4, 1)  # columns 0, 1, 2, 3: a flip reverses them
    source = _keyed(n) if keyed else torch.Generator().manual_seed(0)
    out = coreaug.create_policy("weak", padding=0)(images, source)
    flipped = (out[:, 0, 0, 0] == 3).double().mean()
    assert ((out[:, 0, 0, 0] == 3) | (out[:, 0, 0, 0] == 0)).all() and abs(flipped - 0.5) < 0.015


# explore24-mutation: selection behaviour the docs promise, pinned.

def test_a_random_rules_selections_are_drawn_anew_at_each_epoch_and_the_same_by_seed():
    """#2: every selection of a run being one fixed "random" subset (the epoch left out of its seed) passed."""
    import torch

    labels = torch.arange(1000) % 10

    def picks(epoch):
        method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3, seed=4)
        return set(method.select(epoch).indices.tolist())

    first, second = picks(0), picks(1)
    assert first == picks(0) and len(first) == 300
    assert len(first & second) < 150  # about 90 by chance; 300 when both epochs draw alike


def test_tied_losses_go_to_the_lowest_indices_of_each_class():
    """#10: class members ordered by numpy's unstable quicksort (another order per numpy build) passed."""
    import numpy as np

    from coreaug.selection.baselines import select_maxloss

    labels = np.arange(2000) % 4
    picked = np.sort(select_maxloss(np.ones(2000), labels, 0.01).indices)
    assert picked.tolist() == sorted(range(20))  # 5 a class, the first of each


def test_crusts_default_warm_up_is_its_share_of_the_epochs_rounded():
    """#11: truncated (3 epochs: none) where the docs say rounded passed."""
    from coreaug.training.config import default_selection_warmup

    assert [default_selection_warmup("crust", epochs) for epochs in (3, 8, 12, 13, 18)] == [1, 2, 2, 3, 4]
    assert default_selection_warmup("coreset", 18) == 0


def test_duplicate_picks_each_count_themselves():
    """#12: with exact duplicates selected, the duplicates after the first got weight 0 unseen."""
    import numpy as np

    from coreaug.selection.weights import cluster_sizes

    features = np.repeat(np.eye(5, 3, dtype=np.float32), 4, axis=0)  # 5 distinct points (two equal rows), 4 times
    selected = np.array([0, 1, 2, 3, 4, 8, 12, 16])
    sizes = cluster_sizes(features, selected)
    assert sizes.sum() == 20 and (sizes >= 1).all(), sizes


def test_the_low_loss_rules_chance_counts_the_classes_present_not_their_ids():
    """#13: ln(max label + 1) in place of ln(classes present) passed; labels 0 and 9 are two classes."""
    import numpy as np

    from coreaug.selection.rules import low_loss_mask

    losses = np.tile(np.linspace(0.2, 2.0, 10), 2)
    labels = np.repeat([0, 9], 10)
    keep = low_loss_mask(losses, labels, 0.1)
    assert keep.tolist() == (losses <= np.log(2)).tolist()  # above chance (ln 2) is cut: 6 of 20 kept


def test_selection_diagnostics_weigh_the_flipped_share_and_count_overlap_among_the_picks():
    """#8: the weighted flipped share computed unweighted, or the overlap over all examples, passed."""
    import numpy as np

    from coreaug.training.diagnostics import selection_diagnostics

    noisy = np.zeros(100, dtype=bool)
    noisy[[0, 1]] = True
    figures = selection_diagnostics([0, 1, 2, 3], [3, 0.5, 0.25, 0.25], 100, previous=[0, 1, 50], noisy=noisy)
    assert figures["selection_noisy_fraction"] == 0.5
    assert figures["selection_noisy_weighted"] == pytest.approx(3.5 / 4)
    assert figures["selection_overlap"] == 0.5


def test_subset_modes_items_weigh_only_the_selected_originals():
    """#17: unselected originals handed weight 1 (not 0) by the dataset face in subset mode passed."""
    import torch

    method = coreaug.CoresetAugmentation(torch.arange(100) % 10, strategy="random", fraction=0.3, mode="subset")
    picked = method.select(0).indices
    assert (method.original_weights > 0).nonzero().flatten().tolist() == sorted(picked.tolist())


# explore24-mutation: bench's and report's tables, on runs whose best epoch is not their last.

def test_benchs_table_gives_best_accuracy_sample_spreads_and_seconds_spread():
    """#6, #7, #9: best accuracy shown as the final one, the population std (n) for the sample's (n - 1), and
    the seconds' spread of the selection seconds all passed: every fixture's best epoch was its last."""
    from coreaug.bench.tables import add_timings, group_rows, markdown_table
    from test_bench_timing import row

    rows = [row("full", None, 0, [0.7, 0.9, 0.8], 40.0), row("full", None, 1, [0.75, 0.85, 0.8], 50.0),
            row("coreset", 0.1, 0, [0.8, 0.95, 0.86], 10.0, 6.0), row("coreset", 0.1, 1, [0.8, 0.92, 0.90], 12.0, 6.0)]
    target, rule = add_timings(rows)
    coreset = next(g for g in group_rows(rows) if g["strategy"] == "coreset")
    assert coreset["accuracy"] == pytest.approx(0.88) and coreset["best_accuracy"] == pytest.approx(0.935)
    assert coreset["accuracy_std"] == pytest.approx(0.02 * 2 ** 0.5)  # sample std of 0.86 and 0.90
    assert coreset["best_accuracy_std"] == pytest.approx(0.015 * 2 ** 0.5)
    assert coreset["seconds"] == 33 and coreset["seconds_std"] == pytest.approx(3 * 2 ** 0.5)
    line = next(text for text in markdown_table(group_rows(rows), target, rule).splitlines()
                if text.startswith("| coreset"))
    assert "| 88.00% ± 2.83 | 93.50% ± 2.12 | 33.0 ± 4.2 |" in line


def test_a_runs_selection_share_is_of_its_own_seconds(tmp_path):
    """#9: results.csv's per-run selection_share divided by the epochs passed."""
    import collections

    from coreaug.bench.tables import read_run
    from test_report import write_run

    import json

    folder = write_run(tmp_path, "coreset", 0, [0.5, 0.6, 0.55], subset=0.1, epoch_seconds=10.0, selection=6.0)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps(dict(summary, eval_seconds=1.0, n_trained=90, n_augmented=9)))
    run = collections.namedtuple("Run", "folder name strategy subset seed")(str(folder), "c", "coreset", 0.1, 0)
    figures = read_run(run)
    assert figures["selection_share"] == pytest.approx(0.2) and figures["best_accuracy"] == 0.6


def test_reports_best_accuracy_is_each_runs_best_epoch(tmp_path):
    """#6 (D16): `coreaug report`'s best accuracy as the final one passed."""
    import csv

    from coreaug.bench import write_report
    from test_report import write_run

    grid = tmp_path / "grid"
    for seed, (best, final) in enumerate([(0.50, 0.44), (0.52, 0.46)]):
        write_run(grid, "random", seed, [0.3, best, final], subset=0.1)
    result = write_report(grid, out=tmp_path / "report")
    with open(result.files["cells_csv"], newline="") as f:
        (cell,) = list(csv.DictReader(f))
    assert float(cell["best_accuracy_percent"]) == pytest.approx(51.0)
    assert float(cell["final_accuracy_percent"]) == pytest.approx(45.0)


def test_the_compiled_steps_loss_weighs_each_row(monkeypatch):
    """#2: the compiled step's loss unweighted (the coreset's weights dropped under --compile) passed; the eager
    step's twin was caught. One step with weights w moves the parameters as eager SGD on mean(w * losses)."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from coreaug.training import compiled_step
    from test_compile_support import needs_compile

    if needs_compile.args[0]:
        pytest.skip(needs_compile.kwargs["reason"])
    monkeypatch.setattr(compiled_step, "compile_unit", lambda fn, *, device, fullgraph, mode="auto": torch.compile(
        fn, fullgraph=fullgraph, backend="eager"))
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 3, (8,))
    weights = torch.tensor([0.0, 0.0, 3.0, 0.5, 1.0, 2.0, 0.0, 1.5])
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    trained, reference = (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)) for _ in range(2))
    for model in (trained, reference):
        model.load_state_dict(start.state_dict())
    step = compiled_step.CompiledStep(trained, torch.optim.SGD(trained.parameters(), lr=0.1, foreach=True),
                                      lambda images, source: images, None, lambda x: x.float() / 255,
                                      contextlib.nullcontext, None, label_smoothing=0.0, copies_per_step=0,
                                      device="cpu")
    step.new_epoch()
    step(images, labels, weights, torch.tensor(7), 0.1)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    (F.cross_entropy(reference(images.float() / 255), labels, reduction="none") * weights).mean().backward()
    optimizer.step()
    for got, want in zip(trained.parameters(), reference.parameters()):
        assert torch.allclose(got, want, atol=1e-6)


def test_a_runs_best_accuracy_is_its_best_evaluation_not_its_last():
    """#3: TrainResult's (and summary.json's) best accuracy as the final one passed."""
    import torch

    from coreaug.training.trainer import _result

    history = [{"test_accuracy": a, "epoch_seconds": 1.0, "selection_seconds": 0.0} for a in (0.4, 0.7, None, 0.6)]
    distributed = type("Single", (), {"rank": 0, "world_size": 1})()
    result = _result(coreaug.TrainConfig(dataset="digits"), history, torch.nn.Linear(1, 1), distributed)
    assert (result.final_test_accuracy, result.best_test_accuracy) == (0.6, 0.7)


def test_the_loss_of_the_rest_leaves_the_picks_out():
    """#10 (G8): the mean loss of the examples not picked, computed over all, passed."""
    import numpy as np

    from coreaug.training.diagnostics import selection_diagnostics

    figures = selection_diagnostics([0, 1], [1.0, 1.0], 4, losses=np.array([3.0, 5.0, 1.0, 2.0]))
    assert (figures["selection_loss_selected"], figures["selection_loss_rest"]) == (4.0, 1.5)


def test_a_float32_fraction_is_read_as_its_decimal():
    """#16: torch.tensor(0.29) read as 0.28999999 (a budget of 14 of 50, not 15) passed."""
    import numpy as np
    import torch

    from coreaug.selection.baselines import select_random

    assert len(select_random(np.zeros(50, dtype=np.int64), torch.tensor(0.29)).indices) == 15
    assert len(select_random(np.zeros(50, dtype=np.int64), np.float32(0.29)).indices) == 15


def test_shards_are_equal_whatever_the_plans_length():
    """#22: a 12-entry plan over 5 processes sharded 3, 3, 2, 2, 2 (ranks taking different step counts) passed."""
    import torch

    from coreaug.training.plan import EpochPlan

    plan = EpochPlan(torch.arange(12), torch.ones(12), torch.zeros(12, dtype=torch.bool), None, None)
    shards = [plan.shard(rank, 5) for rank in range(5)]
    assert [len(shard) for shard in shards] == [2] * 5
    assert len(set(torch.cat([shard.indices for shard in shards]).tolist())) == 10


# explore24-loaders: the own loop's dataset face under DataLoaders.

def _face(strategy="coreset", **options):
    import torch

    torch.manual_seed(0)
    images, labels = torch.rand(200, 1, 8, 8), torch.randint(0, 4, (200,))
    train = torch.utils.data.TensorDataset(images, labels)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    method = coreaug.CoresetAugmentation(labels, strategy=strategy, fraction=0.2, **options)
    return method, train, model


def test_a_loop_that_starts_the_epoch_once_is_told_at_its_second_pass():
    """#1: start_epoch outside the epoch loop trained epoch 0's plan (one selection, of the untrained model) every
    epoch without a word."""
    import warnings

    import torch

    method, train, model = _face()
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=32, sampler=method.sampler())
    method.start_epoch(0, model, train)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(loader)
        assert not caught  # one pass a plan: as it should be
        for _ in range(2):
            list(loader)
    (warning,) = caught
    assert str(warning.message).startswith(
        "the DataLoader begins another pass over epoch 0's plan, which a pass has already trained: call "
        "method.start_epoch(epoch, model, data) at the start of every epoch (it draws each epoch's plan, and every "
        "select_every epochs a new selection), before the DataLoader's iterator is made")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in (1, 2):
            method.start_epoch(epoch, model, train)
            list(loader)
    assert not [w for w in caught if "another pass" in str(w.message)]  # (the model is untrained: said)


@contextlib.contextmanager
def _in_the_first_worker(monkeypatch):
    """What the first worker of a persistent DataLoader sees, in this process; yields the warnings it gives."""
    import warnings

    import torch

    with monkeypatch.context() as patched:
        patched.setattr(torch.utils.data, "get_worker_info", lambda: type("Worker", (), {"id": 0})())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught


def test_persistent_workers_are_told_at_their_second_epoch_not_at_the_next_selection(monkeypatch):
    """#2: with select_every=5 a persistent worker was refused at epoch 5 (hours into a long run): its first
    worker warns at the second epoch, a run that selects no more trains on (review37 #1), and full keeps its
    weights and its workers without a word."""
    import torch

    method, train, model = _face(select_every=5)
    dataset, sampler = method.dataset(train), method.sampler()
    with _in_the_first_worker(monkeypatch) as caught:
        for epoch in range(3):
            method.start_epoch(epoch, model, train)
            for item in sampler:
                dataset[item]
        assert [str(w.message) for w in caught if "persistent" in str(w.message)] == [
            "this DataLoader worker serves a second epoch with the method's state of its first (persistent_workers, "
            "or a loader that keeps its workers): at the next selection (every 5 epochs) it would hand out the "
            "weights of an earlier one, and is refused then: leave persistent_workers off"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, sampler=sampler, num_workers=1,
                                         persistent_workers=True)
    for epoch in range(3):
        method.start_epoch(epoch, model, train)
        assert sum(len(batch[0]) for batch in loader) == 240
    method.start_epoch(5, model, train)
    with pytest.raises(coreaug.UsageError, match="(?s)earlier selection.*leave persistent_workers off"):
        list(loader)
    del loader
    method, train, _ = _face(strategy="full")
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=100, sampler=method.sampler(),
                                         num_workers=1, persistent_workers=True)
    for epoch in range(3):
        method.start_epoch(epoch)
        assert sum(len(batch[0]) for batch in loader) == 400


def test_a_look_at_the_samplers_items_is_no_pass():
    """review37 #3: `sum(... for i in sampler)` before training made the first real pass warn that a pass had
    trained the plan; the warning names the user's line, not torch's sampler (review37 #2)."""
    import warnings

    import torch

    method, train, model = _face()
    sampler = method.sampler()
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=32, sampler=sampler)
    method.start_epoch(0, model, train)
    assert sum(int(item) >= 200 for item in sampler) == 40
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(loader)
        assert not caught
        list(loader)
    (warning,) = caught
    assert warning.filename == __file__ and "before the DataLoader's iterator is made" in str(warning.message)


def test_an_items_weight_is_its_own_not_a_view_of_the_methods():
    """#3: with batch_size=None an in-place op on an item's weight halved the method's weights for later epochs."""
    import torch

    method, train, model = _face(mode="subset")
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=None, sampler=method.sampler())
    method.start_epoch(0, model, train)
    before = method.original_weights.clone(), method.copy_weights.clone()
    for _, _, weight in loader:
        weight.mul_(0.5)
    assert torch.equal(method.original_weights, before[0]) and torch.equal(method.copy_weights, before[1])


def test_scoring_the_wrapped_set_says_it_is_the_wrapped_set():
    """#4: start_epoch(epoch, model, loader) said "pass its .dataset", and that was refused as data of another size."""
    import torch

    method, train, model = _face()
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=32, sampler=method.sampler())
    for data in (loader, loader.dataset):
        with pytest.raises(coreaug.UsageError, match=r"method.dataset\(\)'s wrapped set .* pass the training set "
                                                     "itself in the labels' order, with a fixed evaluation"):
            method.start_epoch(0, model, data)
    with pytest.raises(coreaug.UsageError, match=r"wrapped set .*: to train on it, pass the training set itself "
                                                 r"\(method.dataset\(train_set\), once\)$"):
        method.dataset(loader.dataset)  # review37 #4: told to use an evaluation transform


def test_a_wrappers_own_count_of_epochs_is_told_how_to_start_later():
    """#5: torchdata.nodes' SamplerWrapper counts passes from 0; the message named only accelerate's remedy."""
    method, train, model = _face(strategy="random")
    sampler = method.sampler()
    method.start_epoch(3)
    sampler.set_epoch(0)
    with pytest.raises(coreaug.UsageError, match="SamplerWrapper, initial_epoch="):
        list(sampler)


def test_the_reports_curve_puts_each_epoch_at_its_rated_seconds():
    """explore24-mutation #20: the plot's curve shifted by an epoch under --epoch-seconds rates passed (it now
    reads the runs through `_rated`, as the tables do)."""
    import types

    from coreaug.bench.report import _mean_curve

    runs = [types.SimpleNamespace(history=[{"test_accuracy": a, "training_seconds": 7.0 * (e + 1)}
                                           for e, a in enumerate(curve)]) for curve in ([0.2, 0.4, None], [0.4, 0.6, 0.7])]
    cell = types.SimpleNamespace(runs=runs)
    assert _mean_curve(cell, 2.5) == [{"test_accuracy": pytest.approx(0.3), "training_seconds": 2.5},
                                      {"test_accuracy": pytest.approx(0.5), "training_seconds": 5.0},
                                      {"test_accuracy": None, "training_seconds": 7.5}]
    assert [row["training_seconds"] for row in _mean_curve(cell, None)] == [7.0, 14.0, 21.0]


# explore24-limits: coreaug under the limits of shared machines.

@pytest.mark.parametrize("raised", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 822083584 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError()])
def test_running_out_of_memory_is_one_line_with_what_uses_less(tmp_path, monkeypatch, raised):
    """#1: out of memory under `ulimit -v` (a cluster's h_vmem) in the training step was a 44-line traceback."""
    from click.testing import CliRunner

    from coreaug.cli.train import train as train_command
    from coreaug.training import trainer

    def step(*args, **kwargs):
        raise raised
    monkeypatch.setattr(trainer, "_train_epoch", step)
    args = ["--dataset", "digits", "--epochs", "1", "--train-limit", "64", "--test-limit", "16", "-q",
            "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith("error: out of memory (") and "a smaller --batch-size" in result.output
    assert "--stream always" in result.output and "--resume" in result.output
    monkeypatch.setattr(trainer, "_train_epoch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    result = CliRunner().invoke(train_command, args + ["--overwrite"])
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "a bug"  # a failure keeps its traceback


def test_more_jobs_than_usable_cores_are_told_the_runs_wait(monkeypatch):
    """#2: `bench --jobs 2` under `taskset -c 0` (a job's share of the cores) doubled each run's seconds silently;
    review38 #2: counted from the workers started (no more than the runs left), `--devices cpu` included."""
    import warnings

    from coreaug.bench import workers

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(workers, "_cores", lambda: 1)
    planned = workers.plan_workers("cpu", jobs=2)
    with pytest.warns(UserWarning, match=r"2 runs train at once on 1 usable CPU core\(s\) .* \(--jobs 1; jobs=1 in "):
        workers._warn_if_oversubscribed(planned)
    with pytest.warns(UserWarning, match="2 runs train at once"):
        workers._warn_if_oversubscribed(workers.plan_workers("cpu", jobs=2, devices="cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workers._warn_if_oversubscribed(planned[:1])  # one run left: one worker starts
        workers._warn_if_oversubscribed([workers.Worker("cuda:0", 1), workers.Worker("cuda:1", 1)])


def test_too_few_open_files_for_the_decode_workers_is_one_line():
    """#3: at `ulimit -n 24` the folder's decode workers ended in 5,000 lines of tracebacks."""
    import resource

    from coreaug.data.cache_decode import _shared_memory_error

    torch_says = RuntimeError("Too many open files. Communication with the workers is no longer possible. Please "
                              "increase the limit using `ulimit -n` in the shell or change the sharing strategy")
    error = _shared_memory_error(torch_says, 2)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert str(error) == (f"decoding with 2 worker processes failed: this process may open {soft} files at once "
                          "(ulimit -n), too few for the batches they hand over; raise it (ulimit -n 1024) or pass "
                          "--workers 0")
    assert _shared_memory_error(RuntimeError("a bug"), 2) is None


def test_a_torch_cache_folder_from_the_environment_is_named_by_its_variable(monkeypatch, capsys):
    """#6: an unwritable TORCHINDUCTOR_CACHE_DIR stopped even an eager run (torch.optim imports the compiler)
    with "No such file or directory: /proc/inductor", a folder the user never typed."""
    import errno

    from coreaug.cli.errors import user_errors

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/proc/inductor/")

    def command(path, code):
        raise OSError(code, "refused", path)
    for path, code in (("/proc/inductor", errno.ENOENT), ("/proc", errno.EROFS)):  # the folder, or one above it
        with pytest.raises(SystemExit):
            user_errors(command)(path, code)
        assert capsys.readouterr().err.endswith("(the folder of torch's compile cache, which $TORCHINDUCTOR_CACHE_DIR "
                                                "names: set it to a folder this user can write, or unset it)\n")
    for path in ("/proc/inductorx", "/proc/inductor/runs/a-run"):  # review38 #1: a run's --out in the folder
        with pytest.raises(SystemExit):
            user_errors(command)(path, errno.ENOENT)
        assert capsys.readouterr().err == f"error: refused: {path}\n"


def test_streaming_counts_an_address_space_limit():
    """#1: `--stream auto` weighed free memory and the cgroup's limit, not `ulimit -v`: a folder of 759 MiB decoded
    was loaded into a process with 0.5 GiB of address space left, and training ran out of memory."""
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (12 << 30, resource.RLIM_INFINITY)); "
            "from coreaug.training.inputs import address_space_left; "
            "left = address_space_left(); print(0 < left < 12 << 30, left > 1 << 20)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["True", "True"]
    unlimited = subprocess.run([sys.executable, "-c", "from coreaug.training.inputs import address_space_left; "
                                "print(address_space_left())"], capture_output=True, text=True, check=True).stdout
    import resource

    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:  # (a machine without ulimit -v)
        assert unlimited.strip() == "None"


def test_a_run_whose_worker_died_as_it_took_it_says_a_worker_ended():
    """#4: a worker that died sending "took" (no thread for the queue under `ulimit -u`) left its run "failed: no
    worker process was left to train it" while another worker had trained the rest."""
    import queue
    import types

    from coreaug.bench.workers import _wait

    processes = [types.SimpleNamespace(exitcode=code, is_alive=lambda: False) for code in (1, 0)]
    results = queue.Queue()
    results.put(("took", 1, 0))
    results.put(("done", 1, 0, "trained", None))
    todo = [types.SimpleNamespace(name=name, config=types.SimpleNamespace(quiet=True)) for name in ("a", "b")]
    outcomes = []
    _wait(processes, todo, results, {}, outcomes.append)
    (failed,) = [outcome for outcome in outcomes if outcome.status == "failed"]
    assert failed.run.name == "b" and failed.error.startswith("a worker process ended (exit code 1; its error")


def test_a_runs_machine_records_the_cores_it_could_use(monkeypatch):
    """#2 (related): summary.json's machine said "x86_64 2 cpus" for a run under `taskset -c 0`."""
    import os

    from coreaug import devices
    from coreaug.training import trainer

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(devices, "usable_cores", lambda: 3)
    assert trainer._cpus() == "3 of 8"
    monkeypatch.setattr(devices, "usable_cores", lambda: 8)
    assert trainer._cpus() == "8"


def test_a_look_after_the_pass_is_no_pass_and_a_forgotten_start_is_still_told():
    """review38 #3: counting the epoch's copies after the loader's pass warned "another pass" in a right loop,
    and used up the once-only warning a forgotten start_epoch later needed."""
    import warnings

    import torch

    method, train, model = _face(strategy="random", select_every=5)
    sampler = method.sampler()
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=32, sampler=sampler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(4):
            if epoch < 2:  # epochs 2 and 3 forget it
                method.start_epoch(epoch, model, train)
            list(loader)
            assert sum(int(item) >= 200 for item in sampler) == 40
    assert [str(w.message)[:60] for w in caught] == ["the DataLoader begins another pass over epoch 1's plan, whic"]


def test_streaming_weighs_the_address_space_against_this_processs_own_copy(monkeypatch):
    """review38 #6: `ulimit -v` is each process's own: it was multiplied by LOCAL_WORLD_SIZE with the host's."""
    import torch

    from coreaug.training import inputs

    monkeypatch.setattr(inputs, "_bytes", lambda images: images)
    monkeypatch.setattr(inputs, "available_host_memory", lambda: 1 << 40)
    monkeypatch.setattr(inputs, "address_space_left", lambda: 1000)
    cpu = torch.device("cpu")
    assert not inputs.should_stream("auto", 400, cpu, local_world_size=4)
    assert inputs.should_stream("auto", 600, cpu, local_world_size=1)


def test_out_of_memory_under_an_address_space_limit_names_the_limit(monkeypatch):
    """review38 #8: under `ulimit -v` the line said "free some memory", which does not lift the limit."""
    import resource

    from coreaug.cli.errors import out_of_memory_line

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (2 << 30, resource.RLIM_INFINITY))
    line = out_of_memory_line(MemoryError(), "run it again")
    assert line == ("out of memory (MemoryError); this process may use 2.0 GiB (ulimit -v): raise the limit "
                    "(ulimit -v) and run it again")


def test_a_bench_run_out_of_memory_says_what_uses_less(tmp_path):
    """review38 #9: a bench run that ran out of memory failed with torch's raw text alone."""
    import types

    from coreaug.bench.grid import crash_line

    run = types.SimpleNamespace(folder=str(tmp_path))
    line = crash_line(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8388608 "
                                   "bytes"), run)
    assert "; out of memory: a smaller --batch-size, --stream always for an image folder, or fewer --jobs" in line
    assert line.endswith(f"(traceback in {tmp_path / 'error.txt'})")
    assert "out of memory" not in crash_line(RuntimeError("a bug"), run)


def test_a_worker_killed_outright_is_named_by_its_signal():
    """explore24-limits: a bench worker the kernel's out-of-memory killer took said "exit code -9" alone."""
    import signal

    from coreaug.bench.workers import _killed_by

    assert _killed_by(-signal.SIGKILL).startswith(" (killed by SIGKILL, as the kernel's out-of-memory killer does")
    assert _killed_by(-signal.SIGSEGV) == " (killed by SIGSEGV)"
    assert _killed_by(1) == "" and _killed_by(None) == ""
