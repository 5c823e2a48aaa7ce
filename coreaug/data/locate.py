"""Where dataset files are looked for, and the error that lists every place when they are not.

Search order: ``$COREAUG_DATA``, ``~/.cache/coreaug``, ``/usr/share/datasets/<name>`` (Debian's
``dataset-*`` packages); a ``data_dir`` given is the only folder searched: a typo in it, or a copy
missing a file, is an error rather than a silent read of another copy. Each of these roots may hold
the dataset's standard folder (e.g. ``cifar-10-batches-py``, like torchvision's ``root``) or be
that folder itself.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from coreaug.errors import UsageError
from coreaug.files import user_cache

PathLike = Union[str, "os.PathLike[str]"]

# Debian installs dataset packages here (dataset-fashion-mnist); a constant so tests can move it.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
ENV_VAR = "COREAUG_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the searched folders (and were not, or could not be,
    downloaded). The message lists every folder searched and how to get the files."""


class DataDirLacksDataset(DatasetNotFoundError, UsageError):
    """The ``data_dir`` given does not hold the dataset's files (it is the only folder searched):
    one line, naming the files looked for and where."""


@dataclass(frozen=True)
class FileLayout:
    """The files a dataset needs and the folder names they conventionally live in.

    Attributes:
        folders: standard folder names relative to a root, e.g. ``("cifar-10-batches-py",)`` or
            ``("FashionMNIST/raw", "fashion-mnist")``; the root itself is always tried last.
        files: role -> accepted file names, first match wins, e.g.
            ``{"train_images": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")}``.
    """

    folders: Tuple[str, ...]
    files: Dict[str, Tuple[str, ...]]


def default_download_root(data_dir: Optional[PathLike] = None) -> Path:
    """Where downloads go: ``data_dir``, else ``$COREAUG_DATA``, else ``~/.cache/coreaug``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return _environment_root() or Path(user_cache(xdg=False))


def _environment_root() -> Optional[Path]:
    """``$COREAUG_DATA`` as an absolute path (a run records where its files were read), or None where it
    is unset or blank (`export COREAUG_DATA= ~/data` made a folder named " ")."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(os.path.abspath(os.path.expanduser(value))) if value else None


def search_roots(name: str, data_dir: Optional[PathLike] = None) -> List[Path]:
    """The roots searched for dataset ``name``, in order (see the module docstring): ``data_dir``
    alone when it is given."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    roots = [_environment_root()] if _environment_root() else []
    roots.append(Path(user_cache(xdg=False)))  # (not $XDG_CACHE_HOME's: where downloads have always gone)
    roots.append(SYSTEM_DATA_DIR / name)
    return roots


def candidate_folders(roots: Sequence[Path], layout: FileLayout) -> List[Path]:
    """Every folder that may hold the files: each root's standard sub-folders, then the root."""
    folders: List[Path] = []
    for root in roots:
        for folder in [root / sub for sub in layout.folders] + [root]:
            if folder not in folders:
                folders.append(folder)
    return folders


def files_in(folder: Path, layout: FileLayout) -> Dict[str, Path]:
    """Role -> path of the files of ``layout`` present in ``folder`` (missing roles left out)."""
    found = {}
    for role, names in layout.files.items():
        for file_name in names:
            if (folder / file_name).is_file():
                found[role] = folder / file_name
                break
    return found


def locate_files(name: str, layout: FileLayout, roots: Sequence[Path],
                 how_to_get: str, data_dir: Optional[PathLike] = None) -> Tuple[Path, Dict[str, Path]]:
    """Find the first folder that holds every file of ``layout`` (``roots`` being the ``data_dir``
    the user gave, when not None: its error is then one line, DataDirLacksDataset).

    Returns:
        ``(folder, {role: path})``.

    Raises:
        DatasetNotFoundError: no folder holds all files; the message lists each folder searched,
            what a partly filled folder lacks, and ``how_to_get``.
    """
    searched = []
    for folder in candidate_folders(roots, layout):
        found = files_in(folder, layout)
        if len(found) == len(layout.files):
            return folder, found
        note = ""
        if found:
            missing = [layout.files[role][0] for role in layout.files if role not in found]
            note = f"  (incomplete: lacks {', '.join(missing)})"
        searched.append(f"  {folder}{note}")
    wanted = ", ".join(names[0] for names in layout.files.values())
    if data_dir is not None:
        where = str(data_dir) if os.path.isdir(data_dir) else f"{data_dir} (no such folder)"
        raise DataDirLacksDataset(
            f"dataset {name!r} not found in the data folder given, {where}: looked for {wanted} in "
            + ", ".join(" ".join(line.split()) for line in searched) + " (a data folder given is the only one "
            f"searched: leave it out to search ${ENV_VAR}, ~/.cache/coreaug and {SYSTEM_DATA_DIR / name}). "
            + " ".join(how_to_get.split("\n")))
    raise DatasetNotFoundError(
        f"dataset {name!r} not found: looked for {wanted} in\n" + "\n".join(searched)
        + f".\n{how_to_get}"  # the period ends the list in the CLI's one line too ("... /x. To get it")
    )


def find_or_download(name: str, layout: FileLayout, data_dir: Optional[PathLike],
                     download: bool, fetch: Callable[[Path], None],
                     how_to_get: str) -> Tuple[Path, Dict[str, Path]]:
    """Locate the dataset's files; if absent and ``download`` is true, ``fetch(root)`` them into
    `default_download_root` and locate them there.

    Returns ``(folder, {role: path})`` as `locate_files`.
    """
    try:
        return locate_files(name, layout, search_roots(name, data_dir), how_to_get, data_dir)
    except DatasetNotFoundError:
        if not download:
            raise
    root = default_download_root(data_dir)
    fetch(root)
    return locate_files(name, layout, [root], how_to_get, data_dir)


def how_to_get(name: str, urls: Sequence[str], data_dir: Optional[PathLike] = None,
               extra: str = "") -> str:
    """The closing lines of a `DatasetNotFoundError`: how to obtain dataset ``name``."""
    lines = [
        f"To get it: pass --download (Python: load_dataset(..., download=True)) to fetch "
        f"{' and '.join(urls)} into {default_download_root(data_dir)};",
        f"or put the files in one of the folders above (set ${ENV_VAR} to add a folder).",
    ]
    if extra:
        lines.append(extra)
    return "\n".join(lines)
