"""``hubfs.server.api_files``: the tree listing's LFS-only extension (``hubfs_lfs=all``)."""

from __future__ import annotations

import os
import uuid

import httpx

from hubfs.client.api import HubClient
from hubfs.client.commit import Add


def _repo(hub, private: bool = False) -> tuple[str, dict[str, bytes]]:
    files = {"a.txt": b"text", "top.bin": os.urandom(300), "d1/x/y.bin": os.urandom(400), "d2/t.txt": b"t"}
    repo_id = f"admin/tree-{uuid.uuid4().hex[:10]}"
    with HubClient(hub.endpoint, hub.admin_token) as client:
        client.create_repo("model", repo_id, private=private)
        client.commit("model", repo_id, [Add(p, data) for p, data in files.items()], "add")
    return repo_id, files


def test_the_lfs_only_listing_is_every_lfs_file_of_the_subtree_whatever_recursive_says(hub) -> None:
    repo_id, files = _repo(hub)
    auth = {"authorization": f"Bearer {hub.admin_token}"}
    for recursive in ("false", "true"):
        resp = httpx.get(f"{hub.endpoint}/api/models/{repo_id}/tree/main",
                         params={"recursive": recursive, "hubfs_lfs": "all"}, headers=auth)
        assert resp.status_code == 200 and resp.headers["x-hubfs-lfs"] == "all"
        assert sorted(e["path"] for e in resp.json()) == ["d1/x/y.bin", "top.bin"]
        assert all(e["lfs"]["size"] == len(files[e["path"]]) for e in resp.json())
    sub = httpx.get(f"{hub.endpoint}/api/models/{repo_id}/tree/main/d1", params={"hubfs_lfs": "all"}, headers=auth)
    assert [e["path"] for e in sub.json()] == ["d1/x/y.bin"]
    plain = httpx.get(f"{hub.endpoint}/api/models/{repo_id}/tree/main", headers=auth)
    assert "x-hubfs-lfs" not in plain.headers
    assert sorted(e["path"] for e in plain.json()) == [".gitattributes", "a.txt", "d1", "d2", "top.bin"]


def test_a_private_repo_stays_invisible_to_the_lfs_only_listing(hub) -> None:
    repo_id, _ = _repo(hub, private=True)
    missing = httpx.get(f"{hub.endpoint}/api/models/admin/no-such-{uuid.uuid4().hex[:8]}/tree/main",
                        params={"hubfs_lfs": "all"})
    resp = httpx.get(f"{hub.endpoint}/api/models/{repo_id}/tree/main", params={"hubfs_lfs": "all"})
    assert resp.status_code == missing.status_code and resp.status_code in (401, 404)
    assert "x-hubfs-lfs" not in resp.headers and "d1/x/y.bin" not in resp.text
