"""Reclaiming a repo's space: ``super_squash_history``, ``list_lfs_files`` and ``permanently_delete_lfs_files``.

Routes (``hub-api.md`` 3.7): ``POST /api/{T}/{id}/super-squash/{branch}`` ``{message}`` squashes a
branch or ``refs/pr/N`` into one commit; ``GET /api/{T}/{id}/lfs-files`` lists the LFS objects
uploaded to the repo (``fileOid``, ``oid``, ``size``, ``filename``, ``pushedAt``), Link-paginated;
``POST /api/{T}/{id}/lfs-files/batch`` ``{deletions: {sha: [...], rewriteHistory}}`` deletes them
for good: with ``rewriteHistory`` every ref is rewritten without their pointers first. The bytes of
an object go at once unless another repo uploaded the same content too (then gc reclaims them when
that repo lets go: it honours the deletion, see :mod:`hubfs.server.lfs_tombstones`). A commit still
pointing at a deleted object (``rewriteHistory`` false) answers 404 for that file.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, EntryNotFoundError
from hubfs.lfs import is_valid_oid
from hubfs.paths import is_pr_ref, validate_revision
from hubfs.server import events
from hubfs.server.api_repos import repo_type_of
from hubfs.server.community import Community, community_of
from hubfs.server.gc import pointer_blobs
from hubfs.server.history_rewrite import rewrite_without
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.wire import SUMMARY_MAX, caller_of, hub_of, iso, page, read_json, text_field

PAGE = 1000
MAX_DELETIONS = 1000  # oids in one batch, as the client sends them


async def super_squash(request: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """POST /api/{T}/{id}/super-squash/{branch} {message?} -> {commitOid}: one root commit, same files."""
    hub, caller = hub_of(request), caller_of(request)
    body = await read_json(request)
    repo_type, repo_id = repo_type_of(t), f"{ns}/{name}"
    ref, old, sha = await run_in_threadpool(_squash, hub, caller, repo_type, repo_id, branch, body)
    await events.publish(request, repo_type, repo_id, "repo.content", refs=[(ref, old, sha)])
    return json_response({"commitOid": sha, "commitId": sha})


def _squash(hub: Hub, caller: Caller, repo_type: str, repo_id: str, branch: str,
            body: dict[str, Any]) -> tuple[str, str, str]:
    validate_revision(branch)
    repo = hub.repo_for_commit(caller, repo_type, repo_id, branch, False)
    ref = branch if is_pr_ref(branch) or branch.startswith("refs/heads/") else f"refs/heads/{branch}"
    message = text_field(body, "message", SUMMARY_MAX, "The commit message").strip() \
        or f"Super-squash branch '{branch}'"
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha, old = g.squash(ref, message, hub.signature(caller.user or "admin"))
        hub.after_ref_update(repo, g, ref, sha)
    return ref, old, sha


def lfs_files(request: Request, t: str, ns: str, name: str) -> Response:
    """GET /api/{T}/{id}/lfs-files -> [{fileOid, oid, size, filename, pushedAt, ref}] (writers only)."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    names = {pointer.oid: path for _, path, pointer in pointer_blobs(hub.git.path(repo.type, repo.repo_id))}
    items = []
    for oid, size in community_of(request).lfs_deletions.linked(repo.id):
        path = hub.lfs.path(oid)
        try:
            pushed = path.stat().st_mtime
        except FileNotFoundError:
            pushed = repo.created_at  # stored as Xet chunks: no single file to date
        items.append({"fileOid": oid, "oid": oid, "size": size, "filename": names.get(oid, ""),
                      "pushedAt": iso(pushed), "ref": None})
    chunk, headers = page(request, items, PAGE)
    return json_response(chunk, headers=headers)


async def delete_lfs_files(request: Request, t: str, ns: str, name: str) -> Response:
    """POST /api/{T}/{id}/lfs-files/batch {deletions: {sha: [oid...], rewriteHistory?}} -> {deleted, objectsRemoved, rewrittenRefs}."""
    hub, caller = hub_of(request), caller_of(request)
    body = await read_json(request)
    repo_type, repo_id = repo_type_of(t), f"{ns}/{name}"
    out, moved = await run_in_threadpool(_delete_lfs_files, hub, community_of(request), caller, repo_type, repo_id,
                                         body)
    if moved:
        await events.publish(request, repo_type, repo_id, "repo.content",
                             refs=[(ref, old, new) for ref, (old, new) in sorted(moved.items())])
    return json_response(out)


def _oids(body: dict[str, Any]) -> tuple[list[str], bool]:
    deletions = body.get("deletions")
    if not isinstance(deletions, dict) or not isinstance(deletions.get("sha"), list):
        raise BadRequestError("The body must be {\"deletions\": {\"sha\": [oid, ...], \"rewriteHistory\": bool}}.")
    shas = deletions["sha"]
    if len(shas) > MAX_DELETIONS:
        raise BadRequestError(f"At most {MAX_DELETIONS} LFS files can be deleted in one call ({len(shas)} given).")
    bad = [s for s in shas if not isinstance(s, str) or not is_valid_oid(s)]
    if bad:
        raise BadRequestError(f"Invalid LFS oid {str(bad[0])[:80]!r}: expected 64 lowercase hex characters.")
    rewrite = deletions.get("rewriteHistory", True)
    if not isinstance(rewrite, bool):
        raise BadRequestError("'rewriteHistory' must be true or false.")
    return list(dict.fromkeys(shas)), rewrite


def _delete_lfs_files(hub: Hub, community: Community, caller: Caller, repo_type: str, repo_id: str,
                      body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    repo = hub.writable_repo(caller, repo_type, repo_id)
    oids, rewrite = _oids(body)
    linked = {oid for oid, _ in community.lfs_deletions.linked(repo.id)}
    missing = [oid for oid in oids if oid not in linked]
    if missing:
        raise EntryNotFoundError(f"LFS file {missing[0]} was not found in {repo.type} {repo.public_id}"
                                 f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; nothing was deleted.")
    moved: dict[str, tuple[str, str]] = {}
    if rewrite:
        doomed = set(oids)
        blobs = {sha for sha, _, pointer in pointer_blobs(hub.git.path(repo.type, repo.repo_id)) if pointer.oid in doomed}
        with hub.git.open(repo.type, repo.repo_id) as g:
            moved = rewrite_without(g, blobs)
            for ref, (_, new) in sorted(moved.items()):
                hub.after_ref_update(repo, g, ref, new)
    removed = 0
    with hub.reclaim.exclusive():  # no commit in flight may reuse an object while its bytes go
        for oid in community.lfs_deletions.unlink(repo.id, repo.uid, oids):
            if hub.lfs.delete(oid):  # on disk or in the S3 object store
                removed += 1
    hub.meta.touch(repo, time.time())
    return {"deleted": len(oids), "objectsRemoved": removed, "rewrittenRefs": sorted(moved)}, moved


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}"
    router.add(["POST"], R + "/super-squash/{branch:path}", super_squash)
    router.add(["GET"], R + "/lfs-files", lfs_files)
    router.add(["POST"], R + "/lfs-files/batch", delete_lfs_files)
