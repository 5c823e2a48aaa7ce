"""Review round 23: coreaug on the file systems users have (noexec mounts, full disks, lock-less shares)."""
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
