"""git-remote-hf's LFS transfers against a real hub: prefetch (exactly the missing objects, pipelined batch
calls, Range resume, sha256 refusal, include/exclude, skip-smudge) and upload (basic, multipart, errors)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from lfs_fixtures import (
    clone_no_checkout,
    commit_files,
    git,
    git_env,
    head,
    lfs_gets,
    new_repo,
    pointer_of,
)
from lfs_fixtures import log_hub as start_log_hub
from proxy import Proxy

from git_remote_hf.lfs_store import LfsStore
from git_remote_hf.lfs_transfer import LfsTransferError, fetch_objects, prefetch, upload
from hubfs.client.api import HubClient
from hubfs.client.commit import LfsRef
from hubfs.lfs import LfsPointer

MiB = 1 << 20


@pytest.fixture(scope="module")
def log_hub(tmp_path_factory: pytest.TempPathFactory):
    with start_log_hub(tmp_path_factory.mktemp("lfs-hub")) as hub:
        yield hub


def _lfs_url(endpoint: str, repo_id: str) -> str:
    return f"{endpoint}/{repo_id}.git/info/lfs"


def _setup(tmp_path: Path, log_hub, files: dict[str, bytes]) -> tuple[dict[str, str], Path, str, str]:
    server, _, client = log_hub
    repo_id = new_repo(client)
    commit_files(client, repo_id, files)
    env = git_env(tmp_path, lfs=False, endpoint=server.endpoint, token=server.admin_token)
    git_dir = clone_no_checkout(env, server.endpoint, repo_id, tmp_path / "clone")
    return env, git_dir, repo_id, head(env, git_dir.parent)


@pytest.mark.parametrize("stream", [False, True], ids=["basic", "stream"])
def test_prefetch_gets_exactly_the_missing_objects_with_pipelined_batches(tmp_path: Path, log_hub, stream: bool,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    server, log, client = log_hub
    monkeypatch.setenv("GIT_REMOTE_HF_LFS_STREAM", "1" if stream else "0")
    rng = random.Random(1)
    files = {f"w/{i:03d}.bin": rng.randbytes(rng.randrange(100, 3000)) for i in range(150)}
    files["small.txt"] = b"not lfs\n"
    _, git_dir, repo_id, tip = _setup(tmp_path, log_hub, files)
    store = LfsStore(git_dir)
    have = [f"w/{i:03d}.bin" for i in range(0, 150, 7)]  # 22 already here
    for path in have:
        store.add_stream([files[path]])
    log.clear()
    prefetch(git_dir, client, _lfs_url(server.endpoint, repo_id), [tip], progress=True)
    progress = capsys.readouterr().err
    assert "Downloading LFS objects: 100% (128/128)" in progress and progress.endswith(", done.\n"), progress

    for path, data in files.items():
        if path.endswith(".bin"):
            assert store.path(pointer_of(data).oid).read_bytes() == data
    assert not store.has(pointer_of(files["small.txt"]).oid, len(files["small.txt"]))
    missing = {pointer_of(d).oid for p, d in files.items() if p.endswith(".bin") and p not in have}
    gets = lfs_gets(log)
    lines = log.lines()
    batches = [i for i, ln in enumerate(lines) if ln[0] == "POST" and ln[1].endswith("/objects/batch")]
    streams = log.matching("POST", r"/objects/stream$")
    if stream:  # one stream answer per batch of 100 carries its small objects (~200 KB): no GET at all
        assert gets == [] and len(streams) == 2, lines
        assert 1 <= len(batches) <= 2  # the first answer says "stream"; the second call may be in flight already
    else:
        assert streams == []
        assert sorted(g[1].split("/objects/")[1].split("?")[0] for g in gets) == sorted(missing)
        assert len(batches) == 2  # 128 objects: 100 + 28
        last_get = max(i for i, ln in enumerate(lines) if ln[0] == "GET")
        assert batches[1] < last_get, "the second batch call waited for every download of the first"
    assert not list((git_dir / "lfs" / "incomplete").glob("*"))

    log.clear()  # everything is here: no request at all
    prefetch(git_dir, client, _lfs_url(server.endpoint, repo_id), [tip])
    assert log.lines() == []


def test_interrupted_download_resumes_with_a_range(tmp_path: Path, log_hub) -> None:
    server, log, _ = log_hub
    data = random.Random(2).randbytes(32 * MiB)
    _, git_dir, repo_id, tip = _setup(tmp_path, log_hub, {"big.bin": data})
    pointer = pointer_of(data)
    port = int(server.endpoint.rsplit(":", 1)[1])
    proxy = Proxy(port, cut_after=16 * MiB + 65536, cuts=10)  # every connection dies half-way
    try:
        with HubClient(proxy.endpoint, server.admin_token, max_retries=0) as cut, \
                pytest.raises(LfsTransferError, match="rerun to resume"):
            prefetch(git_dir, cut, _lfs_url(proxy.endpoint, repo_id), [tip])
    finally:
        proxy.close()
    store = LfsStore(git_dir)
    assert not store.has(pointer.oid, pointer.size)
    partial = (git_dir / "lfs" / "incomplete" / pointer.oid).stat().st_size
    assert 8 * MiB <= partial <= 17 * MiB

    log.clear()
    with HubClient(server.endpoint, server.admin_token) as client:
        prefetch(git_dir, client, _lfs_url(server.endpoint, repo_id), [tip])
    assert store.path(pointer.oid).read_bytes() == data
    ranges = [g[2] for g in lfs_gets(log)]
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges]
    assert min(starts) == partial, ranges
    fetched = sum(int(r.split("-")[1]) + 1 - int(r.split("=")[1].split("-")[0]) for r in ranges)
    assert fetched <= 32 * MiB - partial + 1, ranges  # only what was missing
    assert fetched <= 0.55 * len(data)


@pytest.mark.parametrize("stream", [False, True], ids=["basic", "stream"])
def test_object_whose_bytes_do_not_match_is_refused(tmp_path: Path, log_hub, stream: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server, log, client = log_hub
    monkeypatch.setenv("GIT_REMOTE_HF_LFS_STREAM", "1" if stream else "0")
    good, bad = b"good content\n" * 100, b"soon corrupted\n" * 100
    _, git_dir, repo_id, tip = _setup(tmp_path, log_hub, {"good.bin": good, "bad.bin": bad})
    stored = server.data_dir / "lfs" / pointer_of(bad).oid[:2] / pointer_of(bad).oid[2:4] / pointer_of(bad).oid
    assert stored.exists(), "the hub's LFS layout changed; this test corrupts an object on its disk"
    stored.write_bytes(b"X" * len(bad))  # same size, other bytes: a fault no real server makes on demand
    log.clear()
    with pytest.raises(LfsTransferError, match=f"bad.bin.*{pointer_of(bad).oid}.*refused"):
        prefetch(git_dir, client, _lfs_url(server.endpoint, repo_id), [tip])
    assert len(log.matching("POST", r"/objects/stream$")) == (1 if stream else 0)
    store = LfsStore(git_dir)
    assert store.has(pointer_of(good).oid, len(good))
    assert not store.has(pointer_of(bad).oid, len(bad))
    assert not list(store.root.rglob(pointer_of(bad).oid))  # nothing kept, not even the partial file


def test_fetch_include_exclude_and_skip_smudge(tmp_path: Path, log_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    server, log, client = log_hub
    files = {"a/one.bin": b"1" * 2000, "a/two.bin": b"2" * 2000, "b/three.bin": b"3" * 2000,
             "b/deep/four.bin": b"4" * 2000}
    env, git_dir, repo_id, tip = _setup(tmp_path, log_hub, files)
    url = _lfs_url(server.endpoint, repo_id)
    store = LfsStore(git_dir)

    def stored() -> set[str]:
        return {p for p, d in files.items() if store.has(pointer_of(d).oid, len(d))}

    monkeypatch.setenv("GIT_LFS_SKIP_SMUDGE", "1")
    log.clear()
    prefetch(git_dir, client, url, [tip])
    assert stored() == set() and log.lines() == []
    monkeypatch.delenv("GIT_LFS_SKIP_SMUDGE")
    git(env, git_dir.parent, "config", "hf.lfs", "false")  # the opt-out: LFS is left to git-lfs
    prefetch(git_dir, client, url, [tip])
    assert stored() == set() and log.lines() == []
    git(env, git_dir.parent, "config", "--unset", "hf.lfs")

    git(env, git_dir.parent, "config", "lfs.fetchinclude", "a/*,b")
    git(env, git_dir.parent, "config", "lfs.fetchexclude", "*two*")
    prefetch(git_dir, client, url, [tip])
    assert stored() == {"a/one.bin", "b/three.bin", "b/deep/four.bin"}
    shutil.rmtree(store.objects)
    git(env, git_dir.parent, "config", "--unset", "lfs.fetchinclude")
    git(env, git_dir.parent, "config", "lfs.fetchexclude", "deep/")
    prefetch(git_dir, client, url, [tip])
    assert stored() == set(files) - {"b/deep/four.bin"}


def test_upload_basic_and_multipart_then_read_back(tmp_path: Path, log_hub) -> None:
    server, log, client = log_hub
    repo_id = new_repo(client)
    git_dir = tmp_path / "repo" / ".git"
    git_dir.mkdir(parents=True)
    store = LfsStore(git_dir)
    small = os.urandom(300_000)
    big = os.urandom(2 * MiB + 12345)  # over the hub's 1 MiB chunk: multipart
    pointers = [store.add_stream([small]), store.add_stream([big[:MiB], big[MiB:]])]
    log.clear()
    upload(git_dir, client, _lfs_url(server.endpoint, repo_id), pointers, "refs/heads/main")
    assert log.count(r"^PUT .*/parts/") == 3 and log.count(r"^POST .*/verify") == 2
    client.commit("model", repo_id, [LfsRef("s.bin", pointers[0].oid, pointers[0].size),
                                     LfsRef("b.bin", pointers[1].oid, pointers[1].size)], "lfs refs")
    for path, data in (("s.bin", small), ("b.bin", big)):
        resp = client.transport.request("GET", client.file_url("model", repo_id, "main", path))
        assert resp.content == data

    log.clear()  # the hub has them: one batch call, no upload
    upload(git_dir, client, _lfs_url(server.endpoint, repo_id), pointers, "refs/heads/main")
    assert [ln[0] for ln in log.lines()] == ["POST"]


def test_upload_failures_raise_lfs_transfer_error(tmp_path: Path, log_hub) -> None:
    server, _, client = log_hub
    repo_id = new_repo(client)
    git_dir = tmp_path / "repo" / ".git"
    git_dir.mkdir(parents=True)
    store = LfsStore(git_dir)
    url = _lfs_url(server.endpoint, repo_id)
    ghost = LfsPointer("ab" * 32, 123)
    with pytest.raises(LfsTransferError, match=f"{ghost.oid}.*not in"):
        upload(git_dir, client, url, [ghost], "refs/heads/main")
    pointer = store.add_stream([b"x" * 5000])
    anon = HubClient(server.endpoint, False)
    with anon, pytest.raises(LfsTransferError, match="LFS upload .* failed"):
        upload(git_dir, anon, url, [pointer], "refs/heads/main")
    with pytest.raises(LfsTransferError, match="failed"):
        upload(git_dir, client, _lfs_url(server.endpoint, "admin/no-such-repo"), [pointer], None)


def test_fetch_objects_reports_objects_the_server_lacks(tmp_path: Path, log_hub) -> None:
    server, _, client = log_hub
    repo_id = new_repo(client)
    git_dir = tmp_path / "repo" / ".git"
    git_dir.mkdir(parents=True)
    ghost = LfsPointer("cd" * 32, 77)
    with pytest.raises(LfsTransferError, match=f"weights.bin \\(oid {ghost.oid}, 77 bytes\\)"):
        fetch_objects(git_dir, client, _lfs_url(server.endpoint, repo_id), [ghost], names={ghost.oid: "weights.bin"})
    assert not LfsStore(git_dir).has(ghost.oid, 77)


def test_a_stream_cut_short_keeps_what_arrived_and_fetches_the_rest_one_by_one(tmp_path: Path, log_hub) -> None:
    server, log, _ = log_hub
    rng = random.Random(5)
    files = {f"w/{i}.bin": rng.randbytes(512 * 1024) for i in range(6)}  # 3 MiB: one stream
    _, git_dir, repo_id, tip = _setup(tmp_path, log_hub, files)
    port = int(server.endpoint.rsplit(":", 1)[1])
    # connection 1 carries the batch call (small answers); connection 2, the stream, dies 1.3 MiB in
    proxy = Proxy(port, cut_after=1300 * 1024, cuts=2)
    log.clear()
    try:
        with HubClient(proxy.endpoint, server.admin_token, max_retries=0) as cut:
            prefetch(git_dir, cut, _lfs_url(proxy.endpoint, repo_id), [tip])
    finally:
        proxy.close()
    store = LfsStore(git_dir)
    for data in files.values():
        assert store.path(pointer_of(data).oid).read_bytes() == data
    assert len(log.matching("POST", r"/objects/stream$")) == 1
    fetched_one_by_one = {g[1].split("/objects/")[1].split("?")[0] for g in lfs_gets(log)}
    assert fetched_one_by_one == {pointer_of(files[f"w/{i}.bin"]).oid for i in range(2, 6)}  # 0 and 1 arrived whole
    assert not list((git_dir / "lfs" / "incomplete").glob("*"))


def test_objects_too_big_for_a_stream_take_their_own_ranged_gets(tmp_path: Path, log_hub) -> None:
    from git_remote_hf.lfs_transfer import STREAM_MAX

    server, log, client = log_hub
    rng = random.Random(6)
    big = rng.randbytes(STREAM_MAX + 1)
    files = {"big.bin": big, **{f"s{i}.bin": rng.randbytes(3000) for i in range(5)}}
    _, git_dir, repo_id, tip = _setup(tmp_path, log_hub, files)
    log.clear()
    prefetch(git_dir, client, _lfs_url(server.endpoint, repo_id), [tip])
    store = LfsStore(git_dir)
    for data in files.values():
        assert store.path(pointer_of(data).oid).read_bytes() == data
    assert len(log.matching("POST", r"/objects/stream$")) == 1
    assert {g[1].split("/objects/")[1].split("?")[0] for g in lfs_gets(log)} == {pointer_of(big).oid}


def test_a_background_fetch_that_streams_skips_the_later_batch_calls(tmp_path: Path, log_hub) -> None:
    from git_remote_hf.lfs_transfer import BackgroundFetch

    server, log, client = log_hub
    rng = random.Random(7)
    files = {f"w/{i:03d}.bin": rng.randbytes(2000 + i) for i in range(450)}  # 5 batches' worth
    _, git_dir, repo_id, _ = _setup(tmp_path, log_hub, files)
    log.clear()
    fetch = BackgroundFetch(git_dir, client, _lfs_url(server.endpoint, repo_id), {})
    try:
        fetch.submit(pointer_of(d) for d in files.values())
        fetch.drain()
    finally:
        fetch.close()
    assert fetch.failed == {}
    store = LfsStore(git_dir)
    for data in files.values():
        assert store.path(pointer_of(data).oid).read_bytes() == data
    assert len(log.matching("POST", r"/objects/batch$")) <= 2  # the first answer, and one already in flight
    # the first two batches' objects in a stream each, the other 250 together (~0.6 MB: one stream)
    assert len(log.matching("POST", r"/objects/stream$")) <= 3 and lfs_gets(log) == []
