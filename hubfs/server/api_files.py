"""File-level routes: tree listings, paths-info, resolve (download with Range), refs and commit logs.

Wire contract: ``hub-api.md`` sections 3-4. Paths arrive percent-encoded (``%2F`` inside
segments) and are split on the raw path before decoding.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, EntryNotFoundError, HubfsError, RepoNotFoundError
from hubfs.lfs import LFS_ONLY_HEADER, LFS_ONLY_PARAM
from hubfs.paths import RepoType, public_repo_id, validate_path_in_repo, validate_revision
from hubfs.server.api_repos import repo_type_of
from hubfs.server.git_store import Entry, GitRepo, last_commits
from hubfs.server.http import RangedBody, Router, error_response, inline, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.revisions import resolve as resolve_revision
from hubfs.server.wire import caller_of, flag, hub_of, iso, page, read_json
from hubfs.server.xet.routes import xet_auth_link

TREE_PAGE, TREE_PAGE_EXPANDED, COMMITS_PAGE = 1000, 50, 50
PATHS_INFO_MAX, PATHS_INFO_MAX_EXPANDED = 10_000, 1_000  # paths per paths-info request
PATHS_INFO_INLINE = 16  # paths answered on the event loop (no history walk): the common one-file info
# User files are never run by a browser: no type sniffing, and HTML or SVG opened directly is sandboxed.
RAW_FILE_HEADERS = {"X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
                                               "style-src 'unsafe-inline'; sandbox"}


def split_revision(rest_raw: str) -> tuple[str, str]:
    """``{quote(rev, safe='')}/{path...}`` -> (rev, path). An unencoded ``refs/pr/N`` also works."""
    segs = rest_raw.split("/")
    n = 3 if segs[0] == "refs" and len(segs) >= 3 and segs[1] in ("pr", "convert") else 1
    try:
        rev = "/".join(unquote(s, errors="strict") for s in segs[:n])
        path = "/".join(unquote(s, errors="strict") for s in segs[n:])
    except UnicodeDecodeError:
        raise BadRequestError("Invalid percent-encoding in path.") from None
    return validate_revision(rev), (validate_path_in_repo(path) if path.strip("/") else "")


def entry_json(e: Entry) -> dict[str, Any]:
    """A tree entry: folders carry their tree oid; files their real size and ``lfs`` when LFS."""
    if e.type == "directory":
        return {"type": "directory", "oid": e.oid, "size": 0, "path": e.path}
    out: dict[str, Any] = {"type": "file", "oid": e.oid, "size": e.size, "path": e.path}
    if e.lfs:
        out["lfs"] = {"oid": e.lfs.oid, "size": e.lfs.size, "pointerSize": e.pointer_size}
    return out


def _add_xet_hashes(hub: Hub, items: list[dict[str, Any]]) -> None:
    """``xetHash`` on the LFS entries whose content is stored as a Xet file (one query per page)."""
    oids = [i["lfs"]["oid"] for i in items if "lfs" in i]
    found = hub.xet.file_hashes(oids) if oids else {}
    for item in items:
        if "lfs" in item and item["lfs"]["oid"] in found:
            item["xetHash"] = found[item["lfs"]["oid"]]


def _add_last_commits(hub: Hub, g: GitRepo, sha: str, items: list[dict[str, Any]]) -> None:
    with hub.history_walks:
        found = last_commits(g, sha, [i["path"] for i in items])
    for item in items:
        info = found.get(item["path"])
        if info:
            item["lastCommit"] = {"id": info.id, "title": info.title, "date": iso(info.timestamp)}


def tree(request: Request, t: str, ns: str, name: str, rest_raw: str) -> Response:
    """GET /api/{T}/{id}/tree/{rev}[/{path}]?recursive&expand -> [entries], 1000 a page (50 expanded).

    hubfs's extension ``hubfs_lfs=all``: only the LFS files, of the whole subtree whatever ``recursive``
    says, and the answer says so (``X-Hubfs-Lfs: all``): a clone's download list in one request where
    a hub without it answers the plain (root) listing the client would have asked for anyway.
    """
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    rev, path = split_revision(rest_raw)
    expand = flag(request, "expand")
    lfs_only = request.query_params.get(LFS_ONLY_PARAM) == "all"
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        entries = g.list_tree(sha, path, recursive=lfs_only or flag(request, "recursive"))
        if lfs_only:
            entries = [e for e in entries if e.type != "directory" and e.lfs]
        chunk, headers = page(request, entries, TREE_PAGE_EXPANDED if expand else TREE_PAGE)
        if lfs_only:
            headers[LFS_ONLY_HEADER] = "all"
        items = [entry_json(e) for e in chunk]
        _add_xet_hashes(hub, items)
        if expand:
            _add_last_commits(hub, g, sha, items)
    return json_response(items, headers=headers)


async def paths_info(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """POST /api/{T}/{id}/paths-info/{rev} (form ``paths=..&expand=..`` or JSON) -> entries that exist.

    At most 10,000 paths, or 1,000 with ``expand`` (400 past either). A few paths without ``expand``
    are looked up on the event loop (cached tree reads); anything larger runs in the thread pool.
    """
    hub, caller = hub_of(request), caller_of(request)
    validate_revision(rev)
    paths, expand = await _read_paths_request(request)
    args = (hub, caller, repo_type_of(t), f"{ns}/{name}", rev, paths, expand)
    if not expand and len(paths) <= PATHS_INFO_INLINE:
        return _paths_info(*args)  # a few cached reads, as in the @inline routes: cheaper than a thread hop
    return await run_in_threadpool(_paths_info, *args)


async def _read_paths_request(request: Request) -> tuple[list[Any], bool]:
    """(paths, expand) from a JSON or form body, within the paths-info limits (else 400/413)."""
    if "json" in request.headers.get("content-type", ""):
        body = await read_json(request)
        if not isinstance(body, dict):
            raise BadRequestError("paths-info body must be a JSON object with 'paths' and 'expand'.")
        paths, expand = body.get("paths") or [], bool(body.get("expand"))
    else:
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > 16 << 20:
                raise BadRequestError("paths-info body larger than 16 MiB.", status=413)
        form = parse_qs(raw.decode("utf-8", "replace"))
        paths, expand = form.get("paths", []), (form.get("expand", ["false"])[0].lower() == "true")
    if not isinstance(paths, list) or len(paths) > PATHS_INFO_MAX:
        raise BadRequestError(f"paths must be a list of at most {PATHS_INFO_MAX} paths.")
    if expand and len(paths) > PATHS_INFO_MAX_EXPANDED:
        raise BadRequestError(f"paths-info with expand=true takes at most {PATHS_INFO_MAX_EXPANDED} paths "
                              f"(got {len(paths)}); split the request.")
    return paths, expand


def _paths_info(hub: Hub, caller: Caller, repo_type: str, repo_id: str, rev: str, paths: list[Any],
                expand: bool) -> Response:
    """The entries of ``paths`` that exist at ``rev`` (blocking git work: off the event loop unless a
    few paths without ``expand``)."""
    repo = hub.visible_repo(caller, repo_type, repo_id)
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        items = []
        for p in paths:
            clean = validate_path_in_repo(str(p)) if str(p).strip("/") else ""
            entry = g.lookup(sha, clean) if clean else None
            if entry is not None:
                items.append(entry_json(entry))
        _add_xet_hashes(hub, items)
        if expand:
            _add_last_commits(hub, g, sha, items)
    return json_response(items)


@inline
def resolve(request: Request, prefix: str, ns: str, name: str, rest_raw: str) -> Response:
    """GET|HEAD /{P}{id}/resolve/{rev}/{path}: the file's bytes (Range: 206, clamped, 416 past EOF).

    Headers: X-Repo-Commit, ETag (sha256 for LFS, git blob sha1 otherwise), X-Linked-Etag and
    X-Linked-Size, full Content-Length on HEAD. Errors carry X-Error-Code (HEAD too).
    """
    hub, caller = hub_of(request), caller_of(request)
    repo_type = repo_type_of(prefix.rstrip("/") or "model")
    repo_id = f"{ns}/{name}"
    try:
        repo = hub.visible_repo(caller, repo_type, repo_id)
    except RepoNotFoundError as not_found:
        moved = hub.meta.redirect(repo_type, repo_id)
        if moved is None:
            raise
        try:
            hub.visible_repo(caller, repo_type, moved)
        except RepoNotFoundError:
            raise not_found from None  # a moved private repo stays invisible, and so does its new name
        target = f"/{RepoType.parse(repo_type).url_prefix}{public_repo_id(moved)}/resolve/{rest_raw}"
        return Response(status_code=307, headers={"Location": target})
    rev, path = split_revision(rest_raw)
    hub.check_gate(caller, repo)
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        entry = g.lookup(sha, path) if path else None
        if entry is None or entry.type != "file":
            return error_response(EntryNotFoundError("Entry not found"), headers={"X-Repo-Commit": sha})
        headers = {
            "X-Repo-Commit": sha,
            "X-Linked-Size": str(entry.size),
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
            "Content-Disposition": f"{'attachment' if flag(request, 'download') else 'inline'}; "
                                   f"filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
            "Cache-Control": "private, max-age=0" if not sha.startswith(rev) else "public, max-age=31536000, immutable",
            **RAW_FILE_HEADERS,
        }
        if entry.lfs:
            headers["ETag"] = headers["X-Linked-Etag"] = f'"{entry.lfs.oid}"'
            if not hub.meta.lfs_linked(repo, entry.lfs.oid):
                # Only bytes uploaded to this repo are served: a pointer to another repo's object (one
                # written before that rule was enforced) resolves to nothing.
                raise HubfsError(f"The content of {path} ({entry.lfs.oid}) was never uploaded to this repository.",
                                 status=404)
            xet_hash = hub.xet.file_hashes([entry.lfs.oid]).get(entry.lfs.oid)
            if xet_hash:  # Xet clients download through the CAS; everyone else gets the bytes below
                headers["X-Xet-Hash"] = xet_hash
                headers["Link"] = xet_auth_link(request, repo.type, repo.repo_id, sha)
            location = hub.lfs.download_url(entry.lfs.oid)  # a presigned GET when objects live in S3
            if location is None and hub.cdn_url:
                sig = hub.sign(f"download|{repo.id}|{entry.lfs.oid}", ttl=3600)
                location = (f"{hub.cdn_url}/{RepoType.parse(repo.type).url_prefix}{repo.repo_id}.git/info/lfs/objects/"
                            f"{entry.lfs.oid}?{sig}")
            if location is not None:
                # The CDN pattern of huggingface.co: a signed, expiring URL on another origin; the
                # metadata rides on the redirect itself, and clients drop the token when following it.
                keep = ("X-Repo-Commit", "X-Linked-Size", "ETag", "X-Linked-Etag", "X-Xet-Hash", "Link")
                return Response(status_code=302, headers={"Location": location,
                                                          **{k: headers[k] for k in keep if k in headers}})
            stored = hub.objects.get(entry.lfs.oid)
            if stored is None or stored.size != entry.lfs.size:
                raise HubfsError(f"The content of {path} ({entry.lfs.oid}) is missing from this hub's storage.",
                                 status=404)
            return RangedBody(request, entry.size, headers, layout=stored.layout)
        headers["ETag"] = f'"{entry.oid}"'
        if request.method == "HEAD":
            return RangedBody(request, entry.size, headers, data=b"")
        oid = entry.oid
        return RangedBody(request, entry.size, headers,
                          load=lambda: _read_blob(hub, repo.type, repo.repo_id, oid))


def _read_blob(hub: Hub, repo_type: str, repo_id: str, oid: str) -> bytes:
    """A blob's bytes, through the calling thread's own repository handle."""
    with hub.git.open(repo_type, repo_id) as g:
        return g.read_blob(oid)


def refs(request: Request, t: str, ns: str, name: str) -> Response:
    """GET /api/{T}/{id}/refs[?include_prs=1] -> {branches, converts, tags[, pullRequests]}."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    out: dict[str, list[dict[str, str]]] = {"branches": [], "converts": [], "tags": []}
    prs: list[dict[str, str]] = []
    with hub.git.open(repo.type, repo.repo_id) as g:
        for ref, sha in sorted(g.refs().items()):
            for prefix, key in (("refs/heads/", "branches"), ("refs/tags/", "tags"), ("refs/convert/", "converts")):
                if ref.startswith(prefix):
                    out[key].append({"name": ref[len(prefix):], "ref": ref, "targetCommit": sha})
            if ref.startswith("refs/pr/"):
                prs.append({"name": ref, "ref": ref, "targetCommit": sha})
    if flag(request, "include_prs"):
        out["pullRequests"] = sorted(prs, key=lambda r: int(r["name"].rsplit("/", 1)[1]))
    return json_response(out)


def commits(request: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """GET /api/{T}/{id}/commits/{rev}[?expand[]=formatted] -> newest first, 50 a page, Link paginated."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    validate_revision(rev)
    formatted = "formatted" in request.query_params.getlist("expand[]") + request.query_params.getlist("expand")
    with hub.git.open(repo.type, repo.repo_id) as g:
        history = list(g.walk(resolve_revision(g, rev)))
    chunk, headers = page(request, history, COMMITS_PAGE)
    items = []
    for c in chunk:
        author = c.author.split(" <", 1)[0]
        body = c.message.split("\n", 1)[1].strip() if "\n" in c.message else ""
        item: dict[str, Any] = {"id": c.id, "authors": [{"user": author}], "date": iso(c.timestamp),
                                "title": c.title, "message": body}
        if formatted:
            item["formatted"] = {"title": c.title, "message": body}
        items.append(item)
    return json_response(items, headers=headers)


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}"
    router.add(["GET"], R + "/tree/{rest_raw:path}", tree)
    router.add(["POST"], R + "/paths-info/{rev:path}", paths_info)
    router.add(["GET"], R + "/refs", refs)
    router.add(["GET"], R + "/commits/{rev:path}", commits)
    router.add(["GET"], "/{prefix:prefix}{ns}/{name}/resolve/{rest_raw:path}", resolve)
