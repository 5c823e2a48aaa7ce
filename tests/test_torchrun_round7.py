"""What a torchrun launch shows: the decoded cache's build on whichever rank makes it, and the torchrun
command that continues a stopped run. In one process: a rank other than 0 stood in for, and torchrun's
environment variables set."""
import shlex

import pytest
from click.testing import CliRunner

import coreaug
from coreaug import progress
from coreaug.cli.main import app
from coreaug.data.cache_builds import claim
from coreaug.data.cache_key import cache_key
from coreaug.data.image_cache import builds_shown, open_or_build
from coreaug.data.image_folder import load_image_folder
from coreaug.errors import UsageError
from coreaug.training import trainer
from coreaug.training.distributed import Distributed

from test_data_image_folder import write_split


class OtherRank(Distributed):
    """Rank 1, alone: the work rank 0 would do and send (on_main) is done here."""

    def __init__(self):
        super().__init__(rank=1, world_size=1)

    def on_main(self, work):
        return work()


def test_a_cache_built_by_another_rank_than_0_shows_its_progress_and_a_waiting_rank_stays_quiet(
        tmp_path, monkeypatch, capsys):
    """Under torchrun rank 1 usually builds the cache (rank 0 checks the run folder first), with every rank
    but 0 made quiet: the launch showed "waiting for ..." and then nothing for the whole decode."""
    write_split(tmp_path / "data", "train", per_class=4)
    write_split(tmp_path / "data", "val", per_class=1)
    cache = str(tmp_path / "cache")
    load_image_folder(tmp_path / "data", image_size=8, progress=False, cache_dir=cache)  # an older cache of it
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 0)  # a plain line per batch (stderr is no terminal)
    monkeypatch.setattr(trainer, "join_run", lambda device: OtherRank())
    monkeypatch.setattr(trainer, "_train_run", lambda *args: "trained")
    capsys.readouterr()

    def train(**settings):
        config = dict(dataset=str(tmp_path / "data"), cache_dir=cache, workers=0, model="cnn", epochs=1,
                      batch_size=4, **settings)
        assert coreaug.train(coreaug.TrainConfig(**config)) == "trained"
        return capsys.readouterr()

    shown = train(image_size=12)
    assert "decoding train: 12/12 img" in shown.err and "decoding test: 3/3 img" in shown.err, shown
    assert "1 other decoded cache of" in shown.out + shown.err  # the build's note, not rank 0's lines:
    assert "train / 3 test images" not in shown.out + shown.err and "waiting" not in shown.out + shown.err
    quiet = train(image_size=10, quiet=True)  # --quiet: the build too
    assert quiet.out + quiet.err == ""

    files = [(str(path), 0) for path in sorted((tmp_path / "data" / "train").rglob("*.jpg"))]
    build, _ = claim(cache, cache_key([("train", files)], 16)[0])  # another process's build, which stalls
    with builds_shown(True), pytest.raises(UsageError, match="has made no progress"):
        open_or_build([("train", files)], ["cat"], image_size=16, decode=None, cache_dir=cache, progress=False,
                      stall_after=0.5)
    build.remove()
    waited = capsys.readouterr()
    assert waited.out + waited.err == ""  # a waiting rank but 0 prints nothing


@pytest.mark.parametrize("world_size, nodes", [("2", ""), ("16", " (on every node, with the launch's --nnodes")])
def test_a_stopped_torchrun_run_is_continued_by_a_torchrun_command(tmp_path, monkeypatch, world_size, nodes):
    """The line printed when a torchrun run stopped gave a one-process `coreaug train ... --resume`."""
    def interrupted(config, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(coreaug, "train", interrupted)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8" if nodes else "2")
    monkeypatch.setenv("WORLD_SIZE", world_size)
    out = str(tmp_path / "run")
    result = CliRunner().invoke(app, ["train", "--dataset", "synthetic", "--epochs", "3", "--out", out])
    assert result.exit_code == 130, result.output
    command = result.stderr.strip().split("continue it with: ")[1]
    launch = f"torchrun --nproc-per-node {8 if nodes else 2} -m coreaug train "
    assert command.startswith(launch) and nodes in command, command
    words = shlex.split(command.split(" (")[0])
    assert words[len(shlex.split(launch)):] == ["--dataset", "synthetic", "--epochs", "3", "--out", out, "--resume"]
