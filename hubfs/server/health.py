"""``GET /api/health``: is this worker able to serve? Unauthenticated, and it tells no secrets.

Answers 200 ``{"status": "ok", "checks": {...}}`` when the metadata database answers a query, the
object store is reachable (the LFS folder writable, or the S3 bucket answering) and the git volume is
writable; 503 with ``"status": "failed"`` and the failing check's error class otherwise (for load
balancers and orchestrators). No paths, bucket names, URLs or messages are included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import HubfsError
from hubfs.server.http import Router, json_response
from hubfs.server.hub import ADMIN, Hub
from hubfs.server.wire import hub_of


def _check(probe: Callable[[], None], **info: str) -> dict[str, str]:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 (a health probe reports any failure, it never raises)
        return {"status": "failed", "error": type(exc).__name__, **info}
    return {"status": "ok", **info}


def _database(hub: Hub) -> None:
    hub.meta.account(ADMIN)


def _git_volume(hub: Hub) -> None:
    root = hub.git.root
    if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
        raise HubfsError("the git volume is not writable")
    if os.statvfs(root).f_bavail == 0:
        raise HubfsError("the git volume is full")


def report(hub: Hub) -> dict[str, Any]:
    """The health report (blocking: it queries the database and the object store)."""
    checks = {
        "database": _check(lambda: _database(hub), kind=hub.db.kind),
        "objectStore": _check(hub.lfs.store.check, kind=hub.lfs.store.kind),
        "gitVolume": _check(lambda: _git_volume(hub)),
    }
    ok = all(c["status"] == "ok" for c in checks.values())
    return {"status": "ok" if ok else "failed", "checks": checks}


def health(request: Request) -> Response:
    """GET|HEAD /api/health -> 200 or 503 with the report; a plain handler: the pool runs it."""
    out = report(hub_of(request))
    return json_response(out, status=200 if out["status"] == "ok" else 503, headers={"Cache-Control": "no-store"})


def register(router: Router) -> None:
    router.add(["GET", "HEAD"], "/api/health", health)
