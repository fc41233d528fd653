"""HubClient.commit: unchanged adds are dropped, except where a delete in the same commit covers them."""

from __future__ import annotations

import pytest

from hubfs.client.api import HubClient
from hubfs.client.commit import Add, Delete


def _files(client: HubClient, repo_id: str) -> dict[str, int]:
    sha = client.resolve("model", repo_id, "main", refresh=True)
    return {e["path"]: e["size"] for e in client.list_tree("model", repo_id, sha, recursive=True)
            if e["type"] == "file"}


@pytest.mark.parametrize("folder", [True, False])
def test_a_folder_deleted_and_refilled_keeps_the_unchanged_file(hub, repo_id: str, folder: bool) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as c:
        c.commit("model", repo_id, [Add("d/x.txt", b"same"), Add("d/y.txt", b"gone")], "two files")
        c.commit("model", repo_id, [Delete("d", folder=folder), Add("d/x.txt", b"same")], "refill")
        files = _files(c, repo_id)
    assert files.get("d/x.txt") == 4
    assert "d/y.txt" not in files


def test_an_unchanged_add_alone_makes_no_commit(hub, repo_id: str) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as c:
        first = c.commit("model", repo_id, [Add("a.txt", b"one")], "a")
        again = c.commit("model", repo_id, [Add("a.txt", b"one")], "a again")
    assert again == first
