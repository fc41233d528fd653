"""In-order streaming of one remote file from a position: concurrent ranges fetched ahead of the reader.

Beyond what the reader asked for, one range goes ahead until a second read comes (a lone read may be
all there is); from then on each read grows the ranges x4, from the first read's size up to ``part``
(16 MiB), with two ahead while they grow and ``depth`` (4) once they are full size: a short read
costs little, a long one keeps several connections busy. Each range arrives as ``bytes`` pieces split at the multiples
of the caller's read size, so reads of that size return a piece itself: the bytes are written
once, by the kernel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from hubfs.client.fetch import RangeFetcher
from hubfs.config import PART_SIZE
from hubfs.errors import HubConnectionError

DEPTH = 4
FIRST = 256 << 10
MIN_PIECE = 64 << 10


class ReadAhead:
    """The bytes of ``url`` from ``start`` to ``size``, in order, fetched ahead on ``pool``.

    ``piece`` is the read size the caller is expected to use; ``alloc`` makes the pieces' buffers (see
    :meth:`~hubfs.client.fetch.RangeFetcher.fetch_pieces`); ``on_range(start, pieces)`` is told of each
    range as it arrives, in the pool's thread (a :class:`~hubfs.client.keeper.StreamKeeper` writing it
    down). Not thread-safe: one reader.
    """

    def __init__(self, fetcher: RangeFetcher, pool: Executor, url: str, start: int, size: int, piece: int,
                 part: int = PART_SIZE, depth: int = DEPTH, alloc: Callable[[int], Any] | None = None,
                 on_range: Callable[[int, list[Any]], None] | None = None) -> None:
        self.fetcher, self.pool, self.url, self.size, self.alloc = fetcher, pool, url, size, alloc
        self.on_range = on_range
        self.pos = start
        self.piece = max(MIN_PIECE, min(piece, part))
        self._max_pieces = max(1, part // self.piece)
        self._pieces_per_part = min(self._max_pieces, max(1, -(-FIRST // self.piece)))
        self._max_depth = depth
        self._next = start  # where the next range starts
        self._inflight: deque[tuple[int, int, Future[list[bytes]]]] = deque()
        self._ready: deque[bytes] = deque()
        self._offset = 0  # bytes of _ready[0] already handed out
        self._reads = 0  # read() calls: a second one at the stream's position is the evidence to go ahead
        self._demand = start  # the end of what the reader has asked for
        self._schedule()

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer only at the end of the file)."""
        out: list[bytes] = []
        need = min(n, self.size - self.pos)
        self._demand = max(self._demand, self.pos + need)
        self._reads += 1
        if self._reads > 1:  # the reader came back for more: grow the ranges
            self._pieces_per_part = min(self._max_pieces, self._pieces_per_part * 4)
        while need > 0:
            if not self._ready:
                self._take_next_range()
            head = self._ready[0]
            if self._offset == 0 and len(head) <= need:
                chunk = head  # the piece itself: no copy
                self._ready.popleft()
            else:
                chunk = head[self._offset:self._offset + need]
                self._offset += len(chunk)
                if self._offset == len(head):
                    self._ready.popleft()
                    self._offset = 0
            out.append(chunk)
            need -= len(chunk)
            self.pos += len(chunk)
        self._schedule()
        return out[0] if len(out) == 1 else b"".join(out)

    def holds(self, pos: int) -> bool:
        """Whether ``pos`` lies ahead of the reader within what is fetched or being fetched."""
        return self.pos <= pos < self._next

    def peek(self, pos: int, n: int) -> bytes | None:
        """The ``n`` bytes at ``pos`` out of what is fetched or being fetched ahead of the reader, without
        moving it (waiting for the ranges they lie in); None when not all of them are held, or a range
        they lie in failed. For a read that arrives ahead of its turn: it costs no second fetch."""
        end = pos + n
        if n <= 0 or not (self.pos <= pos and end <= self._next):
            return None
        at = self.pos - self._offset  # the file offset of _ready[0]'s first byte
        spans: list[tuple[int, list[Any]]] = [(at, list(self._ready))]
        for start, length, future in self._inflight:
            if start < end and pos < start + length:
                try:
                    spans.append((start, future.result()))
                except Exception:  # noqa: BLE001 (the reader meets the failure when it gets there)
                    return None
        out = []
        for first, pieces in spans:
            for piece in pieces:
                size = len(piece)
                a, b = max(pos, first), min(end, first + size)
                if a < b:
                    out.append(bytes(memoryview(piece).cast("B")[a - first:b - first]))
                first += size
        data = b"".join(out)
        return data if len(data) == n else None

    def skip_to(self, pos: int) -> None:
        """Move the reader forward to ``pos`` (one that :meth:`holds`), dropping the bytes in between."""
        while self.pos < pos:
            if not self._ready:
                self._take_next_range()
            take = min(len(self._ready[0]) - self._offset, pos - self.pos)
            self._offset += take
            self.pos += take
            if self._offset == len(self._ready[0]):
                self._ready.popleft()
                self._offset = 0

    def _take_next_range(self) -> None:
        if not self._inflight:
            self._schedule()
        start, length, future = self._inflight.popleft()
        pieces = future.result()
        got = sum(len(p) for p in pieces)
        if got != length:
            self.close()
            raise HubConnectionError(f"GET {self.url.split('?')[0]} bytes {start}+{length}: the hub sent {got} bytes "
                                     f"of a file it said has {self.size}.")
        self._ready.extend(pieces)
        self._offset = 0
        self._schedule()

    def _may_schedule(self) -> bool:
        """All of what the reader asked for may be in flight (``depth`` ranges at a time); beyond it, one
        range until a second read comes (a lone read may be all there is), then 2 while the ranges
        grow, then ``depth``."""
        if self._next >= self.size:
            return False
        if self._next < self._demand:
            return len(self._inflight) < self._max_depth
        ahead = sum(1 for start, _, _ in self._inflight if start >= self._demand)
        if self._reads < 2:
            return ahead < 1
        return ahead < (self._max_depth if self._pieces_per_part == self._max_pieces else 2)

    def _schedule(self) -> None:
        while self._may_schedule():
            length = min((self._next // self.piece + self._pieces_per_part) * self.piece, self.size) - self._next
            future = self.pool.submit(self._fetch, self._next, length)
            self._inflight.append((self._next, length, future))
            self._next += length

    def _fetch(self, start: int, length: int) -> list[Any]:
        if self.alloc is None:
            pieces = self.fetcher.fetch_pieces(self.url, start, length, self.piece)
        else:
            pieces = self.fetcher.fetch_pieces(self.url, start, length, self.piece, self.alloc)
        if self.on_range is not None:
            self.on_range(start, pieces)
        return pieces

    def close(self) -> None:
        """Drop what was fetched and cancel what has not started (running ranges finish on their own)."""
        for _, _, future in self._inflight:
            future.cancel()
        self._inflight.clear()
        self._ready.clear()
