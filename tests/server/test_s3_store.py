"""LFS objects in S3-compatible storage (moto's standalone server, plain S3 through boto3).

The official client uploads straight into the bucket (presigned PUT, or presigned multipart parts),
the hub promotes an upload only once its bytes hash to the declared oid, and downloads answer with a
redirect to a presigned GET that carries the Hub's metadata headers and never the token.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer
from huggingface_hub import HfApi, constants, hf_hub_download
from moto_s3 import S3Server, s3_server

CHUNK = 5 << 20  # S3's smallest multipart part


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_hub(s3: S3Server, tmp_path_factory):
    """A hub whose LFS objects live in ``s3://BUCKET/hub``; yields (hub, bucket)."""
    bucket = s3.bucket()
    server = HubServer(tmp_path_factory.mktemp("s3hub") / "hub", "--object-store", f"s3://{bucket}/hub",
                       "--s3-endpoint-url", s3.endpoint, "--regular-max-size", "1k",
                       "--multipart-chunk-size", str(CHUNK), env=s3.hub_env).start()
    yield server, bucket
    server.stop()


@pytest.fixture(autouse=True)
def _lfs_uploads(monkeypatch):
    """Upload through the LFS batch API (whole objects in the object store), not Xet."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def _repo(hub: HubServer) -> tuple[HfApi, str]:
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    repo_id = f"admin/s3-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    return api, repo_id


def _key(oid: str) -> str:
    return f"hub/lfs/{oid[:2]}/{oid[2:4]}/{oid}"


def test_official_client_round_trip_basic_and_multipart(s3, s3_hub, tmp_path):
    hub, bucket = s3_hub
    api, repo_id = _repo(hub)
    small, big = os.urandom(200_000), os.urandom(2 * CHUNK + 12345)  # basic PUT; 3 presigned parts
    api.upload_file(path_or_fileobj=small, path_in_repo="small.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=big, path_in_repo="weights/big.bin", repo_id=repo_id)

    keys = s3.keys(bucket, "hub/")
    for data in (small, big):
        oid = hashlib.sha256(data).hexdigest()
        assert keys.get(_key(oid)) == len(data), "the object lives in the bucket"
        assert not (hub.data_dir / "lfs" / oid[:2] / oid[2:4] / oid).exists(), "and not on local disk"
    assert not [k for k in keys if k.startswith("hub/staging/")], "verified uploads leave no staging behind"
    assert not s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "no open multipart upload"

    for name, data in (("small.bin", small), ("weights/big.bin", big)):
        got = hf_hub_download(repo_id, name, endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == data


def test_resolve_redirects_to_a_presigned_get(s3, s3_hub):
    hub, _ = s3_hub
    api, repo_id = _repo(hub)
    data = os.urandom(50_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="model.bin", repo_id=repo_id)
    oid, sha = hashlib.sha256(data).hexdigest(), api.model_info(repo_id).sha
    auth = {"authorization": f"Bearer {hub.admin_token}"}
    for method in ("HEAD", "GET"):
        r = httpx.request(method, f"{hub.endpoint}/{repo_id}/resolve/main/model.bin", headers=auth)
        assert r.status_code == 302
        assert r.headers["X-Linked-Size"] == str(len(data)) and r.headers["ETag"] == f'"{oid}"'
        assert r.headers["X-Repo-Commit"] == sha
        location = r.headers["location"]
        assert location.startswith(s3.endpoint + "/") and "X-Amz-Signature=" in location and "X-Amz-Expires=" in location
        assert hub.admin_token not in location
    assert httpx.get(location).content == data, "the store serves the bytes without the hub's token"

    batch = httpx.post(f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch", headers=auth,
                       json={"operation": "download", "objects": [{"oid": oid, "size": len(data)}]}).json()
    href = batch["objects"][0]["actions"]["download"]["href"]
    assert href.startswith(s3.endpoint + "/") and httpx.get(href).content == data


def test_hubfs_client_follows_the_redirect_without_the_token(s3_hub, tmp_path):
    hub, _ = s3_hub
    api, repo_id = _repo(hub)
    data = os.urandom(70_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="x.bin", repo_id=repo_id)
    code = ("import sys; from hubfs.fs import HubFileSystem; "
            "sys.stdout.buffer.write(HubFileSystem().cat_file(sys.argv[1]))")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.admin_token, "HF_HOME": str(tmp_path / "h")}
    out = subprocess.run([sys.executable, "-c", code, f"hf://{repo_id}/x.bin"], env=env, capture_output=True,
                         check=True, timeout=60)
    assert out.stdout == data


def test_hubfs_client_uploads_straight_into_the_store(s3, s3_hub, tmp_path):
    hub, bucket = s3_hub
    _, repo_id = _repo(hub)
    small, big = os.urandom(30_000), os.urandom(CHUNK + 777)
    (tmp_path / "big.bin").write_bytes(big)
    code = ("import sys; from hubfs.fs import HubFileSystem; fs = HubFileSystem(); "
            "fs.pipe_file(sys.argv[1] + '/small.bin', sys.stdin.buffer.read()); "
            "fs.put_file(sys.argv[2], sys.argv[1] + '/big.bin')")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.admin_token, "HF_HOME": str(tmp_path / "h")}
    subprocess.run([sys.executable, "-c", code, f"hf://{repo_id}", str(tmp_path / "big.bin")], input=small, env=env,
                   capture_output=True, check=True, timeout=120)
    keys = s3.keys(bucket, "hub/")
    for data in (small, big):
        assert keys.get(_key(hashlib.sha256(data).hexdigest())) == len(data)
    got = hf_hub_download(repo_id, "big.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == big


def _batch_upload(hub: HubServer, repo_id: str, oid: str, size: int, multipart: bool = False) -> dict:
    r = httpx.post(f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch",
                   headers={"authorization": f"Bearer {hub.admin_token}"},
                   json={"operation": "upload", "transfers": ["basic", "multipart"] if multipart else ["basic"],
                         "objects": [{"oid": oid, "size": size}]})
    r.raise_for_status()
    return r.json()["objects"][0]["actions"]


def _commit_lfs(hub: HubServer, repo_id: str, oid: str, size: int) -> httpx.Response:
    lines = ['{"key":"header","value":{"summary":"add"}}',
             f'{{"key":"lfsFile","value":{{"path":"f.bin","algo":"sha256","oid":"{oid}","size":{size}}}}}']
    return httpx.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main", content="\n".join(lines),
                      headers={"authorization": f"Bearer {hub.admin_token}", "content-type": "application/x-ndjson"})


@pytest.mark.parametrize("wrong", ["content", "size"])
def test_verify_refuses_a_wrong_object_and_deletes_it(s3, s3_hub, wrong):
    hub, bucket = s3_hub
    _, repo_id = _repo(hub)
    data = os.urandom(40_000)
    oid = hashlib.sha256(data).hexdigest()
    actions = _batch_upload(hub, repo_id, oid, len(data))
    sent = os.urandom(len(data)) if wrong == "content" else data + b"x"
    assert httpx.put(actions["upload"]["href"], content=sent).status_code == 200  # the store takes anything
    r = httpx.post(actions["verify"]["href"], json={"oid": oid, "size": len(data)})
    assert r.status_code == 400 and r.headers["X-Error-Code"] == "IntegrityError"
    assert not s3.keys(bucket, "hub/staging/") and _key(oid) not in s3.keys(bucket, "hub/"), "deleted, never promoted"
    assert _commit_lfs(hub, repo_id, oid, len(data)).status_code >= 400, "no commit may reference it"
    # the same upload, done right, then goes through
    actions = _batch_upload(hub, repo_id, oid, len(data))
    assert httpx.put(actions["upload"]["href"], content=data).status_code == 200
    assert httpx.post(actions["verify"]["href"], json={"oid": oid, "size": len(data)}).status_code == 200
    assert _commit_lfs(hub, repo_id, oid, len(data)).status_code == 200


def test_multipart_parts_that_do_not_hash_to_the_oid_are_refused(s3, s3_hub):
    hub, bucket = s3_hub
    _, repo_id = _repo(hub)
    size = CHUNK + 1000
    oid = hashlib.sha256(b"not these bytes").hexdigest()
    actions = _batch_upload(hub, repo_id, oid, size, multipart=True)
    header = actions["upload"]["header"]
    parts = []
    for n, length in ((1, CHUNK), (2, size - CHUNK)):
        r = httpx.put(header[str(n)], content=os.urandom(length))
        assert r.status_code == 200
        parts.append({"partNumber": n, "etag": r.headers["etag"]})
    r = httpx.post(actions["upload"]["href"], json={"oid": oid, "parts": parts})
    assert r.status_code == 400 and r.headers["X-Error-Code"] == "IntegrityError"
    assert not s3.keys(bucket, "hub/staging/") and _key(oid) not in s3.keys(bucket, "hub/")


def test_tampered_hub_signed_urls_are_refused(s3_hub):
    """The hub's own links around a presigned upload (verify, completion) are HMAC-signed: changing the
    staging id or S3's upload id they name is refused. (moto does not check presigned signatures or
    expiry on its side; AWS S3 and MinIO do.)"""
    hub, _ = s3_hub
    _, repo_id = _repo(hub)
    size = CHUNK + 1
    oid = hashlib.sha256(b"x").hexdigest()
    actions = _batch_upload(hub, repo_id, oid, size, multipart=True)
    verify = actions["verify"]["href"]
    other = str(uuid.uuid4())
    tampered = verify.replace(verify.split("upload=")[1].split("&")[0], other)
    assert httpx.post(tampered, json={"oid": oid, "size": size}).status_code == 401
    complete = actions["upload"]["href"]
    assert httpx.post(complete.replace("s3=", "s3=x"), json={"oid": oid, "parts": []}).status_code == 401
    presigned = actions["upload"]["header"]["1"]
    assert "X-Amz-Expires=86400" in presigned and hub.admin_token not in presigned


def test_git_lfs_push_and_clone_through_the_store(s3, s3_hub, tmp_path):
    """Stock git + git-lfs: the push's objects go to the bucket through presigned PUTs (the pre-receive
    hook finds them there), and a fresh clone downloads them through presigned GETs."""
    hub, bucket = s3_hub
    _, repo_id = _repo(hub)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")

    def git(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=120)

    git("config", "--global", "user.name", "T")
    git("config", "--global", "user.email", "t@example.com")
    git("lfs", "install", "--skip-repo")
    remote = f"http://user:{hub.admin_token}@{hub.endpoint.split('://', 1)[1]}/{repo_id}"
    work, clone = tmp_path / "work", tmp_path / "clone"
    git("clone", "-q", remote, str(work))
    git("lfs", "track", "*.bin", cwd=work)
    weights = os.urandom(300_000)
    (work / "w.bin").write_bytes(weights)
    git("add", ".gitattributes", "w.bin", cwd=work)
    git("commit", "-q", "-m", "weights", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    assert _key(hashlib.sha256(weights).hexdigest()) in s3.keys(bucket, "hub/lfs/")
    git("clone", "-q", remote, str(clone))
    assert (clone / "w.bin").read_bytes() == weights


def test_xet_uploads_still_work_beside_the_store(s3, s3_hub, tmp_path, monkeypatch):
    """The official client's default (Xet) keeps its xorbs in the bucket too; resolve serves them."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    hub, _ = s3_hub
    api, repo_id = _repo(hub)
    data = os.urandom(120_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="x.bin", repo_id=repo_id)
    r = httpx.get(f"{hub.endpoint}/{repo_id}/resolve/main/x.bin", headers={"authorization": f"Bearer {hub.admin_token}"})
    assert r.status_code == 200 and r.content == data
    got = hf_hub_download(repo_id, "x.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == data


def test_expired_staged_uploads_are_cleaned(s3, s3_hub, monkeypatch):
    """Uploads that were never verified (and multipart uploads never completed) are removed once their
    signed links expired; younger ones are kept."""
    from hubfs.server.s3_store import S3ObjectStore

    hub, bucket = s3_hub
    for name, value in s3.hub_env.items():
        monkeypatch.setenv(name, value)
    store = S3ObjectStore(bucket, "hub", endpoint_url=s3.endpoint)
    store.clean_staging(time.time() + 60)  # what earlier tests left behind
    _, repo_id = _repo(hub)
    data = os.urandom(1000)
    actions = _batch_upload(hub, repo_id, hashlib.sha256(data).hexdigest(), len(data))
    assert httpx.put(actions["upload"]["href"], content=data).status_code == 200  # never verified
    _batch_upload(hub, repo_id, hashlib.sha256(b"big").hexdigest(), CHUNK + 1, multipart=True)  # never completed
    assert store.clean_staging(time.time() - 3600) == (0, 0)
    assert s3.keys(bucket, "hub/staging/") and s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert store.clean_staging(time.time() + 60) == (2, len(data))
    assert not s3.keys(bucket, "hub/staging/") and not s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads")
