"""Where bytes come from: `hf://` URLs and repo ids on a real hub (with its request log: a slice reads
only its rows, a load reads each byte once, a cached blob is read from disk), a hubfs mount (read through
the client, never mmap'd through FUSE), and the local-file rules (mmap only on local file systems)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from checkpoints import assert_same, every_dtype, model_like, write_sharded
from hub_server import HubServer, RequestLog
from safetensors.torch import load_file, save_file

from hubfs import loader
from hubfs.errors import OfflineModeError, SafetensorsError
from hubfs.loader.sources import HEADER_PROBE, HubFile, LocalFile, local_fs_allows_mmap, resolve

sys.path.insert(0, str(Path(__file__).parents[1] / "mount"))
from mounting import Mounter, mounting


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounter]:
    """Mounts made with the real `hubfs mount`, undone at the end (tests/mount/mounting.py)."""
    with mounting(tmp_path) as m:
        yield m


@pytest.fixture(scope="module")
def lhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubServer, RequestLog, object]]:
    from huggingface_hub import HfApi

    root = tmp_path_factory.mktemp("loaderhub")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    yield server, RequestLog(log), HfApi(endpoint=server.endpoint, token=server.admin_token)
    server.stop()


@pytest.fixture(scope="module")
def uploaded(lhub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A repo with every dtype at the root (tagged v1, then changed) and a sharded model under ``sharded/``."""
    server, _, api = lhub
    folder = tmp_path_factory.mktemp("upload")
    repo = f"admin/load-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo)
    v1 = every_dtype(seed=1)
    save_file(v1, str(folder / "model.safetensors"), metadata={"format": "pt"})
    api.upload_file(path_or_fileobj=str(folder / "model.safetensors"), path_in_repo="model.safetensors", repo_id=repo)
    api.create_tag(repo, tag="v1")
    v2 = every_dtype(seed=2)
    save_file(v2, str(folder / "model.safetensors"), metadata={"format": "pt"})
    sd = model_like(layers=3, width=64)
    write_sharded(folder / "sharded", sd, shards=3)
    api.upload_folder(folder_path=str(folder), repo_id=repo)
    return {"repo": repo, "v1": v1, "v2": v2, "sharded": sd, "folder": folder, "endpoint": server.endpoint,
            "token": server.admin_token}


def _bytes_of(log: RequestLog, name: str) -> int:
    total = 0
    for method, path, rng, _ in log.lines():
        if method == "GET" and path.endswith("/" + name) and rng.startswith("bytes="):
            a, b = rng[len("bytes="):].split("-")
            total += int(b) + 1 - int(a)
    return total


def test_hf_url_every_dtype(uploaded) -> None:
    u = uploaded
    got = loader.load(f"hf://{u['repo']}/model.safetensors", endpoint=u["endpoint"], token=u["token"])
    assert_same(got, load_file(str(u["folder"] / "model.safetensors")))


def test_repo_id_with_revision(uploaded) -> None:
    u = uploaded
    assert_same(loader.load(u["repo"], endpoint=u["endpoint"], token=u["token"], revision="v1"), u["v1"])
    assert_same(loader.load(u["repo"], endpoint=u["endpoint"], token=u["token"]), u["v2"])
    assert_same(loader.load(f"hf://{u['repo']}@v1", endpoint=u["endpoint"], token=u["token"]), u["v1"])
    with pytest.raises(FileNotFoundError):
        loader.load(f"hf://{u['repo']}/nothing.safetensors", endpoint=u["endpoint"], token=u["token"])


def test_sharded_from_the_hub_reads_each_byte_once(lhub, uploaded) -> None:
    _, log, _ = lhub
    u = uploaded
    log.clear()
    seen: list[str] = []
    got = loader.load(f"hf://{u['repo']}/sharded", endpoint=u["endpoint"], token=u["token"], threads=4,
                      on_tensor=lambda n, t: seen.append(n))
    assert_same(got, u["sharded"])
    assert seen == list(got)
    for shard in sorted((u["folder"] / "sharded").glob("*.safetensors")):
        size = shard.stat().st_size
        fetched = _bytes_of(log, shard.name)
        assert size <= fetched <= size + min(size, HEADER_PROBE), (shard.name, fetched, size)


def test_get_slice_reads_only_the_selected_rows(lhub, uploaded) -> None:
    _, log, _ = lhub
    u = uploaded
    with loader.open(f"hf://{u['repo']}/sharded", endpoint=u["endpoint"], token=u["token"]) as f:
        name = "model.layers.1.mlp.up_proj.weight"
        info = f.infos()[name]
        log.clear()
        rows = f.get_slice(name)[10:20]
        assert torch.equal(rows, u["sharded"][name][10:20])
        row_bytes = info.nbytes // info.shape[0]
        assert _bytes_of(log, Path(info.file).name) == 10 * row_bytes
        log.clear()
        cols = f.get_slice(name)[3:5, 8:16]
        assert torch.equal(cols, u["sharded"][name][3:5, 8:16])
        assert _bytes_of(log, Path(info.file).name) <= 2 * row_bytes


def test_a_cached_blob_is_read_from_disk(lhub, uploaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import hf_hub_download

    _, log, _ = lhub
    u = uploaded
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    hf_hub_download(u["repo"], "model.safetensors", endpoint=u["endpoint"], token=u["token"],
                    cache_dir=str(tmp_path / "cache"))
    log.clear()
    ckpt = resolve(f"hf://{u['repo']}/model.safetensors", endpoint=u["endpoint"], token=u["token"])
    try:
        (f,) = ckpt.files.values()
        assert isinstance(f, HubFile) and f.cached and f.mmap_path is not None
    finally:
        ckpt.close()
    got = loader.load(f"hf://{u['repo']}/model.safetensors", endpoint=u["endpoint"], token=u["token"])
    assert_same(got, u["v2"])
    assert _bytes_of(log, "model.safetensors") == 0 and log.count(r"GET .*/resolve/.*model\.safetensors") == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the cache answers, nothing is sent
    log.clear()
    assert_same(loader.load(f"hf://{u['repo']}/model.safetensors", endpoint=u["endpoint"], token=u["token"]), u["v2"])
    assert log.lines() == []
    with pytest.raises(OfflineModeError):
        loader.load(f"hf://{u['repo']}/sharded", endpoint=u["endpoint"], token=u["token"])
    assert log.lines() == []


def test_missing_shard_on_the_hub(lhub, uploaded) -> None:
    _, _, api = lhub
    u = uploaded
    api.delete_file("sharded/model-00002-of-00003.safetensors", repo_id=u["repo"])
    try:
        with pytest.raises(SafetensorsError, match="shard 'model-00002-of-00003.safetensors'.*missing"):
            loader.load(f"hf://{u['repo']}/sharded", endpoint=u["endpoint"], token=u["token"])
    finally:
        api.upload_file(path_or_fileobj=str(u["folder"] / "sharded" / "model-00002-of-00003.safetensors"),
                        path_in_repo="sharded/model-00002-of-00003.safetensors", repo_id=u["repo"])


def test_local_files_are_mapped_only_on_local_file_systems(tmp_path: Path) -> None:
    save_file({"a": torch.ones(3)}, str(tmp_path / "a.safetensors"))
    assert local_fs_allows_mmap(str(tmp_path / "a.safetensors")) == (not _on_network_fs(tmp_path))
    f = LocalFile(tmp_path / "a.safetensors", mmap=False)
    try:
        assert f.mmap_path is None and f.read(0, 8) == (tmp_path / "a.safetensors").read_bytes()[:8]
    finally:
        f.close()


def _on_network_fs(path: Path) -> bool:
    from hubfs.loader.sources import NETWORK_FS, mount_of

    found = mount_of(str(path))
    return found is not None and (found[1].startswith("fuse") or found[1] in NETWORK_FS)


@pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0, reason="needs /dev/fuse and root")
def test_hubfs_mount_is_read_through_the_client(lhub, uploaded, mounts: Mounter) -> None:
    server, _, _ = lhub
    u = uploaded
    mount = mounts(u["repo"], "--endpoint", server.endpoint, env={"HF_TOKEN": server.admin_token})
    path = mount / "sharded"
    assert not local_fs_allows_mmap(str(path / "model.safetensors.index.json"))
    ckpt = resolve(path, token=u["token"])
    try:
        assert ckpt.files and all(isinstance(f, HubFile) for f in ckpt.files.values())
    finally:
        ckpt.close()
    got = loader.load(path, token=u["token"])
    assert_same(got, u["sharded"])
    assert_same(loader.load(mount / "model.safetensors", token=u["token"]), u["v2"])
