"""``hf jobs ...`` (the official CLI, unmodified) and ``hubfs jobs ...`` against ``hubfs serve --jobs``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

HF = str(Path(sys.executable).parent / "hf")
JOB_ID = re.compile(r"\b[0-9a-f]{24}\b")


def run(jobs_hub, tmp_path: Path, *argv: str, token: str | None = None,  # type: ignore[no-untyped-def]
        check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": jobs_hub.endpoint, "HF_TOKEN": token or jobs_hub.alice_token,
           "HF_HOME": str(tmp_path / "hf-home"), "NO_COLOR": "1", "HF_HUB_DISABLE_EXPERIMENTAL_WARNING": "1"}
    out = subprocess.run(list(argv), check=False, capture_output=True, text=True, env=env, timeout=90)
    if check:
        assert out.returncode == 0, (argv, out.stdout, out.stderr)
    return out


def stage(inspect_json: str) -> str:
    data = json.loads(inspect_json)
    return str((data[0] if isinstance(data, list) else data)["status"]["stage"])


def test_hf_jobs_cli(jobs_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = run(jobs_hub, tmp_path, HF, "jobs", "run", "python:3.12", "python", "-c", "print('hello from hf jobs')")
    assert "hello from hf jobs" in out.stdout  # followed live until the end, then exit 0
    job_id = JOB_ID.findall(out.stdout + out.stderr)[0]

    out = run(jobs_hub, tmp_path, HF, "jobs", "ps", "-a", "--no-truncate")
    assert job_id in out.stdout and "COMPLETED" in out.stdout
    out = run(jobs_hub, tmp_path, HF, "jobs", "logs", job_id)
    assert "hello from hf jobs" in out.stdout
    assert stage(run(jobs_hub, tmp_path, HF, "jobs", "inspect", "--format", "json", job_id).stdout) == "COMPLETED"
    out = run(jobs_hub, tmp_path, HF, "jobs", "hardware")
    assert "cpu-basic" in out.stdout

    out = run(jobs_hub, tmp_path, HF, "jobs", "run", "--detach", "--timeout", "5m", "ubuntu", "sleep", "300")
    sleeper = JOB_ID.findall(out.stdout + out.stderr)[0]
    assert sleeper in run(jobs_hub, tmp_path, HF, "jobs", "ps", "--no-truncate").stdout  # running ones by default
    other = run(jobs_hub, tmp_path, HF, "jobs", "cancel", f"{jobs_hub.alice}/{sleeper}", token=jobs_hub.bob_token,
                check=False)
    assert other.returncode != 0
    run(jobs_hub, tmp_path, HF, "jobs", "cancel", sleeper)
    assert stage(run(jobs_hub, tmp_path, HF, "jobs", "inspect", "--format", "json", sleeper).stdout) == "CANCELED"

    failed = run(jobs_hub, tmp_path, HF, "jobs", "run", "ubuntu", "sh", "-c", "exit 4", check=False)
    assert failed.returncode != 0 and "ERROR" in failed.stdout + failed.stderr


def test_hubfs_jobs_cli(jobs_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hubfs = [sys.executable, "-m", "hubfs.cli", "jobs"]
    out = run(jobs_hub, tmp_path, *hubfs, "run", "-e", "GREETING=hi", "-s", "TOKENISH=abc", "python:3.12",
              "python", "-c", "import os; print(os.environ['GREETING'], len(os.environ['TOKENISH']))")
    assert out.stdout.strip().endswith("hi 3")

    out = run(jobs_hub, tmp_path, *hubfs, "run", "--detach", "--timeout", "2m", "ubuntu",
              "sh", "-c", "echo started; sleep 300")
    job_id = out.stdout.strip()
    assert JOB_ID.fullmatch(job_id)
    listing = run(jobs_hub, tmp_path, *hubfs, "list").stdout
    assert job_id in listing and "RUNNING" in listing
    logs = run(jobs_hub, tmp_path, *hubfs, "logs", job_id).stdout  # what is there, without waiting for the end
    assert "started" in logs
    assert "CANCELED" in run(jobs_hub, tmp_path, *hubfs, "cancel", job_id).stdout
    assert '"CANCELED"' in run(jobs_hub, tmp_path, *hubfs, "inspect", f"{jobs_hub.alice}/{job_id}").stdout
    assert job_id in run(jobs_hub, tmp_path, *hubfs, "list", "-a").stdout

    refused = run(jobs_hub, tmp_path, *hubfs, "inspect", f"{jobs_hub.alice}/{job_id}", token=jobs_hub.bob_token,
                  check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("hubfs: ") and len(refused.stderr.splitlines()) == 1

    failed = run(jobs_hub, tmp_path, *hubfs, "run", "--timeout", "1", "ubuntu", "sleep", "30", check=False)
    assert failed.returncode == 1 and "ERROR" in failed.stderr and "timeout" in failed.stderr.lower()
    bad = run(jobs_hub, tmp_path, *hubfs, "run", "--flavor", "nope", "ubuntu", "true", check=False)
    assert bad.returncode == 1 and "flavor" in bad.stderr
