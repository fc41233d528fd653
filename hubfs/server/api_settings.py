"""Account-level settings routes: the caller's repositories with their storage (``hf repos ls``,
``list_user_repos``) and an organization's default repo visibility.

``GET /api/settings/repositories`` and ``GET /api/organizations/{org}/settings/repositories`` ->
``[{id, type, updatedAt, visibility, storage, storagePercent}]`` (Link paginated);
``GET|PUT /api/organizations/{org}/settings`` ``{"defaultRepoVisibility": "public"|"private"}``
(org admins and the hub's admin may change it; members may read it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import AuthenticationError, BadRequestError, NotFoundError, PermissionDeniedError
from hubfs.server.http import Router, json_response
from hubfs.server.hub import ADMIN, Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.wire import caller_of, hub_of, iso, page, read_json

PAGE = 1000


def _signed_in(caller: Caller) -> str:
    if caller.user is None:
        raise AuthenticationError("You must be authenticated to see your repositories.")
    return caller.user


def _org_member(hub: Hub, caller: Caller, org: str) -> None:
    user = _signed_in(caller)
    row = hub.meta.account(org)
    if row is None or not row["is_org"]:
        raise NotFoundError(f"Organization {org} not found.")
    if user != ADMIN and not hub.meta.is_member(user, org):
        raise PermissionDeniedError(f"You are not a member of {org}.")


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _storage_rows(hub: Hub, repos: list[Repo]) -> list[dict[str, Any]]:
    sizes = [hub.meta.lfs_bytes(r) + _dir_bytes(hub.git.path(r.type, r.repo_id)) for r in repos]
    total = sum(sizes) or 1
    return [{"id": r.public_id, "type": r.type, "updatedAt": iso(r.last_modified),
             "visibility": "private" if r.private else "public", "storage": size,
             "storagePercent": round(100.0 * size / total, 2)}
            for r, size in zip(repos, sizes)]


def my_repositories(request: Request) -> Response:
    """GET /api/settings/repositories: the caller's own repos (not their orgs'), newest change first."""
    hub, caller = hub_of(request), caller_of(request)
    repos = hub.meta.repos_of(_signed_in(caller))
    chunk, headers = page(request, repos, PAGE)
    return json_response(_storage_rows(hub, chunk), headers=headers)


def org_repositories(request: Request, ns: str) -> Response:
    """GET /api/organizations/{org}/settings/repositories: an org's repos, for its members."""
    hub, caller = hub_of(request), caller_of(request)
    _org_member(hub, caller, ns)
    chunk, headers = page(request, hub.meta.repos_of(ns), PAGE)
    return json_response(_storage_rows(hub, chunk), headers=headers)


def get_org_settings(request: Request, ns: str) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    _org_member(hub, caller, ns)
    return json_response({"defaultRepoVisibility": "private" if hub.meta.org_default_private(ns) else "public"})


async def put_org_settings(request: Request, ns: str) -> Response:
    """PUT /api/organizations/{org}/settings {defaultRepoVisibility}: new repos of the org are private
    unless their creator says otherwise."""
    body = await read_json(request)
    return await run_in_threadpool(_put_org_settings, request, ns, body)


def _put_org_settings(request: Request, org: str, body: dict[str, Any]) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    _org_member(hub, caller, org)
    user = caller.user or ""
    if caller.role != "write" or (user != ADMIN and not hub.meta.is_org_admin(user, org)):
        raise PermissionDeniedError(f"Only admins of {org} can change its settings (with a write token).")
    visibility = body.get("defaultRepoVisibility")
    if visibility not in ("public", "private"):
        raise BadRequestError("defaultRepoVisibility must be 'public' or 'private'.")
    hub.meta.set_org_default_private(org, visibility == "private")
    return json_response({"defaultRepoVisibility": visibility})


def register(router: Router) -> None:
    router.add(["GET"], "/api/settings/repositories", my_repositories)
    # the org segment is named ``ns`` like every namespace segment (route-enumerating tests fill it in)
    router.add(["GET"], "/api/organizations/{ns}/settings/repositories", org_repositories)
    router.add(["GET"], "/api/organizations/{ns}/settings", get_org_settings)
    router.add(["PUT"], "/api/organizations/{ns}/settings", put_org_settings)
