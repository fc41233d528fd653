"""The Jobs API of ``hubfs serve --jobs`` through the unmodified official client (``HfApi.run_job`` & co)."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import BadRequestError, HfHubHTTPError, JobNotFoundError

sys.path.insert(0, str(Path(__file__).parents[2]))
from hub_server import HubServer

PUSH = """
import os
from huggingface_hub import HfApi
api = HfApi()  # HF_ENDPOINT and HF_TOKEN come from the job's environment
info = api.upload_file(path_or_fileobj=b"written by job " + os.environ["JOB_ID"].encode(), path_in_repo="out.txt",
                       repo_id=os.environ["REPO"], commit_message="from the job")
print("pushed", info.oid)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_job_pushes_a_file_with_its_token(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    repo = f"{jobs_hub.alice}/out-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo, private=True)
    job = api.run_job(image="python:3.12", command=["python", "-c", PUSH], env={"REPO": repo})
    assert job.owner.name == jobs_hub.alice and job.status.stage in ("SCHEDULING", "RUNNING")
    final = api.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    logs = list(api.fetch_job_logs(job_id=job.id))
    assert final.status.stage == "COMPLETED", logs
    commit = api.list_repo_commits(repo)[0]
    assert commit.title == "from the job" and any(line.startswith("pushed ") for line in logs), logs
    path = api.hf_hub_download(repo, "out.txt", cache_dir=str(jobs_hub.server.data_dir.parent / "cache"))
    assert Path(path).read_bytes() == f"written by job {job.id}".encode()
    assert final.started_at and final.finished_at and final.durations.total_secs is not None
    # the token the job got was minted for it and dies with it
    assert f"job-{job.id}" not in jobs_hub.server.cli("token", "list", jobs_hub.alice)


def test_logs_stream_live_and_cancel_kills_the_group(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    script = "sleep 1000 & echo child $!; echo main $$; sleep 1000"
    job = api.run_job(image="ubuntu", command=["sh", "-c", script])
    lines: list[str] = []
    ended = threading.Event()

    def follow() -> None:
        lines.extend(api.fetch_job_logs(job_id=job.id, follow=True))  # extend appends as lines arrive
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: len(lines) >= 2)
    assert api.inspect_job(job_id=job.id).status.stage == "RUNNING"  # the lines came while it runs
    pids = [int(line.split()[1]) for line in lines[:2]]
    assert all(alive(p) for p in pids)
    sample = next(iter(api.fetch_job_metrics(job_id=job.id)))  # the group's live use, as `hf jobs stats` shows
    assert sample["memory_used_bytes"] > 0 and sample["memory_total_bytes"] == 16 << 30
    api.cancel_job(job_id=job.id)
    assert api.inspect_job(job_id=job.id).status.stage == "CANCELED"
    wait_until(lambda: not any(alive(p) for p in pids), 10)
    assert ended.wait(15), "the log stream did not end with the job"
    assert list(api.fetch_job_metrics(job_id=job.id)) == []  # not running: nothing to sample


def test_time_limit(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    start = time.monotonic()
    job = api.run_job(image="ubuntu", command=["sleep", "60"], timeout=2)
    final = api.wait_for_job(job.id, timeout=30, poll_interval=0.2)
    assert final.status.stage == "ERROR" and "timeout" in (final.status.message or "").lower()
    assert time.monotonic() - start < 20


def test_failed_command_is_error_with_exit_code(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    job = api.run_job(image="python:3.12", command=["python", "-c", "import sys; print('oops'); sys.exit(3)"])
    final = api.wait_for_job(job.id, timeout=30, poll_interval=0.2)
    assert final.status.stage == "ERROR" and "exit code: 3" in (final.status.message or "")
    assert "oops" in list(api.fetch_job_logs(job_id=job.id))
    assert list(api.fetch_job_logs(job_id=job.id, tail=1)) == ["Job failed with exit code: 3"]
    again = api.rerun_job(job_id=job.id)
    assert again.id != job.id and again.command == job.command
    assert api.wait_for_job(again.id, timeout=30, poll_interval=0.2).status.stage == "ERROR"


def test_another_user_is_refused(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    alice: HfApi = jobs_hub.api(jobs_hub.alice_token)
    bob: HfApi = jobs_hub.api(jobs_hub.bob_token)
    job = alice.run_job(image="ubuntu", command=["sleep", "30"])
    ns = jobs_hub.alice
    try:
        with pytest.raises(HfHubHTTPError) as listing:
            list(bob.list_jobs(namespace=ns))
        assert listing.value.response.status_code == 403
        with pytest.raises(JobNotFoundError):
            bob.inspect_job(job_id=job.id, namespace=ns)
        with pytest.raises(JobNotFoundError):
            list(bob.fetch_job_logs(job_id=job.id, namespace=ns))
        with pytest.raises(JobNotFoundError):
            bob.cancel_job(job_id=job.id, namespace=ns)
        with pytest.raises(JobNotFoundError):  # nor by naming it under his own namespace
            bob.inspect_job(job_id=job.id, namespace=jobs_hub.bob)
        with pytest.raises(HfHubHTTPError) as run:
            bob.run_job(image="ubuntu", command=["true"], namespace=ns)
        assert run.value.response.status_code == 403
        assert job.id not in [j.id for j in bob.list_jobs(namespace=jobs_hub.bob)]
        with pytest.raises(HfHubHTTPError) as anon:
            list(jobs_hub.api(False).list_jobs(namespace=ns))
        assert anon.value.response.status_code == 401
        assert alice.inspect_job(job_id=job.id).status.stage == "RUNNING"
        assert job.id in [j.id for j in alice.list_jobs(namespace=ns, status="RUNNING")]
    finally:
        alice.cancel_job(job_id=job.id)


def test_env_and_secrets_reach_the_job_but_no_output(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    secret = f"s3cret-{uuid.uuid4().hex}"
    code = ("import os, hashlib; print('FOO=' + os.environ['FOO']); "
            "print('sha=' + hashlib.sha256(os.environ['MY_SECRET'].encode()).hexdigest())")
    job = api.run_job(image="python:3.12", command=["python", "-c", code], env={"FOO": "bar"},
                      secrets={"MY_SECRET": secret}, labels={"team": "ml"})
    final = api.wait_for_job(job.id, timeout=30, poll_interval=0.2)
    import hashlib

    logs = list(api.fetch_job_logs(job_id=job.id))
    assert final.status.stage == "COMPLETED", logs
    assert "FOO=bar" in logs and "sha=" + hashlib.sha256(secret.encode()).hexdigest() in logs
    assert final.environment == {"FOO": "bar"} and list(final.secrets or {}) == ["MY_SECRET"]
    assert secret not in repr(final) and secret not in repr([*api.list_jobs(namespace=jobs_hub.alice)])
    with pytest.raises(BadRequestError, match="secrets"):
        api.rerun_job(job_id=job.id)
    assert [j.id for j in api.list_jobs(namespace=jobs_hub.alice, labels={"team": "ml"})] == [job.id]
    server = jobs_hub.server
    assert secret not in server.log_path.read_text(errors="replace")
    db = sqlite3.connect(server.data_dir / "hub.sqlite")
    assert not any(secret in str(row) for row in db.execute("SELECT * FROM jobs"))


def test_uv_script_from_the_hub(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    repo = f"{jobs_hub.alice}/scripts-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo, private=True)
    ok = "# /// script\n# dependencies = [\"httpx>=0.20\"]\n# ///\nimport sys, httpx\nprint('uv ok', sys.argv[1:])\n"
    bad = "# /// script\n# dependencies = [\"surely-not-a-package-xyz\"]\n# ///\nprint('never')\n"
    api.upload_file(path_or_fileobj=ok.encode(), path_in_repo="ok.py", repo_id=repo)
    api.upload_file(path_or_fileobj=bad.encode(), path_in_repo="bad.py", repo_id=repo)
    url = f"{jobs_hub.endpoint}/{repo}/resolve/main"
    job = api.run_uv_job(f"{url}/ok.py", script_args=["--n", "1"])
    final = api.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    logs = list(api.fetch_job_logs(job_id=job.id))
    assert final.status.stage == "COMPLETED" and "uv ok ['--n', '1']" in logs, logs
    job = api.run_uv_job(f"{url}/bad.py")
    final = api.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    logs = list(api.fetch_job_logs(job_id=job.id))
    assert final.status.stage == "ERROR" and any("surely-not-a-package-xyz" in line for line in logs), logs


def test_bad_requests(jobs_hub) -> None:  # type: ignore[no-untyped-def]
    api: HfApi = jobs_hub.api(jobs_hub.alice_token)
    with pytest.raises(BadRequestError, match="flavor"):
        api.run_job(image="ubuntu", command=["true"], flavor="no-such-flavor")
    with pytest.raises(BadRequestError, match="command"):
        api.run_job(image="ubuntu", command=[])
    with pytest.raises(JobNotFoundError):
        api.inspect_job(job_id="0" * 24)
    names = [h.name for h in api.list_jobs_hardware()]
    assert "cpu-basic" in names


def test_restart_marks_live_jobs_failed(tmp_path: Path) -> None:
    server = HubServer(tmp_path / "hub", "--jobs", "--max-jobs", "1").start()
    try:
        api = HfApi(endpoint=server.endpoint, token=server.admin_token)
        running = api.run_job(image="ubuntu", command=["sh", "-c", "echo pid $$; sleep 1000"])
        queued = api.run_job(image="ubuntu", command=["true"])
        wait_until(lambda: any(line.startswith("pid ") for line in api.fetch_job_logs(job_id=running.id)))
        pid = int(next(line for line in api.fetch_job_logs(job_id=running.id) if line.startswith("pid ")).split()[1])
        waiting = api.inspect_job(job_id=queued.id)
        assert waiting.status.stage == "SCHEDULING" and "slot" in (waiting.status.message or "")
        server.kill()
        assert alive(pid)  # the hub died; its job outlived it
        server.start()
        api = HfApi(endpoint=server.endpoint, token=server.admin_token)  # a new port
        for job_id in (running.id, queued.id):
            info = api.inspect_job(job_id=job_id)
            assert info.status.stage == "ERROR" and "restarted" in (info.status.message or "")
        wait_until(lambda: not alive(pid), 10)
    finally:
        server.stop()


# A shell job (the hub's Python may sit in a folder the job's user cannot enter): it commits with curl.
PROBE = r"""
cat "$ADMIN_TOKEN_FILE" >/dev/null 2>&1 && echo "read the admin token" || echo "admin token: denied"
echo "uid $(id -u)"
printf '{"key":"header","value":{"summary":"from nobody","description":""}}\n{"key":"file","value":{"path":"who.txt","encoding":"base64","content":"%s"}}\n' "$(printf 'as nobody' | base64)" > body
curl -sf -H "authorization: Bearer $HF_TOKEN" -H "content-type: application/x-ndjson" --data-binary @body \
    "$HF_ENDPOINT/api/models/$REPO/commit/main" >/dev/null && echo pushed
"""


def test_jobs_user_reads_the_hub_only_through_the_api(tmp_path: Path) -> None:
    import pwd
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("--jobs-user needs the hub to run as root")
    jobs_dir = Path(tempfile.mkdtemp(prefix="hubfs-jobs-"))  # outside pytest's 0700 folders
    jobs_dir.chmod(0o711)
    server = HubServer(tmp_path / "hub", "--jobs", "--jobs-user", "nobody", "--jobs-dir", str(jobs_dir)).start()
    try:
        api = HfApi(endpoint=server.endpoint, token=server.admin_token)
        repo = f"admin/who-{uuid.uuid4().hex[:6]}"
        api.create_repo(repo, private=True)
        job = api.run_job(image="ubuntu", command=["sh", "-c", PROBE],
                          env={"REPO": repo, "ADMIN_TOKEN_FILE": str(server.data_dir / "admin.token")})
        final = api.wait_for_job(job.id, timeout=60, poll_interval=0.2)
        logs = list(api.fetch_job_logs(job_id=job.id))
        assert final.status.stage == "COMPLETED", logs
        assert "admin token: denied" in logs and f"uid {pwd.getpwnam('nobody').pw_uid}" in logs and "pushed" in logs
        assert api.list_repo_commits(repo)[0].title == "from nobody"
    finally:
        server.stop()
        shutil.rmtree(jobs_dir, ignore_errors=True)
