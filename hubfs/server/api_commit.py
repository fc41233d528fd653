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
from io import BytesIO
from typing import Any, AsyncIterator

from dulwich.attrs import compile_gitattributes_patterns, match_path, parse_git_attributes
from dulwich.ignore import IgnoreFilter, read_ignore_patterns
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RevisionNotFoundError,
)
from hubfs.lfs import LfsPointer, is_valid_oid
from hubfs.paths import is_pr_ref, validate_path_in_repo, validate_ref_name, validate_revision
from hubfs.server.api_repos import repo_type_of
from hubfs.server.git_store import Change, GitRepo
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.wire import SUMMARY_MAX, TEXT_MAX, caller_of, flag, hub_of, read_json, repo_url, str_field, text_field

_PARENT_RE = re.compile(r"^[0-9a-fA-F]{5,40}$")


class LfsRules:
    """Which paths a ``.gitattributes`` routes to LFS (``filter=lfs``)."""

    def __init__(self, text: bytes | None) -> None:
        self.patterns = compile_gitattributes_patterns(parse_git_attributes(BytesIO(text or b"")))

    def tracks(self, path: str) -> bool:
        return match_path(self.patterns, path.encode()).get(b"filter") == b"lfs"


def _gitattributes(g: GitRepo, commit: str | None) -> bytes | None:
    entry = g.lookup(commit, ".gitattributes") if commit else None
    return g.read_blob(entry.oid) if entry and entry.type == "file" and not entry.lfs else None


def _repo_for_commit(hub: Hub, caller: Caller, t: str, ns: str, name: str, revision: str, create_pr: bool) -> Repo:
    """Branch commits need namespace write; PRs need any signed-in write token (the Hub's rule)."""
    repo_type = repo_type_of(t)
    if create_pr or is_pr_ref(revision):
        repo = hub.visible_repo(caller, repo_type, f"{ns}/{name}")
        if caller.user is None:
            raise AuthenticationError("You must be authenticated to open or update a pull request.")
        if caller.role != "write":
            raise PermissionDeniedError("This token is read-only: a write token is needed.")
        if is_pr_ref(revision) and not hub.meta.can_write_namespace(caller.user, repo.namespace):
            pr = hub.meta.discussion(repo, int(revision.rsplit("/", 1)[1]))
            if pr is None or pr["author"] != caller.user:
                raise PermissionDeniedError("Only the PR's author or the repo's owners can push to it.")
        return repo
    return hub.writable_repo(caller, repo_type, f"{ns}/{name}")


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
    repo = _repo_for_commit(hub, caller, t, ns, name, rev, create_pr)
    body = await read_json(request, limit=64 << 20)
    files = body.get("files")
    if not isinstance(files, list):
        raise BadRequestError("preupload body needs a 'files' list.")
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = g.resolve(rev)
        ignore_text = b""
        entry = g.lookup(sha, ".gitignore")
        if entry is not None and entry.type == "file" and not entry.lfs:
            ignore_text = g.read_blob(entry.oid)
        if isinstance(body.get("gitIgnore"), str):
            ignore_text += b"\n" + body["gitIgnore"].encode()
        ignore = IgnoreFilter(read_ignore_patterns(BytesIO(ignore_text))) if ignore_text.strip() else None
        rules = LfsRules(_gitattributes(g, sha))
        out = []
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not isinstance(f.get("size"), int):
                raise BadRequestError("Each preupload file needs a 'path' (string) and a 'size' (integer).")
            path = validate_path_in_repo(f["path"])
            mode = "lfs" if f["size"] >= hub.regular_max_size or (f["size"] and rules.tracks(path)) else "regular"
            current = g.lookup(sha, path)
            oid = None
            if current is not None and current.type == "file":
                oid = current.lfs.oid if (current.lfs and mode == "lfs") else (current.oid if not current.lfs else None)
            out.append({"path": f["path"], "uploadMode": mode, "oid": oid,
                        "shouldIgnore": bool(ignore and ignore.is_ignored(path))})
    return json_response({"files": out, "commitOid": sha})


def max_line(regular_max_size: int) -> int:
    """The longest commit line accepted: a regular file's base64 content plus room for its path."""
    return (regular_max_size + 2) // 3 * 4 + (64 << 10)


async def _ndjson(request: Request, limit: int) -> AsyncIterator[dict[str, Any]]:
    """Yield the body's JSON lines as they arrive (a line is never rescanned: linear in its size);
    a line longer than ``limit`` bytes is refused as soon as that many bytes are buffered."""
    buf = bytearray()
    scanned = 0
    async for chunk in request.stream():
        buf += chunk
        while True:
            nl = buf.find(b"\n", scanned)
            if nl < 0:
                scanned = len(buf)
                break
            line = bytes(buf[:nl])
            del buf[:nl + 1]
            scanned = 0
            if line.strip():
                yield _parse_line(line)
        if len(buf) > limit:
            raise PayloadTooLargeError(f"A commit line is larger than {limit} bytes: files of "
                                       f"{hub_of(request).regular_max_size} bytes or more go through Git LFS.")
    if buf.strip():
        yield _parse_line(bytes(buf))


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"Malformed NDJSON line in commit body: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not isinstance(obj.get("value"), dict):
        raise BadRequestError("Each commit line must be an object with 'key' and 'value'.")
    return obj


class CommitBuilder:
    """Turns commit operations into tree changes, storing content as it goes."""

    def __init__(self, hub: Hub, repo: Repo, g: GitRepo, base: str | None) -> None:
        self.hub, self.repo, self.g = hub, repo, g
        self.rules = LfsRules(_gitattributes(g, base))
        self.changes: list[Change] = []

    def add_file(self, value: dict[str, Any]) -> None:
        path = validate_path_in_repo(str(value.get("path", "")))
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
        # A regular file whose text happens to be an LFS pointer is stored as an LFS object holding that
        # text: a tree pointer is only ever dereferenced to bytes this repo uploaded.
        if self.rules.tracks(path) or LfsPointer.parse(data) is not None:
            oid = self.hub.lfs.put_bytes(data)
            self.hub.meta.link_lfs(self.repo, oid, len(data))
            blob = self.g.add_blob(LfsPointer(oid, len(data)).to_bytes())
        else:
            blob = self.g.add_blob(data)
        self.changes.append(Change("put", path, blob))

    def add_lfs_file(self, value: dict[str, Any]) -> None:
        path = validate_path_in_repo(str(value.get("path", "")))
        oid = value.get("oid")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not is_valid_oid(oid):
            raise BadRequestError(f"lfsFile {path}: 'oid' must be a sha256 hex digest.")
        stored = self.hub.lfs.size(oid)
        if stored is None or not self.hub.meta.lfs_linked(self.repo, oid):
            raise BadRequestError(f"lfsFile {path}: LFS object {oid} was never uploaded to this hub. "
                                  "Upload it through the LFS batch API before committing.")
        size = value.get("size", stored)
        if size != stored:
            raise BadRequestError(f"lfsFile {path}: declared size {size} but the stored object has {stored} bytes.")
        self.changes.append(Change("put", path, self.g.add_blob(LfsPointer(oid, stored).to_bytes())))

    def delete(self, kind: str, value: dict[str, Any]) -> None:
        path = validate_path_in_repo(str(value.get("path", "")))
        self.changes.append(Change(kind, path))

    def apply(self, key: str, value: dict[str, Any]) -> None:
        if not isinstance(value.get("path"), str):
            raise BadRequestError(f"Each {key} line needs a 'path' string.")
        if key == "file":
            self.add_file(value)
        elif key == "lfsFile":
            self.add_lfs_file(value)
        elif key == "deletedFile":
            self.delete("delete_file", value)
        elif key == "deletedFolder":
            self.delete("delete_folder", value)
        else:
            raise BadRequestError(f"Unknown commit operation {key!r}: expected file, lfsFile, deletedFile or "
                                  "deletedFolder.")


async def commit(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """POST /api/{T}/{id}/commit/{rev}[?create_pr=1] (NDJSON: header, file, lfsFile, deletedFile,
    deletedFolder) -> {success, commitOid, commitUrl, commitMessage, hookOutput[, pullRequestUrl]}.

    412 when header.parentCommit is not the branch head; 404 RevisionNotFound for a missing branch;
    400 for any malformed line, with nothing written to the branch.
    """
    hub, caller = hub_of(request), caller_of(request)
    validate_revision(rev)
    create_pr = flag(request, "create_pr")
    repo = _repo_for_commit(hub, caller, t, ns, name, rev, create_pr)
    # reclaim held shared from the first line to the ref update: gc cannot delete what this commit reuses
    with hub.git.open(repo.type, repo.repo_id) as g, await hub.reclaim.shared_async():
        ref = hub.write_ref_for(g, rev)
        builder = CommitBuilder(hub, repo, g, g.branch_head(ref))
        header: dict[str, Any] | None = None
        async for line in _ndjson(request, max_line(hub.regular_max_size)):
            if line["key"] == "header":
                if header is not None:
                    raise BadRequestError("A commit has exactly one header line.")
                header = line["value"]
                continue
            if header is None:
                raise BadRequestError("The first line of a commit must be its header.")
            await run_in_threadpool(builder.apply, line["key"], line["value"])
        if header is None:
            raise BadRequestError("Commit body is empty: expected a header line.")
        if not isinstance(header.get("summary"), str):
            raise BadRequestError("The commit header needs a 'summary' string.")
        summary = text_field(header, "summary", SUMMARY_MAX, "The commit summary")
        description = text_field(header, "description", TEXT_MAX, "The commit description")
        parent = header.get("parentCommit")
        if parent is not None and (not isinstance(parent, str) or not _PARENT_RE.match(parent)):
            raise BadRequestError("parentCommit must be a commit sha (5 to 40 hex characters).")
        sha, pr = await run_in_threadpool(
            hub.commit, caller, repo, g, ref, builder.changes, summary=summary,
            description=description, parent=parent, create_pr=create_pr)
    url = repo_url(request, repo.type, repo.repo_id)
    body: dict[str, Any] = {"success": True, "commitOid": sha, "commitUrl": f"{url}/commit/{sha}",
                            "commitMessage": summary, "hookOutput": ""}
    if pr is not None:
        body["pullRequestUrl"] = f"{url}/discussions/{pr}"
    return json_response(body)


async def create_branch(request: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """POST /api/{T}/{id}/branch/{branch} {startingPoint?} -> 200; 409 if it exists."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    body = await read_json(request)
    validate_ref_name(branch, "branch")
    with hub.git.open(repo.type, repo.repo_id) as g:
        start = g.resolve(str_field(body, "startingPoint", None) or "main")
        if g.branch_head(f"refs/heads/{branch}") is not None:
            raise ConflictError(f"Branch {branch} already exists.")
        try:
            g.set_ref(f"refs/heads/{branch}", start, None)
        except Exception as exc:
            raise ConflictError(f"Branch {branch} already exists or conflicts with another ref.") from exc
    hub.meta.touch(repo)
    return json_response({})


async def delete_branch(request: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """DELETE /api/{T}/{id}/branch/{branch}: the default branch cannot be deleted."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    validate_revision(branch)
    if branch == "main":
        raise BadRequestError("The default branch 'main' cannot be deleted.")
    with hub.git.open(repo.type, repo.repo_id) as g:
        head = g.branch_head(f"refs/heads/{branch}")
        if head is None:
            raise RevisionNotFoundError(f"Branch {branch} does not exist.")
        g.set_ref(f"refs/heads/{branch}", None, head)
    return json_response({})


async def create_tag(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """POST /api/{T}/{id}/tag/{rev} {tag, message?}: annotated when a message is given; 409 if it exists."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    body = await read_json(request)
    tag = body.get("tag")
    if not isinstance(tag, str):
        raise BadRequestError("The body needs a 'tag' name.")
    validate_ref_name(tag, "tag")
    message = text_field(body, "message", TEXT_MAX, "The tag message")
    with hub.git.open(repo.type, repo.repo_id) as g:
        target = g.resolve(rev)
        g.make_tag(tag, target, message or None, hub.signature(caller.user or "admin"))
    return json_response({})


async def delete_tag(request: Request, t: str, ns: str, name: str, tag: str) -> Response:
    """DELETE /api/{T}/{id}/tag/{tag}."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.writable_repo(caller, repo_type_of(t), f"{ns}/{name}")
    validate_revision(tag)
    with hub.git.open(repo.type, repo.repo_id) as g:
        raw = g.repo.refs.as_dict().get(f"refs/tags/{tag}".encode())
        if raw is None:
            raise RevisionNotFoundError(f"Tag {tag} does not exist.")
        g.set_ref(f"refs/tags/{tag}", None, raw.decode())
    return json_response({})


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}"
    router.add(["POST"], R + "/preupload/{rev:path}", preupload)
    router.add(["POST"], R + "/commit/{rev:path}", commit)
    router.add(["POST"], R + "/branch/{branch:path}", create_branch)
    router.add(["DELETE"], R + "/branch/{branch:path}", delete_branch)
    router.add(["POST"], R + "/tag/{rev:path}", create_tag)
    router.add(["DELETE"], R + "/tag/{tag:path}", delete_tag)

