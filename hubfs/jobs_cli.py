"""``hubfs jobs list|run|uv run|logs|inspect|cancel``: the documented ``hf jobs`` commands, against any hub that
serves the Jobs API (``hubfs serve --jobs``, or the Hub).

``run`` follows the job's logs until it ends and exits 1 unless it COMPLETED (``--detach``: print the
id and return). A job is named by its id, or ``namespace/id``; the namespace defaults to the caller's.
Every command takes ``--endpoint`` and ``--token``; all HTTP goes through :class:`hubfs.client.http.Transport`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any

from hubfs.durations import parse_duration
from hubfs.errors import BadRequestError, HubfsError

TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
UV_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"  # the Hub's default for uv jobs


def _transport(args: argparse.Namespace) -> Any:
    from hubfs.client.http import Transport
    from hubfs.config import HubConfig

    return Transport(HubConfig.load(args.endpoint, args.token), max_retries=2)


def _namespace(transport: Any, args: argparse.Namespace, job_ref: str | None = None) -> tuple[str, str | None]:
    """(namespace, job id) from ``ns/id`` or ``id`` plus ``--namespace`` or the caller's name."""
    job_id = job_ref
    if job_ref and "/" in job_ref:
        ns, job_id = job_ref.split("/", 1)
        return ns, job_id
    if args.namespace:
        return args.namespace, job_id
    return transport.request("GET", "/api/whoami-v2", retry=False).json()["name"], job_id


def _pairs(items: list[str] | None, what: str, from_env: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq:
            if not from_env or key not in os.environ:
                raise BadRequestError(f"{what} {item!r}: use KEY=VALUE" + (" or the name of a set variable"
                                                                           if from_env else ""))
            value = os.environ[key]
        out[key] = value
    return out


def _timeout(text: str | None) -> int | None:
    """Whole seconds of ``--timeout`` (:func:`hubfs.durations.parse_duration`), None when not given."""
    if not text:
        return None
    try:
        return int(parse_duration(text))
    except BadRequestError as exc:
        raise BadRequestError(f"--timeout: {exc.message}") from None


def _row(job: dict[str, Any]) -> str:
    command = shlex.join(job.get("command") or [])
    created = (job.get("createdAt") or "")[:19].replace("T", " ")
    return f"{job['id']}  {job['status']['stage']:<10} {created}  {job.get('dockerImage') or '-'}  {command}"


def cmd_list(args: argparse.Namespace) -> int:
    transport = _transport(args)
    ns, _ = _namespace(transport, args)
    params = [] if args.all else [("stage", "RUNNING"), ("stage", "SCHEDULING")]
    jobs = transport.request("GET", f"/api/jobs/{ns}", params=params).json()
    for job in jobs:
        print(_row(job))
    if not jobs and not args.all:
        print("no running jobs (-a shows finished ones too)", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    transport = _transport(args)
    ns, _ = _namespace(transport, args)
    spec: dict[str, Any] = {"dockerImage": args.image, "command": args.command, "arguments": [],
                            "environment": _pairs(args.env, "--env", False), "flavor": args.flavor}
    secrets = _pairs(args.secrets, "--secrets", True)
    if secrets:
        spec["secrets"] = secrets
    timeout = _timeout(args.timeout)
    if timeout:
        spec["timeoutSeconds"] = timeout
    job = transport.request("POST", f"/api/jobs/{ns}", json_body=spec, retry=False).json()
    return _follow(transport, ns, job["id"], args.detach)


def _follow(transport: Any, ns: str, job_id: str, detach: bool) -> int:
    """Print the id (``detach``) or follow the job's logs to its end: 0 when it COMPLETED, else 1."""
    print(f"Job started: {ns}/{job_id}", file=sys.stderr)
    if detach:
        print(job_id)
        return 0
    _stream(transport, ns, job_id, follow=True)
    final = _wait(transport, ns, job_id)
    stage, message = final["status"]["stage"], final["status"].get("message")
    if stage != "COMPLETED":
        print(f"hubfs: job {job_id} finished with stage {stage}" + (f": {message}" if message else ""),
              file=sys.stderr)
        return 1
    return 0


def cmd_uv_run(args: argparse.Namespace) -> int:
    """``uv run SCRIPT ARGS...`` as a job. A script (or argument) that is a local file is shipped as the
    Hub does it: uploaded to the caller's ``jobs-artifacts`` bucket and mounted at ``/data`` -- that
    upload is Xet, done by ``huggingface_hub``'s own ``run_uv_job`` (needed for local files only)."""
    from hubfs.config import HubConfig

    transport = _transport(args)
    ns, _ = _namespace(transport, args)
    uv_args = [a for dep in args.with_ or [] for a in ("--with", dep)] + (["--python", args.python] if args.python else [])
    env, secrets = _pairs(args.env, "--env", False), _pairs(args.secrets, "--secrets", True)
    timeout = _timeout(args.timeout)
    if not any(os.path.isfile(a) for a in [args.script, *args.script_args]):
        spec: dict[str, Any] = {"dockerImage": args.image, "command": ["uv", "run", *uv_args, args.script,
                                                                        *args.script_args],
                                "arguments": [], "environment": env, "flavor": args.flavor}
        if secrets:
            spec["secrets"] = secrets
        if timeout:
            spec["timeoutSeconds"] = timeout
        job = transport.request("POST", f"/api/jobs/{ns}", json_body=spec, retry=False).json()
        return _follow(transport, ns, job["id"], args.detach)
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise HubfsError("hubfs jobs uv run with a local file needs huggingface_hub (pip install huggingface_hub): "
                         "it uploads the files to your jobs-artifacts bucket over Xet") from None
    config = HubConfig.load(args.endpoint, args.token)
    api = HfApi(endpoint=config.endpoint, token=config.token or False)
    info = api.run_uv_job(args.script, script_args=args.script_args, dependencies=args.with_, python=args.python,
                          image=args.image, env=env, secrets=secrets or None, flavor=args.flavor, timeout=timeout,
                          namespace=ns)
    return _follow(transport, ns, info.id, args.detach)


def _stream(transport: Any, ns: str, job_id: str, *, follow: bool) -> None:
    """Print the job's log lines (all of them, then live ones with ``follow``, reconnecting when the hub
    ends a long stream before the job ends and skipping the events already printed)."""
    params = None if follow else {"follow": "false"}
    seen, final = 0, False
    while True:
        index = 0
        resp = transport.request("GET", f"/api/jobs/{ns}/{job_id}/logs", params=params, stream=True)
        try:
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                index += 1
                if index <= seen:
                    continue
                seen = index
                text = json.loads(line[6:]).get("data", "")
                if not text.startswith("===== Job started"):
                    print(text, flush=True)
        finally:
            resp.close()
        if not follow or final:
            return
        final = transport.request("GET", f"/api/jobs/{ns}/{job_id}").json()["status"]["stage"] in TERMINAL
        if not final:  # the hub ended a long stream: reconnect (one last pass once the job is over)
            time.sleep(1)


def _wait(transport: Any, ns: str, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = transport.request("GET", f"/api/jobs/{ns}/{job_id}").json()
        if job["status"]["stage"] in TERMINAL:
            return job
        time.sleep(0.5)


def cmd_logs(args: argparse.Namespace) -> int:
    transport = _transport(args)
    ns, job_id = _namespace(transport, args, args.job_id)
    assert job_id is not None
    _stream(transport, ns, job_id, follow=args.follow)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    transport = _transport(args)
    ns, job_id = _namespace(transport, args, args.job_id)
    print(json.dumps(transport.request("GET", f"/api/jobs/{ns}/{job_id}").json(), indent=2))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    transport = _transport(args)
    ns, job_id = _namespace(transport, args, args.job_id)
    job = transport.request("POST", f"/api/jobs/{ns}/{job_id}/cancel", retry=False)
    try:
        stage = job.json()["status"]["stage"]
    except (ValueError, KeyError, TypeError):
        stage = "CANCELED"
    print(f"{ns}/{job_id}: {stage}")
    return 0


def job_options(p: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``uv run`` share, as ``hf jobs`` spells them."""
    p.add_argument("--flavor", default="cpu-basic", help="hardware flavor (default cpu-basic)")
    p.add_argument("-e", "--env", action="append", metavar="K=V", help="environment variable (repeatable)")
    p.add_argument("-s", "--secrets", action="append", metavar="K[=V]",
                   help="secret variable; K alone takes the value of $K here (repeatable)")
    p.add_argument("--timeout", help="time limit: seconds, or 90s, 5m, 2h, 1d, 1w")
    p.add_argument("-d", "--detach", action="store_true", help="print the job id and return")


def register(sub: Any) -> None:
    """Add ``hubfs jobs ...`` to the ``hubfs`` parser."""
    jobs = sub.add_parser("jobs", help="run and manage jobs on a hub (as `hf jobs`)").add_subparsers(
        dest="action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
        p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
        p.add_argument("--namespace", help="the user or org whose jobs these are (default: yours)")

    p = jobs.add_parser("list", aliases=["ps", "ls"], help="list running jobs (-a: all)")
    common(p)
    p.add_argument("-a", "--all", action="store_true", help="include finished jobs")
    p.set_defaults(func=cmd_list)

    p = jobs.add_parser("run", help="run IMAGE COMMAND... and follow its logs")
    common(p)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    job_options(p)
    p.set_defaults(func=_checked_run)

    uv = jobs.add_parser("uv", help="run a Python script with inline dependencies (as `hf jobs uv run`)")
    p = uv.add_subparsers(dest="uv_action", required=True).add_parser(
        "run", help="run SCRIPT (a local file, a URL or a command) with `uv run` and follow its logs")
    common(p)
    p.add_argument("script")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    p.add_argument("--with", dest="with_", action="append", metavar="DEP", help="extra dependency (repeatable)")
    p.add_argument("--python", help="Python version for uv")
    p.add_argument("--image", default=UV_IMAGE, help=f"image with uv (default {UV_IMAGE})")
    job_options(p)
    p.set_defaults(func=cmd_uv_run)

    p = jobs.add_parser("logs", help="print a job's logs (-f: until it ends)")
    common(p)
    p.add_argument("job_id", help="ID or NAMESPACE/ID")
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = jobs.add_parser("inspect", help="a job's details as JSON")
    common(p)
    p.add_argument("job_id", help="ID or NAMESPACE/ID")
    p.set_defaults(func=cmd_inspect)

    p = jobs.add_parser("cancel", help="cancel a job")
    common(p)
    p.add_argument("job_id", help="ID or NAMESPACE/ID")
    p.set_defaults(func=cmd_cancel)


def _checked_run(args: argparse.Namespace) -> int:
    if not args.command:
        raise HubfsError("hubfs jobs run: a COMMAND is needed after the IMAGE")
    return cmd_run(args)
