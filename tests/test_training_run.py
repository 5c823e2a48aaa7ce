"""Training runs on small data: accounting, cadence, weights, learning, outputs, resume."""
import json
import os
import subprocess
import sys

import pytest
import torch

import coreaug
from coreaug.selection import budget_size
from coreaug.training import trainer as trainer_module
from coreaug.training.run_files import RunFolder

TINY = dict(dataset="synthetic", model="cnn", train_limit=96, test_limit=64, batch_size=32, quiet=True,
            strategy="coreset")  # the method itself, not the default (random)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("strategy, mode, expected", [
    ("coreset", "append", 96 + budget_size(0.25, 96)),
    ("random", "append", 96 + budget_size(0.25, 96)),
    ("maxloss", "append", 96 + budget_size(0.25, 96)),
    ("coreset", "subset", 2 * budget_size(0.25, 96)),
    ("random", "subset", 2 * budget_size(0.25, 96)),
    ("full", "append", 2 * 96),
    ("none", "append", 96),
])
def test_each_epoch_trains_the_expected_number_of_examples(strategy, mode, expected):
    result = coreaug.train(coreaug.TrainConfig(**dict(TINY, strategy=strategy), mode=mode, subset=0.25, epochs=2))
    assert [m["n_trained"] for m in result.history] == [expected, expected]
    augmented = {"full": 96, "none": 0}.get(strategy, budget_size(0.25, 96))
    assert [m["n_augmented"] for m in result.history] == [augmented, augmented]


def test_selection_happens_every_r_epochs(monkeypatch):
    calls = []
    real = trainer_module.select_examples
    monkeypatch.setattr(trainer_module, "select_examples",
                        lambda config, method, model, data, epoch, *a, **k: calls.append(epoch)
                        or real(config, method, model, data, epoch, *a, **k))
    result = coreaug.train(coreaug.TrainConfig(**TINY, epochs=5, select_every=2))
    assert calls == [0, 2, 4]
    assert [m["selected"] for m in result.history] == [True, False, True, False, True]
    assert all(m["selection_seconds"] == 0 for m in result.history if not m["selected"])


def test_weights_reach_the_loss(monkeypatch):
    from coreaug.training.method import CoresetAugmentation
    real = CoresetAugmentation.use

    def run(scale):
        def scaled(method, selection, epoch, diagnostics=None):
            selection.weights = selection.weights * scale
            return real(method, selection, epoch, diagnostics)
        monkeypatch.setattr(CoresetAugmentation, "use", scaled)
        return coreaug.train(coreaug.TrainConfig(**TINY, mode="subset", epochs=1))

    same_a, same_b, doubled = run(1.0), run(1.0), run(2.0)
    assert same_a.history[0]["train_loss"] == same_b.history[0]["train_loss"]
    params = lambda r: torch.cat([p.detach().flatten() for p in r.model.parameters()])  # noqa: E731
    assert torch.equal(params(same_a), params(same_b))
    assert not torch.allclose(params(same_a), params(doubled))


def test_two_epochs_on_synthetic_data_learn():
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=600, test_limit=300,
                                               batch_size=32, epochs=2, quiet=True))
    assert result.final_test_accuracy > 0.5  # chance is 0.1


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_two_epochs_on_a_real_fashion_mnist_sample_learn():
    result = coreaug.train(coreaug.TrainConfig(dataset="fashion-mnist", train_limit=1500, test_limit=500,
                                               batch_size=32, epochs=2, subset=0.3, quiet=True))
    assert result.final_test_accuracy > 0.55  # chance is 0.1
    assert result.history[0]["n_trained"] == 1500 + 450


def test_run_folder_holds_metrics_summary_checkpoint_and_model(tmp_path):
    out = tmp_path / "run"
    result = coreaug.train(coreaug.TrainConfig(**TINY, epochs=2, out=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "model.pt", "summary.json"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1]
    for key in ("train_loss", "test_accuracy", "epoch_seconds", "selection_seconds", "estimate_seconds",
                "facility_location_seconds", "n_trained", "n_augmented"):
        assert key in lines[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_accuracy"] == result.final_test_accuracy == lines[-1]["test_accuracy"]
    assert summary["selection_seconds"] == pytest.approx(sum(m["selection_seconds"] for m in lines))
    assert summary["config"]["subset"] == 0.3
    assert summary["coreaug"] == coreaug.__version__  # which coreaug trained it, beside torch's version


@pytest.mark.parametrize("settings", [dict(estimates="clean"), dict(estimates="training"),
                                      dict(strategy="coreset-history", select_every=1)])  # its loss sums resume too
def test_resume_reaches_the_same_final_metrics(tmp_path, monkeypatch, settings):
    config = {**TINY, "epochs": 4, "select_every": 3, "out": str(tmp_path / "whole"), **settings}
    whole = coreaug.train(coreaug.TrainConfig(**config))

    real_save = RunFolder.save_epoch
    saved = []

    def interrupted(self, checkpoint, history):
        real_save(self, checkpoint, history)
        saved.append(checkpoint["epoch"])
        if len(saved) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(RunFolder, "save_epoch", interrupted)
    config["out"] = str(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config))
    monkeypatch.setattr(RunFolder, "save_epoch", real_save)
    resumed = coreaug.train(coreaug.TrainConfig(**config, resume=True))

    keys = ("train_loss", "test_loss", "test_accuracy", "n_trained", "selected")
    assert [[m[k] for k in keys] for m in resumed.history] == [[m[k] for k in keys] for m in whole.history]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def dropout_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                               torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 10))


def test_resume_goes_on_with_the_models_own_random_draws_as_an_uninterrupted_run(tmp_path):
    config = {**TINY, "model": None, "epochs": 3, "out": str(tmp_path / "whole")}
    whole = coreaug.train(coreaug.TrainConfig(**config), model=dropout_net())
    config["out"] = str(tmp_path / "cut")
    train_to_first_checkpoint(coreaug.TrainConfig(**config), model=dropout_net())
    torch.manual_seed(123)  # whatever the process drew since: the checkpoint holds the generators' state
    resumed = coreaug.train(coreaug.TrainConfig(**config, resume=True), model=dropout_net())
    assert [m["train_loss"] for m in resumed.history] == [m["train_loss"] for m in whole.history]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def train_to_first_checkpoint(config, **train_args):
    """Train `config` until its first epoch is checkpointed, then stop it as Ctrl-C would."""
    real_save = RunFolder.save_epoch

    def interrupted(self, checkpoint, history):
        real_save(self, checkpoint, history)
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunFolder, "save_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            coreaug.train(config, **train_args)


def test_a_run_resumes_after_its_pretrained_file_is_gone_and_a_new_run_still_needs_it(tmp_path):
    """The checkpoint holds every weight; resume once refused a run whose pretrained file had moved."""
    source = coreaug.train(coreaug.TrainConfig(**TINY, epochs=1))
    torch.save(source.model.state_dict(), tmp_path / "w.pt")
    config = {**TINY, "epochs": 3, "pretrained": str(tmp_path / "w.pt"), "out": str(tmp_path / "run")}
    train_to_first_checkpoint(coreaug.TrainConfig(**config))
    (tmp_path / "w.pt").unlink()
    resumed = coreaug.train(coreaug.TrainConfig(**config, resume=True))
    assert [m["epoch"] for m in resumed.history] == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="pretrained weights .*w.pt do not exist"):
        coreaug.train(coreaug.TrainConfig(**{**config, "out": str(tmp_path / "new")}, resume=True))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("strategy", ["random", "maxloss"])
def test_a_run_whose_weights_diverge_stops_at_that_epoch_naming_it(tmp_path, strategy):
    """random trained on NaN to the end; a model-based rule stopped with 'losses must be finite', exit 2."""
    config = coreaug.TrainConfig(**{**TINY, "strategy": strategy}, epochs=4, lr=1e8, out=str(tmp_path / "run"))
    with pytest.raises(coreaug.TrainingDiverged, match="training diverged at epoch 1: the train loss is nan"):
        coreaug.train(config)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0]
    # One epoch, weights finite but outputs not: it exited 0 with a NaN test loss.
    with pytest.raises(coreaug.TrainingDiverged, match="the model's outputs on the test set are not finite"):
        coreaug.train(coreaug.TrainConfig(dataset="digits", train_limit=120, test_limit=60, epochs=1, lr=1e6,
                                          quiet=True))
    args = ["--dataset", "synthetic", "--train-limit", "96", "--test-limit", "64", "--epochs", "3", "--lr", "1e8"]
    proc = subprocess.run([sys.executable, "-m", "coreaug", "train", *args, "--quiet", "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "training diverged" in proc.stderr


@pytest.mark.parametrize("strategy", ["coreset", "maxloss"])
def test_training_estimates_need_no_extra_pass_after_the_first(monkeypatch, strategy):
    from coreaug.training import selector
    passes = []
    real = selector.estimate_gradients
    monkeypatch.setattr(selector, "estimate_gradients", lambda *a, **k: passes.append(1) or real(*a, **k))
    result = coreaug.train(coreaug.TrainConfig(**dict(TINY, strategy=strategy), estimates="training", epochs=3))
    assert len(passes) == 1  # the first selection only
    assert [m["selected"] for m in result.history] == [True, True, True]
    assert result.history[2]["estimate_seconds"] < result.history[0]["estimate_seconds"]


def test_training_estimates_match_the_logits_seen_in_training(monkeypatch):
    from coreaug.training import trainer
    merged, seen = [], []
    real_merge, real_add = trainer._merge_logits, trainer.EpochTotals.add
    monkeypatch.setattr(trainer, "_merge_logits", lambda prev, sums: merged.append(sums.clone()) or real_merge(prev, sums))

    def add(self, losses, logits, labels, indices, augmented):
        if self.logit_sums is not None:  # the epoch before the selection of epoch 1
            seen.append((indices.clone(), logits.detach().float().clone(), ~augmented))
        return real_add(self, losses, logits, labels, indices, augmented)
    monkeypatch.setattr(trainer.EpochTotals, "add", add)
    coreaug.train(coreaug.TrainConfig(**TINY, estimates="training", epochs=2))
    expected = torch.zeros_like(merged[0])
    for indices, logits, rows in seen:
        expected[indices[rows], :-1] += logits[rows]
        expected[indices[rows], -1] += 1
    assert (expected[:, -1] == 1).all()  # every original trained once in append mode
    assert sum(int((~o.bool()).sum()) for _, _, o in seen) > 0  # copies were trained and left out
    torch.testing.assert_close(merged[0], expected)


def test_label_noise_flips_the_training_labels():
    config = coreaug.TrainConfig(**dict(TINY, strategy="none"), label_noise=0.5, epochs=1).resolved()
    from coreaug.training.inputs import load_run_data
    clean = load_run_data(coreaug.TrainConfig(**dict(TINY, strategy="none"), epochs=1).resolved(), "cpu")
    noisy = load_run_data(config, "cpu")
    assert int(noisy.noisy.sum()) == 48
    assert (noisy.train_labels[noisy.noisy] != clean.train_labels[noisy.noisy]).all()


@pytest.mark.parametrize("augment", ["maxloss", "autoaugment+cutout"])
def test_other_strong_policies_train(augment):
    result = coreaug.train(coreaug.TrainConfig(**TINY, augment=augment, candidates=2, epochs=1))
    assert result.history[0]["n_augmented"] == budget_size(0.3, 96)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="imagenet"), "unknown dataset"),
    (dict(model="vgg"), "unknown model"),
    (dict(augment="mixup"), "unknown augment"),
    (dict(strategy="craig"), "unknown strategy"),
    (dict(subset=0.0), "subset must be"),
    (dict(subset=1.2), "subset must be"),
    (dict(select_every=0), "select_every must be"),
    (dict(mode="replace"), "unknown mode"),
    (dict(estimates="training", mode="subset"), "estimates 'training' needs mode 'append'"),
])
def test_bad_settings_raise_before_anything_is_written(tmp_path, kwargs, match):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        coreaug.train(coreaug.TrainConfig(**dict(TINY, epochs=1, out=str(out), **kwargs)))
    assert not out.exists()


def test_out_holding_a_different_run_is_refused(tmp_path):
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(out)))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ValueError, match="different config.*subset"):
        coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, subset=0.5, out=str(out)))
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_training_estimates_are_stored_only_in_the_epoch_before_a_selection(monkeypatch, tmp_path):
    from coreaug.training import trainer
    stored, saved = [], []
    real_merge, real_checkpoint = trainer._merge_logits, trainer._checkpoint
    monkeypatch.setattr(trainer, "_merge_logits", lambda *a: stored.append(1) or real_merge(*a))
    monkeypatch.setattr(trainer, "_checkpoint", lambda *a: saved.append(real_checkpoint(*a)) or saved[-1])
    result = coreaug.train(coreaug.TrainConfig(**TINY, estimates="training", select_every=2, epochs=5,
                                               out=str(tmp_path / "run")))
    assert [m["selected"] for m in result.history] == [True, False, True, False, True]
    assert len(stored) == 2  # epochs 1 and 3, before the selections of epochs 2 and 4
    assert [c["train_logits"] is not None for c in saved] == [False, True, False, True, False]


def test_metrics_say_the_rate_an_epoch_started_at_and_time_with_and_without_evaluation():
    result = coreaug.train(coreaug.TrainConfig(**dict(TINY, strategy="random"), epochs=3, lr=0.05))
    history = result.history
    assert history[0]["lr"] == 0.05  # cosine starts at the peak: the rate the first epoch trained with
    assert history[1]["lr"] < history[0]["lr"]
    assert history[-1]["training_seconds"] == pytest.approx(sum(m["epoch_seconds"] for m in history))
    assert history[-1]["elapsed_seconds"] == pytest.approx(
        sum(m["epoch_seconds"] + m["eval_seconds"] for m in history))


def test_eval_every_evaluates_every_nth_epoch_and_the_last(tmp_path, monkeypatch):
    evaluated = []
    evaluate = trainer_module._evaluate

    def counting(run, data, distributed):
        evaluated.append(len(run.history))  # the epoch being finished
        return evaluate(run, data, distributed)

    monkeypatch.setattr(trainer_module, "_evaluate", counting)
    out = tmp_path / "run"
    result = coreaug.train(coreaug.TrainConfig(**dict(TINY, quiet=False), epochs=5, eval_every=2, out=str(out)))
    assert evaluated == [1, 3, 4]  # after epochs 2 and 4 (1-based), and the last
    accuracies = [m["test_accuracy"] for m in result.history]
    assert [a is None for a in accuracies] == [True, False, True, False, False]
    assert all(m["test_loss"] is None and m["eval_seconds"] < 0.5 for m in result.history if m["test_accuracy"] is None)
    assert result.final_test_accuracy == accuracies[-1]
    assert result.best_test_accuracy == max(a for a in accuracies if a is not None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_test_accuracy"] == result.best_test_accuracy
    assert [json.loads(line)["test_accuracy"] for line in (out / "metrics.jsonl").read_text().splitlines()] == accuracies


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_eval_every_must_be_a_positive_integer(value):
    with pytest.raises(coreaug.UsageError, match="eval_every"):
        coreaug.TrainConfig(**TINY, eval_every=value).resolved()


def test_the_clean_estimates_precision_is_chosen_from_their_real_width(monkeypatch):
    from coreaug.training import selector

    widths = []

    def spy(n, width):
        widths.append(width)
        return torch.float32
    monkeypatch.setattr(selector, "estimate_dtype", spy)
    coreaug.train(coreaug.TrainConfig(**{**TINY, "epochs": 1, "strategy": "coreset"}))
    coreaug.train(coreaug.TrainConfig(**{**TINY, "epochs": 1, "strategy": "coreset", "gradients": "last_layer",
                                         "gradient_dim": 64}))
    # 10 classes' logit gradients (were taken at gradient_dim 512: float16 from 524,288 examples on)
    assert widths == [10, 64]


def test_a_built_in_datasets_run_records_the_real_size_of_its_images(tmp_path):
    """config.json (and so `coreaug report`) once said image_size=64, the folder default, for 8x8 digits."""
    from coreaug.training.config import IMAGE_SIZES

    for name in ("digits", "synthetic"):
        assert coreaug.load_dataset(name).train_images.shape[-1] == IMAGE_SIZES[name]
        assert coreaug.TrainConfig(dataset=name).resolved().image_size == IMAGE_SIZES[name]
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run")))
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["image_size"] == 32 and "store_size" not in stored  # store_size is recorded only when it differs


@pytest.mark.parametrize("name", ["image_size", "store_size"])
def test_a_built_in_dataset_takes_its_own_image_size_and_refuses_the_folder_default(name):
    assert getattr(coreaug.TrainConfig(dataset="digits", **{name: 8}).resolved(), name) == 8
    for value in (64, 32):
        with pytest.raises(coreaug.UsageError, match=f"digits's images are 8 px, so pass 8 or leave {name} out "
                                                     f"\\(got {value}\\)"):
            coreaug.TrainConfig(dataset="digits", **{name: value}).resolved()


def test_a_dataset_registered_by_the_user_records_no_image_size_and_refuses_one(tmp_path, monkeypatch):
    from coreaug.data import registry

    monkeypatch.setitem(registry._LOADERS, "tiny-own", lambda data_dir=None, *, download=False, progress=True:
                        coreaug.load_dataset("synthetic", n_train=64, n_test=32))
    result = coreaug.train(coreaug.TrainConfig(**{**TINY, "dataset": "tiny-own"}, epochs=1, out=str(tmp_path / "run")))
    assert result.config.image_size is None
    assert json.loads((tmp_path / "run" / "config.json").read_text())["image_size"] is None
    assert coreaug.load_run(tmp_path / "run").image_size == 32
    with pytest.raises(coreaug.UsageError, match="tiny-own's images keep their own size, so leave image_size out"):
        coreaug.TrainConfig(dataset="tiny-own", image_size=32).resolved()


def test_a_run_that_recorded_the_folder_default_for_a_built_in_dataset_resumes(tmp_path):
    """Runs of built-in datasets once recorded image_size 64; --resume must not call that other settings."""
    config = {**TINY, "epochs": 2, "out": str(tmp_path / "run")}
    train_to_first_checkpoint(coreaug.TrainConfig(**config))
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**stored, "image_size": 64}))
    resumed = coreaug.train(coreaug.TrainConfig(**config, resume=True))
    assert [m["epoch"] for m in resumed.history] == [0, 1]


def test_missing_inputs_raise_what_the_training_page_says(tmp_path):
    """docs/training.md ("Errors") once said FileNotFoundError for every missing file; load_run, report and
    predict raise UsageError for theirs."""
    with pytest.raises(FileNotFoundError, match="dataset folder"):
        coreaug.TrainConfig(dataset=str(tmp_path / "typo" / "data")).resolved()
    with pytest.raises(FileNotFoundError, match="pretrained weights"):
        coreaug.TrainConfig(**TINY, pretrained=str(tmp_path / "w.pt")).resolved()
    with pytest.raises(coreaug.UsageError, match="is not a folder"):
        coreaug.load_run(tmp_path / "nope")
    with pytest.raises(coreaug.UsageError, match="does not exist"):
        coreaug.bench.write_report(tmp_path / "nope", out=str(tmp_path / "report"))
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run")))
    run = coreaug.load_run(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.read(tmp_path / "no.png")
    for use in (run.predict, run.preprocess):
        with pytest.raises(coreaug.UsageError, match="does not exist") as error:
            use([tmp_path / "no.png"])
        assert not isinstance(error.value, FileNotFoundError)


@pytest.mark.parametrize("field, value", [("val_fraction", 0.5), ("skip_bad_images", True)])
def test_folder_only_settings_are_refused_for_a_built_in_dataset(field, value):
    """`coreaug train --dataset cifar10 --val-fraction 0.5` was accepted and ignored."""
    with pytest.raises(coreaug.UsageError, match=f"{field} applies to a folder of images; digits is a built-in"):
        coreaug.TrainConfig(dataset="digits", **{field: value}).resolved()
    coreaug.TrainConfig(dataset="digits", val_fraction=0.1).resolved()  # the default, as every run records it


def test_policy_names_are_taken_in_any_case_and_recorded_as_listed():
    """create_policy took "RandAugment" but TrainConfig refused it."""
    config = coreaug.TrainConfig(dataset="digits", augment="Weak + MaxLoss").resolved()
    assert config.augment == "weak+maxloss"
    assert coreaug.TrainConfig(dataset="digits", augment="RandAugment").resolved().augment == "randaugment"
