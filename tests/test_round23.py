"""Review round 23: coreaug on the file systems users have (noexec mounts, full disks, lock-less shares)."""
import contextlib
import os
import subprocess
import sys
import types

import pytest

import coreaug
from coreaug.training import compiled_step

DIGITS = dict(dataset="digits", train_limit=32, test_limit=16, batch_size=16, epochs=1, quiet=True)


def test_compile_on_the_cpu_refuses_an_inductor_cache_on_a_noexec_mount_at_the_start(tmp_path, monkeypatch):
    """With /tmp mounted noexec (hardened hosts), inductor's probe of the CPU's vector unit failed without a
    word and the run ended a minute in with a C++ error and advice to install g++ (explore23-filesystems #1)."""
    cache = tmp_path / "inductor"  # not made yet: its nearest existing parent's mount is read
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    statvfs = os.statvfs

    def noexec(path):
        flags = statvfs(path).f_flag
        return types.SimpleNamespace(f_flag=flags | os.ST_NOEXEC if str(path).startswith(str(tmp_path)) else flags)
    compiled_step.check_cache_executable()  # the real mount allows programs
    monkeypatch.setattr(os, "statvfs", noexec)
    message = (rf"compile on the CPU loads the code torch's inductor builds from its cache folder \({cache}\), "
               r"which is on a file system mounted noexec; set TORCHINDUCTOR_CACHE_DIR")
    with pytest.raises(coreaug.UsageError, match=message):
        coreaug.train(coreaug.TrainConfig(**DIGITS, compile=True, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounts a tmpfs")
def test_the_noexec_check_reads_a_real_noexec_mount(tmp_path):
    mount = tmp_path / "noexec"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,noexec", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        code = ("import os; os.environ['TORCHINDUCTOR_CACHE_DIR'] = os.path.join(%r, 'cache'); "
                "from coreaug.training.compiled_step import check_cache_executable; check_cache_executable()")
        done = subprocess.run([sys.executable, "-c", code % str(mount)], capture_output=True, text=True)
        assert done.returncode == 1 and "mounted noexec" in done.stderr, done.stderr
    finally:
        subprocess.run(["umount", str(mount)])


def test_plots_under_a_home_that_cannot_hold_matplotlibs_config_folder_print_nothing(tmp_path):
    """A read-only home (compute nodes, `docker run --user`): matplotlib printed two lines about the
    temporary config folder it made instead, among coreaug's one-line warnings (explore23-filesystems #4)."""
    pytest.importorskip("matplotlib")
    (tmp_path / ".config").write_text("")  # a file where matplotlib's folder would go: it cannot make it
    env = {key: value for key, value in os.environ.items() if key not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    code = ("from coreaug.bench.plot import plot_mean_curves; "
            "print(plot_mean_curves([('0.3', 'random', [1.0, 2.0], [50.0, 60.0], '-')], 0.5, %r, 'grid'))")
    done = subprocess.run([sys.executable, "-c", code % str(tmp_path / "plot.png")], capture_output=True, text=True,
                          env={**env, "HOME": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.strip() == str(tmp_path / "plot.png"), done.stderr
    assert done.stderr == "" and (tmp_path / "plot.png").stat().st_size > 0


def test_a_model_factorys_import_leaves_the_callers_import_path_in_its_order(tmp_path, monkeypatch):
    """The current folder went first on sys.path for good: a script's later `import helpers` loaded the
    current folder's helpers.py, not the one beside the script (explore23-citizen #1)."""
    from coreaug.models.registry import import_factory

    (tmp_path / "round23_nets.py").write_text("import torch\n\ndef small(in_channels, num_classes):\n"
                                              "    return torch.nn.Linear(in_channels, num_classes)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "round23_nets", raising=False)
    before = list(sys.path)
    assert import_factory("round23_nets:small")(3, 2).out_features == 2
    assert sys.path == before + [str(tmp_path)]  # still importable (a spawned worker), after the caller's own
    assert import_factory("round23_nets:small") is sys.modules["round23_nets"].small


def test_decoding_in_several_threads_leaves_the_processs_warning_filters_as_they_were(tmp_path):
    """One warnings.catch_warnings per decode, in threads at once (predict from a thread pool), left Pillow's
    DecompressionBombWarning ignored for the rest of the process (explore23-citizen #2)."""
    import threading
    import warnings

    from PIL import Image

    from coreaug.data.image_folder import decode_square

    for number in range(4):
        Image.new("RGB", (24, 24), (number * 60, 0, 0)).save(tmp_path / f"{number}.png")
    before = list(warnings.filters)
    start = threading.Barrier(6)

    def decode():
        start.wait()
        for _ in range(60):
            for number in range(4):
                decode_square(str(tmp_path / f"{number}.png"), 8)
    threads = [threading.Thread(target=decode) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's guard speaks again
        warnings.warn("big", Image.DecompressionBombWarning)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "float64"])
def test_train_inside_a_callers_no_grad_or_float64_default_trains_as_anywhere_else(tmp_path, mode):
    """Inside torch.no_grad() (a notebook's earlier cell) train stopped at its first backward with torch's
    error, its folder written; under set_default_dtype(float64) it trained in float64, recorded as fp32
    (explore23-citizen #4, #5). The caller's settings are back after."""
    import torch

    config = dict(DIGITS, epochs=2, train_limit=64)
    plain = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "plain")))
    if mode == "float64":
        context = contextlib.nullcontext()
        torch.set_default_dtype(torch.float64)
    else:
        context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    try:
        with context:
            result = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / mode)))
            assert not torch.is_grad_enabled() or mode == "float64"
        assert torch.get_default_dtype() == (torch.float64 if mode == "float64" else torch.float32)
    finally:
        torch.set_default_dtype(torch.float32)
    assert next(result.model.parameters()).dtype == torch.float32
    assert [m["train_loss"] for m in result.history] == [m["train_loss"] for m in plain.history]


@pytest.mark.parametrize("draw", ["uniform", "integers", "signs"])
def test_a_draw_given_a_shape_is_refused_with_every_source_alike(draw):
    """uniform(images.shape, generator, device) passed a policy's own test with a torch.Generator, and failed in
    training, with the trainer's RandomSource, on a bare TypeError (explore23-newcomer F2)."""
    import torch

    from coreaug.augment import sampling

    function = getattr(sampling, draw)
    call = (lambda n, source: function(5, n, source, "cpu")) if draw == "integers" else \
        (lambda n, source: function(n, source, "cpu"))
    for source in (None, torch.Generator().manual_seed(0), coreaug.RandomSource(torch.arange(2))):
        with pytest.raises(coreaug.UsageError, match=rf"{draw} draws n values, a number, got the shape \(2, 3\): "
                                                     rf"for k values per image of a batch of B, {draw}\(k \* B"):
            call(torch.Size([2, 3]), source)
        assert call(6, source).shape == (6,)


@pytest.mark.parametrize("norm", ["imagenet", "pretrained", "dataset"])
def test_a_one_channel_model_file_on_an_rgb_folder_is_one_error_whatever_the_norm(tmp_path, norm):
    """Fine-tuning a 1-channel model.pt (make train's) on a folder: each --norm led to another's error, in a
    circle: ImageNet's to a shape mismatch naming in_channels, the file's to --norm dataset (explore23-newcomer F1)."""
    from PIL import Image

    first = coreaug.train(coreaug.TrainConfig(**DIGITS, model="cnn", out=str(tmp_path / "grey")))
    assert first.model is not None
    for label in ("a", "b"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for number in range(6):
            Image.new("RGB", (12, 12), (40 * number, 90, 0)).save(tmp_path / "folder" / label / f"{number}.png")
    with pytest.raises(coreaug.UsageError, match=r"model\.pt holds a model trained on 1-channel images, but "
                                                 r".*folder has 3 \(an image folder is read as RGB\), which its first"):
        coreaug.train(coreaug.TrainConfig(dataset=str(tmp_path / "folder"), model="cnn", epochs=1, quiet=True,
                                          pretrained=str(tmp_path / "grey" / "model.pt"), norm=norm,
                                          out=str(tmp_path / "fine")))
    assert not (tmp_path / "fine").exists()


@pytest.mark.parametrize("name", ["weak", "cutout", "resized-crop", "randaugment"])
def test_a_channels_last_batch_is_refused_by_every_policy_with_the_permute(name):
    """weak, cutout and resized-crop took (B, H, W, 3) and cropped, padded and flipped over (W, C): a red batch
    came out 62% blue, the shape kept, nothing failing later (explore23-inputs #1)."""
    import torch

    red = torch.zeros(4, 16, 16, 3, dtype=torch.uint8)
    red[..., 0] = 255
    with pytest.raises(coreaug.UsageError, match=r"shape \(4, 16, 16, 3\)(;| looks) channels[- ]last.*as numpy and PIL "
                                                 r"give images(: if so,|\?) images\.permute\(0, 3, 1, 2\)"):
        coreaug.create_policy(name)(red, torch.Generator().manual_seed(0))
    out = coreaug.create_policy(name)(red.permute(0, 3, 1, 2), torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16)


def test_crust_partners_are_blended_in_the_copies_units():
    """Float [0, 1] copies blended with uint8 partners as they were: values up to 196 in a [0, 1] batch; uint8
    copies with float [0, 1] images darkened (explore23-inputs #2)."""
    import torch

    from coreaug.training.trainer import mix_with_partners

    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    weak, partners = coreaug.create_policy("weak"), torch.arange(8).flip(0)

    def mixed(copies, data):
        return mix_with_partners(copies, data, partners, weak, coreaug.RandomSource(torch.arange(8)))
    whole = mixed(images[:8], images)
    for copies, data, scale in ((images[:8].float() / 255, images, 255), (images[:8], images.float() / 255, 1),
                                (images[:8].float() / 255, images.float() / 255, 255)):
        assert (mixed(copies, data).float() * scale - whole.float()).abs().max() <= 1.0


def test_evaluate_refuses_a_mask_for_labels_and_tells_class_names_how_to_map(tmp_path):
    import torch

    run = coreaug.train(coreaug.TrainConfig(**DIGITS, out=str(tmp_path / "run")))
    trained = coreaug.load_run(run.out)
    labels = coreaug.load_dataset("digits").test_labels[:20]
    images = coreaug.load_dataset("digits").test_images[:20]
    with pytest.raises(coreaug.UsageError, match=r"labels are bool \(a mask\?\) for 10 classes; give class indices"):
        trained.evaluate((images, labels == 3))
    with pytest.raises(coreaug.UsageError, match=r"class names\? torch\.tensor\(\[run\.class_names\.index\(name\)"):
        trained.evaluate((images, [trained.class_names[i] for i in labels]))
    assert trained.evaluate((images, labels)).total == 20
    assert torch.is_tensor(labels)


def test_numpy_and_tensor_integers_are_integers_for_label_noise_and_datasets(tmp_path):
    """labels.max() + 1 on a numpy array was refused as "must be an integer >= 2, got np.int64(4)" (explore23-inputs
    #4), where the rest of the API takes numpy integers."""
    import numpy as np
    import torch
    from PIL import Image

    labels = np.arange(40) % 4
    noisy, flipped = coreaug.apply_label_noise(labels, 0.25, labels.max() + 1)
    assert torch.equal(noisy, coreaug.apply_label_noise(labels, 0.25, 4)[0]) and int(flipped.sum()) == 10
    assert coreaug.apply_label_noise(torch.as_tensor(labels), 0.25, torch.tensor(4))[1].sum() == 10
    data = coreaug.load_dataset("synthetic", n_train=np.int64(50), n_test=np.int64(20), num_classes=np.int64(5))
    assert len(data.train_labels) == 50 and data.num_classes == 5
    for label in ("a", "b"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for number in range(5):
            Image.new("RGB", (10, 10), (number * 40, 0, 0)).save(tmp_path / "folder" / label / f"{number}.png")
    folder = coreaug.load_dataset(str(tmp_path / "folder"), image_size=np.int64(8), cache_dir=str(tmp_path / "cache"),
                                  progress=False)
    assert folder.train_images.shape[-1] == 8
    with pytest.raises(coreaug.UsageError, match="num_classes must be an integer >= 2, got 1.5"):
        coreaug.apply_label_noise(labels, 0.25, 1.5)


def test_predict_names_the_fix_for_numpy_channels_last_grey_and_float_batches(tmp_path):
    import torch

    run = coreaug.train(coreaug.TrainConfig(**DIGITS, out=str(tmp_path / "run")))
    trained = coreaug.load_run(run.out)
    images = coreaug.load_dataset("digits").test_images[:5]  # uint8 (5, 1, 8, 8)
    assert len(trained.predict(images)) == 5
    for given, fix in ((images.numpy(), r"numpy array \(5, 1, 8, 8\); give it as a tensor: torch\.from_numpy"),
                       (images[:, 0], r"\(5, 8, 8\): grey images without a channel dimension\? images\.unsqueeze\(1\)"),
                       (images.permute(0, 2, 3, 1), r"\(5, 8, 8, 1\): channels last\? images\.permute\(0, 3, 1, 2\)"),
                       (images.float() / 255, r"\(5, 1, 8, 8\): floats in \[0, 1\]\? \(images \* 255\)")):
        with pytest.raises(coreaug.UsageError, match=fix):
            trained.predict(given)
    assert torch.is_tensor(images)


def train_one_epoch_then_stop(monkeypatch, config):
    """Train `config` (a dict) until its first checkpoint is written, then stop it as Ctrl-C would."""
    from coreaug.training import run_files

    save = run_files.RunFolder.save_epoch

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(run_files.RunFolder, "save_epoch", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config))
    monkeypatch.setattr(run_files.RunFolder, "save_epoch", save)


def test_a_resume_without_room_for_the_next_checkpoint_is_refused_before_the_data_loads(tmp_path, monkeypatch):
    """A resume on a disk too full for one more checkpoint beside the old loaded the data, trained an epoch and
    failed the same way, saying only "free some space" (explore23-filesystems #3); a finished run only reports."""
    import errno
    import shutil
    from collections import namedtuple

    from coreaug.training import run_files, trainer

    out, config = tmp_path / "run", dict(DIGITS, epochs=2)
    train_one_epoch_then_stop(monkeypatch, dict(config, out=str(out)))
    size = (out / "checkpoint.pt").stat().st_size
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * size, 9 * size, size // 2))
    loaded = []
    load = trainer.load_run_data
    monkeypatch.setattr(trainer, "load_run_data", lambda *args, **kwargs: loaded.append(1) or load(*args, **kwargs))
    with pytest.raises(OSError) as raised:
        coreaug.train(coreaug.TrainConfig(**config, out=str(out), resume=True))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out)
    assert f"the next checkpoint.pt needs {run_files.size_text(size)} beside the last; " in raised.value.strerror
    assert not loaded
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * size, 0, 10 * size))
    assert len(coreaug.train(coreaug.TrainConfig(**config, out=str(out), resume=True)).history) == 2
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * size, 9 * size, size // 2))
    assert len(coreaug.train(coreaug.TrainConfig(**config, out=str(out), resume=True)).history) == 2  # reports
    (out / "model.pt").unlink()  # a disk full at the last write: the resume writes model.pt alone (review35 #1)
    assert len(coreaug.train(coreaug.TrainConfig(**config, out=str(out), resume=True)).history) == 2
    assert (out / "model.pt").stat().st_size < size // 2


def test_a_folder_two_unlocked_runs_wrote_into_is_refused_at_resume_not_reported_as_the_other(tmp_path, monkeypatch):
    """On a file system without locks, two runs into one --out left config.json of one and the results of the
    other; a --resume then reported the other run's accuracy as its own (explore23-filesystems #2)."""
    import json

    from coreaug.training import run_files

    monkeypatch.setattr(run_files, "lock_folder", lambda fd, path, wait=True: False)  # as flock's ENOLCK
    out = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**DIGITS, seed=0, out=str(out)))
    settings = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**settings, "seed": 1}))  # the second run's, written last
    with pytest.raises(coreaug.UsageError, match=r"holds the checkpoint\.pt of another run than its config\.json "
                                                 r"says \(seed: 1 in config\.json, 0 in checkpoint\.pt\): two runs"):
        coreaug.train(coreaug.TrainConfig(**DIGITS, seed=1, out=str(out), resume=True))
    (out / "config.json").write_text(json.dumps(settings))
    assert len(coreaug.train(coreaug.TrainConfig(**DIGITS, seed=0, out=str(out), resume=True)).history) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal")
@pytest.mark.parametrize("backend", ["own", "apricot"])
def test_a_coreset_selection_on_a_terminal_ends_without_colorama_s_reset(backend):
    """numba's compile (or cache load) inits colorama, whose exit handler wrote ESC[0m to a terminal after the
    run's last line, even with NO_COLOR (explore22-scripts #10; apricot compiles with numba too: review36 #10)."""
    import pty

    code = ("import torch, coreaug; g = torch.randn(200, 8); y = torch.arange(200) % 4; "
            f"print(len(coreaug.select_coreset(g, y, fraction=0.25, backend={backend!r}).indices))")
    leader, follower = pty.openpty()
    done = subprocess.run([sys.executable, "-c", code], stdout=follower, stderr=subprocess.PIPE, timeout=300)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert done.returncode == 0 and out.strip() == b"50", (out, done.stderr)


def test_channels_last_images_in_the_own_loop_are_told_the_permute():
    """NHWC uint8 images to start_epoch reached the model and ended in torch's conv error, 13 frames deep
    (explore23-inputs #5b)."""
    import torch
    from torch import nn

    images = torch.randint(0, 256, (48, 8, 8, 3), dtype=torch.uint8)
    labels = torch.arange(48) % 3
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.25)
    with pytest.raises(coreaug.UsageError, match=r"inputs of shape \(48, 8, 8, 3\) .*channels last, as numpy and "
                                                 r"PIL give images\? .*: x\.permute\(0, 3, 1, 2\)$"):
        method.start_epoch(0, model, images, preprocess=lambda x: x.float() / 255)
    with pytest.raises(coreaug.UsageError, match=r"lambda x: x\.permute\(0, 3, 1, 2\)\.float\(\) / 255$"):  # uint8
        method.start_epoch(0, model, images)
    plan = method.start_epoch(0, model, images, preprocess=lambda x: x.permute(0, 3, 1, 2).float() / 255)
    assert len(plan.indices) > 0


def test_summary_json_holds_what_model_pt_records_of_the_model_and_pillows_version(tmp_path):
    """Deployers outside Python had the class names, mean, std and sizes only inside a torch file; a folder
    decoded by worker processes left Pillow out of `versions` (explore23-export #3, #5)."""
    import json

    import torch
    from PIL import Image

    for label in ("red", "blue"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for number in range(8):
            Image.new("RGB", (14, 14), (200, 0, 30 * number) if label == "red" else (0, 30 * number, 200)).save(
                tmp_path / "folder" / label / f"{number}.png")
    out = tmp_path / "run"  # trained by the command (the test's process has imported Pillow: review36 #8)
    done = subprocess.run([sys.executable, "-m", "coreaug", "train", "--dataset", str(tmp_path / "folder"), "--model",
                           "cnn", "--epochs", "1", "--image-size", "8", "--workers", "1", "--quiet", "--out", str(out),
                           "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    saved = torch.load(out / "model.pt", weights_only=True)
    assert summary["model"] == {key: saved[key] for key in summary["model"]}
    assert summary["model"]["class_names"] == ["blue", "red"] and summary["model"]["store_size"] == 8
    assert set(summary["model"]) >= {"in_channels", "image_size", "mean", "std", "channels_last"}
    assert summary["versions"]["pillow"] == Image.__version__


def test_an_interrupt_while_a_file_is_written_stays_the_interrupt(tmp_path, monkeypatch):
    """SIGTERM or Ctrl-C during a checkpoint's write ended in torch's zip writer's RuntimeError (exit 1) or,
    after the rename, in "No such file or directory: RUN/.tmp-..." (exit 2), not the stop line and exit 143 or
    130 schedulers read (explore23-sweeps #1)."""
    from coreaug import files

    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def interrupted_inside_the_writer(f):
        try:
            f.write(b"half")
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # as torch.save's exit
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, interrupted_inside_the_writer, mode="wb")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    replace = os.replace

    def interrupted_after_the_rename(source, destination):
        replace(source, destination)
        raise SystemExit(143)  # a bench worker's SIGTERM
    monkeypatch.setattr(os, "replace", interrupted_after_the_rename)
    with pytest.raises(SystemExit):
        files.atomic_write(target, lambda f: f.write(b"new"), mode="wb")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_on_epoch_sees_each_rows_and_its_exception_stops_a_resumable_run(tmp_path):
    """A pruning sweep (Optuna, Ray Tune) had to tail metrics.jsonl from a thread and interrupt the main thread
    (explore23-sweeps #2): on_epoch gets each epoch's row, and what it raises stops the run."""
    import json

    class Pruned(Exception):
        pass

    config = dict(DIGITS, epochs=3, train_limit=96)
    whole = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "whole")), on_epoch=lambda row: None)
    seen = []

    def prune(row):
        seen.append(row)
        row["test_accuracy"] = "changed"  # a copy: the run's own history keeps its figure
        if row["epoch"] == 1:
            raise Pruned
    with pytest.raises(Pruned):
        coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "pruned")), on_epoch=prune)
    assert [row["epoch"] for row in seen] == [0, 1]
    rows = [json.loads(line) for line in (tmp_path / "pruned" / "metrics.jsonl").read_text().splitlines()]
    assert [row["test_accuracy"] for row in rows] == [row["test_accuracy"] for row in whole.history[:2]]
    resumed = coreaug.train(coreaug.TrainConfig(**config, out=str(tmp_path / "pruned"), resume=True))
    assert [m["train_loss"] for m in resumed.history] == [m["train_loss"] for m in whole.history]
    with pytest.raises(coreaug.UsageError, match="on_epoch must be a function called with each epoch's metrics"):
        coreaug.train(coreaug.TrainConfig(**config), on_epoch="print")


def test_report_names_a_learning_rate_in_which_another_grid_differs(tmp_path):
    """A learning-rate sweep is one grid per rate compared with `report GRID GRID2=LABEL`: the report named a
    differing epochs, not a differing lr, which only the typed label recorded (explore23-sweeps #3)."""
    from click.testing import CliRunner

    from coreaug.cli.main import app

    base = ["bench", "--dataset", "digits", "--epochs", "1", "--train-limit", "64", "--test-limit", "32", "--subsets",
            "0.3", "--strategies", "random", "--references", "none", "--seeds", "1", "--quiet"]
    for lr in ("0.05", "0.2"):
        result = CliRunner().invoke(app, [*base, "--lr", lr, "--out", str(tmp_path / f"g{lr}")])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path / "g0.05"), f"{tmp_path / 'g0.2'}=fast",
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    runs_line = next(line for line in (tmp_path / "rep" / "report.md").read_text().splitlines()
                     if line.startswith("Runs:"))
    assert "as \"fast\": 2 finished runs of 2; unlike the first grid's runs: lr 0.2 (first: 0.05)" in runs_line


def test_review35_paths_in_numpy_factories_after_another_and_one_channels_last_image(tmp_path, monkeypatch):
    """review35 #2, #3, #8: a numpy array of paths (a pandas column's values) was refused as pixels; a second
    factory module of the current folder lost to Python's own module of its name; one (H, W, C) image got no
    hint."""
    import numpy as np
    import torch
    from PIL import Image

    from coreaug.models.registry import import_factory

    run = coreaug.load_run(coreaug.train(coreaug.TrainConfig(**DIGITS, out=str(tmp_path / "run"))).out)
    for number in range(2):
        Image.new("L", (8, 8), number * 100).save(tmp_path / f"p{number}.png")
    paths = [str(tmp_path / f"p{number}.png") for number in range(2)]
    expected = run.predict(paths)
    assert run.predict(np.array(paths)) == expected and run.predict(np.array(paths, dtype=object)) == expected
    with pytest.raises(coreaug.UsageError, match=r"\(8, 8, 1\): one image, channels last\? images\.permute\(2, 0, 1\)"):
        run.predict(torch.zeros(8, 8, 1, dtype=torch.uint8))
    factory = ("import torch\n\ndef make(in_channels, num_classes):\n"
               "    return torch.nn.Linear(in_channels, num_classes)\n")
    (tmp_path / "round23_first.py").write_text(factory)
    (tmp_path / "colorsys.py").write_text(factory)  # named as one of Python's own modules
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    for name in ("round23_first", "colorsys"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert import_factory("round23_first:make")(3, 2).out_features == 2
    assert import_factory("colorsys:make")(3, 2).out_features == 2
    assert sys.path[-1] == str(tmp_path) and sys.path.count(str(tmp_path)) == 1


def test_review35_policies_take_narrow_channels_first_data_and_a_folder_run_of_an_older_record_resumes(
        tmp_path, monkeypatch):
    """review35 #6: (B, C, L, 1) or (B, C, H, 3) data went through cutout before the channels-last check; #5: on a
    file system without locks a checkpoint recording a relative dataset (coreaug 0.2's) was taken for another
    run's."""
    import os

    import torch
    from PIL import Image

    from coreaug.training import run_files

    for shape in ((8, 8, 128, 1), (8, 4, 32, 3)):
        assert coreaug.create_policy("cutout")(torch.rand(shape), torch.Generator().manual_seed(0)).shape == shape
    with pytest.raises(coreaug.UsageError, match=r"got 4 channels in shape \(8, 4, 32, 3\); channels last, as"):
        coreaug.create_policy("autoaugment")(torch.rand(8, 4, 32, 3), torch.Generator().manual_seed(0))
    base = tmp_path / "proj"
    for label in ("a", "b"):
        (base / "imgs" / label).mkdir(parents=True)
        for number in range(6):
            colour = (number * 40, 80 if label == "a" else 0, 0)
            Image.new("RGB", (10, 10), colour).save(base / "imgs" / label / f"{number}.png")
    monkeypatch.setattr(run_files, "lock_folder", lambda fd, path, wait=True: False)
    config = dict(dataset=str(base / "imgs"), image_size=8, model="cnn", epochs=2, batch_size=4, quiet=True,
                  workers=0, cache_dir=str(tmp_path / "cache"), out=str(base / "runs" / "run"))
    train_one_epoch_then_stop(monkeypatch, config)
    checkpoint = torch.load(base / "runs" / "run" / "checkpoint.pt", weights_only=True)
    checkpoint["config"]["dataset"] = "imgs"  # as coreaug 0.2 recorded it, run from proj/
    torch.save(checkpoint, base / "runs" / "run" / "checkpoint.pt")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert os.getcwd() == str(tmp_path / "elsewhere")
    assert len(coreaug.train(coreaug.TrainConfig(**config, resume=True)).history) == 2


def test_review36_a_write_while_the_caller_handles_ctrl_c_raises_its_own_error(tmp_path):
    """review36 #1: an interrupt the caller was handling when it wrote (a save on Ctrl-C) was re-raised in place
    of the write's own disk error, which the caller's `except OSError` was written for."""
    import errno

    from coreaug import files

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        with pytest.raises(OSError) as raised:
            files.atomic_write(tmp_path / "sel.npz", full, mode="wb")
    assert raised.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_review36_rows_lists_and_channels_last_photos_and_colorama(tmp_path):
    """review36 #3: on_epoch's row was a shallow copy (a callback sorting selection_objective edited the run's
    records); #5: an oblong channels-last batch went through weak on the wrong axes again; #4: after a coreset
    selection a program's own colorama.init() registered no reset at exit."""
    import json
    import sys as system

    import torch

    out = tmp_path / "run"
    colorama_set = getattr(system.modules.get("colorama.initialise"), "atexit_done", False)  # by another's init()

    def trim(row):
        del row["selection_objective"][1:]
    config = dict(DIGITS, epochs=2, train_limit=96, strategy="coreset", subset=0.3, select_every=1)
    coreaug.train(coreaug.TrainConfig(**config, out=str(out)), on_epoch=trim)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(len(row["selection_objective"]) > 1 for row in rows)
    photos = torch.zeros(2, 24, 32, 3, dtype=torch.uint8)
    with pytest.raises(coreaug.UsageError, match=r"shape \(2, 24, 32, 3\) looks channels-last"):
        coreaug.create_policy("weak")(photos, torch.Generator().manual_seed(0))
    colorama = system.modules.get("colorama.initialise")
    assert colorama is None or colorama_set or not colorama.atexit_done  # numba's compile's is gone, and said so


def test_review36_grids_of_one_setting_with_and_without_references_are_not_called_different(tmp_path):
    """review36 #2: loss_filter is the loss-filtered strategies' alone (references train without it), so a grid
    with references and one without were said to differ in it."""
    from click.testing import CliRunner

    from coreaug.cli.main import app

    config = coreaug.TrainConfig(dataset="digits", strategy="coreset-lowloss", loss_filter=0.2, epochs=1,
                                 train_limit=64, test_limit=32, quiet=True)
    coreaug.run_grid(config, str(tmp_path / "a"), subsets=(0.3,), strategies=("coreset-lowloss",),
                     references=("none",), seeds=1)
    coreaug.run_grid(config, str(tmp_path / "b"), subsets=(0.3,), strategies=("coreset-lowloss",), references=(),
                     seeds=1)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "a"), f"{tmp_path / 'b'}=same",
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert 'as "same": 1 finished runs of 1' in text and "unlike the first grid" not in text


def test_bench_takes_a_loss_filter_for_the_strategies_that_read_it(tmp_path):
    """review36 #12: `bench --loss-filter 0.2 --strategies coreset-lowloss` was refused naming 'random', the grid's
    base settings' default strategy, though the only strategy asked for reads it."""
    import json

    from click.testing import CliRunner

    from coreaug.cli.main import app

    base = ["bench", "--dataset", "digits", "--epochs", "1", "--train-limit", "64", "--test-limit", "32", "--subsets",
            "0.3", "--references", "none", "--seeds", "1", "--quiet", "--loss-filter", "0.2"]
    result = CliRunner().invoke(app, [*base, "--strategies", "coreset-lowloss", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "g" / "runs" / "coreset-lowloss-0.3-seed0" / "config.json"
    assert json.loads(run.read_text())["loss_filter"] == 0.2
    result = CliRunner().invoke(app, [*base, "--strategies", "random", "--out", str(tmp_path / "h")])
    assert result.exit_code == 2 and "and --strategies random has none of them" in result.output


def test_report_names_a_norm_that_config_json_leaves_out_at_its_default(tmp_path):
    """review36 #4: config.json leaves `norm` out at "dataset" (and `store_size` where it is the image size), so
    a grid normalised with ImageNet's was compared with one of its data's own without a word."""
    from click.testing import CliRunner

    from coreaug.cli.main import app

    base = ["bench", "--dataset", "synthetic", "--epochs", "1", "--train-limit", "64", "--test-limit", "32",
            "--subsets", "0.3", "--strategies", "random", "--references", "none", "--seeds", "1", "--quiet"]
    for name, extra in (("own", []), ("imagenet", ["--norm", "imagenet"])):
        result = CliRunner().invoke(app, [*base, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path / "own"), f"{tmp_path / 'imagenet'}=imagenet",
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "unlike the first grid's runs: norm \"imagenet\" (first: \"dataset\")" in \
        (tmp_path / "rep" / "report.md").read_text()
