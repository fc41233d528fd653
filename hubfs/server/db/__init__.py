"""The hub's metadata database: one interface (:mod:`.base`), SQLite (:mod:`.sqlite`) on one
machine and PostgreSQL (:mod:`.postgres`) for many, chosen by URL (:mod:`.url`).

Stores take a :data:`DbTarget`: the hub's open :class:`Database` (shared: one pool per process), or
a path, where ``DATA/hub.sqlite`` means "the database of the data folder ``DATA``" (so a git hook or
a CLI command run on a folder that was moved to PostgreSQL uses PostgreSQL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from hubfs.server.db.base import Conn, Cursor, Database, Row
from hubfs.server.db.sqlite import SqliteDb
from hubfs.server.db.url import database_url, is_postgres, sqlite_path

DbTarget = Union[str, "os.PathLike[str]", Database]

__all__ = ["Conn", "Cursor", "Database", "DbTarget", "Row", "SqliteDb", "open_database", "open_db"]


def open_database(url: str, schema: str = "") -> Database:
    """Open the database at ``url`` (``sqlite:///path`` or ``postgresql://...``) and run ``schema``."""
    if is_postgres(url):
        from hubfs.server.db.postgres import PostgresDb  # psycopg is the optional `postgres` extra

        return PostgresDb(url, schema)
    return SqliteDb(sqlite_path(url), schema)


def open_db(target: DbTarget, schema: str) -> Database:
    """``target`` itself, or the database a path names (see the module docstring), with ``schema`` made."""
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        if path.name == "hub.sqlite":
            return open_database(database_url(path.parent), schema)
        return SqliteDb(path, schema)
    target.ensure_schema(schema)
    return target
