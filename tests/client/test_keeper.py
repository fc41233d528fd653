"""StreamKeeper (hubfs/client/keeper.py) through FileReader: a file read whole, in order, becomes its blob in
the cache (verified); bytes never fetched, an early close, or bytes that do not match the hash keep nothing."""

from __future__ import annotations

import random
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
from hubfs.client.cache import HubCache
from hubfs.client.commit import Add
from hubfs.client.fetch import RangeFetcher
from hubfs.client.reader import FileReader, ReaderDeps

MiB = 1 << 20


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[HubServer, HubClient, str, str, dict[str, bytes]]]:
    """A hub with one repo (a regular file and two LFS files); yields (server, client, repo id, commit, content)."""
    server = HubServer(tmp_path_factory.mktemp("keeper") / "hub").start()
    client = HubClient(server.endpoint, server.admin_token)
    rid = f"admin/keep-{uuid.uuid4().hex[:8]}"
    client.create_repo("model", rid)
    rng = random.Random(3)
    content = {"notes.txt": b"kept whole\n" * 30_000, "w.bin": rng.randbytes(3 * MiB + 17),
               "big.bin": rng.randbytes(10 * MiB + 3)}
    client.commit("model", rid, [Add(p, c) for p, c in content.items()], message="content")
    yield server, client, rid, client.resolve("model", rid), content
    client.close()
    server.stop()


_target = target_of


def _deps(client: HubClient, cache: Path, pool: ThreadPoolExecutor, *, keep: bool = True) -> ReaderDeps:
    return ReaderDeps(RangeFetcher(client.transport), pool, pool, None, HubCache(cache), keep_reads=keep)


def _read_all(reader: FileReader, size: int, piece: int = MiB) -> bytes:
    return b"".join(reader.read(at, piece) for at in range(0, size, piece))


def _settled(pool: ThreadPoolExecutor) -> None:
    pool.shutdown(wait=True)  # the keeper's check runs there


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*.incomplete")]


@pytest.mark.parametrize("path", ["notes.txt", "w.bin", "big.bin"])
def test_a_file_streamed_whole_becomes_its_blob(world, tmp_path: Path, path: str) -> None:
    _, client, rid, sha, content = world
    target, data = _target(client, rid, sha, path), content[path]
    pool = ThreadPoolExecutor(2)
    with FileReader(target, _deps(client, tmp_path, pool)) as reader:
        assert not reader.local
        assert _read_all(reader, len(data), piece=256 * 1024 + 3) == data
        cache = HubCache(tmp_path)
        assert cache.blob("model", rid, target.etag).exists()  # in place with the last byte, before the close
    _settled(pool)
    assert cache.blob("model", rid, target.etag).read_bytes() == data
    assert cache.snapshot("model", rid, sha, path).read_bytes() == data
    assert _leftovers(tmp_path) == []
    with FileReader(target, _deps(client, tmp_path, ThreadPoolExecutor(1))) as again:
        assert again.local  # the next open reads the blob: no request


def test_without_the_switch_nothing_is_kept(world, tmp_path: Path) -> None:
    _, client, rid, sha, content = world
    target = _target(client, rid, sha, "w.bin")
    pool = ThreadPoolExecutor(2)
    with FileReader(target, _deps(client, tmp_path, pool, keep=False)) as reader:
        assert _read_all(reader, len(content["w.bin"])) == content["w.bin"]
    _settled(pool)
    assert not HubCache(tmp_path).blob("model", rid, target.etag).exists()


@pytest.mark.parametrize("how", ["gap", "early-close", "not-from-start"])
def test_a_read_that_does_not_fetch_the_whole_file_keeps_nothing(world, tmp_path: Path, how: str) -> None:
    _, client, rid, sha, content = world
    target, data = _target(client, rid, sha, "big.bin"), content["big.bin"]
    pool = ThreadPoolExecutor(2)
    with FileReader(target, _deps(client, tmp_path, pool)) as reader:
        if how == "gap":  # the start and the end: the middle is never fetched
            assert reader.read(0, MiB) == data[:MiB]
            assert reader.read(len(data) - MiB, MiB) == data[-MiB:]
        elif how == "early-close":
            assert reader.read(0, 6 * MiB) == data[:6 * MiB]
        else:
            assert reader.read(MiB, len(data)) == data[MiB:]
            assert reader.read(0, MiB) == data[:MiB]
    _settled(pool)
    assert not HubCache(tmp_path).blob("model", rid, target.etag).exists()
    assert _leftovers(tmp_path) == []


def test_bytes_that_do_not_match_the_hash_are_removed_again(world, tmp_path: Path) -> None:
    _, client, rid, sha, content = world
    # the hub sends w.bin's bytes, but the target names another hash: what a corrupted answer looks like
    target = replace(_target(client, rid, sha, "w.bin"), lfs_oid="ab" * 32)
    pool = ThreadPoolExecutor(2)
    with FileReader(target, _deps(client, tmp_path, pool)) as reader:
        assert _read_all(reader, len(content["w.bin"])) == content["w.bin"]
    _settled(pool)
    cache = HubCache(tmp_path)
    assert not cache.blob("model", rid, "ab" * 32).exists()
    assert not cache.snapshot("model", rid, sha, "w.bin").is_symlink()
    assert _leftovers(tmp_path) == []


def test_two_readers_of_one_file_keep_one_blob(world, tmp_path: Path) -> None:
    _, client, rid, sha, content = world
    target, data = _target(client, rid, sha, "big.bin"), content["big.bin"]
    pool = ThreadPoolExecutor(4)
    deps = _deps(client, tmp_path, pool)
    readers = [FileReader(target, deps), FileReader(target, deps)]
    with ThreadPoolExecutor(2) as both:
        got = list(both.map(lambda r: _read_all(r, len(data)), readers))
    for reader in readers:
        reader.close()
    assert got == [data, data]
    _settled(pool)
    blob = HubCache(tmp_path).blob("model", rid, target.etag)
    assert blob.read_bytes() == data
    assert [p.name for p in blob.parent.iterdir()] == [blob.name]
    deadline = time.monotonic() + 5
    while _leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(tmp_path) == []


def test_ranges_written_out_of_order_complete_the_file_once_the_gaps_fill(world, tmp_path: Path) -> None:
    from hubfs.client.keeper import StreamKeeper

    _, client, rid, sha, content = world
    target, data = _target(client, rid, sha, "w.bin"), content["w.bin"]
    keeper = StreamKeeper(HubCache(tmp_path), target, len(data), ThreadPoolExecutor(1))
    cuts = [0, 1000, 700_000, 2 * MiB, len(data)]
    spans = list(zip(cuts, cuts[1:]))
    for a, b in [spans[2], spans[0], spans[3]]:  # the second span last: nothing can be checked before it
        keeper.write_at(a, [data[a:(a + b) // 2], data[(a + b) // 2:b]])
        assert keeper.active
    a, b = spans[1]
    keeper.write_at(a, [memoryview(data)[a:b]])
    assert not keeper.active and keeper.checked is not None and keeper.checked.result() is True
    assert HubCache(tmp_path).blob("model", rid, target.etag).read_bytes() == data
    assert _leftovers(tmp_path) == []
