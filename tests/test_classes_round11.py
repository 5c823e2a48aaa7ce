"""Datasets of unusual class structure: class names checked where data comes in, nothing to score
refused, and the messages about classes missing from a split."""
import pytest
import torch

from coreaug.data import load_dataset, registry
from coreaug.errors import UsageError
from coreaug.models import create_model
from coreaug.training.trained import TrainedModel
from test_registered_round9 import _tiny  # a valid 3-class dataset of 12 + 6 8x8 images, with changes


def _run():
    torch.manual_seed(0)
    return TrainedModel(create_model("cnn", 3, 3), ["a", "b", "c"], 8, 3, (0.5,) * 3, (0.25,) * 3,
                        {"dataset": "mine"})


def test_class_names_must_be_distinct_strings_where_a_dataset_comes_in(monkeypatch):
    """Repeated names trained, then evaluate scored class 2's images against class 0 (66.7% for a
    run of 100%); label ids as names trained, then evaluate died on int.replace."""
    for names, message in [(["cat", "dog", "cat"], r"class name 'cat' is given for classes 0 and 2; .*distinct"),
                           ([3, 7, 9], r"class names must be strings, got 3 of type int; .*str\(c\)")]:
        data = _tiny(class_names=names)
        monkeypatch.setitem(registry._LOADERS, "mine", lambda data_dir=None, *, download=False, progress=True: data)
        with pytest.raises(UsageError, match=message) as caught:
            load_dataset("mine")
        assert "\n" not in str(caught.value)
        with pytest.raises(UsageError, match=message):
            _run().evaluate(_tiny(class_names=names))
    valid = _tiny()
    monkeypatch.setitem(registry._LOADERS, "mine", lambda data_dir=None, *, download=False, progress=True: valid)
    assert load_dataset("mine").class_names == ["a", "b", "c"]


def test_evaluating_no_images_is_refused_rather_than_an_accuracy_of_nan():
    run = _run()
    for given, message in [((torch.zeros(0, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)),
                            r"no images given; there is nothing to score"),
                           (_tiny(test_images=torch.zeros(0, 3, 8, 8, dtype=torch.uint8),
                                  test_labels=torch.zeros(0, dtype=torch.long)), r"has no test images")]:
        with pytest.raises(UsageError, match=message):
            run.evaluate(given)
    assert run.evaluate(_tiny()).total == 6


def test_a_val_class_missing_from_train_is_refused_without_asking_for_every_training_class(tmp_path):
    """The message said 'both splits need the same class folders', where val/ may leave classes out."""
    from PIL import Image

    for split, classes in (("train", "xy"), ("val", "xyz")):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / split / name / "0.png")
    with pytest.raises(UsageError, match=r"lacks: z; each of its classes needs a folder in the training split too "
                                         r"\(it may leave training classes out\)") as caught:
        load_dataset(str(tmp_path), image_size=8, progress=False)
    assert "same class folders" not in str(caught.value)


def test_a_registered_dataset_whose_training_labels_hold_one_class_is_refused(monkeypatch):
    """It trained silently to chance, where a folder of one class is refused."""
    data = _tiny(train_labels=torch.zeros(12, dtype=torch.long))
    monkeypatch.setitem(registry._LOADERS, "mine", lambda data_dir=None, *, download=False, progress=True: data)
    with pytest.raises(UsageError, match=r"dataset 'mine': every training label is 0; a classifier needs examples "
                                         r"of two classes or more"):
        load_dataset("mine")


def test_evaluating_a_run_of_a_registered_dataset_not_registered_here_names_it_not_a_folder(tmp_path, monkeypatch):
    """Its name was taken for a coreaug 0.2 relative folder: 'recorded as the relative path ...
    (coreaug 0.2 ...)', or a folder of that name near the run decoded and scored as its data."""
    import coreaug

    data = _tiny(name="r11pets")
    monkeypatch.setitem(registry._LOADERS, "r11pets", lambda data_dir=None, *, download=False, progress=True: data)
    coreaug.train(coreaug.TrainConfig(dataset="r11pets", model="cnn", epochs=1, batch_size=6, quiet=True,
                                      out=str(tmp_path / "r11pets")))
    assert coreaug.load_run(tmp_path / "r11pets").evaluate().total == 6
    monkeypatch.delitem(registry._LOADERS, "r11pets")
    monkeypatch.chdir(tmp_path)  # a folder of the dataset's name here: the run folder itself
    with pytest.raises(UsageError, match=r"the run's dataset 'r11pets' is not a built-in dataset nor one registered "
                                         r"in this process: register it") as caught:
        coreaug.load_run(tmp_path / "r11pets").evaluate()
    assert "0.2" not in str(caught.value)


def test_the_own_loop_sampler_refuses_a_plan_smaller_than_its_processes():
    """Every rank's share was empty, silently: an epoch that trained nothing (the trainer refuses it)."""
    import coreaug

    method = coreaug.CoresetAugmentation(torch.tensor([0] * 50 + [1] * 50), strategy="random", fraction=0.01,
                                         mode="subset")
    method.start_epoch(0)
    assert len(method.plan) == 2 and len(list(method.sampler(num_replicas=2, rank=1))) == 1
    with pytest.raises(UsageError, match=r"the epoch's plan has 2 items for 4 processes, fewer than one each"):
        list(method.sampler(num_replicas=4, rank=0))


def test_evaluating_a_run_on_its_changed_split_folder_reads_the_test_split_alone(tmp_path, monkeypatch, capsys):
    """Anything changed under train/ made evaluate decode both splits into a new cache to score
    val/, and a class folder added to train/ alone then failed it ('not one of the run's classes')."""
    import coreaug
    from PIL import Image

    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    for split, count in (("train", 6), ("val", 3)):
        for label, name in enumerate("xy"):
            for k in range(count):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (40 + 150 * label, 9 * k, 90)).save(root / split / name / f"{k}.png")
    coreaug.train(coreaug.TrainConfig(dataset=str(root), model="cnn", epochs=1, batch_size=6, image_size=8,
                                      quiet=True, out=str(tmp_path / "run")))
    run = coreaug.load_run(tmp_path / "run")
    first = run.evaluate()
    caches = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_dir())
    (root / "train" / "z").mkdir()
    for k in range(6):
        Image.new("RGB", (8, 8), (9, 9, 9 * k)).save(root / "train" / "z" / f"{k}.png")
    capsys.readouterr()
    again = run.evaluate()
    assert (again.correct, again.total, again.per_class) == (first.correct, 6, first.per_class)
    assert again.scored == first.scored == "test split"  # val/ alone, as before the change
    assert "test split is read as image files" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_dir()) == caches  # nothing decoded
