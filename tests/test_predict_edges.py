"""`coreaug predict` / `evaluate` and `load_run` at the edges: links to files that are gone, PIL images of
other depths, batch sizes, skipped images, a run moved or restored, closed pipes, `~`, extensions, precision."""
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import coreaug
from coreaug.cli.main import app
from coreaug.errors import UnreadableImage, UsageError
from coreaug.models import create_model
from coreaug.training.trained import TrainedModel

from test_data_image_folder import COLOURS, write_image, write_split


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder of three colour classes (train/ and test/) and a finished 1-epoch run on it."""
    root = tmp_path_factory.mktemp("edges")
    write_split(root / "data", "train", per_class=6)
    write_split(root / "data", "test", per_class=2)
    coreaug.train(coreaug.TrainConfig(dataset=str(root / "data"), image_size=16, model="cnn", epochs=1,
                                      batch_size=12, quiet=True, cache_dir=str(root / "cache"), out=str(root / "run")))
    return root


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result):
    return result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_link_to_a_file_that_is_gone_is_an_unreadable_image_predict_and_evaluate_leave_out(finished, tmp_path):
    folder = tmp_path / "labelled" / "cat"
    write_image(folder / "a.png", COLOURS["cat"], size=(16, 16))
    os.symlink(tmp_path / "gone.png", folder / "b.png")
    result = invoke("predict", finished / "run", folder, "--skip-bad-images", "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert "a.png,1," in result.stdout and "b.png" not in result.stdout
    assert "skipped: cannot read image" in result.stderr and "skipped 1 unreadable image of 2" in result.stderr
    with pytest.raises(UnreadableImage, match="b.png.*does not exist"):
        coreaug.load_run(finished / "run").predict(folder)
    result = invoke("evaluate", finished / "run", "--dataset", tmp_path / "labelled", "--skip-bad-images")
    assert result.exit_code == 0 and "(1/1)" in result.stdout and "b.png" in result.stderr, result.output
    result = invoke("evaluate", finished / "run", "--dataset", tmp_path / "labelled")
    assert one_line_error(result) and "b.png" in result.stderr and "--skip-bad-images" in result.stderr


def test_a_pil_image_of_float_or_32_bit_pixels_is_refused_as_its_file_is_and_levels_0_to_255_read(finished):
    run = coreaug.load_run(finished / "run")
    for pixels in (np.full((8, 8), 0.9, np.float32), np.full((8, 8), 300, np.int32), np.full((8, 8), -1, np.int32)):
        with pytest.raises(UnreadableImage, match="range is not known"):
            run.predict(Image.fromarray(pixels))
    as_int32 = run.read(Image.fromarray(np.full((8, 8), 200, np.int32)))
    assert torch.equal(as_int32, run.read(Image.fromarray(np.full((8, 8), 200, np.uint8))))
    assert int(as_int32[0, 0, 0]) == 200


def test_batch_size_must_be_an_integer_of_at_least_one(finished):
    run = coreaug.load_run(finished / "run")
    images = finished / "data" / "test"
    for bad in (0, -1, 1.5, True):
        for call in (lambda: run.probabilities(images, batch_size=bad), lambda: run.predict(images, batch_size=bad),
                     lambda: run.evaluate(batch_size=bad)):
            with pytest.raises(UsageError, match="batch_size must be an integer >= 1"):
                call()
    assert run.probabilities(images, batch_size=np.int64(4)).shape == (6, 3)


def test_evaluate_skip_bad_images_names_and_counts_what_it_leaves_out_and_refuses_a_folder_of_none(finished, tmp_path):
    write_split(tmp_path / "other", "val", per_class=1)
    (tmp_path / "other" / "val" / "dog" / "zz.png").write_text("hello")
    run = coreaug.load_run(finished / "run")
    evaluation = run.evaluate(tmp_path / "other", skip_bad_images=True)
    assert evaluation.total == 3 and len(evaluation.skipped) == 1 and "zz.png" in evaluation.skipped[0]
    result = invoke("evaluate", finished / "run", "--dataset", tmp_path / "other", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert "skipped: cannot read image" in result.stderr and "zz.png" in result.stderr
    assert "skipped 1 unreadable image of 4" in result.stderr
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "cat" / "a.png").write_text("hello")
    result = invoke("evaluate", finished / "run", "--dataset", tmp_path / "bad", "--skip-bad-images")
    assert one_line_error(result) and "unreadable" in result.stderr and "nan" not in result.output


def _copy_run(finished, tmp_path, **config):
    """A copy of the finished run whose model.pt records `config` (as a run copied from elsewhere would)."""
    run = tmp_path / "copied"
    shutil.copytree(finished / "run", run)
    state = torch.load(run / "model.pt", weights_only=True)
    state["config"].update(config)
    torch.save(state, run / "model.pt")
    return run


def test_a_run_whose_recorded_cache_folder_cannot_be_used_here_is_evaluated_in_another(finished, tmp_path):
    (tmp_path / "a_file").write_text("")
    run = _copy_run(finished, tmp_path, cache_dir=str(tmp_path / "a_file" / "cache"))
    result = invoke("evaluate", run)
    assert result.exit_code == 0 and "(6/6)" in result.stdout, result.output
    result = invoke("evaluate", run, "--cache-dir", tmp_path / "mine")
    assert result.exit_code == 0 and os.listdir(tmp_path / "mine"), result.output
    assert coreaug.load_run(run).evaluate(cache_dir=str(tmp_path / "mine")).total == 6


def test_a_run_whose_folder_moved_says_so_with_the_path_once_and_names_dataset(finished, tmp_path):
    gone = str(tmp_path / "gone")
    result = invoke("evaluate", _copy_run(finished, tmp_path, dataset=gone))
    assert one_line_error(result) and result.stderr.count(gone) == 1 and "--dataset" in result.stderr
    result = invoke("evaluate", finished / "run", "--dataset", gone)
    assert one_line_error(result) and result.stderr.count(gone) == 1


def test_predict_json_exits_1_when_its_reader_goes_away_after_the_rows_fitted_in_the_pipe(finished, monkeypatch):
    read_end, write_end = os.pipe()

    class ReaderGoesAtFlush(io.TextIOWrapper):
        """stdout on a pipe whose reader goes away as the rows land in it (no write fails)."""

        written = False

        def write(self, text):
            self.written = True
            return super().write(text)

        def flush(self):
            nonlocal read_end
            if self.written and read_end is not None:
                os.close(read_end)
                read_end = None
            super().flush()

    stdout = ReaderGoesAtFlush(io.FileIO(write_end, "w"), write_through=True)
    monkeypatch.setattr("sys.stdout", stdout)
    with pytest.raises(SystemExit) as exit_:
        app.main(["predict", str(finished / "run"), str(finished / "data" / "test"), "--format", "json"])
    monkeypatch.undo()
    stdout.close()
    assert exit_.value.code == 1


def test_paths_given_to_the_python_api_may_start_with_the_home_folder(finished, monkeypatch):
    monkeypatch.setenv("HOME", str(finished))
    run = coreaug.load_run("~/run")
    assert len(run.predict("~/data/test")) == 6
    assert run.read("~/data/test/cat/0.jpg").shape == (3, 16, 16)
    by_home, by_path = run.predict(["~/data/test/dog/1.jpg"]), run.predict([finished / "data/test/dog/1.jpg"])
    assert by_home[0].probabilities == by_path[0].probabilities


def test_a_folder_reads_jpegs_and_pngs_under_their_other_extensions(finished, tmp_path):
    for name, fmt in (("a.jfif", "JPEG"), ("b.JPE", "JPEG"), ("c.apng", "PNG")):
        write_image(tmp_path / "more" / name, COLOURS["fox"], size=(16, 16), fmt=fmt)
    predictions = coreaug.load_run(finished / "run").predict(tmp_path / "more")
    assert [os.path.basename(p.image) for p in predictions] == ["a.jfif", "b.JPE", "c.apng"]


def _trained_model(precision="fp32", image_size=16, store_size=None):
    torch.manual_seed(0)
    return TrainedModel(create_model("cnn", 3, 3), ["a", "b", "c"], image_size, 3, (0.5,) * 3, (0.25,) * 3,
                        {"precision": precision}, store_size=store_size)


def test_a_tensor_of_the_runs_image_size_is_taken_as_its_centre_square(finished):
    run = _trained_model(image_size=16, store_size=18)
    stored = torch.randint(0, 256, (2, 3, 18, 18), dtype=torch.uint8)
    assert torch.equal(run.probabilities(stored), run.probabilities(stored[..., 1:17, 1:17].contiguous()))
    with pytest.raises(UsageError, match=r"\(N, 3, 18, 18\) or \(N, 3, 16, 16\)"):
        run.probabilities(torch.zeros((1, 3, 12, 12), dtype=torch.uint8))


@pytest.mark.parametrize("native", [True, False])
def test_a_bf16_run_is_used_under_its_autocast_and_an_fp32_one_without(finished, monkeypatch, native):
    """On a CPU without bf16 instructions (`native` False) a bf16 run is scored in fp32: its autocast is
    9-15x slower there."""
    monkeypatch.setattr("coreaug.training.trained.cpu_runs_bf16", lambda: native)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    bf16, fp32 = _trained_model("bf16"), _trained_model("fp32")
    with torch.no_grad():
        x = fp32.normalize(images)
        exact = torch.softmax(fp32.model(x).float(), 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = torch.softmax(bf16.model(x).float(), 1)
    assert not torch.equal(exact, autocast)  # the two differ, so the checks below can fail
    assert torch.equal(bf16.probabilities(images), autocast if native else exact)
    assert torch.equal(fp32.probabilities(images), exact)


def test_a_finished_run_without_its_weights_says_so_not_that_it_is_unfinished(finished, tmp_path):
    run = tmp_path / "restored"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        shutil.copy(finished / "run" / name, run / name)
    result = invoke("evaluate", run)
    assert one_line_error(result) and "finished run whose weights are not kept" in result.stderr
    assert "not finished" not in result.stderr and "--overwrite" in result.stderr
    json.loads((run / "summary.json").read_text())  # the files were left as they were
