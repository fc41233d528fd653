"""The file objects of the ``hf://`` filesystem: pinned reads with read-ahead, and commit-on-close writes."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubfs.client.commit import Add
from hubfs.client.fetch import content_hash
from hubfs.client.readahead import ReadAhead
from hubfs.config import PROBE_SIZE
from hubfs.errors import EntryNotFoundError

if TYPE_CHECKING:
    from typing_extensions import Self

    from hubfs.fs import HubFileSystem

BLOCK_CACHE_MIN = 8 << 20


class HubFile(io.RawIOBase):
    """A read-only file pinned to one commit.

    Sequential reads stream through a :class:`~hubfs.client.readahead.ReadAhead`: ranges growing
    x4 up to 16 MiB, up to 4 in flight, received as pieces of the caller's read size and returned
    without a copy. Random reads fetch exactly what was asked, through the shared sparse cache for
    LFS objects. When the listing already gave the size, opening costs no request; otherwise the
    first 64 KiB are fetched, which also tells the size.
    """

    def __init__(self, fs: HubFileSystem, name: str, url: str, where: tuple[str, str, str, str] | None = None,
                 info: dict[str, Any] | None = None, edge: tuple[int, bytes] | None = None) -> None:
        super().__init__()
        self.fs, self.name, self.path, self.url = fs, name, name, url
        self.loc = 0
        self._buf: memoryview = memoryview(b"")
        self._buf_start = 0
        self._next_seq = 0
        self._stream: ReadAhead | None = None
        self._where = where
        if info is not None and info.get("type") == "file":
            self.size = int(info["size"])
            self._oid = (info.get("lfs") or {}).get("sha256") or ""
            if edge is not None:  # the first or last bytes, from the peek that opened the file
                self._buf_start, self._buf = edge[0], memoryview(edge[1])
        else:
            first = bytearray(PROBE_SIZE)
            headers: dict[str, str] = {}
            try:
                n, total = fs.fetcher.fetch_into(url, 0, memoryview(first), headers)
            except EntryNotFoundError as exc:
                raise FileNotFoundError(name) from exc
            self.size = total if total >= 0 else n
            self._buf = memoryview(first)[:n]
            etag = content_hash(headers)
            self._oid = etag if re.fullmatch(r"[0-9a-f]{64}", etag) else ""
        self._blocks = fs.blocks if (fs.blocks is not None and self._oid and self.size >= BLOCK_CACHE_MIN) else None
        self._strides = StridePrefetcher(fs, url, held=self._holds)
        if self._blocks is not None and len(self._buf):
            self._blocks.store(self._oid, self.size, self._buf_start, bytes(self._buf))

    def readable(self) -> bool:
        return True

    def _holds(self, start: int, end: int) -> bool:
        """Whether this file holds [start, end) already (in the probe or the peek's edge)."""
        return self._buf_start <= start and end <= self._buf_start + len(self._buf)

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.loc

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.loc, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.loc = base + offset
        return self.loc

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        memoryview(b).cast("B")[:len(data)] = data
        return len(data)

    def read(self, length: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if length is None or length < 0:
            length = self.size - self.loc
        start, end = self.loc, min(self.size, self.loc + length)
        if end <= start:
            return b""
        parts: list[bytes] = []
        pos = start
        while pos < end:
            buf_end = self._buf_start + len(self._buf)
            if self._buf_start <= pos < buf_end:
                take = min(end, buf_end) - pos
                parts.append(self._buf[pos - self._buf_start: pos - self._buf_start + take].tobytes())
            elif pos != self._next_seq and not self._skips_within_stream(pos, end - start):
                parts.append(self._random(pos, end))
            else:
                parts.append(self._sequential(pos, end, length))
                self._strides.served(pos, len(parts[-1]))
            pos += len(parts[-1])
            self._next_seq = pos
            if not parts[-1]:
                break
        self.loc = pos
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _skips_within_stream(self, pos: int, length: int) -> bool:
        """A seek forward by no more than the read's own length, inside what the stream fetches: reading
        on past a skipped record. Longer jumps are random or strided reads."""
        stream = self._stream
        return stream is not None and stream.holds(pos) and pos - stream.pos <= max(length, PROBE_SIZE)

    def _sequential(self, start: int, end: int, length: int) -> bytes:
        """[start, end) from the read-ahead stream (started here, for reads of ``length``, if needed)."""
        stream = self._stream
        if stream is not None and self._skips_within_stream(start, end - start):
            stream.skip_to(start)  # a short skip forward (a seek past a tar member, say)
        else:
            if stream is not None:
                stream.close()
            stream = self._stream = ReadAhead(self.fs.fetcher, self.fs.part_pool, self.url, start, self.size, length)
        return stream.read(end - start)

    def _random(self, start: int, end: int) -> bytes:
        """A non-sequential read: exactly [start, end), from a strided prefetch, the sparse cache or the hub."""
        data = self._strides.take(start, end)
        if data is not None:
            if self._blocks is not None:
                self._blocks.store(self._oid, self.size, start, data)
        elif self._blocks is not None:
            data = self._blocks.read(self._oid, self.size, start, end,
                                     lambda off, mv: self.fs.fetcher.fetch_into(self.url, off, mv)[0])
        else:
            fresh = bytearray(end - start)
            n, _ = self.fs.read_into(self.url, start, memoryview(fresh))
            data = bytes(memoryview(fresh)[:n])
        self._strides.observe(start, end - start, self.size)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def read1(self, length: int = -1) -> bytes:
        return self.read(length)

    def close(self) -> None:
        if self.closed:
            return
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._buf = memoryview(b"")
        self._strides.cancel()
        if self._blocks is not None and self._where and self._blocks.complete(self._oid, self.size):
            self._blocks.promote(self._oid, self.size, *self._where)
        super().close()

    def __enter__(self) -> Self:
        return self


TWO_POINT_MIN = 1 << 20
WINDOW = 8  # recent reads a stride is judged on
HISTORY = 64  # recent reads never guessed again
STRIDE_DEPTH = 8  # guesses in flight: a parquet column's remaining row groups, usually


class StridePrefetcher:
    """Reads at a steady stride (a parquet column across row groups, a tensor per layer) are fetched
    ahead, concurrently. The recent random reads are taken in offset order, since readers with a
    thread pool ask out of order (pyarrow asks row groups 0, 8, 2, 3, ...): when they have about the
    same length and every gap between neighbours is about a multiple of the smallest gap, that gap
    is the stride, and the slots missing between them plus ``depth`` past the furthest (and one
    before the first) are requested at once, widened by the jitter seen. Two reads of 1 MiB or more
    are evidence enough. Ranges already read, requested or held (``held``) are not asked again. Any
    other pattern (truly random reads) prefetches nothing."""

    def __init__(self, fs: HubFileSystem, url: str, depth: int = STRIDE_DEPTH, budget: int = 128 << 20,
                 held: Callable[[int, int], bool] | None = None) -> None:
        self.fs, self.url, self.depth, self.budget = fs, url, depth, budget
        self.held = held or (lambda start, end: False)
        self.history: list[tuple[int, int]] = []  # recent random reads, oldest first
        self.streamed: list[tuple[int, int]] = []  # recent reads the sequential stream served
        self.pending: list[tuple[int, int, Any]] = []  # (start, length, future of bytes)
        self.warmed = False

    def take(self, start: int, end: int) -> bytes | None:
        """The bytes [start, end) from a prefetch that holds part of them (the gaps around it are fetched
        now: a guess that began a little late still saves most of the read)."""
        for i, (pstart, plen, future) in enumerate(self.pending):
            if start < pstart + plen and pstart < end:
                del self.pending[i]
                try:
                    data = future.result()
                except Exception:  # noqa: BLE001 - a failed guess is simply fetched again
                    return None
                head = self._fetch(start, pstart - start) if start < pstart else b""
                data = head + data[max(0, start - pstart): end - pstart]
                if len(data) < end - start:
                    data += self._fetch(start + len(data), end - start - len(data))
                return data
        return None

    def observe(self, start: int, length: int, size: int) -> None:
        if length >= TWO_POINT_MIN and not self.warmed:  # a big random read: a stride may follow, warm up
            self.warmed = True
            self.fs.fetcher.preconnect(self.url, self.depth, self.fs.pool)
        self.history = (self.history + [(start, length)])[-HISTORY:]
        reads = sorted(set(self.history[-WINDOW:]))
        lengths = [n for _, n in reads]
        if len(reads) < 2 or (len(reads) == 2 and min(lengths) < TWO_POINT_MIN):
            return
        if max(lengths) - min(lengths) > max(lengths) // 50:
            return  # a stride repeats one read
        gaps = [b - a for (a, _), (b, _) in pairwise(reads)]
        stride = min(gaps)
        if stride < max(lengths):
            return
        deviations = [abs(g - round(g / stride) * stride) / round(g / stride) for g in gaps]
        if max(deviations) > max(4096, stride // 100):
            return
        # two points show no variance: allow 1.5% of the read (row groups differ by a few KiB)
        jitter = int(max(4096, 2 * max(deviations), max(lengths) // 64 if len(reads) == 2 else 0))
        want = max(lengths) + (max(lengths) - min(lengths)) + 2 * jitter
        slots = [a + j * (b - a) // round((b - a) / stride)  # the missing ones between known reads
                 for (a, _), (b, _) in pairwise(reads) for j in range(1, round((b - a) / stride))]
        slots += [reads[-1][0] + k * stride for k in range(1, self.depth + 1)] + [reads[0][0] - stride]
        del slots[self.depth + len(reads):]  # guesses in proportion to the evidence
        queued = sum(n for _, n, _ in self.pending)
        for slot in slots:
            nxt = max(0, slot - jitter)
            n = min(want, size - nxt)
            if slot < 0 or n < min(lengths) or self.held(nxt, nxt + n) or self._known(nxt, n):
                continue  # outside the file (or too near its end to hold a read), held, read or requested
            if queued + n > self.budget:
                break
            self.pending.append((nxt, n, self.fs.pool.submit(self._fetch, nxt, n)))
            queued += n

    def served(self, start: int, length: int) -> None:
        """Note bytes the sequential stream served: they are read, and never guessed again."""
        if length:
            self.streamed = (self.streamed + [(start, length)])[-HISTORY:]

    def _known(self, start: int, length: int) -> bool:
        """Whether [start, start + length) overlaps a recent read or a pending guess."""
        return any(start < s + sn and s < start + length for s, sn in self.history) or \
            any(start < s + sn and s < start + length for s, sn in self.streamed) or \
            any(start < p + pn and p < start + length for p, pn, _ in self.pending)

    def _fetch(self, start: int, length: int) -> bytes:
        buf = bytearray(length)
        n, _ = self.fs.read_into(self.url, start, memoryview(buf))
        return bytes(memoryview(buf)[:n])

    def cancel(self) -> None:
        for _, _, future in self.pending:
            future.cancel()
        self.pending.clear()


class HubWriteFile(io.RawIOBase):
    """Written to a temporary file; committed (or queued in the transaction) on close."""

    def __init__(self, fs: HubFileSystem, path: str, autocommit: bool = True) -> None:
        super().__init__()
        self.fs, self.path, self.autocommit = fs, path, autocommit
        self._tmp = tempfile.NamedTemporaryFile(prefix="hubfs-write-", delete=False)  # noqa: SIM115 - open until close()
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._tmp.write(data)

    def tell(self) -> int:
        return self._tmp.tell()

    def close(self) -> None:
        if self.closed:
            return
        self._tmp.close()
        super().close()
        if self.autocommit:
            self.commit()

    def commit(self) -> None:
        """Queue or commit the content (fsspec calls this at the end of a transaction)."""
        if self._done:
            return
        self._done = True
        path = self._tmp.name
        try:
            data = Path(path).read_bytes() if os.path.getsize(path) <= (8 << 20) else None
            if data is not None:
                self.fs._queue(self.path, lambda rp: Add(rp.path, data))
            else:
                keep = tempfile.mkdtemp(prefix="hubfs-upload-")
                moved = os.path.join(keep, "content")
                os.replace(path, moved)
                self.fs._cleanup.append(keep)
                self.fs._queue(self.path, lambda rp: Add(rp.path, moved))
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def discard(self) -> None:
        self._done = True
        self._tmp.close()
        if os.path.exists(self._tmp.name):
            os.unlink(self._tmp.name)
