"""Downloads with MD5 checks: written to a temporary file, verified, then renamed into place,
so an interrupted or corrupted download never leaves a file that looks complete."""
import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple
from urllib.error import URLError
from urllib.request import urlopen

from coreaug.errors import UsageError
from coreaug.progress import progress_bar

from .locate import DatasetNotFoundError

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One file to download: its name on disk, its MD5 (``None`` where unverified) and the URLs
    to try in order (official source first, mirrors after)."""

    filename: str
    md5: Optional[str]
    urls: Tuple[str, ...]


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, target: Path, md5: Optional[str], progress: bool = True) -> Path:
    """Download ``url`` to ``target`` atomically, with a tqdm bar, checking length and MD5.

    Raises:
        UsageError: the body is shorter than its Content-Length or its MD5 differs; nothing is
            left on disk.
        URLError, OSError: network or file-system errors, likewise leaving nothing behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(prefix=target.name + ".", suffix=".part",
                                           dir=target.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with os.fdopen(descriptor, "wb") as out, urlopen(url, timeout=60) as response:
            declared = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(declared, target.name, "B", disable=not progress, unit_scale=True,
                              unit_divisor=1024) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if declared is not None and received != declared:
            raise UsageError(f"download of {target.name} from {url} is truncated: got {received} "
                             f"of {declared} bytes; try again")
        if md5 is not None and digest.hexdigest() != md5:
            raise UsageError(f"checksum mismatch for {target.name} downloaded from {url}: MD5 "
                             f"{digest.hexdigest()}, expected {md5}; the file was discarded, try "
                             f"again or fetch it by hand")
        os.replace(partial, target)
    except BaseException:
        # Also on KeyboardInterrupt: a half-written .part file must not accumulate.
        Path(partial).unlink(missing_ok=True)
        raise
    return target


def fetch_resource(resource: Resource, folder: Path, progress: bool = True) -> Path:
    """Make ``folder/resource.filename`` exist with the right MD5, downloading it if needed.

    Each URL is tried in turn; a checksum mismatch stops at once (a mirror serving different
    bytes is not a network hiccup).

    Raises:
        DatasetNotFoundError: every URL failed to connect; the message gives each reason.
        UsageError: a download was truncated or its checksum differs.
    """
    target = folder / resource.filename
    if target.is_file() and (resource.md5 is None or md5_of(target) == resource.md5):
        return target
    failures = []
    for url in resource.urls:
        try:
            return download_file(url, target, resource.md5, progress)
        except (URLError, ConnectionError, TimeoutError) as error:
            failures.append(f"  {url}: {getattr(error, 'reason', error)}")
    raise DatasetNotFoundError(
        f"could not download {resource.filename}:\n" + "\n".join(failures)
        + f"\nCheck the network, or download it by hand into {folder}"
    )


def check_placed(resource: Resource, folder: Path) -> Path:
    """``folder/resource.filename``, a file put there by hand, checked against its MD5 (never the
    network: without download=True, a file that is not the one published is an error to mend).

    Raises:
        UsageError: its MD5 differs (a truncated or other file).
    """
    target = folder / resource.filename
    found = md5_of(target) if resource.md5 is not None else None
    if found != resource.md5:
        raise UsageError(f"{target} is not {resource.filename} as published (MD5 {found}, expected "
                         f"{resource.md5}: truncated, or another file): download it again, or remove it and "
                         "pass --download (Python: download=True) to fetch it")
    return target


def extract_safely(tar: tarfile.TarFile, folder: Path) -> None:
    """Extract regular files and folders only, refusing members that point outside ``folder``.

    Python >= 3.11.4 (and 3.9.17 / 3.10.12) enforce this with ``filter="data"``; older ones get
    the same check by hand.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    for member in tar.getmembers():
        target = (folder / member.name).resolve()
        if not (member.isfile() or member.isdir()) or folder.resolve() not in target.parents:
            raise tarfile.TarError(f"refusing archive member {member.name!r}")
    tar.extractall(folder)


def extract_tar(archive: Path, folder: Path) -> None:
    """Extract a ``.tar.gz`` into ``folder`` via a temporary folder, so a corrupt archive leaves
    no half-extracted dataset behind. Members that would land outside ``folder`` are refused.

    Raises:
        UsageError: the archive is corrupt or truncated (naming it).
    """
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                extract_safely(tar, staging)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise UsageError(f"{archive} is not a readable tar archive ({error}); delete it and "
                             f"download again") from error
        for extracted in sorted(staging.rglob("*")):
            if extracted.is_file():
                destination = folder / extracted.relative_to(staging)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(extracted, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
