"""``hf jobs uv run script.py`` with LOCAL files through the unmodified official CLI (the main venv's
huggingface_hub and 1.33.0): the client uploads them to the caller's ``jobs-artifacts`` bucket over Xet
and runs ``uv run /data/script.py`` with that bucket folder as a volume; and the bucket API's access rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

sys.path.insert(0, str(Path(__file__).parents[2] / "compat"))
from test_client_versions import client_python  # the venv of an older client, made as scripts/test.sh does

SCRIPT = """# /// script
# dependencies = ["huggingface_hub"]
# ///
import os, sys
config = open(sys.argv[1]).read().strip()
print("ran", os.path.basename(__file__), "config:", config, "args:", sys.argv[2:], "job:", os.environ["JOB_ID"])
"""


@pytest.mark.parametrize("version", ["2.4.0", "1.33.0"])
def test_hf_jobs_uv_run_ships_local_files(jobs_hub, tmp_path: Path, version: str) -> None:  # type: ignore[no-untyped-def]
    python = client_python(version)
    marker = uuid.uuid4().hex[:8]
    (tmp_path / "train job.py").write_text(SCRIPT)  # a space: the client renames it train_job.py
    (tmp_path / "cfg.yaml").write_text(f"lr: {marker}\n")
    env = {**os.environ, "HF_ENDPOINT": jobs_hub.endpoint, "HF_TOKEN": jobs_hub.alice_token,
           "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": "",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_EXPERIMENTAL_WARNING": "1", "NO_COLOR": "1"}
    hf = str(Path(python).with_name("hf"))
    done = subprocess.run([hf, "jobs", "uv", "run", "--with", "huggingface_hub", "train job.py", "cfg.yaml", "--epochs",
                           "2"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"ran train_job.py config: lr: {marker} args: ['--epochs', '2'] job:" in done.stdout, done.stdout[-2000:]
    # the files are in alice's private jobs-artifacts bucket, readable by her only
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    bucket = f"{jobs_hub.alice}/jobs-artifacts"
    info = api.bucket_info(bucket)
    assert info.private and info.total_files >= 2
    names = {f.path.rsplit("/", 1)[-1] for f in api.list_bucket_tree(bucket, recursive=True)}
    assert {"train_job.py", "cfg.yaml"} <= names
    job_id = re.search(r"\bid: ([0-9a-f]{24})", done.stdout)
    assert job_id, done.stdout[-2000:]
    job = api.inspect_job(job_id=job_id.group(1))
    assert job.command[:2] == ["uv", "run"] and job.command[-4:-2] == ["/data/train_job.py", "/data/cfg.yaml"]


def test_bucket_is_private_to_its_namespace(jobs_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice: HfApi = jobs_hub.api(jobs_hub.alice_token)
    bob: HfApi = jobs_hub.api(jobs_hub.bob_token)
    bucket = f"{jobs_hub.alice}/secret-{uuid.uuid4().hex[:6]}"
    alice.create_bucket(bucket, private=True)
    (tmp_path / "s.txt").write_text("alice's secret")
    alice.batch_bucket_files(bucket, add=[(tmp_path / "s.txt", "dir/s.txt")])
    with pytest.raises(HfHubHTTPError) as err:
        bob.bucket_info(bucket)
    assert err.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as err:  # bob may not create in alice's namespace
        bob.create_bucket(f"{jobs_hub.alice}/bobs")
    assert err.value.response.status_code == 403
    headers = {"authorization": f"Bearer {jobs_hub.bob_token}"}
    r = httpx.get(f"{jobs_hub.endpoint}/buckets/{bucket}/resolve/dir/s.txt", headers=headers)
    assert r.status_code == 404
    r = httpx.get(f"{jobs_hub.endpoint}/buckets/{bucket}/resolve/dir/s.txt",
                  headers={"authorization": f"Bearer {jobs_hub.alice_token}"})
    assert r.status_code == 200 and r.content == b"alice's secret"
    top = {(type(x).__name__, x.path) for x in alice.list_bucket_tree(bucket)}
    assert top == {("BucketFolder", "dir")}
    assert [x.path for x in alice.list_bucket_tree(bucket, prefix="dir")] == ["dir/s.txt"]
    # a job of bob's cannot mount alice's bucket: it does not exist for him
    volume = [{"type": "bucket", "source": bucket, "mountPath": "/data"}]
    r = httpx.post(f"{jobs_hub.endpoint}/api/jobs/{jobs_hub.bob}", headers=headers,
                   json={"dockerImage": "python:3.12", "command": ["python", "-c", "1"], "volumes": volume})
    assert r.status_code == 404, r.text
    # nor name a file of hers by its Xet hash in his own bucket (he never uploaded it)
    xet_hash = next(f for f in alice.list_bucket_tree(bucket, recursive=True) if f.path == "dir/s.txt").xet_hash
    own = f"{jobs_hub.bob}/own-{uuid.uuid4().hex[:6]}"
    bob.create_bucket(own)
    line = b'{"type": "addFile", "path": "stolen.txt", "xetHash": "%s", "mtime": 0}\n' % xet_hash.encode()
    r = httpx.post(f"{jobs_hub.endpoint}/api/buckets/{own}/batch", headers=headers, content=line)
    assert r.status_code == 422 and r.json()["failed"][0]["path"] == "stolen.txt", r.text
    assert bob.bucket_info(own).total_files == 0


@pytest.mark.parametrize(("volume", "message"), [
    ({"type": "model", "source": "a/b", "mountPath": "/data"}, "bucket volumes are"),
    ({"type": "bucket", "source": "a/b", "mountPath": "data"}, "mountPath must be an absolute"),
    ({"type": "bucket", "source": "a/b", "mountPath": "/data/../etc"}, "mountPath must be an absolute"),
    ({"type": "bucket", "source": "a/b", "mountPath": "/data", "path": "../x"}, "folder inside the bucket"),
])
def test_bad_volume_is_refused(jobs_hub, volume: dict[str, str], message: str) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{jobs_hub.endpoint}/api/jobs/{jobs_hub.alice}",
                   headers={"authorization": f"Bearer {jobs_hub.alice_token}"},
                   json={"dockerImage": "python:3.12", "command": ["python", "-c", "1"], "volumes": [volume]})
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_hubfs_jobs_uv_run_ships_local_files(jobs_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = uuid.uuid4().hex[:8]
    (tmp_path / "job.py").write_text(SCRIPT)
    (tmp_path / "cfg.yaml").write_text(f"lr: {marker}\n")
    env = {**os.environ, "HF_ENDPOINT": jobs_hub.endpoint, "HF_TOKEN": jobs_hub.alice_token,
           "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_EXPERIMENTAL_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "hubfs.cli", "jobs", "uv", "run", "--with", "huggingface_hub",
                           "--timeout", "2m", "job.py", "cfg.yaml", "x"], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"ran job.py config: lr: {marker} args: ['x'] job:" in done.stdout, done.stdout[-2000:]
    job_id = re.search(r"Job started: \S+/([0-9a-f]{24})", done.stderr)
    assert job_id, done.stderr[-2000:]
    job = jobs_hub.api(jobs_hub.alice_token).inspect_job(job_id=job_id.group(1))
    assert job.status.stage == "COMPLETED" and job.command[-3:] == ["/data/job.py", "/data/cfg.yaml", "x"]
