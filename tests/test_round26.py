"""Round 26 of the review: each test fails on the code before its fix."""
import dataclasses

import pytest
import torch

import coreaug


def _register_cell(monkeypatch, name, state):
    """A notebook cell's dataset: its pixels and labels read from `state` when loaded."""
    from coreaug.data import registry

    def load(data_dir=None, *, download=False, progress=True):
        x = torch.zeros(60, 3, 8, 8, dtype=torch.uint8) + state["pixels"][:, None, None, None]
        return coreaug.ImageDataset(name=name, train_images=x, train_labels=state["labels"], test_images=x[:12],
                                    test_labels=state["labels"][:12], num_classes=3, class_names=["a", "b", "c"],
                                    mean=(0.1,) * 3, std=(0.1,) * 3, source="memory")
    monkeypatch.setitem(registry._LOADERS, name, load)


def _stopped_after_one_epoch(tmp_path, name):
    def stop(row):
        raise KeyboardInterrupt

    config = coreaug.TrainConfig(dataset=name, model="cnn", epochs=2, batch_size=16, quiet=True,
                                 out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(config, on_epoch=stop)
    return dataclasses.replace(config, resume=True)


def test_a_resume_on_a_registered_datasets_changed_pixels_is_refused(tmp_path, monkeypatch):
    """note59 (explore25-notebook #4b): a cell run again with other pixels (same labels) resumed silently on
    other data; a registered dataset's training images are hashed into the checkpoint now."""
    state = {"pixels": torch.arange(60, dtype=torch.uint8), "labels": torch.arange(60) % 3}
    _register_cell(monkeypatch, "r26-cell", state)
    resume = _stopped_after_one_epoch(tmp_path, "r26-cell")
    state["pixels"] = torch.arange(60, dtype=torch.uint8) * 2  # other preprocessing
    with pytest.raises(coreaug.UsageError, match=r"holds a run that trained on another training set of r26-cell than "
                                                 r"it has now \(its training images or labels changed\): restore the "
                                                 r"data it started on, or start it again with --overwrite"):
        coreaug.train(resume)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1  # nothing lost
    state["pixels"] = torch.arange(60, dtype=torch.uint8)  # restored: resumes
    result = coreaug.train(resume)
    assert len(result.history) == 2


def test_a_registered_datasets_checkpoint_without_a_hash_resumes(tmp_path, monkeypatch):
    """A checkpoint written before the hash was recorded (no data_content) resumes as it did."""
    state = {"pixels": torch.arange(60, dtype=torch.uint8), "labels": torch.arange(60) % 3}
    _register_cell(monkeypatch, "r26-old", state)
    resume = _stopped_after_one_epoch(tmp_path, "r26-old")
    path = tmp_path / "run" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    assert isinstance(checkpoint["data_content"], str) and len(checkpoint["data_content"]) == 40
    del checkpoint["data_content"]
    torch.save(checkpoint, path)
    assert len(coreaug.train(resume).history) == 2


def test_the_content_hash_sees_pixels_labels_and_shapes():
    from coreaug.data.dataset import content_fingerprint

    x, y = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    base = content_fingerprint(x, y)
    assert content_fingerprint(x.clone(), y.clone()) == base
    changed = x.clone()
    changed[3, 0, 1, 1] = 1
    assert content_fingerprint(changed, y) != base
    assert content_fingerprint(x, torch.tensor([0, 1, 1, 0])) != base
    assert content_fingerprint(x.reshape(4, 1, 1, 4), y) != base
    ramp = torch.arange(16, dtype=torch.uint8).reshape(4, 1, 2, 2)
    strided = ramp.transpose(2, 3).contiguous().transpose(2, 3)  # the same values in another memory layout
    assert not strided.is_contiguous() and content_fingerprint(strided, y) == content_fingerprint(ramp, y)


def test_a_built_in_dataset_is_not_hashed(tmp_path):
    """Built-in datasets are read from their own files: no hash, no start-up cost."""
    from coreaug.data.registry import registered_by_a_user

    assert not registered_by_a_user("digits") and not registered_by_a_user("cifar10")
    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=32, epochs=1, quiet=True,
                                 out=str(tmp_path / "run"))
    coreaug.train(config)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["data_content"] is None


def test_a_whole_cli_run_where_stream_auto_streams_then_resumes_in_memory(tmp_path, monkeypatch):
    """note59 (explore25-pairwise3): no whole run had `--stream auto` choose streaming. Here the host seems to have
    a few kB free: the run streams (and says so) for its first epoch; given a second epoch with memory to spare it
    resumes in memory, and its epochs equal an uninterrupted in-memory run's."""
    import json

    from click.testing import CliRunner

    from coreaug.cli.main import app
    from coreaug.training import inputs
    from test_data_image_folder import write_split

    write_split(tmp_path / "data", "train", per_class=10)
    write_split(tmp_path / "data", "val", per_class=3)
    common = ["train", "--dataset", str(tmp_path / "data"), "--image-size", "12", "--model", "cnn",
              "--batch-size", "8", "--subset", "0.3", "--workers", "0", "--strategy", "coreset", "--select-every", "1",
              "--cache-dir", str(tmp_path / "cache"), "--epochs", "2"]
    seen = []
    real = inputs.should_stream
    monkeypatch.setattr(inputs, "should_stream", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    monkeypatch.setattr(inputs, "available_host_memory", lambda: 4000)
    whole = coreaug.train

    def stop(row):
        raise KeyboardInterrupt
    monkeypatch.setattr(coreaug, "train", lambda config, **kw: whole(config, **kw, on_epoch=stop))
    result = CliRunner().invoke(app, [*common, "--stream", "auto", "--out", str(tmp_path / "auto")])
    assert result.exit_code == 130 and seen == [True] and "\nstreaming 39 images" in result.output, result.output
    monkeypatch.setattr(coreaug, "train", whole)
    monkeypatch.setattr(inputs, "available_host_memory", lambda: 1 << 40)
    result = CliRunner().invoke(app, [*common, "--stream", "auto", "--resume", "--out", str(tmp_path / "auto")])
    assert result.exit_code == 0 and seen == [True, False] and "streaming" not in result.output, result.output
    result = CliRunner().invoke(app, [*common, "--stream", "never", "--out", str(tmp_path / "memory")])
    assert result.exit_code == 0, result.output
    keys = ("train_loss", "test_loss", "test_accuracy", "n_trained", "n_augmented")

    def epochs(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [[row[k] for k in keys] for row in rows]
    assert len(epochs("auto")) == 2 and epochs("auto") == epochs("memory")


def test_ignite_asking_the_ended_pass_once_more_after_the_next_epoch_began_is_not_warned():
    """explore26-frameworks3 #1: ignite takes len(loader) batches, fires EPOCH_STARTED (start_epoch of the next
    epoch), then asks the old iterator once more and, at its StopIteration, makes a new one: with num_workers 0
    every such run was warned that the DataLoader begins another pass over a trained plan, though every epoch
    trained its own. A second pass over one plan is still warned."""
    import warnings

    from test_round24 import _face

    method, train, model = _face(select_every=2)
    loader = torch.utils.data.DataLoader(method.dataset(train), batch_size=8, sampler=method.sampler())
    batches = None
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "the DataLoader begins another pass")
        for epoch in range(3):
            method.start_epoch(epoch, model, train)  # Events.EPOCH_STARTED
            if batches is not None:
                with pytest.raises(StopIteration):
                    next(batches)
            batches = iter(loader)
            plan = method.plan.indices.clone()
            taken = torch.cat([next(batches)[1] for _ in range(len(loader))])
            assert len(taken) == len(plan)
        with pytest.raises(StopIteration):
            next(batches)
    with pytest.warns(coreaug.CallerWarning, match="the DataLoader begins another pass over epoch 2's plan"):
        next(iter(loader))


TINY = dict(dataset="digits", train_limit=64, test_limit=32, epochs=1, quiet=True)


def test_resume_without_out_is_refused_in_python_as_on_the_command_line():
    """explore26-python-api #1: TrainConfig(resume=True) without out trained a new run that nothing kept."""
    with pytest.raises(coreaug.UsageError, match=r"^resume continues the run in out; give out \(--out\)"):
        coreaug.train(coreaug.TrainConfig(**TINY, resume=True))


def test_hooks_that_cannot_take_their_argument_are_refused_before_anything_trains(tmp_path):
    """explore26-python-api #2: an on_epoch written without its argument failed after the first epoch had trained."""
    config = coreaug.TrainConfig(**TINY, out=str(tmp_path / "run"))
    with pytest.raises(coreaug.UsageError, match=r"^on_epoch must be a function called with each epoch's metrics "
                                                 r"\(a dict\): it is called with one argument \(too many"):
        coreaug.train(config, on_epoch=lambda: None)
    with pytest.raises(coreaug.UsageError, match=r"^on_start must be a function called with the run folder's path: "):
        coreaug.train(config, on_start=lambda path, other: None)
    assert not (tmp_path / "run").exists()
    rows = []
    coreaug.train(config, on_epoch=lambda row, *more: rows.append(row), on_start=print)  # builtins pass as they are
    assert len(rows) == 1


def test_a_settings_dict_with_a_flags_spelling_says_the_settings():
    """explore26-python-api #8: train({'train-limit': ...}) gave Python's raw TypeError."""
    with pytest.raises(coreaug.UsageError, match=r"^config has no setting 'train-limit'; did you mean 'train_limit'\?"):
        coreaug.train({"dataset": "digits", "train-limit": 100})
    with pytest.raises(coreaug.UsageError, match=r"^config has no setting 'colour'; TrainConfig's fields are"):
        coreaug.train({"dataset": "digits", "colour": 1})


def test_the_caller_facing_warnings_are_caller_warnings(tmp_path):
    """explore26-python-api #4: a model reused from an earlier run and predict's skipped images were plain
    UserWarnings, which the documented category=coreaug.CallerWarning filter missed."""
    from PIL import Image

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 10))
    coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "a")), model=model)
    with pytest.warns(coreaug.CallerWarning, match="trained by an earlier run") as seen:
        coreaug.train(coreaug.TrainConfig(**TINY, seed=1), model=model)
    assert seen[0].filename == __file__
    Image.new("L", (8, 8), 30).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    trained = coreaug.load_run(str(tmp_path / "a"), model=model)
    with pytest.warns(coreaug.CallerWarning, match="left out 1 unreadable image of 2") as seen:
        trained.predict([str(tmp_path / "good.png"), str(tmp_path / "bad.png")], skip_bad_images=True)
    assert seen[0].filename == __file__


def test_load_run_leaves_the_callers_random_state_alone(tmp_path):
    """explore26-python-api #7: load_run built a freshly initialised model from torch's global generator."""
    coreaug.train(coreaug.TrainConfig(**TINY, out=str(tmp_path / "run")))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    coreaug.load_run(str(tmp_path / "run"))
    assert torch.equal(torch.rand(3), expected)


def test_a_sweeps_tensor_values_are_numbers():
    """explore26-python-api #8: lr=torch.tensor(0.05) (a torch.logspace sweep's) was "not a finite number", and
    betas=np.array([0.9, 0.99]) "must be two numbers" (it is two)."""
    import numpy as np

    config = coreaug.TrainConfig(dataset="digits", lr=torch.logspace(-2, -1, 3)[0], epochs=torch.tensor(2))
    assert config.lr == pytest.approx(0.01) and type(config.lr) is float and config.epochs == 2
    config.validate()
    assert coreaug.TrainConfig(dataset="digits", optimizer="adamw", betas=np.array([0.9, 0.99])).betas == (0.9, 0.99)
    with pytest.raises(coreaug.UsageError, match=r"^milestones is a tensor, tensor\(\[\[0\.5000\]\]\); give one row"):
        coreaug.TrainConfig(dataset="digits", schedule="multistep", milestones=torch.tensor([[0.5]])).validate()
    config.lr = torch.tensor(0.1)  # set after construction
    with pytest.raises(coreaug.UsageError, match=r"^lr is a tensor, tensor\(0\.1000\); give its number: \.item\(\)$"):
        config.validate()


def test_two_datasets_compare_as_objects():
    """explore26-python-api #8: ImageDataset == ImageDataset raised (its tensors compared element-wise)."""
    first, second = coreaug.load_dataset("digits"), coreaug.load_dataset("digits")
    assert first == first and first != second and len({first, second}) == 2


@pytest.mark.parametrize("flags, said", [
    (["--resume", "--overwrite"], "error: --resume continues the run in --out and --overwrite starts it again: pass "
                                  "one of them\n"),
    (["--schedule", "multistep", "--milestones", "0.5", "--warmup-epochs", "1", "--epochs", "2"],
     "give milestones above 0.5 (--milestones), or fewer --warmup-epochs\n"),
    (["--compile-mode", "default"], "error: --compile-mode 'default' applies to a compiled step; add --compile or "
                                    "leave --compile-mode out\n"),
])
def test_the_command_line_says_a_flag_once_in_its_own_words(tmp_path, flags, said):
    """explore26-flags F1, F2: "resume continues the run in out and overwrite ..." kept the API's names, and "fewer
    warmup_epochs (--warmup-epochs)" became "fewer --warmup-epochs (--warmup-epochs)"."""
    from click.testing import CliRunner

    from coreaug.cli.main import app

    result = CliRunner().invoke(app, ["train", "--dataset", "digits", "--out", str(tmp_path / "r"), *flags])
    assert result.exit_code == 2 and result.output.endswith(said), result.output
    assert not (tmp_path / "r").exists()


def _cli(*args):
    from click.testing import CliRunner

    from coreaug.cli.main import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


def _folder(root, splits=("train",), per_class=4):
    from PIL import Image

    for split in splits:
        for c, colour in (("a", (200, 0, 0)), ("b", (0, 200, 0)), ("c", (0, 0, 200))):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (16, 16), tuple(v // (i + 1) for v in colour)).save(root / split / c / f"{i}.png")
    return root


def test_an_empty_value_is_refused_not_read_as_left_out(tmp_path, monkeypatch):
    """explore26-flags #1: `coreaug datasets --clear-cache --cache-dir "$UNSET"` cleared every cache of the default
    folder, and `evaluate RUN --dataset ""` scored the run's own test split."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "default"))
    data = _folder(tmp_path / "imgs", splits=("a", "b", "c"))
    assert _cli("datasets", data / "a").exit_code == 0
    kept = sorted(p.name for p in (tmp_path / "default").iterdir())
    result = _cli("datasets", "--clear-cache", "--cache-dir", "")
    assert result.exit_code == 2 and result.output == ("error: --cache-dir is empty; give a folder, or leave it out "
                                                      "for its default\n")
    assert kept and sorted(p.name for p in (tmp_path / "default").iterdir()) == kept
    assert _cli("train", "--dataset", "digits", "--train-limit", 64, "--test-limit", 32, "--epochs", 1, "-q",
                "--out", tmp_path / "run").exit_code == 0
    for flag, what in (("--dataset", "a registered dataset's name or a folder"), ("--data-dir", "a folder"),
                       ("--model", "an import path, package.module:function")):
        result = _cli("evaluate", tmp_path / "run", flag, "")
        assert result.exit_code == 2 and result.output == f"error: {flag} is empty; give {what}, or leave it out " \
                                                          "for its default\n"


def test_train_refuses_a_bench_grids_folder_and_its_runs_folder(tmp_path):
    """explore26-flags #2: `coreaug train --out GRID` trained into the grid's folder, which bench then refused as a
    run folder."""
    tiny = ["--dataset", "digits", "--train-limit", 64, "--test-limit", 32, "--epochs", 1, "-q"]
    grid = tmp_path / "g"
    assert _cli("bench", *tiny, "--strategies", "random", "--references", "none", "--seeds", 1, "--subsets", 0.3,
                "--out", grid).exit_code == 0
    before = sorted(str(p.relative_to(grid)) for p in grid.rglob("*"))
    result = _cli("train", *tiny, "--out", grid)
    assert result.exit_code == 2 and result.output.startswith(f"error: --out {grid} is a bench grid's folder; ")
    result = _cli("train", *tiny, "--out", grid / "runs")
    assert result.exit_code == 2 and result.output.startswith(f"error: --out {grid / 'runs'} is the runs/ folder of "
                                                              f"the grid {grid}; ")
    assert sorted(str(p.relative_to(grid)) for p in grid.rglob("*")) == before
    assert _cli("train", *tiny, "--out", grid / "runs" / "random-0.3-seed0", "--resume").exit_code == 0  # its run


def test_mistakes_known_from_the_flags_are_refused_before_a_folder_is_decoded(tmp_path, monkeypatch):
    """explore26-flags #4: a --pretrained file that torch never wrote and --stream always with crust were refused
    only once the whole folder was decoded into its cache."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    data = _folder(tmp_path / "imgs", splits=("a", "b", "c"))
    (tmp_path / "bad.pt").write_text("garbage")
    for flags, said in ((["--pretrained", tmp_path / "bad.pt"], "is not a readable torch checkpoint (not a file "
                                                                "torch.save writes"),
                        (["--norm", "pretrained", "--pretrained", tmp_path / "bad.pt"], "is not a readable torch"),
                        (["--stream", "always", "--strategy", "crust"], "mixing copies with partners (strategy "
                                                                        "crust) needs the images in memory")):
        result = _cli("train", "--dataset", data, "--epochs", 1, "-q", "--out", tmp_path / "run", *flags)
        assert result.exit_code == 2 and said in result.output, result.output
        assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_val_fraction_typed_with_a_folders_own_split_is_refused_whatever_its_value(tmp_path):
    """explore26-flags #5: --val-fraction 0.1 (the default's value) with a folder that has val/ was warned as "not
    read by --strategy random"; any other value was refused."""
    data = _folder(tmp_path / "split", splits=("train", "val"))
    said = f"splits off the test images of a folder of class folders; {data} has train/ and its own test split"
    for args in (["train", "--dataset", data, "--out", tmp_path / "run"], ["datasets", data]):
        result = _cli(*args, "--val-fraction", 0.1)
        assert result.exit_code == 2 and said in result.output, result.output


def test_datasets_takes_no_download_with_a_folder_as_train_does(tmp_path, monkeypatch):
    """explore26-flags #9: `coreaug datasets FOLDER --no-download` was refused as "--download applies to a built-in
    dataset" (a flag not typed), though train takes --no-download with a folder."""
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "cache"))
    data = _folder(tmp_path / "imgs", splits=("a", "b", "c"))
    assert _cli("datasets", data, "--no-download").exit_code == 0
    result = _cli("datasets", data, "--download")
    assert result.exit_code == 2 and "--download applies to a built-in dataset" in result.output


def test_review40_regressions_of_this_round(tmp_path):
    """review40: a folder of the user's holding results.md and runs/ was taken for a grid (F1); a functools.wraps
    wrapper was judged by the wrapped function's parameters (F2); 0-d tensors inside betas/milestones were refused
    and a float32 one recorded as 0.05000000074505806 (F6, F7); "pass it as the dataset (--dataset X)" lost its
    noun (F5)."""
    import functools

    import click

    from cli.errors import as_flags

    (tmp_path / "proj" / "runs").mkdir(parents=True)
    (tmp_path / "proj" / "results.md").write_text("# my notes\n")
    assert _cli("train", "--dataset", "digits", "--train-limit", 64, "--test-limit", 32, "--epochs", 1, "-q",
                "--out", tmp_path / "proj").exit_code == 0

    def log(metrics, logger):
        logger.append(metrics)

    seen = []

    @functools.wraps(log)
    def wrapper(metrics):
        log(metrics, seen)
    coreaug.train(coreaug.TrainConfig(**TINY), on_epoch=wrapper)
    assert len(seen) == 1

    config = coreaug.TrainConfig(dataset="digits", optimizer="adamw", lr=torch.tensor(0.05),
                                 betas=(torch.tensor(0.9), 0.999), milestones=[torch.tensor(0.5)])
    assert (config.lr, config.betas, config.milestones) == (0.05, (0.9, 0.999), [0.5])
    config.validate()

    @click.command()
    @click.option("--dataset")
    def command(dataset):
        pass
    with click.Context(command):
        assert as_flags("x holds train/: pass it as the dataset (--dataset x)") == \
            "x holds train/: pass it as the dataset (--dataset x)"
        assert as_flags("give dataset (--dataset x)") == "give --dataset x"


def test_skip_bad_images_skips_a_listed_file_that_is_gone(tmp_path):
    """explore26-flags #6: with --skip-bad-images a dead link was skipped, but one missing line of a --files-from
    list (a file removed after `find` listed it) stopped predict with no rows; without the flag it still does."""
    data = _folder(tmp_path / "imgs", splits=("a", "b", "c"))
    assert _cli("train", "--dataset", data, "--epochs", 1, "-q", "--out", tmp_path / "run").exit_code == 0
    listed = tmp_path / "list.txt"
    listed.write_text(f"{data / 'a' / 'a' / '0.png'}\n{data / 'a' / 'gone.png'}\n")
    result = _cli("predict", tmp_path / "run", "--files-from", listed, "--skip-bad-images")
    assert result.exit_code == 0 and f"skipped: cannot read image {data / 'a' / 'gone.png'} (no such file)" \
        in result.output and f"{data / 'a' / 'a' / '0.png'},1," in result.output, result.output
    refused = _cli("predict", tmp_path / "run", "--files-from", listed)
    assert refused.exit_code == 2 and "gone.png does not exist" in refused.output
    with pytest.warns(coreaug.CallerWarning, match="left out 1 unreadable image of 2"):
        kept = coreaug.load_run(str(tmp_path / "run")).predict(
            [str(data / "a" / "a" / "0.png"), str(data / "gone.png")], skip_bad_images=True)
    assert [p.image for p in kept] == [str(data / "a" / "a" / "0.png")]
