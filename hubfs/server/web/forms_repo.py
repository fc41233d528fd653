"""Repo management in the browser: create (``/new``, ``/new-dataset``, ``/new-space``), settings
(``/{P}ns/name/settings``: visibility, gating, rename/move, delete, access requests) and a gated
repo's terms (``/{P}ns/name/access``: "agree and access").

Each action calls the API route's own service function (``api_repos._create_repo`` and friends) as
the signed-in user, so the browser and the API decide alike.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, ConflictError, NotFoundError, RepoNotFoundError
from hubfs.paths import RepoType, public_repo_id
from hubfs.server import api_access_requests, api_repos
from hubfs.server.http import Router
from hubfs.server.metadata import Repo
from hubfs.server.web.forms import Form, as_caller, form_page, form_route, redirect, signed_in, to_login
from hubfs.server.web.pages_base import page, page_caller, repo_base
from hubfs.server.wire import hub_of

KINDS = {"/new": "model", "/new-dataset": "dataset", "/new-space": "space"}
SDKS = ("gradio", "streamlit", "docker", "static")
REPO = "/{prefix:prefix}{ns}/{name}"


def _type_segment(prefix: str) -> str:
    """``""`` / ``datasets/`` / ``spaces/`` -> the API's ``models`` / ``datasets`` / ``spaces``."""
    return prefix.rstrip("/") or "models"


def _kind(prefix: str) -> str:
    return RepoType.parse(_type_segment(prefix)).value


def owners(request: Request, user: str) -> list[str]:
    """Where ``user`` may create repos: their own namespace, then orgs they write to."""
    meta = hub_of(request).meta
    return [user] + [m["org"] for m in meta.memberships(user) if meta.can_write_namespace(user, m["org"])]


@page
def new_repo_page(request: Request) -> Response:
    """GET /new, /new-dataset, /new-space: the create form."""
    caller = signed_in(request)
    if caller is None or caller.user is None:
        return to_login(request)
    kind = KINDS[request.url.path]
    return _new_form(request, kind, caller.user, {}, None)


def _new_form(request: Request, kind: str, user: str, form: Form, error: str | None, status: int = 200) -> Response:
    return form_page(request, "new_repo.html", {
        "title": f"New {kind}", "kind": kind, "owners": owners(request, user), "sdks": SDKS,
        "form": {"owner": form.get("owner", user), "name": form.get("name", ""),
                 "visibility": form.get("visibility", "public"), "sdk": form.get("sdk", "gradio")},
        "action": request.url.path, "error": error}, status=status)


def new_repo(request: Request, form: Form) -> Response:
    """POST /new... {owner, name, visibility, sdk?}: create it through the API's ``_create_repo``; 303
    to the new repo's page, or the form again with the error."""
    caller = signed_in(request)
    if caller is None or caller.user is None:
        return to_login(request)
    kind = KINDS[request.url.path]
    owner = form.get("owner", "").strip() or caller.user
    name = form.get("name", "").strip()
    body: dict[str, Any] = {"name": f"{owner}/{name}", "type": kind,
                            "private": form.get("visibility") == "private"}
    if kind == "space":
        body["sdk"] = form.get("sdk") if form.get("sdk") in SDKS else None
    try:
        if not name:
            raise BadRequestError("Give the repo a name.")
        api_repos._create_repo(as_caller(request, caller), body)
    except BadRequestError as exc:
        return _new_form(request, kind, caller.user, form, exc.message, status=exc.status)
    return redirect(repo_base(kind, public_repo_id(f"{owner}/{name}")))


# -- settings ---------------------------------------------------------------------------------------


def _settings_context(request: Request, repo: Repo, error: str | None, notice: str | None) -> dict[str, Any]:
    hub = hub_of(request)
    requests: dict[str, list[str]] = {}
    if repo.gated:
        for status in api_access_requests.STATUSES:
            requests[status] = [r["user"] for r in hub.meta.access_requests(repo, status)]
    return {"title": f"Settings: {repo.public_id}", "repo": repo, "base": repo_base(repo.type, repo.public_id),
            "gated": repo.gated or "false", "requests": requests, "error": error, "notice": notice}


@page
def settings_page(request: Request, prefix: str, ns: str, name: str) -> Response:
    """GET /{P}ns/name/settings: for those who may write the repo (others: the API's 401/403/404)."""
    caller = signed_in(request)
    if caller is None:
        return to_login(request)
    repo = hub_of(request).writable_repo(caller, _kind(prefix), f"{ns}/{name}")
    notice = request.query_params.get("done")
    return form_page(request, "settings.html", _settings_context(
        request, repo, None, notice if notice in ("visibility", "gating", "access", "moved") else None))


def settings(request: Request, form: Form, prefix: str, ns: str, name: str) -> Response:
    """POST /{P}ns/name/settings {action: visibility|gating|move|delete|access, ...}."""
    caller = signed_in(request)
    if caller is None:
        return to_login(request)
    hub = hub_of(request)
    kind, t = _kind(prefix), _type_segment(prefix)
    repo = hub.writable_repo(caller, kind, f"{ns}/{name}")
    as_caller(request, caller)
    action = form.get("action")
    base = repo_base(repo.type, repo.public_id)
    try:
        if action == "visibility":
            api_repos._update_settings(request, t, ns, name, {"private": form.get("visibility") == "private"})
        elif action == "gating":
            gated = form.get("gated")
            if gated not in ("false", "auto", "manual"):
                raise BadRequestError("Gating is off, auto or manual.")
            api_repos._update_settings(request, t, ns, name, {"gated": False if gated == "false" else gated})
        elif action == "access":
            status = form.get("status")
            if status not in ("accepted", "rejected", "pending"):
                raise BadRequestError("An access request is accepted, rejected or pending.")
            api_access_requests._handle(request, t, ns, name, {"user": form.get("user", ""), "status": status})
        elif action == "move":
            target = form.get("new_id", "").strip()
            if "/" not in target:
                target = f"{ns}/{target}"
            api_repos._move_repo(request, {"fromRepo": f"{ns}/{name}", "toRepo": target, "type": kind})
            return redirect(repo_base(kind, target) + "/settings?done=moved")
        elif action == "delete":
            if form.get("confirm", "").strip() != repo.public_id:
                raise BadRequestError(f"Type {repo.public_id} to confirm the deletion.")
            api_repos._delete_repo(request, {"name": f"{ns}/{name}", "type": kind})
            return redirect(f"/{caller.user}")
        else:
            raise BadRequestError("Unknown settings action.")
    except (BadRequestError, ConflictError, NotFoundError) as exc:
        if isinstance(exc, RepoNotFoundError):
            raise
        repo = hub.writable_repo(caller, kind, f"{ns}/{name}")
        return form_page(request, "settings.html", _settings_context(request, repo, exc.message, None),
                         status=exc.status)
    return redirect(f"{base}/settings?done={'gating' if action == 'gating' else action}")


# -- gated repos --------------------------------------------------------------------------------------


@page
def access_page(request: Request, prefix: str, ns: str, name: str) -> Response:
    """GET /{P}ns/name/access: a gated repo's terms, the visitor's request status, "agree and access"."""
    hub = hub_of(request)
    caller = page_caller(request)
    repo = hub.visible_repo(caller, _kind(prefix), f"{ns}/{name}")
    card = hub.meta.card(repo) or {}
    prompt = card.get("extra_gated_prompt")
    status = None
    member = False
    if caller.user:
        member = hub.meta.is_member(caller.user, repo.namespace)
        status = hub.meta.access_status(repo, caller.user)
    return form_page(request, "gated.html", {
        "title": f"Access {repo.public_id}", "repo": repo, "base": repo_base(repo.type, repo.public_id),
        "prompt": prompt if isinstance(prompt, str) else None, "status": status, "member": member,
        "signed_in": caller.user is not None})


def access(request: Request, form: Form, prefix: str, ns: str, name: str) -> Response:
    """POST /{P}ns/name/access: agree to the terms (the API's ``ask-access``); 303 back."""
    caller = signed_in(request)
    if caller is None:
        return to_login(request)
    api_access_requests._ask(as_caller(request, caller), prefix, ns, name, b"")
    repo = hub_of(request).visible_repo(caller, _kind(prefix), f"{ns}/{name}")
    return redirect(repo_base(repo.type, repo.public_id) + "/access")


def register(router: Router) -> None:
    for path in KINDS:
        router.add(["GET"], path, new_repo_page)
        router.add(["POST"], path, form_route(new_repo))
    router.add(["GET"], REPO + "/settings", settings_page)
    router.add(["POST"], REPO + "/settings", form_route(settings))
    router.add(["GET"], REPO + "/access", access_page)
    router.add(["POST"], REPO + "/access", form_route(access))
