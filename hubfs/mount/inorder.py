"""Kernel read-ahead requests of one open file, handed to its reader in file order.

With a read-ahead window above one request (the bdi ``read_ahead_kb`` the daemon sets), the kernel
sends several 1 MiB reads of a stream at once, and libfuse's threads hand them to Python in whatever
order they win the GIL: 0, 2, 1, 3 MiB... A :class:`~hubfs.client.reader.FileReader` seeing that would
take the stream for random reads and fetch each request on its own. :class:`InOrder` holds a read
that looks like one of those requests -- big (``STREAM_MIN``), ahead of a stream by whole requests of
its own size, within ``window`` -- until the reads before it are done: as long as one of them is being
served, and at most ``wait`` seconds for one that has not arrived. So the reader sees 0, 1, 2, 3 and
keeps streaming with its own read-ahead. Other reads (small, random, strided: they never continue a
stream) pass straight through, and a new handle is presumed to be read from its start.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubfs.mount.ops import Handle

WAIT = 0.05  # longest a read waits for an earlier one that has not arrived (normally microseconds behind)
STREAM_MIN = 128 << 10  # reads this big may be read-ahead requests of a stream (random app reads are pages)


class InOrder:
    """A :class:`~hubfs.mount.ops.Handle` serving ``handle``'s reads of a stream in offset order."""

    def __init__(self, handle: Handle, window: int, wait: float = WAIT) -> None:
        self.handle, self.window, self.wait = handle, window, wait
        self._cond = threading.Condition()
        self._next = 0  # where the stream continues: the end of the last read served in order
        self._streaming = True  # the last read continued the stream (a new handle: presumed read from 0)
        self._running: list[int] = []  # offsets of the reads being served

    def read(self, offset: int, length: int) -> bytes:
        with self._cond:
            held = self._held(offset, length)
            deadline = time.monotonic() + self.wait
            while self._held(offset, length):
                if any(self._next <= r < offset for r in self._running):
                    self._cond.wait(1.0)  # an earlier read of the stream is being served: it ends soon
                    deadline = time.monotonic() + self.wait
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break  # what is missing before it is not coming: go on
                self._cond.wait(left)
            self._running.append(offset)
        data = b""
        try:
            data = self.handle.read(offset, length)
            return data
        finally:
            with self._cond:
                self._running.remove(offset)
                self._moved(offset, length, len(data), held)
                self._cond.notify_all()

    def _held(self, offset: int, length: int) -> bool:
        """Whether ``offset`` looks like a read-ahead request whose predecessors are not served yet."""
        gap = offset - self._next
        return self._streaming and length >= STREAM_MIN and 0 < gap <= self.window and gap % length == 0

    def _moved(self, offset: int, length: int, got: int, held: bool) -> None:
        """Update the stream after serving ``got`` bytes of a read of ``length`` at ``offset``."""
        if offset < self._next and offset + got <= self._next:
            return  # a late read behind the stream: nothing changes
        self._streaming = length >= STREAM_MIN and (offset == self._next or held)
        self._next = offset + got

    def close(self) -> None:
        self.handle.close()


__all__ = ["STREAM_MIN", "WAIT", "InOrder"]
