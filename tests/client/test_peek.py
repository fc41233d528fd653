"""peek_file (hubfs/client/peek.py): pin, entry and edge bytes of a cold file in one round trip."""

from __future__ import annotations

import os
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hubfs.client import HubClient
from hubfs.client.fetch import RangeFetcher
from hubfs.client.peek import EDGE, peek_file

MiB = 1 << 20


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(4) as p:
        yield p


@pytest.fixture
def repo(api: HfApi):
    rid = f"admin/peek-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    files = {"data/table.parquet": random.Random(1).randbytes(12 * MiB + 7),  # LFS by size
             "config.json": b'{"a": 1}' * 20_000}  # regular, over 64 KiB
    for name, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=rid)
    return rid, files


def _peek(hub, pool, rid: str, path: str, client: HubClient | None = None):
    client = client or HubClient(hub.endpoint, hub.admin_token)
    return client, peek_file(client, RangeFetcher(client.transport), pool, "model", rid, "main", path)


def test_a_footer_format_brings_its_tail_and_pins_the_branch(hub, api, pool, repo) -> None:
    rid, files = repo
    data = files["data/table.parquet"]
    client, seen = _peek(hub, pool, rid, "data/table.parquet")
    head = api.repo_info(rid).sha
    assert seen is not None and seen.sha == head and client.pinned("model", rid) == head
    assert seen.entry["size"] == len(data) and seen.entry["lfs"]["oid"] == api.get_paths_info(
        rid, ["data/table.parquet"])[0].lfs.sha256
    assert seen.offset == len(data) - EDGE and seen.data == data[-EDGE:]


def test_other_files_bring_their_head(hub, pool, repo) -> None:
    rid, files = repo
    _, seen = _peek(hub, pool, rid, "config.json")
    assert seen is not None and not seen.entry.get("lfs")
    assert seen.offset == 0 and seen.data == files["config.json"][:EDGE]


def test_a_folder_or_a_missing_file_still_pins(hub, api, pool, repo) -> None:
    rid, _ = repo
    for path in ("data", "data/missing.bin"):
        client, seen = _peek(hub, pool, rid, path)
        assert seen is None and client.pinned("model", rid) == api.repo_info(rid).sha
    client, seen = _peek(hub, pool, f"admin/no-such-{uuid.uuid4().hex[:6]}", "x.bin")
    assert seen is None and client.pinned("model", "admin/no-such") is None


def test_a_commit_between_the_two_answers_is_not_trusted(hub, api, pool, repo, monkeypatch) -> None:
    rid, _ = repo
    client = HubClient(hub.endpoint, hub.admin_token)
    fetcher = RangeFetcher(client.transport)
    paths_info, fetch_edge = client.paths_info, fetcher.fetch_edge
    committed = threading.Event()

    def racing_paths_info(*args, **kwargs):
        answer = paths_info(*args, **kwargs)  # the file as it was ...
        api.upload_file(path_or_fileobj=os.urandom(100), path_in_repo="config.json", repo_id=rid)  # ... a commit
        committed.set()
        return answer

    def late_edge(*args, **kwargs):  # ... and the GET is answered after it
        assert committed.wait(30)
        return fetch_edge(*args, **kwargs)

    monkeypatch.setattr(client, "paths_info", racing_paths_info)
    monkeypatch.setattr(fetcher, "fetch_edge", late_edge)
    seen = peek_file(client, fetcher, pool, "model", rid, "main", "config.json")
    assert seen is None, "paths-info described the old file, the GET served the new one"
    assert client.pinned("model", rid) == api.repo_info(rid).sha


def test_the_filesystem_reads_a_cold_file_through_a_cdn_redirect(tmp_hub, tmp_path: Path) -> None:
    from hubfs.fs import HubFileSystem

    data_dir = tmp_path / "hub"
    cdn = tmp_hub(data=data_dir)
    hub = tmp_hub("--cdn-url", cdn.endpoint, data=data_dir)
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/cdn-peek")
    data = os.urandom(11 * MiB)
    api.upload_file(path_or_fileobj=data, path_in_repo="t.parquet", repo_id="admin/cdn-peek")
    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    info = fs.info("admin/cdn-peek/t.parquet")  # the hub's headers ride on the redirect
    assert info["size"] == len(data) and fs.client.pinned("model", "admin/cdn-peek") == api.repo_info(
        "admin/cdn-peek").sha
    assert not any("/resolve/main/" in url for url in fs.fetcher._final), "a branch URL's redirect is not reused"
    with fs.open("admin/cdn-peek/t.parquet") as f:
        f.seek(len(data) - 1000)
        assert f.read() == data[-1000:]
        f.seek(0)
        assert f.read() == data
