"""Large JSON answers of the hub go gzipped to clients that accept it (hubfs/server/http.py ``gzip_json``),
and as they are to everyone else, or with ``HUBFS_GZIP_JSON=0``."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer

from hubfs.client.api import HubClient
from hubfs.client.commit import Add
from hubfs.server.http import GZIP_MIN, _accepts_gzip


def _big_repo(endpoint: str, token: str) -> str:
    repo_id = f"admin/gz-{uuid.uuid4().hex[:8]}"
    with HubClient(endpoint, token) as client:
        client.create_repo("model", repo_id)
        client.commit("model", repo_id, [Add(f"docs/file{i:04d}.txt", b"%d\n" % i) for i in range(400)], "many")
    return repo_id


def _listing(endpoint: str, token: str, repo_id: str, accept: str) -> httpx.Response:
    return httpx.get(f"{endpoint}/api/models/{repo_id}/tree/main/docs", timeout=30,
                     headers={"authorization": f"Bearer {token}", "accept-encoding": accept})


def test_a_big_listing_is_gzipped_for_clients_that_accept_it(hub) -> None:
    repo_id = _big_repo(hub.endpoint, hub.admin_token)
    plain = _listing(hub.endpoint, hub.admin_token, repo_id, "identity")
    assert "content-encoding" not in plain.headers and len(plain.content) >= GZIP_MIN
    for accept in ("gzip", "gzip, deflate, br", "br;q=1, gzip;q=0.5", "*"):
        packed = _listing(hub.endpoint, hub.admin_token, repo_id, accept)
        assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
        assert packed.json() == plain.json() and len(packed.json()) == 400  # httpx decodes it
        assert packed.num_bytes_downloaded < len(plain.content) / 2
    refused = _listing(hub.endpoint, hub.admin_token, repo_id, "gzip;q=0")
    assert "content-encoding" not in refused.headers and refused.content == plain.content
    small = httpx.get(f"{hub.endpoint}/api/models/{repo_id}", headers={"authorization": f"Bearer {hub.admin_token}",
                                                                       "accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers or len(small.content) >= GZIP_MIN


def test_the_off_switch_sends_json_as_it_is(tmp_path: Path) -> None:
    server = HubServer(tmp_path / "hub", env={"HUBFS_GZIP_JSON": "0"}).start()
    try:
        repo_id = _big_repo(server.endpoint, server.admin_token)
        answer = _listing(server.endpoint, server.admin_token, repo_id, "gzip")
        assert "content-encoding" not in answer.headers and len(answer.json()) == 400
    finally:
        server.stop()


@pytest.mark.parametrize(("value", "ok"), [("gzip", True), ("GZIP", True), ("deflate, gzip", True), ("*", True),
                                           ("gzip;q=0", False), ("gzip; q=0.0", False), ("identity", False),
                                           ("", False), ("gzip;q=bad", False), ("br", False)])
def test_accepts_gzip(value: str, ok: bool) -> None:
    assert _accepts_gzip(value) is ok
