"""The Jobs API as ``huggingface_hub`` calls it (``run_job``, ``run_uv_job``, ``list_jobs``, ``inspect_job``,
``fetch_job_logs``, ``cancel_job``, ``list_jobs_hardware``; ``hf jobs run|ps|inspect|logs|cancel|hardware``).

- ``GET /api/jobs/hardware`` -> ``[{name, prettyName, cpu, ram, accelerator, unitCostUSD, ...}]``
- ``POST /api/jobs/{ns}`` ``{dockerImage|spaceId, command, arguments, environment, secrets, flavor,
  timeoutSeconds, labels, volumes}`` -> the job (bucket volumes only: :mod:`volumes`)
- ``GET /api/jobs/{ns}?stage=S&label=k=v`` -> jobs, newest first (Link-paginated)
- ``GET /api/jobs/{ns}/{id}`` -> ``{id, createdAt, startedAt, finishedAt, dockerImage, command, environment,
  secrets (names only), flavor, labels, status: {stage, message}, durations, owner, initiator}``
- ``GET /api/jobs/{ns}/{id}/logs?tail=N`` -> server-sent events ``data: {"data": line, "timestamp": iso}``,
  the whole log then live lines until the job ends (``: keep-alive`` comments while it is silent;
  ``follow=false``, a hubfs extension: only what is there). One request lasts at most ``MAX_STREAM``
  seconds; a following client reconnects and skips the events it has seen, as ``fetch_job_logs`` does
- ``GET /api/jobs/{ns}/{id}/metrics`` -> server-sent events of :mod:`metrics` samples, one a second (406 when
  the job is not running)
- ``POST /api/jobs/{ns}/{id}/cancel``
- ``POST /api/jobs/{ns}/{id}/duplicate`` -> a new job with the same spec (not for jobs that had secrets)

Access: jobs belong to a namespace (a user, or an org of theirs). Members of the namespace see its
jobs; running and cancelling need a write token and write rights on it. To anyone else a job does
not exist (404 ``JobNotFound``), and listing another namespace's jobs is refused (403).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets as secrets_mod
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hubfs.errors import AuthenticationError, BadRequestError, HubfsError, NotFoundError, PermissionDeniedError
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.jobs import images, metrics, volumes
from hubfs.server.jobs.runner import JobRunner
from hubfs.server.jobs.store import LIVE, TERMINAL, Job, JobSpec, spec_summary
from hubfs.server.wire import caller_of, endpoint_of, hub_of, iso, page, read_json

PAGE = 100
KEEP_ALIVE = 15.0  # seconds of silence before a ": keep-alive" comment
POLL = 0.2  # seconds between looks at a live job's log
MAX_STREAM = 300.0  # seconds one log request lasts at most; following clients reconnect (the official one does)
MAX_TIMEOUT = 7 * 24 * 3600
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JOB_ID = re.compile(r"[0-9a-f]{24}")
STAGES = ("SCHEDULING", "RUNNING", "COMPLETED", "ERROR", "CANCELED", "DELETED")


class JobNotFoundError(NotFoundError):
    """No such job (or not one the caller may see)."""

    code = "JobNotFound"


def runner_of(request: Request) -> JobRunner:
    return request.scope["hubfs.jobs"]  # type: ignore[no-any-return]


# -- access --------------------------------------------------------------------------------------


def _signed_in(caller: Caller) -> str:
    if caller.user is None:
        raise AuthenticationError("You must be authenticated to use Jobs.")
    return caller.user


def _may_read(hub: Hub, user: str, namespace: str) -> bool:
    return user == namespace or hub.meta.is_member(user, namespace)


def _job_for(request: Request, namespace: str, job_id: str, *, write: bool = False) -> Job:
    """The job if the caller may see it (and, with ``write``, cancel it); 404 JobNotFound otherwise."""
    hub, caller = hub_of(request), caller_of(request)
    user = _signed_in(caller)
    job = runner_of(request).store.get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if job is None or job.owner != namespace or not _may_read(hub, user, namespace):
        raise JobNotFoundError(f"Job {job_id} not found in namespace {namespace}.")
    if write:
        hub.require_write(caller, namespace)
    return job


# -- wire shapes ---------------------------------------------------------------------------------


def job_json(hub: Hub, job: Job) -> dict[str, Any]:
    """A job as the Hub shows it (``JobInfo``)."""
    now = time.time()
    end = job.finished_at or now
    owner_row = hub.meta.account(job.owner)
    owner_type = "org" if owner_row is not None and owner_row["is_org"] else "user"
    out: dict[str, Any] = {
        "id": job.id,
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at) if job.started_at else None,
        "finishedAt": iso(job.finished_at) if job.finished_at else None,
        **spec_summary(job.spec),
        "status": {"stage": job.stage, "message": job.message},
        "durations": {
            "schedulingSecs": int((job.started_at or end) - job.created_at),
            "runningSecs": int(end - job.started_at) if job.started_at else None,
            "totalSecs": int(end - job.created_at),
        },
        "owner": {"id": job.owner, "name": job.owner, "type": owner_type},
        "initiator": {"type": "user", "id": job.created_by, "name": job.created_by},
        "retry": 0,
    }
    return out


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be an object of NAME: value.")
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise BadRequestError(f"{what}: {str(key)[:64]!r} is not a valid environment variable name.")
        if val is None:
            val = ""
        if not isinstance(val, str | int | float | bool):
            raise BadRequestError(f"{what}: the value of {key} must be a string.")
        out[key] = str(val)
    return out


def parse_spec(body: dict[str, Any]) -> tuple[JobSpec, dict[str, str]]:
    """(spec, secret values) from a ``run_job`` body; 400 naming the first bad field."""
    image, space = body.get("dockerImage"), body.get("spaceId")
    if space is not None:
        raise BadRequestError("Jobs from a Space image are not supported by this hub; use a Docker image name.")
    if not isinstance(image, str) or not image.strip():
        raise BadRequestError("dockerImage is required (e.g. python:3.12).")
    command, arguments = body.get("command"), body.get("arguments") or []
    for name, value in (("command", command), ("arguments", arguments)):
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise BadRequestError(f"{name} must be a list of strings.")
    if not command:
        raise BadRequestError("command must not be empty.")
    flavor = images.flavor_of(body.get("flavor"))
    timeout = body.get("timeoutSeconds", body.get("timeout"))
    if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool)
                                or not 0 < timeout <= MAX_TIMEOUT):
        raise BadRequestError(f"timeoutSeconds must be a number of seconds between 1 and {MAX_TIMEOUT}.")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise BadRequestError("labels must be an object of strings.")
    if body.get("expose") or body.get("ssh") or body.get("network"):
        raise BadRequestError("Exposed ports, SSH and network groups are not supported by this hub's jobs.")
    env = _strings(body.get("environment"), "environment")
    secret_values = _strings(body.get("secrets"), "secrets")
    spec = JobSpec(image=image.strip(), command=list(command), arguments=list(arguments), environment=env,
                   secret_names=sorted(secret_values), flavor=flavor.name,
                   timeout=int(timeout) if timeout is not None else None, labels=dict(labels),
                   volumes=volumes.parse_volumes(body.get("volumes")))
    return spec, secret_values


# -- routes --------------------------------------------------------------------------------------


def hardware(request: Request) -> Response:
    """GET /api/jobs/hardware."""
    return json_response([f.wire() for f in images.offered_flavors()])


async def run_job(request: Request, namespace: str) -> Response:
    """POST /api/jobs/{ns} -> the new job (SCHEDULING or RUNNING)."""
    body = await read_json(request, 1 << 20)
    endpoint = endpoint_of(request)
    return await run_in_threadpool(_run_job, request, namespace, body, endpoint)


def _run_job(request: Request, namespace: str, body: dict[str, Any], endpoint: str) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    _signed_in(caller)
    hub.require_write(caller, namespace)
    spec, secret_values = parse_spec(body)
    volumes.check_access(hub, runner_of(request).buckets, caller, spec.volumes)
    return _start(request, namespace, spec, secret_values, endpoint)


def _start(request: Request, namespace: str, spec: JobSpec, secret_values: dict[str, str], endpoint: str) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    user = _signed_in(caller)
    runner = runner_of(request)
    job = runner.store.add(secrets_mod.token_hex(12), namespace, user, spec)
    runner.submit(job, spec.environment, secret_values, endpoint, caller.role or "read")
    return json_response(job_json(hub, runner.store.get(job.id) or job))


def list_jobs(request: Request, namespace: str) -> Response:
    """GET /api/jobs/{ns}?stage=..&label=k=v."""
    hub, caller = hub_of(request), caller_of(request)
    user = _signed_in(caller)
    if not _may_read(hub, user, namespace):
        raise PermissionDeniedError(f"You don't have access to the jobs of {namespace}.")
    stages = [s.upper() for s in request.query_params.getlist("stage")]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise BadRequestError(f"Unknown stage {bad[0]}; one of {', '.join(STAGES)}.")
    wanted = [tuple(label.split("=", 1)) for label in request.query_params.getlist("label") if "=" in label]
    jobs = [j for j in runner_of(request).store.of_owner(namespace, stages or None)
            if all(j.spec.labels.get(k) == v for k, v in wanted)]
    chunk, headers = page(request, jobs, PAGE)
    return json_response([job_json(hub, j) for j in chunk], headers=headers)


def inspect_job(request: Request, namespace: str, job_id: str) -> Response:
    """GET /api/jobs/{ns}/{id}."""
    return json_response(job_json(hub_of(request), _job_for(request, namespace, job_id)))


def cancel_job(request: Request, namespace: str, job_id: str) -> Response:
    """POST /api/jobs/{ns}/{id}/cancel: stops a scheduled or running job (a finished one stays as it was)."""
    job = _job_for(request, namespace, job_id, write=True)
    runner = runner_of(request)
    if job.stage in LIVE:
        runner.cancel(job.id)
        runner.wait(job.id, 10)
    return json_response(job_json(hub_of(request), runner.store.get(job.id) or job))


async def rerun_job(request: Request, namespace: str, job_id: str) -> Response:
    """POST /api/jobs/{ns}/{id}/duplicate -> a new job with the same spec (``rerun_job``, ``hf jobs rerun``).

    A job that had secrets cannot be re-run here: the hub never keeps secret values (400)."""
    endpoint = endpoint_of(request)
    return await run_in_threadpool(_rerun_job, request, namespace, job_id, endpoint)


def _rerun_job(request: Request, namespace: str, job_id: str, endpoint: str) -> Response:
    job = _job_for(request, namespace, job_id, write=True)
    if job.spec.secret_names:
        raise BadRequestError("This job had secrets, and this hub does not keep secret values: run it again "
                              "with them (hf jobs run --secrets ...).")
    volumes.check_access(hub_of(request), runner_of(request).buckets, caller_of(request), job.spec.volumes)
    return _start(request, namespace, job.spec, {}, endpoint)


async def job_metrics(request: Request, namespace: str, job_id: str) -> Response:
    """GET /api/jobs/{ns}/{id}/metrics: server-sent events, one sample a second while the job runs; 406 when
    it does not run (the official client ignores that answer)."""
    job = await run_in_threadpool(_job_for, request, namespace, job_id)
    runner = runner_of(request)
    pgid = runner.pgid(job.id)
    if pgid is None:
        raise HubfsError(f"Job {job.id} is not running.", status=406)
    flavor = images.flavor_of(job.spec.flavor)
    return StreamingResponse(_samples(runner, job.id, pgid, flavor), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _samples(runner: JobRunner, job_id: str, pgid: int, flavor: images.Flavor) -> AsyncIterator[bytes]:
    started = time.monotonic()
    before, at = await anyio.to_thread.run_sync(metrics.group_usage, pgid), time.monotonic()
    while runner.pgid(job_id) == pgid and time.monotonic() - started < MAX_STREAM:
        await asyncio.sleep(1.0)
        after, now = await anyio.to_thread.run_sync(metrics.group_usage, pgid), time.monotonic()
        event = metrics.sample(before, after, now - at, flavor.cpus, flavor.ram_gb << 30, job_id[:5])
        before, at = after, now
        yield b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


async def job_logs(request: Request, namespace: str, job_id: str) -> Response:
    """GET /api/jobs/{ns}/{id}/logs: server-sent events, live until the job ends."""
    job = await run_in_threadpool(_job_for, request, namespace, job_id)
    tail_text = request.query_params.get("tail")
    tail = int(tail_text) if tail_text and tail_text.isdigit() else None
    follow = request.query_params.get("follow", "true").lower() not in ("0", "false", "no")
    runner = runner_of(request)
    return StreamingResponse(_events(runner, job.id, tail, follow), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _last_lines(path: str, count: int) -> tuple[list[bytes], int]:
    """The last ``count`` complete lines of the log and the offset just past them (logs are capped)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    return (lines[-count:] if count else []), end


def _read_from(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(4 << 20)
    except FileNotFoundError:
        return b""


async def _events(runner: JobRunner, job_id: str, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
    """The log as SSE events: what is there (the last ``tail`` lines), then (``follow``, the default) new
    lines while the job lives."""
    path = str(runner.log_path(job_id))
    offset, pending = 0, b""
    quiet_since = started = time.monotonic()
    if tail is not None:
        lines, offset = await anyio.to_thread.run_sync(_last_lines, path, tail)
        if lines:
            yield b"".join(b"data: " + line + b"\n\n" for line in lines if line)
    while True:
        live = runner.is_live(job_id)  # read before the file: a job that ended has written everything
        data = await anyio.to_thread.run_sync(_read_from, path, offset)
        offset += len(data)
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        if lines:
            quiet_since = time.monotonic()
            yield b"".join(b"data: " + line + b"\n\n" for line in lines if line)
        if data and len(data) == 4 << 20:
            continue
        if not live or not follow or time.monotonic() - started > MAX_STREAM:
            return
        if time.monotonic() - quiet_since > KEEP_ALIVE:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL)


def register(router: Router) -> None:
    """Add the Jobs routes (before the ``/api/`` catch-all)."""
    router.add(["GET"], "/api/jobs/hardware", hardware)
    router.add(["GET"], "/api/jobs/{namespace}", list_jobs)
    router.add(["POST"], "/api/jobs/{namespace}", run_job)
    router.add(["GET"], "/api/jobs/{namespace}/{job_id}", inspect_job)
    router.add(["GET"], "/api/jobs/{namespace}/{job_id}/logs", job_logs)
    router.add(["GET"], "/api/jobs/{namespace}/{job_id}/metrics", job_metrics)
    router.add(["POST"], "/api/jobs/{namespace}/{job_id}/cancel", cancel_job)
    router.add(["POST"], "/api/jobs/{namespace}/{job_id}/duplicate", rerun_job)


__all__ = ["TERMINAL", "JobNotFoundError", "job_json", "register"]
