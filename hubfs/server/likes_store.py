"""Likes, in the hub's SQLite file (table ``likes``): who liked which repo, and when.

A like names the repo by its ``uid``, so it follows a renamed repo and dies with a deleted one. The
count shown in repo info and used by ``sort=likes`` is ``repos.likes``, kept in step in the same
transaction as the like itself.
"""

from __future__ import annotations

import time

from hubfs.server.db import DbTarget, open_db
from hubfs.server.metadata import Repo

SCHEMA = """
CREATE TABLE IF NOT EXISTS likes (
    repo_uid TEXT NOT NULL, user TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (repo_uid, user));
CREATE INDEX IF NOT EXISTS likes_by_user ON likes (user, created_at);
"""


class LikesStore:
    """Likes of one hub."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def set(self, repo: Repo, user: str, liked: bool) -> int:
        """Like (or unlike) ``repo`` as ``user`` (idempotent); returns the repo's new like count."""
        with self._db.tx() as db:
            if liked:
                db.execute("INSERT OR IGNORE INTO likes VALUES (?,?,?)", (repo.uid, user, time.time()))
            else:
                db.execute("DELETE FROM likes WHERE repo_uid=? AND user=?", (repo.uid, user))
            count = int(db.execute("SELECT COUNT(*) FROM likes WHERE repo_uid=?", (repo.uid,)).fetchone()[0])
            db.execute("UPDATE repos SET likes=? WHERE id=?", (count, repo.id))
        return count

    def likers(self, repo: Repo) -> list[tuple[str, float]]:
        """(user, liked at) of every user who likes ``repo``, oldest first."""
        rows = self._db.query("SELECT user, created_at FROM likes WHERE repo_uid=? ORDER BY created_at, user",
                              (repo.uid,))
        return [(r["user"], r["created_at"]) for r in rows]

    def liked_by(self, user: str) -> list[tuple[int, float]]:
        """(repo id, liked at) of the repos ``user`` likes that still exist, newest first."""
        rows = self._db.query("SELECT repos.id AS id, likes.created_at AS at FROM likes JOIN repos "
                              "ON repos.uid = likes.repo_uid WHERE likes.user=? ORDER BY likes.created_at DESC",
                              (user,))
        return [(r["id"], r["at"]) for r in rows]
