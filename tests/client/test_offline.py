"""HF_HUB_OFFLINE=1: ls, info, find and reads of a cached revision come from the cache, as huggingface_hub's
offline mode does; an uncached file, revision or repo raises an error naming offline mode; nothing is sent."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download

from hubfs.errors import OfflineModeError
from hubfs.fs import HubFileSystem

BIG = bytes(range(256)) * 64  # 16 KiB, an LFS object under the hub's default .gitattributes (*.bin)


@pytest.fixture
def cached(api, hub, repo_id, tmp_path: Path):
    """A repo with a folder, a regular and an LFS file, downloaded by huggingface_hub into a fresh cache
    (all but ``skip.txt``); returns (repo id, commit, cache dir)."""
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=BIG, path_in_repo="sub/w.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"not downloaded", path_in_repo="skip.txt", repo_id=repo_id)
    cache = tmp_path / "cache"
    snapshot_download(repo_id, cache_dir=cache, ignore_patterns=["skip.txt"], endpoint=hub.endpoint,
                      token=hub.admin_token)
    return repo_id, api.repo_info(repo_id).sha, cache


@pytest.fixture
def offline(monkeypatch, cached):
    """A fresh offline filesystem on that cache, and a guard that fails the test on any outgoing connection."""
    repo_id, sha, cache = cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError(f"offline mode connected to {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    fs = HubFileSystem(endpoint="http://127.0.0.1:9", skip_instance_cache=True)  # nothing listens there
    yield fs, repo_id, sha
    fs.close()


def test_ls_info_find_come_from_the_cache(offline) -> None:
    fs, rid, sha = offline
    assert fs.client.config.offline
    assert fs.ls(rid, detail=False) == [f"{rid}/.gitattributes", f"{rid}/a.txt", f"{rid}/sub"]  # no skip.txt
    info = fs.info(f"{rid}/sub/w.bin")
    assert (info["type"], info["size"]) == ("file", len(BIG))
    assert info["lfs"]["sha256"] == __import__("hashlib").sha256(BIG).hexdigest()
    assert fs.info(f"{rid}/a.txt")["blob_id"] and fs.info(f"{rid}/a.txt")["lfs"] is None
    assert fs.info(f"{rid}/sub")["type"] == "directory" and fs.isdir(rid)
    assert fs.find(rid) == [f"{rid}/.gitattributes", f"{rid}/a.txt", f"{rid}/sub/w.bin"]
    assert fs.ls(f"{rid}@{sha}/sub", detail=False) == [f"{rid}@{sha}/sub/w.bin"]


def test_reads_come_from_the_cache(offline) -> None:
    fs, rid, sha = offline
    assert fs.cat(f"{rid}/a.txt") == b"hello"
    assert fs.cat_file(f"{rid}@{sha}/sub/w.bin", 10, 20) == BIG[10:20]
    with fs.open(f"{rid}/sub/w.bin") as f:
        f.seek(100)
        assert f.read(5) == BIG[100:105]
    with fs.open(f"{rid}/a.txt", "r") as t:
        assert t.read() == "hello"


def test_what_is_not_cached_names_offline_mode(offline) -> None:
    fs, rid, _sha = offline
    for call in (lambda: fs.info(f"{rid}/skip.txt"), lambda: fs.cat(f"{rid}/skip.txt"),
                 lambda: fs.ls(f"{rid}/nope")):
        with pytest.raises(FileNotFoundError, match="offline mode") as err:
            call()
        assert isinstance(err.value, OfflineModeError)
    assert not fs.exists(f"{rid}/skip.txt")
    for call in (lambda: fs.ls(f"{rid}@dev"), lambda: fs.info(f"{rid}@{'0' * 40}/a.txt"),
                 lambda: fs.cat("admin/not-cached/a.txt"), lambda: fs.ls("datasets/admin/not-cached")):
        with pytest.raises(OfflineModeError, match="offline mode"):
            call()


def test_a_dataset_cached_by_hubfs_download(hub, api, dataset_id, tmp_path, monkeypatch) -> None:
    from hubfs.client.api import HubClient
    from hubfs.client.cache import HubCache
    from hubfs.client.download import Downloader

    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/train.csv", repo_id=dataset_id,
                    repo_type="dataset")
    cache = tmp_path / "cache"
    with HubClient(hub.endpoint, hub.admin_token) as client:
        Downloader(client, HubCache(cache), progress=False).download("dataset", dataset_id)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("sent while offline"))
    with HubFileSystem(endpoint="http://127.0.0.1:9", skip_instance_cache=True) as fs:
        root = f"datasets/{dataset_id}"
        assert fs.ls(f"{root}/data", detail=False) == [f"{root}/data/train.csv"]
        assert fs.cat(f"{root}/data/train.csv") == b"a,b\n1,2\n"
