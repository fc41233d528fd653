"""Xet storage on local disk: validated xorbs, accepted shards and the index that ties them to files.

Layout under ``DATA/xet``: ``xorbs/<h[:2]>/<hash>`` (the chunks' content back to back, then an index
trailer: chunk hashes and lengths), ``shards/<sha256 of the body>``, and ``index.sqlite`` with three tables:
``xorbs`` (stored xorbs), ``files`` (Xet file hash -> sha256, size and reconstruction terms) and
``chunks`` (the chunk hashes global dedup answers for -> the file that holds them).

Contract:
- A xorb is written to a locked temporary in ``DATA/tmp`` and renamed into place only once complete;
  its row is inserted after the rename. A xorb counts as stored only when both exist, so a crash
  mid-upload leaves nothing a later shard could reference (the temporary is reclaimed by the LFS
  store's rule for dead uploads).
- Xorbs are never deleted: clients cache shards per endpoint and reuse xorbs without re-uploading.
- A file's content is stored once: a term (a run of chunks of one xorb) is one contiguous slice of the
  xorb's file, so a plain download is a few file slices sent zero-copy (:meth:`XetStore.file_layout`).
  Xet clients get the xorb as a chunk stream with compression scheme 0: each chunk's 8-byte header is
  generated around its slice (:meth:`XetStore.xorb_layout`); chunk ``i`` starts at ``sum(8 + len)`` of
  the chunks before it. A xorb's hash covers its chunks' content, not their encoding.
- The class is the one interface the server uses for Xet data; object storage can replace it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hubfs.server.http import FileSlice, Segment
from hubfs.server.lfs_store import locked_temp
from hubfs.server.sqlite_db import SqliteDb
from hubfs.server.xet.format import (
    HASH_LEN,
    Term,
    XorbContent,
    dedup_eligible,
    hash_to_str,
    plain_header,
    plain_offsets,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS xorbs (
    hash BLOB PRIMARY KEY, stream_size INTEGER NOT NULL, chunks INTEGER NOT NULL, created REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup_chunks (
    hash BLOB PRIMARY KEY, file BLOB NOT NULL, xorb BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    hash BLOB PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, terms BLOB NOT NULL,
    created REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
"""

TRAILER_MAGIC = b"HUBFSXD1"
_TRAILER = struct.Struct("<I8s")  # chunk count, magic; preceded by count x (32-byte hash) then count x u32 length
_TERM = struct.Struct("<32sIII")  # xorb hash, chunk start, chunk end, unpacked bytes
READ_BATCH = 8 << 20  # bytes of chunk data read at a time when streaming a file's content


@dataclass(frozen=True)
class StoredXorb:
    """A stored xorb's index: chunk hashes and lengths, where each chunk's content sits in the file
    (``data_offsets``) and where its header starts in the served chunk stream (``offsets``)."""

    hash: bytes
    path: str
    hashes: list[bytes]
    lengths: list[int]
    offsets: list[int]  # start of each chunk in the served stream (scheme-0 headers), plus the stream's end
    data_offsets: list[int]  # start of each chunk's content in the file, plus the content's end

    @property
    def stream_size(self) -> int:
        return self.offsets[-1]

    def chunk_list(self) -> list[tuple[bytes, int]]:
        return list(zip(self.hashes, self.lengths))

    def byte_range(self, start: int, end: int) -> tuple[int, int]:
        """The inclusive physical byte range of chunks ``[start, end)``."""
        return self.offsets[start], self.offsets[end] - 1


@dataclass(frozen=True)
class XetFile:
    """A file stored through Xet: its hash, the sha256 (LFS oid) its content was verified to have,
    its size and its reconstruction terms."""

    hash: bytes
    sha256: str
    size: int
    terms: tuple[Term, ...]


def _pack_terms(terms: Sequence[Term]) -> bytes:
    return b"".join(_TERM.pack(t.xorb, t.start, t.end, t.unpacked) for t in terms)


def _unpack_terms(blob: bytes) -> tuple[Term, ...]:
    return tuple(Term(xorb=x, unpacked=u, start=s, end=e) for x, s, e, u in _TERM.iter_unpack(blob))


class XetStore:
    """Xorbs, shards and the Xet index of one hub (``data_dir/xet``); temporaries go to ``tmp_dir``."""

    def __init__(self, data_dir: Path, tmp_dir: Path, index_cache: int = 64) -> None:
        self.root = Path(data_dir) / "xet"
        self.xorb_dir = self.root / "xorbs"
        self.shard_dir = self.root / "shards"
        self.tmp_dir = Path(tmp_dir)
        for d in (self.xorb_dir, self.shard_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.db = SqliteDb(self.root / "index.sqlite", SCHEMA)
        self._cache: OrderedDict[bytes, StoredXorb] = OrderedDict()
        self._cache_size = index_cache
        self._lock = threading.Lock()

    # -- xorbs ---------------------------------------------------------------------------------

    def xorb_path(self, h: bytes) -> Path:
        name = hash_to_str(h)
        return self.xorb_dir / name[:2] / name

    def has_xorb(self, h: bytes) -> bool:
        return bool(self.db.query("SELECT 1 FROM xorbs WHERE hash=?", (h,))) and self.xorb_path(h).exists()

    def put_xorb(self, h: bytes, content: XorbContent) -> bool:
        """Store a validated xorb whose hash is ``h``; False when it was stored already (kept as is)."""
        if self.has_xorb(h):
            return False
        fd, tmp = locked_temp(self.tmp_dir)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                for chunk in content.chunks:
                    f.write(chunk)
                f.write(b"".join(content.hashes))
                f.write(struct.pack(f"<{len(content.chunks)}I", *content.lengths))
                f.write(_TRAILER.pack(len(content.chunks), TRAILER_MAGIC))
            final = self.xorb_path(h)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
            os.close(fd)
        stream = plain_offsets(content.lengths)[-1]
        self.db.conn().execute("INSERT OR IGNORE INTO xorbs VALUES (?,?,?,?)",
                               (h, stream, len(content.chunks), time.time()))
        return True

    def xorb(self, h: bytes) -> StoredXorb | None:
        """A stored xorb's index (cached), None if it is not stored."""
        with self._lock:
            hit = self._cache.get(h)
            if hit is not None:
                self._cache.move_to_end(h)
                return hit
        if not self.db.query("SELECT 1 FROM xorbs WHERE hash=?", (h,)):
            return None
        try:
            with open(self.xorb_path(h), "rb") as f:
                f.seek(-_TRAILER.size, os.SEEK_END)
                count, magic = _TRAILER.unpack(f.read(_TRAILER.size))
                if magic != TRAILER_MAGIC:
                    raise OSError(f"xorb {hash_to_str(h)} has no index trailer")
                f.seek(-_TRAILER.size - count * (HASH_LEN + 4), os.SEEK_END)
                raw = f.read(count * (HASH_LEN + 4))
        except FileNotFoundError:
            return None
        hashes = [raw[i * HASH_LEN:(i + 1) * HASH_LEN] for i in range(count)]
        lengths = list(struct.unpack_from(f"<{count}I", raw, count * HASH_LEN))
        data_offsets = [0]
        for n in lengths:
            data_offsets.append(data_offsets[-1] + n)
        stored = StoredXorb(h, str(self.xorb_path(h)), hashes, lengths, plain_offsets(lengths), data_offsets)
        with self._lock:
            self._cache[h] = stored
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return stored

    def _term_xorb(self, term: Term) -> StoredXorb:
        x = self.xorb(term.xorb)
        if x is None:
            raise FileNotFoundError(f"xorb {hash_to_str(term.xorb)} is not stored")
        return x

    def chunk_data(self, terms: Iterable[Term]) -> Iterator[bytes]:
        """The content of ``terms`` in order, in pieces of up to :data:`READ_BATCH` bytes."""
        for term in terms:
            x = self._term_xorb(term)
            with open(x.path, "rb") as f:
                pos, end = x.data_offsets[term.start], x.data_offsets[term.end]
                while pos < end:
                    piece = os.pread(f.fileno(), min(READ_BATCH, end - pos), pos)
                    if not piece:
                        raise OSError(f"xorb {hash_to_str(term.xorb)} is shorter than its index")
                    pos += len(piece)
                    yield piece

    def file_layout(self, terms: Iterable[Term]) -> list[Segment]:
        """A file's content as slices of xorb files, one per term (for a plain download)."""
        out: list[Segment] = []
        for term in terms:
            x = self._term_xorb(term)
            a, b = x.data_offsets[term.start], x.data_offsets[term.end]
            out.append(FileSlice(x.path, a, b - a))
        return out

    def xorb_layout(self, x: StoredXorb) -> list[Segment]:
        """The xorb as Xet clients read it: each chunk's scheme-0 header, then its content."""
        out: list[Segment] = []
        for i, n in enumerate(x.lengths):
            out += [plain_header(n), FileSlice(x.path, x.data_offsets[i], n)]
        return out

    # -- files ---------------------------------------------------------------------------------

    def add_file(self, f: XetFile) -> None:
        self.db.conn().execute("INSERT OR IGNORE INTO files VALUES (?,?,?,?,?)",
                               (f.hash, f.sha256, f.size, _pack_terms(f.terms), time.time()))

    def file_by_sha256(self, oid: str) -> XetFile | None:
        """A Xet file whose content was verified to hash to ``oid`` (None if there is none)."""
        rows = self.db.query("SELECT hash FROM files WHERE sha256=? LIMIT 1", (oid,))
        return self.file(bytes(rows[0]["hash"])) if rows else None

    def file(self, h: bytes) -> XetFile | None:
        rows = self.db.query("SELECT sha256, size, terms FROM files WHERE hash=?", (h,))
        return XetFile(h, rows[0]["sha256"], rows[0]["size"], _unpack_terms(rows[0]["terms"])) if rows else None

    def file_hashes(self, sha256s: Iterable[str]) -> dict[str, str]:
        """sha256 (LFS oid) -> Xet file hash string, for the oids stored as Xet files."""
        wanted = list(dict.fromkeys(sha256s))
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            rows = self.db.query(f"SELECT sha256, hash FROM files WHERE sha256 IN ({','.join('?' * len(part))})", part)
            out.update((r["sha256"], hash_to_str(r["hash"])) for r in rows)
        return out

    # -- global dedup ----------------------------------------------------------------------------

    def index_for_dedup(self, f: XetFile) -> None:
        """Index the chunks of ``f`` that clients ask global dedup about: its first chunk and every
        ``dedup_eligible`` one (about 1 in 1024). The answer for any of them lists all of ``f``'s xorbs."""
        entries: list[tuple[bytes, bytes, bytes]] = []
        for n, term in enumerate(f.terms):
            x = self._term_xorb(term)
            for i in range(term.start, term.end):
                if (n == 0 and i == term.start) or dedup_eligible(x.hashes[i]):
                    entries.append((x.hashes[i], f.hash, term.xorb))
        with self.db.tx() as db:
            db.executemany("INSERT OR IGNORE INTO dedup_chunks VALUES (?,?,?)", entries)

    def file_with_chunk(self, chunk: bytes) -> tuple[XetFile, bytes] | None:
        """A stored file that holds ``chunk`` (one of the indexed ones) and the xorb the chunk is in."""
        rows = self.db.query("SELECT file, xorb FROM dedup_chunks WHERE hash=?", (chunk,))
        f = self.file(bytes(rows[0]["file"])) if rows else None
        return (f, bytes(rows[0]["xorb"])) if f is not None else None

    # -- shards ----------------------------------------------------------------------------------

    def put_shard(self, body: bytes) -> Path:
        """Keep an accepted shard's bytes (named by their sha256; atomic rename)."""
        final = self.shard_dir / hashlib.sha256(body).hexdigest()
        if final.exists():
            return final
        fd, tmp = locked_temp(self.tmp_dir)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(body)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
            os.close(fd)
        return final
