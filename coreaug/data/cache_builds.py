"""Decoded-cache builds in progress: one builder per cache, the others wait, dead builds go.

A build is a folder ``<key>.building-<host>-<pid>-<random>`` next to the cache's place (so two
nodes, or two runs with one PID in two containers, never share one). It appears, renamed from a
hidden folder, with ``owner.json`` (host, pid, the process's start time, when it claimed the
build) already in it, and holds ``heartbeat``, a file the builder rewrites as it decodes (at most
every HEARTBEAT seconds). Of several builds of one key, the earliest claim builds and the others
withdraw and wait for it (`claim`, `wait_for`); a later claim may rarely build too, on clocks that disagree,
and the first rename wins.

A build is stale, and removed by the next build in the same cache folder (`remove_stale`), when
its owner on this host is gone (no such PID, or a PID reused by a later process), or, owned on
another host, when its heartbeat is older than ``stale_after``. A build of a live process on
this host is never removed. "This host" is the host name and the PID namespace: containers
that share the host name (host networking) each count as another host.
"""
import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from typing import List, Optional

from coreaug.errors import UsageError

HEARTBEAT_SECONDS = 2.0
# A build whose heartbeat has not moved for this long has stopped: its waiters give up, and a
# build of another host that old is removed. Decoding writes a batch every few seconds.
STALL_SECONDS = 600.0
OWNER, HEARTBEAT = "owner.json", "heartbeat"


def _start_time(pid: int) -> Optional[int]:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat), or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, started: Optional[int]) -> bool:
    """Whether process ``pid`` of this host still runs and is the one that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    now = _start_time(pid)
    return started is None or now is None or now == started


def _pid_namespace() -> Optional[str]:
    """This process's PID namespace ("pid:[4026531836]"): containers that share the host name
    (docker --network host) have their own, where PIDs name other processes."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _on_this_host(owner: dict) -> bool:
    """Whether `owner`'s PID can be looked up here: the same host name and PID namespace (a
    build recorded before the namespace was, by its host name alone)."""
    return owner.get("host") == socket.gethostname() and owner.get("pid_ns", _pid_namespace()) == _pid_namespace()


def _owner(path: str) -> Optional[dict]:
    try:
        with open(os.path.join(path, OWNER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _age(path: str) -> float:
    """Seconds since the build at ``path`` last beat (or, without a heartbeat, was changed)."""
    for name in (os.path.join(path, HEARTBEAT), path):
        try:
            return time.time() - os.stat(name).st_mtime
        except OSError:
            continue
    return 0.0


def is_stale(path: str, stale_after: float = STALL_SECONDS) -> bool:
    """Whether the build folder ``path`` is left over: see the module docstring."""
    owner = _owner(path)
    if owner is None or not _on_this_host(owner):
        return _age(path) > stale_after
    return not _alive(int(owner["pid"]), owner.get("started"))


def stale_builds(root: str, stale_after: float = STALL_SECONDS) -> List[str]:
    """The stale builds (of any cache) in the cache folder ``root``: their folders."""
    return [entry.path for entry in os.scandir(root)
            if ".building-" in entry.name and entry.is_dir(follow_symlinks=False) and is_stale(entry.path, stale_after)]


def remove_stale(root: str, stale_after: float = STALL_SECONDS, key: Optional[str] = None) -> int:
    """Remove the stale builds (of any cache) in the cache folder ``root``; returns how many removed.
    One that cannot be removed (another user's, in a folder users share) is left, but for a build of
    the cache ``key`` about to be claimed: a UsageError (`remove_left_build`), as it would be the
    claim's leader, waited for in a loop."""
    removed = 0
    for path in stale_builds(root, stale_after):
        try:
            remove_left_build(path)
        except UsageError:
            if key is not None and os.path.basename(path).startswith(f"{key}.building-"):
                raise
            continue  # another cache's: in no one's way here
        removed += 1
    return removed


def remove_left_build(path: str):
    """Remove the build at ``path`` that a process now gone left. UsageError where it cannot be (another
    user's, in a cache folder users share, or a read-only disk): claiming the cache again would find it
    in the way at once, and loop on it."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        if not os.path.lexists(path):  # (removed meanwhile by another process)
            return
        owner = _owner(path) or {}
        by = [f"{owner['host']} pid {owner['pid']}"] if "host" in owner and "pid" in owner else []
        with contextlib.suppress(OSError):
            by.append(f"user id {os.stat(path).st_uid}")
        who = f" ({', '.join(by)})" if by else ""
        raise UsageError(f"the decoded cache build {path}, left by a process that is gone{who}, cannot be removed "
                         f"here ({exc.strerror or exc}), and it stands in the way of this cache: ask its owner to "
                         "delete it, or use a cache folder of your own (--cache-dir, or COREAUG_CACHE_DIR)") from None


def read_meta(folder: str) -> Optional[dict]:
    """The cache ``folder``'s meta.json, or None when it is missing or unreadable: then the
    folder is no cache (a removal cut short, or a crash before the file reached the disk), and
    a build replaces it."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


class Build:
    """A build this process claimed: ``path`` (its folder), ``beat()`` while it progresses,
    ``finish(folder)`` to rename it into the cache's place, ``remove()`` to drop it."""

    def __init__(self, root: str, key: str):
        name = f"{key}.building-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.path = os.path.join(root, name)
        hidden = os.path.join(root, f".{name}")
        os.makedirs(hidden)
        self.owner = {"host": socket.gethostname(), "pid_ns": _pid_namespace(), "pid": os.getpid(),
                      "started": _start_time(os.getpid()),
                      "claimed": time.time()}
        try:
            with open(os.path.join(hidden, OWNER), "w") as f:
                json.dump(self.owner, f)
            self._last = 0.0
            self.beat()
            os.rename(hidden, self.path)  # appears whole: no one sees it without its owner
        except BaseException:  # a full disk: no hidden folder left behind
            shutil.rmtree(hidden, ignore_errors=True)
            raise

    def beat(self, done: int = 0):
        """Show that the build progresses (``done`` images so far); cheap to call per batch."""
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_SECONDS:
            self._last = now
            hidden = os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}")
            folder = self.path if os.path.isdir(self.path) else hidden
            with open(os.path.join(folder, HEARTBEAT), "w") as f:
                f.write(f"{done}\n")

    def finish(self, folder: str):
        """Rename the build into ``folder``: another process's finished cache there wins, and a
        folder there that is no cache (read_meta) is replaced."""
        for name in (OWNER, HEARTBEAT):
            os.remove(os.path.join(self.path, name))
        for replace in (True, False):
            try:
                os.rename(self.path, folder)
                return
            except OSError:
                if read_meta(folder) is not None:
                    return
                if not (replace and os.path.isdir(folder)):
                    raise
                shutil.rmtree(folder, ignore_errors=True)

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


def builds_of(root: str, key: str):
    """The visible builds of cache ``key`` in ``root``, earliest claim first: [(path, owner)]."""
    found = []
    for entry in os.scandir(root):
        if entry.name.startswith(f"{key}.building-"):
            owner = _owner(entry.path)
            if owner is not None:
                found.append((entry.path, owner))
    return sorted(found, key=lambda b: (b[1].get("claimed", 0.0), os.path.basename(b[0])))


def claim(root: str, key: str):
    """(build, leader): a new Build of cache ``key`` and its path if this process is to decode
    it, else (None, the path of the earlier claim that decodes it, which this one waits for)."""
    build = Build(root, key)
    leader = builds_of(root, key)[0][0]
    if leader == build.path:
        return build, leader
    build.remove()
    return None, leader


def wait_for(build_path: str, folder: str, stall_after: float = STALL_SECONDS, poll: float = 1.0) -> bool:
    """Wait while another process builds the cache ``folder`` in ``build_path``: True once the
    cache is there, False if the build went away without it (failed, or its owner on this host
    died: then it is removed), so the caller claims again. There is no time limit while the
    heartbeat moves; raises UsageError once it has not moved for ``stall_after`` seconds."""
    beat = os.path.join(build_path, HEARTBEAT)
    last, moved = None, time.monotonic()
    while read_meta(folder) is None:
        try:
            stat = os.stat(beat)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            if not os.path.isdir(build_path):
                return read_meta(folder) is not None
            stamp = None
        if stamp != last:  # measured on this clock: another host's clock may disagree with ours
            last, moved = stamp, time.monotonic()
        owner = _owner(build_path)
        if owner and _on_this_host(owner) and not _alive(int(owner["pid"]), owner.get("started")):
            remove_left_build(build_path)
            return False
        if time.monotonic() - moved > stall_after:
            who = f"{owner['host']} pid {owner['pid']}" if owner else "another process"
            raise UsageError(f"the decoded cache build {build_path} (by {who}) has made no progress for "
                             f"{stall_after:.0f} s; if that process is gone or hung, stop it, delete the folder "
                             "and run again")
        time.sleep(poll)
    return True
