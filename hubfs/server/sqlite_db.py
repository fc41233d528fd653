"""One SQLite database file shared by threads and processes: a connection per thread, WAL mode,
``BEGIN IMMEDIATE`` transactions. The hub's metadata and the Xet index each own one."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Transaction:
    """``with db.tx() as conn:`` runs the block in one write transaction (rolled back on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class SqliteDb:
    """A database at ``path`` created with ``schema`` (idempotent ``CREATE ... IF NOT EXISTS`` script)."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (rows as :class:`sqlite3.Row`, autocommit outside ``tx``)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def tx(self) -> Transaction:
        return Transaction(self.conn())

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.conn().execute(sql, tuple(args)).fetchall()
