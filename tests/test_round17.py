"""Round 17: a model's function that raises is one line naming the user's line."""
import os
import re
import sys

import pytest
from torch import nn

from coreaug.errors import UsageError
from coreaug.models import create_model, registry


def _model_module(folder, monkeypatch, name, returned):
    """A module `name` in `folder`, importable, whose net(in_channels, num_classes) returns `returned`."""
    (folder / f"{name}.py").write_text(f"import torch\ndef net(in_channels, num_classes):\n    return {returned}\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_model_function_that_raises_is_named_with_its_line(tmp_path, monkeypatch):
    _model_module(tmp_path, monkeypatch, "r17nets", "torch.nn.Conv2d(in_channels, 8, kernel=3)")
    with pytest.raises(UsageError, match=r"called as net\(in_channels=1, num_classes=10\), raised TypeError: "
                                         r".*'kernel' at .*r17nets.py:3 in net$") as caught:
        create_model("r17nets:net", 1, 10)
    assert isinstance(caught.value.__cause__, TypeError)  # the user's error stays chained for a debugger

    def registered(in_channels, num_classes):
        return nn.Linear(in_channels, num_classes.width)

    monkeypatch.setitem(registry._MODELS, "r17-raises", registered)  # as register_model("r17-raises") does
    with pytest.raises(UsageError, match=r"'r17-raises', called as registered\(in_channels=3, num_classes=4\), "
                                         r"raised AttributeError: .*test_round17.py:\d+ in registered$"):
        create_model("r17-raises", 3, 4)


def test_an_error_raised_in_coreaug_alone_keeps_its_traceback(monkeypatch):
    monkeypatch.setitem(registry._MODELS, "r17-own", registry._names_module)  # a defect of coreaug's: no user frame
    with pytest.raises(AttributeError, match="startswith"):
        create_model("r17-own", 3, 4)


def _digits(tmp_path, **settings):
    import coreaug
    return coreaug.TrainConfig(**{**dict(dataset="digits", model="cnn", train_limit=300, test_limit=200, lr=1e4,
                                         quiet=True, out=str(tmp_path / "run")), **settings})


def test_a_diverged_epoch_keeps_its_row_and_not_its_checkpoint_so_no_resume_finishes_on_nan(tmp_path):
    """The diverged epoch's checkpoint was saved: each --resume trained on NaN weights, and the one that
    reached the last epoch wrote a NaN model.pt, a summary, and exited 0."""
    import dataclasses
    import json

    import torch

    import coreaug
    config = _digits(tmp_path, epochs=3, strategy="none")
    with pytest.raises(coreaug.TrainingDiverged, match="training diverged at epoch 2"):
        coreaug.train(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in rows] == [0, 1]  # the diverged epoch's row is kept
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == 1  # the epoch before
    for _ in range(3):  # each resume trains from the finite checkpoint, and diverges again
        with pytest.raises(coreaug.TrainingDiverged, match="at epoch 2"):
            coreaug.train(dataclasses.replace(config, resume=True))
    assert not (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("strategy", ["random", "maxloss"])
def test_an_epoch_not_evaluated_is_checked_for_nan_weights(tmp_path, strategy):
    """With eval_every its finite (huge) train loss passed the check: random trained an epoch on NaN,
    maxloss stopped at its next selection with a UsageError (exit 2, 'check the model's forward')."""
    import coreaug
    with pytest.raises(coreaug.TrainingDiverged, match="at epoch 1: .* the test loss not measured, and .* NaN"):
        coreaug.train(_digits(tmp_path, epochs=4, eval_every=3, strategy=strategy, out=None))


def _registered_digits(monkeypatch, **stats):
    import coreaug
    from coreaug.data import ImageDataset, channel_stats
    from coreaug.data import registry as datasets
    d = coreaug.load_dataset("digits")
    mean, std = channel_stats(d.train_images[:100])
    stats = {"mean": mean, "std": std, **stats}

    def load(data_dir=None, *, download=False, progress=True):
        return ImageDataset("r17", d.train_images[:100], d.train_labels[:100], d.test_images[:40], d.test_labels[:40],
                            num_classes=10, class_names=None, source="memory", **stats)
    monkeypatch.setitem(datasets._LOADERS, "r17", load)
    return coreaug.TrainConfig(dataset="r17", model="cnn", epochs=1, quiet=True)


@pytest.mark.parametrize("stats, refusal", [
    ({"mean": (float("nan"),)}, r"mean \(nan,\) is not finite"),
    ({"std": (float("inf"),)}, r"std \(inf,\) is not finite"),
    ({"std": (-0.3,)}, r"std \(-0.3,\) is outside \[0, 1\]"),
    ({"mean": (78.5,), "std": (95.8,)}, r"mean \(78.5,\) is outside \[0, 1\].*0-255 units\? divide by 255"),
    ({"std": ("0.3",)}, r"std \('0.3',\) holds something other than numbers")])
def test_a_datasets_mean_and_std_are_checked_for_sense(monkeypatch, stats, refusal):
    """NaN trained into 'training diverged ... lower --lr', inf trained on all-zero inputs, a negative std was
    clamped, 0-255 units trained on near-constant inputs, a string std was torch's ValueError."""
    import coreaug
    with pytest.raises(UsageError, match=f"dataset 'r17': {refusal}"):
        coreaug.train(_registered_digits(monkeypatch, **stats))


def test_a_constant_channels_zero_std_and_a_fraction_setting_train(monkeypatch):
    """A Fraction lr passed validation, then config.json could not be written (a traceback)."""
    import dataclasses
    import fractions

    import coreaug
    config = dataclasses.replace(_registered_digits(monkeypatch, std=(0.0,)), lr=fractions.Fraction(1, 20))
    assert config.lr == 0.05 and type(config.lr) is float
    assert len(coreaug.train(config).history) == 1


def test_float_label_advice_fits_their_type():
    import numpy as np
    import torch

    from coreaug.selection.checks import check_labels
    for labels, cast in ((torch.tensor([0.0, 1.0]), "labels.long()"), (np.array([0.0, 1.0]), "labels.astype('int64')"),
                         ([0.0, 1.0], "np.asarray(labels, dtype=np.int64)")):
        with pytest.raises(UsageError, match=re.escape(f"cast them with {cast} if")):
            check_labels(labels)


def test_bench_names_each_run_before_its_epoch_lines(tmp_path, capsys):
    """With one job each run's epoch lines came before any line naming the run; with workers nothing
    appeared until a run ended."""
    import coreaug
    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=120, test_limit=60)
    coreaug.run_grid(config, tmp_path / "grid", subsets=(0.5,), strategies=("random",), references=("none",),
                     seeds=1, jobs=1)
    out = capsys.readouterr().out.splitlines()
    named = out.index(f"[1/2] none-seed0: training in {tmp_path / 'grid' / 'runs' / 'none-seed0'}")
    assert out[named + 1].startswith("epoch 1/1") and out[named + 2].startswith("[2/2] random-0.5-seed0: training")


@pytest.mark.parametrize("first, then, raised", [("SIGINT", "SIGTERM", "KeyboardInterrupt"),
                                                 ("SIGTERM", "SIGINT", "Terminated")])
def test_the_first_of_sigint_and_sigterm_names_the_stop(first, then, raised):
    """torchrun passes Ctrl-C on as SIGINT then SIGTERM: the SIGTERM, raised while the KeyboardInterrupt
    unwound, made `coreaug train` say 'terminated (SIGTERM)' and exit 143."""
    import os
    import signal
    import time

    from coreaug.bench.workers import sigterm_raises
    # Python's own handlers, as a command on a terminal has them (a job started with `&` ignores SIGINT)
    saved = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            with sigterm_raises():
                try:
                    os.kill(os.getpid(), getattr(signal, first))
                    time.sleep(5)
                finally:
                    os.kill(os.getpid(), getattr(signal, then))
                    time.sleep(0.2)  # the second signal's handler runs here
        assert type(caught.value).__name__ == raised
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])


SCRIPT = '''
import sys, warnings
import coreaug
try:  # a sweep's first learning rate diverging, caught: the next call hung in init_process_group too
    coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32, epochs=2,
                                      lr=1e8, device="cpu", quiet=True))
except coreaug.TrainingDiverged:
    sys.stdout.write("diverged\\n"), sys.stdout.flush()  # one write: two ranks' prints interleaved their words
for strategy in ("random", "coreset"):  # two runs in one torchrun launch: the second hung in init_process_group
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32,
                                               epochs=1, strategy=strategy, device="cpu", quiet=True,
                                               precision="fp16", out=sys.argv[1] + "/" + strategy))
    sys.stdout.write(f"trained {strategy} {result.rank} {result.world_size}\\n"), sys.stdout.flush()
'''


def test_a_torchrun_script_trains_twice_and_warns_once(tmp_path):
    """A second coreaug.train in a torchrun-launched script waited in init_process_group (gloo's 30 minutes);
    every process printed each warning; evaluate and predict ran whole in every process."""
    import os
    import subprocess

    from test_distributed import ONE_THREAD, free_port
    (tmp_path / "two.py").write_text(SCRIPT)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    launch = [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port())]
    done = subprocess.run([*launch, str(tmp_path / "two.py"), str(tmp_path)], env=ONE_THREAD, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(done.stdout.splitlines()) == ["diverged", "diverged", "trained coreset 0 2", "trained coreset 1 2",
                                                "trained random 0 2", "trained random 1 2"]
    assert 1 <= done.stderr.count("Warning: precision fp16 is for GPUs") <= 2  # rank 0's (once a run at most)
    refused = subprocess.run([*launch[:-1], str(free_port()), "-m", "coreaug", "evaluate", str(tmp_path / "random")],
                             env=ONE_THREAD, capture_output=True, text=True, timeout=240)
    assert refused.returncode != 0 and "coreaug evaluate runs in one process and cannot be launched by torchrun" \
        in refused.stderr and "accuracy" not in refused.stdout


def test_a_resume_in_another_number_of_processes_warns_and_a_finished_run_does_not(tmp_path):
    """A run stopped in 2 processes went on in 1 without a word (summary.json said world_size 1); a --resume of a
    finished run, which trains nothing, warned that it 'goes on' with another thread count."""
    import dataclasses
    import json
    import warnings

    import torch

    import coreaug
    from coreaug.training.trainer import _check_resumed
    with pytest.warns(UserWarning, match=r"epochs up to 3 in 2 processes and goes on in 1: .* --nproc-per-node 2"):
        _check_resumed([{"world_size": 2, "threads": torch.get_num_threads()}] * 3, torch.device("cpu"), 1)
    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=100, test_limit=50, quiet=True,
                                 out=str(tmp_path / "run"))
    coreaug.train(config)
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["world_size"] == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            coreaug.train(dataclasses.replace(config, resume=True))
    finally:
        torch.set_num_threads(threads)


def test_bench_whose_stdout_closes_says_so_on_stderr(tmp_path):
    """`coreaug bench ... | head -1` stopped the grid in the middle of a run with exit 1 and no word."""
    import subprocess

    from test_distributed import ONE_THREAD
    command = [sys.executable, "-m", "coreaug", "bench", "--dataset", "synthetic", "--model", "cnn", "--epochs", "500",
               "--train-limit", "64", "--test-limit", "32", "--subsets", "0.3", "--strategies", "random",
               "--seeds", "1", "--out", str(tmp_path / "grid")]
    proc = subprocess.Popen(command, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("[1/3] none-seed0: training in ")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1] == ("stdout closed: the grid stopped; the runs not finished keep no summary; run the "
                                    "same command to resume them")


def test_estimate_gradients_takes_true_for_a_bar_and_refuses_other_values():
    """progress=True was a TypeError ('bool' object is not callable) after the first batch was scored."""
    import torch

    import coreaug
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images, labels = torch.rand(20, 3, 2, 2), torch.arange(20) % 3
    plain = coreaug.estimate_gradients(model, images, labels, batch_size=8)
    assert torch.equal(coreaug.estimate_gradients(model, images, labels, batch_size=8, progress=True), plain)
    assert torch.equal(coreaug.estimate_gradients(model, images, labels, batch_size=8, progress=False), plain)
    with pytest.raises(UsageError, match="progress must be True .* got 'yes'"):
        coreaug.estimate_gradients(model, images, labels, progress="yes")


def test_a_train_results_repr_leaves_the_history_out_and_its_epoch_line_is_ascii(capsys):
    """repr held every epoch's metrics (~950 characters an epoch: megabytes for a grid's BenchResult in a
    notebook); an epoch not tested was shown as '—', a UnicodeEncodeError on an ASCII stdout."""
    import coreaug
    result = coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=2, eval_every=2, train_limit=100,
                                               test_limit=50))
    assert "history" not in repr(result) and "final_test_accuracy" in repr(result) and len(result.history) == 2
    first = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/2"))
    assert "test acc -  " in first and first.isascii()


FOREIGN_SAMPLER = '''
import torch
import coreaug
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset
labels = torch.arange(64) % 4
train_set = TensorDataset(torch.rand(64, 3, 8, 8), labels)
method = coreaug.CoresetAugmentation(labels, strategy="random", fraction=0.3)
wrapped = method.dataset(train_set, lambda image: image, lambda image: image.flip(-1))
if __name__ == "__main__":
    for epoch in range(3):
        method.start_epoch(epoch)
        for batch in DataLoader(wrapped, batch_size=16, sampler=SubsetRandomSampler(range(64)), num_workers=2):
            pass
'''


def test_a_foreign_sampler_is_warned_about_once_not_per_worker_and_epoch(tmp_path):
    """Each DataLoader worker warned, every epoch (6 copies for 2 workers over 3 epochs)."""
    import subprocess

    from test_distributed import ONE_THREAD
    (tmp_path / "loop.py").write_text(FOREIGN_SAMPLER)
    done = subprocess.run([sys.executable, str(tmp_path / "loop.py")], env=ONE_THREAD, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("UserWarning: the dataset of method.dataset() is being read by an index") == 1


def test_a_resume_of_other_settings_is_told_the_runs_own_flags_not_overwrite(tmp_path):
    """A bare `--resume` was told 'pass --overwrite to replace that run': the run it asked to continue, deleted."""
    import dataclasses

    import coreaug
    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=100, test_limit=50, quiet=True,
                                 flip=False, out=str(tmp_path / "run"))
    coreaug.train(config)
    again = dataclasses.replace(config, resume=True, flip=True, train_limit=None, seed=2)
    with pytest.raises(UsageError) as caught:
        coreaug.train(again)
    message = str(caught.value)
    assert "overwrite" not in message
    given = message.split("a --resume continues it with the settings it started with: give ")[1].split()
    assert sorted(" ".join(given).replace("--seed 0", "--seed=0").replace("--train-limit 100", "--train-limit=100")
                  .split()) == ["--no-flip", "--seed=0", "--train-limit=100"]
    from coreaug.training.run_files import run_flags
    assert run_flags([("train_limit", None, 5), ("betas", [0.9, 0.99], None), ("--batch-size", 64, 128),
                      ("dataset", "my pets", "x")]) == \
        "give --betas 0.9,0.99 --batch-size 64 --dataset 'my pets' and leave --train-limit out"


def test_evaluate_leaves_a_removed_cache_folder_gone_and_decodes_where_coreaug_cache_dir_says(tmp_path, monkeypatch):
    """It made the run's recorded cache folder again (the user had moved the caches to another disk, pointing
    COREAUG_CACHE_DIR there), where a --resume used the variable."""
    import shutil

    import coreaug
    from test_bench_round7 import image_folder
    data = image_folder(tmp_path / "pets")
    config = coreaug.TrainConfig(dataset=str(data), model="cnn", epochs=1, quiet=True, batch_size=4,
                                 cache_dir=str(tmp_path / "old"), out=str(tmp_path / "run"))
    coreaug.train(config)
    shutil.rmtree(tmp_path / "old")
    monkeypatch.setenv("COREAUG_CACHE_DIR", str(tmp_path / "new"))
    result = coreaug.load_run(tmp_path / "run").evaluate()
    assert result.total > 0 and not (tmp_path / "old").exists() and any((tmp_path / "new").iterdir())


@pytest.mark.parametrize("value, root", [(" ", None), ("", None), ("fm", "fm"), ("./fm/", "fm")])
def test_coreaug_data_is_taken_absolute_and_blank_as_unset(tmp_path, monkeypatch, value, root):
    """A relative COREAUG_DATA was recorded relative in summary.json; a blank one was a folder named ' '."""
    from coreaug.data.locate import default_download_root, search_roots
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COREAUG_DATA", value)
    roots = search_roots("mnist")
    if root is None:
        assert all(path.is_absolute() and path.name.strip() for path in roots)
        assert default_download_root() == roots[0]  # the default cache, not " "
    else:
        assert roots[0] == tmp_path / root and default_download_root() == tmp_path / root


@pytest.mark.parametrize("value, refusal", [("", "WORLD_SIZE='' is not a process count"),
                                            ("2", "WORLD_SIZE=2 is set but RANK, MASTER_ADDR and MASTER_PORT are not")])
def test_a_stray_world_size_is_one_line(monkeypatch, value, refusal):
    """A WORLD_SIZE left in a job script ended train in a traceback (int('') or torch's env:// rendezvous)."""
    import coreaug
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(UsageError, match=re.escape(refusal)):
        coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=50, quiet=True))


def test_a_grid_refuses_to_go_on_from_pretrained_weights_or_a_model_module_that_changed(tmp_path, monkeypatch):
    """Weights exported again, or the model's module edited, under the same path: the grid's later seeds trained
    from them, and report listed one pretrained=/model= as shared by every run."""
    import json

    import torch

    import coreaug
    monkeypatch.chdir(tmp_path)
    _model_module(tmp_path, monkeypatch, "r17grid",
                  "torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * 64, num_classes))")
    torch.save(coreaug.create_model("r17grid:net", 1, 10).state_dict(), tmp_path / "w.pt")
    config = coreaug.TrainConfig(dataset="digits", model="r17grid:net", pretrained=str(tmp_path / "w.pt"),
                                 norm="dataset", epochs=1,
                                 train_limit=60, test_limit=30, quiet=True)

    def grid(seeds):
        return coreaug.run_grid(config, tmp_path / "grid", subsets=(), strategies=(), references=("none",),
                                seeds=seeds, jobs=1)
    grid(1)
    inputs = json.loads((tmp_path / "grid" / "runs" / "none-seed0" / "summary.json").read_text())["inputs"]
    assert sorted(inputs) == ["model", "pretrained"] and inputs["model"]["path"] == str(tmp_path / "r17grid.py")
    weights, module = (tmp_path / "w.pt").read_bytes(), (tmp_path / "r17grid.py").read_text()
    torch.save({k: v + 1 for k, v in torch.load(tmp_path / "w.pt").items()}, tmp_path / "w.pt")
    with pytest.raises(UsageError, match=r"--pretrained weights .*w.pt is not the file the grid's runs started from"):
        grid(2)
    (tmp_path / "w.pt").write_bytes(weights)
    (tmp_path / "r17grid.py").write_text(module.replace("Flatten()", "Flatten(1)"))
    with pytest.raises(UsageError, match=r"--model's module .*r17grid.py is not the file the grid's runs started"):
        grid(2)
    (tmp_path / "r17grid.py").write_text(module)
    assert grid(2).trained == 1  # restored: seed 1 trains
    (tmp_path / "other").mkdir()  # the same module name, another folder's copy of another model
    (tmp_path / "other" / "r17grid.py").write_text(module.replace("Flatten()", "Flatten(1)"))
    monkeypatch.delitem(sys.modules, "r17grid")
    monkeypatch.syspath_prepend(str(tmp_path / "other"))
    with pytest.raises(UsageError, match=r"--model's module .*other/r17grid.py is not the file the grid's runs"):
        grid(3)


def _fake_python(path, pytest_line):
    """A python that runs the real one, but fails `-m venv` and prints `pytest_line` for `-m pytest`."""
    path.write_text(f'#!/bin/sh\ncase "$*" in\n  "-m venv"*) exit 1 ;;\n'
                    f'  "-m pytest"*) echo "{pytest_line}"; exit 0 ;;\nesac\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)


def test_torch_versions_keeps_the_tables_other_rows_and_notes_and_writes_nothing_when_no_suite_ran(tmp_path):
    """Its rows came from a scratch file under /tmp alone: on a fresh machine one version run (or one whose
    install failed) deleted the committed table's other rows and its notes."""
    import pathlib
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[1]
    table = tmp_path / "torch_versions.md"
    table.write_bytes((root / "experiments" / "results" / "torch_versions.md").read_bytes())
    before = table.read_text()
    _fake_python(tmp_path / "python", "unused")
    env = dict(os.environ, VENVS=str(tmp_path / "venvs"), OUT=str(table), PYTHON=str(tmp_path / "python"))
    failed = subprocess.run(["bash", str(root / "experiments" / "torch_versions.sh"), "0.0.1"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "no version's suite ran" in failed.stderr and table.read_text() == before
    venv = tmp_path / "venvs" / "v9.9.9" / "bin"
    venv.mkdir(parents=True)
    _fake_python(venv / "python", "3 passed in 0.10s")
    with open(tmp_path / "venvs" / "rows.tsv", "a") as f:  # a stale row of this machine's: the table's wins
        f.write("2.3.1\t3.11.7\t1 passed in 1s\t1\t-\tstale\n")
    done = subprocess.run(["bash", str(root / "experiments" / "torch_versions.sh"), "9.9.9"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = table.read_text()
    rows = lambda text: [line for line in text.splitlines() if re.match(r"\| \d", line)]  # noqa: E731
    assert rows(after)[:-1] == rows(before) and rows(after)[-1].startswith("| 9.9.9 | ")
    assert "| 3 passed in 0.10s | 0 |" in rows(after)[-1]
    assert after.endswith(before[before.index("## Notes"):]) and after.count("Failed or errored under") == \
        before.count("Failed or errored under")


def test_cifar10_runs_save_refuses_runs_that_would_replace_kept_ones_of_other_data(tmp_path):
    """A test grid on another copy of the data, saved, replaced the kept evidence runs of the same names."""
    import json
    import lzma
    import pathlib
    import shutil
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[1]
    (tmp_path / "experiments" / "results" / "cifar10" / "runs").mkdir(parents=True)
    shutil.copy(root / "experiments" / "cifar10_runs.sh", tmp_path / "experiments")
    kept = tmp_path / "experiments" / "results" / "cifar10" / "runs" / "A-weighted.runs.jsonl.xz"
    shutil.copy(root / "experiments" / "results" / "cifar10" / "runs" / kept.name, kept)
    with lzma.open(kept, "rt") as f:
        record = json.loads(f.readline())
    run = tmp_path / "out" / "A-weighted" / "runs" / record["name"]
    run.mkdir(parents=True)
    summary = {**record["summary"], "config": {**record["summary"]["config"], "dataset": "/tmp/sample"}}
    (run / "summary.json").write_text(json.dumps(summary))
    before = kept.read_bytes()
    done = subprocess.run(["bash", str(tmp_path / "experiments" / "cifar10_runs.sh"), "save", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PATH=os.path.dirname(
                              sys.executable) + os.pathsep + os.environ["PATH"]))
    assert done.returncode != 0 and f"1 run(s) named as kept ones of {kept} but trained otherwise" in done.stderr
    assert kept.read_bytes() == before and sorted(p.name for p in run.parent.iterdir()) == [record["name"]]


def test_a_recipe_try_with_other_flags_is_refused_over_the_committed_results(tmp_path):
    """`fashion_mnist_cnn.sh --epochs 1` (later flags override the recipe's) wrote its tables over the committed
    experiments/results/fashion-mnist; a --data-dir that is no folder was told to give --data-dir."""
    import pathlib
    import shutil
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[1]
    shutil.copytree(root / "experiments", tmp_path / "experiments", ignore=shutil.ignore_patterns("cifar10"))
    before = (tmp_path / "experiments" / "results" / "fashion-mnist" / "results.md").read_bytes()
    done = subprocess.run(["bash", "experiments/fashion_mnist_cnn.sh", "--epochs", "1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "holds the committed results of the recipe's own flags" in done.stderr
    assert (tmp_path / "experiments" / "results" / "fashion-mnist" / "results.md").read_bytes() == before
    done = subprocess.run(["bash", "experiments/tinyimagenet_resnet18.sh", "--data-dir", str(tmp_path / "nothing")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"--data-dir {tmp_path / 'nothing'} is not a folder" in done.stderr
    done = subprocess.run(["bash", "experiments/fashion_mnist_cnn.sh", "--data-dir", str(tmp_path / "nothing"),
                           "--jobs", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH=f"{tmp_path}/no-coreaug-here:/usr/bin:/bin"))
    assert "committed results" not in done.stderr and done.returncode != 0  # where it reads and how: let through


def test_the_resume_advice_names_only_flags_that_exist_and_the_run_reads():
    """It advised --no-weight-augmented (no such flag) and --betas for an SGD run (refused as never read)."""
    import dataclasses

    import coreaug
    from cli.train import train as command
    from coreaug.training.run_files import ONE_WAY_FLAGS, run_flags
    one_way = {p.name for p in command.params if getattr(p, "is_flag", False) and not p.secondary_opts}
    fields = {field.name for field in dataclasses.fields(coreaug.TrainConfig)}
    assert ONE_WAY_FLAGS == one_way & fields - {"compile", "quiet", "tensorboard", "resume", "overwrite"}
    stored = coreaug.TrainConfig(dataset="digits", model="cnn").resolved().identity()
    assert stored["optimizer"] == "sgd" and stored["schedule"] == "cosine"
    changed = [("weight_augmented", False, True), ("betas", [0.9, 0.999], [0.8, 0.9]), ("lr", 0.05, 0.1),
               ("milestones", [0.5, 0.75], [0.3, 0.6]), ("sync_bn", False, True)]
    assert run_flags(changed, stored) == \
        "give --lr 0.05 and leave --weight-augmented, --betas, --milestones, --sync-bn out"


def test_predict_lets_a_stray_world_size_through(tmp_path):
    """A WORLD_SIZE left in a job script (no RANK: no torchrun launch) made predict refuse as under torchrun."""
    import subprocess

    import coreaug
    from test_distributed import ONE_THREAD
    coreaug.train(coreaug.TrainConfig(dataset="digits", model="cnn", epochs=1, train_limit=60, test_limit=30,
                                      quiet=True, out=str(tmp_path / "run")))
    from PIL import Image
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    done = subprocess.run([sys.executable, "-m", "coreaug", "predict", str(tmp_path / "run"), str(tmp_path / "x.png")],
                          env=dict(ONE_THREAD, WORLD_SIZE="2"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "x.png" in done.stdout, done.stderr


def test_a_resume_of_a_run_whose_first_epoch_diverged_says_so(tmp_path):
    """It was refused as a folder with results 'but no checkpoint.pt' (exit 2), as if damaged."""
    import dataclasses

    import coreaug
    config = coreaug.TrainConfig(dataset="digits", model="cnn", epochs=2, train_limit=300, test_limit=200, lr=1e4,
                                 quiet=True, out=str(tmp_path / "run"))
    with pytest.raises(coreaug.TrainingDiverged, match="at epoch 1"):
        coreaug.train(config)
    with pytest.raises(coreaug.TrainingDiverged, match=r"holds a run whose first epoch diverged \(metrics.jsonl: "
                                                       r".*nan\): there is nothing to resume; lower --lr"):
        coreaug.train(dataclasses.replace(config, resume=True))
    # Not tested (--eval-every): a finite train loss, the row marked; asked with another lr, the same answer.
    untested = dataclasses.replace(config, eval_every=2, out=str(tmp_path / "untested"))
    with pytest.raises(coreaug.TrainingDiverged, match="at epoch 1"):
        coreaug.train(untested)
    with pytest.raises(coreaug.TrainingDiverged, match=r"first epoch diverged \(metrics.jsonl: diverged\)"):
        coreaug.train(dataclasses.replace(untested, resume=True, lr=0.05))


def test_a_folders_left_out_warning_names_the_users_line(tmp_path):
    """It named coreaug's keyword_only wrapper (deprecation.py) as the warning's place."""
    from PIL import Image

    import coreaug
    for name in ("a", "b"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for k in range(4):
            Image.new("RGB", (8, 8)).save(tmp_path / "pets" / name / f"{k}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "pets" / "loose.png")
    with pytest.warns(UserWarning, match="left out 1 image file beside the class folders") as caught:
        coreaug.load_dataset(str(tmp_path / "pets"), progress=False, cache_dir=str(tmp_path / "cache"))
    assert [w.filename for w in caught if "left out" in str(w.message)] == [__file__]


def test_a_caller_warning_is_the_commands_one_line_wherever_its_frame_is():
    """Attributed to the user's frame, an installed coreaug's left-out warning was named at click's core.py (or a
    bench worker's multiprocessing frame) in Python's format, not as the commands' one line."""
    from coreaug.errors import CallerWarning, one_line_warning
    assert one_line_warning("left out 1 file", CallerWarning, "/usr/lib/python3/site-packages/click/core.py",
                            911) == "warning: left out 1 file\n"
    assert one_line_warning("theirs", UserWarning, "/usr/lib/python3/site-packages/click/core.py", 911) \
        .startswith("/usr/lib/python3/site-packages/click/core.py:911: UserWarning: theirs")
