"""Buckets in the hub's database: ``buckets`` (one row a bucket), ``bucket_files`` (path -> Xet file hash,
size, mtime) and ``bucket_uploads`` (the Xet files uploaded with a token of the bucket: a batch may add
only those, so a file hash learned elsewhere never stands for content its sender did not upload).

File content lives once, in the hub's Xet store (xorbs), as files uploaded to repos do.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from hubfs.server.db import DbTarget, Row, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, private INTEGER NOT NULL,
    created_at REAL NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bucket_files (
    bucket TEXT NOT NULL, path TEXT NOT NULL, xet_hash TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
    PRIMARY KEY (bucket, path));
CREATE TABLE IF NOT EXISTS bucket_uploads (
    bucket TEXT NOT NULL, xet_hash TEXT NOT NULL, PRIMARY KEY (bucket, xet_hash));
"""
MAX_FILES = 100_000  # files in one bucket


@dataclass(frozen=True)
class Bucket:
    id: str  # namespace/name
    namespace: str
    private: bool
    created_at: float
    created_by: str


@dataclass(frozen=True)
class BucketFile:
    path: str
    xet_hash: str
    size: int
    mtime: float


def _bucket(row: Row) -> Bucket:
    return Bucket(row["id"], row["namespace"], bool(row["private"]), row["created_at"], row["created_by"])


def _file(row: Row) -> BucketFile:
    return BucketFile(row["path"], row["xet_hash"], int(row["size"]), float(row["mtime"]))


class BucketStore:
    """The buckets of one hub (blocking: call off the event loop)."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def create(self, bucket_id: str, private: bool, created_by: str) -> Bucket | None:
        """The new bucket, or None when ``bucket_id`` exists already."""
        namespace = bucket_id.split("/", 1)[0]
        with self._db.tx() as db:
            if db.execute("SELECT 1 FROM buckets WHERE id=?", (bucket_id,)).fetchone():
                return None
            db.execute("INSERT INTO buckets (id, namespace, name, private, created_at, created_by) VALUES (?,?,?,?,?,?)",
                       (bucket_id, namespace, bucket_id.split("/", 1)[1], int(private), time.time(), created_by))
        return self.get(bucket_id)

    def get(self, bucket_id: str) -> Bucket | None:
        rows = self._db.query("SELECT * FROM buckets WHERE id=?", (bucket_id,))
        return _bucket(rows[0]) if rows else None

    def of_namespace(self, namespace: str) -> list[Bucket]:
        return [_bucket(r) for r in self._db.query("SELECT * FROM buckets WHERE namespace=? ORDER BY id", (namespace,))]

    def usage(self, bucket_id: str) -> tuple[int, int]:
        """(files, bytes) in the bucket."""
        row = self._db.query("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS b FROM bucket_files WHERE bucket=?",
                             (bucket_id,))[0]
        return int(row["n"]), int(row["b"])

    def uploaded(self, bucket_id: str, xet_hashes: Iterable[str]) -> None:
        """Record Xet files uploaded with a token of the bucket."""
        with self._db.tx() as db:
            for h in set(xet_hashes):
                if not db.execute("SELECT 1 FROM bucket_uploads WHERE bucket=? AND xet_hash=?", (bucket_id, h)).fetchone():
                    db.execute("INSERT INTO bucket_uploads (bucket, xet_hash) VALUES (?,?)", (bucket_id, h))

    def was_uploaded(self, bucket_id: str, xet_hash: str) -> bool:
        return bool(self._db.query("SELECT 1 FROM bucket_uploads WHERE bucket=? AND xet_hash=?", (bucket_id, xet_hash)))

    def put(self, bucket_id: str, files: list[BucketFile], deletes: list[str]) -> None:
        """Add (or replace) ``files`` and remove ``deletes``, in one transaction."""
        with self._db.tx() as db:
            for path in deletes:
                db.execute("DELETE FROM bucket_files WHERE bucket=? AND path=?", (bucket_id, path))
            for f in files:
                db.execute("DELETE FROM bucket_files WHERE bucket=? AND path=?", (bucket_id, f.path))
                db.execute("INSERT INTO bucket_files (bucket, path, xet_hash, size, mtime) VALUES (?,?,?,?,?)",
                           (bucket_id, f.path, f.xet_hash, f.size, f.mtime))

    def file(self, bucket_id: str, path: str) -> BucketFile | None:
        rows = self._db.query("SELECT * FROM bucket_files WHERE bucket=? AND path=?", (bucket_id, path))
        return _file(rows[0]) if rows else None

    def files(self, bucket_id: str, prefix: str = "", limit: int = MAX_FILES) -> list[BucketFile]:
        """The files whose path starts with ``prefix``, by path."""
        rows = self._db.query("SELECT * FROM bucket_files WHERE bucket=? AND substr(path, 1, ?)=? ORDER BY path LIMIT ?",
                              (bucket_id, len(prefix), prefix, limit))
        return [_file(r) for r in rows]
