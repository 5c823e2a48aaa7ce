"""What the program says of itself: its one-line descriptions, an unreadable PIL image's message, and
predict's two defaults (five classes on the command line, one from Python)."""
import configparser
import inspect
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import coreaug
from coreaug.cli.main import app
from coreaug.errors import UnreadableImage
from coreaug.models import create_model
from coreaug.training.trained import TrainedModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trained_model():
    torch.manual_seed(0)
    return TrainedModel(create_model("cnn", 3, 3), ["a", "b", "c"], 16, 3, (0.5,) * 3, (0.25,) * 3, {})


def test_an_unreadable_pil_image_made_in_memory_is_called_a_pil_image_and_a_files_is_named_by_its_path(tmp_path):
    run = _trained_model()
    with pytest.raises(UnreadableImage) as caught:
        run.predict([Image.fromarray(np.full((8, 8), 0.5, np.float32))])
    message = str(caught.value)
    assert message.startswith("cannot read a PIL image (floating-point pixels"), message
    assert caught.value.what.startswith("cannot read a PIL image (") and caught.value.path is None
    assert "give image files" not in message and "8- or 16-bit pixels" in message
    with pytest.raises(UnreadableImage, match=r"^cannot read a PIL image \(no pixels: 0x5\)"):
        run.read(Image.new("RGB", (0, 5)))
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "scan.tif")
    with Image.open(tmp_path / "scan.tif") as opened, pytest.raises(UnreadableImage) as caught:
        run.read(opened)
    assert str(caught.value).startswith(f"cannot read image {tmp_path / 'scan.tif'} (floating-point")
    assert "give image files" in str(caught.value) and caught.value.path == str(tmp_path / "scan.tif")


def test_the_descriptions_say_the_subset_is_random_by_default_or_the_papers_coreset():
    runner = CliRunner()
    for args in (["--help"], ["train", "--help"]):
        result = runner.invoke(app, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 0 and "(random by default, or the paper's" in text, text
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    assert "(random, or the paper's weighted coreset)" in parser["metadata"]["description"]
    assert "random by default" in " ".join(coreaug.__doc__.split()[:20])


def test_predict_shows_five_classes_on_the_command_line_and_gives_one_from_python_and_both_say_so():
    text = " ".join(CliRunner().invoke(app, ["predict", "--help"]).output.split())
    assert "[default: 5;" in text and "TrainedModel.predict gives one (top_k=1)" in text, text
    assert inspect.signature(TrainedModel.predict).parameters["top_k"].default == 1
    assert "--top-k` shows five" in " ".join(TrainedModel.predict.__doc__.split())
