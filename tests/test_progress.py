"""Progress where stderr is no terminal (a log file, `nohup`, a batch job): plain lines, never
tqdm's carriage-return frames, for decoding a folder and downloading as for training."""
import io

import numpy as np
from PIL import Image

from coreaug import progress
from coreaug.data import download
from coreaug.data.image_folder import load_image_folder


def test_a_plain_line_says_how_far_with_its_unit(monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 0)
    with progress.progress_bar(4, "decoding train", "img") as bar:
        bar.update(1)
        bar.update(3)
    with progress.progress_bar(None, "f.bin", "B") as bar:
        bar.update(3 * 2 ** 20)
    assert capsys.readouterr().err.splitlines() == ["decoding train: 1/4 img (25%)", "decoding train: 4/4 img (100%)",
                                                    "f.bin: 3 MiB"]


def test_decoding_a_folder_off_a_terminal_writes_plain_lines(tmp_path, monkeypatch, capsys):
    """A log got one endless line of bar frames for the whole decoding (ImageNet's: hours)."""
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 0)
    for label in "ab":
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(tmp_path / "data" / label / f"{i}.png")
    load_image_folder(tmp_path / "data", val_fraction=0.5, cache_dir=str(tmp_path / "cache"), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "decoding train: " in err and " img (100%)" in err, err


class Response(io.BytesIO):
    headers = {"Content-Length": str(3 * 2 ** 20)}


def test_a_download_off_a_terminal_writes_plain_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 0)
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: Response(b"x" * (3 * 2 ** 20)))
    download.download_file("http://example.invalid/f.bin", tmp_path / "f.bin", md5=None, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1] == "f.bin: 3 MiB/3 MiB (100%)", err
