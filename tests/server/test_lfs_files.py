"""list_lfs_files / permanently_delete_lfs_files through the official client: the bytes go, a commit
still pointing at a deleted object answers 404 for it, rewrite_history removes the pointers from
every commit, content another repo uploaded too survives until gc, which honours the deletion."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, constants

from hubfs.server.gc import collect


@pytest.fixture(autouse=True)
def _lfs_uploads(monkeypatch):
    """Upload through the LFS batch API (whole objects in the LFS store), not Xet."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def _lfs_path(data_dir: Path, oid: str) -> Path:
    return data_dir / "lfs" / oid[:2] / oid[2:4] / oid


def _resolve(endpoint: str, repo_id: str, path: str, token: str, rev: str = "main") -> httpx.Response:
    return httpx.get(f"{endpoint}/{repo_id}/resolve/{rev}/{path}", headers={"authorization": f"Bearer {token}"},
                     follow_redirects=True, timeout=30)


def test_list_and_delete_without_rewriting(hub, api, repo_id):
    a, b = os.urandom(20_000), os.urandom(30_000)
    api.upload_file(path_or_fileobj=a, path_in_repo="ckpt/a.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b, path_in_repo="b.bin", repo_id=repo_id)
    files = {f.filename: f for f in api.list_lfs_files(repo_id)}
    assert sorted(files) == ["b.bin", "ckpt/a.bin"]
    assert files["b.bin"].size == 30_000 and len(files["b.bin"].file_oid) == 64 and files["b.bin"].pushed_at
    head = api.model_info(repo_id).sha

    a_oid = files["ckpt/a.bin"].file_oid
    assert _lfs_path(hub.data_dir, a_oid).exists()
    api.permanently_delete_lfs_files(repo_id, [f for f in files.values() if f.filename.startswith("ckpt/")],
                                     rewrite_history=False)
    assert not _lfs_path(hub.data_dir, a_oid).exists(), "the bytes are gone"
    assert [f.filename for f in api.list_lfs_files(repo_id)] == ["b.bin"]
    assert api.model_info(repo_id).sha == head, "history untouched"
    r = _resolve(hub.endpoint, repo_id, "ckpt/a.bin", hub.admin_token)
    assert r.status_code == 404 and a_oid in r.headers["x-error-message"]
    assert _resolve(hub.endpoint, repo_id, "b.bin", hub.admin_token).content == b


def test_delete_rewriting_history(hub, api, repo_id):
    keep, drop = os.urandom(10_000), os.urandom(12_000)
    api.upload_file(path_or_fileobj=drop, path_in_repo="big/drop.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=keep, path_in_repo="keep.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"readme", path_in_repo="README.md", repo_id=repo_id)
    api.create_tag(repo_id, tag="v1", tag_message="annotated")
    before = [c.commit_id for c in api.list_repo_commits(repo_id)]
    victim = [f for f in api.list_lfs_files(repo_id) if f.filename == "big/drop.bin"]
    api.permanently_delete_lfs_files(repo_id, victim)  # rewrite_history=True, the client's default

    after = api.list_repo_commits(repo_id)
    assert len(after) == len(before) and after[0].commit_id != before[0]
    assert [c.title for c in after] == [c.title for c in api.list_repo_commits(repo_id, revision=before[0])]
    for c in after:
        assert not any(p.startswith("big/") for p in api.list_repo_files(repo_id, revision=c.commit_id))
    assert api.list_repo_files(repo_id, revision="v1") == api.list_repo_files(repo_id), "tags are rewritten too"
    assert _resolve(hub.endpoint, repo_id, "keep.bin", hub.admin_token).content == keep
    assert not _lfs_path(hub.data_dir, victim[0].file_oid).exists()
    assert [f.filename for f in api.list_lfs_files(repo_id)] == ["keep.bin"]


def test_shared_content_survives_until_gc_honours_the_deletion(tmp_hub):
    hub = tmp_hub("--gc-interval", "0")
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    data = os.urandom(25_000)
    one, two = f"admin/one-{uuid.uuid4().hex[:6]}", f"admin/two-{uuid.uuid4().hex[:6]}"
    for rid in (one, two):
        api.create_repo(rid)
        api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=rid)
    oid = next(iter(api.list_lfs_files(one))).file_oid
    api.permanently_delete_lfs_files(one, list(api.list_lfs_files(one)), rewrite_history=False)
    assert _lfs_path(hub.data_dir, oid).exists(), "the other repo still uses the bytes"
    assert _resolve(hub.endpoint, two, "w.bin", hub.admin_token).content == data
    assert _resolve(hub.endpoint, one, "w.bin", hub.admin_token).status_code == 404

    api.delete_repo(two)
    collect(hub.data_dir, 0)
    assert not _lfs_path(hub.data_dir, oid).exists(), "gc: a deleted object's old pointers keep nothing alive"
    assert api.list_repo_files(one) == [".gitattributes", "w.bin"], "the pointer is still in history"


def test_bad_deletions_change_nothing(hub, api, users, repo_id):
    api.upload_file(path_or_fileobj=os.urandom(5_000), path_in_repo="x.bin", repo_id=repo_id)
    url = f"{hub.endpoint}/api/models/{repo_id}/lfs-files/batch"
    auth = {"authorization": f"Bearer {hub.admin_token}"}
    for body, status in (({"deletions": {"sha": ["z" * 64]}}, 400), ({"deletions": {"sha": ["a" * 64]}}, 404),
                         ({"deletions": []}, 400)):
        r = httpx.post(url, json=body, headers=auth, timeout=30)
        assert r.status_code == status, r.text
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    with pytest.raises(Exception) as exc:
        list(bob.list_lfs_files(repo_id))
    assert exc.value.response.status_code == 403  # type: ignore[attr-defined]
    assert [f.filename for f in api.list_lfs_files(repo_id)] == ["x.bin"]


def test_gc_keeps_the_objects_of_canonical_repos(tmp_path):
    """Canonical repos (``gpt2``: no namespace) live one folder up (``repos/model/gpt2.git``); gc reads
    their pointers too, and honours their deletions."""
    from hubfs.lfs import LfsPointer
    from hubfs.server.git_store import Change
    from hubfs.server.hub import Caller, Hub

    hub = Hub(tmp_path / "data")
    hub.bootstrap()
    admin = Caller("admin", "write")
    repo = hub.create_repo(admin, "model", "gpt2", private=False)
    assert repo.repo_id == "/gpt2"
    kept, dropped = os.urandom(7_000), os.urandom(9_000)
    with hub.git.open(repo.type, repo.repo_id) as g:
        changes = []
        for name, data in (("kept.bin", kept), ("dropped.bin", dropped)):
            oid = hub.lfs.put_bytes(data)
            hub.meta.link_lfs(repo, oid, len(data))
            changes.append(Change("put", name, g.add_blob(LfsPointer(oid, len(data)).to_bytes())))
        hub.commit(admin, repo, g, "refs/heads/main", changes, summary="weights", description="", parent=None,
                   create_pr=False)
    kept_oid, dropped_oid = (hashlib.sha256(d).hexdigest() for d in (kept, dropped))
    for oid in (kept_oid, dropped_oid):
        old = time.time() - 7200
        os.utime(_lfs_path(hub.data_dir, oid), (old, old))
    collect(hub.data_dir, 60)
    assert _lfs_path(hub.data_dir, kept_oid).exists() and _lfs_path(hub.data_dir, dropped_oid).exists()

    from hubfs.server.lfs_tombstones import LfsDeletions
    LfsDeletions(hub.data_dir / "hub.sqlite").unlink(repo.id, repo.uid, [dropped_oid])  # as the API does, bytes kept
    collect(hub.data_dir, 60)
    assert _lfs_path(hub.data_dir, kept_oid).exists()
    assert not _lfs_path(hub.data_dir, dropped_oid).exists()
