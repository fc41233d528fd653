"""One SQLite database file shared by threads and processes: a connection per thread, WAL mode,
``BEGIN IMMEDIATE`` transactions (the write lock is global to the file, across processes)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hubfs.server.db.base import Conn, Row


class SqliteDb:
    """A database at ``path`` (created on first use). See :mod:`hubfs.server.db.base` for the contract."""

    kind = "sqlite"

    def __init__(self, path: Path, schema: str = "") -> None:
        self.path = Path(path)
        self._local = threading.local()
        if schema:
            self.ensure_schema(schema)

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

    @contextmanager
    def tx(self) -> Iterator[Conn]:
        """``with db.tx() as conn:`` one ``BEGIN IMMEDIATE`` transaction (rolled back on error)."""
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        return self.conn().execute(sql, tuple(args)).fetchall()

    def ensure_schema(self, script: str) -> None:
        self.conn().executescript(script)

    def columns(self, table: str) -> list[str]:
        return [row["name"] for row in self.conn().execute(f"PRAGMA table_info({table})")]

    def tables(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type='table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
