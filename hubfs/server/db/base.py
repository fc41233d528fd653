"""The contract every metadata database meets (SQLite on one machine, PostgreSQL for many).

Stores write SQLite's SQL (``?`` placeholders; see :mod:`hubfs.server.db.dialect` for what is
rewritten for PostgreSQL) and use only this interface:

- ``db.query(sql, args)``: rows of one statement, outside any transaction (autocommit);
- ``with db.tx() as conn:`` one write transaction, serialized against every other ``tx()`` of the
  same database in any process or host (SQLite's ``BEGIN IMMEDIATE``; PostgreSQL takes one
  transaction-level advisory lock), so read-then-write code inside it is correct. Committed when the
  block ends, rolled back when it raises. ``conn.execute`` / ``conn.executemany`` return a cursor
  (``fetchone``, ``fetchall``, iteration, ``rowcount``); ids come back through ``RETURNING``;
- rows index by column name and by position, and iterate over their values (like ``sqlite3.Row``);
- ``db.ensure_schema(script)``: run an idempotent ``CREATE ... IF NOT EXISTS`` script;
- an unreachable database raises :class:`hubfs.errors.ServiceUnavailableError` (503).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class Row(Protocol):
    """One result row: ``row["name"]``, ``row[0]``, ``row.keys()``, iteration over the values."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Cursor(Protocol):
    """The result of one ``execute`` inside a transaction."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The connection a ``tx()`` block works with."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, args: Iterable[Sequence[Any]], /) -> Cursor: ...


class Database(Protocol):
    """One metadata database (see the module docstring)."""

    kind: str
    """``sqlite`` or ``postgresql`` (for the health report)."""

    def tx(self) -> AbstractContextManager[Conn]: ...

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Row]: ...

    def ensure_schema(self, script: str) -> None: ...

    def columns(self, table: str) -> list[str]:
        """The table's columns in order (empty when it does not exist; never the PostgreSQL ``rowid``)."""
        ...

    def tables(self) -> list[str]:
        """Every table the hub made, sorted."""
        ...

    def close(self) -> None: ...
