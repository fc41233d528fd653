"""LFS objects a repo permanently deleted (``permanently_delete_lfs_files``), table ``lfs_deleted``.

A tombstone (repo uid, oid) tells gc that this repo's history no longer keeps the object alive, even
where old commits still hold its pointer; it stops counting once the repo links the object again
(a new upload of the same content).
"""

from __future__ import annotations

import time

from hubfs.server.db import DbTarget, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS lfs_deleted (
    repo_uid TEXT NOT NULL, oid TEXT NOT NULL, deleted_at REAL NOT NULL, PRIMARY KEY (repo_uid, oid));
"""


class LfsDeletions:
    """Tombstones of permanently deleted LFS objects."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def deleted(self, repo_uid: str) -> set[str]:
        """The oids this repo deleted and has not linked again since."""
        rows = self._db.query("SELECT d.oid FROM lfs_deleted d JOIN repos r ON r.uid = d.repo_uid WHERE d.repo_uid=? "
                              "AND NOT EXISTS (SELECT 1 FROM lfs_links l WHERE l.repo = r.id AND l.oid = d.oid)",
                              (repo_uid,))
        return {r[0] for r in rows}

    def by_repo(self) -> dict[str, set[str]]:
        """repo uid -> :meth:`deleted` for every repo with tombstones (one query)."""
        rows = self._db.query("SELECT d.repo_uid, d.oid FROM lfs_deleted d JOIN repos r ON r.uid = d.repo_uid "
                              "WHERE NOT EXISTS (SELECT 1 FROM lfs_links l WHERE l.repo = r.id AND l.oid = d.oid)")
        out: dict[str, set[str]] = {}
        for uid, oid in rows:
            out.setdefault(uid, set()).add(oid)
        return out

    # -- the repo's own links (``Metadata.lfs_links``), as permanent deletion needs them ----------------

    def linked(self, repo_id: int) -> list[tuple[str, int]]:
        """(oid, size) of every LFS object the repo (by numeric id) may reference."""
        return [(r[0], r[1]) for r in self._db.query("SELECT oid, size FROM lfs_links WHERE repo=? ORDER BY oid",
                                                      (repo_id,))]

    def unlink(self, repo_id: int, repo_uid: str, oids: list[str]) -> list[str]:
        """Drop the repo's links to ``oids`` and record the tombstones, in one transaction; returns the
        oids no other repo links any more (their bytes may go)."""
        now = time.time()
        with self._db.tx() as db:
            db.executemany("DELETE FROM lfs_links WHERE repo=? AND oid=?", [(repo_id, o) for o in oids])
            db.executemany("INSERT OR REPLACE INTO lfs_deleted VALUES (?,?,?)", [(repo_uid, o, now) for o in oids])
            return [o for o in oids if not db.execute("SELECT 1 FROM lfs_links WHERE oid=?", (o,)).fetchone()]
