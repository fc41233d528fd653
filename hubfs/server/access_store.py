"""What the Hub keeps about a gated-access request beyond its status (``Metadata.access_grants``):
the reason given when it was rejected, and the answers to the request form (table ``access_details``)."""

from __future__ import annotations

import json
from typing import Any

from hubfs.server.db import DbTarget, open_db
from hubfs.server.metadata import Repo

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_details (
    repo_uid TEXT NOT NULL, user TEXT NOT NULL, rejection_reason TEXT, fields TEXT, PRIMARY KEY (repo_uid, user));
"""


class AccessStore:
    """Rejection reasons and form fields of access requests, by repo uid and user."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def set_reason(self, repo: Repo, user: str, reason: str | None) -> None:
        with self._db.tx() as db:
            db.execute("INSERT INTO access_details (repo_uid, user, rejection_reason) VALUES (?,?,?) "
                       "ON CONFLICT (repo_uid, user) DO UPDATE SET rejection_reason=excluded.rejection_reason",
                       (repo.uid, user, reason))

    def set_fields(self, repo: Repo, user: str, fields: dict[str, Any] | None) -> None:
        with self._db.tx() as db:
            db.execute("INSERT INTO access_details (repo_uid, user, fields) VALUES (?,?,?) "
                       "ON CONFLICT (repo_uid, user) DO UPDATE SET fields=excluded.fields",
                       (repo.uid, user, json.dumps(fields) if fields else None))

    def details(self, repo: Repo) -> dict[str, tuple[str | None, dict[str, Any] | None]]:
        """user -> (rejection reason, form fields) for the repo's requests that have any."""
        rows = self._db.query("SELECT user, rejection_reason, fields FROM access_details WHERE repo_uid=?", (repo.uid,))
        return {r["user"]: (r["rejection_reason"], json.loads(r["fields"]) if r["fields"] else None) for r in rows}
