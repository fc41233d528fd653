"""Webhooks and their delivery queue, in the hub's SQLite file (tables ``webhooks``, ``webhook_deliveries``).

The queue is durable and bounded: an event becomes one delivery row per matching webhook; the
delivery worker (:mod:`hubfs.server.webhooks`) takes due rows, POSTs them and records the outcome,
so pending retries survive a restart and every failure stays visible through the API. Any process
on the data folder may enqueue (the server's routes, the git ``post-receive`` hook).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hubfs.server.db import DbTarget, Row, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, url TEXT NOT NULL, watched TEXT NOT NULL, domains TEXT NOT NULL,
    secret TEXT, disabled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS webhooks_by_owner ON webhooks (owner);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY, webhook TEXT NOT NULL, scope TEXT NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, created_at REAL NOT NULL,
    done_at REAL, response_status INTEGER, last_error TEXT);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_hook ON webhook_deliveries (webhook, id);
CREATE TABLE IF NOT EXISTS webhook_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

MAX_PENDING = 10_000  # deliveries waiting at once, all webhooks together; past it new ones are recorded as dropped
KEEP_DONE = 200  # finished deliveries kept per webhook (the newest)


@dataclass(frozen=True)
class Webhook:
    """A webhook: who owns it, where it posts, what it watches (``[{type, name}]``) and for which domains."""

    id: str
    owner: str
    url: str
    watched: list[dict[str, str]]
    domains: list[str]
    secret: str | None
    disabled: bool
    created_at: float


@dataclass(frozen=True)
class Delivery:
    """One queued or finished POST of one event to one webhook."""

    id: int
    webhook: str
    scope: str
    action: str
    payload: dict[str, Any]
    status: str  # pending | delivered | failed | dropped
    attempts: int
    next_at: float
    created_at: float
    done_at: float | None
    response_status: int | None
    last_error: str | None


def _webhook(row: Row) -> Webhook:
    return Webhook(row["id"], row["owner"], row["url"], json.loads(row["watched"]), json.loads(row["domains"]),
                   row["secret"], bool(row["disabled"]), row["created_at"])


def _delivery(row: Row) -> Delivery:
    return Delivery(row["id"], row["webhook"], row["scope"], row["action"], json.loads(row["payload"]), row["status"],
                    row["attempts"], row["next_at"], row["created_at"], row["done_at"], row["response_status"],
                    row["last_error"])


class WebhookStore:
    """The webhooks of one hub and their deliveries."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    # -- webhooks ----------------------------------------------------------------------------------

    def create(self, owner: str, url: str, watched: list[dict[str, str]], domains: list[str],
               secret: str | None) -> Webhook:
        hook_id = secrets.token_hex(12)
        with self._db.tx() as db:
            db.execute("INSERT INTO webhooks (id, owner, url, watched, domains, secret, disabled, created_at) "
                       "VALUES (?,?,?,?,?,?,0,?)",
                       (hook_id, owner, url, json.dumps(watched), json.dumps(domains), secret, time.time()))
        hook = self.get(hook_id)
        assert hook is not None
        return hook

    def get(self, hook_id: str) -> Webhook | None:
        rows = self._db.query("SELECT * FROM webhooks WHERE id=?", (hook_id,))
        return _webhook(rows[0]) if rows else None

    def of_owner(self, owner: str) -> list[Webhook]:
        return [_webhook(r) for r in self._db.query("SELECT * FROM webhooks WHERE owner=? ORDER BY created_at",
                                                    (owner,))]

    def count(self, owner: str) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM webhooks WHERE owner=?", (owner,))[0][0])

    def enabled(self) -> list[Webhook]:
        return [_webhook(r) for r in self._db.query("SELECT * FROM webhooks WHERE disabled=0")]

    def update(self, hook_id: str, **fields: Any) -> Webhook | None:
        """Set ``url``, ``watched``, ``domains``, ``secret`` or ``disabled``; None when it does not exist."""
        values = {k: json.dumps(v) if k in ("watched", "domains") else (int(v) if k == "disabled" else v)
                  for k, v in fields.items()}
        if values:
            with self._db.tx() as db:
                db.execute(f"UPDATE webhooks SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
                           (*values.values(), hook_id))
        return self.get(hook_id)

    def delete(self, hook_id: str) -> None:
        with self._db.tx() as db:
            db.execute("DELETE FROM webhooks WHERE id=?", (hook_id,))
            db.execute("DELETE FROM webhook_deliveries WHERE webhook=?", (hook_id,))

    # -- the queue -----------------------------------------------------------------------------------

    def enqueue(self, hook_id: str, scope: str, action: str, payload: dict[str, Any]) -> int:
        """Queue one delivery, due now; when ``MAX_PENDING`` are already waiting it is recorded as
        ``dropped`` instead (visible in the deliveries list). Returns its id."""
        now = time.time()
        with self._db.tx() as db:
            pending = db.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE status='pending'").fetchone()[0]
            status, error = ("pending", None) if pending < MAX_PENDING else \
                ("dropped", f"the delivery queue is full ({MAX_PENDING} pending)")
            cur = db.execute("INSERT INTO webhook_deliveries (webhook, scope, action, payload, status, next_at, "
                             "created_at, done_at, last_error) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
                             (hook_id, scope, action, json.dumps(payload), status, now, now,
                              None if status == "pending" else now, error))
            return int(cur.fetchone()[0])

    def claim(self, now: float, lease: float, limit: int = 32) -> list[Delivery]:
        """Take up to ``limit`` deliveries due at ``now`` for ``lease`` seconds (their ``next_at`` moves
        past it), in one transaction: two workers on one data folder never send the same one at once,
        and one whose worker died is sent again when the lease ends."""
        with self._db.tx() as db:
            rows = db.execute("SELECT * FROM webhook_deliveries WHERE status='pending' AND next_at<=? "
                              "ORDER BY next_at, id LIMIT ?", (now, limit)).fetchall()
            db.executemany("UPDATE webhook_deliveries SET next_at=? WHERE id=?", [(now + lease, r["id"]) for r in rows])
        return [_delivery(r) for r in rows]

    def finish(self, delivery_id: int, *, status: str, attempts: int, next_at: float | None,
               response_status: int | None, error: str | None) -> None:
        """Record an attempt: ``status`` delivered or failed (final), or pending again at ``next_at``."""
        now = time.time()
        with self._db.tx() as db:
            db.execute("UPDATE webhook_deliveries SET status=?, attempts=?, next_at=COALESCE(?, next_at), "
                       "done_at=?, response_status=?, last_error=? WHERE id=?",
                       (status, attempts, next_at, None if status == "pending" else now, response_status,
                        error, delivery_id))
            if status != "pending":
                hook = db.execute("SELECT webhook FROM webhook_deliveries WHERE id=?", (delivery_id,)).fetchone()
                if hook is not None:
                    db.execute("DELETE FROM webhook_deliveries WHERE webhook=? AND status!='pending' AND id NOT IN "
                               "(SELECT id FROM webhook_deliveries WHERE webhook=? AND status!='pending' "
                               "ORDER BY id DESC LIMIT ?)", (hook[0], hook[0], KEEP_DONE))

    def deliveries(self, hook_id: str, limit: int = 100) -> list[Delivery]:
        """The newest deliveries of a webhook, newest first."""
        rows = self._db.query("SELECT * FROM webhook_deliveries WHERE webhook=? ORDER BY id DESC LIMIT ?",
                              (hook_id, limit))
        return [_delivery(r) for r in rows]

    def failures(self, hook_id: str) -> int:
        """Deliveries of this webhook that failed for good (or were dropped), among those kept."""
        return int(self._db.query("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook=? AND status IN "
                                  "('failed','dropped')", (hook_id,))[0][0])

    # -- settings --------------------------------------------------------------------------------------

    def set_endpoint(self, endpoint: str) -> None:
        """The hub's public base URL, for the URLs inside payloads (written by ``hubfs serve`` at start)."""
        with self._db.tx() as db:
            db.execute("INSERT OR REPLACE INTO webhook_settings VALUES ('endpoint', ?)", (endpoint,))

    def endpoint(self) -> str:
        rows = self._db.query("SELECT value FROM webhook_settings WHERE key='endpoint'")
        return str(rows[0][0]) if rows else "http://127.0.0.1"
