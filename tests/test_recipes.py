"""The large-image recipes in experiments/ run end to end on tiny folders (their long settings
overridden by later flags), and refuse to start without their data."""
import os
import subprocess
import sys

import pytest
import torch

from coreaug.models import create_model

from test_data_image_folder import COLOURS, write_image, write_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--epochs", "1", "--batch-size", "8", "--workers", "0", "--image-size", "16"]


def recipe(name, *args, env=None):
    scripts = os.path.dirname(sys.executable)  # coreaug and torchrun of this environment first
    environment = {**os.environ, "PATH": scripts + os.pathsep + os.environ["PATH"], **(env or {})}
    return subprocess.run(["bash", os.path.join(ROOT, "experiments", name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=environment)


def test_the_tinyimagenet_recipe_reads_the_official_layout(tmp_path):
    data = tmp_path / "tiny-imagenet-200"
    for c, colour in COLOURS.items():
        for i in range(4):
            write_image(data / "train" / c / "images" / f"{c}_{i}.JPEG", colour, seed=i)
    (data / "val" / "images").mkdir(parents=True)
    lines = []
    for i, (c, colour) in enumerate(COLOURS.items()):
        write_image(data / "val" / "images" / f"val_{i}.JPEG", colour, seed=9)
        lines.append(f"val_{i}.JPEG\t{c}\t0\t0\t10\t10\n")
    (data / "val" / "val_annotations.txt").write_text("".join(lines))
    proc = recipe("tinyimagenet_resnet18.sh", "--data-dir", data, tmp_path / "grid", *TINY, "--model", "cnn",
                  "--subsets", "0.5", "--strategies", "coreset", "--references", "none")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "grid" / "results.md").exists()


def test_the_caltech256_recipe_fine_tunes_given_weights(tmp_path):
    for c, colour in COLOURS.items():
        for i in range(5):
            write_image(tmp_path / "256_ObjectCategories" / c / f"{i}.jpg", colour, seed=i)
    weights = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18_imagenet", 3, 1000).state_dict(), weights)
    args = ["--data-dir", tmp_path / "256_ObjectCategories", tmp_path / "grid", *TINY, "--image-size", "32",
            "--strategies", "coreset", "--references", "none"]
    refused = recipe("caltech256_resnet18.sh", *args)
    assert refused.returncode == 2 and "--pretrained" in refused.stderr
    proc = recipe("caltech256_resnet18.sh", *args, "--pretrained", weights)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "grid" / "results.md").exists()


def test_the_imagenet_recipe_runs_each_strategy_under_torchrun(tmp_path):
    write_split(tmp_path / "imagenet", "train", per_class=4)
    write_split(tmp_path / "imagenet", "val", per_class=1)
    proc = recipe("imagenet_resnet50.sh", "--data-dir", tmp_path / "imagenet", tmp_path / "runs", *TINY,
                  "--model", "cnn", "--warmup-epochs", "0", "--quiet", env={"GPUS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "runs")) == ["coreset-0.5", "full-1.0", "random-0.5"]
    assert all((tmp_path / "runs" / run / "summary.json").exists() for run in os.listdir(tmp_path / "runs"))


@pytest.mark.parametrize("name", ["tinyimagenet_resnet18.sh", "caltech256_resnet18.sh", "imagenet_resnet50.sh"])
def test_a_recipe_without_its_data_says_so(tmp_path, name):
    proc = recipe(name, "--data-dir", tmp_path / "absent")
    assert proc.returncode == 2 and "--data-dir" in proc.stderr
