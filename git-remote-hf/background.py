"""A clone's LFS download in a background process, overlapping git's checkout; the filter follows its progress.

git checks a clone out only after the helper has exited, and checks out every other file before the
first LFS one reaches the filter. So that the LFS objects download meanwhile, the helper forks a child
(:func:`start`) that downloads them (pipelined batch calls, adaptive concurrency; see
:mod:`git_remote_hf.lfs_transfer`) in the order git checks them out, then exits; the helper itself
answers git at once. The child's stdin, stdout and stderr are ``/dev/null``: git and whoever reads
git's output do not wait for it.

The status file ``.git/lfs/hf-prefetch`` ties the two: the child holds an exclusive ``flock`` on it for
its whole life (the kernel releases it however the child ends) and appends ``want <oid>`` (written
before the fork), ``ok <oid>`` or ``fail <oid> <why>`` lines. The filter process (:class:`Watch`)
answers ``delayed`` for an object the child will bring and lists it to git once it is stored; when the
child has ended, whatever is still missing is fetched by the filter itself, the same path as without
a background download. The child removes the file when it is done.

Off switch: ``GIT_REMOTE_HF_BACKGROUND=0`` or ``git config hf.lfs.background false`` (the download
then happens in the helper before it answers, as in a ``git fetch``); no ``fork`` (not POSIX) falls
back to that too. A ``git clone --no-checkout`` returns while the child still downloads.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from git_remote_hf.trace import mark

if TYPE_CHECKING:
    from hubfs.client.api import HubClient
    from hubfs.lfs import LfsPointer

__all__ = ["ENV", "STATUS_FILE", "Watch", "enabled", "start"]

ENV = "GIT_REMOTE_HF_BACKGROUND"
STATUS_FILE = "hf-prefetch"  # under .git/lfs
POLL = 0.005  # seconds between looks at the status file while waiting for the child
GONE_POLL = 0.1  # seconds between the child's checks that the repository still exists


def status_path(git_dir: Path) -> Path:
    return Path(git_dir) / "lfs" / STATUS_FILE


def enabled(config_value: str | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether a clone downloads in the background: not turned off by ``GIT_REMOTE_HF_BACKGROUND`` or by
    ``hf.lfs.background`` (``config_value``, as ``git config --type=bool`` prints it), and ``fork`` exists."""
    value = (os.environ if env is None else env).get(ENV, "").strip().lower()
    if value in ("0", "false", "no", "off") or (config_value or "").strip() == "false":
        return False
    return hasattr(os, "fork")


def start(git_dir: Path, client: HubClient, lfs_url: str, wanted: list[tuple[str, LfsPointer]]) -> bool:
    """Fork the child that downloads the objects of ``wanted`` (``(path, pointer)``, in checkout order) the
    store lacks: True once it runs, or when none is missing; False when it could not start (the caller
    then downloads in the foreground)."""
    from git_remote_hf.lfs_store import LfsStore

    todo = LfsStore(git_dir).missing(p for _, p in wanted)
    if not todo:
        return True
    names = {p.oid: path for path, p in reversed(wanted)}  # the first path of each oid
    path = status_path(git_dir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, "".join(f"want {p.oid}\n" for p in todo).encode())
        pid = os.fork()
    except OSError:
        os.close(fd)
        return False
    if pid == 0:  # the child: never returns
        code = 1
        try:
            _redirect_std()
            code = _download(git_dir, client, lfs_url, todo, names, fd, path)
        finally:
            os._exit(code)
    os.close(fd)  # the child's copy keeps the lock
    mark("helper", "background-prefetch", f"pid {pid}, {len(todo)} objects")
    return True


def _redirect_std() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.close(devnull)


def _download(git_dir: Path, client: HubClient, lfs_url: str, todo: list[LfsPointer], names: dict[str, str],
              fd: int, path: Path) -> int:
    """The child's work: fetch ``todo``, one status line per object; 0 if all arrived."""
    from git_remote_hf.lfs_transfer import fetch_objects
    from hubfs.client.api import HubClient
    from hubfs.errors import HubfsError

    mark("prefetch", "start")
    failures = 0

    def settled(pointer: LfsPointer, why: str | None) -> None:
        nonlocal failures
        if why is None:
            line = f"ok {pointer.oid}\n"
        else:
            failures += 1
            line = f"fail {pointer.oid} {' '.join(why.split())}\n"
        os.write(fd, line.encode("utf-8", "replace"))  # O_APPEND: each line lands whole

    threading.Thread(target=_exit_when_gone, args=(git_dir,), daemon=True).start()
    # a client of its own: the parent closes the inherited one's connections when it exits
    own = HubClient(client.endpoint, client.config.token or False)
    try:
        fetch_objects(git_dir, own, lfs_url, todo, progress=False, names=names, on_done=settled)
    except (HubfsError, OSError):
        pass  # each object already has its line; the filter fetches what is missing
    finally:
        own.close()
        path.unlink(missing_ok=True)
        mark("prefetch", "done", f"{failures} failed")
    return 1 if failures else 0


def _exit_when_gone(git_dir: Path) -> None:
    """End the child at once if the repository is removed under it (git removes a clone that failed after
    the fetch), so that it recreates no folder there."""
    while True:
        time.sleep(GONE_POLL)
        if not git_dir.is_dir():
            os._exit(1)


class Watch:
    """The filter's view of a running background download: ``wanted``, ``done`` and ``failed`` oids."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.wanted: set[str] = set()
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.running = True
        self._partial = b""

    @classmethod
    def open(cls, git_dir: Path) -> Watch | None:
        """The watch of the download running for ``git_dir``, or None when there is none."""
        try:
            fd = os.open(status_path(git_dir), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        watch = cls(fd)
        if not watch.refresh():
            watch.close()
            return None
        return watch

    def refresh(self) -> bool:
        """Read the lines written since the last look; whether the child still runs."""
        running = self._locked()  # first: once it is seen ended, every line it wrote is there to read
        while chunk := os.read(self.fd, 1 << 16):
            self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for raw in lines:
            kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
            oid = rest.split(" ", 1)[0]
            {"want": self.wanted, "ok": self.done, "fail": self.failed}.get(kind, set()).add(oid)
        self.running = running
        return running

    def _locked(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return False

    def brings(self, oid: str) -> bool:
        """Whether the running child is still to deliver ``oid``."""
        return self.running and oid in self.wanted and oid not in self.done and oid not in self.failed

    def wait_for(self, oid: str) -> None:
        """Block until ``oid`` is delivered or failed, or the child has ended."""
        while self.refresh() and self.brings(oid):
            time.sleep(POLL)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
