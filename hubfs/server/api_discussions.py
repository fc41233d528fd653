"""Discussions and pull requests: create, list (author, type and status filters, 50 a page), details
with events in order, comment, edit and hide a comment, rename, change status, merge.

Wire contract: ``hub-api.md`` 5.7. A PR is discussion N with the ref ``refs/pr/N``; merging applies
the PR's changes since its merge base onto the target branch (a fast-forward when possible) and
refuses with 409 when both sides changed the same file.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
from hubfs.server import events
from hubfs.server.api_repos import repo_type_of
from hubfs.server.git_store import Change, GitRepo
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.hub import comment_event as comment
from hubfs.server.hub import discussion_event as event
from hubfs.server.metadata import Repo
from hubfs.server.wire import (
    SUMMARY_MAX,
    TEXT_MAX,
    bool_field,
    caller_of,
    hub_of,
    int_param,
    iso,
    read_json,
    str_field,
    text_field,
)

PAGE = 50  # discussions per page of the listing (``?p=N``), as on the Hub


def _summary(repo: Repo, row: Any) -> dict[str, Any]:
    comments = sum(1 for e in json.loads(row["events"]) if e.get("type") == "comment")
    return {"num": row["num"], "title": row["title"], "status": row["status"], "isPullRequest": bool(row["is_pr"]),
            "createdAt": iso(row["created_at"]), "author": {"name": row["author"]},
            "repo": {"name": repo.public_id, "type": repo.type}, "numComments": comments, "pinned": False}


def _signed_in(hub: Hub, caller: Caller) -> str:
    return hub.require_signed_in_writer(caller, "take part in discussions")


def _number(num: str) -> int:
    """A discussion number from the URL: 400 unless it fits SQLite's integers."""
    return int_param(num, "The discussion number")


def _discussion(hub: Hub, repo: Repo, num: int) -> Any:
    row = hub.meta.discussion(repo, num)
    if row is None:
        raise NotFoundError(f"Discussion #{num} does not exist.")
    return row


async def create(request: Request, t: str, ns: str, name: str) -> Response:
    """POST /api/{T}/{id}/discussions {title, description?, pullRequest?} -> {num, ...}; a PR starts at main."""
    hub, caller = hub_of(request), caller_of(request)
    body = await read_json(request)
    out = await run_in_threadpool(_create, hub, caller, repo_type_of(t), f"{ns}/{name}", body)
    await events.publish(request, repo_type_of(t), out["repo"]["name"], "discussion", "create", discussion=out["num"])
    return json_response(out)


def _create(hub: Hub, caller: Caller, repo_type: str, repo_id: str, body: dict[str, Any]) -> dict[str, Any]:
    repo = hub.visible_repo(caller, repo_type, repo_id)
    user = _signed_in(hub, caller)
    title = text_field(body, "title", SUMMARY_MAX).strip()
    if not title:
        raise BadRequestError("A discussion needs a title.")
    is_pr = bool(bool_field(body, "pullRequest"))
    description = text_field(body, "description", TEXT_MAX)
    events = [comment(user, description)] if description else []
    num = hub.meta.create_discussion(repo, title=title, author=user, is_pr=is_pr,
                                     base_ref="refs/heads/main" if is_pr else None, events=events)
    if is_pr:
        with hub.git.open(repo.type, repo.repo_id) as g:
            g.set_ref(f"refs/pr/{num}", g.resolve("main"), None)
    return _summary(repo, hub.meta.discussion(repo, num))


def listing(request: Request, t: str, ns: str, name: str) -> Response:
    """GET /api/{T}/{id}/discussions[?type&status&author] -> {discussions, count, start, numTotalItems}."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    q = request.query_params
    rows = hub.meta.discussions(repo)
    if q.get("type") in ("pull_request", "discussion"):
        rows = [r for r in rows if bool(r["is_pr"]) == (q["type"] == "pull_request")]
    if q.get("status") in ("open", "closed", "merged", "draft"):
        rows = [r for r in rows if r["status"] == q["status"]]
    if q.get("author"):
        rows = [r for r in rows if r["author"] == q["author"]]
    start = int_param(q.get("p") or "0", "The page number", 1 << 31) * PAGE
    items = [_summary(repo, r) for r in rows[start:start + PAGE]]
    return json_response({"discussions": items, "count": len(rows), "start": start, "numTotalItems": len(rows)})


def details(request: Request, t: str, ns: str, name: str, num: str) -> Response:
    """GET /api/{T}/{id}/discussions/{num}[?diff=1] -> details with events, changes.base, filesWithConflicts."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    row = _discussion(hub, repo, _number(num))
    body = _summary(repo, row)
    body["events"] = json.loads(row["events"])
    if row["is_pr"]:
        body["changes"] = {"base": row["base_ref"]}
        if row["merge_commit"]:
            body["changes"]["mergeCommitId"] = row["merge_commit"]
        body["filesWithConflicts"] = []
        body["diff"] = ""
    return json_response(body)


async def post_comment(request: Request, t: str, ns: str, name: str, num: str) -> Response:
    """POST .../discussions/{num}/comment {comment} -> {newMessage: event}."""
    hub, caller = hub_of(request), caller_of(request)
    number = _number(num)
    body = await read_json(request)
    ev = await run_in_threadpool(_post_comment, hub, caller, repo_type_of(t), f"{ns}/{name}", number, body)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "discussion.comment", "create", discussion=number,
                         comment=ev)
    return json_response({"newMessage": ev})


def _post_comment(hub: Hub, caller: Caller, repo_type: str, repo_id: str, number: int,
                  body: dict[str, Any]) -> dict[str, Any]:
    repo = hub.visible_repo(caller, repo_type, repo_id)
    user = _signed_in(hub, caller)
    _discussion(hub, repo, number)
    text = text_field(body, "comment", TEXT_MAX)
    if not text.strip():
        raise BadRequestError("The comment is empty.")
    ev = comment(user, text)
    hub.meta.add_event(repo, number, ev)
    return ev


async def change_status(request: Request, t: str, ns: str, name: str, num: str) -> Response:
    """POST .../discussions/{num}/status {status: open|closed, comment?} (author or owners)."""
    hub, caller = hub_of(request), caller_of(request)
    number = _number(num)
    body = await read_json(request)
    ev = await run_in_threadpool(_change_status, hub, caller, repo_type_of(t), f"{ns}/{name}", number, body)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "discussion", "update", discussion=number)
    return json_response({"newStatus": ev})


def _change_status(hub: Hub, caller: Caller, repo_type: str, repo_id: str, number: int,
                   body: dict[str, Any]) -> dict[str, Any]:
    repo = hub.visible_repo(caller, repo_type, repo_id)
    user = _signed_in(hub, caller)
    row = _discussion(hub, repo, number)
    if row["author"] != user and not hub.meta.can_write_namespace(user, repo.namespace):
        raise PermissionDeniedError("Only the author or the repo's owners can change its status.")
    status = str_field(body, "status", None)
    if status not in ("open", "closed") or row["status"] == "merged":
        raise BadRequestError("status must be 'open' or 'closed', and a merged PR cannot change.")
    if status == row["status"]:
        raise BadRequestError(f"Discussion #{number} is already {status}.")
    text = text_field(body, "comment", TEXT_MAX).strip()
    if text:
        hub.meta.add_event(repo, number, comment(user, text))
    hub.meta.update_discussion(repo, number, status=status)
    ev = event("status-change", user, {"status": status})
    hub.meta.add_event(repo, number, ev)
    return ev


async def merge(request: Request, t: str, ns: str, name: str, num: str) -> Response:
    """POST .../discussions/{num}/merge: apply the PR onto its base branch (owners only); 409 on conflict."""
    hub, caller = hub_of(request), caller_of(request)
    number = _number(num)
    base, old, sha = await run_in_threadpool(_merge_pr, hub, caller, repo_type_of(t), f"{ns}/{name}", number)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "discussion", "update", discussion=number)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "repo.content", refs=[(base, old, sha)])
    return json_response({})


def _merge_pr(hub: Hub, caller: Caller, repo_type: str, repo_id: str, number: int) -> tuple[str, str, str]:
    """Check the rules, merge through this thread's own ``GitRepo``, and record the merge.

    Returns (base ref, its old head, the merged head)."""
    repo = hub.writable_repo(caller, repo_type, repo_id)
    row = _discussion(hub, repo, number)
    if not row["is_pr"] or row["status"] != "open":
        raise BadRequestError("Only an open pull request can be merged.")
    with hub.git.open(repo.type, repo.repo_id) as g:
        old = g.resolve(row["base_ref"])
        sha = _merge(hub, caller, repo, g, row)
    hub.meta.update_discussion(repo, number, status="merged", merge_commit=sha)
    hub.meta.add_event(repo, number, event("status-change", caller.user or "admin", {"status": "merged"}))
    return row["base_ref"], old, sha


def _merge(hub: Hub, caller: Caller, repo: Repo, g: GitRepo, row: Any) -> str:
    base_ref, pr_ref = row["base_ref"], f"refs/pr/{row['num']}"
    head, pr_head = g.resolve(base_ref), g.resolve(pr_ref)
    if g.is_ancestor(head, pr_head):
        g.set_ref(base_ref, pr_head, head)
        hub.after_ref_update(repo, g, base_ref, pr_head)
        return pr_head
    base_ancestors = {c.id for c in g.walk(head)}
    merge_base = next((c.id for c in g.walk(pr_head) if c.id in base_ancestors), None)
    before = g.files(merge_base) if merge_base else {}
    theirs, ours = g.files(pr_head), g.files(head)
    changes, conflicts = [], []
    for path in sorted(set(before) | set(theirs)):
        if before.get(path) == theirs.get(path):
            continue
        if ours.get(path) not in (before.get(path), theirs.get(path)):
            conflicts.append(path)
        elif path in theirs:
            changes.append(Change("put", path, theirs[path][0].decode(), theirs[path][1]))
        elif path in ours:
            changes.append(Change("delete_file", path))
    if conflicts:
        raise ConflictError(f"This pull request conflicts with {base_ref}: {', '.join(conflicts[:20])}")
    message = f"Merge pull request #{row['num']}: {row['title']}"
    tree = g.build_tree(head, changes)
    sha = g.write_commit(tree, [head, pr_head], message, hub.signature(caller.user or "admin"))
    g.set_ref(base_ref, sha, head)
    hub.after_ref_update(repo, g, base_ref, sha)
    return sha


async def rename(request: Request, t: str, ns: str, name: str, num: str) -> Response:
    """POST .../discussions/{num}/title {title} -> {newTitle: title-change event} (author or owners)."""
    hub, caller = hub_of(request), caller_of(request)
    number = _number(num)
    body = await read_json(request)
    ev = await run_in_threadpool(_rename, hub, caller, repo_type_of(t), f"{ns}/{name}", number, body)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "discussion", "update", discussion=number)
    return json_response({"newTitle": ev})


def _rename(hub: Hub, caller: Caller, repo_type: str, repo_id: str, number: int, body: dict[str, Any]) -> dict[str, Any]:
    repo = hub.visible_repo(caller, repo_type, repo_id)
    user = _signed_in(hub, caller)
    row = _discussion(hub, repo, number)
    if row["author"] != user and not hub.meta.can_write_namespace(user, repo.namespace):
        raise PermissionDeniedError("Only the author or the repo's owners can rename a discussion.")
    title = text_field(body, "title", SUMMARY_MAX).strip()
    if not title:
        raise BadRequestError("A discussion needs a title.")
    hub.meta.update_discussion(repo, number, title=title)
    ev = event("title-change", user, {"from": row["title"], "to": title})
    hub.meta.add_event(repo, number, ev)
    return ev


async def edit_comment(request: Request, t: str, ns: str, name: str, num: str, cid: str) -> Response:
    """POST .../discussions/{num}/comment/{id}/edit {content} -> {updatedComment} (its author only)."""
    hub, caller = hub_of(request), caller_of(request)
    number = _number(num)
    body = await read_json(request)
    ev = await run_in_threadpool(_edit_comment, hub, caller, repo_type_of(t), f"{ns}/{name}", number, cid, body, False)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "discussion.comment", "update", discussion=number,
                         comment=ev)
    return json_response({"updatedComment": ev})


async def hide_comment(request: Request, t: str, ns: str, name: str, num: str, cid: str) -> Response:
    """POST .../discussions/{num}/comment/{id}/hide -> {updatedComment}: its content is gone for good
    (its author or the repo's owners)."""
    hub, caller = hub_of(request), caller_of(request)
    number = _number(num)
    await read_json(request)
    ev = await run_in_threadpool(_edit_comment, hub, caller, repo_type_of(t), f"{ns}/{name}", number, cid, {}, True)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "discussion.comment", "update", discussion=number,
                         comment=ev)
    return json_response({"updatedComment": ev})


def _edit_comment(hub: Hub, caller: Caller, repo_type: str, repo_id: str, number: int, cid: str,
                  body: dict[str, Any], hide: bool) -> dict[str, Any]:
    repo = hub.visible_repo(caller, repo_type, repo_id)
    user = _signed_in(hub, caller)
    _discussion(hub, repo, number)
    text = "" if hide else text_field(body, "content", TEXT_MAX)
    if not hide and not text.strip():
        raise BadRequestError("The comment is empty.")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def change(ev: dict[str, Any]) -> None:
        if ev.get("type") != "comment":
            raise NotFoundError(f"{cid} is not a comment.")
        data = ev["data"]
        author = ev.get("author", {}).get("name")
        if hide:
            if author != user and not hub.meta.can_write_namespace(user, repo.namespace):
                raise PermissionDeniedError("Only the comment's author or the repo's owners can hide it.")
            data.update(hidden=True, hiddenBy=user)
            data["latest"] = {"raw": "", "html": "", "updatedAt": stamp, "author": {"name": user}}
            return
        if author != user:
            raise PermissionDeniedError("Only the comment's author can edit it.")
        if data.get("hidden"):
            raise BadRequestError("A hidden comment cannot be edited.")
        data.update(edited=True, numEdits=int(data.get("numEdits", 0)) + 1,
                    editors=sorted({*data.get("editors", []), user}))
        data["latest"] = {"raw": text, "html": text, "updatedAt": stamp, "author": {"name": user}}

    ev = hub.meta.update_event(repo, number, cid.lower(), change)
    if ev is None:
        raise NotFoundError(f"Comment {cid[:40]} not found in discussion #{number}.")
    return ev


def register(router: Router) -> None:
    D = "/api/{t:type}/{ns}/{name}/discussions"
    router.add(["POST"], D, create)
    router.add(["GET"], D, listing)
    router.add(["GET"], D + "/{num:int}", details)
    router.add(["POST"], D + "/{num:int}/comment", post_comment)
    router.add(["POST"], D + "/{num:int}/status", change_status)
    router.add(["POST"], D + "/{num:int}/merge", merge)
    router.add(["POST"], D + "/{num:int}/title", rename)
    router.add(["POST"], D + "/{num:int}/comment/{cid}/edit", edit_comment)
    router.add(["POST"], D + "/{num:int}/comment/{cid}/hide", hide_comment)
