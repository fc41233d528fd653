"""Profile pages (``/USER``, ``/ORG``): an account's repos the viewer may see, and an org's members.

``/NAME`` is first a canonical model (``/gpt2``) when one is visible, else a profile, else 404. A
private repo is listed only to members of its namespace (the API listing's rule, through
``select_repos``), so neither its name nor its count shows to anyone else.
"""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import NotFoundError, RepoNotFoundError
from hubfs.server.api_repos import select_repos
from hubfs.server.web.pages_base import html, page, page_caller
from hubfs.server.web.pages_repo import repo_page
from hubfs.server.wire import hub_of

PROFILE_MAX = 500  # repos of one type listed on a profile


@page
def profile_page(request: Request, name: str) -> Response:
    """GET /{name}: a user or org profile."""
    hub, caller = hub_of(request), page_caller(request)
    try:
        if hub.meta.get_repo("model", f"/{name}") is not None:
            hub.visible_repo(caller, "model", f"/{name}")
            return repo_page(request, t="models", ns="", name=name)
    except RepoNotFoundError:
        pass
    account = hub.meta.account(name)
    if account is None:
        raise NotFoundError(f"No user or organization named {name}.")
    name = account["name"]
    by_author = QueryParams([("author", name), ("sort", "lastModified")])
    groups = []
    for repo_type, label in (("model", "Models"), ("dataset", "Datasets"), ("space", "Spaces")):
        repos = select_repos(hub, caller, repo_type, by_author)
        groups.append((repo_type, label, repos[:PROFILE_MAX], len(repos)))
    is_org = bool(account["is_org"])
    members = [(m["user"], m["role"]) for m in hub.meta.members_of(name)] if is_org else []
    orgs = [] if is_org else hub.meta.orgs_of(name)
    return html(request, "profile.html", {
        "title": name, "account": name, "fullname": account["fullname"] or name, "is_org": is_org,
        "groups": groups, "members": members, "orgs": orgs,
    })
