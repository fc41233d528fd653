"""FileReader (hubfs/client/reader.py) used directly, without fsspec; requests counted by the hub itself."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from hub_server import HubServer
from reader_targets import target_of

from hubfs.client import HubClient
from hubfs.client.blocks import BlockCache
from hubfs.client.cache import HubCache
from hubfs.client.download import Downloader
from hubfs.client.fetch import RangeFetcher
from hubfs.client.reader import FileReader, ReaderDeps, probe
from hubfs.errors import OfflineModeError

MiB = 1 << 20


class Log:
    """The requests the hub appended to ``HUBFS_REQUEST_LOG``: (method, path, range, auth)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def clear(self) -> None:
        self.path.write_text("")

    def gets(self) -> list[tuple[str, ...]]:
        return [tuple(line.split(" ")) for line in self.path.read_text().splitlines() if line.startswith("GET")]

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[HubServer, Log, HubClient, str, str, dict[str, bytes]]]:
    """A private logging hub with one repo (a regular file, a small and a 12 MiB LFS file); yields
    (server, log, client, repo id, commit, content)."""
    root = tmp_path_factory.mktemp("reader")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    client = HubClient(server.endpoint, server.admin_token)
    rid = f"admin/reader-{uuid.uuid4().hex[:8]}"
    client.create_repo("model", rid)
    rng = random.Random(9)
    content = {"a.txt": b"hello reader\n" * 100, "w.safetensors": rng.randbytes(300_000),
               "big.bin": rng.randbytes(12 * MiB + 5)}
    from hubfs.client.commit import Add

    client.commit("model", rid, [Add(p, c) for p, c in content.items()], message="content")
    sha = client.resolve("model", rid)
    yield server, Log(log), client, rid, sha, content
    client.close()
    server.stop()


_target = target_of


def _deps(client: HubClient, cache: Path, *, offline: bool = False, blocks: bool = False) -> ReaderDeps:
    pool = ThreadPoolExecutor(4)
    return ReaderDeps(RangeFetcher(client.transport), pool, pool,
                      BlockCache(HubCache(cache)) if blocks else None, HubCache(cache), offline)


def test_reads_without_fsspec(world, tmp_path) -> None:
    _, _, client, rid, sha, content = world
    target = _target(client, rid, sha, "big.bin")
    data = content["big.bin"]
    with FileReader(target, _deps(client, tmp_path, blocks=True)) as reader:
        assert not reader.local
        assert reader.read(0, 1000) == data[:1000]
        assert reader.read(1000, 5 * MiB) == data[1000:1000 + 5 * MiB]  # sequential: the stream
        buf = bytearray(4096)
        assert reader.readinto(7 * MiB, memoryview(buf)) == 4096 and bytes(buf) == data[7 * MiB:7 * MiB + 4096]
        assert reader.read(len(data) - 3, 100) == data[-3:]
        assert reader.read(len(data), 10) == b""
    sized, (at, first) = probe(_deps(client, tmp_path), replace(target, size=None, lfs_oid=""))
    assert (sized.size, sized.lfs_oid, at, first) == (len(data), target.lfs_oid, 0, data[:64 * 1024])


@pytest.mark.parametrize("path", ["a.txt", "w.safetensors", "big.bin"])
def test_a_cached_blob_is_read_from_disk_with_no_request(world, tmp_path, path) -> None:
    _, log, client, rid, sha, content = world
    Downloader(client, HubCache(tmp_path), progress=False).download("model", rid, sha, files=[path])
    target, data = _target(client, rid, sha, path), content[path]
    log.clear()
    with FileReader(target, _deps(client, tmp_path, blocks=True)) as reader:
        assert reader.local
        assert reader.read(0, len(data) + 10) == data
        assert reader.read(5, 7) == data[5:12]
        buf = bytearray(100)
        assert reader.readinto(len(data) - 50, memoryview(buf)) == 50 and bytes(buf[:50]) == data[-50:]
    assert log.lines() == []


def test_a_truncated_cached_blob_is_not_used(world, tmp_path) -> None:
    _, log, client, rid, sha, content = world
    target, data = _target(client, rid, sha, "w.safetensors"), content["w.safetensors"]
    blob = HubCache(tmp_path).blob("model", rid, target.etag)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data[:1000])  # a download cut short, named as if complete
    log.clear()
    with FileReader(target, _deps(client, tmp_path)) as reader:
        assert not reader.local
        assert reader.read(500, 100_000) == data[500:100_500]
    assert len(log.gets()) == 1, "fetched again from the hub"


def test_two_threads_reading_one_range_make_one_request(world, tmp_path, monkeypatch) -> None:
    _, log, client, rid, sha, content = world
    deps = _deps(client, tmp_path)
    fetch_into = deps.fetcher.fetch_into

    def slow(*args, **kwargs):
        time.sleep(0.3)  # both readers arrive while the first fetch is in flight
        return fetch_into(*args, **kwargs)

    monkeypatch.setattr(deps.fetcher, "fetch_into", slow)
    target, data = _target(client, rid, sha, "big.bin"), content["big.bin"]
    readers = [FileReader(target, deps), FileReader(target, deps)]  # two opens of one file, say
    start = threading.Barrier(2)
    got: list[bytes] = []

    def read(reader: FileReader) -> None:
        start.wait()
        got.append(reader.read(3 * MiB, 200_000))

    log.clear()
    threads = [threading.Thread(target=read, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [data[3 * MiB:3 * MiB + 200_000]] * 2
    assert len(log.gets()) == 1
    for r in readers:
        r.close()


def test_offline_reads_a_cached_blob_and_sends_nothing_else(world, tmp_path) -> None:
    _, log, client, rid, sha, content = world
    Downloader(client, HubCache(tmp_path), progress=False).download("model", rid, sha, files=["a.txt"])
    cached, missing = _target(client, rid, sha, "a.txt"), _target(client, rid, sha, "w.safetensors")
    offline = HubClient(config=replace(client.config, offline=True))
    deps = _deps(offline, tmp_path, offline=True, blocks=True)
    log.clear()
    with FileReader(cached, deps) as reader:
        assert reader.read(0, 1 << 20) == content["a.txt"]
    with FileReader(missing, deps) as reader, pytest.raises(OfflineModeError, match="HF_HUB_OFFLINE"):
        reader.read(0, 10)
    with pytest.raises(OfflineModeError, match="HF_HUB_OFFLINE"):
        probe(deps, replace(missing, size=None))
    assert log.lines() == []
    offline.close()


def test_closed_reader_refuses_reads(world, tmp_path) -> None:
    _, _, client, rid, sha, _ = world
    reader = FileReader(_target(client, rid, sha, "a.txt"), _deps(client, tmp_path))
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(0, 1)
    assert re.fullmatch(r"[0-9a-f]{40}", reader.target.commit)


def test_a_large_read_ahead_of_its_turn_is_served_from_the_stream(world, tmp_path) -> None:
    """Read-ahead requests of a mount arrive out of order on a busy machine (1 MiB at 4 MiB before the one at
    3 MiB): the early one comes out of the stream's ranges in flight, not from a second request, and the
    file is fetched once."""
    _, log, client, rid, sha, content = world
    target, data = _target(client, rid, sha, "big.bin"), content["big.bin"]
    reader = FileReader(target, _deps(client, tmp_path))
    log.clear()
    for pos in (0, MiB, 2 * MiB, 4 * MiB, 3 * MiB, 5 * MiB, 6 * MiB):
        assert reader.read(pos, MiB) == data[pos:pos + MiB]
    pos = 7 * MiB
    while pos < len(data):
        assert reader.read(pos, MiB) == data[pos:pos + MiB]
        pos += MiB
    reader.close()
    fetched = 0
    for line in log.gets():
        first, last = (int(x) for x in re.search(r"bytes=(\d+)-(\d+)", " ".join(line)).groups())  # type: ignore[union-attr]
        fetched += last - first + 1
    assert fetched == len(data), log.gets()
