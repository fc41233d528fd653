"""A first look at a file on a branch: the branch's commit, the file's entry and its first or last
bytes, in one round trip instead of three (pin the branch, ``paths-info``, the first read).

Two requests run at once: ``paths-info`` on the branch, and a ranged GET of ``/resolve/<branch>/path``
whose answer names the commit (``X-Repo-Commit``), the size (``Content-Range``) and the content
hash (``X-Linked-Etag`` for LFS, ``ETag`` otherwise), as huggingface.co answers too. The two agree
unless a commit changed the file between them; then (or for a folder, or on any error) the caller
takes the slow path, which also raises the right error.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from hubfs.client.api import HubClient
from hubfs.client.fetch import RangeFetcher, content_hash
from hubfs.config import PROBE_SIZE
from hubfs.errors import HubfsError
from hubfs.paths import is_commit_sha

EDGE = PROBE_SIZE  # the bytes a peek brings
# Formats read from their end first (a footer, a central directory): the peek brings their tail.
TAIL_FIRST = (".parquet", ".orc", ".zip", ".npz", ".arrow", ".feather")


@dataclass(frozen=True)
class Peek:
    sha: str  # the commit the branch points to (now pinned)
    entry: dict[str, Any]  # the file's paths-info entry
    offset: int  # where ``data`` starts in the file
    data: bytes


def peek_file(client: HubClient, fetcher: RangeFetcher, pool: Executor, repo_type: str, repo_id: str,
              revision: str, path: str) -> Peek | None:
    """The commit, entry and edge bytes of the file ``path`` on branch ``revision``, or None.

    ``revision`` may also be a commit (a branch pinned already): then only the entry and the edge
    bytes are news, still in one round trip.

    When ``path`` is a folder or missing the answer still pins the branch (the hub names the commit
    on a 404 for a missing file too), so the caller's slow path costs one round trip, not two.
    """
    headers: dict[str, str] = {}
    url = client.file_url(repo_type, repo_id, revision, path)
    edge = pool.submit(fetcher.fetch_edge, url, EDGE, tail=path.lower().endswith(TAIL_FIRST), headers=headers)
    try:
        found = client.paths_info(repo_type, repo_id, revision, [path])
    except HubfsError:
        found = []
    try:
        data, offset, total = edge.result()
    except HubfsError:
        data, offset, total = b"", 0, -1
    sha = headers.get("x-repo-commit", "")
    if not is_commit_sha(sha) or (is_commit_sha(revision) and sha != revision):
        return None
    if not is_commit_sha(revision):
        client.pin(repo_type, repo_id, revision, sha)
    if len(found) != 1 or found[0].get("type") != "file" or found[0].get("path") != path:
        return None
    entry = found[0]
    etag = content_hash(headers)
    expected = (entry.get("lfs") or {}).get("oid") or entry.get("oid")
    if etag != expected or total != entry.get("size"):
        return None  # a commit changed the file between the two answers: not the same file
    return Peek(sha, entry, offset, data)
