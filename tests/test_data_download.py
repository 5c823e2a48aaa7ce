"""Downloads: MD5-checked, atomic, mirrors tried in turn; tested with file:// URLs and a fake
URL opener, never the network."""
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from coreaug.data import (DatasetNotFoundError, Resource, cifar, download, load_dataset, locate,
                          mnist)


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Only folders under tmp_path are searched: no real data can satisfy a lookup."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COREAUG_DATA", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")


def md5_hex(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def cifar10_archive(path: Path) -> bytes:
    """A cifar-10-python.tar.gz holding two-image batches, as the official archive is laid out."""
    rng = np.random.default_rng(0)
    members = {f"cifar-10-batches-py/{name}": {
        b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 9]}
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    members["cifar-10-batches-py/batches.meta"] = {
        b"label_names": [f"c{i}".encode() for i in range(10)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            content = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path.read_bytes()


def leftovers(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_cifar10_downloads_verifies_and_extracts(tmp_path, monkeypatch):
    served = tmp_path / "server" / "cifar-10-python.tar.gz"
    served.parent.mkdir()
    content = cifar10_archive(served)
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Resource(
        "cifar-10-python.tar.gz", md5_hex(content), (served.as_uri(),)))
    data = load_dataset("cifar10", tmp_path / "data", download=True, progress=False)
    assert len(data.train_labels) == 10 and data.class_names[3] == "c3"
    assert data.source == str(tmp_path / "data" / "cifar-10-batches-py")
    assert not [p for p in leftovers(tmp_path / "data") if p.endswith(".part")
                or p.startswith(".extract")]
    # Found on disk the second time: no download needed.
    served.unlink()
    assert len(load_dataset("cifar10", tmp_path / "data", download=True).train_labels) == 10


def test_an_archive_downloaded_by_hand_is_extracted_without_download(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(download, "urlopen", no_network)
    with pytest.raises(DatasetNotFoundError, match="A cifar-10-python.tar.gz downloaded by hand into"):
        load_dataset("cifar10", tmp_path / "data", progress=False)
    (tmp_path / "data").mkdir()
    content = cifar10_archive(tmp_path / "data" / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Resource("cifar-10-python.tar.gz", md5_hex(content), ("http://x/",)))
    data = load_dataset("cifar10", tmp_path / "data", progress=False)
    assert len(data.train_labels) == 10 and data.source == str(tmp_path / "data" / "cifar-10-batches-py")


def test_an_archive_put_by_hand_that_is_not_the_published_one_is_named_not_downloaded_again(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(download, "urlopen", no_network)
    (tmp_path / "data").mkdir()
    cifar10_archive(tmp_path / "data" / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Resource("cifar-10-python.tar.gz", "0" * 32, ("http://x/",)))
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz is not cifar-10-python.tar.gz as published \(MD5"):
        load_dataset("cifar10", tmp_path / "data", progress=False)
    assert leftovers(tmp_path / "data") == ["cifar-10-python.tar.gz"]


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path, monkeypatch):
    served = tmp_path / "cifar-10-python.tar.gz"
    cifar10_archive(served)
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Resource(
        "cifar-10-python.tar.gz", "0" * 32, (served.as_uri(),)))
    with pytest.raises(ValueError, match="checksum mismatch for cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path / "data", download=True, progress=False)
    assert leftovers(tmp_path / "data") == []


def test_corrupt_archive_with_matching_checksum_names_the_archive(tmp_path, monkeypatch):
    served = tmp_path / "cifar-10-python.tar.gz"
    served.write_bytes(gzip.compress(b"not a tar archive" * 100)[:200])
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Resource(
        "cifar-10-python.tar.gz", md5_hex(served.read_bytes()), (served.as_uri(),)))
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz is not a readable tar archive"):
        load_dataset("cifar10", tmp_path / "data", download=True, progress=False)
    assert leftovers(tmp_path / "data") == ["cifar-10-python.tar.gz"]


def test_mirrors_are_tried_in_turn(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    md5s = {}
    for role, stem in mnist.IDX_FILES.items():
        shape = (3, 28, 28) if "images" in role else (3,)
        magic = 2051 if "images" in role else 2049
        header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
        values = np.ones(shape, np.uint8) if "images" in role else np.arange(3, dtype=np.uint8)  # 3 classes
        content = gzip.compress(header + values.tobytes())
        (server / f"{stem}.gz").write_bytes(content)
        md5s[role] = md5_hex(content)
    monkeypatch.setattr(mnist, "MNIST_MD5", md5s)
    monkeypatch.setattr(mnist, "MNIST_URLS", ((tmp_path / "missing").as_uri() + "/",
                                              server.as_uri() + "/"))
    data = load_dataset("mnist", tmp_path / "data", download=True, progress=False)
    assert data.source == str(tmp_path / "data" / "mnist") and len(data.test_labels) == 3


def test_unreachable_urls_raise_not_found_listing_each(tmp_path):
    resource = Resource("f.bin", None, ((tmp_path / "a").as_uri(), (tmp_path / "b").as_uri()))
    with pytest.raises(DatasetNotFoundError, match=r"could not download f.bin(.|\n)*/a(.|\n)*/b"):
        download.fetch_resource(resource, tmp_path / "data", progress=False)
    assert leftovers(tmp_path / "data") == []


class ShortResponse(io.BytesIO):
    """A response whose body is shorter than the Content-Length it declares."""
    headers = {"Content-Length": "1000"}


def test_truncated_download_raises_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: ShortResponse(b"x" * 10))
    with pytest.raises(ValueError, match="f.bin .* truncated: got 10 of 1000 bytes"):
        download.fetch_resource(Resource("f.bin", None, ("http://example.invalid/f.bin",)),
                                tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_present_file_with_right_checksum_is_not_downloaded_again(tmp_path, monkeypatch):
    (tmp_path / "f.bin").write_bytes(b"payload")

    def refuse(url, timeout):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(download, "urlopen", refuse)
    resource = Resource("f.bin", md5_hex(b"payload"), ("http://example.invalid/f.bin",))
    assert download.fetch_resource(resource, tmp_path) == tmp_path / "f.bin"


def test_progress_bar_is_shown_on_stderr(tmp_path, capsys, monkeypatch):
    from coreaug import progress

    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)  # a bar (off a terminal: tests/test_progress.py)
    (tmp_path / "src.bin").write_bytes(b"y" * 5000)
    download.download_file((tmp_path / "src.bin").as_uri(), tmp_path / "out" / "f.bin", None,
                           progress=True)
    assert "f.bin" in capsys.readouterr().err
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"y" * 5000


def test_archive_member_escaping_the_folder_is_refused(tmp_path, monkeypatch):
    served = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(served, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Resource(
        "cifar-10-python.tar.gz", md5_hex(served.read_bytes()), (served.as_uri(),)))
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz is not a readable tar archive"):
        load_dataset("cifar10", tmp_path / "data", download=True, progress=False)
    assert not (tmp_path / "escaped").exists()
    assert leftovers(tmp_path / "data") == ["cifar-10-python.tar.gz"]
