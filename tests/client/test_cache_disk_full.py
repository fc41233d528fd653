"""The cache on a full disk (pyfakefs with a size limit; the hub and the sockets stay real).

A download that runs out of space fails with a clear error naming the folder, leaves nothing that
passes for a complete blob, and the next one after space is freed succeeds. The sparse block cache
degrades to network reads instead of failing the read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from byte_source import recording_source as _source
from huggingface_hub import HfApi

from hubfs import cli
from hubfs.client import HubClient
from hubfs.client import download as download_mod
from hubfs.client.blocks import BlockCache
from hubfs.client.cache import HubCache
from hubfs.client.download import Downloader
from hubfs.errors import CacheFullError

KiB, MiB = 1024, 1024 * 1024
CACHE = Path("/fake/cache")
FILES = {"big.bin": 3 * MiB, "small.bin": 600 * KiB}


@pytest.fixture
def remote(api: HfApi, repo_id: str) -> dict[str, bytes]:
    """``repo_id`` holding one file per download path (ranges, one request); uploaded before the fake fs."""
    data = {name: os.urandom(size) for name, size in FILES.items()}
    for name, content in data.items():
        api.upload_file(path_or_fileobj=content, path_in_repo=name, repo_id=repo_id)
    return data


@pytest.fixture
def client(hub) -> Iterator[HubClient]:
    with HubClient(hub.endpoint, hub.admin_token) as c:
        yield c


def _positional_io(fs, monkeypatch) -> None:
    """``os.pread``/``os.pwrite`` on fake files (pyfakefs does not fake them), on the file's contents under
    a lock; a write that needs more room than the fake disk has raises ENOSPC, as the real call does."""
    fake_os = download_mod.os
    lock = threading.Lock()

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        with lock:
            obj = fs.get_open_file(fd).get_object()
            old = (obj.byte_contents or b"").ljust(obj.size, b"\0")  # after ftruncate only the size is set
            obj.set_contents(old[:offset].ljust(offset, b"\0") + bytes(data) + old[offset + len(data):])
            return len(data)

    def pread(fd: int, n: int, offset: int) -> bytes:
        with lock:
            obj = fs.get_open_file(fd).get_object()
            return (obj.byte_contents or b"").ljust(obj.size, b"\0")[offset: offset + n]

    monkeypatch.setattr(fake_os, "pwrite", pwrite, raising=False)
    monkeypatch.setattr(fake_os, "pread", pread, raising=False)


@pytest.fixture
def fake_disk(fs, monkeypatch) -> object:
    """pyfakefs's ``fs`` with an empty cache folder and positional I/O."""
    _positional_io(fs, monkeypatch)
    fs.create_dir(CACHE)
    return fs


@pytest.fixture
def disk(remote: dict[str, bytes], client: HubClient, fake_disk) -> object:
    """A 6 MiB fake disk holding an empty cache folder (the real certifi bundle readable for new clients)."""
    fs = fake_disk
    fs.add_real_file(certifi.where())
    fs.set_disk_usage(6 * MiB, path=str(CACHE))
    return fs


def _fill(fs, leave: int) -> Path:
    """A file taking all but ``leave`` bytes of the disk; delete it to free the space."""
    filler = CACHE.parent / "filler"
    fs.create_file(filler, st_size=fs.get_disk_usage(str(CACHE)).free - leave)
    return filler


def _assert_nothing_partial(repo_id: str, names: list[str], data: dict[str, bytes]) -> None:
    repo = HubCache(CACHE).repo_dir("model", repo_id)
    leftovers = [p for p in CACHE.rglob("*") if p.name.endswith((".incomplete", ".parts", ".tmp"))]
    assert leftovers == [], "temporary files are removed"
    for name in names:
        assert not (repo / "blobs" / hashlib.sha256(data[name]).hexdigest()).exists(), "no blob at the final path"
        assert not list((repo / "snapshots").rglob(name)), "no snapshot entry"


def _download(client: HubClient, repo_id: str, name: str) -> Path:
    return Downloader(client, HubCache(CACHE), progress=False).download("model", repo_id, files=[name]) / name


@pytest.mark.parametrize(("name", "parallel"), [("big.bin", False), ("big.bin", True), ("small.bin", False)],
                         ids=["sequential", "parallel", "one-request"])
def test_download_on_a_full_disk_fails_clearly_then_succeeds(remote, client, disk, repo_id: str, name: str,
                                                             parallel: bool, monkeypatch) -> None:
    if parallel:
        monkeypatch.setattr(download_mod, "PARALLEL_MIN", 1 * MiB)
        monkeypatch.setattr(download_mod, "PART_SIZE", 512 * KiB)
    filler = _fill(disk, leave=len(remote[name]) // 2)
    with pytest.raises(CacheFullError) as caught:
        _download(client, repo_id, name)
    err = caught.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(CACHE) in str(err) and f"{len(remote[name])} bytes needed" in str(err) and name in str(err)
    _assert_nothing_partial(repo_id, [name], remote)
    filler.unlink()
    path = _download(client, repo_id, name)
    assert path.read_bytes() == remote[name]


def test_hubfs_download_command_names_the_cache_folder(remote, disk, repo_id: str, capsys) -> None:
    filler = _fill(disk, leave=1 * MiB)
    argv = ["download", repo_id, "big.bin", "--cache-dir", str(CACHE), "--quiet"]
    assert cli.main(argv) == 1
    message = capsys.readouterr().err
    assert "No space left in the cache folder" in message and str(CACHE) in message
    _assert_nothing_partial(repo_id, ["big.bin"], remote)
    filler.unlink()
    assert cli.main(argv) == 0
    assert Path(capsys.readouterr().out.strip()).read_bytes() == remote["big.bin"]


@pytest.fixture
def hubfs_fs(hub):
    from hubfs.fs import HubFileSystem

    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    yield fs
    getattr(fs, "close", lambda: None)()


def test_get_file_on_a_full_disk_leaves_no_partial_file(remote, hubfs_fs, disk, repo_id: str) -> None:
    target = CACHE.parent / "out" / "big.bin"
    filler = _fill(disk, leave=1 * MiB)
    with pytest.raises(CacheFullError) as caught:
        hubfs_fs.get_file(f"hf://{repo_id}/big.bin", str(target))
    assert caught.value.errno == errno.ENOSPC and str(target.parent) in str(caught.value)
    assert list(target.parent.iterdir()) == [], "neither the file nor its .incomplete is left"
    filler.unlink()
    hubfs_fs.get_file(f"hf://{repo_id}/big.bin", str(target))
    assert target.read_bytes() == remote["big.bin"]


def test_block_cache_on_a_full_disk_reads_from_the_network(fake_disk) -> None:
    fs = fake_disk
    fs.set_disk_usage(1 * MiB, path=str(CACHE))
    data = os.urandom(2 * MiB)
    oid = hashlib.sha256(data).hexdigest()
    blocks = BlockCache(HubCache(CACHE))
    calls: list[tuple[int, int]] = []
    assert blocks.read(oid, len(data), 100, 300 * KiB, _source(data, calls)) == data[100: 300 * KiB]
    assert calls == [(100, 300 * KiB - 100)]
    blocks.store(oid, len(data), 0, data[:100])
    assert blocks.read(oid, len(data), 0, len(data), _source(data, calls)) == data
    assert not blocks.complete(oid, len(data))
    assert blocks.promote(oid, len(data), "model", "a/b", "0" * 40, "w.bin") is None
    fs.set_disk_usage(64 * MiB, path=str(CACHE))
    calls.clear()
    assert blocks.read(oid, len(data), 0, len(data), _source(data, calls)) == data
    assert blocks.complete(oid, len(data)), "once there is room the cache works again"
    assert blocks.promote(oid, len(data), "model", "a/b", "0" * 40, "w.bin") is not None


def test_block_cache_keeps_what_it_has_when_the_disk_fills(fake_disk) -> None:
    fs = fake_disk
    fs.set_disk_usage(8 * MiB, path=str(CACHE))
    data = os.urandom(2 * MiB)
    oid = hashlib.sha256(data).hexdigest()
    blocks = BlockCache(HubCache(CACHE))
    calls: list[tuple[int, int]] = []
    assert blocks.read(oid, len(data), 0, MiB, _source(data, calls)) == data[:MiB]
    fs.create_file(CACHE / "filler", st_size=fs.get_disk_usage(str(CACHE)).free)
    calls.clear()
    assert blocks.read(oid, len(data), MiB - 10, MiB + 10, _source(data, calls)) == data[MiB - 10: MiB + 10]
    assert calls == [(MiB, 10)], "the cached part is read from disk, only the gap from the network"
