"""Integrity under concurrency, crashes and large bodies, on real server processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

MiB = 1024 * 1024


def _git_fsck(hub, repo_id: str) -> None:
    git_dir = hub.data_dir / "repos" / "model" / f"{repo_id}.git"
    out = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--full", "--no-dangling"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_concurrent_commits_to_one_branch_all_land(api: HfApi, repo_id: str, hub) -> None:
    def upload(i: int) -> str:
        return api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"c/{i}.txt", repo_id=repo_id).oid

    with ThreadPoolExecutor(8) as pool:
        shas = list(pool.map(upload, range(16)))
    assert len(set(shas)) == 16
    assert sorted(f for f in api.list_repo_files(repo_id) if f.startswith("c/")) == sorted(f"c/{i}.txt" for i in range(16))
    assert len(api.list_repo_commits(repo_id)) == 17
    _git_fsck(hub, repo_id)


def test_concurrent_commits_with_same_parent_exactly_one_wins(api: HfApi, repo_id: str) -> None:
    parent = api.model_info(repo_id).sha
    barrier = threading.Barrier(6)

    def commit(i: int) -> int:
        barrier.wait()
        try:
            api.create_commit(repo_id, [CommitOperationAdd(f"p{i}.txt", b"x")], commit_message=f"p{i}",
                              parent_commit=parent)
            return 200
        except HfHubHTTPError as exc:
            return exc.response.status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(commit, range(6)))
    assert sorted(statuses) == [200] + [412] * 5
    assert len([f for f in api.list_repo_files(repo_id) if f.startswith("p")]) == 1


def test_server_killed_mid_commit_restarts_at_old_commit(tmp_hub, tmp_path: Path) -> None:
    flag = tmp_path / "paused"
    hub = tmp_hub(env={"HUBFS_FAULT_PAUSE": f"before-ref-update:{flag}"})
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/crash")
    before = api.model_info("admin/crash").sha
    errors: list[Exception] = []

    def doomed() -> None:
        try:
            api.upload_file(path_or_fileobj=os.urandom(2 * MiB), path_in_repo="lost.bin", repo_id="admin/crash")
        except Exception as exc:  # noqa: BLE001 - the connection dies with the server
            errors.append(exc)

    t = threading.Thread(target=doomed)
    t.start()
    _wait_for(flag)
    hub.kill()
    t.join(60)
    assert errors, "the client must see the failure"
    again = tmp_hub(data=hub.data_dir)
    api2 = HfApi(endpoint=again.endpoint, token=again.admin_token)
    assert api2.model_info("admin/crash").sha == before
    assert "lost.bin" not in api2.list_repo_files("admin/crash")
    api2.upload_file(path_or_fileobj=b"after", path_in_repo="after.txt", repo_id="admin/crash")
    assert "after.txt" in api2.list_repo_files("admin/crash")
    _git_fsck(again, "admin/crash")


def test_server_killed_after_ref_update_reindexes_card_on_restart(tmp_hub, tmp_path: Path) -> None:
    flag = tmp_path / "paused"
    hub = tmp_hub(env={"HUBFS_FAULT_PAUSE": f"after-ref-update:{flag}"})
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/card")
    threading.Thread(target=_swallow, args=(api,), daemon=True).start()
    _wait_for(flag)
    hub.kill()
    again = tmp_hub(data=hub.data_dir)
    api2 = HfApi(endpoint=again.endpoint, token=again.admin_token)
    assert "README.md" in api2.list_repo_files("admin/card"), "the ref moved before the crash"
    assert [m.id for m in api2.list_models(filter="crashtag")] == ["admin/card"]


def _swallow(api: HfApi) -> None:
    try:
        api.upload_file(path_or_fileobj=b"---\ntags: [crashtag]\n---\n", path_in_repo="README.md", repo_id="admin/card")
    except Exception:  # noqa: BLE001 - the server is killed under this request
        pass


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _batch_upload_href(hub, repo_id: str, oid: str, size: int) -> str:
    resp = httpx.post(f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch",
                      json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]},
                      headers={"Authorization": f"Bearer {hub.admin_token}",
                               "Accept": "application/vnd.git-lfs+json"})
    resp.raise_for_status()
    return resp.json()["objects"][0]["actions"]["upload"]["href"]


def test_large_upload_and_download_stream_without_buffering(tmp_hub) -> None:
    hub = tmp_hub()
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/stream")
    size, piece = 384 * MiB, os.urandom(MiB)
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(piece)
    oid = digest.hexdigest()
    href = _batch_upload_href(hub, "admin/stream", oid, size)
    base = _peak_rss_kib(hub.proc.pid)

    def body():
        for _ in range(size // MiB):
            yield piece

    httpx.put(href, content=body(), headers={"Content-Length": str(size)}, timeout=120).raise_for_status()
    with httpx.Client(timeout=120) as client:
        payload = '{"key":"header","value":{"summary":"big"}}\n' + \
            f'{{"key":"lfsFile","value":{{"path":"big.bin","algo":"sha256","oid":"{oid}","size":{size}}}}}\n'
        client.post(f"{hub.endpoint}/api/models/admin/stream/commit/main", content=payload,
                    headers={"Authorization": f"Bearer {hub.admin_token}",
                             "Content-Type": "application/x-ndjson"}).raise_for_status()
        got = hashlib.sha256()
        with client.stream("GET", f"{hub.endpoint}/admin/stream/resolve/main/big.bin") as resp:
            assert resp.status_code == 200 and int(resp.headers["content-length"]) == size
            for chunk in resp.iter_bytes():
                got.update(chunk)
    assert got.hexdigest() == oid
    grown_mib = (_peak_rss_kib(hub.proc.pid) - base) / 1024
    assert grown_mib < 96, f"server peak RSS grew by {grown_mib:.0f} MiB for a {size // MiB} MiB transfer"


def test_aborted_upload_stores_nothing(tmp_hub) -> None:
    hub = tmp_hub()
    HfApi(endpoint=hub.endpoint, token=hub.admin_token).create_repo("admin/abort")
    data = os.urandom(8 * MiB)
    oid = hashlib.sha256(data).hexdigest()
    href = _batch_upload_href(hub, "admin/abort", oid, len(data))

    def half():
        yield data[: len(data) // 2]
        raise RuntimeError("client dies mid-upload")

    with pytest.raises(Exception):
        httpx.put(href, content=half(), headers={"Content-Length": str(len(data))}, timeout=30)
    time.sleep(0.5)
    assert not (hub.data_dir / "lfs" / oid[:2] / oid[2:4] / oid).exists()
    assert not [p for p in (hub.data_dir / "tmp").glob("upload-*")], "partial upload files are removed"
    assert _batch_upload_href(hub, "admin/abort", oid, len(data)), "the object is still wanted"


@pytest.mark.parametrize("zero_copy", [True, False], ids=["sendfile", "streamed"])
def test_large_file_ranges_are_exact_with_and_without_sendfile(tmp_hub, zero_copy: bool) -> None:
    hub = tmp_hub(env={} if zero_copy else {"HUBFS_NO_SENDFILE": "1"})
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/ranges")
    data = os.urandom(12 * MiB + 7)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/ranges")
    url = f"{hub.endpoint}/admin/ranges/resolve/main/w.bin"
    with httpx.Client(timeout=60) as client:
        assert client.get(url).content == data
        for header, expected in [("bytes=0-99", data[:100]), (f"bytes={MiB + 5}-{9 * MiB}", data[MiB + 5: 9 * MiB + 1]),
                                 (f"bytes=-{2 * MiB}", data[-2 * MiB:]), (f"bytes={10 * MiB}-", data[10 * MiB:])]:
            resp = client.get(url, headers={"Range": header})
            assert resp.status_code == 206 and resp.content == expected, header
        assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
