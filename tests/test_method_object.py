"""CoresetAugmentation in hand-written loops: both faces learn, plans match coreaug.train,
state survives a checkpoint, and wrong use is a clear error."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import coreaug
from coreaug.models import create_model
from coreaug.selection import budget_size
from coreaug.training import trainer as trainer_module
from coreaug.training.plan import EpochPlan
from test_compile_support import needs_compile

DATA = coreaug.load_dataset("synthetic", n_train=400, n_test=200)


class PILDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset: (PIL image, int label) pairs, with an optional transform."""

    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform
        self.targets = labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i].permute(1, 2, 0).numpy())
        return (self.transform(image) if self.transform else image), int(self.labels[i])


def to_tensor(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def flip_to_tensor(image):
    return to_tensor(image.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(()) < 0.5 else image)


def rotate_to_tensor(image):
    return to_tensor(image.rotate(float(torch.empty(()).uniform_(-30, 30))))


def accuracy(model, images, labels):
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def test_a_dataloader_loop_with_pil_transforms_learns():
    torch.manual_seed(0)
    train = PILDataset(DATA.train_images, DATA.train_labels)
    method = coreaug.CoresetAugmentation(train.targets, strategy="coreset", fraction=0.2)
    loader = torch.utils.data.DataLoader(method.dataset(train, weak=flip_to_tensor, strong=rotate_to_tensor),
                                         batch_size=32, sampler=method.sampler())
    model = create_model("cnn", 3, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(3):
        method.start_epoch(epoch, model, PILDataset(DATA.train_images, DATA.train_labels, to_tensor), batch_size=100)
        model.train()
        seen = 0
        for images, labels, weights in loader:
            loss = (F.cross_entropy(model(images), labels, reduction="none") * weights).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(labels)
        assert seen == 400 + 80  # every original plus one copy of each of the 80 selected
    test = DATA.test_images.float() / 255
    assert accuracy(model, test, DATA.test_labels) > 0.5  # chance is 0.1


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_a_device_tensor_loop_learns(device):
    """The tensor face with everything on `device`: images, labels (given to the method as a
    device tensor too) and model."""
    torch.manual_seed(0)
    images, labels = DATA.train_images.to(device), DATA.train_labels.to(device)
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.2)
    weak, strong = coreaug.create_policy("weak"), coreaug.create_policy("randaugment")
    model = create_model("cnn", 3, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(3):
        batches = method.start_epoch(epoch, model, images, preprocess=lambda x: x.float() / 255).on_device(32, device)
        model.train()
        for step in range(batches.steps):
            take, strong_rows = batches.batch(step)
            idx = batches.indices[take]
            x = weak(images[idx], generator)
            if strong_rows is not None:
                x = x.index_copy(0, strong_rows, strong(x.index_select(0, strong_rows), generator))
            loss = (F.cross_entropy(model(x.float() / 255), labels[idx], reduction="none") * batches.weights[take]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # It learns (chance is 0.1): over seeds 0-9 of this loop the accuracy spans 0.37-0.96 (0.39-0.95
    # with the grouped policies' draws), so a bound of 0.5 held by the seed.
    assert accuracy(model, DATA.test_images.to(device).float() / 255, DATA.test_labels.to(device)) > 0.3


@pytest.mark.parametrize("strategy, mode", [("random", "append"), ("random", "subset"), ("full", "append")])
def test_the_same_seed_gives_the_plans_coreaug_train_draws(monkeypatch, strategy, mode):
    plans = []
    real = EpochPlan.shard
    monkeypatch.setattr(EpochPlan, "shard", lambda plan, r, w: plans.append(plan) or real(plan, r, w))
    config = coreaug.TrainConfig(dataset="synthetic", train_limit=96, test_limit=32, batch_size=32, epochs=3,
                                 strategy=strategy, mode=mode, subset=0.25, seed=7, select_every=2, quiet=True)
    coreaug.train(config)
    data = trainer_module.load_run_data(config.resolved(), "cpu")
    method = coreaug.CoresetAugmentation(data.train_labels, strategy=strategy, mode=mode, fraction=0.25, seed=7,
                                         select_every=2)
    for epoch, trained in enumerate(plans):
        plan = method.start_epoch(epoch)
        for field in ("indices", "weights", "augmented"):
            assert torch.equal(getattr(plan, field), getattr(trained, field)), (epoch, field)


def test_state_saved_mid_run_continues_identically():
    images, labels = DATA.train_images, DATA.train_labels
    model = create_model("cnn", 3, 10)
    run = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.1, select_every=2, seed=3)
    run.start_epoch(0, model, images, preprocess=lambda x: x.float() / 255)
    run.start_epoch(1)
    state = torch.load(_saved(run.state_dict()), weights_only=False)
    restored = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.1, select_every=2, seed=3)
    restored.load_state_dict(state)
    assert not restored.due(1) and restored.due(2)
    for a, b in ((run.start_epoch(1), restored.start_epoch(1)), (run.plan_for(3), restored.plan_for(3))):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    assert np.array_equal(run.selection.indices, restored.selection.indices)
    assert restored.selection.strategy == "coreset" and restored.selection.objective == run.selection.objective


def _saved(state):
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_selecting_before_any_model_is_given_is_an_error():
    method = coreaug.CoresetAugmentation(DATA.train_labels, strategy="coreset")
    with pytest.raises(ValueError, match="coreset selection is due at epoch 0: pass the model"):
        method.start_epoch(0)
    with pytest.raises(ValueError, match="no selection yet"):
        method.plan_for(0)
    with pytest.raises(ValueError, match="no plan yet"):
        next(iter(method.sampler()))  # (the plan is read at the first item)


def test_a_dataset_without_labels_is_an_error():
    class ImagesOnly(torch.utils.data.Dataset):
        def __len__(self):
            return 400

        def __getitem__(self, i):
            return DATA.train_images[i]
    method = coreaug.CoresetAugmentation(DATA.train_labels, strategy="coreset")
    with pytest.raises(ValueError, match=r"must return \(image, label\) pairs"):
        method.dataset(ImagesOnly())
    with pytest.raises(ValueError, match="the dataset has 10 examples but the labels"):
        method.dataset(PILDataset(DATA.train_images[:10], DATA.train_labels[:10]))


def test_the_default_strategy_is_one_everywhere_random():
    # set by the CIFAR-10 grids (docs/evidence.md); the paper's method is strategy="coreset"
    assert coreaug.CoresetAugmentation(DATA.train_labels).strategy == "random"
    assert coreaug.TrainConfig().strategy == "random"
    method = coreaug.CoresetAugmentation(DATA.train_labels, fraction=0.1)
    method.start_epoch(0)  # a random selection needs no model
    assert method.selection.strategy == "random" and len(method.selection.indices) == budget_size(0.1, 400)


@pytest.mark.parametrize("kwargs, match", [
    (dict(fraction=0.0), "fraction must be"), (dict(fraction=1.5), "fraction must be"),
    (dict(strategy="craig"), "unknown strategy 'craig'"), (dict(select_every=0), "select_every must be"),
    (dict(mode="replace"), "unknown mode"), (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(seed=0.5), "seed must be an integer"), (dict(noisy=torch.zeros(3, dtype=torch.bool)), "noisy must mark"),
])
def test_bad_settings_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        coreaug.CoresetAugmentation(DATA.train_labels, **kwargs)


def test_a_state_or_selection_of_another_training_set_is_refused_and_changes_nothing():
    labels = torch.arange(300) % 10
    big = coreaug.CoresetAugmentation(labels, fraction=0.5)
    big.start_epoch(0)
    small = coreaug.CoresetAugmentation(labels[:100], fraction=0.5)
    small.start_epoch(0)
    before = small.selection
    with pytest.raises(coreaug.UsageError, match="taken from 300 examples .* have 100"):
        small.load_state_dict(big.state_dict())
    with pytest.raises(coreaug.UsageError, match="taken from 300 examples"):
        small.use(big.selection, 1)
    foreign = coreaug.Selection(indices=np.array([5, 150]), weights=np.ones(2, dtype=np.float32), strategy="random",
                                classes=np.arange(2), class_counts=np.ones(2, dtype=np.int64),
                                class_objectives=np.full(2, np.nan))
    with pytest.raises(coreaug.UsageError, match=r"indices outside \[0, 100\)"):
        small.use(foreign, 1)
    assert small.selection is before


def test_the_samplers_length_is_the_current_plans():
    """A selection of another size than the fraction's (a saved one, say) sets the epoch's length."""
    labels = torch.arange(300) % 10
    method = coreaug.CoresetAugmentation(labels, fraction=0.5, mode="subset", select_every=100)
    method.use(coreaug.select_random(labels, 0.2), 0)
    method.start_epoch(1)
    assert len(method.sampler()) == len(list(method.sampler())) == 2 * 60
    assert len(method.sampler(num_replicas=2, rank=1)) == len(list(method.sampler(num_replicas=2, rank=1))) == 60


def test_subset_mode_items_carry_the_coreset_weights():
    images, labels = DATA.train_images, DATA.train_labels
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.1, mode="subset", weight_augmented=True)
    method.start_epoch(0, create_model("cnn", 3, 10), images, preprocess=lambda x: x.float() / 255)
    data = method.dataset(PILDataset(images, labels, to_tensor))
    picked, weights = method.selection.indices, method.selection.weights
    for i, w in zip(picked[:5], weights[:5]):
        assert data[int(i)][2] == pytest.approx(w) and data[400 + int(i)][2] == pytest.approx(w)
    items = list(method.sampler())
    assert sorted(set(items)) == sorted(set(picked.tolist()) | {400 + int(i) for i in picked})


@needs_compile
def test_a_step_compiled_in_your_own_loop_draws_from_a_random_source_without_recompiling():
    """The own loop's compiled path (docs/your-model.md): fixed-shape batches, the policies drawing
    from coreaug.RandomSource keyed per entry. dynamo traces the step whole (fullgraph: a graph
    break raises) and builds one graph, in the first step, when the step ran once eagerly before
    (the policies' tables for these shapes built then, as the manual says); the same keys give
    the same losses eagerly."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    images, labels = DATA.train_images[:160], DATA.train_labels[:160]
    weak, strong = coreaug.create_policy("weak"), coreaug.create_policy("randaugment")

    def step_loss(model, x, y, weights, keys, copies):
        source = coreaug.RandomSource(keys)
        x = weak(x, source)
        x = torch.cat([x[:-copies], strong(x[-copies:], source.select(slice(-copies, None)))])
        return (F.cross_entropy(model(x.float() / 255), y, reduction="none") * weights).mean()

    compiled = torch.compile(step_loss, fullgraph=True, backend="eager")  # dynamo alone: no code generation
    model = create_model("cnn", 3, 10)
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3)
    graphs, before = [], counters["stats"]["unique_graphs"]
    for epoch in range(3):
        plan = method.start_epoch(epoch).fixed_steps(32, generator=torch.Generator().manual_seed(epoch))
        batches = plan.on_device(32, "cpu")
        keys = batches.image_keys(0, epoch)
        copies = batches.bounds[1] - batches.bounds[0]
        assert copies > 0 and all(b - a == copies for a, b in zip(batches.bounds, batches.bounds[1:]))
        for step in range(batches.steps):
            take = batches.batch(step)[0]
            idx = batches.indices[take]
            args = (images[idx], labels[idx], batches.weights[take], keys[take], copies)
            with torch.no_grad():
                want = step_loss(model, *args)  # eagerly first: at the first step, the policies build their tables
            assert compiled(model, *args).item() == pytest.approx(want.item(), rel=1e-6)
        graphs.append(counters["stats"]["unique_graphs"] - before)
    assert graphs == [1, 1, 1]  # one graph, built at the first step, for every epoch and selection
    assert keys.dtype == torch.int64 and len(set(keys.tolist())) == len(keys)  # a key per entry


def test_random_source_keys_hash_their_numbers_and_the_step():
    from coreaug.augment.sampling import source_key

    assert coreaug.RandomSource.keys(3, 1, 0, steps=4).tolist() == [source_key(3, 1, 0, s) for s in range(4)]


def test_a_saved_selection_is_used_as_it_is_in_an_own_loop(tmp_path):
    """A file of indices and weights only (what `coreaug select` promises) and the epoch it is
    adopted at: not refused for an unknown training-set size, not replaced by a new selection."""
    labels = torch.arange(200) % 10
    np.savez(tmp_path / "sel.npz", indices=np.arange(0, 120, 2), weights=np.ones(60, dtype=np.float32))
    saved = coreaug.Selection.load(tmp_path / "sel.npz")
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.3)
    method.use(saved, 0)
    plan = method.start_epoch(0)  # a coreset is due at 0, and needs a model: the adopted one stands
    assert method.selection is saved and int(plan.augmented.sum()) == 60
    for bad, match in ((dict(indices=np.arange(3.0), weights=np.ones(3)), "indices must be 1-D integers"),
                       (dict(indices=np.arange(3), weights=np.ones(4)), "one per index"),
                       (dict(indices=np.array([1, 1, 2]), weights=np.ones(3)), "repeat"),
                       (dict(indices=np.arange(3), weights=np.array([1.0, np.nan, 1.0])), "finite")):
        np.savez(tmp_path / "bad.npz", **bad)
        with pytest.raises(coreaug.UsageError, match=match):
            coreaug.Selection.load(tmp_path / "bad.npz")


def test_the_sampler_takes_the_process_groups_share_by_default(monkeypatch):
    """As DistributedSampler: the own-loop DataLoader recipe run under torchrun as written gave
    every process the whole plan."""
    from coreaug.training import method as method_module

    method = coreaug.CoresetAugmentation(DATA.train_labels, fraction=0.1)
    method.start_epoch(0)
    whole = list(method.sampler())
    monkeypatch.setattr(method_module, "_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    assert list(method.sampler()) == list(method.sampler(2, 1)) == whole[1::2][:len(whole) // 2]


class Uncallable(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("a strategy that reads no model ran it")


@pytest.mark.parametrize("strategy", ["random", "full", "none"])
def test_strategies_that_read_no_model_score_nothing_and_estimate_is_a_clear_error(strategy):
    """estimate() was `KeyError: 'losses'`, after scores() had run the model over the whole set for nothing."""
    method = coreaug.CoresetAugmentation(DATA.train_labels, strategy=strategy)
    assert method.scores(Uncallable(), DATA.train_images, device="cpu") == {}
    with pytest.raises(coreaug.UsageError, match=f"strategy '{strategy}' selects on no scores.*coreset, maxloss"):
        method.estimate(Uncallable(), DATA.train_images, device="cpu")


@pytest.mark.parametrize("changed, match", [
    (dict(strategy="random", fraction=0.1), r"strategy 'coreset' \(this method: 'random'\), fraction 0.3 \(this "
                                            r"method: 0.1\)"),
    (dict(mode="subset"), r"mode 'append' \(this method: 'subset'\)"),
    (dict(balance="proportional"), r"balance 'equal' \(this method: 'proportional'\)"),
    (dict(labels=DATA.train_labels.flip(0)), "labels .*another order"),
])
def test_a_state_saved_under_other_settings_is_refused_naming_them_and_changes_nothing(changed, match):
    """A 30% coreset state was adopted by a "random 10%" method without a word (plan_length then disagreed)."""
    settings = dict(labels=DATA.train_labels, strategy="coreset", fraction=0.3, seed=1)
    saved = coreaug.CoresetAugmentation(**settings)
    saved.start_epoch(0, create_model("cnn", 3, 10), DATA.train_images, preprocess=lambda x: x.float() / 255)
    state = torch.load(_saved(saved.state_dict()), weights_only=False)
    other = coreaug.CoresetAugmentation(**{**settings, **changed})
    with pytest.raises(coreaug.UsageError, match=f"saved under other settings: {match}"):
        other.load_state_dict(state)
    assert other.selection is None
    same = coreaug.CoresetAugmentation(**{**settings, "seed": 7, "select_every": 5, "copies": 2})
    with pytest.warns(UserWarning, match="seed 1 .this method: 7., copies 1 .this method: 2.; its selection is kept"):
        same.load_state_dict(state)  # the plan's settings may change (warned: the plans differ from the saving run's)
    assert np.array_equal(same.selection.indices, saved.selection.indices)


def test_uint8_images_without_preprocess_are_one_line_naming_the_fix():
    """Forgetting preprocess= on uint8 images was torch's "expected scalar type Byte but found Float"."""
    data = coreaug.load_dataset("digits")
    model = create_model("cnn", in_channels=1, num_classes=10)
    method = coreaug.CoresetAugmentation(data.train_labels, strategy="coreset", fraction=0.3)
    with pytest.raises(coreaug.UsageError, match="cannot take the uint8 inputs .* pass preprocess="):
        method.start_epoch(0, model, data.train_images)
    with pytest.raises(coreaug.UsageError, match="estimate_gradients: transform="):
        coreaug.estimate_gradients(model, data.train_images[:8], data.train_labels[:8])
    method.start_epoch(0, model, data.train_images, preprocess=lambda x: x.float() / 255)  # the fix works
