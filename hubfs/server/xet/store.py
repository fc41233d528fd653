"""Xet storage on local disk: validated xorbs, accepted shards and the index that ties them to files.

Layout under ``DATA/xet``: ``xorbs/<h[:2]>/<hash>`` (the chunks' content back to back, then an index
trailer: chunk hashes and lengths) and ``shards/<sha256 of the body>``. The index lives in the hub's
metadata database (``hub.sqlite`` or PostgreSQL, shared by every host of the hub), three tables:
``xorbs`` (stored xorbs), ``files`` (Xet file hash -> sha256, size and reconstruction terms) and
``dedup_chunks`` (the chunk hashes global dedup answers for -> the file that holds them).
Older hubs kept it in ``DATA/xet/index.sqlite``: its rows are imported once (:func:`import_legacy_index`).

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
- The class is the one interface the server uses for Xet data.

With S3 object storage (``DATA/object-store.json``, see ``object_store.py``) xorbs and shards live in
the bucket as ``xet/xorbs/<h[:2]>/<hash>`` and ``xet/shards/<sha256>``, and the local ``xorbs/``
folder is only a cache (any file in it may be deleted at any time). A xorb goes to the bucket in
its *framed* form: every chunk's scheme-0 header and content back to back (exactly the stream Xet
clients read), then the index trailer with its own magic. So a reconstruction can hand clients
presigned GETs of byte ranges of the bucket object itself (``remote.blob_range_url``), each signed for
its one range; the hub reads a xorb's index with two small ranged GETs, and downloads a whole xorb
into the cache only when it must read content itself (shard verification, plain downloads).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hubfs.server.db import Database, DbTarget, open_db
from hubfs.server.http import FileSlice, Segment
from hubfs.server.lfs_store import locked_temp
from hubfs.server.object_store import open_object_store
from hubfs.server.xet.format import (
    CHUNK_HEADER_LEN,
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

LEGACY_INDEX = "index.sqlite"  # DATA/xet/index.sqlite: where older hubs kept the index
LEGACY_COLUMNS = {"xorbs": "hash, stream_size, chunks, created", "files": "hash, sha256, size, terms, created",
                  "dedup_chunks": "hash, file, xorb"}
IMPORT_BATCH = 1000

TRAILER_MAGIC = b"HUBFSXD1"  # chunk content back to back (local disk)
FRAMED_MAGIC = b"HUBFSXF1"  # each chunk's scheme-0 header, then its content (object storage)
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
    framed: bool = False  # the file holds the served stream itself (headers included), not bare content

    @property
    def stream_size(self) -> int:
        return self.offsets[-1]

    def chunk_list(self) -> list[tuple[bytes, int]]:
        return list(zip(self.hashes, self.lengths))

    def byte_range(self, start: int, end: int) -> tuple[int, int]:
        """The inclusive physical byte range of chunks ``[start, end)``."""
        return self.offsets[start], self.offsets[end] - 1

    def content_spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """Where the content of chunks ``[start, end)`` lies in the file: (offset, length) pieces."""
        if not self.framed:
            return [(self.data_offsets[start], self.data_offsets[end] - self.data_offsets[start])]
        return [(self.offsets[i] + CHUNK_HEADER_LEN, self.lengths[i]) for i in range(start, end)]


class RemoteBlobs(Protocol):
    """Named blobs in object storage (``S3ObjectStore`` implements it), for xorbs and shards."""

    def put_blob(self, name: str, path: Path) -> None:
        """Upload the file ``path`` as ``name`` (whole: the blob appears complete or not at all)."""

    def fetch_blob(self, name: str, dest: Path) -> bool:
        """Download ``name`` into ``dest``; False when it is not stored."""

    def blob_tail(self, name: str, length: int) -> bytes:
        """The last ``length`` bytes of ``name`` (FileNotFoundError when it is not stored)."""

    def blob_range_url(self, name: str, start: int, end: int, ttl: int) -> str:
        """A presigned GET of bytes ``start``-``end`` (inclusive) of ``name``, signed for that range only."""


def xorb_name(h: bytes) -> str:
    """A xorb's blob name in object storage (the same path as under ``DATA``)."""
    name = hash_to_str(h)
    return f"xet/xorbs/{name[:2]}/{name}"


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


def import_legacy_index(xet_dir: Path, db: Database) -> int:
    """Copy the rows of an older hub's ``xet_dir/index.sqlite`` into ``db`` (in one write transaction,
    ``INSERT OR IGNORE``: idempotent, and safe when several processes start at once), then rename the
    file ``index.sqlite.imported`` (kept as a backup) so later starts skip it. Returns the rows read."""
    path = Path(xet_dir) / LEGACY_INDEX
    if not path.is_file():
        return 0
    try:
        legacy = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)  # never creates an empty file
    except sqlite3.OperationalError:
        return 0  # another process imported and renamed it meanwhile
    read = 0
    try:
        present = {r[0] for r in legacy.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        db.ensure_schema(SCHEMA)
        with db.tx() as conn:
            for table, columns in LEGACY_COLUMNS.items():
                if table not in present:
                    continue
                rows = legacy.execute(f"SELECT {columns} FROM {table}")
                marks = ",".join("?" * (columns.count(",") + 1))
                while batch := rows.fetchmany(IMPORT_BATCH):
                    conn.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", batch)
                    read += len(batch)
    finally:
        legacy.close()
    try:
        os.replace(path, path.with_name(LEGACY_INDEX + ".imported"))
    except FileNotFoundError:
        pass  # another process renamed it first
    return read


class XetStore:
    """Xorbs and shards of one hub (``data_dir/xet``), indexed in the hub's database ``db`` (its open
    :class:`~hubfs.server.db.Database`, or ``DATA/hub.sqlite`` meaning "the data folder's database");
    temporaries go to ``tmp_dir``."""

    def __init__(self, data_dir: Path, tmp_dir: Path, db: DbTarget, index_cache: int = 64,
                 remote: RemoteBlobs | None = None) -> None:
        if remote is None:
            store = open_object_store(Path(data_dir))
            remote = store if store.kind == "s3" else None  # type: ignore[assignment]
        self.remote = remote
        self.root = Path(data_dir) / "xet"
        self.xorb_dir = self.root / "xorbs"
        self.shard_dir = self.root / "shards"
        self.tmp_dir = Path(tmp_dir)
        for d in (self.xorb_dir, self.shard_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.db = open_db(db, SCHEMA)
        import_legacy_index(self.root, self.db)
        self._cache: OrderedDict[bytes, StoredXorb] = OrderedDict()
        self._cache_size = index_cache
        self._lock = threading.Lock()

    # -- xorbs ---------------------------------------------------------------------------------

    def xorb_path(self, h: bytes) -> Path:
        name = hash_to_str(h)
        return self.xorb_dir / name[:2] / name

    def has_xorb(self, h: bytes) -> bool:
        """Stored: its row exists (inserted only once the bytes are in place) and, on local disk, its file."""
        row = bool(self.db.query("SELECT 1 FROM xorbs WHERE hash=?", (h,)))
        return row and (self.remote is not None or self.xorb_path(h).exists())

    def put_xorb(self, h: bytes, content: XorbContent) -> bool:
        """Store a validated xorb whose hash is ``h``; False when it was stored already (kept as is)."""
        if self.has_xorb(h):
            return False
        fd, tmp = locked_temp(self.tmp_dir)
        framed = self.remote is not None
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                for chunk in content.chunks:
                    if framed:
                        f.write(plain_header(len(chunk)))
                    f.write(chunk)
                f.write(b"".join(content.hashes))
                f.write(struct.pack(f"<{len(content.chunks)}I", *content.lengths))
                f.write(_TRAILER.pack(len(content.chunks), FRAMED_MAGIC if framed else TRAILER_MAGIC))
            if self.remote is not None:
                self.remote.put_blob(xorb_name(h), tmp)  # the bucket first: the row below says "stored"
            final = self.xorb_path(h)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
            os.close(fd)
        stream = plain_offsets(content.lengths)[-1]
        with self.db.tx() as conn:
            conn.execute("INSERT OR IGNORE INTO xorbs (hash, stream_size, chunks, created) VALUES (?,?,?,?)",
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
            framed, hashes, lengths = self._read_index(h)
        except FileNotFoundError:
            return None
        offsets = plain_offsets(lengths)
        if framed:
            data_offsets = [o + CHUNK_HEADER_LEN for o in offsets[:-1]] + [offsets[-1]]
        else:
            data_offsets = [0]
            for n in lengths:
                data_offsets.append(data_offsets[-1] + n)
        stored = StoredXorb(h, str(self.xorb_path(h)), hashes, lengths, offsets, data_offsets, framed)
        with self._lock:
            self._cache[h] = stored
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return stored

    def _read_index(self, h: bytes) -> tuple[bool, list[bytes], list[int]]:
        """(framed, chunk hashes, chunk lengths) from the xorb's trailer: the cached file's, else two
        ranged reads of the bucket's object. FileNotFoundError when neither holds it."""
        name = hash_to_str(h)

        def tail(n: int) -> bytes:
            try:
                with open(self.xorb_path(h), "rb") as f:
                    f.seek(-n, os.SEEK_END)
                    return f.read(n)
            except FileNotFoundError:
                if self.remote is None:
                    raise
                return self.remote.blob_tail(xorb_name(h), n)

        count, magic = _TRAILER.unpack(tail(_TRAILER.size))
        if magic not in (TRAILER_MAGIC, FRAMED_MAGIC):
            raise OSError(f"xorb {name} has no index trailer")
        raw = tail(_TRAILER.size + count * (HASH_LEN + 4))[:count * (HASH_LEN + 4)]
        hashes = [raw[i * HASH_LEN:(i + 1) * HASH_LEN] for i in range(count)]
        return magic == FRAMED_MAGIC, hashes, list(struct.unpack_from(f"<{count}I", raw, count * HASH_LEN))

    def _term_xorb(self, term: Term) -> StoredXorb:
        x = self.xorb(term.xorb)
        if x is None:
            raise FileNotFoundError(f"xorb {hash_to_str(term.xorb)} is not stored")
        if self.remote is not None and not os.path.exists(x.path):
            self._fetch(x.hash)
        return x

    def _fetch(self, h: bytes) -> None:
        """Download a xorb from the bucket into the local cache (atomic rename)."""
        assert self.remote is not None
        fd, tmp = locked_temp(self.tmp_dir)
        try:
            if not self.remote.fetch_blob(xorb_name(h), tmp):
                raise FileNotFoundError(f"xorb {hash_to_str(h)} is missing from the object store")
            final = self.xorb_path(h)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
            os.close(fd)

    def chunk_data(self, terms: Iterable[Term]) -> Iterator[bytes]:
        """The content of ``terms`` in order, in pieces of up to :data:`READ_BATCH` bytes."""
        for term in terms:
            x = self._term_xorb(term)
            with open(x.path, "rb") as f:
                for pos, length in x.content_spans(term.start, term.end):
                    end = pos + length
                    while pos < end:
                        piece = os.pread(f.fileno(), min(READ_BATCH, end - pos), pos)
                        if not piece:
                            raise OSError(f"xorb {hash_to_str(term.xorb)} is shorter than its index")
                        pos += len(piece)
                        yield piece

    def file_layout(self, terms: Iterable[Term]) -> list[Segment]:
        """A file's content as slices of xorb files (one per term; per chunk for framed xorbs), for a
        plain download."""
        out: list[Segment] = []
        for term in terms:
            x = self._term_xorb(term)
            out += [FileSlice(x.path, a, n) for a, n in x.content_spans(term.start, term.end)]
        return out

    def xorb_layout(self, x: StoredXorb) -> list[Segment]:
        """The xorb as Xet clients read it: each chunk's scheme-0 header, then its content."""
        if x.framed:
            if self.remote is not None and not os.path.exists(x.path):
                self._fetch(x.hash)
            return [FileSlice(x.path, 0, x.stream_size)]
        out: list[Segment] = []
        for i, n in enumerate(x.lengths):
            out += [plain_header(n), FileSlice(x.path, x.data_offsets[i], n)]
        return out

    @staticmethod
    def write_framed(src: Path, dest: Path) -> None:
        """Write the framed form (see the module docstring) of the local xorb file ``src`` to ``dest``
        (for ``hubfs storage migrate``); a file already framed is copied as is."""
        with open(src, "rb") as f:
            f.seek(-_TRAILER.size, os.SEEK_END)
            count, magic = _TRAILER.unpack(f.read(_TRAILER.size))
            if magic not in (TRAILER_MAGIC, FRAMED_MAGIC):
                raise OSError(f"{src} has no xorb index trailer")
            index_len = count * (HASH_LEN + 4)
            f.seek(-_TRAILER.size - index_len, os.SEEK_END)
            index = f.read(index_len)
            lengths = struct.unpack_from(f"<{count}I", index, count * HASH_LEN)
            f.seek(0)
            with open(dest, "wb") as out:
                for n in lengths:
                    if magic == TRAILER_MAGIC:
                        out.write(plain_header(n))
                    else:
                        out.write(f.read(CHUNK_HEADER_LEN))
                    out.write(f.read(n))
                out.write(index)
                out.write(_TRAILER.pack(count, FRAMED_MAGIC))

    # -- files ---------------------------------------------------------------------------------

    def add_file(self, f: XetFile) -> None:
        with self.db.tx() as conn:
            conn.execute("INSERT OR IGNORE INTO files (hash, sha256, size, terms, created) VALUES (?,?,?,?,?)",
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
            db.executemany("INSERT OR IGNORE INTO dedup_chunks (hash, file, xorb) VALUES (?,?,?)", entries)

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
            if self.remote is not None:
                self.remote.put_blob(f"xet/shards/{final.name}", tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
            os.close(fd)
        return final
