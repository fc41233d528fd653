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
- the bytes are hashed in file order as they come (sha256 of an LFS object, the git blob id of a regular
  file); with the last byte the file is checked (hash and size), renamed into place under the blob's
  lock and linked into the commit's snapshot (:meth:`~hubfs.client.cache.HubCache.adopt`), so a
  re-open right after the read finds it; bytes that do not verify are dropped, never served.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubfs.client.cache import HubCache
    from hubfs.client.reader import ReadTarget

log = logging.getLogger("hubfs.cache")

__all__ = ["StreamKeeper"]


class StreamKeeper:
    """The bytes of one file handed out in order, on their way into the cache (see the module doc)."""

    def __init__(self, cache: HubCache, target: ReadTarget, size: int) -> None:
        """Create the private temporary file; raises ``OSError`` when it cannot be made."""
        self.cache, self.target, self.size = cache, target, size
        blob = cache.blob(target.repo_type, target.repo_id, target.etag)
        blob.parent.mkdir(parents=True, exist_ok=True)
        self.tmp: Path = blob.with_name(f"{blob.name}.{os.getpid()}-{id(self):x}.incomplete")
        self._fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        self._have: list[tuple[int, int]] = []  # sorted, merged [start, end) ranges written
        self._digest = hashlib.sha256() if target.lfs_oid else hashlib.sha1(b"blob %d\x00" % size)
        self._hashed = 0  # the digest covers [0, _hashed)

    @property
    def active(self) -> bool:
        """Whether bytes are still being kept (not dropped, not complete)."""
        return self._fd >= 0

    def write_at(self, offset: int, pieces: list[Any]) -> None:
        """Keep ``pieces`` (buffers, back to back) that belong at ``offset``; thread-safe. Bytes that continue
        what is hashed are hashed as they are written (others once the gap before them is filled), so the
        file is checked and in place the moment its last byte is."""
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
                    if at <= self._hashed < at + len(view):
                        self._digest.update(view[self._hashed - at:])
                        self._hashed = at + len(view)
                    at += len(view)
                if at > offset:
                    self._have = _merged(self._have, offset, at)
                self._catch_up()
            except OSError as err:
                log.info("not keeping %s in the cache: %s", self.target.path, err)
                self._drop()
                return
            if self._hashed < self.size:
                return
            os.close(self._fd)
            self._fd = -1
            self._finish(self._digest.hexdigest())

    def _catch_up(self) -> None:
        """Hash, from the file, what was written ahead of the hashed part and now continues it."""
        first = self._have[0] if self._have else (0, 0)
        while first[0] == 0 and self._hashed < first[1]:
            data = os.pread(self._fd, min(8 << 20, first[1] - self._hashed), self._hashed)
            if not data:
                raise OSError(f"{self.tmp} is shorter than what was written to it")
            self._digest.update(data)
            self._hashed += len(data)

    def drop(self) -> None:
        """Stop keeping and remove the partial file (idempotent; a complete file is already in place)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.tmp.unlink(missing_ok=True)

    def _finish(self, hexdigest: str) -> None:
        t = self.target
        try:
            if self.tmp.stat().st_size != self.size or hexdigest != t.etag:
                log.warning("%s read through was not what its hash says: not kept", t.path)
                self.tmp.unlink(missing_ok=True)
                return
            self.cache.adopt(self.tmp, t.repo_type, t.repo_id, t.etag, self.size, t.commit, t.path)
        except OSError as err:
            log.info("could not keep %s in the cache: %s", t.path, err)
            self.tmp.unlink(missing_ok=True)


def _merged(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` (sorted, merged) with [start, end) added."""
    out: list[tuple[int, int]] = []
    for a, b in sorted([*ranges, (start, end)]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
