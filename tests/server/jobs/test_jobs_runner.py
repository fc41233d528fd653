"""The job runner in process (real processes, a real hub folder): log cap, queue bound, limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubfs.errors import HubfsError
from hubfs.server.hub import Hub
from hubfs.server.jobs import JobsOptions, start
from hubfs.server.jobs.store import JobSpec


def _runner(tmp_path: Path, **options: object):  # type: ignore[no-untyped-def]
    hub = Hub(tmp_path / "hub")
    hub.bootstrap()
    return start(hub, JobsOptions(jobs_dir=tmp_path / "jobs", **options))  # type: ignore[arg-type]


def _submit(runner, command: list[str], **spec: object):  # type: ignore[no-untyped-def]
    import secrets

    job = runner.store.add(secrets.token_hex(12), "admin", "admin", JobSpec(image="ubuntu", command=command, **spec))
    runner.submit(job, {}, {}, "http://127.0.0.1:9", "write")
    return job


def test_log_is_capped_and_says_so(tmp_path: Path) -> None:
    runner = _runner(tmp_path, max_log_bytes=4000)
    job = _submit(runner, ["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done"])
    assert runner.wait(job.id, 30)
    log = runner.log_path(job.id).read_bytes()
    lines = [json.loads(line)["data"] for line in log.splitlines()]
    assert len(log) < 4200 and lines[-1].startswith("[log truncated at 4000 bytes]")
    assert lines[1] == "line 0" and runner.store.get(job.id).stage == "COMPLETED"
    assert not (runner.folder(job.id) / "work").exists()  # the work folder goes with the job, the log stays


def test_queue_is_bounded(tmp_path: Path) -> None:
    runner = _runner(tmp_path, max_jobs=1, max_queued=1)
    first = _submit(runner, ["sleep", "30"])
    second = _submit(runner, ["true"])
    with pytest.raises(HubfsError) as full:
        _submit(runner, ["true"])
    assert full.value.status == 429
    assert runner.store.get(second.id).stage == "SCHEDULING"
    runner.cancel(second.id)
    assert runner.store.get(second.id).stage == "CANCELED"
    runner.cancel(first.id)
    assert runner.wait(first.id, 10) and runner.store.get(first.id).stage == "CANCELED"


def test_memory_limit_of_the_flavor(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    # read a moment after the start: without the prlimit command the limit is set just after it
    code = "import resource, time; time.sleep(0.3); print(resource.getrlimit(resource.RLIMIT_AS)[0] >> 30)"
    job = runner.store.add("f" * 24, "admin", "admin", JobSpec(image="python:3.12", command=["python", "-c", code]))
    runner.submit(job, {}, {}, "http://127.0.0.1:9", "write")
    assert runner.wait(job.id, 30)
    lines = [json.loads(line)["data"] for line in runner.log_path(job.id).read_bytes().splitlines()]
    assert "16" in lines, lines


def test_container_argv_mounts_work_and_volumes_and_passes_env_by_name(tmp_path: Path) -> None:
    from hubfs.server.jobs import images, volumes

    mounts = [(tmp_path / "work" / "data", "/data")]
    argv = images.container_command("podman", "hubfs-job-x", "python:3.12", ["python", "/data/a.py"],
                                    ["HF_TOKEN", "JOB_ID"], tmp_path / "work", images.flavor_of("cpu-basic"), mounts)
    assert argv[:3] == ["podman", "run", "--rm"] and argv[-3:] == ["python:3.12", "python", "/data/a.py"]
    assert f"{tmp_path / 'work'}:/work" in argv and f"{tmp_path / 'work' / 'data'}:/data" in argv
    assert argv[argv.index("-e") + 1] == "HF_TOKEN" and not any("=" in a for a in argv if a.startswith("HF_"))
    # a local job sees the volume's folder instead of the mount path
    assert volumes.rewrite(["uv", "run", "/data/a.py", "/data", "/database"], mounts) == \
        ["uv", "run", f"{tmp_path}/work/data/a.py", f"{tmp_path}/work/data", "/database"]
