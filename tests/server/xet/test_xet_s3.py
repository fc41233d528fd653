"""Xet in S3-compatible storage (moto's standalone server, plain S3 through boto3): with
``--object-store s3://...`` the official client's default uploads (hf_xet through huggingface_hub) put
xorbs and shards in the bucket, and Xet downloads read xorb ranges through presigned GETs of the
bucket's objects, each signed for its one range, so the bytes never pass through the hub.
``hubfs storage migrate --to s3://`` moves a one-machine hub's Xet data too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hub_server import HubServer, RequestLog
from huggingface_hub import HfApi, constants, hf_hub_download

sys.path.insert(0, str(Path(__file__).parent.parent))
from moto_s3 import S3Server, s3_server


@pytest.fixture(autouse=True)
def _xet_uploads(monkeypatch):
    """The client's default: Xet on."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_hub(s3: S3Server, tmp_path_factory):
    """A hub whose objects live in ``s3://BUCKET/hub`` (requests logged); yields (hub, bucket, log)."""
    bucket = s3.bucket()
    root = tmp_path_factory.mktemp("xets3")
    log = RequestLog(root / "requests.log")
    server = HubServer(root / "hub", "--object-store", f"s3://{bucket}/hub", "--s3-endpoint-url", s3.endpoint,
                       env={**s3.hub_env, "HUBFS_REQUEST_LOG": str(log.path)}).start()
    yield server, bucket, log
    server.stop()


def _repo(hub: HubServer) -> tuple[HfApi, str]:
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    repo_id = f"admin/xs3-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    return api, repo_id


def _xet_keys(s3: S3Server, bucket: str, prefix: str) -> dict[str, int]:
    return {k: v for k, v in s3.keys(bucket, prefix).items() if "/xet/" in k}


def test_official_client_xet_round_trip_through_the_bucket(s3, s3_hub, tmp_path):
    hub, bucket, log = s3_hub
    api, repo_id = _repo(hub)
    data = os.urandom(3 << 20) + bytes(1 << 20)  # several chunks, some compressible
    before = _xet_keys(s3, bucket, "hub/xet/")
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo_id)

    added = set(_xet_keys(s3, bucket, "hub/xet/")) - set(before)
    assert any(k.startswith("hub/xet/xorbs/") for k in added), "the xorbs went to the bucket"
    assert any(k.startswith("hub/xet/shards/") for k in added), "and the shard"
    oid = hashlib.sha256(data).hexdigest()
    assert f"hub/lfs/{oid[:2]}/{oid[2:4]}/{oid}" not in s3.keys(bucket, "hub/lfs/"), "content stored once, as xorbs"

    log.clear()
    got = hf_hub_download(repo_id, "w.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == data
    assert log.count(r"^GET /cas/[^/]+/v\d/reconstructions/"), "hf_xet asked the hub for the reconstruction"
    assert not log.count(r"^GET /cas/[^/]+/xorb/"), "and read no xorb bytes through the hub"


def _reconstruction(hub: HubServer, repo_id: str, path: str, version: int, rng: str | None = None) -> dict:
    auth = {"authorization": f"Bearer {hub.admin_token}"}
    head = httpx.head(f"{hub.endpoint}/{repo_id}/resolve/main/{path}", headers=auth)
    xet_hash = head.headers["x-xet-hash"]
    token = httpx.get(f"{hub.endpoint}/api/models/{repo_id}/xet-read-token/main", headers=auth).json()
    headers = {"authorization": f"Bearer {token['accessToken']}", **({"range": rng} if rng else {})}
    r = httpx.get(f"{token['casUrl']}/v{version}/reconstructions/{xet_hash}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("version", [1, 2])
def test_reconstruction_urls_are_presigned_for_one_range_each(s3, s3_hub, version):
    hub, bucket, _ = s3_hub
    api, repo_id = _repo(hub)
    data = os.urandom(2 << 20)
    api.upload_file(path_or_fileobj=data, path_in_repo="r.bin", repo_id=repo_id)
    body = _reconstruction(hub, repo_id, "r.bin", version, rng=f"bytes=100000-{len(data) - 100001}")
    fetches = body["fetch_info" if version == 1 else "xorbs"]
    out = bytearray()
    for term in body["terms"]:
        for entry in fetches[term["hash"]]:
            if version == 1:
                a, b = entry["url_range"]["start"], entry["url_range"]["end"]
            else:
                [rng] = entry["ranges"]
                a, b = rng["bytes"]["start"], rng["bytes"]["end"]
            url = entry["url"]
            parts = urlsplit(url)
            assert url.startswith(f"{s3.endpoint}/{bucket}/hub/xet/xorbs/"), "a GET of the bucket's object itself"
            query = parse_qs(parts.query)
            assert "range" in query["X-Amz-SignedHeaders"][0].split(";"), "the signature covers the Range header"
            assert "authorization" not in url.lower() and hub.admin_token not in url
            r = httpx.get(url, headers={"range": f"bytes={a}-{b}"})
            assert r.status_code == 206 and len(r.content) == b - a + 1
            out += _content(r.content)
    assert data[100000:100000 + 65536] in out, "the ranges hold the file's chunks, as scheme-0 chunk streams"


def _content(stream: bytes) -> bytes:
    """The chunk contents of a scheme-0 chunk stream (8-byte headers: version, u24 size, scheme, u24 size)."""
    out, pos = bytearray(), 0
    while pos < len(stream):
        size = int.from_bytes(stream[pos + 1:pos + 4], "little")
        assert stream[pos + 4] == 0, "stored uncompressed"
        out += stream[pos + 8:pos + 8 + size]
        pos += 8 + size
    return bytes(out)


def test_plain_download_of_a_xet_file_after_the_local_cache_is_gone(s3, s3_hub, tmp_path):
    """Another host has no local copy: the hub reads the xorbs from the bucket (its local folder is a cache)."""
    hub, _, _ = s3_hub
    api, repo_id = _repo(hub)
    data = os.urandom(1 << 20)
    api.upload_file(path_or_fileobj=data, path_in_repo="c.bin", repo_id=repo_id)
    shutil.rmtree(hub.data_dir / "xet" / "xorbs")
    (hub.data_dir / "xet" / "xorbs").mkdir()
    r = httpx.get(f"{hub.endpoint}/{repo_id}/resolve/main/c.bin", headers={"authorization": f"Bearer {hub.admin_token}"})
    assert r.status_code == 200 and r.content == data
    r = httpx.get(f"{hub.endpoint}/{repo_id}/resolve/main/c.bin",
                  headers={"authorization": f"Bearer {hub.admin_token}", "range": "bytes=5000-70000"})
    assert r.status_code == 206 and r.content == data[5000:70001]
    got = hf_hub_download(repo_id, "c.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == data


def _hubfs(data: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args, "--data", str(data)], check=False,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def test_storage_migrate_moves_xet_data(tmp_path):
    data_dir = tmp_path / "hub"
    with s3_server(tmp_path) as s3:
        bucket = s3.bucket()
        hub = HubServer(data_dir, env=s3.hub_env).start()
        try:
            api, repo_id = _repo(hub)
            data = os.urandom(2 << 20)
            api.upload_file(path_or_fileobj=data, path_in_repo="m.bin", repo_id=repo_id)
            sha = api.model_info(repo_id).sha
        finally:
            hub.stop()
        local_xorbs = [p for p in (data_dir / "xet" / "xorbs").glob("*/*") if p.is_file()]
        assert local_xorbs
        url = f"s3://{bucket}/moved"
        out = _hubfs(data_dir, s3.hub_env, "storage", "migrate", "--to", url, "--s3-endpoint-url", s3.endpoint)
        assert out.returncode == 0, out.stderr
        keys = s3.keys(bucket, "moved/xet/")
        assert {f"moved/xet/xorbs/{p.parent.name}/{p.name}" for p in local_xorbs} <= set(keys)
        assert any(k.startswith("moved/xet/shards/") for k in keys)
        assert not [p for p in (data_dir / "xet" / "xorbs").glob("*/*") if p.is_file()], "local copies removed"
        again = _hubfs(data_dir, s3.hub_env, "storage", "migrate", "--to", url)
        assert again.returncode == 0, again.stderr  # idempotent

        log = RequestLog(tmp_path / "requests.log")
        hub = HubServer(data_dir, "--object-store", url, env={**s3.hub_env, "HUBFS_REQUEST_LOG": str(log.path)}).start()
        try:
            api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
            assert api.model_info(repo_id).sha == sha
            got = hf_hub_download(repo_id, "m.bin", endpoint=hub.endpoint, token=hub.admin_token,
                                  cache_dir=tmp_path / "c")
            assert Path(got).read_bytes() == data
            assert log.count(r"^GET /cas/[^/]+/v\d/reconstructions/") and not log.count(r"^GET /cas/[^/]+/xorb/")
        finally:
            hub.stop()


def _sigv4_presigned_ok(url: str, headers: dict[str, str], secret: str, now: float) -> bool:
    """What S3 checks on a presigned GET (SigV4, query string): the signature over the method, path,
    query, signed headers (with the values the client sends) and the expiry. moto does not check
    presigned URLs at all (its auth check reads only an Authorization header), so the tests do it here."""
    import calendar
    import hmac
    from urllib.parse import quote

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    signature = query.pop("X-Amz-Signature", "")
    amz_date, scope = query["X-Amz-Date"], query["X-Amz-Credential"].split("/", 1)[1]
    issued = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    if now > issued + int(query["X-Amz-Expires"]):
        return False
    signed = query["X-Amz-SignedHeaders"].split(";")
    values = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    canonical = "\n".join(["GET", parts.path, canonical_query, "".join(f"{h}:{values.get(h, '')}\n" for h in signed),
                           ";".join(signed), "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


def test_presigned_xorb_urls_hold_only_for_their_range_and_hour(s3, s3_hub):
    hub, _, _ = s3_hub
    api, repo_id = _repo(hub)
    api.upload_file(path_or_fileobj=os.urandom(1 << 20), path_in_repo="p.bin", repo_id=repo_id)
    body = _reconstruction(hub, repo_id, "p.bin", 1)
    entry = next(iter(body["fetch_info"].values()))[0]
    url, a, b = entry["url"], entry["url_range"]["start"], entry["url_range"]["end"]
    secret, now = s3.hub_env["AWS_SECRET_ACCESS_KEY"], time.time()
    right = {"range": f"bytes={a}-{b}"}
    assert _sigv4_presigned_ok(url, right, secret, now), "a valid SigV4 presigned GET"
    assert not _sigv4_presigned_ok(url, {"range": f"bytes={a + 1}-{b}"}, secret, now), "another range is refused"
    assert not _sigv4_presigned_ok(url, {}, secret, now), "so is the whole object"
    sig = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    assert not _sigv4_presigned_ok(url.replace(sig, sig[::-1]), right, secret, now), "a tampered signature"
    assert not _sigv4_presigned_ok(url.replace("/xet/xorbs/", "/xet/xorbz/"), right, secret, now), "another key"
    assert _sigv4_presigned_ok(url, right, secret, now + 3500)
    assert not _sigv4_presigned_ok(url, right, secret, now + 3700), "expired after an hour"
