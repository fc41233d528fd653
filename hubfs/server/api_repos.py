"""Repository-level routes: identity, create/delete/move/settings, info, listings, cards, gating.

Wire contract: ``hub-api.md`` sections 1-2 (paths, bodies and status codes as huggingface_hub 2.4.0
sends and reads them).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    HubNotImplementedError,
    PayloadTooLargeError,
    RepoNotFoundError,
)
from hubfs.paths import RepoType, public_repo_id, validate_repo_id
from hubfs.server import api_settings, events
from hubfs.server.card_rules import check_card
from hubfs.server.cards import readme_text
from hubfs.server.git_store import GitRepo
from hubfs.server.http import Router, error_response, json_response
from hubfs.server.hub import ADMIN, Caller, Hub
from hubfs.server.metadata import Repo, Viewer
from hubfs.server.revisions import resolve as resolve_revision
from hubfs.server.wire import caller_of, flag, hub_of, iso, page, read_json, repo_url, str_field


def repo_type_of(segment: str) -> str:
    return RepoType.parse(segment).value


def whoami(request: Request) -> Response:
    """GET /api/whoami-v2 -> {type, name, orgs[], auth.accessToken{displayName, role}}; 401 anonymous."""
    caller = caller_of(request)
    hub = hub_of(request)
    if caller.user is None:
        raise AuthenticationError("Invalid credentials in Authorization header")
    row = hub.meta.account(caller.user)
    if row is None:  # the token outlived its account
        raise AuthenticationError("Invalid credentials in Authorization header")
    orgs = [{"type": "org", "id": m["org"], "name": m["org"], "fullname": m["fullname"] or m["org"],
             "email": m["email"], "avatarUrl": "", "roleInOrg": m["role"], "isEnterprise": False, "canPay": False}
            for m in hub.meta.memberships(caller.user)]
    return json_response({
        "type": "user", "id": caller.user, "name": caller.user, "fullname": row["fullname"], "email": row["email"],
        "isPro": False, "canPay": False, "avatarUrl": "", "orgs": orgs,
        "auth": {"type": "access_token", "accessToken": {"displayName": caller.user, "role": caller.role}},
    })


def agent_harnesses(request: Request) -> Response:
    """GET /api/agent-harnesses: the client probes it once per process; nothing to advertise."""
    return json_response({"standardEnvVars": [], "harnesses": {}})


async def create_repo(request: Request) -> Response:
    """POST /api/repos/create {name, organization|null, type?, visibility|private, sdk?} -> {url};
    409 with {error, url} when it exists (exist_ok reads url from it)."""
    body = await read_json(request)
    return await run_in_threadpool(_create_repo, request, body)


def _create_repo(request: Request, body: dict[str, Any]) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    repo_type = repo_type_of(str_field(body, "type") or "model")
    name = str_field(body, "name") or ""
    sdk = str_field(body, "sdk", None)
    if caller.user is None:
        raise AuthenticationError("You must be authenticated to create a repo.")
    ns = _namespace_for(caller.user, str_field(body, "organization", None))
    if "/" in name:
        ns, name = name.split("/", 1)
    repo_id = f"{ns}/{name}"
    validate_repo_id(repo_id, canonical=True)
    visibility = body.get("visibility")
    private: bool | None = None
    if visibility:
        private = visibility in ("private", "protected")
    elif body.get("private") is not None:
        private = bool(body.get("private"))
    if repo_type == "space" and not sdk:
        raise BadRequestError("Spaces need an sdk (gradio, streamlit, docker or static).")
    url = repo_url(request, repo_type, public_repo_id(repo_id))
    try:
        hub.create_repo(caller, repo_type, repo_id, private=private, sdk=sdk)
    except ConflictError as exc:
        exc.body = {"url": url}  # type: ignore[attr-defined]
        raise
    return json_response({"url": url, "name": public_repo_id(repo_id), "id": public_repo_id(repo_id)})


def _namespace_for(user: str, organization: str | None) -> str:
    """The namespace of a create or delete: the organization given, else the caller's own; the hub's
    admin naming no organization means a canonical repo (no namespace, like ``gpt2``)."""
    if organization:
        return organization
    return "" if user == ADMIN else user


async def delete_repo(request: Request) -> Response:
    """DELETE /api/repos/delete {name, organization, type?}; 404 RepoNotFound if missing."""
    body = await read_json(request)
    return await run_in_threadpool(_delete_repo, request, body)


def _delete_repo(request: Request, body: dict[str, Any]) -> Response:
    caller = caller_of(request)
    if caller.user is None:
        raise AuthenticationError("You must be authenticated with a write token to do this.")
    ns = _namespace_for(caller.user, str_field(body, "organization", None))
    name = str_field(body, "name") or ""
    if "/" in name:
        ns, name = name.split("/", 1)
    hub_of(request).delete_repo(caller, repo_type_of(str_field(body, "type") or "model"), f"{ns}/{name}")
    return json_response({})


async def move_repo(request: Request) -> Response:
    """POST /api/repos/move {fromRepo, toRepo, type}; old URLs redirect to the new name."""
    body = await read_json(request)
    return await run_in_threadpool(_move_repo, request, body)


def _move_repo(request: Request, body: dict[str, Any]) -> Response:
    hub_of(request).move_repo(caller_of(request), repo_type_of(body.get("type") or "model"),
                              str(body.get("fromRepo")), str(body.get("toRepo")))
    return json_response({})


async def update_settings(request: Request, t: str, ns: str, name: str) -> Response:
    """PUT /api/{T}/{id}/settings {private?, visibility?, gated?: false|"auto"|"manual"}."""
    body = await read_json(request)
    return await run_in_threadpool(_update_settings, request, t, ns, name, body)


def _update_settings(request: Request, t: str, ns: str, name: str, body: dict[str, Any]) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    private = body.get("private")
    if body.get("visibility") is not None:
        private = body["visibility"] in ("private", "protected")
    gated = body.get("gated")
    if gated is not None and gated not in (False, "auto", "manual"):
        raise BadRequestError("gated must be false, 'auto' or 'manual'.")
    hub.meta.update_settings(repo, private=None if private is None else bool(private),
                             gated=None if gated is None else (gated or "false"))
    events.publish_from(request, repo.type, repo.repo_id, "repo.config")
    return json_response({})


def _siblings(g: GitRepo, sha: str, blobs: bool) -> tuple[list[dict[str, Any]], int]:
    out, used = [], 0
    for e in g.list_tree(sha, "", recursive=True):
        if e.type != "file":
            continue
        used += e.size
        item: dict[str, Any] = {"rfilename": e.path}
        if blobs:
            item.update(size=e.size, blobId=e.oid)
            if e.lfs:
                item["lfs"] = {"sha256": e.lfs.oid, "size": e.lfs.size, "pointerSize": e.pointer_size}
        out.append(item)
    return out, used


def info_body(repo: Repo, *, sha: str | None, card: dict[str, Any] | None, commit_ts: float | None,
              siblings: list[dict[str, Any]] | None, used: int | None, with_card: bool = True,
              indexed_facets: bool = False) -> dict[str, Any]:
    """The info object of ``/api/{T}/{id}`` and of listings.

    ``indexed_facets``: the card was not loaded; take pipeline_tag and library_name from the index.
    """
    body: dict[str, Any] = {
        "_id": repo.uid, "id": repo.public_id, "author": repo.namespace or None, "sha": sha, "private": repo.private,
        "gated": repo.gated, "disabled": False, "lastModified": iso(commit_ts or repo.last_modified),
        "createdAt": iso(repo.created_at), "tags": list(repo.tags), "downloads": repo.downloads,
        "likes": repo.likes,
    }
    if repo.type == "model":
        body["modelId"] = repo.public_id
        if indexed_facets and card is None:
            card = {"pipeline_tag": repo.pipeline_tag, "library_name": repo.library_name}
            with_card = False
        if card and isinstance(card.get("pipeline_tag"), str):
            body["pipeline_tag"] = card["pipeline_tag"]
        if card and isinstance(card.get("library_name"), str):
            body["library_name"] = card["library_name"]
    if repo.type == "space":
        body["sdk"] = (card or {}).get("sdk") or repo.sdk
        body["subdomain"] = repo.public_id.replace("/", "-").lower()
    if with_card and card is not None:
        body["cardData"] = card
    if siblings is not None:
        body["siblings"] = siblings
    if used is not None:
        body["usedStorage"] = used
    return body


def repo_info(request: Request, t: str, ns: str, name: str, rev: str | None = None) -> Response:
    """GET /api/{T}/{id}[/revision/{rev}][?blobs=true][&expand=prop...] -> info with sha, siblings, cardData.

    With ``expand``, only ``id``, ``_id`` and the named properties are returned (``expand=sha`` is a
    cheap way to pin a revision: no file listing is made).
    """
    hub, caller = hub_of(request), caller_of(request)
    try:
        repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    except RepoNotFoundError as not_found:
        sub = _CANONICAL_SUBRESOURCES.get(name) if ns and not rev else None
        if sub is None or not _sees_canonical(hub, caller, repo_type_of(t), ns):
            raise not_found from None  # a hidden canonical repo reads the same as a missing one
        return sub(request, t, "", ns)  # /api/models/gpt2/refs: canonical gpt2's refs, not repo gpt2/refs
    expand = set(request.query_params.getlist("expand"))
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev or "main")
        siblings, used = _siblings(g, sha, flag(request, "blobs")) if not expand or expand & {"siblings", "usedStorage"} \
            else (None, None)
        card = None
        if not expand or "cardData" in expand or expand & {"pipeline_tag", "library_name", "sdk"}:
            card = hub.meta.card(repo) if sha == repo.indexed_sha else _parse_card(hub, g, sha)
        ts = g.commit_info(sha).timestamp
    body = info_body(repo, sha=sha, card=card, commit_ts=ts, siblings=siblings, used=used)
    if expand:
        body = {k: v for k, v in body.items() if k in expand or k in ("id", "_id")}
    return json_response(body)


def _parse_card(hub: Hub, g: GitRepo, sha: str) -> dict[str, Any] | None:
    """cardData of README.md at ``sha`` (not the indexed head), bounded; None when absent or refused."""
    readme = g.lookup(sha, "README.md")
    if readme is None or readme.type != "file" or readme.lfs is not None:
        return None
    try:
        return hub.cards.front_matter(readme_text(g.read_blob(readme.oid)))
    except (BadRequestError, PayloadTooLargeError):
        return None


_FACET_PREFIXES = ("language:", "library:", "pipeline_tag:", "task:", "other:")


def _listing_filters(repo_type: str, q: QueryParams) -> dict[str, Any]:
    """The Hub's listing parameters (search, author, filter, pipeline_tag, library, language) as the
    arguments of ``Metadata.search_repos``."""
    filters = list(q.getlist("filter"))
    for key in ("pipeline_tag", "library", "language"):
        filters += q.getlist(key)
    if repo_type != "dataset":
        filters = [f.split(":", 1)[1] if f.startswith(_FACET_PREFIXES) else f for f in filters]
    searches = q.getlist("search")
    return {"author": q.get("author"), "search": searches[0] if searches else None, "filters": filters}


def select_repos(hub: Hub, caller: Caller, repo_type: str, q: QueryParams, *, with_tags: bool = True) -> list[Repo]:
    """The repos a listing shows ``caller`` for the Hub's query parameters (search, author, filter,
    pipeline_tag, library, language, gated, sort), in order: the API listing and the web pages share it.
    ``with_tags`` False leaves each repo's ``tags`` empty (cheaper, for callers that do not show them)."""
    repos = hub.meta.search_repos(repo_type, **_listing_filters(repo_type, q), sort=q.get("sort"),
                                  with_tags=with_tags, viewer=Viewer(caller.user))
    for extra in q.getlist("search")[1:]:
        repos = [r for r in repos if extra.lower() in r.repo_id.lower()]
    if q.get("gated") in ("true", "false"):
        repos = [r for r in repos if bool(r.gated) == (q["gated"] == "true")]
    return [r for r in repos if not r.private or (caller.user and hub.meta.is_member(caller.user, r.namespace))]


def listing_page(hub: Hub, caller: Caller, repo_type: str, q: QueryParams, offset: int,
                 limit: int) -> tuple[int, list[Repo], dict[str, int], dict[str, Counter[str]]]:
    """One page of :func:`select_repos`'s answer for parameters with at most one ``search`` and no
    ``gated`` (the web search page's), with the whole answer's size and facets (see
    ``Metadata.search_facets``), all counted in SQL: the cost does not grow with the number of repos."""
    if len(q.getlist("search")) > 1 or q.get("gated"):
        raise BadRequestError("The search page takes one search and no gated filter.")
    found = _listing_filters(repo_type, q)
    viewer = Viewer(caller.user)
    total, tags, columns = hub.meta.search_facets(repo_type, **found, viewer=viewer)
    repos = hub.meta.search_repos(repo_type, **found, sort=q.get("sort"), with_tags=False, viewer=viewer,
                                  limit=limit, offset=offset)
    return total, repos, tags, columns


def list_repos(request: Request, t: str) -> Response:
    """GET /api/{T}?search&author&filter*&sort&limit&full&cardData&expand* -> [info], Link paginated."""
    hub, caller = hub_of(request), caller_of(request)
    repo_type = repo_type_of(t)
    q = request.query_params
    repos = select_repos(hub, caller, repo_type, q)
    try:
        limit = int(q.get("limit") or 1000)
    except ValueError:
        raise BadRequestError("limit must be an integer.") from None
    chunk, headers = page(request, repos, max(1, min(limit, 1000)))
    expand = set(q.getlist("expand"))
    want_siblings = flag(request, "full") or "siblings" in expand
    want_card = flag(request, "full") or flag(request, "cardData") or "cardData" in expand
    # Cards are read for the rows of this page only, and only when the answer carries them.
    cards = hub.meta.cards(chunk) if want_card or repo_type == "space" else {}
    items = []
    for repo in chunk:
        siblings = None
        if want_siblings:
            with hub.git.open(repo.type, repo.repo_id) as g:
                siblings, _ = _siblings(g, resolve_revision(g, "main"), False)
        items.append(info_body(repo, sha=repo.indexed_sha, card=cards.get(repo.id), commit_ts=None,
                               siblings=siblings, used=None, with_card=want_card, indexed_facets=not cards))
    return json_response(items, headers=headers)


async def validate_yaml(request: Request) -> Response:
    """POST /api/validate-yaml {content, repoType} -> 200 {errors:[], warnings:[]} or 400 {errors:[{message}]}."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequestError("The body must be a JSON object {content, repoType}.")
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise BadRequestError("content must be a string.")
    repo_type = repo_type_of(str_field(body, "repoType", None) or "model")
    try:
        # Parsed in the thread pool, bounded in size and expansion; past MAX_YAML_BYTES: 413.
        card = await hub_of(request).cards.front_matter_async(content or "")
        errors = check_card(repo_type, card)
    except BadRequestError as exc:
        if exc.status != 400:
            raise
        errors = [exc.message]
    if errors:
        return json_response({"error": "Invalid metadata in README.md", "errors": [{"message": e} for e in errors],
                              "warnings": []}, status=400,
                             headers={"X-Error-Code": "BadRequest", "X-Error-Message": "Invalid metadata in README.md"})
    return json_response({"errors": [], "warnings": []})


def auth_check(request: Request, t: str, ns: str, name: str, write: str | None = None) -> Response:
    """GET /api/{T}/{id}/auth-check[/write]: 200 when the caller may read (or write) the repo."""
    hub, caller = hub_of(request), caller_of(request)
    if write:
        hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    else:
        hub.check_gate(caller, hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}"))
    return json_response({})


def _sees_canonical(hub: Hub, caller: Caller, repo_type: str, name: str) -> bool:
    """Whether canonical repo ``name`` exists and ``caller`` may see it."""
    try:
        hub.visible_repo(caller, repo_type, name)
    except RepoNotFoundError:
        return False
    return True


def _canonical_refs(request: Request, t: str, ns: str, name: str) -> Response:
    from hubfs.server.api_files import refs  # api_files imports this module

    return refs(request, t, ns, name)


def _canonical_listings(request: Request, t: str, ns: str, name: str) -> Response:
    """``discussions``, ``likers`` and ``lfs-files`` of a canonical repo (GET listings, like ``refs``)."""
    from hubfs.server import api_discussions, api_likes, api_storage  # they import this module

    sub = request.url.path.rstrip("/").rsplit("/", 1)[1]
    handler = {"discussions": api_discussions.listing, "likers": api_likes.likers, "lfs-files": api_storage.lfs_files}[sub]
    return handler(request, t, ns, name)


# GET /api/{T}/{name}/{sub} of a canonical repo reads like the info of repo {name}/{sub}: these are
# answered as the canonical repo's sub-resource when no such namespaced repo exists.
_CANONICAL_SUBRESOURCES = {"refs": _canonical_refs, "auth-check": auth_check, "discussions": _canonical_listings,
                           "likers": _canonical_listings, "lfs-files": _canonical_listings}


async def not_implemented(request: Request, rest: str = "") -> Response:
    """Any other /api/ route: 501 NotImplemented, so the client shows a readable error."""
    return error_response(HubNotImplementedError(
        f"{request.method} {request.url.path} is a Hub endpoint this server does not implement."))


def register(router: Router) -> None:
    api_settings.register(router)
    T = "{t:type}"
    R = f"/api/{T}/{{ns}}/{{name}}"
    router.add(["GET"], "/api/whoami-v2", whoami)
    router.add(["GET"], "/api/agent-harnesses", agent_harnesses)
    router.add(["POST"], "/api/repos/create", create_repo)
    router.add(["DELETE"], "/api/repos/delete", delete_repo)
    router.add(["POST"], "/api/repos/move", move_repo)
    router.add(["POST"], "/api/validate-yaml", validate_yaml)
    router.add(["GET"], f"/api/{T}", list_repos)
    router.add(["GET"], R, repo_info)
    router.add(["GET"], R + "/revision/{rev:path}", repo_info)
    router.add(["PUT"], R + "/settings", update_settings)
    router.add(["GET"], R + "/auth-check", auth_check)
    router.add(["GET"], R + "/auth-check/{write}", auth_check)

