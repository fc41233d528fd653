"""Keeping a file that was read whole, in order: :class:`StreamKeeper` writes the bytes a reader hands out
into the local cache and makes them ``blobs/<etag>`` once complete and verified.

A reader that streams a file from its first byte to its last (a mount serving ``cp``, ``sha256sum`` or a
loader) fetched every byte anyway: keeping them makes the next open a local read (on a mount, one the
kernel serves from the blob itself) and shares them with ``hf://``, ``hubfs download`` and
huggingface_hub. Contract:

- bytes are written where they belong as they arrive (:meth:`StreamKeeper.write_at`, from any thread:
  the read-ahead's fetch threads, off the path that answers reads) into a private
  ``blobs/<etag>.<pid>-<id>.incomplete`` file, and the ranges written are counted; a close before they
  cover the file, or any OS error (a full disk), drops that file: reads never fail because of it;
- with the last byte the file is renamed into place under the blob's lock and linked into the commit's
  snapshot (:meth:`~hubfs.client.cache.HubCache.adopt`), so a re-open right after the read finds it,
  and then checked in ``pool`` (sha256 of an LFS object, the git blob id of a regular file): a blob that
  does not verify is removed again (with its snapshot link) and logged. Until then it holds exactly the
  bytes the reader was just served; hashing as the bytes come instead would put the hash on the read's
  own path, measured at 40% of a cold read's speed on 2 cores.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubfs.client.cache import HubCache
    from hubfs.client.reader import ReadTarget

log = logging.getLogger("hubfs.cache")

__all__ = ["StreamKeeper"]


class StreamKeeper:
    """The bytes of one file handed out in order, on their way into the cache (see the module doc)."""

    def __init__(self, cache: HubCache, target: ReadTarget, size: int, pool: Executor) -> None:
        """Create the private temporary file; raises ``OSError`` when it cannot be made."""
        self.cache, self.target, self.size, self.pool = cache, target, size, pool
        blob = cache.blob(target.repo_type, target.repo_id, target.etag)
        blob.parent.mkdir(parents=True, exist_ok=True)
        self.tmp: Path = blob.with_name(f"{blob.name}.{os.getpid()}-{id(self):x}.incomplete")
        self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        self._have: list[tuple[int, int]] = []  # sorted, merged [start, end) ranges written
        self.checked: Future[bool] | None = None  # the check of the kept blob, once it is in place

    @property
    def active(self) -> bool:
        """Whether bytes are still being kept (not dropped, not complete)."""
        return self._fd >= 0

    def write_at(self, offset: int, pieces: list[Any]) -> None:
        """Keep ``pieces`` (buffers, back to back) that belong at ``offset``; thread-safe. The write that
        completes the file puts it in place and starts its check."""
        with self._lock:
            if self._fd < 0:
                return
            at = offset
            try:
                for piece in pieces:
                    view = memoryview(piece).cast("B")
                    done = 0
                    while done < len(view):
                        done += os.pwrite(self._fd, view[done:], at + done)
                    at += len(view)
            except OSError as err:
                log.info("not keeping %s in the cache: %s", self.target.path, err)
                self._drop()
                return
            if at > offset:
                self._have = _merged(self._have, offset, at)
            if self._have != [(0, self.size)]:
                return
            os.close(self._fd)
            self._fd = -1
            t = self.target
            try:
                self.cache.adopt(self.tmp, t.repo_type, t.repo_id, t.etag, self.size, t.commit, t.path)
            except OSError as err:
                log.info("could not keep %s in the cache: %s", t.path, err)
                self.tmp.unlink(missing_ok=True)
                return
            self.checked = self.pool.submit(self._check)

    def drop(self) -> None:
        """Stop keeping and remove the partial file (idempotent; a complete file is already in place)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.tmp.unlink(missing_ok=True)

    def _check(self) -> bool:
        """Hash the kept blob; remove it (and its snapshot link) if it is not what its name says. Whether it stays."""
        t = self.target
        blob = self.cache.blob(t.repo_type, t.repo_id, t.etag)
        digest = hashlib.sha256() if t.lfs_oid else hashlib.sha1(b"blob %d\x00" % self.size)
        buf = memoryview(bytearray(8 << 20))
        try:
            with open(blob, "rb", buffering=0) as f:
                inode = os.fstat(f.fileno()).st_ino
                while n := f.readinto(buf):
                    digest.update(buf[:n])
            if digest.hexdigest() == t.etag:
                return True
            log.warning("%s read through was not what its hash says: removed from the cache again", t.path)
            with self.cache.lock(t.repo_type, t.repo_id, t.etag):
                if blob.stat().st_ino == inode:  # still the one kept here
                    blob.unlink()
                    self.cache.snapshot(t.repo_type, t.repo_id, t.commit, t.path).unlink(missing_ok=True)
        except OSError as err:
            log.info("could not check %s in the cache: %s", t.path, err)
        return False


def _merged(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` (sorted, merged) with [start, end) added."""
    out: list[tuple[int, int]] = []
    for a, b in sorted([*ranges, (start, end)]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
