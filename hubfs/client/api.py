"""HubClient: the Hub API calls hubfs makes, for huggingface.co and the embedded hub alike.

Revisions are pinned: a branch or tag resolves to a 40-hex commit once per ``revision_ttl``
seconds, and everything else is addressed by that commit, so a push during a read never mixes two
commits. A path found missing under a pin should be retried once after :meth:`HubClient.recheck`
(the branch may have moved: a push by git or another process). Tree listings of a commit are immutable and may be cached forever by callers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from hubfs.client.commit import Add, Delete, LfsRef, Operation, ndjson_body, upload_lfs_objects
from hubfs.client.http import Transport
from hubfs.client.pins import PROCESS_PINS, Pin, PinKey, PinTable
from hubfs.client.snapshot import CachedSnapshot, Listings, Snapshot
from hubfs.config import HubConfig
from hubfs.errors import HubfsError, RangeNotSatisfiableError
from hubfs.paths import DEFAULT_REVISION, RepoRef, RepoType, is_commit_sha

if TYPE_CHECKING:
    import ssl

    from typing_extensions import Self


class HubClient:
    """One endpoint, one token, one connection pool. Thread-safe; ``close()`` (or ``with``) releases it.

    Branch pins live in ``pins``, the :class:`~hubfs.client.pins.PinTable` of this endpoint and token,
    shared by default with every client of the same identity in the process (see :mod:`hubfs.client.pins`).
    Listings of commits live in ``listings`` (this client's own; see :mod:`hubfs.client.snapshot`).
    With ``HF_HUB_OFFLINE`` set, :meth:`snapshot` reads the local cache and nothing is sent.
    """

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None, *,
                 revision_ttl: float = 5.0, config: HubConfig | None = None, pins: PinTable | None = None,
                 timeout: float = 60.0, max_retries: int = 5, tls: ssl.SSLContext | None = None) -> None:
        """``timeout``: seconds a connect, send or receive may stall; ``max_retries``: tries beyond the first
        for dropped connections and 429/5xx answers (a mount lowers both so that no call hangs for long);
        ``tls``: TLS settings to share (another client's ``transport.tls``) instead of loading them again."""
        self.config = config or HubConfig.load(endpoint, token)
        self.transport = Transport(self.config, timeout=timeout, max_retries=max_retries, tls=tls)
        self.revision_ttl = revision_ttl
        self.pins = pins if pins is not None else PROCESS_PINS.table(self.config.endpoint, self.config.token)
        self._floor = 0  # pins with a sequence number up to this one are not trusted by this client
        self.listings = Listings()

    def close(self) -> None:
        """Close the connection pool (idempotent); the client cannot send afterwards."""
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    # -- URLs ------------------------------------------------------------------------------------

    @staticmethod
    def api_path(repo_type: str, repo_id: str) -> str:
        return f"/api/{RepoType.parse(repo_type).plural}/{repo_id}"

    def file_url(self, repo_type: str, repo_id: str, revision: str, path: str) -> str:
        prefix = RepoType.parse(repo_type).url_prefix
        return f"{self.endpoint}/{prefix}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def lfs_batch_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{RepoType.parse(repo_type).url_prefix}{repo_id}.git/info/lfs/objects/batch"

    # -- metadata --------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return self.transport.request("GET", "/api/whoami-v2", retry=False).json()

    def repo_info(self, repo_type: str, repo_id: str, revision: str | None = None, **params: Any) -> dict[str, Any]:
        path = self.api_path(repo_type, repo_id)
        if revision:
            path += f"/revision/{quote(revision, safe='')}"
        return self.transport.request("GET", path, params=params or None).json()

    def resolve(self, repo_type: str, repo_id: str, revision: str | None = None, *, refresh: bool = False) -> str:
        """The commit sha ``revision`` (default main) points to now; cached ``revision_ttl`` seconds."""
        rev = revision or DEFAULT_REVISION
        if is_commit_sha(rev):
            return rev
        hit = None if refresh else self.pinned(repo_type, repo_id, rev)
        if hit is not None:
            return hit
        sha = self.repo_info(repo_type, repo_id, rev, expand="sha")["sha"]
        self.pin(repo_type, repo_id, rev, sha)
        return sha

    def snapshot(self, repo: RepoRef, revision: str | None = None) -> Snapshot:
        """The commit ``revision`` (default main) points to, as a :class:`Snapshot`: pinned as
        :meth:`resolve` does, or read from the local cache in offline mode (raising
        :class:`~hubfs.errors.OfflineModeError` when it is not there)."""
        if self.config.offline:
            return CachedSnapshot.open(self, repo, revision)
        return Snapshot(self, repo, revision, self.resolve(repo.type.value, repo.id, revision))

    def pinned(self, repo_type: str, repo_id: str, revision: str | None = None) -> str | None:
        """The commit ``revision`` is pinned to now, without a request: None when unknown or expired."""
        rev = revision or DEFAULT_REVISION
        if is_commit_sha(rev):
            return rev
        pin = self._pin(repo_type, repo_id, rev)
        return pin.sha if pin is not None else None

    def _pin(self, repo_type: str, repo_id: str, revision: str | None) -> Pin | None:
        pin = self.pins.get(_pin_key(repo_type, repo_id, revision))
        return pin if pin is not None and pin.seq > self._floor else None

    def pin(self, repo_type: str, repo_id: str, revision: str | None, sha: str) -> None:
        """Record that ``revision`` points to commit ``sha`` (learnt from any answer of the hub)."""
        if not is_commit_sha(sha or ""):
            raise HubfsError(f"The hub answered an invalid commit id {sha!r} for {repo_id}@{revision}.")
        self.pins.put(_pin_key(repo_type, repo_id, revision), sha, self.revision_ttl)

    def pin_stamp(self) -> int:
        """A moment in pin history, for :meth:`recheck`."""
        return self.pins.stamp()

    def recheck(self, repo_type: str, repo_id: str, revision: str | None, since: int) -> bool:
        """After a path was missing: re-resolve ``revision`` if its pin was learnt before ``since`` (a
        :meth:`pin_stamp`); True when the branch may have moved (retry once), False when a retry is
        pointless (a commit sha, a pin learnt since, or the same commit again)."""
        rev = revision or DEFAULT_REVISION
        if is_commit_sha(rev) or self.config.offline:
            return False
        pin = self._pin(repo_type, repo_id, rev)
        if pin is not None and pin.seq > since:
            return False
        return self.resolve(repo_type, repo_id, rev, refresh=True) != (pin.sha if pin else None)

    def forget_pins(self) -> None:
        """Stop trusting every pin learnt so far, in this client only (others of its identity keep theirs)."""
        self._floor = self.pins.stamp()

    def forget_pin(self, repo_type: str, repo_id: str, revision: str | None = None) -> None:
        """Drop the cached commit of a branch (after writing to it), for every client of this identity."""
        self.pins.drop(_pin_key(repo_type, repo_id, revision))

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Items of a Link-paginated JSON list."""
        return self.paginate_from(self.transport.request("GET", path, params=params))

    def paginate_from(self, resp: httpx.Response) -> Iterator[Any]:
        """Items of a Link-paginated JSON list whose first page is ``resp`` (the rest asked as they are read)."""
        while True:
            yield from resp.json()
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return
            resp = self.transport.request("GET", nxt)

    def list_tree(self, repo_type: str, repo_id: str, sha: str, path: str = "", *, recursive: bool = False,
                  expand: bool = False) -> list[dict[str, Any]]:
        """Entries under ``path`` at commit ``sha``; one request per 1000 entries."""
        url = f"{self.api_path(repo_type, repo_id)}/tree/{quote(sha, safe='')}"
        if path:
            url += "/" + quote(path, safe="")
        params = {"recursive": str(recursive).lower(), "expand": str(expand).lower()}
        return list(self.paginate(url, params))

    def paths_info(self, repo_type: str, repo_id: str, sha: str, paths: list[str]) -> list[dict[str, Any]]:
        """Entries of the paths that exist (missing ones are simply absent)."""
        out: list[dict[str, Any]] = []
        url = f"{self.api_path(repo_type, repo_id)}/paths-info/{quote(sha, safe='')}"
        for i in range(0, len(paths), 1000):
            fields: list[tuple[str, str | int | float | bool | None]] = [("paths", p) for p in paths[i:i + 1000]]
            resp = self.transport.request("POST", url, content=str(httpx.QueryParams(
                [*fields, ("expand", "false")])).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})
            out.extend(resp.json())
        return out

    # -- bytes -----------------------------------------------------------------------------------

    def read_range(self, url: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes [start, end) of a file and its total size (from Content-Range). Empty past the end."""
        if end <= start:
            return b"", -1
        try:
            resp = self.transport.request("GET", url, headers={"Range": f"bytes={start}-{end - 1}",
                                                               "Accept-Encoding": "identity"})
        except RangeNotSatisfiableError:
            return b"", -1
        data = resp.content
        total = _total_size(resp)
        if resp.status_code == 200:  # a server that ignores Range: keep the slice asked for
            total = len(data)
            data = data[start:end]
        return data, total

    def stream(self, url: str, start: int = 0) -> httpx.Response:
        """An open streaming GET from ``start`` (the caller closes it)."""
        headers = {"Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        return self.transport.request("GET", url, headers=headers, stream=True)

    # -- writes ----------------------------------------------------------------------------------

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool = False, exist_ok: bool = False,
                    space_sdk: str | None = None) -> str:
        ns, _, name = repo_id.rpartition("/")  # a canonical id (``gpt2``) has no namespace
        body: dict[str, Any] = {"name": name, "organization": ns or None,
                                "visibility": "private" if private else "public"}
        if RepoType.parse(repo_type) is not RepoType.MODEL:
            body["type"] = RepoType.parse(repo_type).value
        if space_sdk:
            body["sdk"] = space_sdk
        try:
            return self.transport.request("POST", "/api/repos/create", json_body=body, retry=False).json()["url"]
        except FileExistsError:
            if exist_ok:
                return f"{self.endpoint}/{RepoType.parse(repo_type).url_prefix}{repo_id}"
            raise

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        ns, _, name = repo_id.rpartition("/")
        body: dict[str, Any] = {"name": name, "organization": ns or None}
        if RepoType.parse(repo_type) is not RepoType.MODEL:
            body["type"] = RepoType.parse(repo_type).value
        self.transport.request("DELETE", "/api/repos/delete", json_body=body, retry=False)

    def commit(self, repo_type: str, repo_id: str, ops: list[Operation], message: str, *,
               revision: str | None = None, description: str = "", parent_commit: str | None = None,
               progress: Any = None) -> str:
        """Apply ``ops`` as one commit on ``revision`` (default main); returns the new commit sha.

        Adds whose content the branch already has are dropped, unless a delete in ``ops`` covers their
        path (the delete would otherwise remove them); if nothing is left, no commit is made and the
        current head is returned.
        """
        rev = revision or DEFAULT_REVISION
        adds = [op for op in ops if isinstance(op, Add)]
        deletes = [op for op in ops if isinstance(op, Delete)]
        self._preupload(repo_type, repo_id, rev, adds, lambda path: _deleted_by(deletes, path))
        keep: list[Operation] = [op for op in ops if not isinstance(op, Add) or op.mode != "skip"]
        lfs = [op for op in keep if isinstance(op, Add) and op.mode == "lfs"]
        if lfs:
            upload_lfs_objects(self, self.lfs_batch_url(repo_type, repo_id), lfs, rev, progress)
        if not keep:
            return self.resolve(repo_type, repo_id, rev, refresh=True)
        header: dict[str, Any] = {"summary": message, "description": description}
        if parent_commit:
            header["parentCommit"] = parent_commit
        url = f"{self.api_path(repo_type, repo_id)}/commit/{quote(rev, safe='')}"
        resp = self.transport.request("POST", url, content=lambda: ndjson_body(header, keep),
                                      headers={"Content-Type": "application/x-ndjson"}, retry=False)
        self.forget_pin(repo_type, repo_id, rev)
        return resp.json()["commitOid"]

    def _preupload(self, repo_type: str, repo_id: str, rev: str, adds: list[Add],
                   deleted: Callable[[str], bool]) -> None:
        url = f"{self.api_path(repo_type, repo_id)}/preupload/{quote(rev, safe='')}"
        for i in range(0, len(adds), 256):
            batch = adds[i:i + 256]
            body = {"files": [{"path": a.path, "sample": a.sample(), "size": a.size} for a in batch]}
            answer = {f["path"]: f for f in self.transport.request("POST", url, json_body=body).json()["files"]}
            for add in batch:
                info = answer.get(add.path) or {}
                add.hash()
                mode = "regular" if add.size == 0 else info.get("uploadMode", "regular")
                remote = info.get("oid")
                unchanged = remote is not None and remote in (add.sha256, add.git_sha1) and not deleted(add.path)
                add.mode = "skip" if info.get("shouldIgnore") or unchanged else mode


def _deleted_by(deletes: list[Delete], path: str) -> bool:
    """Whether one of ``deletes`` removes ``path`` (the file itself, or a folder above it)."""
    return any(d.path == path or path.startswith(d.path.rstrip("/") + "/") for d in deletes)


def _pin_key(repo_type: str, repo_id: str, revision: str | None) -> PinKey:
    return RepoType.parse(repo_type).value, repo_id, revision or DEFAULT_REVISION


def _total_size(resp: httpx.Response) -> int:
    content_range = resp.headers.get("content-range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    return int(resp.headers.get("content-length", "-1"))


__all__ = ["Add", "Delete", "HubClient", "LfsRef"]
