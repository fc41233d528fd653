"""`hubfs mirror` between two real embedded hubs: same commit shas, LFS content verified, incremental
re-runs, and interrupted runs (a pack cut off by a fault proxy, a mirror killed half-way through its LFS
objects) that resume."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubServer, RequestLog
from proxy import Proxy

from hubfs.cli import main
from hubfs.client.api import HubClient
from hubfs.client.commit import Add
from hubfs.errors import HubfsError
from hubfs.mirror import mirror, parse_source

LFS_GET = r"^GET /.*\.git/info/lfs/objects/[0-9a-f]{64}$"


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A second hub, the source: files of 1 KiB or more are LFS objects; every request is logged."""
    root = tmp_path_factory.mktemp("mirror-src")
    server = HubServer(root / "hub", "--regular-max-size", "1k",
                       env={"HUBFS_REQUEST_LOG": str(root / "requests.log")}).start()
    server.log = RequestLog(root / "requests.log")  # type: ignore[attr-defined]
    yield server
    server.stop()


def _log(src: HubServer) -> RequestLog:
    return src.log  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def source(src: HubServer) -> Iterator[HubClient]:
    with HubClient(src.endpoint, src.admin_token) as client:
        yield client


@pytest.fixture
def dest(hub: HubServer) -> Iterator[HubClient]:
    with HubClient(hub.endpoint, hub.admin_token) as client:
        yield client


def _refs(endpoint: str, token: str, repo_id: str, repo_type: str = "model") -> dict[str, str]:
    from huggingface_hub import HfApi

    refs = HfApi(endpoint=endpoint, token=token).list_repo_refs(repo_id, repo_type=repo_type)
    return {r.ref: r.target_commit for r in [*refs.branches, *refs.tags]}


def _present(dest: HubClient, repo_id: str, oids: dict[str, int]) -> int:
    """How many of ``oids`` the destination repo already holds (LFS batch upload: no action)."""
    body = {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
            "objects": [{"oid": o, "size": s} for o, s in oids.items()]}
    answer = dest.transport.request("POST", dest.lfs_batch_url("model", repo_id), json_body=body,
                                    headers={"Accept": "application/vnd.git-lfs+json"}).json()
    return sum(1 for o in answer["objects"] if not o.get("actions"))


def test_parse_source() -> None:
    assert parse_source("https://huggingface.co/gpt2")[1].id == "gpt2"
    endpoint, repo = parse_source("http://127.0.0.1:8080/datasets/ns/name/")
    assert (endpoint, repo.type.value, repo.id) == ("http://127.0.0.1:8080", "dataset", "ns/name")
    for bad in ("huggingface.co/gpt2", "https://huggingface.co/", "https://u:p@h/ns/x", "https://h/a/b/c"):
        with pytest.raises(HubfsError):
            parse_source(bad)


def test_mirror_same_shas_then_only_what_changed(src: HubServer, source: HubClient, dest: HubClient, api,
                                                 tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    rid = f"admin/m-{uuid.uuid4().hex[:8]}"
    weights, extra = os.urandom(5000), os.urandom(3000)
    source.create_repo("model", rid, private=True)
    first = source.commit("model", rid, [Add("a.txt", b"hello"), Add("w.bin", weights)], "weights")
    src_api = HfApi(endpoint=src.endpoint, token=src.admin_token)
    src_api.create_tag(rid, tag="v0", revision=first)
    src_api.create_branch(rid, branch="dev")
    source.commit("model", rid, [Add("d.bin", extra)], "dev file", revision="dev")
    source.commit("model", rid, [Add("b.txt", b"more")], "second")
    src_api.create_tag(rid, tag="v1", tag_message="release one")  # annotated

    result = mirror(f"{src.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=tmp_path / "w")
    assert _refs(src.endpoint, src.admin_token, rid) == _refs(dest.endpoint, dest.config.token or "", rid)
    assert set(result.updated) == {"refs/heads/main", "refs/heads/dev", "refs/tags/v0", "refs/tags/v1"}
    assert (result.lfs_copied, result.lfs_bytes) == (2, 8000)
    assert api.repo_info(rid).private is True
    assert [c.commit_id for c in api.list_repo_commits(rid)] == [c.commit_id for c in src_api.list_repo_commits(rid)]
    assert Path(api.hf_hub_download(rid, "w.bin")).read_bytes() == weights
    assert Path(api.hf_hub_download(rid, "d.bin", revision="dev")).read_bytes() == extra

    _log(src).clear()
    again = mirror(f"{src.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=tmp_path / "w")
    assert again.updated == {} and again.lfs_copied == 0
    assert _log(src).count(r"/info/lfs/") == 0
    assert _log(src).count(r"^POST .*git-upload-pack$") == 1  # ls-refs only: no pack

    newer = os.urandom(4000)
    head = source.commit("model", rid, [Add("n.bin", newer)], "new weights")
    src_api.delete_branch(rid, branch="dev")
    _log(src).clear()
    third = mirror(f"{src.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=tmp_path / "w")
    assert third.updated["refs/heads/main"][1] == head and third.updated["refs/heads/dev"][1] is None
    assert (third.lfs_copied, third.lfs_bytes, third.lfs_present) == (1, 4000, 0)
    assert _log(src).count(LFS_GET) == 1
    assert _refs(dest.endpoint, dest.config.token or "", rid) == _refs(src.endpoint, src.admin_token, rid)
    assert Path(api.hf_hub_download(rid, "n.bin")).read_bytes() == newer


def test_mirror_command_dataset_revision_to(src: HubServer, source: HubClient, api, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def _cli(*args: str) -> subprocess.CompletedProcess[str]:  # `hubfs ARGS` in this process
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    rid = f"admin/ds-{uuid.uuid4().hex[:8]}"
    source.create_repo("dataset", rid)
    source.commit("dataset", rid, [Add("data.csv", b"a,b\n1,2\n"), Add("big.parquet", os.urandom(2048))], "data")
    source.transport.request("POST", f"/api/datasets/{rid}/branch/other", json_body={})
    to = f"admin/copy-{uuid.uuid4().hex[:8]}"
    token_file = tmp_path / "src.token"
    token_file.write_text(src.admin_token + "\n")
    out = _cli("mirror", f"{src.endpoint}/datasets/{rid}", "--to", to, "--revision", "main",
               "--src-token-file", str(token_file), "--work-dir", str(tmp_path / "w"))
    assert out.returncode == 0, out.stderr
    assert "1 refs updated" in out.stdout and src.admin_token not in out.stdout + out.stderr
    assert _refs(api.endpoint, api.token, to, "dataset") == {
        "refs/heads/main": _refs(src.endpoint, src.admin_token, rid, "dataset")["refs/heads/main"]}
    assert Path(api.hf_hub_download(to, "big.parquet", repo_type="dataset")).stat().st_size == 2048

    missing = _cli("mirror", f"{src.endpoint}/admin/nope-{uuid.uuid4().hex[:6]}", "--src-token", src.admin_token)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.startswith("hubfs: ") and src.admin_token not in missing.stderr
    bad = _cli("mirror", "not-a-url/x")
    assert bad.returncode == 1 and "SRC_ENDPOINT/REPO" in bad.stderr


def test_pack_cut_off_is_fetched_again(src: HubServer, source: HubClient, dest: HubClient, tmp_path: Path) -> None:
    rid = f"admin/cut-{uuid.uuid4().hex[:8]}"
    source.create_repo("model", rid)
    source.commit("model", rid, [Add(f"f{i:03d}.txt", os.urandom(900)) for i in range(300)], "many files")
    proxy = Proxy(int(src.endpoint.rsplit(":", 1)[1]), cut_after=60_000, cuts=1000)
    work = tmp_path / "w"
    try:
        with pytest.raises(HubfsError, match="broke|gave up"):
            mirror(f"{proxy.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=work)
    finally:
        proxy.close()
    assert not list((work / "git" / "objects" / "pack").glob("*.pack"))  # nothing half-stored
    result = mirror(f"{src.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=work)
    assert result.git_bytes > 270_000 and "refs/heads/main" in result.updated
    assert _refs(dest.endpoint, dest.config.token or "", rid) == _refs(src.endpoint, src.admin_token, rid)

    # a fresh staging folder (another machine): what the destination has is read from it, not the source
    head = source.commit("model", rid, [Add("later.txt", b"later")], "later")
    again = mirror(f"{src.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=tmp_path / "fresh")
    assert again.updated["refs/heads/main"][1] == head and again.git_bytes < 20_000


def test_killed_mirror_resumes_without_resending_lfs(src: HubServer, source: HubClient, dest: HubClient,
                                                     tmp_path: Path) -> None:
    rid = f"admin/kill-{uuid.uuid4().hex[:8]}"
    blobs = [os.urandom(512 << 10) for _ in range(6)]
    oids = {hashlib.sha256(b).hexdigest(): len(b) for b in blobs}
    source.create_repo("model", rid)
    source.commit("model", rid, [Add(f"w{i}.bin", b) for i, b in enumerate(blobs)], "six objects")
    proxy = Proxy(int(src.endpoint.rsplit(":", 1)[1]), rate=1_500_000)  # slow source: about 3 s in all
    work = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-m", "hubfs.cli", "mirror", f"{proxy.endpoint}/{rid}", "--quiet",
                             "--src-token", src.admin_token, "--work-dir", str(work), "--max-staged", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        present = 0
        while time.time() < deadline and proc.poll() is None:
            present = _present(dest, rid, oids) if _exists(dest, rid) else 0
            if present >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the mirror finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()
    present = _present(dest, rid, oids)
    assert 2 <= present < 6
    _log(src).clear()
    result = mirror(f"{src.endpoint}/{rid}", dest, src_token=src.admin_token, work_dir=work)
    assert result.lfs_present == present and result.lfs_copied == 6 - present
    assert _log(src).count(LFS_GET) <= 6 - present  # objects already at the destination are not fetched again
    assert result.lfs_bytes <= (6 - present) * (512 << 10)
    assert _present(dest, rid, oids) == 6
    assert _refs(dest.endpoint, dest.config.token or "", rid) == _refs(src.endpoint, src.admin_token, rid)
    assert not [p for p in (work / "lfs").iterdir() if re.match(r"[0-9a-f]{64}", p.name)]  # nothing left staged


def _exists(client: HubClient, rid: str) -> bool:
    try:
        client.repo_info("model", rid)
    except FileNotFoundError:
        return False
    return True


def test_canonical_repo_keeps_the_shas_transformers_pins(src: HubServer, source: HubClient, dest: HubClient,
                                                         tmp_path: Path) -> None:
    """`gpt2`-style ids (no namespace): mirrored under the same name; transformers loads the pinned commit."""
    from transformers import AutoConfig

    name = f"tiny-{uuid.uuid4().hex[:8]}"
    source.create_repo("model", name)
    config = b'{"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16}'
    pinned = source.commit("model", name, [Add("config.json", config), Add("w.bin", os.urandom(2048))], "tiny")
    source.commit("model", name, [Add("config.json", config.replace(b'"n_layer": 1', b'"n_layer": 2'))], "two")
    result = mirror(f"{src.endpoint}/{name}", dest, src_token=src.admin_token, work_dir=tmp_path / "w")
    assert result.dest.id == name and result.lfs_copied == 1
    assert dest.repo_info("model", name)["id"] == name
    assert _refs(dest.endpoint, dest.config.token or "", name) == _refs(src.endpoint, src.admin_token, name)
    old = AutoConfig.from_pretrained(name, revision=pinned[:7], cache_dir=str(tmp_path / "cache"))  # a short sha
    assert old.n_layer == 1
    assert AutoConfig.from_pretrained(name, cache_dir=str(tmp_path / "cache")).n_layer == 2


def test_refused_push_says_why_and_changes_nothing(src: HubServer, hub: HubServer, dest: HubClient,
                                                   tmp_path: Path) -> None:
    """Mirroring into a hub with stricter rules: its pre-receive hook's reason comes back in one error."""
    rid = f"admin/strict-{uuid.uuid4().hex[:8]}"
    dest.create_repo("model", rid)  # the session hub: files under 10 MiB may be regular files
    dest.commit("model", rid, [Add("notes.txt", os.urandom(5000))], "a 5 kB regular file")
    with HubClient(src.endpoint, src.admin_token) as strict:  # the source hub of this module: 1 KiB and up is LFS
        with pytest.raises(HubfsError, match=r"refused refs/heads/main .*notes\.txt.* Git LFS"):
            mirror(f"{hub.endpoint}/{rid}", strict, src_token=hub.admin_token, work_dir=tmp_path / "w")
        assert _refs(src.endpoint, src.admin_token, rid)["refs/heads/main"] != dest.resolve("model", rid)
