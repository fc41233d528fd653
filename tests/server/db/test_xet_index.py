"""The Xet index lives in the hub's database (SQLite or PostgreSQL, ``db`` runs each store test on
both): the store answers the same on each, an older folder's ``xet/index.sqlite`` is imported once
(idempotently) and still serves its files, and ``hubfs migrate`` carries the index to PostgreSQL so
Xet files stay downloadable (uploads through the official client, hf_xet)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from pg_cluster import PgCluster

from hubfs.server.db import Database, SqliteDb, open_database
from hubfs.server.xet.format import Term, XorbContent, chunk_hash, file_hash, hash_to_str, xorb_hash
from hubfs.server.xet.store import LEGACY_COLUMNS, SCHEMA, XetFile, XetStore, import_legacy_index

TABLES = tuple(LEGACY_COLUMNS)


def _xorb(n: int = 3) -> tuple[bytes, XorbContent]:
    chunks = [os.urandom(3000 + 500 * i) for i in range(n)]
    hashes = [chunk_hash(c) for c in chunks]
    return xorb_hash(list(zip(hashes, [len(c) for c in chunks]))), XorbContent(hashes, chunks)


def _stored_file(store: XetStore) -> tuple[XetFile, bytes]:
    """A xorb and a file made of all its chunks, stored and indexed for dedup; (file, content)."""
    xh, content = _xorb()
    assert store.put_xorb(xh, content) and not store.put_xorb(xh, content)
    data = b"".join(content.chunks)
    f = XetFile(file_hash(list(zip(content.hashes, content.lengths))), hashlib.sha256(data).hexdigest(), len(data),
                (Term(xorb=xh, unpacked=len(data), start=0, end=len(content.chunks)),))
    store.add_file(f)
    store.add_file(f)  # INSERT OR IGNORE: a second upload of the same file changes nothing
    store.index_for_dedup(f)
    return f, data


def _counts(db: Database) -> dict[str, int]:
    return {t: int(db.query(f"SELECT count(*) FROM {t}")[0][0]) for t in TABLES}


def test_the_store_answers_the_same_on_both_backends(db: Database, tmp_path: Path) -> None:
    store = XetStore(tmp_path / "data", tmp_path / "tmp", db)
    f, data = _stored_file(store)
    xh = f.terms[0].xorb
    assert store.has_xorb(xh) and store.xorb(xh) is not None and not store.has_xorb(bytes(32))
    assert store.xorb(bytes(32)) is None and store.file(bytes(32)) is None
    assert store.file(f.hash) == f and store.file_by_sha256(f.sha256) == f
    assert store.file_hashes([f.sha256, "0" * 64, f.sha256]) == {f.sha256: hash_to_str(f.hash)}
    first_chunk = store.xorb(xh).hashes[0]  # type: ignore[union-attr]
    assert store.file_with_chunk(first_chunk) == (f, xh) and store.file_with_chunk(bytes(32)) is None
    assert b"".join(store.chunk_data(f.terms)) == data
    assert _counts(db) == {"xorbs": 1, "files": 1, "dedup_chunks": 1}
    assert set(TABLES) <= set(db.tables())
    assert not (tmp_path / "data" / "xet" / "index.sqlite").exists()  # nothing beside the hub's database


def _legacy_folder(tmp_path: Path) -> tuple[Path, XetFile, bytes]:
    """A data folder as older hubs left it: xorb files and ``xet/index.sqlite`` holding the index."""
    data = tmp_path / "old"
    old_db = SqliteDb(tmp_path / "old-index.sqlite", SCHEMA)
    f, content = _stored_file(XetStore(data, tmp_path / "tmp", old_db))
    old_db.close()
    os.replace(tmp_path / "old-index.sqlite", data / "xet" / "index.sqlite")
    return data, f, content


def test_an_old_index_sqlite_is_imported_once(db: Database, tmp_path: Path) -> None:
    data, f, content = _legacy_folder(tmp_path)
    legacy, kept = data / "xet" / "index.sqlite", data / "xet" / "index.sqlite.imported"
    store = XetStore(data, tmp_path / "tmp", db)
    assert store.file(f.hash) == f and b"".join(store.chunk_data(f.terms)) == content
    assert store.file_with_chunk(store.xorb(f.terms[0].xorb).hashes[0]) == (f, f.terms[0].xorb)  # type: ignore[union-attr]
    assert not legacy.exists() and kept.is_file()  # later starts skip it; the file stays as a backup
    assert _counts(db) == {"xorbs": 1, "files": 1, "dedup_chunks": 1}

    shutil.copy(kept, legacy)  # imported again (a crash before the rename): no duplicate, no error
    assert import_legacy_index(data / "xet", db) == 3 and _counts(db) == {"xorbs": 1, "files": 1, "dedup_chunks": 1}
    assert not legacy.exists() and import_legacy_index(data / "xet", db) == 0


def test_an_older_index_without_some_tables_imports_what_it_has(db: Database, tmp_path: Path) -> None:
    data, f, _ = _legacy_folder(tmp_path)
    with sqlite3.connect(data / "xet" / "index.sqlite") as legacy:
        legacy.execute("DROP TABLE dedup_chunks")
    legacy.close()
    assert import_legacy_index(data / "xet", db) == 2
    assert XetStore(data, tmp_path / "tmp", db).file(f.hash) == f and _counts(db)["dedup_chunks"] == 0


# -- through a real hub and hf_xet ------------------------------------------------------------------


def _upload(hub: HubServer, repo_id: str) -> bytes:
    """Upload a file that goes through Xet (``*.bin`` is LFS by .gitattributes); its bytes."""
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo(repo_id)
    data = os.urandom(400_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo_id)
    assert any((hub.data_dir / "xet" / "xorbs").rglob("*")), "the upload must go through Xet"
    return data


def _assert_served(hub: HubServer, repo_id: str, data: bytes, cache: Path) -> None:
    auth = {"Authorization": f"Bearer {hub.admin_token}"}
    tree = httpx.get(f"{hub.endpoint}/api/models/{repo_id}/tree/main", headers=auth, timeout=30).json()
    assert [e.get("xetHash") is not None for e in tree if e["path"] == "w.bin"] == [True]
    plain = httpx.get(f"{hub.endpoint}/{repo_id}/resolve/main/w.bin", headers=auth, follow_redirects=True, timeout=60)
    assert plain.status_code == 200 and plain.content == data
    path = hf_hub_download(repo_id, "w.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=cache)
    assert Path(path).read_bytes() == data


def _make_legacy(data_dir: Path) -> None:
    """Move the Xet index out of ``hub.sqlite`` into ``xet/index.sqlite``, as older hubs kept it."""
    legacy = SqliteDb(data_dir / "xet" / "index.sqlite", SCHEMA)
    hub_db = sqlite3.connect(data_dir / "hub.sqlite")
    try:
        for table, columns in LEGACY_COLUMNS.items():
            rows = hub_db.execute(f"SELECT {columns} FROM {table}").fetchall()
            assert rows, table
            with legacy.tx() as conn:
                conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({','.join('?' * len(rows[0]))})", rows)
            hub_db.execute(f"DROP TABLE {table}")
        hub_db.commit()
    finally:
        hub_db.close()
        legacy.close()


def test_an_old_data_folder_still_serves_its_xet_files(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    hub = HubServer(data).start()
    try:
        content = _upload(hub, "admin/old")
    finally:
        hub.stop()
    _make_legacy(data)
    hub = HubServer(data).start()
    try:
        _assert_served(hub, "admin/old", content, tmp_path / "cache")
        assert (data / "xet" / "index.sqlite.imported").is_file() and not (data / "xet" / "index.sqlite").exists()
    finally:
        hub.stop()


@pytest.mark.parametrize("legacy", [False, True], ids=["index-in-hub-sqlite", "old-index-sqlite"])
def test_migrate_keeps_xet_files_downloadable(tmp_path: Path, pg: PgCluster, legacy: bool) -> None:
    data = tmp_path / "hub"
    hub = HubServer(data).start()
    try:
        content = _upload(hub, "admin/xet")
    finally:
        hub.stop()
    if legacy:
        _make_legacy(data)
    url = pg.new_database("xetmigrate")
    done = subprocess.run([sys.executable, "-m", "hubfs.cli", "migrate", "--from", str(data), "--to", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    copied = dict(re.findall(r"^(\w+): (\d+) rows$", done.stdout, re.MULTILINE))
    assert copied["files"] == "1" and int(copied["xorbs"]) >= 1
    target = open_database(url)
    try:
        assert _counts(target)["files"] == 1 and _counts(target)["xorbs"] >= 1
    finally:
        target.close()
    hub = HubServer(data).start()  # on PostgreSQL now (DATA/database.json)
    try:
        _assert_served(hub, "admin/xet", content, tmp_path / "cache")
    finally:
        hub.stop()


def _git(*args: str, cwd: Path | None = None, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_push_hook_finds_xet_files_in_postgresql(tmp_path: Path, pg: PgCluster) -> None:
    """The pre-receive hook opens the hub's database: a pushed LFS pointer to a file uploaded through
    Xet (and not committed) is accepted, its object known from the index; one to an unknown object is refused."""
    hub = HubServer(tmp_path / "hub", "--database-url", pg.new_database("hook")).start()
    try:
        _upload(hub, "admin/hook")
        api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
        content = os.urandom(300_000)
        before = {p.name for p in (hub.data_dir / "xet" / "xorbs").rglob("*")}
        api.preupload_lfs_files("admin/hook", [CommitOperationAdd("p.bin", content)])  # uploaded, not committed
        assert {p.name for p in (hub.data_dir / "xet" / "xorbs").rglob("*")} - before, "the upload must use Xet"
        assert not (hub.data_dir / "xet" / "index.sqlite").exists()
        work, home = tmp_path / "work", tmp_path / "home"  # no git-lfs config: pointers are plain files
        home.mkdir()
        remote = f"http://user:{hub.admin_token}@{hub.endpoint.split('://', 1)[1]}/admin/hook"
        assert _git("clone", "-q", remote, str(work), home=home).returncode == 0
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(content).hexdigest()}\n" \
                  f"size {len(content)}\n"
        (work / "p.bin").write_text(pointer)
        _git("add", "p.bin", cwd=work, home=home)
        _git("commit", "-qm", "pointer", cwd=work, home=home)
        pushed = _git("push", "origin", "main", cwd=work, home=home)
        assert pushed.returncode == 0, pushed.stderr
        auth = {"Authorization": f"Bearer {hub.admin_token}"}
        got = httpx.get(f"{hub.endpoint}/admin/hook/resolve/main/p.bin", headers=auth, follow_redirects=True,
                        timeout=60)
        assert got.status_code == 200 and got.content == content

        (work / "bad.bin").write_text(pointer.replace(hashlib.sha256(content).hexdigest(), "ab" * 32))
        _git("add", "bad.bin", cwd=work, home=home)
        _git("commit", "-qm", "bad", cwd=work, home=home)
        refused = _git("push", "origin", "main", cwd=work, home=home)
        assert refused.returncode != 0 and "was not uploaded to this hub" in refused.stderr
    finally:
        hub.stop()
