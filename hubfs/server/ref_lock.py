"""The lock that serializes ref updates of one git repository across threads, processes and hosts.

``with locks.hold(repo_path):`` first takes a per-repo thread lock (threads of this process queue
cheaply), then a lock every other hub process sees:

- with PostgreSQL configured, a session-level advisory lock keyed by a stable 64-bit hash of the
  repo's path below the git root (the same on every host that mounts the shared volume, whatever
  its mount point); a process that dies holding it loses it with its connection;
- otherwise an ``fcntl.flock`` on ``<name>.git.reflock`` beside the repo (released by the kernel
  when the process dies; works across hosts on NFS, where Linux maps it onto POSIX locks).

It guards the read-modify-write of a commit (read head, build, compare-and-swap the ref): the
compare-and-swap itself stays in git's ``ref.lock`` files, so ``git receive-pack`` (which does not
take this lock) can never be overwritten, only retried.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

SUFFIX = ".reflock"
SessionLock = Callable[[int], AbstractContextManager[None]]


def lock_key(root: Path, path: Path) -> int:
    """The advisory-lock key of the repo at ``path``: signed 64-bit, from its path below ``root``."""
    try:
        rel = Path(path).relative_to(root).as_posix()
    except ValueError:
        rel = Path(path).as_posix()
    return int.from_bytes(hashlib.sha256(b"hubfs-ref:" + rel.encode()).digest()[:8], "big", signed=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class RefLocks:
    """The repo locks of one git root; ``session_lock`` (PostgreSQL's) replaces the file locks."""

    def __init__(self, root: Path, session_lock: SessionLock | None = None) -> None:
        self.root = Path(root)
        self._session_lock = session_lock
        self._threads: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, path: Path) -> Iterator[None]:
        with self._guard:
            thread_lock = self._threads.setdefault(str(path), threading.Lock())
        with thread_lock:
            if self._session_lock is not None:
                with self._session_lock(lock_key(self.root, path)):
                    yield
            else:
                with file_lock(Path(path).with_name(Path(path).name + SUFFIX)):
                    yield
