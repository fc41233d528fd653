"""Reclaiming disk (``hubfs gc``, and a periodic run inside ``hubfs serve``).

Three kinds of garbage, each removed only past a grace period and never while something can still
reach it:

- loose git objects no ref reaches (a refused or killed commit, a cut-off push), with git's own
  ``git prune --expire``, and ``objects/incoming-*`` quarantines a killed ``receive-pack`` left. Packs
  are never touched: the server's dulwich handles keep their pack lists open;
- LFS objects no LFS pointer reachable from any ref of any repo names, and their ``lfs_links`` rows;
  a pointer in the history of a repo that permanently deleted that object (``lfs_tombstones``) does
  not keep it;
- temporaries of dead uploads (see :meth:`LfsStore.clean_temporaries`).

The race with writers is closed by :class:`ReclaimLock` (``DATA/gc.lock``, a cross-process flock):
the REST commit and ``git receive-pack`` hold it shared while they may reference objects; gc scans
without it, then holds it exclusively while it re-checks its candidates and deletes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hubfs.errors import NotFoundError
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer, is_valid_oid
from hubfs.server.git_hooks import object_sizes, read_pointers
from hubfs.server.lfs_store import MULTIPART_TTL, LfsStore
from hubfs.server.lfs_tombstones import LfsDeletions
from hubfs.server.metadata import Metadata

if TYPE_CHECKING:
    from typing_extensions import Self

    from hubfs.server.hub import Hub

log = logging.getLogger("hubfs.server.gc")
DEFAULT_GRACE = 24 * 3600
DEFAULT_INTERVAL = 6 * 3600


# -- the lock ------------------------------------------------------------------------------------


class Held:
    """One acquisition of a :class:`ReclaimLock`; ``release()`` (or leaving ``with``) drops it."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def release(self) -> None:
        self._file.close()  # closing the descriptor drops the flock; never blocks

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ReclaimLock:
    """A reader/writer lock shared by every process on one data folder (``flock`` on ``path``).

    Writers that may reference existing objects hold it shared; gc holds it exclusively while it
    deletes. Each acquisition opens its own descriptor, so threads of one process exclude each other too.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def acquire(self, *, exclusive: bool = False, blocking: bool = True) -> Held | None:
        """Take the lock; None when ``blocking`` is False and it is held the other way."""
        file = open(self.path, "ab")  # noqa: SIM115 - held open: the flock lives as long as the Held
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(file.fileno(), flags)
        except BlockingIOError:
            file.close()
            return None
        except BaseException:
            file.close()
            raise
        return Held(file)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared (blocks while gc deletes)."""
        held = self.acquire()
        assert held is not None
        with held:
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock exclusively (blocks while any writer holds it shared)."""
        held = self.acquire(exclusive=True)
        assert held is not None
        with held:
            yield

    async def shared_async(self, poll: float = 0.05) -> Held:
        """Take the lock shared from an ``async def`` without blocking the event loop (or a thread)."""
        while True:
            held = self.acquire(blocking=False)
            if held is not None:
                return held
            await asyncio.sleep(poll)


# -- the report ----------------------------------------------------------------------------------


@dataclass
class GcReport:
    """What one gc run removed (counts and bytes), and what it could not check."""

    git_objects: int = 0
    git_bytes: int = 0
    quarantines: int = 0
    quarantine_bytes: int = 0
    lfs_objects: int = 0
    lfs_bytes: int = 0
    temporaries: int = 0
    temporary_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.git_bytes + self.quarantine_bytes + self.lfs_bytes + self.temporary_bytes

    def summary(self) -> str:
        """One line, for the server log."""
        return (f"removed {self.git_objects} git objects, {self.quarantines} quarantines, {self.lfs_objects} LFS "
                f"objects, {self.temporaries} temporaries; {_human(self.total_bytes)} freed"
                + "".join(f"; skipped: {e}" for e in self.errors))

    def lines(self) -> list[str]:
        """Human-readable summary, one kind per line."""
        return [
            f"git objects:      {self.git_objects} removed, {_human(self.git_bytes)}",
            f"git quarantines:  {self.quarantines} removed, {_human(self.quarantine_bytes)}",
            f"LFS objects:      {self.lfs_objects} removed, {_human(self.lfs_bytes)}",
            f"temporary files:  {self.temporaries} removed, {_human(self.temporary_bytes)}",
            f"total:            {_human(self.total_bytes)} freed",
            *(f"skipped: {e}" for e in self.errors),
        ]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# -- collection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    data_dir: Path
    lfs: LfsStore
    meta: Metadata
    reclaim: ReclaimLock


def _target(where: Path | str | Hub) -> _Target:
    if isinstance(where, (str, Path)):
        data = Path(where)
        if not (data / "hub.sqlite").is_file() and not (data / "database.json").is_file():  # or PostgreSQL
            raise NotFoundError(f"No hub data in {data} (no hub.sqlite).")
        return _Target(data, LfsStore(data), Metadata(data / "hub.sqlite"), ReclaimLock(data / "gc.lock"))
    return _Target(where.data_dir, where.lfs, where.meta, where.reclaim)


def collect(where: Path | str | Hub, grace_seconds: float = DEFAULT_GRACE) -> GcReport:
    """Remove garbage older than ``grace_seconds`` from a hub's data folder (or a running ``Hub``'s).

    Safe beside live servers on the same folder: nothing a ref, a live upload or a commit in flight can
    reach is removed. Problems that make a part unsafe to decide skip that part (``report.errors``).
    """
    target = _target(where)
    grace = max(0.0, float(grace_seconds))
    report = GcReport()
    repos = _repos(target.data_dir)
    for git_dir in repos:
        _prune_git(git_dir, grace, target.reclaim, report)
    _collect_lfs(target, grace, report)
    report.temporaries, report.temporary_bytes = target.lfs.clean_temporaries(max(grace, MULTIPART_TTL))
    return report


def _repos(data_dir: Path) -> list[Path]:
    """Every bare repository: ``DATA/repos/{type}/{ns}/{name}.git``, and ``DATA/repos/{type}/{name}.git``
    for canonical repos (no namespace)."""
    root = data_dir / "repos"
    return sorted(p for p in (*root.glob("*/*/*.git"), *root.glob("*/*.git")) if (p / "HEAD").is_file())


def _repo_key(data_dir: Path, git_dir: Path) -> tuple[str, str]:
    """(type, repo id) of a repository folder found by :func:`_repos` (``/name`` for a canonical repo)."""
    parts = git_dir.relative_to(data_dir / "repos").parts
    ns = parts[1] if len(parts) == 3 else ""
    return parts[0], f"{ns}/{parts[-1].removesuffix('.git')}"


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True, env=env)


def _prune_git(git_dir: Path, grace: float, reclaim: ReclaimLock, report: GcReport) -> None:
    """``git prune`` one repo, and drop its stale receive-pack quarantines, under the exclusive lock."""
    expire = "now" if grace == 0 else f"{int(grace)}.seconds.ago"
    cutoff = time.time() - grace
    with reclaim.exclusive():
        before = _loose_stats(git_dir)
        try:
            _git(git_dir, "prune", f"--expire={expire}")
        except subprocess.CalledProcessError as exc:
            report.errors.append(f"git prune in {git_dir}: {exc.stderr.strip()[:300]}")
            return
        after = _loose_stats(git_dir)
        for quarantine in (git_dir / "objects").glob("incoming-*"):
            newest, size = _tree_stats(quarantine)
            if newest < cutoff:
                shutil.rmtree(quarantine, ignore_errors=True)
                report.quarantines, report.quarantine_bytes = report.quarantines + 1, report.quarantine_bytes + size
    report.git_objects += max(0, before[0] - after[0])
    report.git_bytes += max(0, before[1] - after[1])


def _loose_stats(git_dir: Path) -> tuple[int, int]:
    """(count, bytes) of the loose objects of a repository."""
    count = size = 0
    for fan in (git_dir / "objects").glob("[0-9a-f][0-9a-f]"):
        for entry in os.scandir(fan):
            if entry.is_file(follow_symlinks=False):
                count, size = count + 1, size + entry.stat().st_size
    return count, size


def _tree_stats(root: Path) -> tuple[float, int]:
    """(newest mtime, total bytes) of everything under ``root``."""
    newest, total = root.stat().st_mtime, 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                st = os.stat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            newest, total = max(newest, st.st_mtime), total + st.st_size
    return newest, total


def _refs(git_dir: Path) -> str:
    """Every ref and its value: a fingerprint that changes when any ref moves."""
    return _git(git_dir, "for-each-ref", "--format=%(objectname) %(refname)").stdout


def pointer_blobs(git_dir: Path) -> list[tuple[str, str, LfsPointer]]:
    """(blob sha, a path it was seen at, pointer) of every LFS pointer blob reachable from any ref."""
    listing = _git(git_dir, "rev-list", "--objects", "--all").stdout
    paths: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, path = line.partition(" ")
        if sha:
            paths.setdefault(sha, path)
    small = [sha for sha, kind, size in object_sizes(list(paths), git_dir) if kind == "blob" and size <= POINTER_MAX_SIZE]
    return [(sha, paths[sha], pointer) for sha, pointer in read_pointers(small, git_dir)]


def referenced_oids(git_dir: Path) -> set[str]:
    """The LFS oids named by pointer blobs reachable from any ref of a repository."""
    return {pointer.oid for _, _, pointer in pointer_blobs(git_dir)}


def _live_oids(target: _Target, git_dir: Path, deleted: dict[str, set[str]]) -> set[str]:
    """The LFS oids a repository keeps alive: those its refs reach, less those it permanently deleted."""
    oids = referenced_oids(git_dir)
    repo = target.meta.get_repo(*_repo_key(target.data_dir, git_dir))
    return oids - deleted.get(repo.uid, set()) if repo is not None else oids


def _collect_lfs(target: _Target, grace: float, report: GcReport) -> None:
    """Scan without the lock, then re-check the candidates under it and delete them."""
    if target.lfs.remote:
        return  # objects in S3 carry no usable mtime for the grace rule: gc never removes them there
    deleted = LfsDeletions(target.data_dir / "hub.sqlite").by_repo()
    try:
        scanned = {git_dir: (_refs(git_dir), _live_oids(target, git_dir, deleted)) for git_dir in _repos(target.data_dir)}
    except subprocess.CalledProcessError as exc:
        report.errors.append(f"LFS objects: a repository could not be read ({exc.stderr.strip()[:300]})")
        return
    referenced = set().union(*(oids for _, oids in scanned.values()))
    cutoff = time.time() - grace
    candidates = [(oid, path) for oid, path in _lfs_objects(target.lfs) if oid not in referenced
                  and _mtime(path) < cutoff]
    if not candidates:
        return
    with target.reclaim.exclusive():
        try:
            for git_dir in _repos(target.data_dir):  # repos whose refs moved (or that are new) since the scan
                if scanned.get(git_dir, ("", set()))[0] != _refs(git_dir):
                    referenced |= _live_oids(target, git_dir, deleted)
        except subprocess.CalledProcessError as exc:
            report.errors.append(f"LFS objects: a repository could not be read ({exc.stderr.strip()[:300]})")
            return
        cutoff = time.time() - grace
        removed = []
        for oid, path in candidates:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if oid in referenced or st.st_mtime >= cutoff:
                continue  # referenced meanwhile, or touched (re-uploaded, re-linked)
            path.unlink(missing_ok=True)
            removed.append(oid)
            report.lfs_objects, report.lfs_bytes = report.lfs_objects + 1, report.lfs_bytes + st.st_size
        target.meta.unlink_lfs(removed)


def _lfs_objects(lfs: LfsStore) -> Iterator[tuple[str, Path]]:
    """(oid, path) of every stored LFS object (``lfs/ab/cd/<oid>``)."""
    for path in lfs.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*"):
        if is_valid_oid(path.name) and path.name.startswith(path.parent.parent.name + path.parent.name):
            yield path.name, path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


# -- the periodic run inside `hubfs serve` -------------------------------------------------------


def start_periodic(hub: Hub, interval: float, grace: float) -> threading.Event | None:
    """Run :func:`collect` every ``interval`` seconds in a daemon thread; set the returned event to stop.

    None (and nothing started) when ``interval`` is 0 or less.
    """
    if interval <= 0:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                report = collect(hub, grace)
            except Exception:
                log.exception("gc run failed")
                continue
            log.info("gc: %s", report.summary())

    threading.Thread(target=loop, name="hubfs-gc", daemon=True).start()
    return stop
