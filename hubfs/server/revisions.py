"""Revisions as the Hub reads them: a branch, tag, ``refs/...`` ref, full commit sha, or a short sha.

A short sha (7 to 39 hex digits) names the one commit whose id starts with it, as on huggingface.co
(transformers pins pipeline defaults that way); a prefix shared by several commits is not found.
Refs win over a short sha spelled like them, as in git.
"""

from __future__ import annotations

from dulwich.objects import Commit, Tag

from hubfs.errors import RevisionNotFoundError
from hubfs.paths import short_sha_prefix
from hubfs.server.git_store import GitRepo

MAX_CANDIDATES = 64  # objects looked at for one prefix (a 7-hex prefix is shared by few objects)


def resolve(g: GitRepo, revision: str) -> str:
    """The commit sha ``revision`` names in ``g``; RevisionNotFound (``Invalid rev id: ...``) otherwise."""
    try:
        return g.resolve(revision)
    except RevisionNotFoundError:
        prefix = short_sha_prefix(revision)
        sha = commit_by_prefix(g, prefix) if prefix else None
        if sha is None:
            raise RevisionNotFoundError(f"Invalid rev id: {revision}") from None
        return sha


def commit_by_prefix(g: GitRepo, prefix: str) -> str | None:
    """The one commit (or tag, peeled) whose sha starts with ``prefix``; None when none or several."""
    found: set[str] = set()
    for i, oid in enumerate(g.store.iter_prefix(prefix.encode())):
        if i >= MAX_CANDIDATES:
            return None
        obj = g.store[oid]
        while isinstance(obj, Tag):
            obj = g.store[obj.object[1]]
        if isinstance(obj, Commit):
            found.add(obj.id.decode())
    return found.pop() if len(found) == 1 else None
