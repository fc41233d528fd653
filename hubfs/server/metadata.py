"""The hub's metadata: users, orgs, tokens (hashed), repos and their settings, the model-card index,
gated-access grants and discussions.

In ``DATA/hub.sqlite`` (one connection per thread, WAL mode, so ``hubfs user add`` can run beside a
live server) or in PostgreSQL: the database is chosen by URL (:mod:`hubfs.server.db`), the SQL is one copy.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from hubfs.errors import BadRequestError, ConflictError, NotFoundError
from hubfs.server.db import Conn, Database, DbTarget, Row, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, is_org INTEGER NOT NULL DEFAULT 0, fullname TEXT, email TEXT,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    org TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'write', PRIMARY KEY (org, user));
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS repos (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL, type TEXT NOT NULL, namespace TEXT NOT NULL,
    name TEXT NOT NULL, private INTEGER NOT NULL DEFAULT 0, gated TEXT NOT NULL DEFAULT 'false',
    sdk TEXT, created_at REAL NOT NULL, last_modified REAL NOT NULL, indexed_sha TEXT,
    card_data TEXT, pipeline_tag TEXT, library_name TEXT, downloads INTEGER NOT NULL DEFAULT 0,
    likes INTEGER NOT NULL DEFAULT 0, UNIQUE (type, namespace, name));
CREATE TABLE IF NOT EXISTS repo_tags (
    repo INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (repo, tag));
CREATE INDEX IF NOT EXISTS repo_tags_by_tag ON repo_tags (tag);
CREATE TABLE IF NOT EXISTS access_grants (
    repo INTEGER NOT NULL, user TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (repo, user));
CREATE TABLE IF NOT EXISTS discussions (
    repo INTEGER NOT NULL, num INTEGER NOT NULL, title TEXT NOT NULL, author TEXT NOT NULL,
    is_pr INTEGER NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, base_ref TEXT,
    merge_commit TEXT, events TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (repo, num));
CREATE TABLE IF NOT EXISTS lfs_links (
    repo INTEGER NOT NULL, oid TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (repo, oid));
CREATE TABLE IF NOT EXISTS repo_cards (
    repo INTEGER PRIMARY KEY, card TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS redirects (
    type TEXT NOT NULL, old_id TEXT NOT NULL, new_id TEXT NOT NULL, PRIMARY KEY (type, old_id));
CREATE INDEX IF NOT EXISTS repos_by_folded_id ON repos (type, lower(namespace), lower(name));
CREATE TABLE IF NOT EXISTS org_settings (
    org TEXT PRIMARY KEY, default_private INTEGER NOT NULL DEFAULT 0);
"""
SITE_ADMIN = "admin"
"""The hub's first user: the only one who writes canonical repos (no namespace, like ``gpt2``)."""


def hash_token(token: str) -> str:
    """Tokens are stored as their sha256 only."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Repo:
    """A repository's metadata row."""

    id: int
    uid: str
    type: str
    namespace: str
    name: str
    private: bool
    gated: str | bool
    sdk: str | None
    created_at: float
    last_modified: float
    indexed_sha: str | None
    pipeline_tag: str | None
    library_name: str | None
    downloads: int
    likes: int
    tags: list[str] = field(default_factory=list)

    @property
    def repo_id(self) -> str:
        """``ns/name``; ``/name`` for a canonical repo (the internal spelling: storage paths split it)."""
        return f"{self.namespace}/{self.name}"

    @property
    def public_id(self) -> str:
        """The id as the Hub shows it: ``ns/name``, or ``name`` for a canonical repo."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class TokenInfo:
    user: str
    name: str
    role: str


TOKEN_ID_LEN = 12  # a token's public id: this many hex characters of its stored sha256


@dataclass(frozen=True)
class TokenRow:
    """A token as listed: its public id, owner, name, role, creation and expiry times (None: never)."""

    id: str
    user: str
    name: str
    role: str
    created_at: float
    expires_at: float | None


@dataclass(frozen=True)
class Viewer:
    """Who a listing is for: ``user`` None is an anonymous visitor (public repos only)."""

    user: str | None


class Metadata:
    """All metadata of one hub: ``target`` is the hub's open database, or ``DATA/hub.sqlite`` for the
    database of the data folder ``DATA`` (see :func:`hubfs.server.db.open_db`)."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)
        self._migrate()

    @property
    def db(self) -> Database:
        """The database (shared with the other stores of the hub)."""
        return self._db

    def _migrate(self) -> None:
        """Add the columns newer versions use to a hub.sqlite made by an older one (idempotent)."""
        added = {"tokens": [("expires_at", "REAL")]}

        def missing() -> list[tuple[str, str, str]]:
            out = []
            for table, columns in added.items():
                have = set(self._db.columns(table))
                out += [(table, name, kind) for name, kind in columns if name not in have]
            return out

        if not missing():
            return  # the usual case: no write lock taken
        with self._tx() as db:
            for table, name, kind in missing():  # re-checked under the lock: another process may have migrated
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _tx(self) -> AbstractContextManager[Conn]:
        return self._db.tx()

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        return self._db.query(sql, args)

    # -- accounts ------------------------------------------------------------------------------

    def add_account(self, name: str, *, is_org: bool = False, fullname: str | None = None,
                    email: str | None = None) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name=?", (name,)).fetchone():
                raise ConflictError(f"{'Organization' if is_org else 'User'} {name} already exists.")
            db.execute("INSERT INTO accounts VALUES (?,?,?,?,?)",
                       (name, int(is_org), fullname or name, email or f"{name}@users.noreply.hubfs", time.time()))

    def account(self, name: str) -> Row | None:
        rows = self._query("SELECT * FROM accounts WHERE name=?", (name,))
        return rows[0] if rows else None

    def ensure_org(self, org: str) -> None:
        row = self.account(org)
        if row is None:
            self.add_account(org, is_org=True)
        elif not row["is_org"]:
            raise ConflictError(f"{org} is a user, not an organization.")

    def add_member(self, org: str, user: str, role: str = "write") -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO members VALUES (?,?,?)", (org, user, role))

    def orgs_of(self, user: str) -> list[str]:
        return [r["org"] for r in self._query("SELECT org FROM members WHERE user=? ORDER BY org", (user,))]

    def memberships(self, user: str) -> list[Row]:
        """The user's orgs with their role and the org's full name and email (``org, role, fullname, email``)."""
        return self._query("SELECT m.org AS org, m.role AS role, a.fullname AS fullname, a.email AS email "
                           "FROM members m LEFT JOIN accounts a ON a.name = m.org WHERE m.user=? ORDER BY m.org",
                           (user,))

    def members_of(self, org: str) -> list[Row]:
        """An org's members with their role (``user, role``), by name."""
        return self._query("SELECT user, role FROM members WHERE org=? ORDER BY user", (org,))

    def org_default_private(self, org: str) -> bool:
        """True when new repos of ``org`` are private unless the creator says otherwise."""
        rows = self._query("SELECT default_private FROM org_settings WHERE org=?", (org,))
        return bool(rows and rows[0]["default_private"])

    def set_org_default_private(self, org: str, private: bool) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO org_settings VALUES (?,?)", (org, int(private)))

    def is_org_admin(self, user: str, org: str) -> bool:
        return bool(self._query("SELECT 1 FROM members WHERE org=? AND user=? AND role='admin'", (org, user)))

    def can_write_namespace(self, user: str, namespace: str) -> bool:
        """A user writes in their own namespace and in orgs where they are a write member; canonical
        repos (namespace '') are the site admin's."""
        if user == namespace or (namespace == "" and user == SITE_ADMIN):
            return True
        return bool(self._query("SELECT 1 FROM members WHERE org=? AND user=? AND role IN ('write','admin')",
                                (namespace, user)))

    def is_member(self, user: str, namespace: str) -> bool:
        if namespace == "":
            return user == SITE_ADMIN
        return user == namespace or bool(self._query("SELECT 1 FROM members WHERE org=? AND user=?",
                                                     (namespace, user)))

    # -- tokens --------------------------------------------------------------------------------

    def create_token(self, user: str, name: str, role: str = "write", expires_in: float | None = None) -> str:
        """Create and return a new token (shown once; only its hash is kept), valid for ``expires_in``
        seconds when given, else until revoked."""
        if expires_in is not None and expires_in <= 0:
            raise BadRequestError("A token's lifetime must be positive.")
        if role not in ("read", "write"):
            raise BadRequestError("Token role must be 'read' or 'write'.")
        row = self.account(user)
        if row is None or row["is_org"]:
            raise NotFoundError(f"No user named {user}.")
        token = "hf_" + secrets.token_urlsafe(30).replace("-", "A").replace("_", "b")
        with self._tx() as db:
            now = time.time()
            db.execute("INSERT INTO tokens (hash, user, name, role, created_at, expires_at) VALUES (?,?,?,?,?,?)",
                       (hash_token(token), user, name, role, now, now + expires_in if expires_in else None))
        return token

    def lookup_token(self, token: str) -> TokenInfo | None:
        """The token's owner and role; None if unknown, revoked or expired (read on every request: no cache)."""
        rows = self._query("SELECT user, name, role FROM tokens WHERE hash=? AND (expires_at IS NULL OR expires_at > ?)",
                           (hash_token(token), time.time()))
        return TokenInfo(rows[0]["user"], rows[0]["name"], rows[0]["role"]) if rows else None

    def token_alive(self, token_id: str) -> bool:
        """True while the token with this public id (see :meth:`list_tokens`) is neither revoked nor expired."""
        return bool(self._query("SELECT 1 FROM tokens WHERE substr(hash, 1, ?)=? AND (expires_at IS NULL OR expires_at > ?)",
                                (TOKEN_ID_LEN, token_id, time.time())))

    def list_tokens(self, user: str) -> list[TokenRow]:
        """A user's tokens, oldest first, by id (never the token or its full hash)."""
        if self.account(user) is None:
            raise NotFoundError(f"No user named {user}.")
        rows = self._query("SELECT hash, name, role, created_at, expires_at FROM tokens WHERE user=? "
                           "ORDER BY created_at", (user,))
        return [TokenRow(r["hash"][:TOKEN_ID_LEN], user, r["name"], r["role"], r["created_at"], r["expires_at"])
                for r in rows]

    def revoke_token(self, token_id: str) -> TokenRow:
        """Delete the token whose id (see :meth:`list_tokens`) is ``token_id``; it stops working at once."""
        if len(token_id) != TOKEN_ID_LEN or any(c not in "0123456789abcdef" for c in token_id):
            raise BadRequestError(f"A token id is {TOKEN_ID_LEN} lowercase hex characters (see `hubfs token list`).")
        with self._tx() as db:
            rows = db.execute("SELECT hash, user, name, role, created_at, expires_at FROM tokens "
                              "WHERE substr(hash, 1, ?)=?", (TOKEN_ID_LEN, token_id)).fetchall()
            if len(rows) != 1:
                raise NotFoundError(f"No token with id {token_id}." if not rows else f"Token id {token_id} is ambiguous.")
            db.execute("DELETE FROM tokens WHERE hash=?", (rows[0]["hash"],))
        r = rows[0]
        return TokenRow(token_id, r["user"], r["name"], r["role"], r["created_at"], r["expires_at"])

    # -- repos ---------------------------------------------------------------------------------

    def _repo(self, row: Row, tags: list[str] | None = None) -> Repo:
        """A repo from its row; its tags are read here unless given (listings read them all at once)."""
        if tags is None:
            tags = [r["tag"] for r in self._query("SELECT tag FROM repo_tags WHERE repo=? ORDER BY rowid",
                                                  (row["id"],))]
        gated: str | bool = row["gated"] if row["gated"] in ("auto", "manual") else False
        return Repo(row["id"], row["uid"], row["type"], row["namespace"], row["name"], bool(row["private"]),
                    gated, row["sdk"], row["created_at"], row["last_modified"], row["indexed_sha"], row["pipeline_tag"],
                    row["library_name"], row["downloads"], row["likes"], tags)

    def get_repo(self, repo_type: str, repo_id: str) -> Repo | None:
        """The repo ``ns/name`` (or canonical ``name`` / ``/name``), found without regard to case as on
        the Hub (the row keeps the stored case)."""
        ns, _, name = repo_id.rpartition("/")
        rows = self._query("SELECT * FROM repos WHERE type=? AND namespace=? AND name=?", (repo_type, ns, name))
        if not rows:
            rows = self._query("SELECT * FROM repos WHERE type=? AND lower(namespace)=lower(?) AND lower(name)=lower(?)",
                               (repo_type, ns, name))
        return self._repo(rows[0]) if rows else None

    def repos_of(self, namespace: str) -> list[Repo]:
        """Every repo of a user or org (all types), most recently modified first."""
        return [self._repo(r) for r in self._query("SELECT * FROM repos WHERE namespace=? ORDER BY last_modified DESC",
                                                   (namespace,))]

    def lfs_bytes(self, repo: Repo) -> int:
        """Bytes of the LFS objects ``repo`` references (its share of the LFS store)."""
        return int(self._query("SELECT COALESCE(SUM(size), 0) AS n FROM lfs_links WHERE repo=?", (repo.id,))[0]["n"])

    def repo_by_id(self, repo_id: int) -> Repo | None:
        """The repo with this numeric id (ids are never reused), None once deleted."""
        rows = self._query("SELECT * FROM repos WHERE id=?", (repo_id,))
        return self._repo(rows[0]) if rows else None

    def repo_by_uid(self, uid: str) -> Repo | None:
        """The repo whose ``uid`` (its ``_id``, kept across renames) this is, None once deleted."""
        rows = self._query("SELECT * FROM repos WHERE uid=?", (uid,))
        return self._repo(rows[0]) if rows else None

    def all_repos(self) -> list[Repo]:
        return [self._repo(r) for r in self._query("SELECT * FROM repos")]

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, sdk: str | None = None) -> Repo:
        ns, _, name = repo_id.rpartition("/")
        repo_id = f"{ns}/{name}"
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM repos WHERE type=? AND lower(namespace)=lower(?) AND lower(name)=lower(?)",
                          (repo_type, ns, name)).fetchone():
                raise ConflictError(f"You already created this {repo_type} repo")
            db.execute("DELETE FROM redirects WHERE type=? AND old_id=?", (repo_type, repo_id))
            db.execute("INSERT INTO repos (uid, type, namespace, name, private, sdk, created_at, last_modified) "
                       "VALUES (?,?,?,?,?,?,?,?)", (uuid.uuid4().hex[:24], repo_type, ns, name, int(private), sdk, now, now))
        repo = self.get_repo(repo_type, repo_id)
        assert repo is not None
        return repo

    def delete_repo(self, repo: Repo) -> None:
        with self._tx() as db:
            for table in ("repo_tags", "access_grants", "discussions", "lfs_links", "repo_cards"):
                db.execute(f"DELETE FROM {table} WHERE repo=?", (repo.id,))
            db.execute("DELETE FROM repos WHERE id=?", (repo.id,))
            db.execute("DELETE FROM redirects WHERE type=? AND new_id=?", (repo.type, repo.repo_id))

    def move_repo(self, repo: Repo, new_id: str) -> None:
        ns, _, name = new_id.rpartition("/")
        new_id = f"{ns}/{name}"
        with self._tx() as db:
            if db.execute("SELECT 1 FROM repos WHERE type=? AND lower(namespace)=lower(?) AND lower(name)=lower(?) "
                          "AND id<>?", (repo.type, ns, name, repo.id)).fetchone():
                raise ConflictError(f"Repository {new_id} already exists.")
            db.execute("UPDATE repos SET namespace=?, name=? WHERE id=?", (ns, name, repo.id))
            db.execute("UPDATE redirects SET new_id=? WHERE type=? AND new_id=?", (new_id, repo.type, repo.repo_id))
            db.execute("INSERT OR REPLACE INTO redirects VALUES (?,?,?)", (repo.type, repo.repo_id, new_id))

    def redirect(self, repo_type: str, old_id: str) -> str | None:
        rows = self._query("SELECT new_id FROM redirects WHERE type=? AND old_id=?", (repo_type, old_id))
        return rows[0]["new_id"] if rows else None

    def update_settings(self, repo: Repo, *, private: bool | None = None, gated: str | None = None) -> None:
        with self._tx() as db:
            if private is not None:
                db.execute("UPDATE repos SET private=? WHERE id=?", (int(private), repo.id))
            if gated is not None:
                db.execute("UPDATE repos SET gated=? WHERE id=?", (gated, repo.id))

    def touch(self, repo: Repo, when: float | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE repos SET last_modified=? WHERE id=?", (when or time.time(), repo.id))

    def index_card(self, repo: Repo, sha: str, card: dict[str, Any] | None, tags: list[str],
                   pipeline_tag: str | None, library_name: str | None, when: float) -> None:
        """Record the model card of the default branch's head ``sha`` and its search tags.

        The card is kept as JSON in ``repo_cards``, apart from the repo row, so that reading repo
        rows (every listing) never reads cards; ``repos.card_data`` (older versions) is cleared.
        """
        with self._tx() as db:
            db.execute("UPDATE repos SET indexed_sha=?, card_data=NULL, pipeline_tag=?, library_name=?, "
                       "last_modified=? WHERE id=?", (sha, pipeline_tag, library_name, when, repo.id))
            if card is None:
                db.execute("DELETE FROM repo_cards WHERE repo=?", (repo.id,))
            else:
                db.execute("INSERT OR REPLACE INTO repo_cards VALUES (?,?)", (repo.id, json.dumps(card)))
            db.execute("DELETE FROM repo_tags WHERE repo=?", (repo.id,))
            db.executemany("INSERT OR IGNORE INTO repo_tags VALUES (?,?)", [(repo.id, t) for t in tags])

    def card(self, repo: Repo) -> dict[str, Any] | None:
        """The indexed cardData of ``repo`` (its default branch at ``indexed_sha``), None if it has none."""
        return self.cards([repo]).get(repo.id)

    def cards(self, repos: list[Repo]) -> dict[int, dict[str, Any]]:
        """repo id -> indexed cardData, for those of ``repos`` that have one (one query per 500 repos)."""
        out: dict[int, dict[str, Any]] = {}
        ids = [r.id for r in repos]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self._query(f"SELECT repo, card FROM repo_cards WHERE repo IN ({','.join('?' * len(chunk))})",
                               chunk)
            out.update((row["repo"], json.loads(row["card"])) for row in rows)
        return out

    def legacy_card_repos(self) -> set[int]:
        """Ids of repos whose card an older version stored, unbounded, in ``repos.card_data``."""
        return {row["id"] for row in self._query("SELECT id FROM repos WHERE card_data IS NOT NULL")}

    def search_repos(self, repo_type: str, *, author: str | None, search: str | None,
                     filters: list[str], sort: str | None, with_tags: bool = True,
                     viewer: Viewer | None = None, limit: int | None = None, offset: int = 0) -> list[Repo]:
        """Repos of a type matching author, a case-insensitive id substring and every filter tag, in
        ``sort`` order (``with_tags`` False: their ``tags`` are left empty, which saves reading them).

        ``viewer``: only the repos that user may see (:meth:`_where`); ``limit``/``offset``: one page."""
        where, args = self._where(repo_type, author, search, filters, viewer)
        column = {"downloads": "downloads DESC", "likes": "likes DESC", "lastModified": "last_modified DESC",
                  "createdAt": "created_at DESC", "trendingScore": "likes DESC, downloads DESC"}.get(sort or "")
        window = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        rows = self._query(f"SELECT * FROM repos WHERE {where} ORDER BY {column + ', ' if column else ''}namespace, name"
                           + window, args)
        tags: dict[int, list[str]] = {}  # the matching repos' tags in one query per 500, not one per repo
        ids = [r["id"] for r in rows] if with_tags else []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for t in self._query(f"SELECT repo, tag FROM repo_tags WHERE repo IN ({','.join('?' * len(chunk))}) "
                                 "ORDER BY rowid", chunk):
                tags.setdefault(t["repo"], []).append(t["tag"])
        return [self._repo(r, tags.get(r["id"], [])) for r in rows]

    def search_facets(self, repo_type: str, *, author: str | None, search: str | None, filters: list[str],
                      viewer: Viewer | None = None) -> tuple[int, dict[str, int], dict[str, Counter[str]]]:
        """For the repos :meth:`search_repos` finds (all of them, not a page): how many, tag -> how many
        carry it, and the indexed ``pipeline_tag`` and ``library_name`` columns' value counts. A few
        grouped queries, however many repos match."""
        where, args = self._where(repo_type, author, search, filters, viewer)
        total = 0
        columns: dict[str, Counter[str]] = {"pipeline_tag": Counter(), "library_name": Counter()}
        for r in self._query(f"SELECT pipeline_tag, library_name, COUNT(*) AS n FROM repos WHERE {where} "
                             "GROUP BY pipeline_tag, library_name", args):
            total += r["n"]
            for column, counts in columns.items():
                if r[column] is not None:
                    counts[r[column]] += r["n"]
        tags = {r["tag"]: r["n"] for r in self._query(
            f"SELECT tag, COUNT(*) AS n FROM repo_tags WHERE repo IN (SELECT id FROM repos WHERE {where}) GROUP BY tag",
            args)} if total else {}
        return total, tags, columns

    def _where(self, repo_type: str, author: str | None, search: str | None, filters: list[str],
               viewer: Viewer | None) -> tuple[str, list[Any]]:
        """The WHERE clause of a listing. With a ``viewer``, only repos that user may see: public ones, and
        private ones of a namespace they are a member of (the rule of :meth:`is_member`)."""
        where = "type=?"
        args: list[Any] = [repo_type]
        if author:
            where += " AND namespace=?"
            args.append(author)
        if search:
            where += " AND instr(lower(namespace || '/' || name), lower(?)) > 0"
            args.append(search)
        for tag in filters:
            where += " AND id IN (SELECT repo FROM repo_tags WHERE tag=?)"
            args.append(tag)
        if viewer is not None:
            if viewer.user is None:
                where += " AND private=0"
            else:
                where += (" AND (private=0 OR namespace=? OR namespace IN (SELECT org FROM members WHERE user=?)"
                          " OR (namespace='' AND ?=?))")
                args += [viewer.user, viewer.user, viewer.user, SITE_ADMIN]
        return where, args

    # -- gated access ------------------------------------------------------------------------------

    def set_access(self, repo: Repo, user: str, status: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO access_grants VALUES (?,?,?,?)", (repo.id, user, status, time.time()))

    def access_status(self, repo: Repo, user: str) -> str | None:
        rows = self._query("SELECT status FROM access_grants WHERE repo=? AND user=?", (repo.id, user))
        return rows[0]["status"] if rows else None

    def access_requests(self, repo: Repo, status: str) -> list[Row]:
        return self._query("SELECT * FROM access_grants WHERE repo=? AND status=? ORDER BY created_at", (repo.id, status))

    # -- discussions ---------------------------------------------------------------------------

    def create_discussion(self, repo: Repo, *, title: str, author: str, is_pr: bool, base_ref: str | None,
                          events: list[dict[str, Any]]) -> int:
        """Open discussion or PR number N (per repo, from 1) and return N."""
        with self._tx() as db:
            num = db.execute("SELECT COALESCE(MAX(num), 0) + 1 FROM discussions WHERE repo=?", (repo.id,)).fetchone()[0]
            db.execute("INSERT INTO discussions (repo, num, title, author, is_pr, status, created_at, base_ref, events) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       (repo.id, num, title, author, int(is_pr), "open", time.time(), base_ref, json.dumps(events)))
        return num

    def delete_discussion(self, repo: Repo, num: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM discussions WHERE repo=? AND num=?", (repo.id, num))

    def discussion(self, repo: Repo, num: int) -> Row | None:
        rows = self._query("SELECT * FROM discussions WHERE repo=? AND num=?", (repo.id, num))
        return rows[0] if rows else None

    def discussions(self, repo: Repo) -> list[Row]:
        return self._query("SELECT * FROM discussions WHERE repo=? ORDER BY num DESC", (repo.id,))

    def update_discussion(self, repo: Repo, num: int, **fields: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE discussions SET {sets} WHERE repo=? AND num=?", (*fields.values(), repo.id, num))

    def add_event(self, repo: Repo, num: int, event: dict[str, Any]) -> None:
        with self._tx() as db:
            row = db.execute("SELECT events FROM discussions WHERE repo=? AND num=?", (repo.id, num)).fetchone()
            events = json.loads(row["events"]) + [event]
            db.execute("UPDATE discussions SET events=? WHERE repo=? AND num=?", (json.dumps(events), repo.id, num))

    def update_event(self, repo: Repo, num: int, event_id: str,
                     change: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        """Apply ``change`` to event ``event_id`` of discussion ``num`` in one transaction (it may raise
        to refuse); returns the updated event, None when there is no such event."""
        with self._tx() as db:
            row = db.execute("SELECT events FROM discussions WHERE repo=? AND num=?", (repo.id, num)).fetchone()
            events = json.loads(row["events"]) if row else []
            found = next((e for e in events if e.get("id") == event_id), None)
            if found is None:
                return None
            change(found)
            db.execute("UPDATE discussions SET events=? WHERE repo=? AND num=?", (json.dumps(events), repo.id, num))
        return found

    # -- LFS objects a repo may reference -------------------------------------------------------------

    def link_lfs(self, repo: Repo, oid: str, size: int) -> None:
        """Record that ``repo`` proved possession of LFS object ``oid`` (uploaded it, or committed it)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO lfs_links VALUES (?,?,?)", (repo.id, oid, size))

    def unlink_lfs(self, oids: Iterable[str]) -> None:
        """Forget every repo's link to these objects (gc deleted them: they must be uploaded again)."""
        with self._tx() as db:
            db.executemany("DELETE FROM lfs_links WHERE oid=?", [(oid,) for oid in oids])

    def lfs_linked(self, repo: Repo, oid: str) -> bool:
        """True if ``repo`` may reference (and serve) ``oid``: content-addressed ids carry no repo."""
        return bool(self._query("SELECT 1 FROM lfs_links WHERE repo=? AND oid=?", (repo.id, oid)))
