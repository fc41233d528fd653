"""Gated-repo access requests: ``list_pending_access_requests`` (and accepted, rejected),
``accept_access_request``, ``reject_access_request``, ``cancel_access_request``, ``grant_access`` of
huggingface_hub, and the user's own request (``POST /{P}{id}/ask-access``).

The Hub's answers: 400 when the repo is not gated (or, for grant, the user already has access), 403
for a read-only token, 404 for an unknown user, a request that does not exist, or one that already
has the status asked for. Handling needs write access to the repo; a request is named by its user
or by its ``requestId``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import AuthenticationError, BadRequestError, NotFoundError
from hubfs.server.api_repos import repo_type_of
from hubfs.server.community import community_of
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Hub
from hubfs.server.metadata import Repo
from hubfs.server.wire import caller_of, hub_of, iso, page, read_body, read_json, str_field

STATUSES = ("pending", "accepted", "rejected")
REASON_MAX = 1000
FIELDS_MAX = 16 << 10


def request_id(repo: Repo, user: str) -> str:
    """A request's id: stable, 24 hex characters, like the Hub's."""
    return hashlib.sha256(f"{repo.uid}|{user}".encode()).hexdigest()[:24]


def _gated(hub: Hub, request: Request, t: str, ns: str, name: str) -> Repo:
    repo = hub.writable_repo(caller_of(request), repo_type_of(t), f"{ns}/{name}")
    if not repo.gated:
        raise BadRequestError(f"Repository {repo.public_id} is not gated: there are no access requests to handle.")
    return repo


def list_requests(request: Request, t: str, ns: str, name: str, status: str) -> Response:
    """GET /api/{T}/{id}/user-access-request/{pending|accepted|rejected} ->
    [{user: {user, fullname, email, avatarUrl, type}, requestId, status, timestamp, fields?, rejectionReason?}]."""
    hub = hub_of(request)
    if status not in STATUSES:
        raise BadRequestError("The status must be pending, accepted or rejected.")
    repo = _gated(hub, request, t, ns, name)
    details = community_of(request).access.details(repo)
    out = []
    for row in hub.meta.access_requests(repo, status):
        account = hub.meta.account(row["user"])
        reason, fields = details.get(row["user"], (None, None))
        item: dict[str, Any] = {
            "user": {"user": row["user"], "fullname": (account["fullname"] if account else None) or row["user"],
                     "email": account["email"] if account else None, "avatarUrl": "", "type": "user"},
            "requestId": request_id(repo, row["user"]), "status": row["status"], "timestamp": iso(row["created_at"]),
        }
        if fields:
            item["fields"] = fields
        if reason and status == "rejected":
            item["rejectionReason"] = reason
        out.append(item)
    chunk, headers = page(request, out, 1000)
    return json_response(chunk, headers=headers)


async def handle(request: Request, t: str, ns: str, name: str) -> Response:
    """POST /api/{T}/{id}/user-access-request/handle {user | requestId, status, rejectionReason?}."""
    body = await read_json(request)
    return await run_in_threadpool(_handle, request, t, ns, name, body)


def _handle(request: Request, t: str, ns: str, name: str, body: dict[str, Any]) -> Response:
    hub = hub_of(request)
    repo = _gated(hub, request, t, ns, name)
    status = body.get("status")
    if status not in STATUSES:
        raise BadRequestError("status must be pending, accepted or rejected.")
    user = str_field(body, "user", None)
    rid = str_field(body, "requestId", None)
    if (user is None) == (rid is None):
        raise BadRequestError("Give exactly one of 'user' or 'requestId'.")
    reason = str_field(body, "rejectionReason", None, max_len=REASON_MAX)
    if reason is not None and status != "rejected":
        raise BadRequestError("A rejectionReason goes only with status 'rejected'.")
    if user is not None:
        if hub.meta.account(user) is None:
            raise NotFoundError(f"User {user} not found.")
        current = hub.meta.access_status(repo, user)
    else:
        match = [r["user"] for s in STATUSES for r in hub.meta.access_requests(repo, s) if request_id(repo, r["user"]) == rid]
        user, current = (match[0], hub.meta.access_status(repo, match[0])) if match else (rid or "", None)
    if current is None:
        raise NotFoundError(f"No access request from {user} on {repo.public_id}.")
    if current == status:
        raise NotFoundError(f"The access request of {user} is already {status}.")
    hub.meta.set_access(repo, user, status)
    community_of(request).access.set_reason(repo, user, reason if status == "rejected" else None)
    return json_response({})


async def grant(request: Request, t: str, ns: str, name: str) -> Response:
    """POST /api/{T}/{id}/user-access-request/grant {user} -> {}: access without a request."""
    body = await read_json(request)
    return await run_in_threadpool(_grant, request, t, ns, name, body)


def _grant(request: Request, t: str, ns: str, name: str, body: dict[str, Any]) -> Response:
    hub = hub_of(request)
    repo = _gated(hub, request, t, ns, name)
    user = str_field(body, "user", None) or ""
    account = hub.meta.account(user)
    if account is None or account["is_org"]:
        raise NotFoundError(f"User {user} not found.")
    if hub.meta.access_status(repo, user) == "accepted" or hub.meta.is_member(user, repo.namespace):
        raise BadRequestError(f"{user} already has access to {repo.public_id}.")
    hub.meta.set_access(repo, user, "accepted")
    community_of(request).access.set_reason(repo, user, None)
    return json_response({})


async def ask(request: Request, prefix: str, ns: str, name: str) -> Response:
    """POST /{P}{id}/ask-access [form or JSON fields] -> {status}: the signed-in caller asks for access;
    an ``auto`` gate accepts at once. Asking again keeps the request (and its status) as it is."""
    raw = await read_body(request, FIELDS_MAX, "Access request form")
    return await run_in_threadpool(_ask, request, prefix, ns, name, bytes(raw))


def _ask(request: Request, prefix: str, ns: str, name: str, raw: bytes) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(prefix.rstrip("/") or "model"), f"{ns}/{name}")
    if caller.user is None:
        raise AuthenticationError("You must be authenticated to request access to a gated repo.")
    if not repo.gated:
        raise BadRequestError(f"Repository {repo.public_id} is not gated: everyone may download it already.")
    if hub.meta.access_status(repo, caller.user) is None:
        hub.meta.set_access(repo, caller.user, "accepted" if repo.gated == "auto" else "pending")
        fields = _form_fields(request.headers.get("content-type", ""), raw)
        if fields:
            community_of(request).access.set_fields(repo, caller.user, fields)
    return json_response({"status": hub.meta.access_status(repo, caller.user)})


def _form_fields(content_type: str, raw: bytes) -> dict[str, Any] | None:
    """The request form's answers from a JSON object or a urlencoded body (None when there are none)."""
    if not raw.strip():
        return None
    try:
        if "json" in content_type:
            data = json.loads(raw)
            return {str(k): v for k, v in data.items()} if isinstance(data, dict) else None
        return dict(parse_qsl(raw.decode(), keep_blank_values=True)) or None
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("The access request form is neither JSON nor urlencoded.") from None


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}/user-access-request"
    router.add(["POST"], R + "/grant", grant)
    router.add(["POST"], R + "/handle", handle)
    router.add(["GET"], R + "/{status}", list_requests)
    router.add(["POST"], "/{prefix:prefix}{ns}/{name}/ask-access", ask)
