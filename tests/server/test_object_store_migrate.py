"""``hubfs storage migrate --to s3://...``: a one-machine hub's LFS objects move into S3 (moto's server),
verified, resumable and idempotent; afterwards every repo keeps its sha and every file its bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer
from huggingface_hub import HfApi, constants, hf_hub_download
from moto_s3 import s3_server


@pytest.fixture(autouse=True)
def _lfs_uploads(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def _hubfs(data: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args, "--data", str(data)], check=False, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


def _local_objects(data: Path) -> list[Path]:
    return [p for p in (data / "lfs").glob("*/*/*") if p.is_file()]


def test_migrate_keeps_every_repo_sha_and_file(tmp_path):
    data = tmp_path / "hub"
    with s3_server(tmp_path) as s3:
        bucket = s3.bucket()
        url = f"s3://{bucket}/moved"
        hub = HubServer(data, "--regular-max-size", "1k", env=s3.hub_env).start()
        api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
        files: dict[tuple[str, str], dict[str, bytes]] = {}
        for repo_type in ("model", "dataset"):
            repo_id = f"admin/m-{uuid.uuid4().hex[:8]}"
            api.create_repo(repo_id, repo_type=repo_type)
            content = {"a.bin": os.urandom(20_000), "sub/b.bin": os.urandom(30_000), "notes.txt": b"small\n"}
            for path, data_bytes in content.items():
                api.upload_file(path_or_fileobj=data_bytes, path_in_repo=path, repo_id=repo_id, repo_type=repo_type)
            files[(repo_type, repo_id)] = content
        shas = {key: api.repo_info(key[1], repo_type=key[0]).sha for key in files}
        hub.stop()
        assert len(_local_objects(data)) == 4

        refused = _hubfs(data, s3.hub_env, "serve", "--port", "0", "--object-store", url,
                         "--s3-endpoint-url", s3.endpoint)
        assert refused.returncode == 1 and "hubfs storage migrate" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1

        victim = max(_local_objects(data))  # the last one moved: the others go first (an interrupted run)
        good = victim.read_bytes()
        victim.write_bytes(bytes(len(good)))  # same size, wrong bytes
        bad = _hubfs(data, s3.hub_env, "storage", "migrate", "--to", url, "--s3-endpoint-url", s3.endpoint)
        assert bad.returncode == 1 and "corrupt" in bad.stderr
        assert not (data / "object-store.json").exists(), "nothing switched"
        victim.write_bytes(good)

        first = _hubfs(data, s3.hub_env, "storage", "migrate", "--to", url, "--s3-endpoint-url", s3.endpoint)
        assert first.returncode == 0, first.stderr
        assert "moved 1 objects" in first.stdout and "3 were there already" in first.stdout, "resumed"
        assert "4 local copies removed" in first.stdout
        assert _local_objects(data) == []
        keys = s3.keys(bucket, "moved/lfs/")
        assert len(keys) == 4
        for key in keys:
            oid = key.rsplit("/", 1)[1]
            assert hashlib.sha256(s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest() == oid

        again = _hubfs(data, s3.hub_env, "storage", "migrate", "--to", url)  # the endpoint is remembered
        assert again.returncode == 0, again.stderr
        assert "moved 0 objects (0 bytes)" in again.stdout, "idempotent"

        swept = _hubfs(data, s3.hub_env, "gc", "--grace", "0")  # gc never deletes in the bucket
        assert swept.returncode == 0, swept.stderr
        assert s3.keys(bucket, "moved/lfs/") == keys

        hub = HubServer(data, env=s3.hub_env).start()  # the data folder remembers its store: no flag needed
        try:
            api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
            for (repo_type, repo_id), content in files.items():
                assert api.repo_info(repo_id, repo_type=repo_type).sha == shas[(repo_type, repo_id)]
                assert sorted(api.list_repo_files(repo_id, repo_type=repo_type)) == sorted([*content, ".gitattributes"])
                for path, want in content.items():
                    got = hf_hub_download(repo_id, path, repo_type=repo_type, endpoint=hub.endpoint,
                                          token=hub.admin_token, cache_dir=tmp_path / "cache")
                    assert Path(got).read_bytes() == want
            repo_id = next(rid for t, rid in files if t == "model")
            r = httpx.head(f"{hub.endpoint}/{repo_id}/resolve/main/a.bin",
                           headers={"authorization": f"Bearer {hub.admin_token}"})
            assert r.status_code == 302 and r.headers["location"].startswith(s3.endpoint)
        finally:
            hub.stop()

        other = _hubfs(data, s3.hub_env, "serve", "--port", "0", "--object-store", f"s3://{bucket}/elsewhere")
        assert other.returncode == 1 and "uses the object store" in other.stderr
