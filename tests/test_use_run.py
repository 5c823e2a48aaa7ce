"""A finished run gives a model to use: model.pt, `coreaug predict`, `coreaug evaluate`, `coreaug.load_run`."""
import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import coreaug
from coreaug.data.image_folder import load_image_folder

from test_data_image_folder import COLOURS, write_image, write_split


def cli_process(*args, cwd=None):
    """The command as users run it, `python -m coreaug` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "coreaug", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def cli(*args):
    """The command in this process (a `python -m coreaug` start costs about 2 s): its exit code and
    its stdout and stderr apart, as `cli_process` gives them (a few tests run that, the entry point whole)."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from coreaug.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, exit_code=result.exit_code, stdout=result.stdout,
                           stderr=result.stderr)




@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder of three colour classes (train/ and test/) and a finished 3-epoch run on it."""
    root = tmp_path_factory.mktemp("use")
    write_split(root / "data", "train", per_class=12)
    write_split(root / "data", "test", per_class=4)
    result = coreaug.train(coreaug.TrainConfig(
        dataset=str(root / "data"), image_size=16, model="cnn", epochs=3, batch_size=12, subset=0.25,
        quiet=True, cache_dir=str(root / "cache"), out=str(root / "run")))
    return root, result


def test_a_finished_run_holds_its_weights_with_what_using_them_needs(finished):
    root, result = finished
    state = torch.load(root / "run" / "model.pt", weights_only=True)
    assert state["model"] == "cnn" and (state["in_channels"], state["num_classes"]) == (3, 3)
    assert state["class_names"] == ["cat", "dog", "fox"] and state["image_size"] == 16
    assert len(state["mean"]) == len(state["std"]) == 3
    assert state["config"]["dataset"] == str(root / "data") and state["config"]["epochs"] == 3
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(state["state_dict"][name], tensor.cpu())


def test_load_run_reads_an_image_as_the_run_evaluated_it(finished):
    root, _ = finished
    trained = coreaug.load_run(root / "run")
    evaluated = load_image_folder(root / "data", image_size=16, progress=False, cache_dir=str(root / "cache"))
    assert torch.equal(trained.read(root / "data" / "test" / "dog" / "2.jpg"), evaluated.test_images[4 + 2])
    assert not trained.model.training and trained.class_names == ["cat", "dog", "fox"]


def test_predictions_on_the_test_images_agree_with_the_runs_test_accuracy(finished):
    root, result = finished
    proc = cli("predict", root / "run", root / "data" / "test", "--top-k", "1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    predictions = json.loads(proc.stdout)
    assert len(predictions) == 12
    correct = sum(p["classes"][0] == p["image"].split("/")[-2] for p in predictions)
    assert correct / len(predictions) == pytest.approx(result.final_test_accuracy, abs=1e-9)


def test_load_run_predicts_new_images_of_the_classes_as_well_as_the_run_tested(finished):
    root, result = finished
    new = {c: root / "new" / f"{c}.png" for c in COLOURS}
    for seed, (c, path) in enumerate(new.items(), 100):
        write_image(path, COLOURS[c], size=(50, 35), seed=seed)
    predictions = coreaug.load_run(root / "run").predict(list(new.values()))
    accuracy = sum(p.classes[0] == c for p, c in zip(predictions, new)) / len(new)
    assert result.final_test_accuracy == 1.0 and accuracy == 1.0


def test_predict_takes_folders_as_the_cli_does_and_an_empty_list(finished):
    root, _ = finished
    run = coreaug.load_run(root / "run")
    folder = root / "data" / "test"
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    by_folder = run.predict([folder], top_k=np.int64(2))
    assert [p.image for p in by_folder] == files and all(len(p.classes) == 2 for p in by_folder)
    assert [p.classes for p in by_folder] == [p.classes for p in run.predict(files, top_k=2)]
    assert run.predict([]) == [] and run.probabilities([]).shape == (0, 3)
    (root / "empty").mkdir()
    with pytest.raises(coreaug.UsageError, match="holds no images"):
        run.predict([root / "empty"])


def test_predict_decodes_a_folder_a_batch_at_a_time_at_the_runs_cpu_batch(finished, monkeypatch):
    from coreaug.training.trained import TrainedModel

    root, _ = finished
    run = coreaug.load_run(root / "run")
    assert run.batch_size == 12  # the run's training batch on the CPU, as the trainer's no-grad passes
    whole = run.probabilities([root / "data" / "test"])
    decoded = []
    real_batch = TrainedModel._batch
    monkeypatch.setattr(TrainedModel, "_batch", lambda self, images: decoded.append(len(images))
                        or real_batch(self, images))
    assert torch.allclose(run.probabilities([root / "data" / "test"], batch_size=5), whole, atol=1e-6)
    assert decoded == [5, 5, 2]  # 12 files: never every image in memory at once


def test_a_list_holding_a_tensor_is_one_usage_error_naming_the_forms(finished):
    """It was a TypeError traceback from os.path.isdir."""
    root, _ = finished
    trained = coreaug.load_run(root / "run")
    image = trained.read(root / "data" / "test" / "dog" / "2.jpg")
    with pytest.raises(coreaug.UsageError, match="a list of images holds a Tensor; .* one uint8 tensor"):
        trained.predict([image])
    assert len(trained.predict(image.unsqueeze(0))) == 1


def test_evaluate_prints_accuracy_overall_and_per_class(finished):
    root, result = finished
    proc = cli("evaluate", root / "run", "--dataset", root / "data")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    correct = round(result.final_test_accuracy * 12)
    assert lines[0].startswith(f"accuracy {result.final_test_accuracy:.2%} ({correct}/12)")
    assert [line.split()[0] for line in lines[1:]] == ["cat", "dog", "fox"]
    assert all(line.endswith("/4)") for line in lines[1:])


def test_predict_csv_gives_the_top_k_classes_of_each_image_most_probable_first(finished):
    root, _ = finished
    proc = cli("predict", root / "run", root / "data" / "test" / "cat" / "0.jpg", root / "data" / "test" / "fox",
               "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 2 * 5 and [r["rank"] for r in rows[:4]] == ["1", "2", "1", "2"]
    assert rows[0]["image"].endswith("cat/0.jpg") and rows[2]["image"].endswith("fox/0.jpg")
    assert float(rows[0]["probability"]) >= float(rows[1]["probability"]) > 0


def test_predict_names_an_unreadable_image_in_one_line_exit_2(finished, tmp_path):
    root, _ = finished
    write_image(tmp_path / "good.png", COLOURS["cat"])
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    proc = cli("predict", root / "run", tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "cannot read image" in proc.stderr and "broken.jpg" in proc.stderr


def test_an_unreadable_image_is_named_whole_whatever_its_name_holds(finished, tmp_path):
    """predict once cut the reason out of the message at "; give ", so a file named with it lost its name."""
    root, _ = finished
    write_image(tmp_path / "good.png", COLOURS["cat"])
    bad = tmp_path / "bad; give this.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(coreaug.UsageError) as caught:
        coreaug.load_run(root / "run").read(bad)
    assert caught.value.what.startswith(f"cannot read image {bad} (") and str(caught.value).startswith(caught.value.what)
    proc = cli("predict", root / "run", tmp_path, "--top-k", "1", "--skip-bad-images")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"skipped: cannot read image {bad} (")


def test_a_run_that_is_not_finished_is_one_line_exit_2(finished, tmp_path):
    root, _ = finished
    shutil.copytree(root / "run", tmp_path / "run")
    (tmp_path / "run" / "model.pt").unlink()  # what a run stopped before its end leaves
    (tmp_path / "run" / "summary.json").unlink()
    proc = cli("predict", tmp_path / "run", root / "data" / "test")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not finished (3 of 3 epochs done" in proc.stderr and "--resume" in proc.stderr


def test_a_folder_that_holds_no_run_is_one_line_exit_2(tmp_path):
    for command in (["predict", tmp_path, tmp_path], ["evaluate", tmp_path]):
        proc = cli(*command)
        assert proc.exit_code == 2 and proc.stderr.count("\n") == 1
        assert "holds no coreaug run" in proc.stderr



def test_load_run_preprocesses_an_image_file_into_the_input_the_run_evaluated(finished):
    root, result = finished
    trained = coreaug.load_run(root / "run")
    path = root / "data" / "test" / "fox" / "1.jpg"
    evaluated = load_image_folder(root / "data", image_size=16, progress=False, cache_dir=str(root / "cache"))
    expected = (evaluated.test_images[8 + 1:8 + 2].float() / 255 - torch.tensor(evaluated.mean).view(1, 3, 1, 1)) \
        / torch.tensor(evaluated.std).view(1, 3, 1, 1)
    torch.testing.assert_close(trained.preprocess([path]), expected)


def test_evaluate_finds_the_runs_own_dataset_where_the_run_found_it(tmp_path):
    from test_data_cifar import write_cifar10

    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", per_batch=20)
    result = coreaug.train(coreaug.TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "data"), model="cnn",
                                               epochs=1, batch_size=32, quiet=True, out=str(tmp_path / "run")))
    proc = cli("evaluate", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"accuracy {result.final_test_accuracy:.2%}") and "test split of cifar10" in proc.stdout


def test_a_run_stored_larger_than_it_trains_predicts_on_the_centre_crop_it_evaluated(tmp_path):
    write_split(tmp_path / "data", "train", per_class=8)
    write_split(tmp_path / "data", "test", per_class=4)
    result = coreaug.train(coreaug.TrainConfig(
        dataset=str(tmp_path / "data"), image_size=16, store_size=20, weak="resized-crop", model="cnn", epochs=2,
        batch_size=12, subset=0.25, quiet=True, cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run")))
    trained = coreaug.load_run(tmp_path / "run")
    assert (trained.image_size, trained.store_size) == (16, 20)
    assert trained.read(tmp_path / "data" / "test" / "dog" / "1.jpg").shape == (3, 20, 20)
    assert trained.preprocess(tmp_path / "data" / "test" / "dog" / "1.jpg").shape == (1, 3, 16, 16)
    assert trained.evaluate(str(tmp_path / "data")).accuracy == pytest.approx(result.final_test_accuracy)


def test_a_registered_datasets_run_records_the_size_it_trained_at_and_refuses_a_folders_sizes(tmp_path):
    """image_size and store_size size a folder's images; digits keep their 8x8, and the run says so
    (its model file once said 64, the folder default, and image_size=4 was ignored in training but
    cropped in evaluate)."""
    result = coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=100, quiet=True,
                                               out=str(tmp_path / "run")))
    run = coreaug.load_run(tmp_path / "run")
    assert (run.image_size, run.store_size) == (8, 8)
    assert run.evaluate().accuracy == pytest.approx(result.final_test_accuracy)
    for name in ("image_size", "store_size"):
        with pytest.raises(coreaug.UsageError, match=f"{name} sizes the images of a folder dataset; digits's"):
            coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, quiet=True, out=str(tmp_path / name),
                                              **{name: 4}))
        assert not (tmp_path / name).exists()


def test_evaluate_and_predict_take_the_devices_train_takes(finished):
    root, _ = finished
    for command in (["evaluate", root / "run"], ["predict", root / "run", root / "data" / "test" / "cat" / "0.jpg"]):
        proc = cli_process(*command, "--device", "auto")  # python -m coreaug evaluate and predict, whole
        assert proc.returncode == 0, proc.stderr
    assert coreaug.load_run(root / "run", device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps", "cuda:99"])
def test_a_device_train_refuses_is_one_line_exit_2_in_evaluate_and_predict(finished, device):
    root, _ = finished
    for command in (["evaluate", root / "run"], ["predict", root / "run", root / "data" / "test" / "cat" / "0.jpg"]):
        proc = cli(*command, "--device", device)
        assert proc.exit_code == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert f"device {device!r}" in proc.stderr or f"got {device!r}" in proc.stderr
    with pytest.raises(coreaug.UsageError, match="device"):
        coreaug.load_run(root / "run", device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_line_exit_2(finished):
    root, _ = finished
    proc = cli("evaluate", root / "run", "--device", "cuda")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "torch sees no CUDA device; use --device cpu" in proc.stderr


def test_predict_reads_a_folder_as_training_does_without_hidden_files_or_macos_metadata(finished, tmp_path):
    root, _ = finished
    for name in ("ok.png", ".hidden.png", ".hid/y.png", "__MACOSX/x.png", "sub/kept.png"):
        write_image(tmp_path / name, COLOURS["cat"])
    (tmp_path / "._ok.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # what macOS leaves beside ok.png
    expected = [str(tmp_path / "ok.png"), str(tmp_path / "sub" / "kept.png")]
    assert [p.image for p in coreaug.load_run(root / "run").predict(tmp_path)] == expected
    proc = cli("predict", root / "run", tmp_path, "--top-k", "1")
    assert proc.returncode == 0, proc.stderr
    assert [row["image"] for row in csv.DictReader(io.StringIO(proc.stdout))] == expected


def _many_images_and_one_bad(folder, bad_bytes, count=300):
    """`count` good images (more than predict's chunk of 256) and zz_bad.png, which sorts last."""
    write_image(folder / "img000.png", COLOURS["dog"])
    for i in range(1, count):
        shutil.copyfile(folder / "img000.png", folder / f"img{i:03d}.png")
    (folder / "zz_bad.png").write_bytes(bad_bytes)


def _truncated_png(tmp_path):
    """A PNG cut after its header: Pillow opens it, and fails only when decoding its pixels."""
    write_image(tmp_path / "whole.png", COLOURS["fox"], size=(64, 64))
    return (tmp_path / "whole.png").read_bytes()[:200]


def test_predict_stops_before_printing_anything_when_a_file_is_not_an_image(finished, tmp_path):
    root, _ = finished
    _many_images_and_one_bad(tmp_path / "many", b"not an image at all")
    proc = cli("predict", root / "run", tmp_path / "many", "--top-k", "1")
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1
    assert "zz_bad.png" in proc.stderr and "--skip-bad-images" in proc.stderr


def test_predict_names_an_image_damaged_past_its_header_and_the_rows_printed_before_it(finished, tmp_path):
    root, _ = finished
    _many_images_and_one_bad(tmp_path / "many", _truncated_png(tmp_path))
    proc = cli("predict", root / "run", tmp_path / "many", "--top-k", "1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "zz_bad.png (image file is truncated)" in proc.stderr
    assert "rows of the 256 images before it were printed" in proc.stderr and "--skip-bad-images" in proc.stderr


def test_predict_skip_bad_images_leaves_unreadable_images_out_named_and_counted(finished, tmp_path):
    root, _ = finished
    _many_images_and_one_bad(tmp_path / "many", _truncated_png(tmp_path))
    (tmp_path / "many" / "zz_junk.png").write_bytes(b"not an image at all")
    for fmt in ("csv", "json"):
        proc = cli("predict", root / "run", tmp_path / "many", "--top-k", "1", "--format", fmt, "--skip-bad-images")
        assert proc.returncode == 0, proc.stderr
        images = ([row["image"] for row in csv.DictReader(io.StringIO(proc.stdout))] if fmt == "csv"
                  else [p["image"] for p in json.loads(proc.stdout)])
        assert len(images) == 300 and not any("zz_" in image for image in images)
        assert proc.stderr.splitlines()[-1] == "skipped 2 unreadable images of 302"
        assert "zz_bad.png" in proc.stderr and "zz_junk.png" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_reads_a_folder_as_its_run_did_cache_and_unreadable_images_included(tmp_path, monkeypatch):
    """It decoded into ~/.cache and stopped at an image the run had left out with --skip-bad-images."""
    write_split(tmp_path / "data", "train", per_class=6)
    write_split(tmp_path / "data", "test", per_class=2)
    (tmp_path / "data" / "train" / "cat" / "bad.jpg").write_text("not an image")
    result = coreaug.train(coreaug.TrainConfig(dataset=str(tmp_path / "data"), model="cnn", epochs=1, batch_size=6,
                                               quiet=True, skip_bad_images=True, cache_dir=str(tmp_path / "cache"),
                                               out=str(tmp_path / "run")))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    evaluation = coreaug.load_run(tmp_path / "run").evaluate()
    assert evaluation.accuracy == pytest.approx(result.final_test_accuracy) and not (tmp_path / "home").exists()


def test_a_one_channel_run_evaluates_a_folder_read_in_grayscale_as_predict_reads_its_files(tmp_path):
    """evaluate decoded the folder in RGB and refused its (N, 3, 8, 8) images: no one-channel run
    could be scored on a folder. Now it scores the images predict reads, one for one."""
    from PIL import Image

    from coreaug.data import load_dataset

    coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=200, quiet=True,
                                      out=str(tmp_path / "run")))
    digits = load_dataset("digits", progress=False)
    files, labels = [], []
    for i in range(60):
        label = str(int(digits.test_labels[i]))
        for split in ("train", "val"):
            (tmp_path / "folder" / split / label).mkdir(parents=True, exist_ok=True)
        path = tmp_path / "folder" / "val" / label / f"{i}.png"
        Image.fromarray(digits.test_images[i, 0].numpy(), "L").save(path)
        Image.fromarray(digits.test_images[i, 0].numpy(), "L").save(tmp_path / "folder" / "train" / label / f"{i}.png")
        files.append(path)
        labels.append(label)
    run = coreaug.load_run(tmp_path / "run")
    evaluation = run.evaluate(str(tmp_path / "folder"))
    predicted = [p.classes[0] for p in run.predict(files)]
    assert evaluation.total == 60 and evaluation.correct == sum(p == y for p, y in zip(predicted, labels))
    proc = cli("evaluate", tmp_path / "run", "--dataset", tmp_path / "folder")
    assert proc.returncode == 0 and f"({evaluation.correct}/60)" in proc.stdout, proc.stderr


def test_evaluate_on_a_dataset_of_other_images_names_both_kinds_in_one_line(tmp_path):
    coreaug.train(coreaug.TrainConfig(dataset="digits", epochs=1, train_limit=100, quiet=True,
                                      out=str(tmp_path / "run")))
    proc = cli("evaluate", tmp_path / "run", "--dataset", "synthetic")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "the run's model takes 1-channel 8 px images, synthetic has 3-channel 32 px ones" in proc.stderr


def test_grayscale_is_pillows_luma_of_rgb_pixels():
    from PIL import Image

    from coreaug.training.trained import grayscale

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    assert np.array_equal(grayscale(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy(), expected)


def test_evaluate_reads_a_folders_test_images_from_its_cache_in_batches_never_the_training_split(finished, monkeypatch):
    """It loaded both splits into memory: an ImageNet-sized folder's training split would not fit."""
    from coreaug.data.disk_images import DiskImages

    root, result = finished
    read, original = [], DiskImages.read

    def counted(self, rows, pin=False):
        images = original(self, rows, pin)
        read.append(len(images))
        return images

    monkeypatch.setattr(DiskImages, "read", counted)
    monkeypatch.setattr(DiskImages, "load", lambda self: pytest.fail("a whole split was loaded into memory"))
    evaluation = coreaug.load_run(root / "run").evaluate(batch_size=5)
    assert evaluation.accuracy == pytest.approx(result.final_test_accuracy) and evaluation.total == 12
    assert read == [5, 5, 2]


def test_evaluate_skip_bad_images_leaves_a_folders_unreadable_image_out_as_it_advises(finished, tmp_path):
    """The error said "pass --skip-bad-images", which evaluate did not take."""
    root, _ = finished
    shutil.copytree(root / "data", tmp_path / "data")
    (tmp_path / "data" / "test" / "cat" / "zz_bad.jpg").write_text("not an image")
    refused = cli("evaluate", root / "run", "--dataset", tmp_path / "data")
    assert refused.returncode == 2 and "zz_bad.jpg" in refused.stderr and "--skip-bad-images" in refused.stderr
    proc = cli("evaluate", root / "run", "--dataset", tmp_path / "data", "--skip-bad-images")
    assert proc.returncode == 0 and "(12/12) on the test split of" in proc.stdout, proc.stderr


def test_a_class_named_with_a_slash_is_matched_by_its_folder_name(tmp_path):
    """Fashion-MNIST's "T-shirt/top" cannot name a folder, so its runs could not be evaluated on one."""
    from coreaug.training.trained import TrainedModel

    for split in ("train", "val"):
        write_image(tmp_path / "fm" / split / "T-shirt_top" / "0.png", (200, 40, 40), size=(8, 8))
        write_image(tmp_path / "fm" / split / "Trouser" / "0.png", (40, 200, 40), size=(8, 8))
    trained = TrainedModel(coreaug.create_model("cnn", 3, 2), ["T-shirt/top", "Trouser"], 8, 3, (0.5,) * 3,
                           (0.25,) * 3, {"dataset": "fashion-mnist", "model": "cnn", "workers": 0,
                                         "cache_dir": str(tmp_path / "cache")})
    evaluation = trained.evaluate(str(tmp_path / "fm"))
    assert evaluation.total == 2 and set(evaluation.per_class) == {"T-shirt/top", "Trouser"}
    write_image(tmp_path / "fm" / "val" / "Coat" / "0.png", (40, 40, 200), size=(8, 8))
    with pytest.raises(coreaug.UsageError, match=r"class 'Coat' .* \(T-shirt_top, Trouser, as folder names\)"):
        trained.evaluate(str(tmp_path / "fm"))


def test_a_bench_grid_given_as_a_run_points_at_its_runs(tmp_path):
    (tmp_path / "grid" / "runs" / "coreset-0.3-seed0").mkdir(parents=True)
    proc = cli("evaluate", tmp_path / "grid")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"grid is a bench grid, not a run; give one of its runs, e.g. {tmp_path}/grid/runs/coreset-0.3-seed0" \
        in proc.stderr


def test_predict_names_a_pil_image_by_its_file_and_refuses_one_without_pixels(finished):
    from PIL import Image

    root, _ = finished
    trained = coreaug.load_run(root / "run")
    path = root / "data" / "test" / "cat" / "0.jpg"
    with Image.open(path) as opened:
        made = Image.new("RGB", (8, 8))
        assert [p.image for p in trained.predict([opened, made])] == [str(path), "1"]
    with pytest.raises(coreaug.UsageError, match=r"^cannot read a PIL image \(no pixels: 0x0\)"):
        trained.predict(Image.new("RGB", (0, 0)))
    with pytest.raises(coreaug.UsageError, match=r"is a folder; read takes one image file"):
        trained.read(root / "data")


@pytest.mark.parametrize("layout", ["classes", "val only"])
def test_evaluate_scores_every_image_of_a_labelled_folder_without_a_training_split(finished, tmp_path, layout):
    """<class>/ scored only the held-out tenth, and val/<class>/ without train/ was refused."""
    root, _ = finished
    split = tmp_path / "new" / ("val" if layout == "val only" else "")
    for name in ("cat", "dog"):
        shutil.copytree(root / "data" / "train" / name, split / name)
    trained = coreaug.load_run(root / "run")
    evaluation = trained.evaluate(str(tmp_path / "new"), batch_size=5)
    files = [split / name / f"{i}.jpg" for name in ("cat", "dog") for i in range(12)]
    predicted = [p.classes[0] for p in trained.predict(files)]
    assert evaluation.total == 24 and set(evaluation.per_class) == {"cat", "dog"}
    assert evaluation.correct == sum(p == f.parent.name for p, f in zip(predicted, files))
    proc = cli("evaluate", root / "run", "--dataset", tmp_path / "new")
    scored = "test split" if layout == "val only" else "labelled images"  # val/ alone is scored: it says so
    assert evaluation.scored == scored
    assert proc.returncode == 0 and f"({evaluation.correct}/24) on the {scored} of" in proc.stdout, proc.stderr


def test_evaluate_of_the_runs_own_folder_under_another_spelling_is_its_test_split(finished, monkeypatch):
    root, result = finished
    monkeypatch.chdir(root)
    evaluation = coreaug.load_run(root / "run").evaluate("./data/")
    assert evaluation.total == 12 and evaluation.scored == "test split"
    assert evaluation.accuracy == pytest.approx(result.final_test_accuracy)


def test_a_labelled_folders_unreadable_image_stops_evaluate_unless_skipped(finished, tmp_path):
    root, _ = finished
    for name in ("cat", "dog"):
        shutil.copytree(root / "data" / "test" / name, tmp_path / "new" / name)
    (tmp_path / "new" / "dog" / "bad.jpg").write_text("not an image")
    trained = coreaug.load_run(root / "run")
    with pytest.raises(coreaug.UsageError, match=r"cannot read image .*bad\.jpg .*pass --skip-bad-images"):
        trained.evaluate(str(tmp_path / "new"))
    assert trained.evaluate(str(tmp_path / "new"), skip_bad_images=True).total == 8


def test_evaluate_refuses_the_runs_own_folder_when_files_added_would_redraw_its_test_split(tmp_path):
    for c, colour in COLOURS.items():  # no val/: the test split is drawn from the files
        for i in range(10):
            write_image(tmp_path / "data" / c / f"{i}.png", colour, seed=i)
    coreaug.train(coreaug.TrainConfig(dataset=str(tmp_path / "data"), image_size=8, model="cnn", epochs=1,
                                      batch_size=8, quiet=True, cache_dir=str(tmp_path / "cache"),
                                      out=str(tmp_path / "run")))
    run = coreaug.load_run(tmp_path / "run")
    assert run.evaluate().total == 3  # one held-out image a class
    for c, colour in COLOURS.items():
        write_image(tmp_path / "data" / c / "new.png", colour, seed=99)
    assert run.evaluate().total == 3  # from the run's decoded cache, which holds the split it drew
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(coreaug.UsageError, match="changed .* drawn again it would hold images the run trained on"):
        run.evaluate()  # it scored a split drawn again, mostly of training images


def test_evaluate_reads_the_cache_the_run_used_from_anywhere_without_its_environment(tmp_path, monkeypatch):
    from coreaug.data.image_cache import caches_in

    write_split(tmp_path / "data", "train", per_class=4)
    write_split(tmp_path / "data", "val", per_class=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COREAUG_CACHE_DIR", "scratch")  # relative, as a job script may set it
    coreaug.train(coreaug.TrainConfig(dataset="data", image_size=8, model="cnn", epochs=1, batch_size=8, quiet=True,
                                      out="run"))
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["cache_dir"]
    assert recorded == str(tmp_path / "scratch")  # was null: evaluate decoded the folder again elsewhere
    monkeypatch.delenv("COREAUG_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "run")
    assert coreaug.load_run(".").evaluate().total == 6
    assert not (tmp_path / "home").exists() and len(caches_in(str(tmp_path / "scratch"))) == 1


def test_evaluate_on_another_folder_with_a_training_split_reads_its_val_images_alone(finished, tmp_path):
    root, _ = finished
    write_split(tmp_path / "other", "train", per_class=5)
    write_split(tmp_path / "other", "val", per_class=2)
    result = coreaug.load_run(root / "run").evaluate(tmp_path / "other")
    assert result.total == 6 and result.scored == "test split"  # (it said "labelled images": all of them)
    decoded = [json.loads(m.read_text())["counts"] for m in (root / "cache").glob("*/meta.json")]
    assert {"train": 15, "test": 6} not in decoded  # its training split was decoded to score its val/
    (tmp_path / "lonely" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(coreaug.UsageError, match="has train/ but no val/ or test/ folder"):
        coreaug.load_run(root / "run").evaluate(tmp_path / "lonely")


def test_evaluate_reads_a_tiny_imagenet_layout_folder_as_training_does(finished, tmp_path):
    """val/images labelled by val/val_annotations.txt, not a class named `images`."""
    root, _ = finished
    files = [root / "data" / "test" / name / f"{i}.jpg" for name in ("fox", "cat") for i in range(2)]
    lines = []
    for j, path in enumerate(files):
        (tmp_path / "copy" / "train" / path.parent.name / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "copy" / "val" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "copy" / "val" / "images" / f"val_{j}.JPEG")
        lines.append(f"val_{j}.JPEG\t{path.parent.name}\t0\t0\t10\t10\n")
    (tmp_path / "copy" / "val" / "val_annotations.txt").write_text("".join(lines))
    trained = coreaug.load_run(root / "run")
    evaluation = trained.evaluate(str(tmp_path / "copy"))
    predicted = [p.classes[0] for p in trained.predict(files)]
    assert evaluation.total == 4 and set(evaluation.per_class) == {"fox", "cat"}
    assert evaluation.correct == sum(p == f.parent.name for p, f in zip(predicted, files))
