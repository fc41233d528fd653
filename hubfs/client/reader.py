"""The one way any front end reads a Hub file's bytes: :class:`FileReader`, one file of one commit.

Where bytes come from, first that applies:

1. a complete blob in the local cache (huggingface_hub's layout, ``blobs/<etag>``, of the right
   size): read from disk, no request at all; a blob of the wrong size (truncated) is never used;
2. with ``HF_HUB_OFFLINE`` set, nothing else: :class:`~hubfs.errors.OfflineModeError`, nothing sent;
3. the first or last bytes that came with opening the file (the peek or the probe);
4. sequential reads: a :class:`~hubfs.client.readahead.ReadAhead` stream; strided reads: a
   :class:`~hubfs.client.stride.StridePrefetcher`; other reads: exactly the bytes asked, through
   the sparse :class:`~hubfs.client.blocks.BlockCache` for big LFS objects, as concurrent 16 MiB
   ranges when big. Concurrent reads of the same range share one fetch (:class:`SingleFlight`).

With ``ReaderDeps.keep_reads`` (the mount), a file streamed from its first byte to its last is kept in
the cache as its blob (:class:`~hubfs.client.keeper.StreamKeeper`, fed by the read-ahead as ranges
arrive), so the next open reads it locally.

No fsspec here: the filesystem, the mount and the loader all build readers from a :class:`ReadTarget`
(what to read) and :class:`ReaderDeps` (the shared fetcher, pools and caches).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from hubfs.client.fetch import RangeFetcher, content_hash
from hubfs.client.keeper import StreamKeeper
from hubfs.client.readahead import ReadAhead
from hubfs.client.stride import STRIDE_DEPTH, StridePrefetcher
from hubfs.config import PART_SIZE, PROBE_SIZE
from hubfs.errors import EntryNotFoundError, OfflineModeError

PEEK_MIN = 128 << 10  # a read this large ahead of the stream may be served from its ranges (_stream_or_random)

if TYPE_CHECKING:
    from typing_extensions import Self

    from hubfs.client.blocks import BlockCache
    from hubfs.client.cache import HubCache

BLOCK_CACHE_MIN = 8 << 20  # LFS objects this big or bigger keep partial reads in the block cache


@dataclass(frozen=True)
class ReadTarget:
    """One file of one commit: where to GET it, its size (None: unknown) and the hashes naming its blob."""

    repo_type: str
    repo_id: str
    commit: str
    path: str
    url: str
    size: int | None = None
    blob_id: str = ""  # the git blob sha1
    lfs_oid: str = ""  # the LFS sha256, for LFS files

    @property
    def etag(self) -> str:
        """The name of its blob in the cache: the LFS sha256, else the git blob sha1."""
        return self.lfs_oid or self.blob_id

    @classmethod
    def from_entry(cls, repo_type: str, repo_id: str, commit: str, path: str, url: str,
                   entry: Described | None) -> ReadTarget:
        """From a snapshot's entry (a :class:`~hubfs.client.snapshot.FileEntry`) when it is a file's."""
        if entry is None or entry.is_dir:
            return cls(repo_type, repo_id, commit, path, url)
        return cls(repo_type, repo_id, commit, path, url, entry.size, entry.blob_id or "", entry.lfs_oid or "")


class Described(Protocol):
    """What a reader needs of a listing's entry (:class:`~hubfs.client.snapshot.FileEntry` has it)."""

    @property
    def size(self) -> int: ...
    @property
    def blob_id(self) -> str | None: ...
    @property
    def lfs_oid(self) -> str | None: ...
    @property
    def is_dir(self) -> bool: ...


class SingleFlight:
    """Concurrent calls with the same key share one run of the work; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple, Future[bytes]] = {}

    def run(self, key: tuple, work: Callable[[], bytes]) -> bytes:
        """``work()``'s result, or that of the call with ``key`` already running (errors are shared too)."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                mine: Future[bytes] = Future()
                self._running[key] = mine
        if running is not None:
            return running.result()
        try:
            mine.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter, re-raised below
            mine.set_exception(exc)
        finally:
            with self._lock:
                del self._running[key]
        return mine.result()


@dataclass
class ReaderDeps:
    """What readers share: the range fetcher, ``pool`` (prefetches), ``part_pool`` (read-ahead ranges and
    the pieces of one big read; separate so a task in ``pool`` waiting for its pieces never starves
    them), the sparse block cache, the local cache and the offline switch. ``alloc``: the buffers
    sequential reads receive into (None: ``bytes``; see :class:`~hubfs.client.readahead.ReadAhead`)."""

    fetcher: RangeFetcher
    pool: Executor | Callable[[], Executor]
    part_pool: Executor | Callable[[], Executor]
    blocks: BlockCache | None = None
    cache: HubCache | None = None
    offline: bool = False
    flights: SingleFlight = field(default_factory=SingleFlight)
    alloc: Callable[[int], Any] | None = None
    keep_reads: bool = False  # keep files read whole, in order, in the cache (see the module doc)

    def prefetch_pool(self) -> Executor:
        return self.pool if isinstance(self.pool, Executor) else self.pool()

    def parts(self) -> Executor:
        return self.part_pool if isinstance(self.part_pool, Executor) else self.part_pool()


def read_range(fetcher: RangeFetcher, parts: Executor, url: str, start: int, buf: memoryview) -> tuple[int, int]:
    """Fill ``buf`` from ``start``, as concurrent 16 MiB ranges when it is bigger; (bytes, total size)."""
    if len(buf) <= PART_SIZE:
        return fetcher.fetch_into(url, start, buf)
    pieces = [(off, min(PART_SIZE, len(buf) - off)) for off in range(0, len(buf), PART_SIZE)]
    results = list(parts.map(lambda p: fetcher.fetch_into(url, start + p[0], buf[p[0]:p[0] + p[1]]), pieces))
    got = 0
    for (off, length), (n, _) in zip(pieces, results):
        got = off + n
        if n < length:
            break
    return got, max(total for _, total in results)


def probe(deps: ReaderDeps, target: ReadTarget) -> tuple[ReadTarget, tuple[int, bytes]]:
    """Size and LFS oid of a file not described yet, from its first 64 KiB (one GET); and those bytes."""
    first = bytearray(PROBE_SIZE)
    headers: dict[str, str] = {}
    try:
        n, total = deps.fetcher.fetch_into(target.url, 0, memoryview(first), headers)
    except EntryNotFoundError as exc:
        raise FileNotFoundError(target.path) from exc
    etag = content_hash(headers)
    oid = etag if re.fullmatch(r"[0-9a-f]{64}", etag) else ""
    sized = replace(target, size=total if total >= 0 else n, lfs_oid=target.lfs_oid or oid)
    return sized, (0, bytes(memoryview(first)[:n]))


class FileReader:
    """Positional, thread-safe reads of one file of one commit (see the module docstring).

    ``edge`` is (offset, bytes) the opener already has (the first or last bytes); ``stride=False``
    turns off sequential and stride prediction (one-off range reads, like ``cat_file``).
    """

    def __init__(self, target: ReadTarget, deps: ReaderDeps, edge: tuple[int, bytes] | None = None, *,
                 stride: bool = True) -> None:
        self.target, self.deps, self.size = target, deps, target.size
        self._lock = threading.RLock()
        self._predict = stride and target.size is not None
        self._fd = self._open_blob()
        self._edge_start, self._edge = edge if (edge is not None and self._fd is None) else (0, b"")
        self._next_seq = 0
        self._stream: ReadAhead | None = None
        self._keeper: StreamKeeper | None = None
        self._closed = False
        self._blocks = self._block_cache()
        self._strides = StridePrefetcher(self._fetch_plain, _Lazy(deps), held=self._holds,
                                         warm=self._warm, depth=STRIDE_DEPTH)
        if self._blocks is not None and self._edge and self.size is not None:
            self._blocks.store(target.lfs_oid, self.size, self._edge_start, self._edge)

    # -- where the bytes are ---------------------------------------------------------------------------

    @property
    def local(self) -> bool:
        """Whether every byte comes from a complete blob in the local cache (no request)."""
        return self._fd is not None

    @property
    def blob_fd(self) -> int | None:
        """The open descriptor of the complete cached blob (see :attr:`local`), for callers that hand it to
        the kernel (a mount replying with the file's pages); None when the bytes come from the hub."""
        return self._fd

    def _open_blob(self) -> int | None:
        """An open descriptor of the complete cached blob, or None (missing, or of the wrong size)."""
        t, cache = self.target, self.deps.cache
        if cache is None or t.size is None or not t.etag:
            return None
        try:
            fd = os.open(cache.blob(t.repo_type, t.repo_id, t.etag), os.O_RDONLY)
        except (OSError, ValueError):
            return None
        if os.fstat(fd).st_size != t.size:  # truncated or otherwise wrong: never served
            os.close(fd)
            return None
        return fd

    def _block_cache(self) -> BlockCache | None:
        t, blocks = self.target, self.deps.blocks
        if self._fd is not None or blocks is None or not t.lfs_oid or (t.size or 0) < BLOCK_CACHE_MIN:
            return None
        return blocks

    def _holds(self, start: int, end: int) -> bool:
        """Whether the edge bytes hold [start, end)."""
        return self._edge_start <= start and end <= self._edge_start + len(self._edge)

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file)."""
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        if length <= 0 or offset < 0:
            return b""
        end = offset + length if self.size is None else min(self.size, offset + length)
        if end <= offset:
            return b""
        if self._fd is not None:
            return os.pread(self._fd, end - offset, offset)
        self._check_online()
        if not self._predict:
            return self._random(offset, end, observe=False)
        return self._predicted(offset, end, length)

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Fill ``buf`` with the bytes at ``offset``; returns how many (fewer only at the end)."""
        buf = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
        if self._fd is not None and not self._closed:
            want = len(buf) if self.size is None else max(0, min(len(buf), self.size - offset))
            return os.preadv(self._fd, [buf[:want]], offset) if want else 0
        data = self.read(offset, len(buf))
        buf[:len(data)] = data
        return len(data)

    def _check_online(self) -> None:
        if self.deps.offline:
            where = self.deps.cache.root if self.deps.cache is not None else "the local cache"
            raise OfflineModeError(f"HF_HUB_OFFLINE is set and {self.target.path} (blob {self.target.etag or '?'}) "
                                   f"is not in the cache {where}: not sending GET {self.target.url.split('?')[0]}.")

    def _predicted(self, start: int, end: int, length: int) -> bytes:
        parts: list[bytes] = []
        pos = start
        while pos < end:
            edge_end = self._edge_start + len(self._edge)
            if self._edge_start <= pos < edge_end:
                parts.append(self._edge[pos - self._edge_start: min(end, edge_end) - self._edge_start])
            else:
                parts.append(self._stream_or_random(pos, end, length))
            pos += len(parts[-1])
            with self._lock:
                self._next_seq = pos
            if not parts[-1]:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _keeper_for(self, start: int) -> StreamKeeper | None:
        """The keeper of this reader, started (once) by a stream that reads on from the file's start (from 0,
        or from the end of the first bytes the opener had), which it is given (see the module doc)."""
        if self._keeper is not None or not self.deps.keep_reads or self.deps.cache is None or not self.size:
            return self._keeper
        edge_at_start = self._edge_start == 0 and len(self._edge) > 0
        if not self.target.etag or not (start == 0 or (edge_at_start and start <= len(self._edge))):
            return None
        try:
            self._keeper = StreamKeeper(self.deps.cache, self.target, self.size, self.deps.prefetch_pool())
        except OSError:
            return None
        if edge_at_start:
            self._keeper.write_at(0, [self._edge])
        return self._keeper

    def _stream_or_random(self, pos: int, end: int, length: int) -> bytes:
        with self._lock:
            stream = self._stream
            if stream is not None and pos != self._next_seq and pos > stream.pos and end - pos >= PEEK_MIN:
                # a large read ahead of the stream, not where the last read ended: on a mount, one of the
                # kernel's read-ahead requests ahead of its turn (a busy machine). Its bytes come out of the
                # stream's ranges without moving it, so the requests before it still find theirs.
                held = stream.peek(pos, end - pos)
                if held is not None:
                    return held
            if pos == self._next_seq or self._skips_within_stream(pos, end - pos):
                data = self._sequential(pos, end, length)
                self._strides.served(pos, len(data))
                return data
        return self._random(pos, end, observe=True)

    def _skips_within_stream(self, pos: int, length: int) -> bool:
        """A seek forward by no more than the read's own length, inside what the stream fetches: reading
        on past a skipped record. Longer jumps are random or strided reads."""
        stream = self._stream
        return stream is not None and stream.holds(pos) and pos - stream.pos <= max(length, PROBE_SIZE)

    def _sequential(self, start: int, end: int, length: int) -> bytes:
        """[start, end) from the read-ahead stream (started here, for reads of ``length``, if needed)."""
        stream = self._stream
        if stream is not None and stream.holds(start) and (start == self._next_seq
                                                           or self._skips_within_stream(start, end - start)):
            stream.skip_to(start)  # on from a read served out of turn, or a short skip (past a tar member, say)
        else:
            if stream is not None:
                stream.close()
            assert self.size is not None
            keeper = self._keeper_for(start)
            stream = self._stream = ReadAhead(self.deps.fetcher, self.deps.parts(), self.target.url, start,
                                              self.size, length, alloc=self.deps.alloc,
                                              on_range=keeper.write_at if keeper is not None else None)
        return stream.read(end - start)

    def _random(self, start: int, end: int, *, observe: bool) -> bytes:
        """Exactly [start, end): from a strided prefetch, else the sparse cache or the hub, one fetch shared
        by concurrent readers of the same range."""
        data = None
        if observe:
            with self._lock:
                data = self._strides.take(start, end)
        if data is not None:
            if self._blocks is not None and self.size is not None:
                self._blocks.store(self.target.lfs_oid, self.size, start, data)
        else:
            key = (self.target.etag or self.target.url, start, end - start)
            data = self.deps.flights.run(key, lambda: self._fetch_range(start, end))
        if observe and self.size is not None:
            with self._lock:
                self._strides.observe(start, end - start, self.size)
        return data

    def _fetch_range(self, start: int, end: int) -> bytes:
        if self._blocks is not None and self.size is not None:
            return self._blocks.read(self.target.lfs_oid, self.size, start, end, self._fill)
        return self._fetch_plain(start, end - start)

    def _fill(self, offset: int, buf: memoryview) -> int:
        return read_range(self.deps.fetcher, self.deps.parts(), self.target.url, offset, buf)[0]

    def _fetch_plain(self, start: int, length: int) -> bytes:
        buf = bytearray(length)
        n = self._fill(start, memoryview(buf))
        return bytes(buf) if n == length else bytes(memoryview(buf)[:n])

    def _warm(self) -> None:
        self.deps.fetcher.preconnect(self.target.url, STRIDE_DEPTH, self.deps.prefetch_pool())

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the read-ahead and prefetches, promote a block-cached object read whole, close the blob."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            self._strides.cancel()
            self._edge = b""
            if self._keeper is not None:
                self._keeper.drop()  # a file read whole is complete already: its check goes on
                self._keeper = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._promote()

    def _promote(self) -> None:
        t, blocks = self.target, self._blocks
        if blocks is not None and t.size is not None and t.commit and blocks.complete(t.lfs_oid, t.size):
            blocks.promote(t.lfs_oid, t.size, t.repo_type, t.repo_id, t.commit, t.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lazy(Executor):
    """The deps' prefetch pool, asked for only when a prefetch is submitted (pools start lazily)."""

    def __init__(self, deps: ReaderDeps) -> None:
        self.deps = deps

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.deps.prefetch_pool().submit(fn, *args, **kwargs)

