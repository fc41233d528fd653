"""Collections and their items, in the hub's SQLite file (tables ``collections``, ``collection_items``).

A collection belongs to a namespace (user or org) and is found by its 24-hex id, the tail of its
slug ``{namespace}/{title-slug}-{id}``. Items name repos by ``uid`` (so they follow renames and
vanish with deleted repos), other collections by id, and papers by their id. Positions are dense
(0..n-1) and kept so by every insert, move and delete.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from hubfs.server.db import Conn, DbTarget, Row, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY, namespace TEXT NOT NULL, title TEXT NOT NULL, description TEXT,
    private INTEGER NOT NULL, theme TEXT NOT NULL, position INTEGER NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS collections_by_namespace ON collections (namespace, position);
CREATE TABLE IF NOT EXISTS collection_items (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, position INTEGER NOT NULL,
    note TEXT, created_at REAL NOT NULL, UNIQUE (collection, kind, ref));
CREATE INDEX IF NOT EXISTS collection_items_by_ref ON collection_items (kind, ref);
"""


@dataclass(frozen=True)
class CollectionRow:
    id: str
    namespace: str
    title: str
    description: str | None
    private: bool
    theme: str
    position: int
    created_at: float
    updated_at: float

    @property
    def slug(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "collection"
        return f"{self.namespace}/{words[:80]}-{self.id}"


@dataclass(frozen=True)
class ItemRow:
    id: str
    collection: str
    kind: str  # model | dataset | space | collection | paper
    ref: str  # repo uid, collection id or paper id
    position: int
    note: str | None


def _collection(row: Row) -> CollectionRow:
    return CollectionRow(row["id"], row["namespace"], row["title"], row["description"], bool(row["private"]),
                         row["theme"], row["position"], row["created_at"], row["updated_at"])


def _item(row: Row) -> ItemRow:
    return ItemRow(row["id"], row["collection"], row["kind"], row["ref"], row["position"], row["note"])


def _reorder(db: Conn, table: str, where: str, args: tuple[str, ...], moved: str | None,
             to: int | None) -> None:
    """Renumber the rows of ``table`` matching ``where`` 0..n-1, ``moved`` placed at index ``to``."""
    ids = [r[0] for r in db.execute(f"SELECT id FROM {table} WHERE {where} ORDER BY position, created_at", args)]
    if moved is not None and to is not None and moved in ids:
        ids.remove(moved)
        ids.insert(max(0, min(to, len(ids))), moved)
    db.executemany(f"UPDATE {table} SET position=? WHERE id=?", [(i, rid) for i, rid in enumerate(ids)])


class CollectionsStore:
    """Collections of one hub."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def create(self, namespace: str, title: str, description: str | None, private: bool) -> CollectionRow:
        cid = secrets.token_hex(12)
        now = time.time()
        with self._db.tx() as db:
            position = db.execute("SELECT COUNT(*) FROM collections WHERE namespace=?", (namespace,)).fetchone()[0]
            db.execute("INSERT INTO collections VALUES (?,?,?,?,?,?,?,?,?)",
                       (cid, namespace, title, description, int(private), "orange", position, now, now))
        found = self.get(cid)
        assert found is not None
        return found

    def get(self, cid: str) -> CollectionRow | None:
        rows = self._db.query("SELECT * FROM collections WHERE id=?", (cid,))
        return _collection(rows[0]) if rows else None

    def by_title(self, namespace: str, title: str) -> CollectionRow | None:
        rows = self._db.query("SELECT * FROM collections WHERE namespace=? AND lower(title)=lower(?)",
                              (namespace, title))
        return _collection(rows[0]) if rows else None

    def listing(self, namespace: str | None = None, item: tuple[str, str] | None = None) -> list[CollectionRow]:
        """Collections, optionally of one namespace and/or holding one item (kind, ref); newest change first."""
        sql, args = "SELECT * FROM collections WHERE 1=1", []
        if namespace is not None:
            sql += " AND namespace=?"
            args.append(namespace)
        if item is not None:
            sql += " AND id IN (SELECT collection FROM collection_items WHERE kind=? AND ref=?)"
            args += list(item)
        return [_collection(r) for r in self._db.query(sql + " ORDER BY updated_at DESC", args)]

    def update(self, cid: str, *, title: str | None = None, description: str | None = None,
               private: bool | None = None, theme: str | None = None, position: int | None = None) -> None:
        with self._db.tx() as db:
            for column, value in (("title", title), ("description", description), ("theme", theme),
                                  ("private", None if private is None else int(private))):
                if value is not None:
                    db.execute(f"UPDATE collections SET {column}=? WHERE id=?", (value, cid))
            db.execute("UPDATE collections SET updated_at=? WHERE id=?", (time.time(), cid))
            if position is not None:
                ns = db.execute("SELECT namespace FROM collections WHERE id=?", (cid,)).fetchone()
                if ns is not None:
                    _reorder(db, "collections", "namespace=?", (ns[0],), cid, position)

    def delete(self, cid: str) -> None:
        with self._db.tx() as db:
            ns = db.execute("SELECT namespace FROM collections WHERE id=?", (cid,)).fetchone()
            db.execute("DELETE FROM collection_items WHERE collection=?", (cid,))
            db.execute("DELETE FROM collection_items WHERE kind='collection' AND ref=?", (cid,))
            db.execute("DELETE FROM collections WHERE id=?", (cid,))
            if ns is not None:
                _reorder(db, "collections", "namespace=?", (ns[0],), None, None)

    # -- items ----------------------------------------------------------------------------------------

    def items(self, cid: str) -> list[ItemRow]:
        return [_item(r) for r in self._db.query("SELECT * FROM collection_items WHERE collection=? "
                                                 "ORDER BY position, created_at", (cid,))]

    def item(self, cid: str, item_id: str) -> ItemRow | None:
        rows = self._db.query("SELECT * FROM collection_items WHERE collection=? AND id=?", (cid, item_id))
        return _item(rows[0]) if rows else None

    def add_item(self, cid: str, kind: str, ref: str, note: str | None) -> ItemRow | None:
        """Append an item; None when the collection already holds it."""
        item_id = secrets.token_hex(12)
        with self._db.tx() as db:
            if db.execute("SELECT 1 FROM collection_items WHERE collection=? AND kind=? AND ref=?",
                          (cid, kind, ref)).fetchone():
                return None
            position = db.execute("SELECT COUNT(*) FROM collection_items WHERE collection=?", (cid,)).fetchone()[0]
            db.execute("INSERT INTO collection_items VALUES (?,?,?,?,?,?,?)",
                       (item_id, cid, kind, ref, position, note, time.time()))
            db.execute("UPDATE collections SET updated_at=? WHERE id=?", (time.time(), cid))
        return self.item(cid, item_id)

    def update_item(self, cid: str, item_id: str, *, note: str | None = None, position: int | None = None) -> None:
        with self._db.tx() as db:
            if note is not None:
                db.execute("UPDATE collection_items SET note=? WHERE id=? AND collection=?", (note, item_id, cid))
            if position is not None:
                _reorder(db, "collection_items", "collection=?", (cid,), item_id, position)
            db.execute("UPDATE collections SET updated_at=? WHERE id=?", (time.time(), cid))

    def delete_item(self, cid: str, item_id: str) -> None:
        with self._db.tx() as db:
            db.execute("DELETE FROM collection_items WHERE id=? AND collection=?", (item_id, cid))
            _reorder(db, "collection_items", "collection=?", (cid,), None, None)
            db.execute("UPDATE collections SET updated_at=? WHERE id=?", (time.time(), cid))
