"""The hub on PostgreSQL, end to end: ``hubfs migrate`` from a one-machine hub keeps every repo, sha,
file and token; PostgreSQL going away answers clear 503s and the hub recovers by itself; the ref-update
lock excludes across processes (advisory lock, and the file lock without PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer
from huggingface_hub import CommitOperationAdd, HfApi
from pg_cluster import PgCluster


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args], check=False, capture_output=True, text=True,
                          timeout=120)


def _snapshot(api: HfApi, repos: list[tuple[str, str]]) -> dict[str, object]:
    """Every repo's branches, tags, commits and files (with content hashes) as the client sees them."""
    out: dict[str, object] = {}
    for repo_type, repo_id in repos:
        info = api.repo_info(repo_id, repo_type=repo_type)
        refs = api.list_repo_refs(repo_id, repo_type=repo_type)
        files = {}
        for f in api.list_repo_files(repo_id, repo_type=repo_type):
            url = f"{api.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}/resolve/{info.sha}/{f}"
            body = httpx.get(url, headers={"Authorization": f"Bearer {api.token}"}, follow_redirects=True, timeout=60)
            files[f] = hashlib.sha256(body.content).hexdigest()
        out[f"{repo_type}:{repo_id}"] = {
            "id": info.id, "_id": getattr(info, "_id", None), "sha": info.sha, "private": info.private,
            "branches": sorted((b.name, b.target_commit) for b in refs.branches),
            "tags": sorted((t.name, t.target_commit) for t in refs.tags),
            "commits": [c.commit_id for c in api.list_repo_commits(repo_id, repo_type=repo_type)], "files": files,
            "likes": info.likes,
        }
    return out


def test_migrate_keeps_every_repo_sha_file_and_token(tmp_path: Path, pg: PgCluster) -> None:
    data = tmp_path / "hub"
    hub = HubServer(data).start()
    try:
        admin = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
        alice_token = hub.add_user("alice", org="acme")
        alice = HfApi(endpoint=hub.endpoint, token=alice_token)
        repos = [("model", "admin/m1"), ("dataset", "acme/d1"), ("model", "alice/private")]
        admin.create_repo("admin/m1")
        alice.create_repo("acme/d1", repo_type="dataset")
        alice.create_repo("alice/private", private=True)
        big = os.urandom(300_000)
        admin.create_commit("admin/m1", [CommitOperationAdd("README.md", b"---\nlicense: mit\ntags: [b, a]\n---\nhi\n"),
                                         CommitOperationAdd("weights.bin", big)], commit_message="one")
        admin.create_commit("admin/m1", [CommitOperationAdd("x.txt", b"two")], commit_message="two")
        admin.create_branch("admin/m1", branch="dev")
        admin.create_tag("admin/m1", tag="v1")
        alice.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id="acme/d1", repo_type="dataset")
        alice.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id="alice/private")
        liked = httpx.post(f"{hub.endpoint}/api/models/admin/m1/like", headers={"Authorization": f"Bearer {alice_token}"})
        assert liked.json() == {"likes": 1}
        before = _snapshot(admin, repos[:2]) | _snapshot(alice, repos[2:])
    finally:
        hub.stop()

    url = pg.new_database("migrate")
    done = _cli("migrate", "--from", str(data), "--to", url)
    assert done.returncode == 0, done.stderr
    assert "repos: 3 rows" in done.stdout and "now uses it" in done.stdout and "tokens:" in done.stdout
    again = _cli("migrate", "--from", str(data), "--to", url)  # the folder already uses PostgreSQL
    assert again.returncode != 0 and "already uses" in again.stderr
    assert (data / "hub.sqlite").is_file()  # kept as a backup

    hub = HubServer(data).start()  # no flag: DATA/database.json says PostgreSQL
    try:
        health = httpx.get(f"{hub.endpoint}/api/health").json()
        assert health["checks"]["database"] == {"status": "ok", "kind": "postgresql"}
        admin = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
        alice = HfApi(endpoint=hub.endpoint, token=alice_token)  # tokens survive (only their hashes were copied)
        assert alice.whoami()["name"] == "alice"
        after = _snapshot(admin, repos[:2]) | _snapshot(alice, repos[2:])
        assert after == before
        assert [m.id for m in admin.list_models(filter="a", author="admin")] == ["admin/m1"]  # the card index came along
        new = alice.create_repo("alice/after-migration")  # identity sequences continue past the copied ids
        alice.upload_file(path_or_fileobj=b"new", path_in_repo="n.txt", repo_id=new.repo_id)
        assert alice.list_repo_files(new.repo_id) == [".gitattributes", "n.txt"]
    finally:
        hub.stop()


def test_migrate_refuses_a_target_that_holds_rows(tmp_path: Path, pg: PgCluster) -> None:
    url = pg.new_database("full")
    first = HubServer(tmp_path / "a", "--database-url", url).start()  # a hub already lives there
    first.stop()
    source = HubServer(tmp_path / "b").start()
    source.stop()
    refused = _cli("migrate", "--from", str(tmp_path / "b"), "--to", url)
    assert refused.returncode != 0 and "already holds rows" in refused.stderr and "--force" in refused.stderr
    assert not (tmp_path / "b" / "database.json").exists()
    forced = _cli("migrate", "--from", str(tmp_path / "b"), "--to", url, "--force")
    assert forced.returncode == 0, forced.stderr
    hub = HubServer(tmp_path / "b").start()
    try:
        assert HfApi(endpoint=hub.endpoint, token=hub.admin_token).whoami()["name"] == "admin"
    finally:
        hub.stop()


def test_database_down_answers_503_and_the_hub_recovers(tmp_path: Path) -> None:
    cluster = PgCluster().start()  # its own cluster: this test stops it
    try:
        hub = HubServer(tmp_path / "hub", "--database-url", cluster.url).start()
        try:
            api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
            api.create_repo("admin/kept")
            health = httpx.get(f"{hub.endpoint}/api/health", timeout=30)
            assert health.status_code == 200 and health.json()["checks"]["database"]["kind"] == "postgresql"

            cluster.stop()
            down = httpx.get(f"{hub.endpoint}/api/models/admin/kept", timeout=60,
                             headers={"Authorization": f"Bearer {hub.admin_token}"})
            assert down.status_code == 503 and down.headers["X-Error-Code"] == "ServiceUnavailable"
            assert "database" in down.json()["error"] and cluster.url not in down.text
            failed = httpx.get(f"{hub.endpoint}/api/health", timeout=60)
            assert failed.status_code == 503 and failed.json()["checks"]["database"] == {
                "status": "failed", "error": "ServiceUnavailableError", "kind": "postgresql"}
            assert str(cluster.port) not in failed.text

            cluster.start()  # same port, same data: the pool reconnects by itself
            deadline = time.time() + 60
            while time.time() < deadline:
                ok = httpx.get(f"{hub.endpoint}/api/health", timeout=60)
                if ok.status_code == 200:
                    break
                time.sleep(0.5)
            assert ok.status_code == 200 and ok.json()["checks"]["database"]["status"] == "ok"
            assert api.repo_info("admin/kept").id == "admin/kept"
            api.create_repo("admin/after-restart")
            assert {m.id for m in api.list_models(author="admin")} >= {"admin/kept", "admin/after-restart"}
        finally:
            hub.stop()
    finally:
        cluster.close()


LOCKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hubfs.server.ref_lock import RefLocks
    root, counter, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    session_lock = None
    if url:
        from hubfs.server.db import open_database
        session_lock = open_database(url).session_lock
    locks = RefLocks(root, session_lock)
    repo = root / "model" / "ns" / "name.git"
    for _ in range(30):
        with locks.hold(repo):
            value = int(counter.read_text())
            time.sleep(0.003)
            counter.write_text(str(value + 1))
""")


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_ref_lock_excludes_across_processes(tmp_path: Path, pg: PgCluster, backend: str) -> None:
    """Two processes each do 30 read-sleep-write increments of one file under the repo's lock: none is lost."""
    root = tmp_path / "repos"
    (root / "model" / "ns" / "name.git").mkdir(parents=True)
    counter = tmp_path / "counter"
    counter.write_text("0")
    url = pg.new_database("locks") if backend == "postgresql" else ""
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, str(root), str(counter), url]) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    assert counter.read_text() == "90"
    if backend == "file":
        assert (root / "model" / "ns" / "name.git.reflock").exists()  # beside the repo, not inside it


def test_serve_with_an_unreachable_database_fails_clearly_without_showing_the_password(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://hub:topsecret@127.0.0.1:{port}/meta"
    done = _cli("serve", "--data", str(tmp_path / "hub"), "--port", "0", "--database-url", url)
    assert done.returncode != 0
    assert "metadata database postgresql://hub@127.0.0.1" in done.stderr and "does not answer" in done.stderr
    assert "topsecret" not in done.stderr + done.stdout
    assert "topsecret" not in (tmp_path / "hub" / "database.json").read_text()
