"""Disk reclaim: temporaries of killed uploads, `hubfs gc`, and multipart staging, on real server processes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from hubfs.fs import HubFileSystem

MiB = 1024 * 1024
HOUR = 3600


def _auth(hub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.admin_token}"}


def _batch(hub, repo_id: str, oid: str, size: int, transfers: list[str] | None = None) -> dict:
    resp = httpx.post(f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch",
                      json={"operation": "upload", "transfers": transfers or ["basic"],
                            "objects": [{"oid": oid, "size": size}]},
                      headers={**_auth(hub), "Accept": "application/vnd.git-lfs+json"})
    resp.raise_for_status()
    return resp.json()["objects"][0]


def _upload_lfs(hub, repo_id: str, data: bytes) -> str:
    """Upload an LFS object through the batch API (not committed); returns its oid."""
    oid = hashlib.sha256(data).hexdigest()
    href = _batch(hub, repo_id, oid, len(data))["actions"]["upload"]["href"]
    httpx.put(href, content=data, timeout=60).raise_for_status()
    return oid


def _gc(hub, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "hubfs.cli", "gc", "--data", str(hub.data_dir), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _git_dir(hub, repo_id: str) -> Path:
    return hub.data_dir / "repos" / "model" / f"{repo_id}.git"


def _loose(git_dir: Path) -> list[Path]:
    return [p for p in (git_dir / "objects").glob("[0-9a-f][0-9a-f]/*") if p.is_file()]


def _lfs_path(hub, oid: str) -> Path:
    return hub.data_dir / "lfs" / oid[:2] / oid[2:4] / oid


def _age(paths: list[Path], seconds: float) -> None:
    old = time.time() - seconds
    for p in paths:
        os.utime(p, (old, old))


def _git_fsck(git_dir: Path) -> None:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--full", "--no-dangling"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _ndjson(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"{what} never happened"
        time.sleep(0.05)


# -- temporaries ---------------------------------------------------------------------------------


def test_killed_lfs_put_leaves_no_temporary_after_restart(tmp_hub) -> None:
    hub = tmp_hub()
    HfApi(endpoint=hub.endpoint, token=hub.admin_token).create_repo("admin/killed")
    size = 32 * MiB
    oid = hashlib.sha256(b"never completed").hexdigest()  # never reached: the server dies first
    href = _batch(hub, "admin/killed", oid, size)["actions"]["upload"]["href"]
    release = threading.Event()

    def body():
        for _ in range(4):
            yield os.urandom(MiB)
        release.wait(60)
        yield b""

    def put() -> None:
        try:
            httpx.put(href, content=body(), headers={"Content-Length": str(size)}, timeout=60)
        except Exception:  # noqa: BLE001 - the server is killed under this request
            pass

    t = threading.Thread(target=put, daemon=True)
    t.start()
    tmp = hub.data_dir / "tmp"
    _wait_for(lambda: any(p.stat().st_size >= MiB for p in tmp.glob("upload-*")), what="a partial upload on disk")
    hub.kill()
    release.set()
    t.join(30)
    assert list(tmp.glob("upload-*")), "the killed upload's temporary is there before the restart"
    again = tmp_hub(data=hub.data_dir)
    assert not list(tmp.glob("upload-*")), "restart removes temporaries of dead uploads"
    # a live upload's temporary is never taken: upload again, completely, through the restarted hub
    data = os.urandom(2 * MiB)
    oid = _upload_lfs(again, "admin/killed", data)
    assert _lfs_path(again, oid).read_bytes() == data


def test_multipart_batch_creates_nothing_until_parts_arrive(tmp_hub) -> None:
    hub = tmp_hub("--multipart-chunk-size", "1MiB")
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/parts")
    staging = hub.data_dir / "tmp" / "multipart"
    for _ in range(5):  # batch calls that are never followed by an upload
        obj = _batch(hub, "admin/parts", hashlib.sha256(uuid.uuid4().bytes).hexdigest(), 50 * MiB,
                     ["basic", "multipart"])
        assert "chunk_size" in obj["actions"]["upload"]["header"]
    assert not staging.exists() or not list(staging.iterdir()), "batch calls must not create staging folders"
    # a real multipart upload still works (the folder is created by its first part and removed at the end)
    data = os.urandom(3 * MiB + 123)
    with HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True) as fs:
        fs.pipe("admin/parts/multi.bin", data)  # hubfs's client: LFS batch, multipart offered and taken
    path = hf_hub_download("admin/parts", "multi.bin", endpoint=hub.endpoint, token=hub.admin_token,
                           cache_dir=str(hub.data_dir.parent / "cache"))
    assert Path(path).read_bytes() == data
    assert not list(staging.iterdir())


def test_stale_multipart_staging_is_removed_on_restart(tmp_hub) -> None:
    hub = tmp_hub()
    staging = hub.data_dir / "tmp" / "multipart"
    stale, fresh = staging / str(uuid.uuid4()), staging / str(uuid.uuid4())
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "1.part").write_bytes(b"x" * 1000)
    _age([stale / "1.part", stale], 25 * HOUR)  # older than the signed part URLs' 24 h lifetime
    _age([fresh / "1.part", fresh], 23 * HOUR)  # its URLs may still be in use
    hub.stop()
    tmp_hub(data=hub.data_dir)
    assert not stale.exists()
    assert (fresh / "1.part").exists()


# -- hubfs gc ------------------------------------------------------------------------------------


def _refused_commit(hub, repo_id: str, files: int) -> None:
    """A commit whose last line is malformed: its objects are written, then the commit is refused."""
    lines = [{"key": "header", "value": {"summary": "doomed"}}]
    lines += [{"key": "file", "value": {"path": f"junk/{i}.txt", "encoding": "base64",
                                        "content": base64.b64encode(os.urandom(64)).decode()}} for i in range(files)]
    lines.append({"key": "file", "value": {"path": "junk/big.bin", "encoding": "base64",  # LFS-tracked: to LFS
                                           "content": base64.b64encode(os.urandom(200_000)).decode()}})
    resp = httpx.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main",
                      content=_ndjson(lines) + b'{"key": "file", "value": 5}\n',
                      headers={**_auth(hub), "Content-Type": "application/x-ndjson"}, timeout=120)
    assert resp.status_code == 400, resp.text


def test_gc_removes_garbage_and_keeps_every_ref_and_pending_upload(tmp_hub, tmp_path: Path) -> None:
    hub = tmp_hub()
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    rid = "admin/garbage"
    api.create_repo(rid)
    files = {"README.md": b"# kept\n", "weights.bin": os.urandom(300_000), "dir/a.txt": b"a" * 100}
    for path, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=rid)
    api.create_branch(rid, branch="dev")
    dev_files = {"dev.bin": os.urandom(150_000)}
    api.upload_file(path_or_fileobj=dev_files["dev.bin"], path_in_repo="dev.bin", repo_id=rid, revision="dev")
    api.create_tag(rid, tag="v1", revision="main", tag_message="release")
    api.delete_file("dir/a.txt", rid)  # main moves on; the tag still holds dir/a.txt
    expected = {"main": {k: v for k, v in files.items() if k != "dir/a.txt"},
                "dev": {**files, **dev_files}, "v1": files}

    git_dir = _git_dir(hub, rid)
    lfs_before = set((hub.data_dir / "lfs").glob("*/*/*"))
    loose_before = len(_loose(git_dir))
    _refused_commit(hub, rid, files=400)
    assert len(_loose(git_dir)) >= loose_before + 400
    orphans = set((hub.data_dir / "lfs").glob("*/*/*")) - lfs_before
    assert len(orphans) == 1, "the refused commit's LFS-tracked file was stored"
    pending = os.urandom(120_000)
    pending_oid = _upload_lfs(hub, rid, pending)  # uploaded, not yet committed

    # within the grace period nothing goes
    _gc(hub, "--grace", "1h")
    assert len(_loose(git_dir)) >= loose_before + 400
    assert all(p.exists() for p in orphans)

    # everything ages past the grace period, except the pending upload (just uploaded)
    _age(_loose(git_dir), 2 * HOUR)
    _age([p for p in (hub.data_dir / "lfs").glob("*/*/*") if p.name != pending_oid], 2 * HOUR)
    out = _gc(hub, "--grace", "1h")
    assert "git objects" in out and "LFS objects:      1 removed" in out, out
    assert len(_loose(git_dir)) <= loose_before, "the refused commit's loose objects are pruned"
    assert not any(p.exists() for p in orphans), "the unreferenced LFS object is removed"
    assert _lfs_path(hub, pending_oid).exists(), "an upload within the grace period survives"
    _git_fsck(git_dir)

    # the running server serves every file of every ref, byte-identical
    for rev, content in expected.items():
        for path, data in content.items():
            got = hf_hub_download(rid, path, revision=rev, endpoint=hub.endpoint, token=hub.admin_token,
                                  cache_dir=str(tmp_path / f"cache-{rev}"))
            assert Path(got).read_bytes() == data, (rev, path)
    # and the pending upload can still be committed without uploading it again
    api.create_commit(rid, [CommitOperationAdd("pending.bin", pending)], commit_message="late")
    got = hf_hub_download(rid, "pending.bin", endpoint=hub.endpoint, token=hub.admin_token,
                          cache_dir=str(tmp_path / "cache-late"))
    assert Path(got).read_bytes() == pending

    # a second run at grace 0 finds nothing referenced to remove
    _gc(hub, "--grace", "0")
    assert _lfs_path(hub, pending_oid).exists()
    _git_fsck(git_dir)


def _links(db: Path, oid: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM lfs_links WHERE oid=?", (oid,)).fetchone()[0])


def test_gc_removes_unlinked_lfs_object_links(tmp_hub) -> None:
    """A removed object's links go too: it is not "already uploaded" any more, and must be sent again."""
    hub = tmp_hub()
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/relink")
    data = os.urandom(50_000)
    oid = _upload_lfs(hub, "admin/relink", data)
    db = hub.data_dir / "hub.sqlite"
    assert _links(db, oid) == 1
    _gc(hub, "--grace", "0")
    assert not _lfs_path(hub, oid).exists()
    assert _links(db, oid) == 0
    assert "actions" in _batch(hub, "admin/relink", oid, len(data)), "the upload is asked for again"
    api.upload_file(path_or_fileobj=data, path_in_repo="again.bin", repo_id="admin/relink")  # through Xet
    assert _links(db, oid) == 1
    assert httpx.get(f"{hub.endpoint}/admin/relink/resolve/main/again.bin").content == data


def test_gc_waits_for_a_commit_in_flight(tmp_hub, tmp_path: Path) -> None:
    """gc takes the reclaim lock exclusively: a REST commit paused before its ref update holds it shared."""
    flag = tmp_path / "paused"
    hub = tmp_hub(env={"HUBFS_FAULT_PAUSE": f"before-ref-update:{flag}"})
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/inflight")
    data = os.urandom(40_000)
    oid = _upload_lfs(hub, "admin/inflight", data)
    _age([_lfs_path(hub, oid)], 2 * HOUR)
    payload = _ndjson([{"key": "header", "value": {"summary": "reuse"}},
                       {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": oid,
                                                    "size": len(data)}}])

    def commit() -> None:
        try:
            httpx.post(f"{hub.endpoint}/api/models/admin/inflight/commit/main", content=payload,
                       headers={**_auth(hub), "Content-Type": "application/x-ndjson"}, timeout=60)
        except httpx.HTTPError:
            pass  # the server is killed under this request

    threading.Thread(target=commit, daemon=True).start()
    _wait_for(flag.exists, what="the commit reaching its ref update")
    gc = subprocess.Popen([sys.executable, "-m", "hubfs.cli", "gc", "--data", str(hub.data_dir), "--grace", "1h"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert gc.poll() is None, "gc must wait while a commit that references the object is in flight"
        assert _lfs_path(hub, oid).exists()
    finally:
        hub.kill()  # the commit dies unapplied: now the object is garbage
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, out + err
    assert not _lfs_path(hub, oid).exists()


def test_serve_runs_gc_periodically(tmp_hub) -> None:
    hub = tmp_hub("--gc-interval", "1", "--gc-grace", "1h")
    HfApi(endpoint=hub.endpoint, token=hub.admin_token).create_repo("admin/periodic")
    fresh = _upload_lfs(hub, "admin/periodic", os.urandom(30_000))
    old = _upload_lfs(hub, "admin/periodic", os.urandom(40_000))
    _age([_lfs_path(hub, old)], 2 * HOUR)
    _wait_for(lambda: not _lfs_path(hub, old).exists(), what="the background gc removing an old orphan")
    assert _lfs_path(hub, fresh).exists()
    _wait_for(lambda: "gc: removed" in hub.log_path.read_text(), what="the gc run being logged")
