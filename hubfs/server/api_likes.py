"""Likes: ``like``, ``unlike``, ``list_liked_repos`` and ``list_repo_likers`` of huggingface_hub.

Routes: ``POST|DELETE /api/{T}/{id}/like``, ``GET /api/users/{user}/likes`` ->
``[{createdAt, repo: {name, type}}]`` and ``GET /api/{T}/{id}/likers`` -> ``[{user, fullname, avatarUrl}]``
(both Link-paginated). The count is the ``likes`` of repo info and the key of ``sort=likes``. A
private repo's likes, and the repo in anyone's likes, are shown only to callers who may see it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import NotFoundError
from hubfs.server.api_repos import repo_type_of
from hubfs.server.community import community_of
from hubfs.server.http import Router, json_response
from hubfs.server.wire import caller_of, hub_of, iso, page

PAGE = 1000


def _set(request: Request, t: str, ns: str, name: str, liked: bool) -> Response:
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    user = hub.require_signed_in_writer(caller, "like a repo")
    count = community_of(request).likes.set(repo, user, liked)
    return json_response({"likes": count})


def like(request: Request, t: str, ns: str, name: str) -> Response:
    """POST /api/{T}/{id}/like (idempotent) -> {likes}."""
    return _set(request, t, ns, name, True)


def unlike(request: Request, t: str, ns: str, name: str) -> Response:
    """DELETE /api/{T}/{id}/like (idempotent) -> {likes}."""
    return _set(request, t, ns, name, False)


def likers(request: Request, t: str, ns: str, name: str) -> Response:
    """GET /api/{T}/{id}/likers -> [{user, fullname, avatarUrl, type}]."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    items = []
    for user, _ in community_of(request).likes.likers(repo):
        row = hub.meta.account(user)
        items.append({"user": user, "fullname": (row["fullname"] if row else None) or user, "avatarUrl": "",
                      "type": "user"})
    chunk, headers = page(request, items, PAGE)
    return json_response(chunk, headers=headers)


def liked_by(request: Request, user: str) -> Response:
    """GET /api/users/{user}/likes -> [{createdAt, repo: {name, type}}], newest first; 404 for no such user."""
    hub, caller = hub_of(request), caller_of(request)
    row = hub.meta.account(user)
    if row is None or row["is_org"]:
        raise NotFoundError(f"User {user} not found.")
    items = []
    for repo_id, at in community_of(request).likes.liked_by(user):
        repo = hub.meta.repo_by_id(repo_id)
        if repo is None or (repo.private and not (caller.user and hub.meta.is_member(caller.user, repo.namespace))):
            continue
        items.append({"createdAt": iso(at), "repo": {"name": repo.public_id, "type": repo.type}})
    chunk, headers = page(request, items, PAGE)
    return json_response(chunk, headers=headers)


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}"
    router.add(["POST"], R + "/like", like)
    router.add(["DELETE"], R + "/like", unlike)
    router.add(["GET"], R + "/likers", likers)
    router.add(["GET"], "/api/users/{user}/likes", liked_by)
