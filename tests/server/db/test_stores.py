"""The metadata stores behave the same on SQLite and on PostgreSQL (``db`` runs each test on both):
same answers, same ids and order, same refusals, and write transactions that serialize
read-then-write code."""

from __future__ import annotations

import threading
import time

import pytest

from hubfs.errors import ConflictError, NotFoundError
from hubfs.server import webhooks_store
from hubfs.server.access_store import AccessStore
from hubfs.server.collections_store import CollectionsStore
from hubfs.server.jobs.store import COMPLETED, ERROR, RUNNING, JobSpec, JobsStore
from hubfs.server.lfs_tombstones import LfsDeletions
from hubfs.server.likes_store import LikesStore
from hubfs.server.metadata import Metadata, Viewer
from hubfs.server.web.passwords import PasswordStore
from hubfs.server.webhooks_store import WebhookStore


@pytest.fixture
def meta(db) -> Metadata:
    m = Metadata(db)
    for name in ("admin", "alice", "bob"):
        m.add_account(name)
    return m


def test_accounts_members_and_org_settings(meta: Metadata) -> None:
    with pytest.raises(ConflictError):
        meta.add_account("alice")
    meta.ensure_org("acme")
    assert meta.account("acme")["is_org"] == 1 and meta.account("nobody") is None
    meta.add_member("acme", "alice", "write")
    meta.add_member("acme", "alice", "admin")  # INSERT OR REPLACE: the role changes, no second row
    meta.add_member("acme", "bob", "read")
    assert [(r["user"], r["role"]) for r in meta.members_of("acme")] == [("alice", "admin"), ("bob", "read")]
    assert [r["org"] for r in meta.memberships("alice")] == ["acme"] and meta.orgs_of("bob") == ["acme"]
    assert meta.is_org_admin("alice", "acme") and not meta.is_org_admin("bob", "acme")
    assert meta.can_write_namespace("alice", "acme") and not meta.can_write_namespace("bob", "acme")
    meta.set_org_default_private("acme", True)
    meta.set_org_default_private("acme", False)
    meta.set_org_default_private("acme", True)
    assert meta.org_default_private("acme") and not meta.org_default_private("other")


def test_tokens(meta: Metadata) -> None:
    token = meta.create_token("alice", "laptop", "read")
    short = meta.create_token("alice", "ci", expires_in=3600)
    info = meta.lookup_token(token)
    assert info is not None and (info.user, info.name, info.role) == ("alice", "laptop", "read")
    rows = meta.list_tokens("alice")
    assert [r.name for r in rows] == ["laptop", "ci"] and rows[0].expires_at is None
    assert rows[1].expires_at is not None and abs(rows[1].expires_at - rows[1].created_at - 3600) < 1e-6
    assert meta.token_alive(rows[0].id)
    assert meta.revoke_token(rows[0].id).name == "laptop"
    assert meta.lookup_token(token) is None and meta.lookup_token(short) is not None
    with pytest.raises(NotFoundError):
        meta.revoke_token(rows[0].id)
    with pytest.raises(NotFoundError):
        meta.create_token("acme-missing", "x")


def test_repos_ids_case_moves_and_deletes(meta: Metadata) -> None:
    a = meta.create_repo("model", "alice/Model-A", private=False)
    b = meta.create_repo("model", "bob/b", private=True)
    assert b.id > a.id and meta.repo_by_id(a.id) == a and meta.repo_by_uid(b.uid) == b
    assert meta.get_repo("model", "ALICE/model-a") == a  # found without regard to case, stored case kept
    assert meta.get_repo("dataset", "alice/Model-A") is None
    with pytest.raises(ConflictError):
        meta.create_repo("model", "alice/MODEL-A", private=False)
    meta.move_repo(a, "alice/renamed")
    assert meta.redirect("model", "alice/Model-A") == "alice/renamed"
    moved = meta.get_repo("model", "alice/renamed")
    assert moved is not None and moved.id == a.id and moved.uid == a.uid
    meta.link_lfs(moved, "ab" * 32, 5 * 2**30)  # sizes past 32 bits
    meta.link_lfs(moved, "ab" * 32, 5 * 2**30)  # INSERT OR IGNORE
    assert meta.lfs_bytes(moved) == 5 * 2**30 and meta.lfs_linked(moved, "ab" * 32)
    meta.delete_repo(moved)
    assert meta.repo_by_id(a.id) is None and meta.redirect("model", "alice/Model-A") is None
    c = meta.create_repo("model", "alice/c", private=False)
    assert c.id > b.id  # ids are never reused
    before = time.time()
    meta.touch(c, before)
    assert meta.repo_by_id(c.id).last_modified == before  # type: ignore[union-attr]  # doubles, not floats


def test_card_index_tags_search_and_facets(meta: Metadata) -> None:
    meta.ensure_org("acme")
    meta.add_member("acme", "bob")
    r1 = meta.create_repo("model", "alice/Zeta", private=False)
    r2 = meta.create_repo("model", "alice/alpha", private=False)
    r3 = meta.create_repo("model", "acme/secret", private=True)
    meta.index_card(r1, "1" * 40, {"license": "mit"}, ["zz", "text", "aa"], "text-generation", "transformers", 3.0)
    meta.index_card(r2, "2" * 40, None, ["text"], "fill-mask", None, 2.0)
    meta.index_card(r3, "3" * 40, {"x": [1, 2]}, ["text", "aa"], "text-generation", None, 1.0)
    meta.index_card(r1, "4" * 40, {"license": "mit"}, ["zz", "text", "aa"], "text-generation", "transformers", 4.0)
    assert meta.get_repo("model", "alice/Zeta").tags == ["zz", "text", "aa"]  # type: ignore[union-attr]
    assert meta.cards([r1, r2, r3]) == {r1.id: {"license": "mit"}, r3.id: {"x": [1, 2]}}

    def ids(**kw) -> list[str]:
        args = {"author": None, "search": None, "filters": [], "sort": None} | kw
        return [r.repo_id for r in meta.search_repos("model", **args)]

    everyone = ids()
    assert everyone == ["acme/secret", "alice/Zeta", "alice/alpha"]  # byte order (SQLite's): 'Z' < 'a'
    assert ids(viewer=Viewer(None)) == ["alice/Zeta", "alice/alpha"]
    assert ids(viewer=Viewer("bob")) == everyone and ids(viewer=Viewer("alice")) == ["alice/Zeta", "alice/alpha"]
    assert ids(filters=["text", "aa"]) == ["acme/secret", "alice/Zeta"]
    assert ids(search="ZET") == ["alice/Zeta"] and ids(author="alice", sort="lastModified") == ["alice/Zeta", "alice/alpha"]
    assert ids(limit=1, offset=1) == ["alice/Zeta"]
    page = meta.search_repos("model", author=None, search=None, filters=[], sort=None, limit=2)
    assert [r.tags for r in page] == [["text", "aa"], ["zz", "text", "aa"]]
    total, tags, columns = meta.search_facets("model", author=None, search=None, filters=[], viewer=Viewer(None))
    assert total == 2 and tags == {"text": 2, "zz": 1, "aa": 1}
    assert columns["pipeline_tag"] == {"text-generation": 1, "fill-mask": 1}
    assert columns["library_name"] == {"transformers": 1}


def test_discussions_and_access(meta: Metadata) -> None:
    repo = meta.create_repo("model", "alice/d", private=False)
    assert meta.create_discussion(repo, title="one", author="bob", is_pr=False, base_ref=None, events=[]) == 1
    assert meta.create_discussion(repo, title="two", author="bob", is_pr=True, base_ref="main",
                                  events=[{"id": "e1", "text": "hi"}]) == 2
    meta.add_event(repo, 2, {"id": "e2", "text": "more"})
    changed = meta.update_event(repo, 2, "e1", lambda e: e.update(text="edited"))
    assert changed == {"id": "e1", "text": "edited"} and meta.update_event(repo, 2, "nope", lambda e: None) is None
    meta.update_discussion(repo, 2, status="merged", merge_commit="c" * 40)
    assert [r["num"] for r in meta.discussions(repo)] == [2, 1]
    row = meta.discussion(repo, 2)
    assert row["status"] == "merged" and row["is_pr"] == 1 and '"edited"' in row["events"] and '"e2"' in row["events"]
    meta.set_access(repo, "bob", "pending")
    meta.set_access(repo, "bob", "accepted")
    assert meta.access_status(repo, "bob") == "accepted"
    assert [r["user"] for r in meta.access_requests(repo, "accepted")] == ["bob"]
    access = AccessStore(meta.db)
    access.set_reason(repo, "bob", "no")
    access.set_fields(repo, "bob", {"company": "x"})
    access.set_reason(repo, "bob", "still no")
    assert access.details(repo) == {"bob": ("still no", {"company": "x"})}


def test_likes_and_lfs_tombstones(meta: Metadata) -> None:
    repo = meta.create_repo("model", "alice/l", private=False)
    likes = LikesStore(meta.db)
    assert likes.set(repo, "bob", True) == 1 and likes.set(repo, "bob", True) == 1 and likes.set(repo, "alice", True) == 2
    assert meta.repo_by_id(repo.id).likes == 2  # type: ignore[union-attr]
    assert [u for u, _ in likes.likers(repo)] == ["bob", "alice"] and [i for i, _ in likes.liked_by("bob")] == [repo.id]
    assert likes.set(repo, "bob", False) == 1
    other = meta.create_repo("model", "bob/o", private=False)
    for r in (repo, other):
        meta.link_lfs(r, "a" * 64, 10)
    meta.link_lfs(repo, "b" * 64, 20)
    tomb = LfsDeletions(meta.db)
    assert tomb.linked(repo.id) == [("a" * 64, 10), ("b" * 64, 20)]
    assert tomb.unlink(repo.id, repo.uid, ["a" * 64, "b" * 64]) == ["b" * 64]  # 'a' is still other's
    assert tomb.deleted(repo.uid) == {"a" * 64, "b" * 64} and tomb.by_repo() == {repo.uid: {"a" * 64, "b" * 64}}
    meta.link_lfs(repo, "a" * 64, 10)  # uploaded again: its tombstone stops counting
    assert tomb.deleted(repo.uid) == {"b" * 64}


def test_collections_keep_dense_positions(db) -> None:
    store = CollectionsStore(db)
    first = store.create("alice", "First", None, False)
    second = store.create("alice", "Second", "d", True)
    assert (first.position, second.position) == (0, 1) and second.private
    items = [store.add_item(first.id, "model", f"uid{i}", None) for i in range(4)]
    assert store.add_item(first.id, "model", "uid0", None) is None
    store.update_item(first.id, items[3].id, position=0, note="top")  # type: ignore[union-attr]
    assert [i.ref for i in store.items(first.id)] == ["uid3", "uid0", "uid1", "uid2"]
    store.delete_item(first.id, items[0].id)  # type: ignore[union-attr]
    assert [(i.ref, i.position) for i in store.items(first.id)] == [("uid3", 0), ("uid1", 1), ("uid2", 2)]
    store.update(second.id, position=0, title="Renamed")
    assert [c.title for c in sorted(store.listing("alice"), key=lambda c: c.position)] == ["Renamed", "First"]
    assert [c.id for c in store.listing(item=("model", "uid3"))] == [first.id]
    store.delete(second.id)
    assert store.get(second.id) is None and store.get(first.id).position == 0  # type: ignore[union-attr]


def test_webhook_queue(db, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks_store, "KEEP_DONE", 2)
    store = WebhookStore(db)
    hook = store.create("alice", "http://127.0.0.1:9/x", [{"type": "user", "name": "alice"}], ["repo"], "s")
    ids = [store.enqueue(hook.id, "repo", "update", {"n": i}) for i in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4 and all(i > 0 for i in ids)
    now = time.time()
    claimed = store.claim(now, lease=60, limit=3)
    assert [d.payload["n"] for d in claimed] == [0, 1, 2] and [d.id for d in store.claim(now, 60)] == [ids[3]]
    assert store.claim(now, 60) == []  # leased
    for d in claimed:
        store.finish(d.id, status="delivered", attempts=1, next_at=None, response_status=200, error=None)
    kept = store.deliveries(hook.id)
    assert [d.status for d in kept] == ["pending", "delivered", "delivered"]  # newest 2 finished ones kept
    store.set_endpoint("http://a")
    store.set_endpoint("http://b")
    assert store.endpoint() == "http://b" and store.count("alice") == 1
    assert store.update(hook.id, disabled=True).disabled and store.enabled() == []  # type: ignore[union-attr]


def test_jobs_and_passwords(meta: Metadata) -> None:
    jobs = JobsStore(meta.db)
    job = jobs.add("j1", "alice", "alice", JobSpec("python:3.12", ["python", "-c", "1"]))
    jobs.started("j1", 2**31 + 5, "123", "tok")
    assert jobs.get("j1").stage == RUNNING and jobs.get("j1").pid == 2**31 + 5  # type: ignore[union-attr]
    jobs.finish("j1", COMPLETED, None)
    jobs.finish("j1", ERROR, "late")  # a finished job keeps its first outcome
    assert jobs.get("j1").stage == COMPLETED and job.spec == jobs.get("j1").spec  # type: ignore[union-attr]
    assert [j.id for j in jobs.of_owner("alice", [COMPLETED])] == ["j1"] and jobs.live() == []
    passwords = PasswordStore(meta.db)
    passwords.set_password("alice", "correct horse")
    passwords.set_password("alice", "battery staple")  # ON CONFLICT ... epoch=epoch+1
    assert passwords.epoch("alice") == 1 and passwords.check("alice", "battery staple")
    assert not passwords.check("alice", "correct horse") and not passwords.check("bob", "battery staple")
    with pytest.raises(NotFoundError):
        passwords.set_password("nobody", "whatever1")


def test_write_transactions_serialize_read_then_write(db) -> None:
    """Eight threads each read a counter and write it back plus one, 25 times: none is lost."""
    db.ensure_schema("CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);")
    with db.tx() as conn:
        conn.execute("INSERT OR REPLACE INTO counter VALUES ('n', 0)")

    def bump() -> None:
        for _ in range(25):
            with db.tx() as conn:
                value = conn.execute("SELECT value FROM counter WHERE name='n'").fetchone()[0]
                time.sleep(0.0005)
                conn.execute("UPDATE counter SET value=? WHERE name='n'", (value + 1,))

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.query("SELECT value FROM counter")[0]["value"] == 200


def test_a_failed_transaction_leaves_nothing(meta: Metadata) -> None:
    with pytest.raises(RuntimeError), meta.db.tx() as conn:
        conn.execute("INSERT INTO accounts VALUES (?,?,?,?,?)", ("carol", 0, "c", "c@x", 1.0))
        raise RuntimeError("boom")
    assert meta.account("carol") is None
    assert sorted(meta.db.tables())[:2] == ["access_grants", "accounts"]
    assert meta.db.columns("members") == ["org", "user", "role"]
