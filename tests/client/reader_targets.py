"""The ReadTarget of a file of a commit on a live hub, for the reader tests."""

from __future__ import annotations

from hubfs.client import HubClient
from hubfs.client.reader import ReadTarget


def target_of(client: HubClient, rid: str, sha: str, path: str) -> ReadTarget:
    """What a front end builds from the hub's listing: URL, size, git blob id and LFS oid of ``path``."""
    entry = client.paths_info("model", rid, sha, [path])[0]
    lfs = entry.get("lfs") or {}
    return ReadTarget("model", rid, sha, path, client.file_url("model", rid, sha, path), entry["size"],
                      entry["oid"], lfs.get("oid") or "")
