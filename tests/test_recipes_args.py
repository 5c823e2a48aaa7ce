"""The recipes' arguments (experiments/*.sh through experiments/recipe_args.sh, and the helper scripts):
checked against stub `coreaug` / `torchrun` / Python commands that record their calls, so nothing trains."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = {"cifar10_resnet20.sh": "cifar10-resnet20", "cifar100_resnet20.sh": "cifar100-resnet20",
         "svhn_resnet20.sh": "svhn-resnet20", "cifar10_label_noise.sh": "cifar10-label-noise"}
BENCH_RECIPES = {**PAPER, "fashion_mnist_cnn.sh": "fashion-mnist"}


@pytest.fixture
def stubs(tmp_path):
    """A folder of stub `coreaug` and `torchrun` commands that append their arguments to a log, and
    `run(script, *args)` that runs experiments/<script> with them first on PATH: (process, calls)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for name in ("coreaug", "torchrun"):
        (bin_dir / name).write_text(f"#!/bin/sh\nprintf '%s\\037' \"$@\" >> '{log}'\necho >> '{log}'\n")
        (bin_dir / name).chmod(0o755)

    def run(script, *args, **environment):
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **environment}
        if log.exists():
            log.unlink()
        proc = subprocess.run(["bash", os.path.join(ROOT, "experiments", script), *map(str, args)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)
        calls = [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines()] if log.exists() else []
        return proc, calls
    return run


def flag(call, name):
    """The value of the last `name` in a call (what click keeps), None without one."""
    where = [i for i, arg in enumerate(call) if arg == name]
    return call[where[-1] + 1] if where else None


def test_a_bench_recipe_takes_a_leading_flag_as_a_flag_and_its_out_first_or_as_out(stubs):
    for script, folder in BENCH_RECIPES.items():
        default = f"experiments/results/{folder}"
        proc, [call] = stubs(script, "--seeds=1")
        assert proc.returncode == 0, proc.stderr
        assert flag(call, "--out") == default and call[-1] == "--seeds=1", script  # not a folder named --seeds=1
        _, [call] = stubs(script, "--seeds", "1")
        assert flag(call, "--out") == default and call[-2:] == ["--seeds", "1"], script
        _, [call] = stubs(script, "grid", "--seeds", "1")
        assert flag(call, "--out") == "grid" and call[-2:] == ["--seeds", "1"], script
        _, [call] = stubs(script, "--data-dir", "data", "grid", "--epochs", "1")
        assert (flag(call, "--out"), flag(call, "--data-dir"), call[-2:]) == ("grid", "data", ["--epochs", "1"])
        _, [call] = stubs(script, "--epochs", "1", "--out=elsewhere")
        assert call.count("--out") == 1 and flag(call, "--out") == "elsewhere", script


def test_the_paper_recipes_reselect_every_20_epochs_and_the_committed_fashion_mnist_one_every_epoch(stubs):
    for script in PAPER:
        _, [call] = stubs(script)
        assert flag(call, "--select-every") == "20", script
    _, [call] = stubs("fashion_mnist_cnn.sh")
    assert flag(call, "--select-every") is None and flag(call, "--knn") == "10"  # as its committed runs


def test_a_recipe_refuses_a_flag_without_its_value_and_two_output_folders_in_one_line(stubs):
    for args, message in [(["--out"], "--out needs a value"), (["--out", "--seeds", "1"], "--out needs a value"),
                          (["grid", "--out", "other"], "give the output folder once")]:
        proc, calls = stubs("cifar10_resnet20.sh", *args)
        assert proc.returncode == 2 and not calls, args
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_caltech_recipe_takes_its_usage_line_order_and_the_equals_form_of_pretrained(stubs, tmp_path):
    data = tmp_path / "256_ObjectCategories"
    data.mkdir()
    proc, [call] = stubs("caltech256_resnet18.sh", "--data-dir", data, "--pretrained", "r18.pth", "grid",
                         "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert (flag(call, "--out"), flag(call, "--pretrained"), flag(call, "--dataset")) == ("grid", "r18.pth", str(data))
    assert call[-2:] == ["--epochs", "1"] and "--data-dir" not in call
    proc, [call] = stubs("caltech256_resnet18.sh", "--data-dir", data, "--pretrained=r18.pth")
    assert proc.returncode == 0 and flag(call, "--pretrained") == "r18.pth", proc.stderr
    proc, calls = stubs("caltech256_resnet18.sh", "--data-dir", data, "grid")
    assert proc.returncode == 2 and not calls and "--pretrained" in proc.stderr


def test_the_imagenet_recipe_takes_out_as_the_folder_of_its_three_runs(stubs, tmp_path):
    proc, calls = stubs("imagenet_resnet50.sh", "--data-dir", tmp_path, "--epochs", "1", "--out", "inet",
                        GPUS="1")
    assert proc.returncode == 0, proc.stderr
    assert [flag(c, "--out") for c in calls] == ["inet/coreset-0.5", "inet/random-0.5", "inet/full-1.0"]
    assert all(c.count("--out") == 1 for c in calls)


def test_fashion_mnist_evidence_checks_every_grid_name_first_and_names_noise_folders_as_committed(stubs):
    proc, calls = stubs("fashion_mnist_evidence.sh", "out", "weighted", "typo")
    assert proc.returncode == 2 and not calls and "unknown grid typo" in proc.stderr  # weighted did not train
    proc, calls = stubs("fashion_mnist_evidence.sh", "out", "noise-0.4", "noise0.6")
    assert proc.returncode == 0, proc.stderr
    assert [(flag(c, "--label-noise"), flag(c, "--out")) for c in calls] == [("0.4", "out/noise-0.4"),
                                                                          ("0.6", "out/noise-0.6")]
    proc, calls = stubs("fashion_mnist_evidence.sh", "--seeds=1")
    assert proc.returncode == 2 and not calls and "usage" in proc.stderr


def test_the_gpu_checks_heading_names_every_setting_given(tmp_path):
    python = tmp_path / "python"  # answers the package check, does nothing else: every step is skipped
    python.write_text('#!/bin/sh\n[ "$1" = - ] && { cat > /dev/null; echo "ok torch 0 cuda none bf16 False"; }\n'
                      "exit 0\n")
    python.chmod(0o755)
    (tmp_path / "data" / "train").mkdir(parents=True)
    settings = ("TRAIN_LIMIT ROWS TABLE_EPOCHS MODES COMPILE_MODE COUNT_STEPS COUNT_MODES TABLE_SHARE TESTS_S "
                "RECIPE_EPOCHS RECIPE_LIMIT EVAL_EVERY MODEL BATCH IMAGE_SIZE").split()
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env.update(GPU_CHECK_DEVICE="cpu", BUDGET_S="1", MODES="eager", TABLE_SHARE="0.9", TESTS_S="0",
               ROWS="hand,none x", CIFAR_DIR=str(tmp_path / "data"), GPU_CHECK_RESULTS=str(tmp_path / "gpu.md"))
    proc = subprocess.run(["bash", os.path.join(ROOT, "experiments", "gpu_check.sh"), str(python)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    heading = next(line for line in (tmp_path / "gpu.md").read_text().splitlines() if line.startswith("## Run of"))
    assert ("`BUDGET_S=1 TRAIN_LIMIT=10000 ROWS='hand,none x' MODES=eager TABLE_SHARE=0.9 TESTS_S=0 "
            "experiments/gpu_check.sh` (dry run on cpu)") in heading


def test_bench_timing_writes_the_csv_report_reads_beside_its_markdown(experiment, tmp_path, monkeypatch):
    from coreaug.bench.report import _read_figures
    timing = experiment("bench_timing")
    per_epoch = {("none", None): [1.0, 1.2, 1.1], ("full", None): [4.0, 4.4, 4.2], ("coreset", 0.1): [2.0, 2.5, 2.1]}
    path = tmp_path / "timing.csv"
    path.write_text(timing.epoch_seconds_csv(per_epoch, "timing.md"))
    assert _read_figures(path, "--epoch-seconds", "seconds_per_epoch", lambda value: "") == {
        ("none", None): 1.1, ("full", None): 4.2, ("coreset", 0.1): 2.1}
    monkeypatch.setattr(sys, "argv", ["bench_timing.py", "--out", str(path)])
    with pytest.raises(SystemExit) as refused:  # the CSV is written beside the Markdown, never instead of it
        timing.main()
    assert refused.value.code == 2


@pytest.mark.parametrize("name, args", [("cifar10_flipped", ["grid.jsonl.xz", "out"]),
                                        ("cifar10_pilot_upweighted", ["data", "0", "out"]),
                                        ("gpu_plan", ["speed.json", "300", "1000", "1000", "200"])])
def test_a_helper_script_without_its_arguments_prints_its_usage_not_a_traceback(experiment, capsys, name, args):
    script = experiment(name)
    for missing in ([], args[:-1]):
        with pytest.raises(SystemExit) as stopped:
            script.parse_args(missing)
        assert stopped.value.code == 2 and "usage:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        script.parse_args(["--help"])
    assert stopped.value.code == 0 and script.__doc__.splitlines()[0] in capsys.readouterr().out
    assert vars(script.parse_args(args))  # the full line parses
