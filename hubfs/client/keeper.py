"""Keeping a file that was read whole, in order: :class:`StreamKeeper` writes the bytes a reader hands out
into the local cache and makes them ``blobs/<etag>`` once complete and verified.

A reader that streams a file from its first byte to its last (a mount serving ``cp``, ``sha256sum`` or a
loader) fetched every byte anyway: keeping them makes the next open a local read (on a mount, one the
kernel serves from the blob itself) and shares them with ``hf://``, ``hubfs download`` and
huggingface_hub. Contract:

- bytes are written as they are handed out, in file order from offset 0, to a private
  ``blobs/<etag>.<pid>-<id>.incomplete`` file; a gap (a seek), a close before the end or any OS error
  (a full disk) drops that file and keeping stops for the stream: reads never fail because of it;
- once the last byte is written the file is verified in ``pool`` (sha256 of an LFS object, the git blob
  id of a regular file, and the size), then renamed into place under the blob's lock and linked into
  the commit's snapshot (:meth:`~hubfs.client.cache.HubCache.adopt`); bytes that do not verify are
  dropped, never served.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import Executor
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
        self.next = 0  # where the next byte handed out must start

    @property
    def active(self) -> bool:
        """Whether bytes are still being kept (not dropped, not complete)."""
        return self._fd >= 0

    def write(self, offset: int, data: Any) -> None:
        """Keep ``data`` (any buffer) handed out at ``offset``; anything but the next bytes drops the file."""
        if self._fd < 0 or not len(data):
            return
        if offset != self.next:
            self.drop()
            return
        view = memoryview(data).cast("B")
        try:
            done = 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as err:
            log.info("not keeping %s in the cache: %s", self.target.path, err)
            self.drop()
            return
        self.next += len(view)
        if self.next >= self.size:
            os.close(self._fd)
            self._fd = -1
            self.pool.submit(self._finish)

    def drop(self) -> None:
        """Stop keeping and remove the partial file (idempotent; a complete file is left to its check)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.tmp.unlink(missing_ok=True)

    def _finish(self) -> None:
        t = self.target
        try:
            if self.tmp.stat().st_size != self.size or self._digest() != t.etag:
                log.warning("%s read through was not what its hash says: not kept", t.path)
                self.tmp.unlink(missing_ok=True)
                return
            self.cache.adopt(self.tmp, t.repo_type, t.repo_id, t.etag, self.size, t.commit, t.path)
        except OSError as err:
            log.info("could not keep %s in the cache: %s", t.path, err)
            self.tmp.unlink(missing_ok=True)

    def _digest(self) -> str:
        digest = hashlib.sha256() if self.target.lfs_oid else hashlib.sha1(b"blob %d\x00" % self.size)
        buf = memoryview(bytearray(8 << 20))
        with open(self.tmp, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                digest.update(buf[:n])
        return digest.hexdigest()
