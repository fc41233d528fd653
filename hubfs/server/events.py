"""The one publisher of hub events: a push, a commit, a branch or tag change, a settings change, a
discussion or comment becomes one queued webhook delivery per matching webhook, in the Hub's payload
shape (``huggingface_hub.WebhookPayload``, version 3).

Publishing only writes queue rows (:class:`WebhookStore`); it never posts anything and never fails
the request that caused it (a problem is logged). A webhook sees a private repo's events only while
its owner may see the repo.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hubfs.config import HookEnv
from hubfs.paths import RepoType
from hubfs.server.metadata import Metadata, Repo
from hubfs.server.webhooks_store import Webhook, WebhookStore

if TYPE_CHECKING:  # not imported at run time: the git hook process stays light
    from hubfs.server.community import Community
    from hubfs.server.hub import Hub

log = logging.getLogger("hubfs.server.events")
ZERO = "0" * 40
RefUpdate = tuple[str, str | None, str | None]  # (ref, old sha, new sha); None: absent or unknown


def watches(hook: Webhook, repo: Repo) -> bool:
    """True if ``hook`` watches ``repo`` itself, or its user or org."""
    for item in hook.watched:
        kind, name = item.get("type"), str(item.get("name", ""))
        if kind == repo.type and name.lower() in (repo.repo_id.lower(), repo.public_id.lower()):
            return True
        if kind in ("user", "org") and name.lower() == repo.namespace.lower():
            return True
    return False


def repo_urls(endpoint: str, repo: Repo) -> dict[str, str]:
    prefix = RepoType.parse(repo.type).url_prefix
    return {"web": f"{endpoint}/{prefix}{repo.public_id}", "api": f"{endpoint}/api/{repo.type}s/{repo.public_id}"}


def _repo_payload(endpoint: str, repo: Repo) -> dict[str, Any]:
    body: dict[str, Any] = {"type": repo.type, "name": repo.public_id, "id": repo.uid, "private": repo.private,
                            "url": repo_urls(endpoint, repo), "owner": {"id": repo.namespace},
                            "headSha": repo.indexed_sha, "tags": list(repo.tags)}
    if repo.type == "space":
        body["subdomain"] = repo.public_id.replace("/", "-").lower()
    return body


def _discussion_payload(endpoint: str, repo: Repo, row: Any) -> dict[str, Any]:
    urls = repo_urls(endpoint, repo)
    body: dict[str, Any] = {"id": f"{repo.uid}-{row['num']}", "num": row["num"], "author": {"id": row["author"]},
                            "title": row["title"], "isPullRequest": bool(row["is_pr"]), "status": row["status"],
                            "pinned": False,
                            "url": {"web": f"{urls['web']}/discussions/{row['num']}",
                                    "api": f"{urls['api']}/discussions/{row['num']}"}}
    if row["is_pr"]:
        body["changes"] = {"base": row["base_ref"] or "refs/heads/main"}
        if row["merge_commit"]:
            body["changes"]["mergeCommitId"] = row["merge_commit"]
    return body


def publish_sync(meta: Metadata, store: WebhookStore, repo: Repo, scope: str, action: str = "update", *,
                 refs: list[RefUpdate] | None = None, discussion: int | None = None,
                 comment: dict[str, Any] | None = None) -> int:
    """Queue the event for every enabled webhook that watches ``repo`` in the event's domain (the
    part of ``scope`` before the dot) and whose owner may see it. Returns the number queued."""
    domain = scope.split(".", 1)[0]
    hooks = [h for h in store.enabled() if domain in h.domains and watches(h, repo)
             and (not repo.private or meta.is_member(h.owner, repo.namespace))]
    if not hooks:
        return 0
    endpoint = store.endpoint()
    payload: dict[str, Any] = {"event": {"action": action, "scope": scope}, "repo": _repo_payload(endpoint, repo)}
    if refs:
        payload["updatedRefs"] = [{"ref": ref, "oldSha": old, "newSha": new} for ref, old, new in refs]
    if discussion is not None:
        row = meta.discussion(repo, discussion)
        if row is not None:
            payload["discussion"] = _discussion_payload(endpoint, repo, row)
            if comment is not None:
                data = comment.get("data", {})
                payload["comment"] = {
                    "id": comment["id"], "author": {"id": comment.get("author", {}).get("name", "")},
                    "hidden": bool(data.get("hidden")),
                    "content": None if data.get("hidden") else data.get("latest", {}).get("raw"),
                    "url": {"web": f"{payload['discussion']['url']['web']}#{comment['id']}"}}
    for hook in hooks:
        store.enqueue(hook.id, scope, action, {**payload, "webhook": {"id": hook.id, "version": 3}})
    return len(hooks)


def publish_from(request: Request, repo_type: str, repo_id: str, scope: str, action: str = "update",
                 **extra: Any) -> None:
    """:func:`publish_sync` for a route's thread: the repo by type and id (nothing when it is gone);
    errors are logged, never raised."""
    try:
        hub: Hub = request.scope["hubfs.hub"]
        community: Community = request.scope["hubfs.community"]
        repo = hub.meta.get_repo(repo_type, repo_id)
        if repo is not None:
            publish_sync(hub.meta, community.webhooks, repo, scope, action, **extra)
    except Exception:
        log.exception("could not queue the %s event of %s/%s", scope, repo_type, repo_id)


async def publish(request: Request, repo_type: str, repo_id: str, scope: str, action: str = "update",
                  **extra: Any) -> None:
    """:func:`publish_from` for an ``async def`` route (the database work runs in the thread pool)."""
    await run_in_threadpool(publish_from, request, repo_type, repo_id, scope, action, **extra)


def post_receive(stdin: str, env: dict[str, str]) -> int:
    """The git ``post-receive`` hook: one ``repo.content`` event for the refs a push moved."""
    hook = HookEnv.read(env)
    meta = Metadata(hook.data / "hub.sqlite")
    repo = meta.get_repo(hook.repo_type, hook.repo_id)
    refs: list[RefUpdate] = []
    for line in stdin.splitlines():
        parts = line.split()
        if len(parts) == 3:
            old, new, ref = parts
            refs.append((ref, None if old == ZERO else old, None if new == ZERO else new))
    if repo is None or not refs:
        return 0
    return publish_sync(meta, WebhookStore(hook.data / "hub.sqlite"), repo, "repo.content", refs=refs)
