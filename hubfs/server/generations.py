"""Generation counters in the database: how one hub process tells the others that something it
caches changed.

Most of what a worker caches cannot go stale: git objects, trees and Xet xorb indexes are
content-addressed and immutable, and refs, tokens, sessions, repo settings and the card index are
read from the ref files and the database on every request. What can go stale is *where a name
points*: a worker keeps an open dulwich repository per path and thread, and when another worker
deletes or renames a repo (and maybe creates a new one under the old name) that handle would still
see the old repo's packs. So deleting or moving a repo bumps the path's generation here, and every
worker checks the table (one small query) before it opens a repository, dropping the handles and
cached facts of every path bumped since it last looked.

The table ``generations (name, value)`` holds one row per name plus the row ``*``, a sequence that
every bump advances; a name's value is the sequence number of its last bump, so "what changed since
N" is one query. SQL is plain (``?`` placeholders, ``ON CONFLICT ... DO UPDATE``) so that the
database layer can run it on SQLite or PostgreSQL.
"""

from __future__ import annotations

import threading
from pathlib import Path

from hubfs.server.db import Database, DbTarget, open_db
from hubfs.server.git_store import GitRepo, GitStore
from hubfs.server.hub import Hub

SCHEMA = "CREATE TABLE IF NOT EXISTS generations (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
SEQUENCE = "*"


class Generations:
    """Named counters shared by every process of one hub (``hub.sqlite``)."""

    def __init__(self, target: DbTarget) -> None:
        self.db: Database = open_db(target, SCHEMA)

    def bump(self, name: str) -> int:
        """Advance ``name``; returns the new sequence number (every later :meth:`since` lists ``name``)."""
        with self.db.tx() as db:
            row = db.execute("INSERT INTO generations (name, value) VALUES (?, 1) ON CONFLICT (name) "
                             "DO UPDATE SET value = generations.value + 1 RETURNING value", (SEQUENCE,)).fetchone()
            seq = int(row[0])
            db.execute("INSERT INTO generations (name, value) VALUES (?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET value = excluded.value", (name, seq))
        return seq

    def since(self, seq: int) -> tuple[int, list[str]]:
        """(the current sequence number, the names bumped after ``seq``)."""
        rows = self.db.query("SELECT name, value FROM generations WHERE value > ?", (seq,))
        current, names = seq, []
        for row in rows:
            if row["name"] == SEQUENCE:
                current = int(row["value"])
            else:
                names.append(str(row["name"]))
        return current, names

    def current(self) -> int:
        rows = self.db.query("SELECT value FROM generations WHERE name = ?", (SEQUENCE,))
        return int(rows[0]["value"]) if rows else 0


class SharedGitStore(GitStore):
    """A :class:`GitStore` whose repo generations (bumped on delete and move) are shared through
    :class:`Generations`, so no worker reuses a handle on a path another worker deleted or moved."""

    def __init__(self, store: GitStore, generations: Generations) -> None:
        self.__dict__.update(store.__dict__)  # adopt the store as built (its root, caches and locks)
        self.generations = generations
        self._seen = generations.current()
        self._sync_lock = threading.Lock()

    def _name(self, path: Path) -> str:
        return "git:" + Path(path).relative_to(self.root).as_posix()

    def _forget(self, path: Path) -> None:
        super()._forget(path)
        self.generations.bump(self._name(path))  # the next sync drops our own path once more: harmless

    def sync(self) -> None:
        """Drop what this process holds for every path another process bumped since the last look."""
        current, names = self.generations.since(self._seen)
        if current == self._seen:
            return
        with self._sync_lock:
            for name in names:
                GitStore._forget(self, self.root / name.removeprefix("git:"))
            self._seen = max(self._seen, current)

    def open(self, repo_type: str, repo_id: str) -> GitRepo:
        self.sync()
        return super().open(repo_type, repo_id)


def share_git_generations(hub: Hub) -> None:
    """Give ``hub`` a git store whose delete/move generations every hub process on its data folder shares."""
    hub.git = SharedGitStore(hub.git, Generations(hub.db))
