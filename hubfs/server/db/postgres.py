"""PostgreSQL behind the same contract as SQLite (:mod:`hubfs.server.db.base`), through psycopg 3.

- A bounded pool (``psycopg_pool``): at most ``max_size`` connections, each checked before use, so
  a restarted server costs the requests of the moment a 503 and the pool reconnects by itself.
- ``tx()`` is one transaction that first takes the advisory lock :data:`WRITE_LOCK` (released at
  commit or rollback): writers run one at a time across every process and host, as SQLite's
  ``BEGIN IMMEDIATE`` makes them, so the stores' read-then-write code stays correct. Reads
  (``query``) take no lock.
- The SQL is SQLite's, rewritten once per statement (:func:`hubfs.server.db.dialect.to_postgres`).
- A connection failure or pool timeout becomes :class:`hubfs.errors.ServiceUnavailableError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import RowMaker

from hubfs.errors import ServiceUnavailableError
from hubfs.server.db.base import Conn, Cursor, Row
from hubfs.server.db.dialect import ROWID, is_ddl, split_script, to_postgres
from hubfs.server.db.url import redact

WRITE_LOCK = 0x6875626673  # "hubfs": the key of the advisory lock every write transaction holds
DOWN = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)


class PgRow:
    """A row that indexes by name and by position and iterates over its values (like ``sqlite3.Row``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values, self._index = tuple(values), index

    def __getitem__(self, key: Any) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PgRow) and self._values == other._values and self._index == other._index

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=False))})"


def _rows(cursor: Any) -> RowMaker[PgRow]:
    index: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, i)
    return lambda values: PgRow(values, index)


class _Conn:
    """The connection of one ``tx()`` block: SQLite's SQL in, psycopg cursors out."""

    def __init__(self, db: PostgresDb, conn: psycopg.Connection[PgRow]) -> None:
        self._db, self._conn = db, conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        cur = self._conn.cursor()
        cur.execute(self._db.sql(sql), tuple(args))
        if is_ddl(sql):
            self._db.forget_tables()
        return cur

    def executemany(self, sql: str, args: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self._conn.cursor()
        cur.executemany(self._db.sql(sql), [tuple(a) for a in args])
        return cur


class PostgresDb:
    """A PostgreSQL database at ``url`` (``postgresql://user@host:port/db``; the password from
    PGPASSFILE/PGPASSWORD or the URL). See the module docstring."""

    kind = "postgresql"

    def __init__(self, url: str, schema: str = "", *, max_size: int = 16, timeout: float = 5.0) -> None:
        self.url = url
        self.shown_url = redact(url)
        self._sql: dict[str, str] = {}
        self._tables: dict[str, tuple[list[str], list[str]]] = {}
        self._guard = threading.Lock()
        self._lock_holders = threading.BoundedSemaphore(max(1, max_size // 2))  # the rest stay for queries
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[PgRow]] = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max_size, timeout=timeout, open=False, name="hubfs-db",
            kwargs={"autocommit": True, "row_factory": _rows, "connect_timeout": max(1, int(timeout))},
            check=psycopg_pool.ConnectionPool.check_connection, reconnect_timeout=24 * 3600)
        try:
            self._pool.open(wait=True, timeout=timeout * 2)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise ServiceUnavailableError(f"The metadata database {self.shown_url} does not answer.") from None
        if schema:
            self.ensure_schema(schema)

    # -- SQL ------------------------------------------------------------------------------------

    def sql(self, sqlite_sql: str) -> str:
        """``sqlite_sql`` as PostgreSQL runs it (cached per statement, bounded)."""
        out = self._sql.get(sqlite_sql)
        if out is None:
            out = to_postgres(sqlite_sql, self._table_info)
            with self._guard:
                if len(self._sql) > 4096:
                    self._sql.clear()
                self._sql[sqlite_sql] = out
        return out

    def _table_info(self, table: str) -> tuple[list[str], list[str]]:
        info = self._tables.get(table)
        if info is None:
            key = self.query("SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                             "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(?) AND i.indisprimary "
                             "ORDER BY array_position(i.indkey, a.attnum)", (table,))
            info = (self.columns(table), [r["name"] for r in key])
            with self._guard:
                self._tables[table] = info
        return info

    def forget_tables(self) -> None:
        """Drop what was learnt of tables and statements (after DDL)."""
        with self._guard:
            self._tables.clear()
            self._sql.clear()

    # -- the contract ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[PgRow]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except DOWN as exc:
            raise ServiceUnavailableError("The metadata database is unavailable; retry shortly.") from exc

    @contextmanager
    def tx(self) -> Iterator[Conn]:
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield _Conn(self, conn)

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        with self._connection() as conn:
            return list(conn.execute(self.sql(sql), tuple(args)).fetchall())

    def ensure_schema(self, script: str) -> None:
        """Run the script in one write transaction (so concurrent starts do not race on CREATE)."""
        with self.tx() as conn:
            for statement in split_script(script):
                conn.execute(statement)

    def columns(self, table: str) -> list[str]:
        rows = self.query("SELECT column_name AS name FROM information_schema.columns WHERE "
                          "table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))
        return [r["name"] for r in rows if r["name"] != ROWID]

    def tables(self) -> list[str]:
        return [r[0] for r in self.query("SELECT table_name FROM information_schema.tables WHERE "
                                         "table_schema = current_schema() AND table_type = 'BASE TABLE' "
                                         "ORDER BY table_name")]

    @contextmanager
    def session_lock(self, key: int) -> Iterator[None]:
        """Hold the session-level advisory lock ``key`` on one pooled connection for the block (waits
        for it; released at the end, or by the server if the connection dies). At most half the pool
        holds such locks at once, so that the holders' own queries always find a connection."""
        with self._lock_holders, self._connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except DOWN:
                    pass  # the connection died: the server dropped the lock with it

    def close(self) -> None:
        self._pool.close()
