"""Write routes: preupload, the NDJSON commit, branches and tags.

Wire contract: ``hub-api.md`` sections 3.6 and 5. The commit body is parsed as it streams in; each
file is written to the object store (or, when large or LFS-tracked by ``.gitattributes``, to the LFS
store) as its line arrives, and the branch moves only once every line has been accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from dulwich.attrs import compile_gitattributes_patterns, match_path, parse_git_attributes
from dulwich.ignore import IgnoreFilter, read_ignore_patterns
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import (
    BadRequestError,
    ConflictError,
    InvalidNameError,
    PayloadTooLargeError,
    RevisionNotFoundError,
)
from hubfs.lfs import LfsPointer, is_valid_oid
from hubfs.paths import validate_path_in_repo, validate_ref_name, validate_revision
from hubfs.server import events
from hubfs.server.api_repos import repo_type_of
from hubfs.server.card_rules import check_card
from hubfs.server.cards import readme_text
from hubfs.server.git_store import Change, GitRepo
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.revisions import resolve as resolve_revision
from hubfs.server.wire import SUMMARY_MAX, TEXT_MAX, caller_of, flag, hub_of, read_json, repo_url, str_field, text_field

_PARENT_RE = re.compile(r"^[0-9a-fA-F]{5,40}$")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def path_in_repo(raw: str) -> str:
    """A commit's or preupload's path, checked; ``.`` or ``..`` segments answer 422 as on the Hub."""
    if any(seg in (".", "..") for seg in raw.split("/")):
        raise InvalidNameError(f"Invalid path_in_repo {raw!r}: '.' and '..' segments are not allowed.", status=422)
    return validate_path_in_repo(raw)


class LfsRules:
    """Which paths a ``.gitattributes`` routes to LFS (``filter=lfs``)."""

    def __init__(self, text: bytes | None) -> None:
        self.patterns = compile_gitattributes_patterns(parse_git_attributes(BytesIO(text or b"")))

    def tracks(self, path: str) -> bool:
        return match_path(self.patterns, path.encode()).get(b"filter") == b"lfs"


def _gitattributes(g: GitRepo, commit: str | None) -> bytes | None:
    entry = g.lookup(commit, ".gitattributes") if commit else None
    return g.read_blob(entry.oid) if entry and entry.type == "file" and not entry.lfs else None


async def preupload(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """POST /api/{T}/{id}/preupload/{rev} {files:[{path,sample,size}], gitIgnore?}
    -> {files:[{path, uploadMode: regular|lfs, shouldIgnore, oid}], commitOid}.

    As on huggingface.co, files that the revision's ``.gitattributes`` routes to LFS go ``lfs`` whatever
    their size (``datasets``' ``push_to_hub`` deletes each shard after its preupload, so a ``.parquet``
    shard must be uploaded then), and so do files of the regular-size limit and more; the rest go
    ``regular`` (inline in the commit, so clients with Xet on can still send them). ``oid`` is the
    current file's oid in the form the client compares with.
    """
    hub, caller = hub_of(request), caller_of(request)
    validate_revision(rev)
    create_pr = flag(request, "create_pr")
    # Access first: a body of up to 64 MiB is read only for callers who may write here.
    await run_in_threadpool(hub.repo_for_commit, caller, repo_type_of(t), f"{ns}/{name}", rev, create_pr)
    body = await read_json(request, limit=64 << 20)
    out = await run_in_threadpool(_preupload, hub, caller, repo_type_of(t), f"{ns}/{name}", rev, create_pr, body)
    return json_response(out)


def _preupload(hub: Hub, caller: Caller, repo_type: str, repo_id: str, rev: str, create_pr: bool,
               body: dict[str, Any]) -> dict[str, Any]:
    """The preupload answer (blocking: access, git lookups), through this thread's own ``GitRepo``."""
    repo = hub.repo_for_commit(caller, repo_type, repo_id, rev, create_pr)
    files = body.get("files")
    if not isinstance(files, list):
        raise BadRequestError("preupload body needs a 'files' list.")
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        ignore = _ignore_filter(g, sha, body.get("gitIgnore"))
        rules = LfsRules(_gitattributes(g, sha))
        out = []
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not isinstance(f.get("size"), int):
                raise BadRequestError("Each preupload file needs a 'path' (string) and a 'size' (integer).")
            path = path_in_repo(f["path"])
            mode = "lfs" if f["size"] >= hub.regular_max_size or (f["size"] and rules.tracks(path)) else "regular"
            current = g.lookup(sha, path)
            oid = None
            if current is not None and current.type == "file":
                oid = current.lfs.oid if (current.lfs and mode == "lfs") else (current.oid if not current.lfs else None)
            out.append({"path": f["path"], "uploadMode": mode, "oid": oid,
                        "shouldIgnore": bool(ignore and ignore.is_ignored(path))})
    return {"files": out, "commitOid": sha}


def _ignore_filter(g: GitRepo, sha: str, extra: Any) -> IgnoreFilter | None:
    """The revision's ``.gitignore`` plus the request's ``gitIgnore`` text; None when both are empty."""
    ignore_text = b""
    entry = g.lookup(sha, ".gitignore")
    if entry is not None and entry.type == "file" and not entry.lfs:
        ignore_text = g.read_blob(entry.oid)
    if isinstance(extra, str):
        ignore_text += b"\n" + extra.encode()
    return IgnoreFilter(read_ignore_patterns(BytesIO(ignore_text))) if ignore_text.strip() else None


def max_line(regular_max_size: int) -> int:
    """The longest commit line accepted: a regular file's base64 content plus room for its path."""
    return (regular_max_size + 2) // 3 * 4 + (64 << 10)


BATCH_BYTES = 4 << 20  # commit lines are handed to a worker thread in batches of about this size


async def _ndjson_batches(request: Request, limit: int, budget: int = BATCH_BYTES) -> AsyncIterator[list[bytes]]:
    """The body's non-empty lines, unparsed, in batches of about ``budget`` bytes as they arrive (a
    line is never rescanned: linear in its size); a line longer than ``limit`` bytes is refused as
    soon as that many bytes are buffered. At most one batch plus one line is held."""
    buf = bytearray()
    batch: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        pos = len(buf)
        buf += chunk
        start = 0
        while (nl := buf.find(b"\n", pos)) >= 0:
            line = bytes(buf[start:nl])
            start = pos = nl + 1
            if line.strip():
                batch.append(line)
                size += len(line)
        del buf[:start]
        if len(buf) > limit:
            raise PayloadTooLargeError(f"A commit line is larger than {limit} bytes: files of "
                                       f"{hub_of(request).regular_max_size} bytes or more go through Git LFS.")
        if size >= budget:
            yield batch
            batch, size = [], 0
    if buf.strip():
        batch.append(bytes(buf))
    if batch:
        yield batch


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"Malformed NDJSON line in commit body: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not isinstance(obj.get("value"), dict):
        raise BadRequestError("Each commit line must be an object with 'key' and 'value'.")
    return obj


@dataclass(frozen=True)
class CommitResult:
    sha: str
    pr: int | None
    summary: str
    repo: Repo


class CommitBuilder:
    """Turns commit lines into tree changes, storing content as it goes, then commits.

    It holds no git handle: each step runs in a worker thread and opens that thread's own
    ``GitRepo``, so no dulwich object crosses threads (``GitStore.open``'s rule).
    """

    def __init__(self, hub: Hub, caller: Caller, repo: Repo, ref: str, gitattributes: bytes | None,
                 create_pr: bool) -> None:
        self.hub, self.caller, self.repo, self.ref, self.create_pr = hub, caller, repo, ref, create_pr
        self.rules = LfsRules(gitattributes)
        self.changes: list[Change] = []
        self.header: dict[str, Any] | None = None

    @classmethod
    def start(cls, hub: Hub, caller: Caller, repo_type: str, repo_id: str, rev: str, create_pr: bool) -> CommitBuilder:
        """Check the caller may commit to ``rev`` (the PR rules of :meth:`Hub.repo_for_commit`) and
        find the ref it moves (404 RevisionNotFound when missing). Blocking: run it off the loop."""
        repo = hub.repo_for_commit(caller, repo_type, repo_id, rev, create_pr)
        with hub.git.open(repo.type, repo.repo_id) as g:
            ref = hub.write_ref_for(g, rev)
            return cls(hub, caller, repo, ref, _gitattributes(g, g.branch_head(ref)), create_pr)

    def feed(self, lines: list[bytes], *, last: bool) -> CommitResult | None:
        """Parse and apply ``lines`` in order; with ``last``, commit. Blocking: run it off the loop."""
        with self.hub.git.open(self.repo.type, self.repo.repo_id) as g:
            for raw in lines:
                self.take(g, _parse_line(raw))
            return self.finish(g) if last else None

    def take(self, g: GitRepo, line: dict[str, Any]) -> None:
        if line["key"] == "header":
            if self.header is not None:
                raise BadRequestError("A commit has exactly one header line.")
            self.header = line["value"]
            return
        if self.header is None:
            raise BadRequestError("The first line of a commit must be its header.")
        self.apply(g, line["key"], line["value"])

    def finish(self, g: GitRepo) -> CommitResult:
        """Check the header and commit the changes (or open the PR)."""
        header = self.header
        if header is None:
            raise BadRequestError("Commit body is empty: expected a header line.")
        if not isinstance(header.get("summary"), str):
            raise BadRequestError("The commit header needs a 'summary' string.")
        summary = text_field(header, "summary", SUMMARY_MAX, "The commit summary")
        description = text_field(header, "description", TEXT_MAX, "The commit description")
        parent = header.get("parentCommit")
        if parent is not None and (not isinstance(parent, str) or not _PARENT_RE.match(parent)):
            raise BadRequestError("parentCommit must be a commit sha (5 to 40 hex characters).")
        sha, pr = self.hub.commit(self.caller, self.repo, g, self.ref, self.changes, summary=summary,
                                  description=description, parent=parent, create_pr=self.create_pr)
        return CommitResult(sha, pr, summary, self.repo)

    def add_file(self, g: GitRepo, value: dict[str, Any]) -> None:
        path = path_in_repo(str(value.get("path", "")))
        encoding = value.get("encoding", "base64")
        content = value.get("content")
        if not isinstance(content, str):
            raise BadRequestError(f"file {path}: 'content' must be a string.")
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequestError(f"file {path}: content is not valid base64.") from None
        elif encoding in ("utf-8", "utf8", None):
            data = content.encode()
        else:
            raise BadRequestError(f"file {path}: unknown encoding {encoding!r}.")
        if len(data) >= self.hub.regular_max_size:
            raise PayloadTooLargeError(
                f"file {path}: {len(data)} bytes inline; files of {self.hub.regular_max_size} bytes or more must "
                "be uploaded with Git LFS (the preupload answer says 'lfs' for them).")
        if path == ".gitattributes":
            self.rules = LfsRules(data)
        if path == "README.md":
            self.check_card(data)
        # A regular file whose text happens to be an LFS pointer is stored as an LFS object holding that
        # text: a tree pointer is only ever dereferenced to bytes this repo uploaded. An empty file is
        # always a regular empty blob, as on the Hub (git-lfs never makes a pointer for one either).
        if data and (self.rules.tracks(path) or LfsPointer.parse(data) is not None):
            oid = self.hub.lfs.put_bytes(data)
            self.hub.meta.link_lfs(self.repo, oid, len(data))
            blob = g.add_blob(LfsPointer(oid, len(data)).to_bytes())
        else:
            blob = g.add_blob(data)
        self.changes.append(Change("put", path, blob))

    def add_lfs_file(self, g: GitRepo, value: dict[str, Any]) -> None:
        path = path_in_repo(str(value.get("path", "")))
        oid = value.get("oid")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not is_valid_oid(oid):
            raise BadRequestError(f"lfsFile {path}: 'oid' must be a sha256 hex digest.")
        if oid.lower() == EMPTY_SHA256 and value.get("size", 0) == 0:
            self.changes.append(Change("put", path, g.add_blob(b"")))  # stored as a regular empty file
            return
        stored = self.hub.objects.size(oid)
        if stored is None or not self.hub.meta.lfs_linked(self.repo, oid):
            raise BadRequestError(f"lfsFile {path}: LFS object {oid} was never uploaded to this hub. "
                                  "Upload it through the LFS batch API before committing.")
        size = value.get("size", stored)
        if size != stored:
            raise BadRequestError(f"lfsFile {path}: declared size {size} but the stored object has {stored} bytes.")
        self.changes.append(Change("put", path, g.add_blob(LfsPointer(oid, stored).to_bytes())))

    def delete(self, g: GitRepo, kind: str, value: dict[str, Any]) -> None:
        """A deleted file or folder; a folder named without its trailing slash (``deletedFile``) is
        deleted as a folder, as on the Hub."""
        path = path_in_repo(str(value.get("path", "")))
        if kind == "delete_file" and not any(c.path == path for c in self.changes):
            head = g.branch_head(self.ref)
            entry = g.lookup(head, path) if head else None
            if entry is not None and entry.type == "directory":
                kind = "delete_folder"
        self.changes.append(Change(kind, path))

    def check_card(self, data: bytes) -> None:
        """400 with the Hub's messages when README.md's metadata breaks the card rules. Metadata that
        cannot be parsed within the bounds of ``cards`` is committed and simply not indexed."""
        try:
            card = self.hub.cards.front_matter(readme_text(data))
        except (BadRequestError, PayloadTooLargeError):
            return
        errors = check_card(self.repo.type, card)
        if errors:
            raise BadRequestError("Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))

    def apply(self, g: GitRepo, key: str, value: dict[str, Any]) -> None:
        if not isinstance(value.get("path"), str):
            raise BadRequestError(f"Each {key} line needs a 'path' string.")
        if key == "file":
            self.add_file(g, value)
        elif key == "lfsFile":
            self.add_lfs_file(g, value)
        elif key == "deletedFile":
            self.delete(g, "delete_file", value)
        elif key == "deletedFolder":
            self.delete(g, "delete_folder", value)
        else:
            raise BadRequestError(f"Unknown commit operation {key!r}: expected file, lfsFile, deletedFile or "
                                  "deletedFolder.")


async def commit(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """POST /api/{T}/{id}/commit/{rev}[?create_pr=1] (NDJSON: header, file, lfsFile, deletedFile,
    deletedFolder) -> {success, commitOid, commitUrl, commitMessage, hookOutput[, pullRequestUrl]}.

    412 when header.parentCommit is not the branch head; 404 RevisionNotFound for a missing branch;
    400 for any malformed line, with nothing written to the branch. The loop only splits the body
    into lines; parsing, storing and the commit run in worker threads, batch after batch, in order.
    """
    hub, caller = hub_of(request), caller_of(request)
    validate_revision(rev)
    create_pr = flag(request, "create_pr")
    builder = await run_in_threadpool(CommitBuilder.start, hub, caller, repo_type_of(t), f"{ns}/{name}", rev,
                                      create_pr)
    # reclaim held shared from the first line to the ref update: gc cannot delete what this commit reuses
    with await hub.reclaim.shared_async():
        pending: list[bytes] | None = None
        async for batch in _ndjson_batches(request, max_line(hub.regular_max_size)):
            if pending is not None:
                await run_in_threadpool(builder.feed, pending, last=False)
            pending = batch
        result = await run_in_threadpool(builder.feed, pending or [], last=True)
    assert result is not None
    await events.publish(request, result.repo.type, result.repo.repo_id, "repo.content",
                         refs=[(f"refs/pr/{result.pr}" if result.pr is not None else builder.ref, None, result.sha)])
    if result.pr is not None:
        await events.publish(request, result.repo.type, result.repo.repo_id, "discussion", "create", discussion=result.pr)
    url = repo_url(request, result.repo.type, result.repo.public_id)
    body: dict[str, Any] = {"success": True, "commitOid": result.sha, "commitUrl": f"{url}/commit/{result.sha}",
                            "commitMessage": result.summary, "hookOutput": ""}
    if result.pr is not None:
        body["pullRequestUrl"] = f"{url}/discussions/{result.pr}"
    return json_response(body)


async def create_branch(request: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """POST /api/{T}/{id}/branch/{branch} {startingPoint?} -> 200; 409 if it exists."""
    hub, caller = hub_of(request), caller_of(request)
    body = await read_json(request)
    await run_in_threadpool(_create_branch, hub, caller, repo_type_of(t), f"{ns}/{name}", branch, body)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "repo.content", refs=[(f"refs/heads/{branch}", None, None)])
    return json_response({})


def _create_branch(hub: Hub, caller: Caller, repo_type: str, repo_id: str, branch: str, body: dict[str, Any]) -> None:
    repo = hub.writable_repo(caller, repo_type, repo_id)
    if branch.startswith("refs/"):
        raise InvalidNameError(f"Invalid reference for a branch: {branch}")
    validate_ref_name(branch, "branch")
    with hub.git.open(repo.type, repo.repo_id) as g:
        start = resolve_revision(g, str_field(body, "startingPoint", None) or "main")
        if g.branch_head(f"refs/heads/{branch}") is not None:
            raise ConflictError(f"Reference already exists: refs/heads/{branch}")
        try:
            g.set_ref(f"refs/heads/{branch}", start, None)
        except Exception as exc:
            raise ConflictError(f"Reference already exists: refs/heads/{branch}") from exc
    hub.meta.touch(repo)


async def delete_branch(request: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """DELETE /api/{T}/{id}/branch/{branch}: the default branch cannot be deleted."""
    hub, caller = hub_of(request), caller_of(request)
    await run_in_threadpool(_delete_branch, hub, caller, repo_type_of(t), f"{ns}/{name}", branch)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "repo.content", refs=[(f"refs/heads/{branch}", None, None)])
    return json_response({})


def _delete_branch(hub: Hub, caller: Caller, repo_type: str, repo_id: str, branch: str) -> None:
    repo = hub.writable_repo(caller, repo_type, repo_id)
    validate_revision(branch)
    if branch == "main":
        raise BadRequestError("You cannot delete the default branch (main).")
    with hub.git.open(repo.type, repo.repo_id) as g:
        head = g.branch_head(f"refs/heads/{branch}")
        if head is None:
            raise RevisionNotFoundError(f"Invalid rev id: {branch}")
        g.set_ref(f"refs/heads/{branch}", None, head)


async def create_tag(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """POST /api/{T}/{id}/tag/{rev} {tag, message?}: annotated when a message is given; 409 if it exists."""
    hub, caller = hub_of(request), caller_of(request)
    body = await read_json(request)
    await run_in_threadpool(_create_tag, hub, caller, repo_type_of(t), f"{ns}/{name}", rev, body)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "repo.content",
                         refs=[(f"refs/tags/{body.get('tag')}", None, None)])
    return json_response({})


def _create_tag(hub: Hub, caller: Caller, repo_type: str, repo_id: str, rev: str, body: dict[str, Any]) -> None:
    repo = hub.writable_repo(caller, repo_type, repo_id)
    tag = body.get("tag")
    if not isinstance(tag, str):
        raise BadRequestError("The body needs a 'tag' name.")
    validate_ref_name(tag, "tag")
    message = text_field(body, "message", TEXT_MAX, "The tag message")
    with hub.git.open(repo.type, repo.repo_id) as g:
        target = resolve_revision(g, rev)
        try:
            g.make_tag(tag, target, message or None, hub.signature(caller.user or "admin"))
        except ConflictError:
            raise ConflictError(f"Reference already exists: refs/tags/{tag}") from None


async def delete_tag(request: Request, t: str, ns: str, name: str, tag: str) -> Response:
    """DELETE /api/{T}/{id}/tag/{tag}."""
    hub, caller = hub_of(request), caller_of(request)
    await run_in_threadpool(_delete_tag, hub, caller, repo_type_of(t), f"{ns}/{name}", tag)
    await events.publish(request, repo_type_of(t), f"{ns}/{name}", "repo.content", refs=[(f"refs/tags/{tag}", None, None)])
    return json_response({})


def _delete_tag(hub: Hub, caller: Caller, repo_type: str, repo_id: str, tag: str) -> None:
    repo = hub.writable_repo(caller, repo_type, repo_id)
    validate_revision(tag)
    with hub.git.open(repo.type, repo.repo_id) as g:
        raw = g.branch_head(f"refs/tags/{tag}")  # the ref's own value: an annotated tag's object, not its commit
        if raw is None:
            raise RevisionNotFoundError(f"Invalid rev id: {tag}")
        g.set_ref(f"refs/tags/{tag}", None, raw)


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}"
    router.add(["POST"], R + "/preupload/{rev:path}", preupload)
    router.add(["POST"], R + "/commit/{rev:path}", commit)
    router.add(["POST"], R + "/branch/{branch:path}", create_branch)
    router.add(["DELETE"], R + "/branch/{branch:path}", delete_branch)
    router.add(["POST"], R + "/tag/{rev:path}", create_tag)
    router.add(["DELETE"], R + "/tag/{tag:path}", delete_tag)

