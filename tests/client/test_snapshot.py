"""Snapshots: one commit's listing as typed entries, lookups remembered per commit, branch refresh."""

from __future__ import annotations

import hashlib

import pytest

from hubfs.client.api import HubClient
from hubfs.client.snapshot import FileEntry, Snapshot
from hubfs.paths import RepoPath, RepoRef, RepoType


def test_repo_ref_names() -> None:
    model, data = RepoRef.of(None, "ns/name"), RepoRef.of("datasets", "ns/d")
    assert (model.type, model.url_prefix, model.api_path, model.folder) == (
        RepoType.MODEL, "ns/name", "/api/models/ns/name", "models--ns--name")
    assert (data.url_prefix, data.api_path, data.folder) == ("datasets/ns/d", "/api/datasets/ns/d", "datasets--ns--d")
    assert RepoPath.parse("hf://datasets/ns/d@dev/x.txt").repo == data
    assert {model, RepoRef(RepoType.MODEL, "ns/name")} == {model}  # hashable, compared by value


def test_file_entry_from_tree_and_info() -> None:
    lfs = FileEntry.from_tree({"type": "file", "path": "w.bin", "size": 5, "oid": "a" * 40,
                               "lfs": {"oid": "b" * 64, "size": 5, "pointerSize": 130}})
    assert (lfs.etag, lfs.parent, lfs.is_dir) == ("b" * 64, "", False)
    assert lfs.info("ns/n/w.bin")["lfs"] == {"sha256": "b" * 64, "size": 5, "pointer_size": 130}
    folder = FileEntry.from_tree({"type": "directory", "path": "a/b", "oid": "c" * 40})
    assert folder.is_dir and folder.parent == "a" and folder.info("x")["type"] == "directory"


class Calls:
    """Counts the listing requests a client makes."""

    def __init__(self, monkeypatch, client: HubClient) -> None:
        self.n = 0
        for name in ("list_tree", "paths_info"):
            original = getattr(client, name)

            def wrapper(*args, _original=original, **kwargs):
                self.n += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(client, name, wrapper)


@pytest.fixture
def filled(api, repo_id):
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"x" * 2048, path_in_repo="sub/w.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"deep", path_in_repo="sub/deeper/c.txt", repo_id=repo_id)
    return repo_id


def test_entries_match_the_official_client(hub, api, filled, monkeypatch) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as client:
        snap = client.snapshot(RepoRef.of("model", filled))
        assert snap.sha == api.repo_info(filled).sha
        official = {e.path: e for e in api.list_repo_tree(filled, recursive=True)}
        walked = {e.path: e for e in snap.walk("")}
        assert set(walked) == set(official)
        for path, e in walked.items():
            ref = official[path]
            if e.is_dir:
                assert not hasattr(ref, "size")
                continue
            assert (e.size, e.blob_id) == (ref.size, ref.blob_id)
            assert e.lfs_oid == (ref.lfs.sha256 if ref.lfs else None)
        w = walked["sub/w.bin"]
        assert w.lfs_oid in (None, hashlib.sha256(b"x" * 2048).hexdigest())


def test_lookups_are_remembered_per_commit(hub, filled, monkeypatch) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as client:
        calls = Calls(monkeypatch, client)
        snap = client.snapshot(RepoRef.of("model", filled))
        assert [e.path for e in snap.listdir("sub") or []] == ["sub/deeper", "sub/w.bin"]
        assert snap.entry("sub/w.bin") is not None and snap.entry("sub/missing") is None
        assert calls.n == 1  # the folder's listing answered both
        assert snap.listdir("a.txt") is None and snap.entry("a.txt").size == 5  # type: ignore[union-attr]
        calls.n = 0
        assert len(snap.walk("")) == 6 and calls.n == 1
        again = Snapshot(client, snap.repo, None, snap.sha)  # another view of the same commit
        assert [e.path for e in again.walk("sub/deeper")] == ["sub/deeper/c.txt"]
        assert again.listdir("sub/deeper") is not None and again.entry("missing.txt") is None
        assert calls.n == 1
        assert snap.walk("nothing/here") == [] and snap.listdir("nothing") is None


def test_refresh_re_resolves_the_branch(hub, api, filled) -> None:
    with HubClient(hub.endpoint, hub.admin_token, revision_ttl=600) as client:
        snap = client.snapshot(RepoRef.of("model", filled))
        assert snap.refresh() is snap  # nothing moved
        api.upload_file(path_or_fileobj=b"new", path_in_repo="b.txt", repo_id=filled)
        assert client.snapshot(snap.repo).sha == snap.sha  # still pinned
        fresh = snap.refresh()
        assert fresh.sha == api.repo_info(filled).sha != snap.sha
        assert fresh.entry("b.txt") is not None and snap.entry("b.txt") is None
        assert client.snapshot(snap.repo).sha == fresh.sha  # the pin moved too
        pinned = client.snapshot(snap.repo, snap.sha)
        assert pinned.refresh() is pinned and pinned.local_path("a.txt") is None  # online: no blob known
