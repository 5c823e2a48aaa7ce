"""Round 25: tests for the code changes (mutants) that no test caught in explore25-mutation2, findings 1 to 22."""
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import coreaug
from coreaug.cli.main import app
from coreaug.errors import UsageError

from test_data_image_folder import COLOURS, write_image

# the note that a changed folder (or another split of it) keeps its earlier decoded cache
pytestmark = pytest.mark.filterwarnings("ignore::coreaug.errors.CachesKept")
DIGITS = ["train", "--dataset", "digits", "--train-limit", "64", "--test-limit", "32", "--epochs", "1", "-q"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _classes(root, per_class=3, size=(8, 8), colours=COLOURS, fmt=None, ext="png"):
    """root/<class>/<i>.<ext>: `per_class` images of each class (a number, or {class: number})."""
    for name, colour in colours.items():
        count = per_class[name] if isinstance(per_class, dict) else per_class
        for i in range(count):
            write_image(root / name / f"{i}.{ext}", colour, size=size, fmt=fmt, seed=i)
    return root


def _levels(root, count, start=0, step=5):
    """root/a/ and root/b/: `count` uniform 8x8 images each, every image of its own grey level (from
    `start`, `step` apart): an image's level tells which file it was decoded from."""
    levels = iter(range(start, 256, step))
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((8, 8, 3), next(levels), np.uint8)).save(root / name / f"{i}.png")
    return root


def _image_levels(images):
    """The grey level of each uniform image of a (N, 3, H, W) uint8 tensor, as a set."""
    return {int(level) for level in images[:, 0, 0, 0]}


def test_a_stop_in_the_first_epoch_of_an_overwrite_leaves_no_old_checkpoint_for_a_resume(tmp_path, monkeypatch):
    """explore25-mutation2 #1: --overwrite's fresh start kept the old run's checkpoint.pt and model.pt until its first
    epoch ended; a run stopped in that window and resumed reported the old run under the new settings."""
    from coreaug.training.run_files import RunFolder

    out = tmp_path / "run"
    assert invoke(*DIGITS, "--seed", "0", "--out", out).exit_code == 0

    def stopped(*args, **kwargs):  # Ctrl-C while the first epoch of the new run trains
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "save_epoch", stopped)
        result = invoke(*DIGITS, "--seed", "1", "--out", out, "--overwrite")
    assert result.exit_code == 130, result.output
    assert not {"checkpoint.pt", "model.pt"} & set(os.listdir(out))  # nothing of the run it replaced
    result = invoke(*DIGITS, "--seed", "1", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["seed"] == 1
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 1


def _face_method(strategy="random", **options):
    labels = torch.arange(40) % 4
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    return coreaug.CoresetAugmentation(labels, strategy=strategy, fraction=0.25, **options), labels, model


def test_the_dataset_face_gives_originals_the_weak_transform_and_copies_the_strong_one():
    """explore25-mutation2 #2: weak and strong could be swapped: every original strongly augmented, the copies
    weakly."""
    method, labels, model = _face_method()
    images = torch.zeros(40, 3, 8, 8)
    dataset = method.dataset(torch.utils.data.TensorDataset(images, labels), weak=lambda x: x + 1,
                             strong=lambda x: x + 100)
    method.start_epoch(0, model, images)
    items = list(method.sampler())
    originals = {float(dataset[i][0].mean()) for i in items if int(i) < 40}
    copies = {float(dataset[i][0].mean()) for i in items if int(i) >= 40}
    assert originals == {1.0} and copies == {100.0}


def test_an_image_rewritten_with_the_same_byte_size_is_decoded_again_and_changes_the_fingerprint(tmp_path):
    """explore25-mutation2 #3: the cache key left out the mtime: a BMP re-saved in place (same size in bytes) kept
    the old pixels from the cache and the old fingerprint."""
    root, cache = tmp_path / "pets", tmp_path / "cache"
    dark = {name: (10, 10, 10) for name in ("cat", "dog")}
    _classes(root, size=(8, 8), colours=dark, fmt="BMP", ext="bmp")
    sizes = {p: p.stat().st_size for p in root.rglob("*.bmp")}
    before = coreaug.load_dataset(str(root), progress=False, cache_dir=str(cache))
    _classes(root, size=(8, 8), colours={name: (240, 240, 240) for name in dark}, fmt="BMP", ext="bmp")
    for path in sizes:
        assert path.stat().st_size == sizes[path]  # the same bytes count: only the mtime tells the edit
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
    after = coreaug.load_dataset(str(root), progress=False, cache_dir=str(cache))
    assert float(before.train_images.float().mean()) < 60 < float(after.train_images.float().mean())
    assert after.fingerprint != before.fingerprint


def _annotate(root, val_classes):
    """root/val/val_annotations.txt labelling val/images/val_<i>.png with val_classes[i] (a TinyImageNet val/)."""
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{i}.png\t{name}\t0\t0\t8\t8\n" for i, name in enumerate(val_classes)))


def test_corrected_val_annotations_relabel_the_cached_val_images_and_change_the_fingerprint(tmp_path):
    """explore25-mutation2 #4: the labels were left out of the cache key: a corrected val_annotations.txt kept the
    old labels (the image files are untouched)."""
    root, cache = tmp_path / "tiny", tmp_path / "cache"
    for name in ("n01", "n02"):  # TinyImageNet's layout: train/<class>/images/, val/images/ and its annotations
        for i in range(3):
            write_image(root / "train" / name / "images" / f"{name}_{i}.png", COLOURS["cat"], size=(8, 8), seed=i)
    for i in range(2):
        write_image(root / "val" / "images" / f"val_{i}.png", COLOURS["dog"], size=(8, 8), seed=i)
    _annotate(root, ["n01", "n01"])
    before = coreaug.load_dataset(str(root), progress=False, cache_dir=str(cache))
    assert [before.class_names[label] for label in before.test_labels] == ["n01", "n01"]
    _annotate(root, ["n02", "n02"])  # corrected: both val images are n02
    after = coreaug.load_dataset(str(root), progress=False, cache_dir=str(cache))
    assert [after.class_names[label] for label in after.test_labels] == ["n02", "n02"]
    assert after.fingerprint != before.fingerprint


def test_a_folder_datasets_mean_and_std_are_its_training_images_not_its_test_images(tmp_path):
    """explore25-mutation2 #5: meta's mean/std (what --norm dataset normalises with) could be the test split's."""
    from coreaug.data.dataset import channel_stats

    for split, level in (("train", 200), ("val", 20)):
        _classes(tmp_path / split, colours={name: (level, level // 2, level) for name in ("cat", "dog")})
    data = coreaug.load_dataset(str(tmp_path), progress=False)
    mean, std = channel_stats(data.train_images)
    assert np.allclose(data.mean, mean, atol=1e-4) and np.allclose(data.std, std, atol=1e-4)
    assert not np.allclose(data.mean, channel_stats(data.test_images)[0], atol=0.1)


def _run_data(**settings):
    from coreaug.training.inputs import load_run_data

    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=32, quiet=True, **settings).resolved()
    return load_run_data(config, torch.device("cpu"))


def test_label_noise_flips_other_labels_for_each_seed_and_the_same_ones_for_one_seed():
    """explore25-mutation2 #6: --label-noise drew from seed 0 whatever --seed: every seed trained on one noise draw."""
    first, again, other = (_run_data(label_noise=0.25, seed=seed) for seed in (0, 0, 1))
    assert first.noisy.any() and other.noisy.any()
    assert torch.equal(first.noisy, again.noisy) and torch.equal(first.train_labels, again.train_labels)
    assert not torch.equal(first.noisy, other.noisy)


def test_train_limit_and_test_limit_draw_the_same_examples_for_every_seed():
    """explore25-mutation2 #7: --train-limit's sample could differ per seed; its help says "the same for every seed"."""
    runs = [_run_data(seed=seed) for seed in (0, 1, 2)]
    for run in runs[1:]:
        assert torch.equal(run.train_images.tensor, runs[0].train_images.tensor)
        assert torch.equal(run.train_labels, runs[0].train_labels)
        assert torch.equal(run.test_images.tensor, runs[0].test_images.tensor)


def test_the_dataset_face_hands_a_copy_its_examples_coreset_weight_with_weight_augmented():
    """explore25-mutation2 #8: the copies could get the originals' weights (1 in append mode): coreset weights lost."""
    method, labels, model = _face_method("coreset", weight_augmented=True)
    torch.manual_seed(0)
    images = torch.rand(40, 3, 8, 8)
    dataset = method.dataset(torch.utils.data.TensorDataset(images, labels))
    method.start_epoch(0, model, images)
    chosen = dict(zip(np.asarray(method.selection.indices).tolist(), np.asarray(method.selection.weights).tolist()))
    assert len(set(chosen.values())) > 1  # weights that tell a copy's weight from another's
    items = list(method.sampler())
    copies = {int(item) - 40: item for item in items if int(item) >= 40}
    assert sorted(copies) == sorted(chosen)
    for index, item in copies.items():
        assert float(dataset[item][2]) == pytest.approx(chosen[index])
    assert {float(dataset[item][2]) for item in items if int(item) < 40} == {1.0}  # append mode: originals weigh 1


def test_a_high_val_fraction_leaves_every_class_an_image_to_train_on(tmp_path):
    """explore25-mutation2 #9: --val-fraction 0.9 could send a small class wholly to the test split."""
    root = _classes(tmp_path / "pets", per_class={"cat": 3, "dog": 15, "fox": 4})
    data = coreaug.load_dataset(str(root), val_fraction=0.9, progress=False)
    train, test = (torch.bincount(labels, minlength=3).tolist() for labels in (data.train_labels, data.test_labels))
    assert min(train) >= 1 and min(test) >= 1
    assert [a + b for a, b in zip(train, test)] == [3, 15, 4]


def test_resume_without_out_is_refused_and_trains_nothing(tmp_path, monkeypatch):
    """explore25-mutation2 #10: `coreaug train --resume` without --out could start a new run in a new folder."""
    monkeypatch.chdir(tmp_path)
    result = invoke(*DIGITS, "--resume")
    assert result.exit_code == 2, result.output
    assert "--resume continues the run in --out; give --out" in result.output
    assert os.listdir(tmp_path) == []


def test_with_both_val_and_test_folders_runs_are_tested_on_val(tmp_path):
    """explore25-mutation2 #11: docs/your-data.md says "With both `val/` and `test/`, runs are tested on `val/`;
    `test/` is not read"."""
    _levels(tmp_path / "train", 4, start=0)
    _levels(tmp_path / "val", 2, start=100)
    _levels(tmp_path / "test", 3, start=180)
    data = coreaug.load_dataset(str(tmp_path), progress=False)
    assert _image_levels(data.test_images) == {100, 105, 110, 115}


def test_a_cache_built_skipping_a_bad_image_is_not_reused_silently_without_skip_bad_images(tmp_path):
    """explore25-mutation2 #12: a cache a --skip-bad-images run built could be reused without the flag, training
    without the bad file and without the error the flag is there to silence."""
    root, cache = _classes(tmp_path / "pets", per_class=4), str(tmp_path / "cache")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image \(first: .*broken\.png"):
        skipped = coreaug.load_dataset(str(root), progress=False, cache_dir=cache, skip_bad_images=True)
    assert len(skipped.train_labels) + len(skipped.test_labels) == 12
    with pytest.raises(UsageError, match=r"cannot read image .*broken\.png"):
        coreaug.load_dataset(str(root), progress=False, cache_dir=cache)


def test_start_epoch_refuses_a_dataset_in_another_order_than_the_labels():
    """explore25-mutation2 #13: the label check of the scored batches could go: a shuffled dataset was scored
    silently, the selection computed on other examples' gradients."""
    method, labels, model = _face_method("coreset")
    generator = torch.Generator().manual_seed(0)
    images, shuffled = torch.rand(40, 3, 8, 8, generator=generator), torch.randperm(40, generator=generator)
    data = torch.utils.data.TensorDataset(images[shuffled], labels[shuffled])
    with pytest.raises(UsageError, match="pass the training set in the order of the labels"):
        method.start_epoch(0, model, data)


def test_the_continue_line_of_a_stopped_overwrite_run_resumes_it(tmp_path, monkeypatch):
    """explore25-mutation2 #14: the command printed for a stopped `--overwrite` run could carry --overwrite, which
    --resume refuses beside it."""
    import shlex

    out = tmp_path / "run"
    real_train = coreaug.train

    def stop(row):  # Ctrl-C once the first epoch is saved
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(coreaug, "train", lambda config, **kwargs: real_train(config, on_epoch=stop, **kwargs))
        result = invoke(*DIGITS[:-3], "--epochs", "2", "-q", "--out", out, "--overwrite")
    assert result.exit_code == 130, result.output
    line = [line for line in result.stderr.splitlines() if "continue it with: " in line][0]
    assert "stopped after epoch 1 of 2" in line
    words = shlex.split(line.split("continue it with: ")[1])
    assert "--resume" in words and "--overwrite" not in words
    result = invoke(*words[words.index("train"):])
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_summary_json_records_the_fingerprint_of_a_folder_datasets_files(tmp_path):
    """explore25-mutation2 #15: summary.json's data.fingerprint (what `coreaug report` and bench tell a folder's
    versions apart by) could be null."""
    root = _classes(tmp_path / "pets", per_class=4)
    coreaug.train(coreaug.TrainConfig(dataset=str(root), model="cnn", epochs=1, batch_size=4, quiet=True,
                                      out=str(tmp_path / "run")))
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["data"]["fingerprint"]
    assert recorded == coreaug.load_dataset(str(root), progress=False).fingerprint
    write_image(root / "cat" / "0.png", COLOURS["fox"], size=(8, 8))
    assert coreaug.load_dataset(str(root), progress=False).fingerprint != recorded


def test_bench_resumes_a_finished_run_whose_metrics_file_was_cut_short(tmp_path):
    """explore25-mutation2 #16: a run with a damaged metrics.jsonl beside its checkpoint could count as finished:
    skipped, never repaired, its tables read from the damaged file."""
    grid = ["bench", *DIGITS[1:], "--subsets", "0.3", "--strategies", "random", "--references", "none",
            "--seeds", "1", "--out", tmp_path / "grid"]
    assert invoke(*grid).exit_code == 0
    metrics = tmp_path / "grid" / "runs" / "random-0.3-seed0" / "metrics.jsonl"
    whole = metrics.read_text()
    with open(metrics, "a") as f:
        f.write('{"epoch": 1, "train_lo')  # a copy cut short
    result = invoke(*grid)
    assert result.exit_code == 0, result.output
    assert metrics.read_text() == whole  # resumed: its rows written again from the checkpoint


def test_a_cache_labels_file_holding_fewer_labels_than_images_is_refused_naming_the_folder(tmp_path):
    """explore25-mutation2 #17: a decoded cache whose labels file is one short could load (8 images, 7 labels)."""
    root, cache = _classes(tmp_path / "pets", per_class=5), tmp_path / "cache"
    coreaug.load_dataset(str(root), progress=False, cache_dir=str(cache))
    labels, = cache.glob("*/train.labels.npy")
    np.save(labels, np.load(labels)[:-1])  # an edit or a partial copy
    with pytest.raises(UsageError, match=rf"train\.labels\.npy holds \d+ labels, not the \d+ of its images; delete "
                                         rf".*{labels.parent.name} to rebuild"):
        coreaug.load_dataset(str(root), progress=False, cache_dir=str(cache))


def test_a_registered_datasets_mean_in_0_255_units_is_refused(monkeypatch):
    """explore25-mutation2 #18: a loader's mean/std in 0-255 units could be accepted (inputs near -125: no training)."""
    from coreaug.data import registry

    def load(data_dir=None, *, download=False, progress=True):
        x, y = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8), torch.arange(20) % 2
        return coreaug.ImageDataset(name="r25-units", train_images=x, train_labels=y, test_images=x, test_labels=y,
                                    num_classes=2, class_names=["a", "b"], mean=(125.3, 123.0, 113.9),
                                    std=(63.0, 62.1, 66.7), source="generated")
    monkeypatch.setitem(registry._LOADERS, "r25-units", load)
    with pytest.raises(UsageError, match=r"mean \(125.3, 123.0, 113.9\) is outside \[0, 1\].*divide by 255"):
        coreaug.load_dataset("r25-units")


def test_a_folder_without_val_is_split_by_a_seeded_draw_of_round_val_fraction_per_class(tmp_path):
    """explore25-mutation2 #19: the test split could be each class's first files (the seed doing nothing), or
    int(val_fraction * n) images rather than the round() the docstring promises."""
    root = _levels(tmp_path / "pets", 15)
    splits = {seed: coreaug.load_dataset(str(root), val_fraction=0.1, seed=seed, progress=False) for seed in (0, 1)}
    again = coreaug.load_dataset(str(root), val_fraction=0.1, seed=0, progress=False)
    assert _image_levels(again.test_images) == _image_levels(splits[0].test_images)
    assert _image_levels(splits[0].test_images) != _image_levels(splits[1].test_images)
    for data in splits.values():
        assert torch.bincount(data.test_labels).tolist() == [2, 2]  # round(0.1 * 15) = 2 of each class of 15
        assert _image_levels(data.train_images) | _image_levels(data.test_images) == set(range(0, 150, 5))


def test_a_cache_folder_inside_the_dataset_is_refused_and_a_hidden_one_is_not(tmp_path):
    """explore25-mutation2 #20: the refusal could go: the first run trained, the next read the cache as a class."""
    root = _classes(tmp_path / "pets")
    for _ in range(2):  # and again: the first refusal made no folder a second run would read as a class
        with pytest.raises(UsageError, match=r"the decoded-image cache .*decoded is inside .*, where it would be read "
                                             r"as part of the dataset"):
            coreaug.load_dataset(str(root), progress=False, cache_dir=str(root / "decoded"))
    assert not (root / "decoded").exists()
    data = coreaug.load_dataset(str(root), progress=False, cache_dir=str(root / ".cache"))
    assert data.class_names == ["cat", "dog", "fox"]


def test_a_large_jpeg_is_decoded_at_the_smallest_scale_that_keeps_twice_the_size(tmp_path, monkeypatch):
    """explore25-mutation2 #21: the JPEG draft could keep only the size itself, not twice it: blurrier images."""
    from coreaug.data.image_folder import decode_square

    path = tmp_path / "stripes.jpg"
    stripes = ((np.sin(np.arange(512) / 3.0) * 0.5 + 0.5) * 255).astype(np.uint8)[None, :].repeat(512, 0)
    Image.fromarray(np.stack([stripes, stripes.T, stripes // 2], -1)).save(path, quality=95)
    opened, real_open = [], Image.open
    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", lambda *a, **k: opened.append(real_open(*a, **k)) or opened[-1])
        decoded = decode_square(str(path), 64).astype(int)
    assert 2 * 64 <= min(opened[0].size) < 4 * 64  # 1/4 scale: 128 px, not 1/8 (64 px)
    with Image.open(path) as image:
        full = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR)).astype(int)
    with Image.open(path) as image:
        image.draft("RGB", (64, 64))
        small = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR)).astype(int)
    # closer to a resize of the whole image than to one of the draft at the size itself
    assert np.abs(decoded - full).mean() < np.abs(decoded - small).mean()


def test_input_checks_store_size_32_bit_levels_the_smallest_own_size_and_val_fraction_1(tmp_path):
    """explore25-mutation2 #22: store_size below image_size, int32 pixels over 255, a folder of 4x4 images (own size
    4, not 64) and val_fraction=1 were not pinned by a test."""
    from coreaug.data.image_folder import decode_square

    root = _classes(tmp_path / "pets", size=(16, 16))
    with pytest.raises(UsageError, match=r"store_size must be an integer >= image_size \(16\), got 8"):
        coreaug.load_dataset(str(root), image_size=16, store_size=8, progress=False)
    with pytest.raises(ValueError, match=r"32-bit integer pixels \(1000\.\.1000\), whose range is not known"):
        decode_square(Image.fromarray(np.full((8, 8), 1000, np.int32)), 8)
    assert decode_square(Image.fromarray(np.full((8, 8), 200, np.int32)), 8)[0, 0].tolist() == [200] * 3
    tiny = _classes(tmp_path / "tiny", size=(4, 4))
    assert coreaug.load_dataset(str(tiny), progress=False).train_images.shape[-2:] == (4, 4)
    with pytest.raises(UsageError, match=r"val_fraction must be in \(0, 1\), got 1"):
        coreaug.load_dataset(str(root), val_fraction=1, progress=False)


def test_a_full_disk_stops_the_grid_rather_than_failing_its_runs_one_by_one():
    """explore25-mutation2 (final report) #11: an ENOSPC naming the run's own checkpoint.pt could fail that run
    alone, and the grid go on to fail every other run the same way."""
    import errno
    import types

    from coreaug.bench.grid import GridRun, fails_run_alone

    run = GridRun("random-0.3-seed0", "random", 0.3, 0, types.SimpleNamespace(out="/g/runs/random-0.3-seed0"))
    assert fails_run_alone(ValueError(f"cannot read {run.folder}/metrics.jsonl"), run)  # a damaged run: alone
    for code in (errno.ENOSPC, errno.EROFS):
        assert not fails_run_alone(OSError(code, os.strerror(code), os.path.join(run.folder, "checkpoint.pt")), run)


def test_bench_refuses_an_out_folder_holding_tables_of_no_grid_and_shard_zero(tmp_path):
    """explore25-mutation2 (final report) #17, #18: a user's own results.md could be replaced by a grid's; --shard 0/4
    (a job array counted from 0) could be taken and train nothing."""
    out = tmp_path / "notes"
    out.mkdir()
    (out / "results.md").write_text("my own notes\n")
    grid = ["bench", *DIGITS[1:], "--subsets", "0.3", "--strategies", "random", "--references", "none", "--seeds", "1"]
    result = invoke(*grid, "--out", out)
    assert result.exit_code == 2 and "holds results.md but no grid" in result.output
    assert (out / "results.md").read_text() == "my own notes\n" and sorted(os.listdir(out)) == ["results.md"]
    result = invoke(*grid, "--out", tmp_path / "grid", "--shard", "0/4")
    assert result.exit_code == 2 and "--shard must be I/N" in result.output and not (tmp_path / "grid").exists()


def test_an_archive_unpacking_to_over_200_times_its_size_in_many_lines_is_refused(tmp_path):
    """explore25-mutation2 (final report) #19: the decompression-bomb budget could stop shrinking line by line: a
    small .xz of many lines was read to its end (the guard's tests used one long line)."""
    import lzma

    from coreaug.bench.archive import read_archive

    path = tmp_path / "grid.runs.jsonl.xz"
    path.write_bytes(lzma.compress((" " * 4095 + "\n").encode() * 17000, preset=1))  # ~10 KB unpacking to 70 MB
    with pytest.raises(UsageError, match=r"unpacks to over 200 times its size \(at line \d+\)"):
        read_archive(str(path))


def test_a_metrics_row_that_is_json_but_no_object_counts_as_damaged():
    """explore25-mutation2 (not run in its report) RF5: a row of valid JSON that is no object (a number, a list: a file
    edited or merged by hand) could pass as readable, and a finished run's --resume report from it."""
    import tempfile

    from coreaug.training.run_files import damaged_results

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
            f.write('{"epoch": 1}\n')
        assert not damaged_results(folder)
        for row in ("42", "[1, 2]", "null"):
            with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
                f.write('{"epoch": 1}\n' + row + "\n")
            assert damaged_results(folder), row


def test_a_resume_may_evaluate_at_another_interval(tmp_path):
    """explore25-mutation2 RF9: --eval-every changes what a run measures, not what it trains: a --resume with
    another one goes on (the CHANGELOG says so) where a compared setting would refuse it."""
    import dataclasses

    out = tmp_path / "run"

    def stop(row):
        raise KeyboardInterrupt
    config = coreaug.TrainConfig(dataset="digits", train_limit=64, test_limit=32, epochs=2, eval_every=1, quiet=True,
                                 out=str(out))
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(config, on_epoch=stop)
    result = coreaug.train(dataclasses.replace(config, eval_every=2, resume=True))
    assert len(result.history) == 2


def test_a_channel_constant_over_the_training_set_normalises_to_zero_not_nan():
    """explore25-mutation2 IN2: the spread's floor could go: a channel of std 0 (a blue channel always 0) made every
    input, and so every loss, NaN."""
    from coreaug.training.inputs import Normalize

    normalise = Normalize((0.5, 0.0, 0.5), (0.2, 0.0, 0.2), torch.device("cpu"))
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[:, 0] = 255
    out = normalise(images)
    assert torch.isfinite(out).all() and torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))


def test_a_train_limit_that_draws_one_class_is_refused():
    """explore25-mutation2 IN4: --train-limit 1 (or a tiny limit of a many-class set) trained a one-class classifier
    to 100% without a word."""
    with pytest.raises(UsageError, match=r"--train-limit 1 drew training examples of one class only .* a classifier "
                                         r"needs two classes or more: raise the limit"):
        coreaug.train(coreaug.TrainConfig(dataset="digits", train_limit=1, test_limit=32, epochs=1, quiet=True))


def test_the_continue_line_keeps_switches_turned_off_and_counts_no_epoch_without_a_checkpoint(tmp_path, monkeypatch):
    """explore25-mutation2 T2, T6: the printed command could drop a `--no-X` switch (the resume then refused as
    other settings), and say epochs were kept where no checkpoint.pt is (a resume starts again from the first)."""
    import shlex

    from coreaug.training.run_files import epochs_kept

    out = tmp_path / "run"
    real_train = coreaug.train

    def stop(row):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(coreaug, "train", lambda config, **kwargs: real_train(config, on_epoch=stop, **kwargs))
        result = invoke(*DIGITS[:-3], "--epochs", "2", "-q", "--no-nesterov", "--out", out)
    assert result.exit_code == 130, result.output
    line = [line for line in result.stderr.splitlines() if "continue it with: " in line][0]
    words = shlex.split(line.split("continue it with: ")[1])
    assert "--no-nesterov" in words
    assert invoke(*words[words.index("train"):]).exit_code == 0
    assert epochs_kept(out) == 2
    (out / "checkpoint.pt").unlink()
    assert epochs_kept(out) == 0
