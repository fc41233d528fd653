"""Downloads into the cache: huggingface_hub reads them offline, resume, corruption, CDN redirects."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from proxy import Proxy

from hubfs.client import HubClient
from hubfs.client.cache import HubCache
from hubfs.client.download import Downloader
from hubfs.errors import IntegrityError

MiB = 1024 * 1024


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hubfs.cli", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cache_is_read_by_huggingface_hub_offline(api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    big = os.urandom(11 * MiB)
    api.upload_file(path_or_fileobj=big, path_in_repo="w/model.safetensors", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id=repo_id)
    cache = tmp_path / "cache"
    snap = Downloader(HubClient(hub.endpoint, hub.admin_token), HubCache(cache), progress=False).download(
        "model", repo_id)
    assert (snap / "w" / "model.safetensors").read_bytes() == big
    script = (f"from huggingface_hub import hf_hub_download, snapshot_download\n"
              f"p = hf_hub_download({repo_id!r}, 'w/model.safetensors', cache_dir={str(cache)!r})\n"
              f"print(p)\nprint(snapshot_download({repo_id!r}, cache_dir={str(cache)!r}))\n")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]).read_bytes() == big and Path(out[1]) == snap
    # and the reverse: what huggingface_hub downloaded is found by hubfs without a blob download
    other = tmp_path / "cache2"
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, cache_dir=other)
    blobs_before = sorted(p.name for p in (other / f"models--{repo_id.replace('/', '--')}" / "blobs").iterdir())
    Downloader(HubClient(hub.endpoint, hub.admin_token), HubCache(other), progress=False).download("model", repo_id)
    assert sorted(p.name for p in (other / f"models--{repo_id.replace('/', '--')}" / "blobs").iterdir()) == blobs_before


@pytest.mark.parametrize("size_mib", [24, 80], ids=["sequential", "parallel"])
def test_download_killed_half_way_resumes(api: HfApi, tmp_hub, tmp_path: Path, size_mib: int) -> None:
    log = tmp_path / "requests.log"
    hub = tmp_hub(env={"HUBFS_REQUEST_LOG": str(log)})
    HfApi(endpoint=hub.endpoint, token=hub.admin_token).create_repo("admin/resume")
    data = os.urandom(size_mib * MiB)
    HfApi(endpoint=hub.endpoint, token=hub.admin_token).upload_file(
        path_or_fileobj=data, path_in_repo="big.bin", repo_id="admin/resume")
    proxy = Proxy(int(hub.endpoint.rsplit(":", 1)[1]), rate=8 * MiB)
    cache = tmp_path / "cache"
    env = {"HF_ENDPOINT": proxy.endpoint, "HF_TOKEN": hub.admin_token, "HF_HUB_CACHE": str(cache)}
    try:
        proc = _cli("download", "admin/resume", "--quiet", env=env)
        blobs = cache / "models--admin--resume" / "blobs"
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = list(blobs.glob("*.incomplete")) if blobs.exists() else []
            parts = list(blobs.glob("*.parts")) if blobs.exists() else []
            if partial and (size_mib < 64 and partial[0].stat().st_size > 4 * MiB or parts and
                            len(parts[0].read_text().split()) >= 1):
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert list(blobs.glob("*.incomplete")), "the download was killed before it finished"
        log.write_text("")
    finally:
        proxy.close()
    env["HF_ENDPOINT"] = hub.endpoint
    done = _cli("download", "admin/resume", "--quiet", env=env)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert (Path(out.strip()) / "big.bin").read_bytes() == data
    ranges = [line.split()[2] for line in log.read_text().splitlines() if "/resolve/" in line]
    fetched = sum(int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) + 1 for r in ranges if r != "-")
    assert 0 < fetched < len(data), "the second run fetched only what was missing"


@pytest.mark.parametrize("size", [100_000, 3 * MiB], ids=["small", "streamed"])
def test_corrupted_lfs_byte_is_detected(api: HfApi, tmp_hub, tmp_path: Path, size: int) -> None:
    hub = tmp_hub()
    client_api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    client_api.create_repo("admin/corrupt")
    data = os.urandom(size)
    client_api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/corrupt")
    oid = hashlib.sha256(data).hexdigest()
    stored = hub.data_dir / "lfs" / oid[:2] / oid[2:4] / oid
    if not stored.exists():  # uploaded through Xet: the hub's only xorb holds the content, from byte 0
        [stored] = [p for p in (hub.data_dir / "xet" / "xorbs").rglob("*") if p.is_file()]
    with open(stored, "r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="corrupted"):
        Downloader(HubClient(hub.endpoint, hub.admin_token), HubCache(cache), progress=False).download(
            "model", "admin/corrupt")
    blobs = cache / "models--admin--corrupt" / "blobs"
    assert not (blobs / oid).exists() and not list(blobs.glob("*.incomplete"))


def test_processes_downloading_the_same_repo_share_the_cache(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    files = {f"d{i % 7}/f{i}.txt": os.urandom(100 + i) for i in range(150)}
    files["big.bin"] = os.urandom(3 * MiB)
    src = tmp_path / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    api.upload_folder(folder_path=str(src), repo_id=repo_id)
    cache = tmp_path / "cache"
    procs = [_cli("download", repo_id, "--cache-dir", str(cache), "--quiet", env={}) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    snaps = {out.strip() for out, _ in outs}
    assert len(snaps) == 1
    snap = Path(snaps.pop())
    assert {n: (snap / n).read_bytes() for n in files} == files
    leftovers = [p.name for p in (cache / f"models--{repo_id.replace('/', '--')}" / "blobs").iterdir()
                 if p.name.endswith(".incomplete")]
    assert leftovers == []


def test_cdn_redirects_work_and_never_receive_the_token(tmp_hub, tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    cdn_log, hub_log = tmp_path / "cdn.log", tmp_path / "hub.log"
    cdn = tmp_hub(env={"HUBFS_REQUEST_LOG": str(cdn_log)}, data=data_dir)
    hub = tmp_hub("--cdn-url", cdn.endpoint, env={"HUBFS_REQUEST_LOG": str(hub_log)}, data=data_dir)
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/cdn", private=True)
    data = os.urandom(12 * MiB)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/cdn")
    # hubfs downloader, hubfs filesystem and the official client all follow the redirect
    snap = Downloader(HubClient(hub.endpoint, hub.admin_token), HubCache(tmp_path / "c1"), progress=False).download(
        "model", "admin/cdn")
    assert (snap / "w.bin").read_bytes() == data
    from hubfs.fs import HubFileSystem

    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    with fs.open("admin/cdn/w.bin") as f:
        f.seek(5 * MiB)
        assert f.read(1000) == data[5 * MiB: 5 * MiB + 1000]
    from huggingface_hub import hf_hub_download

    got = hf_hub_download("admin/cdn", "w.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path / "c2")
    assert Path(got).read_bytes() == data
    cdn_lines = [line for line in cdn_log.read_text().splitlines() if "/info/lfs/objects/" in line]
    assert cdn_lines, "downloads went through the CDN"
    assert all(line.endswith(" anon") for line in cdn_lines), "no Authorization header ever reached the CDN"
    assert any("/resolve/" in line for line in hub_log.read_text().splitlines())


def test_retries_dropped_connections(api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    api.upload_file(path_or_fileobj=data, path_in_repo="d.bin", repo_id=repo_id)
    proxy = Proxy(int(hub.endpoint.rsplit(":", 1)[1]), cut_after=100_000, cuts=3)
    try:
        snap = Downloader(HubClient(proxy.endpoint, hub.admin_token), HubCache(tmp_path / "c"),
                          progress=False).download("model", repo_id, files=["d.bin"])
        assert (snap / "d.bin").read_bytes() == data
        assert proxy.connections > 3
    finally:
        proxy.close()
