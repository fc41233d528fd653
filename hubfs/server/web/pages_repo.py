"""Repo pages: the card (``/ns/name``), the file tree (``/tree/REV/path``), one file (``/blob/REV/path``),
the history (``/commits/REV``), one commit (``/commit/SHA``) and the discussions (read only).

Every page asks ``Hub.visible_repo`` first (a private repo reads as missing to others, 404 to all) and
``Hub.check_gate`` before showing a gated file's content. Work per page is bounded: a folder is
listed a page at a time (sizes read for that page only), history is walked only as far as shown.
"""

from __future__ import annotations

import json
import mimetypes
import stat
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dulwich.diff_tree import tree_changes
from dulwich.objects import ObjectID
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hubfs.errors import EntryNotFoundError, HubfsError, NotFoundError, RepoNotFoundError
from hubfs.paths import RepoType, public_repo_id, validate_revision
from hubfs.server.api_files import split_revision
from hubfs.server.cards import readme_text
from hubfs.server.git_store import GitRepo
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.revisions import resolve as resolve_revision
from hubfs.server.web.pages_base import html, page, page_caller, repo_base, site_of, url_path
from hubfs.server.web.render import card_body, chips, render_markdown, repo_linker
from hubfs.server.wire import endpoint_of, hub_of, int_param

TREE_PAGE = 200  # entries of one folder per page
COMMITS_PAGE = 50
CHANGES_MAX = 1000  # changed files listed for one commit
TEXT_MAX = 1 << 20  # files shown as text up to this size
CARD_MAX = 1 << 20  # README bytes read for the card
IMAGE_TYPES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".ico", ".avif"})
DATA_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json", ".tsv")


@dataclass(frozen=True)
class Row:
    """One line of a folder listing."""

    name: str
    path: str
    is_dir: bool
    size: int
    lfs: bool


def _open_repo(request: Request, t: str, ns: str, name: str) -> tuple[Hub, Caller, Repo]:
    """The repo if the caller may see it; a renamed repo's old name raises a redirect (``_Moved``)."""
    hub, caller = hub_of(request), page_caller(request)
    repo_type = RepoType.parse(t).value
    try:
        return hub, caller, hub.visible_repo(caller, repo_type, f"{ns}/{name}")
    except RepoNotFoundError:
        moved = hub.meta.redirect(repo_type, f"{ns}/{name}")
        if moved is None:
            raise
        hub.visible_repo(caller, repo_type, moved)  # a moved private repo stays invisible
        old = repo_base(repo_type, public_repo_id(f"{ns}/{name}"))
        raise _Moved(repo_base(repo_type, public_repo_id(moved)) + request.url.path[len(old):]) from None


class _Moved(HubfsError):
    def __init__(self, location: str) -> None:
        super().__init__("This repository moved.", status=307)
        self.location = location


def _gate_ok(hub: Hub, caller: Caller, repo: Repo) -> bool:
    try:
        hub.check_gate(caller, repo)
    except HubfsError:
        return False
    return True


def _common(request: Request, hub: Hub, caller: Caller, repo: Repo, g: GitRepo, rev: str, sha: str,
            tab: str) -> dict[str, Any]:
    """What every repo page shows: the header, the tabs and the branch/tag selector."""
    base = repo_base(repo.type, repo.public_id)
    refs = g.refs()
    branches = sorted(r[len("refs/heads/"):] for r in refs if r.startswith("refs/heads/"))
    tags = sorted(r[len("refs/tags/"):] for r in refs if r.startswith("refs/tags/"))
    return {
        "repo": repo, "base": base, "rev": rev, "sha": sha, "tab": tab, "branches": branches, "tags": tags,
        "can_write": bool(caller.user) and hub.meta.can_write_namespace(caller.user or "", repo.namespace),
        "gate_ok": _gate_ok(hub, caller, repo), "title": repo.public_id,
        "type_label": {"model": "Model", "dataset": "Dataset", "space": "Space"}[repo.type],
        "discussions": len(hub.meta.discussions(repo)),
    }


def _moved_or(fn: Any) -> Any:
    """Turn ``_Moved`` into a 307 to the new name (inside :func:`page`, which renders other errors)."""

    def wrapped(request: Request, **params: str) -> Response:
        try:
            return fn(request, **params)  # type: ignore[no-any-return]
        except _Moved as moved:
            return RedirectResponse(moved.location, status_code=307)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _usage(request: Request, repo: Repo, files: list[str]) -> list[tuple[str, str]]:
    """(title, snippet) lines of the "use this repo" box (``files``: the names in the top folder)."""
    endpoint = endpoint_of(request)
    prefix = RepoType.parse(repo.type).url_prefix
    rid = repo.public_id
    out = []
    if repo.type == "model":
        out.append(("transformers", (f'# HF_ENDPOINT={endpoint}\nfrom transformers import AutoModel\n'
                                     f'model = AutoModel.from_pretrained("{rid}")')))
    data = next((f for f in files if f.endswith(DATA_SUFFIXES)), None)
    if repo.type == "dataset":
        reader = {".parquet": "read_parquet", ".csv": "read_csv", ".tsv": "read_csv", ".jsonl": "read_json",
                  ".json": "read_json"}
        fname = data or "data.parquet"
        fn = reader.get("." + fname.rsplit(".", 1)[-1], "read_parquet")
        extra = ", lines=True" if fname.endswith(".jsonl") else ""
        out.append(("pandas", f'import pandas as pd  # hubfs provides hf://\ndf = pd.{fn}("hf://{prefix}{rid}/{fname}"{extra})'))
    out.append(("git", f"git clone hf://{prefix}{rid}"))
    out.append(("hubfs mount", f"hubfs mount {prefix}{rid} ./{repo.name}"))
    return out


def _folder(g: GitRepo, sha: str, path: str, start: int, count: int) -> tuple[list[Row], int]:
    """One page of folder ``path`` at ``sha`` (folders first, then files, each by name) and the
    folder's entry count; sizes and LFS flags are read for the rows of the page only."""
    top = g.lookup(sha, path)
    if top is None or top.type != "directory":
        raise EntryNotFoundError(f"{path or '/'} is not a folder at this revision.")
    items = list(g.tree(top.oid.encode()).iteritems())
    items.sort(key=lambda i: (not stat.S_ISDIR(i.mode), i.path))
    rows = []
    for item in items[start:start + count]:
        name = item.path.decode("utf-8", "replace")
        child = f"{path}/{name}" if path else name
        if stat.S_ISDIR(item.mode):
            rows.append(Row(name, child, True, 0, False))
        elif (item.mode & 0o170000) == 0o160000:
            rows.append(Row(name, child, False, 0, False))
        else:
            size, pointer = g.blob_info(item.sha)
            rows.append(Row(name, child, False, pointer.size if pointer else size, pointer is not None))
    return rows, len(items)


def _breadcrumbs(base: str, rev: str, path: str) -> list[tuple[str, str]]:
    out = [(base.rsplit("/", 1)[-1], f"{base}/tree/{quote(rev, safe='')}")]
    parts = path.split("/") if path else []
    for i, part in enumerate(parts):
        out.append((part, f"{base}/tree/{quote(rev, safe='')}/{url_path('/'.join(parts[:i + 1]))}"))
    return out


@page
@_moved_or
def repo_page(request: Request, t: str, ns: str, name: str) -> Response:
    """GET /{P}ns/name: the rendered card, its metadata as chips, the "use this repo" box."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, "main")
        ctx = _common(request, hub, caller, repo, g, "main", sha, "card")
        top = [(i.path.decode("utf-8", "replace"), stat.S_ISDIR(i.mode)) for i in g.tree(g.tree_of(sha)).iteritems()]
        readme = g.lookup(sha, "README.md")
        text = None
        if readme is not None and readme.type == "file" and readme.lfs is None and readme.size <= CARD_MAX:
            text = readme_text(g.read_blob(readme.oid))
        card = hub.meta.card(repo) if sha == repo.indexed_sha else None
        last = g.commit_info(sha)
    site = site_of(request)
    body = render_markdown(site.md, card_body(text), repo_linker(ctx["base"], "main")) if text else ""
    search = "/" + {"model": "models", "dataset": "datasets", "space": "spaces"}[repo.type]
    ctx.update(card_html=body, chips=chips(repo.type, card, search), usage=_usage(request, repo, [n for n, is_dir in top if not is_dir]),
               last=last, file_count=len(top), card_yaml=json.dumps(card, indent=1)[:4000] if card else "")
    return html(request, "repo.html", ctx)


@page
@_moved_or
def tree_page(request: Request, t: str, ns: str, name: str, rest_raw: str = "main") -> Response:
    """GET /{P}ns/name/tree/REV[/path][?p=N]: one folder, ``TREE_PAGE`` entries a page."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    rev, path = split_revision(rest_raw)
    p = int_param(request.query_params.get("p") or "0", "The page number", 1 << 20)
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        ctx = _common(request, hub, caller, repo, g, rev, sha, "files")
        entry = g.lookup(sha, path) if path else None
        if path and entry is None:
            raise EntryNotFoundError(f"{path} does not exist at {rev}.")
        if entry is not None and entry.type == "file":
            return RedirectResponse(f"{ctx['base']}/blob/{quote(rev, safe='')}/{url_path(path)}", status_code=302)
        rows, total = _folder(g, sha, path, p * TREE_PAGE, TREE_PAGE)
        last = g.commit_info(sha)
    pages = max(1, -(-total // TREE_PAGE))
    here = request.url.path
    ctx.update(rows=rows, total=total, path=path, crumbs=_breadcrumbs(ctx["base"], rev, path), last=last,
               page=p, pages=pages, prev_url=f"{here}?p={p - 1}" if p > 0 else None,
               next_url=f"{here}?p={p + 1}" if p + 1 < pages else None,
               parent=f"{ctx['base']}/tree/{quote(rev, safe='')}/{url_path(path.rsplit('/', 1)[0])}"
               if "/" in path else (f"{ctx['base']}/tree/{quote(rev, safe='')}" if path else None))
    return html(request, "tree.html", ctx)


@page
@_moved_or
def blob_page(request: Request, t: str, ns: str, name: str, rest_raw: str) -> Response:
    """GET /{P}ns/name/blob/REV/path: text as escaped text, images inline, others as a download link."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    rev, path = split_revision(rest_raw)
    if not path:
        raise EntryNotFoundError("No file named.")
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        ctx = _common(request, hub, caller, repo, g, rev, sha, "files")
        entry = g.lookup(sha, path)
        if entry is None:
            raise EntryNotFoundError(f"{path} does not exist at {rev}.")
        if entry.type == "directory":
            return RedirectResponse(f"{ctx['base']}/tree/{quote(rev, safe='')}/{url_path(path)}", status_code=302)
        text = None
        suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
        image = suffix in IMAGE_TYPES
        if ctx["gate_ok"] and entry.lfs is None and entry.size <= TEXT_MAX and not image:
            data = g.read_blob(entry.oid)
            if b"\x00" not in data[:8192]:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
    raw = f"{ctx['base']}/resolve/{quote(sha, safe='')}/{url_path(path)}"
    ctx.update(path=path, entry=entry, text=text, image=image and ctx["gate_ok"], raw_url=raw,
               download_url=f"{ctx['base']}/resolve/{quote(rev, safe='')}/{url_path(path)}?download=true",
               crumbs=_breadcrumbs(ctx["base"], rev, path), lines=text.count("\n") + 1 if text else 0,
               mime=mimetypes.guess_type(path)[0] or "application/octet-stream")
    return html(request, "blob.html", ctx)


@page
@_moved_or
def commits_page(request: Request, t: str, ns: str, name: str, rev: str = "main") -> Response:
    """GET /{P}ns/name/commits/REV[?p=N]: the history, newest first, ``COMMITS_PAGE`` a page."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    validate_revision(rev)
    p = int_param(request.query_params.get("p") or "0", "The page number", 1 << 16)
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        ctx = _common(request, hub, caller, repo, g, rev, sha, "commits")
        history = list(g.walk(sha, limit=(p + 1) * COMMITS_PAGE + 1))
    shown = history[p * COMMITS_PAGE:(p + 1) * COMMITS_PAGE]
    here = request.url.path
    ctx.update(commits=[(c, c.author.split(" <", 1)[0]) for c in shown], page=p,
               prev_url=f"{here}?p={p - 1}" if p > 0 else None,
               next_url=f"{here}?p={p + 1}" if len(history) > (p + 1) * COMMITS_PAGE else None)
    return html(request, "commits.html", ctx)


@page
@_moved_or
def commit_page(request: Request, t: str, ns: str, name: str, sha: str) -> Response:
    """GET /{P}ns/name/commit/SHA: one commit and the files it changed (against its first parent)."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    validate_revision(sha)
    with hub.git.open(repo.type, repo.repo_id) as g:
        full = resolve_revision(g, sha)
        ctx = _common(request, hub, caller, repo, g, full, full, "commits")
        info = g.commit_info(full)
        old = g.tree_of(info.parents[0]) if info.parents else None
        changes: list[tuple[str, str]] = []
        for change in tree_changes(g.store, ObjectID(old) if old else None, ObjectID(g.tree_of(full))):
            if len(changes) >= CHANGES_MAX:
                break
            item = change.new if change.type != "delete" else change.old
            path = item.path.decode("utf-8", "replace") if item is not None and item.path else ""
            changes.append((change.type, path))
    body = info.message.split("\n", 1)[1].strip() if "\n" in info.message else ""
    ctx.update(info=info, body=body, author=info.author.split(" <", 1)[0], changes=changes,
               truncated=len(changes) >= CHANGES_MAX)
    return html(request, "commit.html", ctx)


@page
@_moved_or
def discussions_page(request: Request, t: str, ns: str, name: str) -> Response:
    """GET /{P}ns/name/discussions: discussions and pull requests, newest first."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    with hub.git.open(repo.type, repo.repo_id) as g:
        ctx = _common(request, hub, caller, repo, g, "main", resolve_revision(g, "main"), "community")
    rows = hub.meta.discussions(repo)
    kind = request.query_params.get("type")
    if kind in ("pull_request", "discussion"):
        rows = [r for r in rows if bool(r["is_pr"]) == (kind == "pull_request")]
    ctx.update(items=[{"num": r["num"], "title": r["title"], "status": r["status"], "is_pr": bool(r["is_pr"]),
                       "author": r["author"], "created": r["created_at"]} for r in rows[:200]], kind=kind)
    return html(request, "discussions.html", ctx)


@page
@_moved_or
def discussion_page(request: Request, t: str, ns: str, name: str, num: str) -> Response:
    """GET /{P}ns/name/discussions/N: one discussion or pull request with its comments, read only."""
    hub, caller, repo = _open_repo(request, t, ns, name)
    number = int_param(num, "The discussion number")
    with hub.git.open(repo.type, repo.repo_id) as g:
        ctx = _common(request, hub, caller, repo, g, "main", resolve_revision(g, "main"), "community")
    row = hub.meta.discussion(repo, number)
    if row is None:
        raise NotFoundError(f"Discussion #{number} does not exist.")
    md = site_of(request).md
    events = []
    for ev in json.loads(row["events"]):
        data = ev.get("data") or {}
        if ev.get("type") == "comment":
            if data.get("hidden"):
                events.append({"kind": "hidden", "author": ev.get("author", {}).get("name", ""), "html": ""})
                continue
            raw = str((data.get("latest") or {}).get("raw") or "")
            events.append({"kind": "comment", "author": (ev.get("author") or {}).get("name", ""),
                           "date": ev.get("createdAt", ""), "html": render_markdown(md, raw)})
        else:
            events.append({"kind": str(ev.get("type", "")), "author": (ev.get("author") or {}).get("name", ""),
                           "date": ev.get("createdAt", ""), "text": _event_text(ev)})
    ctx.update(d={"num": row["num"], "title": row["title"], "status": row["status"], "is_pr": bool(row["is_pr"]),
                  "author": row["author"], "created": row["created_at"]}, events=events)
    return html(request, "discussion.html", ctx)


def _event_text(ev: dict[str, Any]) -> str:
    data = ev.get("data") or {}
    kind = ev.get("type")
    if kind == "status-change":
        return f"changed the status to {data.get('status', '')}"
    if kind == "title-change":
        return f"renamed it to {data.get('to', '')}"
    if kind == "commit":
        return f"added a commit: {data.get('subject', '')} ({str(data.get('oid', ''))[:7]})"
    return str(kind or "")
