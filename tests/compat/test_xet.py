"""The official client with its defaults (huggingface_hub 2.4.0 + hf_xet, Xet on) against the embedded hub's
Xet CAS: uploads, downloads (v2, v1 fallback, multi-range), a 700 MiB file, the lowest hf_xet allowed,
global and local dedup counted on the server's disk, git-lfs clones and ``hf://`` reads of Xet files.

Evidence that Xet really carried the bytes comes from the server: ``DATA/xet/xorbs`` grows on upload,
tree and paths-info entries carry ``xetHash`` (equal to ``hf_xet.hash_files`` of the content), and the
hub's request log (``HUBFS_REQUEST_LOG``) shows reconstruction and xorb GETs instead of ``/resolve/`` GETs.
Runs that need another client environment (hf_xet 1.6.0, v1 reconstructions, multi-range fetching, a
fresh ``HF_XET_CACHE``) are subprocesses: huggingface_hub and hf_xet read their environment once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import hf_xet
import httpx
import pytest
from hub_server import HubServer, RequestLog
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.hf_api import RepoFile

from hubfs.fs import HubFileSystem

MiB = 1 << 20
HF_XET_FLOOR = Path(sys.prefix) / "hf_xet-1.6.0"  # installed by scripts/test.sh (the lowest hf_xet huggingface_hub accepts)


# -- helpers ---------------------------------------------------------------------------------------------------


def xorb_bytes(server: HubServer) -> int:
    """Bytes of stored xorbs on the server's disk."""
    root = server.data_dir / "xet" / "xorbs"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def xet_hash_of(path: Path) -> str:
    """The Xet file hash hf_xet computes locally for ``path`` (no upload)."""
    return hf_xet.hash_files([str(path)])[0].hash


def raw_tree(server: HubServer, repo_id: str, repo_type: str = "model") -> dict[str, dict]:
    """The raw JSON of GET /api/{type}s/{repo}/tree/main?recursive=1, by path."""
    r = httpx.get(f"{server.endpoint}/api/{repo_type}s/{repo_id}/tree/main", params={"recursive": "1"},
                  headers={"authorization": f"Bearer {server.admin_token}"}, timeout=30)
    r.raise_for_status()
    return {e["path"]: e for e in r.json()}


def random_file(path: Path, size: int, piece: int = 64 * MiB) -> Path:
    """``size`` random bytes written in pieces (memory stays at one piece)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(piece, left)
            f.write(os.urandom(n))
            left -= n
    return path


def run_client(script: str, env: dict[str, str], *args: str, timeout: float = 300) -> dict:
    """Run a Python client script in a fresh interpreter; it prints one JSON object last."""
    proc = subprocess.run([sys.executable, "-c", script, *args], check=False, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"client failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Uploads (path_in_repo <- local file) and/or downloads files with the default client of the interpreter it
# runs in; prints hf_xet's version and file, the sha256 of each download and its own peak RSS.
CLIENT = r"""
import hashlib, importlib.metadata, json, resource, sys
import hf_xet
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.utils._runtime import is_xet_available
a = json.loads(sys.argv[1])
api = HfApi()
for path_in_repo, local in a.get("upload", []):
    api.upload_file(path_or_fileobj=local, path_in_repo=path_in_repo, repo_id=a["repo"], repo_type=a.get("type"))
got = {}
for path_in_repo in a.get("download", []):
    p = hf_hub_download(a["repo"], path_in_repo, repo_type=a.get("type"), cache_dir=a["cache"])
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 23):
            h.update(b)
    got[path_in_repo] = h.hexdigest()
print(json.dumps({"hf_xet": importlib.metadata.version("hf_xet"), "hf_xet_file": hf_xet.__file__,
                  "xet_available": is_xet_available(), "sha256": got,
                  "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def client_env(server: HubServer, tmp: Path, **extra: str) -> dict[str, str]:
    """A subprocess client of ``server`` with its own HF_HOME and a fresh HF_XET_CACHE."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {"HF_ENDPOINT": server.endpoint, "HF_TOKEN": server.admin_token, "HF_HOME": str(tmp / "hf_home"),
            "HF_XET_CACHE": str(tmp / "xet_cache"), **extra}


# -- a private hub that logs every request ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def xhub(tmp_path_factory) -> Iterator[tuple[HubServer, RequestLog, HfApi]]:
    root = tmp_path_factory.mktemp("xethub")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    yield server, RequestLog(log), HfApi(endpoint=server.endpoint, token=server.admin_token)
    server.stop()


def _new_repo(api: HfApi, prefix: str, repo_type: str | None = None) -> str:
    rid = f"admin/{prefix}-{uuid.uuid4().hex[:10]}"
    api.create_repo(rid, repo_type=repo_type)
    return rid


def _assert_xet_download(log: RequestLog, repo_id: str, path: str, xet_hash: str, version: str = "2") -> None:
    """The log shows the file's reconstruction and anonymous signed xorb GETs, and no GET of ``path`` by /resolve/."""
    text = log.text()
    assert log.matching("GET", rf"^/cas/[0-9a-f]+/v{version}/reconstructions/{xet_hash}$"), text
    xorbs = log.matching("GET", r"^/cas/[0-9a-f]+/xorb/[0-9a-f]{64}")
    assert xorbs and all(rng.startswith("bytes=") for _, _, rng, _ in xorbs), text
    assert all(auth == "anon" for *_, auth in xorbs), "xorb URLs are signed; the client sends no token there"
    assert not log.matching("GET", rf"^/{re.escape(repo_id)}/resolve/[^/]+/{re.escape(path)}$"), text


# -- 1. uploads --------------------------------------------------------------------------------------------------


def test_upload_file_folder_and_commit_all_go_through_xet(api: HfApi, hub: HubServer, repo_id: str,
                                                          tmp_path: Path) -> None:
    local: dict[str, Path] = {}
    start = xorb_bytes(hub)

    # upload_file: bytes (12 MiB, LFS by size) and a path (*.bin, LFS by .gitattributes)
    big = os.urandom(12 * MiB)
    local["big.dat"] = tmp_path / "big.dat"
    local["big.dat"].write_bytes(big)
    api.upload_file(path_or_fileobj=big, path_in_repo="big.dat", repo_id=repo_id)
    after_file = xorb_bytes(hub)
    assert after_file - start >= 12 * MiB, "12 MiB uploaded by upload_file must land in the CAS as xorbs"
    local["w.bin"] = random_file(tmp_path / "w.bin", 3 * MiB + 17)
    api.upload_file(path_or_fileobj=str(local["w.bin"]), path_in_repo="w.bin", repo_id=repo_id)

    # upload_folder: small regular files next to *.safetensors, *.bin and a 12 MiB untracked file
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    small = {f"sub/c{i}.json": json.dumps({"i": i}).encode() for i in range(5)}
    small["README.md"] = b"# model\n"
    for name, data in small.items():
        (folder / name).write_bytes(data)
    random_file(folder / "model.safetensors", 5 * MiB + 3)
    random_file(folder / "sub" / "tiny.bin", 1000)
    random_file(folder / "sub" / "huge.raw", 12 * MiB + 1)
    before_folder = xorb_bytes(hub)
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="folder")
    assert xorb_bytes(hub) - before_folder >= 17 * MiB
    for name in ("model.safetensors", "sub/tiny.bin", "sub/huge.raw"):
        local[name] = folder / name

    # create_commit with several adds: bytes, a path, a small regular file
    ops_data = {"ops/a.safetensors": os.urandom(2 * MiB), "ops/b.bin": os.urandom(600_000)}
    for name, data in ops_data.items():
        local[name] = tmp_path / name.replace("/", "_")
        local[name].write_bytes(data)
    before_commit = xorb_bytes(hub)
    api.create_commit(repo_id, [CommitOperationAdd("ops/a.safetensors", ops_data["ops/a.safetensors"]),
                                CommitOperationAdd("ops/b.bin", str(local["ops/b.bin"])),
                                CommitOperationAdd("ops/note.txt", b"regular text")], commit_message="ops")
    assert xorb_bytes(hub) - before_commit >= 2 * MiB + 600_000

    # every LFS file carries xetHash (the hash hf_xet computes locally), in the client's view and the raw JSON
    expected = {name: xet_hash_of(p) for name, p in local.items()}
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True, expand=False) if isinstance(e, RepoFile)}
    raw = raw_tree(hub, repo_id)
    for name, xh in expected.items():
        assert tree[name].lfs is not None and tree[name].lfs.sha256 == sha256_of(local[name]), name
        assert tree[name].xet_hash == xh and raw[name]["xetHash"] == xh, (name, raw[name])
    for name in [*small, "ops/note.txt"]:
        assert tree[name].lfs is None and tree[name].xet_hash is None and "xetHash" not in raw[name], name
    infos = {e.path: e for e in api.get_paths_info(repo_id, [*expected, "README.md"])}
    assert {n: infos[n].xet_hash for n in expected} == expected
    assert infos["README.md"].xet_hash is None
    r = httpx.post(f"{hub.endpoint}/api/models/{repo_id}/paths-info/main", data={"paths": list(expected)},
                   headers={"authorization": f"Bearer {hub.admin_token}"}, timeout=30)
    r.raise_for_status()
    assert {e["path"]: e.get("xetHash") for e in r.json()} == expected


# -- 2. downloads ------------------------------------------------------------------------------------------------


def test_hf_hub_download_and_snapshot_download_use_xet(xhub, tmp_path: Path) -> None:
    server, log, api = xhub
    rid = _new_repo(api, "dl")
    files = {"big.bin": os.urandom(12 * MiB + 5), "w.safetensors": os.urandom(3 * MiB),
             "README.md": b"# readme\n", "cfg.json": b'{"a": 1}'}
    api.create_commit(rid, [CommitOperationAdd(p, d) for p, d in files.items()], commit_message="files")
    tree = raw_tree(server, rid)
    assert tree["big.bin"].get("xetHash") and tree["w.safetensors"].get("xetHash")

    log.clear()
    path = hf_hub_download(rid, "big.bin", endpoint=server.endpoint, token=server.admin_token,
                           cache_dir=tmp_path / "one")
    assert Path(path).read_bytes() == files["big.bin"]
    _assert_xet_download(log, rid, "big.bin", tree["big.bin"]["xetHash"])
    heads = log.matching("HEAD", rf"^/{re.escape(rid)}/resolve/main/big\.bin$")
    assert heads, log.text()
    assert log.matching("GET", rf"^/api/models/{re.escape(rid)}/xet-read-token/[0-9a-f]{{40}}$"), log.text()

    log.clear()
    snap = Path(snapshot_download(rid, endpoint=server.endpoint, token=server.admin_token,
                                  cache_dir=tmp_path / "snap"))
    assert all((snap / p).read_bytes() == d for p, d in files.items())
    for p in ("big.bin", "w.safetensors"):
        _assert_xet_download(log, rid, p, tree[p]["xetHash"])


@pytest.fixture(scope="module")
def composite(xhub, tmp_path_factory) -> tuple[str, dict[str, Path]]:
    """A repo with ``base.bin`` (6 random 2 MiB blocks) and ``mix.bin`` (blocks 0, 2 and 4 of base with new
    blocks between them), uploaded by this process so that mix.bin dedups against base.bin: its
    reconstruction reads several separate ranges of base.bin's xorb."""
    _, _, api = xhub
    d = tmp_path_factory.mktemp("composite")
    blocks = [os.urandom(2 * MiB) for _ in range(6)]
    new = [os.urandom(2 * MiB) for _ in range(3)]
    (d / "base.bin").write_bytes(b"".join(blocks))
    (d / "mix.bin").write_bytes(blocks[0] + new[0] + blocks[2] + new[1] + blocks[4] + new[2])
    rid = _new_repo(api, "mix")
    api.upload_file(path_or_fileobj=str(d / "base.bin"), path_in_repo="base.bin", repo_id=rid)
    api.upload_file(path_or_fileobj=str(d / "mix.bin"), path_in_repo="mix.bin", repo_id=rid)
    return rid, {"base.bin": d / "base.bin", "mix.bin": d / "mix.bin"}


def test_reconstruction_ranges_of_a_deduplicated_file(xhub, composite) -> None:
    """The v2 reconstruction of mix.bin lists base.bin's xorb with several byte ranges (the input for the
    multi-range test below), and v1 lists the same terms."""
    server, _, _ = xhub
    rid, local = composite
    tree = raw_tree(server, rid)
    token = httpx.get(f"{server.endpoint}/api/models/{rid}/xet-read-token/main",
                      headers={"authorization": f"Bearer {server.admin_token}"}, timeout=30)
    token.raise_for_status()
    cas, tok = token.headers["X-Xet-Cas-Url"], token.headers["X-Xet-Access-Token"]
    size = local["mix.bin"].stat().st_size
    v2 = httpx.get(f"{cas}/v2/reconstructions/{tree['mix.bin']['xetHash']}", timeout=30,
                   headers={"authorization": f"Bearer {tok}", "range": f"bytes=0-{size - 1}"}).json()
    v1 = httpx.get(f"{cas}/v1/reconstructions/{tree['mix.bin']['xetHash']}", timeout=30,
                   headers={"authorization": f"Bearer {tok}", "range": f"bytes=0-{size - 1}"}).json()
    assert sum(t["unpacked_length"] for t in v2["terms"]) == size == sum(t["unpacked_length"] for t in v1["terms"])
    assert [t["hash"] for t in v1["terms"]] == [t["hash"] for t in v2["terms"]]
    assert len({t["hash"] for t in v2["terms"]}) < len(v2["terms"]), f"mix.bin did not dedup against base.bin: {v2}"
    assert max(len(x["ranges"]) for xs in v2["xorbs"].values() for x in xs) >= 2, v2


@pytest.mark.parametrize("mode", ["v1", "multirange", "default"])
def test_download_modes_in_a_fresh_client(xhub, composite, mode: str, tmp_path: Path) -> None:
    """hf_hub_download in a subprocess: reconstruction API v1 (``HF_XET_CLIENT_RECONSTRUCTION_API_VERSION=1``),
    multi-range xorb fetches (``multipart/byteranges`` replies), and the defaults; byte-checked by sha256."""
    server, log, _ = xhub
    rid, local = composite
    extra = {"v1": {"HF_XET_CLIENT_RECONSTRUCTION_API_VERSION": "1"},
             "multirange": {"HF_XET_CLIENT_ENABLE_MULTIRANGE_FETCHING": "true"}, "default": {}}[mode]
    log.clear()
    out = run_client(CLIENT, client_env(server, tmp_path, **extra),
                     json.dumps({"repo": rid, "download": ["mix.bin", "base.bin"], "cache": str(tmp_path / "c")}))
    assert out["sha256"] == {"mix.bin": sha256_of(local["mix.bin"]), "base.bin": sha256_of(local["base.bin"])}
    tree = raw_tree(server, rid)
    for name in ("mix.bin", "base.bin"):
        _assert_xet_download(log, rid, name, tree[name]["xetHash"], version="1" if mode == "v1" else "2")
    if mode == "v1":
        assert not log.matching("GET", r"/v2/reconstructions/"), log.text()
    multi = [ln for ln in log.matching("GET", r"^/cas/[0-9a-f]+/xorb/") if "," in ln[2]]
    if mode == "multirange":  # one GET with several ranges: the hub answers multipart/byteranges
        assert multi, f"no multi-range xorb GET:\n{log.text()}"
    else:
        assert not multi, log.text()


# -- 3. a 700 MiB file both ways ----------------------------------------------------------------------------------


def _vm(pid: int, field: str = "VmHWM") -> int:
    """A process's peak (``VmHWM``) or current (``VmRSS``) resident memory, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def test_700_mib_file_up_and_down(tmp_hub, tmp_path: Path) -> None:
    """Default client both ways (each in its own process, so that hf_xet's buffers leave with it); the
    download is served by paged reconstructions and xorb ranges, and serving it does not grow the server."""
    size = 700 * MiB
    log = RequestLog(tmp_path / "requests.log")
    server = tmp_hub(env={"HUBFS_REQUEST_LOG": str(log.path)})
    api = HfApi(endpoint=server.endpoint, token=server.admin_token)
    try:
        src, digest = tmp_path / "huge.bin", hashlib.sha256()
        with open(src, "wb") as f:
            for _ in range(0, size, 64 * MiB):
                piece = os.urandom(min(64 * MiB, size - f.tell()))
                digest.update(piece)
                f.write(piece)
        want = digest.hexdigest()
        rid = _new_repo(api, "huge")
        t0 = time.monotonic()
        up = run_client(CLIENT, client_env(server, tmp_path / "up"),
                        json.dumps({"repo": rid, "upload": [["huge.bin", str(src)]]}))
        up_s = time.monotonic() - t0
        src.unlink()
        assert xorb_bytes(server) >= size
        entry = api.get_paths_info(rid, ["huge.bin"])[0]
        assert entry.size == size and entry.lfs.sha256 == want and entry.xet_hash, entry
        up_peak = _vm(server.proc.pid)
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # restart the server's peak-RSS count
        rss = _vm(server.proc.pid, "VmRSS")
        log.clear()
        t0 = time.monotonic()
        down = run_client(CLIENT, client_env(server, tmp_path / "down"),
                          json.dumps({"repo": rid, "download": ["huge.bin"], "cache": str(tmp_path / "cache")}))
        down_s = time.monotonic() - t0
        down_peak = _vm(server.proc.pid)
        assert down["sha256"] == {"huge.bin": want}
        _assert_xet_download(log, rid, "huge.bin", entry.xet_hash)
        recon = log.matching("GET", r"/v2/reconstructions/")
        pages = sorted(int(rng.removeprefix("bytes=").split("-")[0]) for _, _, rng, _ in recon)
        assert len(pages) >= 2 and pages[0] == 0, f"a 700 MiB file is reconstructed in pages from 0: {pages}"
        assert down_peak - rss < size // 4, \
            f"serving a {size // MiB} MiB file grew the server's RSS from {rss / MiB:.0f} to {down_peak / MiB:.0f} MiB"
        print(f"700 MiB: upload {up_s:.1f}s (client peak RSS {up['maxrss'] / MiB:.0f} MiB, server {up_peak / MiB:.0f} MiB), "
              f"download {down_s:.1f}s (client {down['maxrss'] / MiB:.0f} MiB, server {rss / MiB:.0f} -> "
              f"{down_peak / MiB:.0f} MiB)")
    finally:
        server.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)  # 1.4 GiB of server data and download; kept when the test failed


# -- 4. the lowest hf_xet huggingface_hub accepts, and the default one ---------------------------------------------


@pytest.mark.parametrize("version", ["1.6.0", "1.8.0"])
def test_round_trip_with_hf_xet_version(xhub, version: str, tmp_path: Path) -> None:
    server, log, api = xhub
    assert (HF_XET_FLOOR / "hf_xet").is_dir(), "scripts/test.sh installs hf_xet 1.6.0 there"
    rid = _new_repo(api, f"v{version.replace('.', '')}")
    src = random_file(tmp_path / "w.safetensors", 11 * MiB + 123)
    small = tmp_path / "config.json"
    small.write_text('{"hidden": 32}')
    extra = {"PYTHONPATH": str(HF_XET_FLOOR)} if version == "1.6.0" else {}
    env = client_env(server, tmp_path / "client", **extra)
    before = xorb_bytes(server)
    log.clear()
    up = run_client(CLIENT, env, json.dumps({"repo": rid, "upload": [["w.safetensors", str(src)],
                                                                     ["config.json", str(small)]]}))
    assert up["hf_xet"] == version and up["xet_available"] is True, up
    if version == "1.6.0":
        assert Path(up["hf_xet_file"]).is_relative_to(HF_XET_FLOOR), up
    assert log.matching("POST", r"^/cas/[0-9a-f]+/v1/xorbs/default/[0-9a-f]{64}$"), log.text()
    assert log.matching("POST", r"^/cas/[0-9a-f]+/v[12]/shards$"), log.text()
    assert xorb_bytes(server) - before >= src.stat().st_size
    assert raw_tree(server, rid)["w.safetensors"]["xetHash"] == xet_hash_of(src)

    log.clear()
    env = client_env(server, tmp_path / "client2", **extra)  # a fresh cache: nothing to reuse locally
    down = run_client(CLIENT, env, json.dumps({"repo": rid, "download": ["w.safetensors", "config.json"],
                                               "cache": str(tmp_path / "dl")}))
    assert down["hf_xet"] == version
    assert down["sha256"] == {"w.safetensors": sha256_of(src), "config.json": sha256_of(small)}
    _assert_xet_download(log, rid, "w.safetensors", xet_hash_of(src))


# -- 5. dedup, counted on the server's disk ------------------------------------------------------------------------


def test_global_dedup_with_a_fresh_cache_and_local_dedup(xhub, tmp_path: Path) -> None:
    server, log, api = xhub
    blocks = [os.urandom(4 * MiB) for _ in range(10)]  # 40 MiB of random "tensors"
    size = 40 * MiB
    first = tmp_path / "v1.safetensors"
    first.write_bytes(b"".join(blocks))
    rid = _new_repo(api, "dedup")
    before = xorb_bytes(server)
    api.upload_file(path_or_fileobj=str(first), path_in_repo="v1.safetensors", repo_id=rid)
    assert xorb_bytes(server) - before >= size, "the first upload stores the whole file"

    # another repo of the same user, from a client with an empty cache: only the server can tell it what exists
    changed = list(blocks)
    changed[5] = os.urandom(4 * MiB)  # 10% of the blocks
    second = tmp_path / "v2.safetensors"
    second.write_bytes(b"".join(changed))
    rid2 = _new_repo(api, "dedup2")
    before = xorb_bytes(server)
    log.clear()
    run_client(CLIENT, client_env(server, tmp_path / "fresh"),
               json.dumps({"repo": rid2, "upload": [["v2.safetensors", str(second)]]}))
    grown = xorb_bytes(server) - before
    assert log.matching("GET", r"^/cas/[0-9a-f]+/v1/chunks/default(-merkledb)?/[0-9a-f]{64}$"), log.text()
    assert grown <= 0.15 * size + MiB, f"global dedup: stored {grown / MiB:.2f} MiB = {grown / size:.1%} of the file"

    # the same change pattern elsewhere, from this process: its own shard cache knows the first upload
    third_blocks = list(blocks)
    third_blocks[8] = os.urandom(4 * MiB)
    third = tmp_path / "v3.safetensors"
    third.write_bytes(b"".join(third_blocks))
    before = xorb_bytes(server)
    log.clear()
    api.upload_file(path_or_fileobj=str(third), path_in_repo="v3.safetensors", repo_id=rid)
    grown3 = xorb_bytes(server) - before
    # (whether hf_xet also asks the hub about a chunk its own cache lacks is the client's choice: not asserted)
    assert grown3 <= 0.15 * size + MiB, f"local dedup: stored {grown3 / MiB:.2f} MiB = {grown3 / size:.1%} of the file"

    for repo, name, path in ((rid2, "v2.safetensors", second), (rid, "v3.safetensors", third)):
        got = hf_hub_download(repo, name, endpoint=server.endpoint, token=server.admin_token,
                              cache_dir=tmp_path / "dl")
        assert sha256_of(got) == sha256_of(path), name
        assert raw_tree(server, repo)[name]["xetHash"] == xet_hash_of(path)
    print(f"dedup: global {grown / size:.1%}, local {grown3 / size:.1%} of {size // MiB} MiB stored")


# -- 6. git + git-lfs clones of Xet-uploaded files -----------------------------------------------------------------


def _git_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", **extra)
    return env


def _git(home: Path, *args: str, cwd: Path | None = None, **env: str) -> str:
    proc = subprocess.run(["git", *args], check=False, cwd=cwd, env=_git_env(home, **env), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_git_lfs_clone_of_xet_uploaded_files(api: HfApi, hub: HubServer, repo_id: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _git(home, "config", "--global", "user.name", "Tester")
    _git(home, "config", "--global", "user.email", "tester@example.com")
    _git(home, "lfs", "install", "--skip-repo")
    folder = tmp_path / "up"
    (folder / "big").mkdir(parents=True)
    files = {"big/w.bin": os.urandom(11 * MiB), "model.safetensors": os.urandom(2 * MiB + 1),
             "tiny.bin": os.urandom(1000), "config.json": b'{"a": 1}\n'}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    before = xorb_bytes(hub)
    api.upload_folder(folder_path=folder, repo_id=repo_id)
    assert xorb_bytes(hub) - before >= 13 * MiB
    tree = raw_tree(hub, repo_id)
    lfs_names = ["big/w.bin", "model.safetensors", "tiny.bin"]
    assert all(tree[n].get("xetHash") for n in lfs_names), tree

    netloc = hub.endpoint.split("://", 1)[1]
    url = f"http://user:{hub.admin_token}@{netloc}/{repo_id}"
    work = tmp_path / "clone"
    _git(home, "clone", "-q", url, str(work))
    assert all((work / n).read_bytes() == d for n, d in files.items())
    skip = tmp_path / "skip"
    _git(home, "clone", "-q", url, str(skip), GIT_LFS_SKIP_SMUDGE="1")
    for n in lfs_names:
        pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(files[n]).hexdigest()}\n"
                   f"size {len(files[n])}\n")
        assert _git(home, "show", f"HEAD:{n}", cwd=skip) == pointer, n
        assert (skip / n).read_text() == pointer
    assert _git(home, "show", "HEAD:config.json", cwd=skip) == files["config.json"].decode()
    assert sorted(_git(home, "lfs", "ls-files", "-n", cwd=skip).split()) == sorted(lfs_names)
    _git(home, "lfs", "pull", cwd=skip)
    assert all((skip / n).read_bytes() == files[n] for n in lfs_names)


# -- 7. hf:// reads --------------------------------------------------------------------------------------------------


def test_hf_reads_of_xet_uploaded_files(api: HfApi, hub: HubServer, repo_id: str) -> None:
    data = os.urandom(13 * MiB + 321)
    api.upload_file(path_or_fileobj=data, path_in_repo="w/model.safetensors", repo_id=repo_id)
    assert raw_tree(hub, repo_id)["w/model.safetensors"].get("xetHash")
    path = f"{repo_id}/w/model.safetensors"

    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    assert fs.cat_file(path) == data
    assert fs.cat_file(path, start=5 * MiB + 7, end=9 * MiB + 1) == data[5 * MiB + 7:9 * MiB + 1]
    with fs.open(path, "rb") as f:
        f.seek(len(data) - 1000)
        assert f.read() == data[-1000:]
    assert fs.info(path)["size"] == len(data)
    assert fsspec.get_filesystem_class("hf") is HubFileSystem
    with fsspec.open(f"hf://{path}", "rb") as f:
        f.seek(123_457)
        assert f.read(70_000) == data[123_457:193_457]

    # huggingface_hub's own HfFileSystem reads Xet files through hf_xet (ranges via offset_into_first_range)
    hffs = HfFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    assert hffs.cat_file(path) == data
    assert hffs.cat_file(path, start=7 * MiB + 3, end=7 * MiB + 70_003) == data[7 * MiB + 3:7 * MiB + 70_003]
    with hffs.open(path, "rb") as f:
        f.seek(len(data) - 5)
        assert f.read() == data[-5:]


def test_cross_repo_copy_of_a_xet_file(api, hub, users) -> None:
    """``CommitOperationCopy(src_repo_id=...)`` duplicates the Xet file into the target (lfs-files/duplicate)
    without re-uploading it; an outsider cannot copy out of a private repo."""
    from huggingface_hub import CommitOperationCopy
    from huggingface_hub.errors import HfHubHTTPError

    tag = uuid.uuid4().hex[:8]
    src, dst = f"admin/copy-src-{tag}", f"admin/copy-dst-{tag}"
    api.create_repo(src, private=True)
    api.create_repo(dst)
    data = os.urandom(3 * 1024 * 1024 + 17)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id=src)
    api.create_commit(dst, [CommitOperationCopy("w.safetensors", "copied.safetensors", src_repo_id=src,
                                                src_repo_type="model")], commit_message="copy")
    assert httpx.get(f"{hub.endpoint}/{dst}/resolve/main/copied.safetensors").content == data
    [entry] = api.get_paths_info(dst, ["copied.safetensors"])
    assert entry.xet_hash and entry.lfs is not None

    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    bob_repo = f"{users['bob']}/copy-{tag}"
    bob.create_repo(bob_repo)
    with pytest.raises(HfHubHTTPError):
        bob.create_commit(bob_repo, [CommitOperationCopy("w.safetensors", "stolen.safetensors", src_repo_id=src,
                                                         src_repo_type="model")], commit_message="steal")
    r = httpx.post(f"{hub.endpoint}/api/models/{src}/lfs-files/duplicate",
                   json={"target": {"type": "model", "name": bob_repo},
                         "files": [{"xetHash": entry.xet_hash, "sha256": entry.lfs.sha256, "filename": "w"}]},
                   headers={"authorization": f"Bearer {users['bob_token']}"})
    assert r.status_code == 404, r.text  # the private source is invisible to bob
    assert bob.file_exists(bob_repo, "stolen.safetensors") is False
