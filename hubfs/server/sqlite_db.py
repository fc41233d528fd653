"""Kept for modules written against the old name: the SQLite database now lives in
:mod:`hubfs.server.db.sqlite`, behind the interface of :mod:`hubfs.server.db` (new code: ``open_db``)."""

from hubfs.server.db.sqlite import SqliteDb

__all__ = ["SqliteDb"]
