"""CoresetAugmentation in an own loop (round 9): a cheap sampler, the data it is handed (coreaug's
ImageDataset, a DataLoader, a dataset in another order, images of mixed sizes) checked in one line,
a selection adopted after start_epoch planned again, and the arguments of the plans checked."""
import inspect
import io
import pickle
import warnings

import numpy as np
import pytest
import torch

import coreaug
from coreaug.data.dataset import ImageDataset

N = 40
LABELS = torch.arange(N) % 4
IMAGES = torch.randint(0, 256, (N, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
FLOATS = IMAGES.float() / 255
scale = lambda x: x.float() / 255  # noqa: E731


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))


class Pairs(torch.utils.data.Dataset):
    """(image, label, *extra) items of the tiny set, in the order `order`."""

    def __init__(self, order=None, extra=False):
        self.order, self.extra = list(range(N)) if order is None else list(order), extra

    def __len__(self):
        return N

    def __getitem__(self, i):
        j = self.order[i]
        return (FLOATS[j], int(LABELS[j])) + ((i, "meta") if self.extra else ())


def items_of(loader):
    return [item for batch in loader for item in zip(*batch)]


def test_the_sampler_yields_slotted_ints_lazily_that_pickle_small_and_keep_their_version():
    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.5)
    method.start_epoch(0)
    it = iter(method.sampler())
    assert iter(it) is it and it._items is None  # nothing made before the first item
    first = next(it)
    assert inspect.isgenerator(it._items)  # made as the DataLoader asks
    items = [first, *it]
    assert sorted(set(items)) == sorted(set(range(N)) | {N + int(i) for i in method.selection.indices})
    assert all(not hasattr(item, "__dict__") and item.version == method.version for item in items)
    batch = (items * 7)[:256]
    back = pickle.loads(pickle.dumps(batch))
    assert back == batch and {item.version for item in back} == {method.version}
    assert len(pickle.dumps(batch)) < 2 * len(pickle.dumps([int(i) for i in batch]))


def test_coreaugs_image_dataset_a_dataloader_and_iterables_are_one_line_errors():
    data = ImageDataset("tiny", IMAGES, LABELS, IMAGES[:4], LABELS[:4], 4, None, (0.5,), (0.5,), "generated")
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    model = tiny_model()
    with pytest.raises(coreaug.UsageError, match=r"ImageDataset.*pass data\.train_images"):
        method.start_epoch(0, model, data, preprocess=scale)
    with pytest.raises(coreaug.UsageError, match=r"ImageDataset.*pass data\.train_images"):
        method.scores(model, data, preprocess=scale)
    with pytest.raises(coreaug.UsageError, match=r"ImageDataset.*TensorDataset\(data\.train_images"):
        method.dataset(data)
    loader = torch.utils.data.DataLoader(Pairs(), batch_size=8)
    with pytest.raises(coreaug.UsageError, match=r"is a DataLoader: pass its \.dataset"):
        method.start_epoch(0, model, loader)
    with pytest.raises(coreaug.UsageError, match=r"is a DataLoader: pass its \.dataset"):
        method.dataset(loader)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(FLOATS, LABELS.tolist()))

    for given in (Stream(), (pair for pair in zip(FLOATS, LABELS.tolist()))):
        with pytest.raises(coreaug.UsageError, match="map-style dataset .* cannot be read by index"):
            method.scores(model, given)
    method.start_epoch(0, model, data.train_images, preprocess=scale)  # what the message says works


def test_scoring_images_of_different_sizes_is_a_one_line_error():
    class Mixed(Pairs):
        def __getitem__(self, i):
            size = 9 if i % 7 == 3 else 8
            return torch.rand(1, size, size), int(LABELS[i])

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    with pytest.raises(coreaug.UsageError, match=r"images of different sizes \(1x8x8 and 1x9x9 .*T\.Resize"):
        method.start_epoch(0, Pooled(), Mixed())


def test_use_or_load_state_dict_after_start_epoch_plans_again_from_the_new_selection():
    saved = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.3, seed=1)
    saved.start_epoch(0)
    saved.start_epoch(1)
    state = saved.state_dict()
    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.3, seed=1)
    loader = torch.utils.data.DataLoader(method.dataset(Pairs()), batch_size=8, sampler=method.sampler())
    method.start_epoch(0)
    method.load_state_dict(state)
    assert set(method.plan.indices[method.plan.augmented].tolist()) == set(saved.selection.indices.tolist())
    assert len(items_of(loader)) == len(method.plan)  # no copy of the old selection refused
    other = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.3, seed=7).select(0)
    method.use(other, 0)
    assert set(method.plan.indices[method.plan.augmented].tolist()) == set(other.indices.tolist())
    assert len(items_of(loader)) == len(method.plan)
    stale = iter(loader)  # a pass begun before the selection changed
    next(stale)
    method.use(saved.selection, 1)
    with pytest.raises(coreaug.UsageError, match="selection changed .* while the DataLoader was iterating"):
        next(stale)


def test_the_dataset_face_checks_the_labels_and_passes_extra_fields_on():
    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.5, mode="subset")
    method.start_epoch(0)
    with pytest.raises(coreaug.UsageError, match=r"item 0's label is 1 but labels\[0\] is 0: wrap the training set"):
        method.dataset(Pairs(order=[1] + list(range(1, N))))
    # Item 0 right: a few items spread over the dataset, the last among them, are checked when it is wrapped.
    with pytest.raises(coreaug.UsageError, match=rf"item {N - 1}'s label is 2 but labels\[{N - 1}\] is 3: wrap"):
        method.dataset(Pairs(order=list(range(N - 2)) + [N - 1, N - 2]))
    with pytest.raises(coreaug.UsageError, match=r"item 3's label is 1 but labels\[3\] is 3: wrap"):
        method.dataset(Pairs(order=[0] + list(range(N - 1, 0, -1))))  # reversed after item 0

    class Counted(Pairs):
        reads = 0

        def __getitem__(self, i):
            Counted.reads += 1
            return super().__getitem__(i)

    # Not as each item loads (that slowed an epoch ~1.5x): items 1 and 2 swapped are not among those checked.
    wrapped = method.dataset(Counted(order=[0, 2, 1] + list(range(3, N))))
    assert Counted.reads == 16
    loader = torch.utils.data.DataLoader(wrapped, batch_size=N, sampler=method.sampler())
    assert len(items_of(loader)) == len(method.plan)
    loader = torch.utils.data.DataLoader(method.dataset(Pairs(extra=True)), batch_size=8, sampler=method.sampler())
    items = items_of(loader)
    assert len(items[0]) == 5 and all(meta == "meta" and int(label) == int(LABELS[index])
                                       for _, label, _, index, meta in items)


def test_a_sampler_other_than_the_methods_warns_once():
    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.5)
    method.start_epoch(0)
    wrapped = method.dataset(Pairs())
    loader = torch.utils.data.DataLoader(wrapped, batch_size=8, sampler=torch.utils.data.RandomSampler(range(N)))
    with pytest.warns(UserWarning, match="not method.sampler.*trains no strong copy") as caught:
        items_of(loader)
    assert len([w for w in caught if "method.sampler" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        items_of(torch.utils.data.DataLoader(method.dataset(Pairs()), batch_size=8, sampler=method.sampler()))


def test_sampler_replicas_and_ranks_are_checked_up_front():
    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.5)
    method.start_epoch(0)
    for args, name in (((0,), "num_replicas"), ((2.0, 1), "num_replicas"), ((-1, 0), "num_replicas"),
                       ((None, -1), "rank"), ((2, 1.0), "rank"), ((2, 2), r"rank must be in \[0, num_replicas\)")):
        with pytest.raises(coreaug.UsageError, match=name):
            method.sampler(*args)
    with pytest.raises(coreaug.UsageError, match=r"rank must be in \[0, num_replicas\), got rank 3 of 1"):
        list(method.sampler(None, 3))  # checked against the process group's (none: 1) when iterated
    assert len(list(method.sampler(np.int64(2), np.int64(1)))) == len(method.sampler(2, 1))


def test_the_plans_numbers_and_generators_are_checked():
    method = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.3, seed=1)
    plan = method.start_epoch(0)
    for generator, shown in ((0, "int"), (np.random.default_rng(0), "Generator")):
        with pytest.raises(coreaug.UsageError, match=f"must be a CPU torch.Generator .*or None, got {shown}$"):
            plan.fixed_steps(8, generator=generator)
    plan.fixed_steps(8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)  # None: torch's global RNG, as before round 9
    first = plan.fixed_steps(8, generator=None)
    torch.manual_seed(5)
    assert torch.equal(plan.fixed_steps(8, generator=None).indices, first.indices)
    batches = plan.on_device(8, "cpu")
    for numbers in ((0.5, 0), (None, 0), ("1", 0), (0, torch.tensor(1.0))):
        with pytest.raises(coreaug.UsageError, match=r"numbers of draws\(\) and image_keys\(\).*must be integers"):
            batches.image_keys(*numbers)
        with pytest.raises(coreaug.UsageError, match="must be integers"):
            batches.draws(*numbers)
    assert torch.equal(batches.image_keys(np.int64(3), torch.tensor(2)), batches.image_keys(3, 2))
    (take, rows), (want, want_rows) = batches.batch(torch.tensor(1)), batches.batch(1)
    assert take == want and (rows is want_rows is None or torch.equal(rows, want_rows))
    with pytest.raises(coreaug.UsageError, match="step must be an integer"):
        batches.batch(torch.tensor(1.0))


@pytest.mark.parametrize("kind", ["mps", "xpu"])
def test_a_device_type_this_torch_lacks_is_a_one_line_error(kind):
    available = torch.backends.mps.is_available() if kind == "mps" else torch.xpu.is_available()
    if available:
        pytest.skip(f"this torch has {kind}")
    method = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    with pytest.raises(coreaug.UsageError, match=f"device '{kind}' was asked for but this torch has no {kind} device"):
        method.scores(tiny_model(), IMAGES, preprocess=scale, device=kind)
    with pytest.raises(coreaug.UsageError, match=f"this torch has no {kind} device; pass device='cpu'"):
        coreaug.CoresetAugmentation(LABELS).start_epoch(0).on_device(8, f"{kind}:0")


def test_the_labels_are_copied_and_a_float32_fraction_resumes():
    labels, noisy = LABELS.clone(), torch.zeros(N, dtype=torch.bool)
    method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3, noisy=noisy)
    labels[0], noisy[0] = 3, True  # the loop's own relabelling, later
    assert int(method.labels[0]) == 0 and not method.noisy[0]
    numpy_labels = LABELS.numpy().copy()
    method = coreaug.CoresetAugmentation(numpy_labels, strategy="random", fraction=0.3)
    numpy_labels[0] = 3
    assert int(method.labels[0]) == 0
    method.start_epoch(0)
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    for fraction in (np.float32(0.3), torch.tensor(0.3)):
        buf.seek(0)
        resumed = coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=fraction)
        resumed.load_state_dict(torch.load(buf, weights_only=True))
        assert resumed.selection.indices.tolist() == method.selection.indices.tolist()
    buf.seek(0)
    with pytest.raises(coreaug.UsageError, match="other settings: fraction 0.3"):
        coreaug.CoresetAugmentation(LABELS, strategy="random", fraction=0.31).load_state_dict(torch.load(buf))


def test_an_older_state_without_settings_is_checked_against_its_own_selection():
    def older(strategy, fraction, **options):
        method = coreaug.CoresetAugmentation(LABELS, strategy=strategy, fraction=fraction, **options)
        method.start_epoch(0, tiny_model(), IMAGES, preprocess=scale)
        state = method.state_dict()
        del state["settings"]  # as coreaug 0.2.0 saved it
        return state

    coreset = older("coreset", 0.3)
    refused = (r"older coreaug.*strategy 'coreset' \(this method: 'maxloss'\), "
               r"a selection of 12 examples \(this method's fraction 0.5 selects 20\)")
    with pytest.raises(coreaug.UsageError, match=refused):
        coreaug.CoresetAugmentation(LABELS, strategy="maxloss", fraction=0.5).load_state_dict(coreset)
    with pytest.raises(coreaug.UsageError, match="selects nothing"):
        coreaug.CoresetAugmentation(LABELS, strategy="none").load_state_dict(coreset)
    same = coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3)
    same.load_state_dict(coreset)
    assert same.selection.strategy == "coreset"
    warm = older("coreset", 0.3, selection_warmup=2)  # a random selection of the warm-up
    assert warm["selection"]["strategy"] == "random"
    coreaug.CoresetAugmentation(LABELS, strategy="coreset", fraction=0.3).load_state_dict(warm)
