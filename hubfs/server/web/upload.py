"""Upload files and edit the model card in the browser.

- ``/{P}ns/name/upload/{branch}``: a plain ``<input type=file multiple>`` (and a folder input) form
  that works without JavaScript; ``static/upload.js`` adds drag and drop and a progress bar (it posts
  the same form with XMLHttpRequest and asks for a JSON answer). One commit, all or nothing. A body
  over the app state's ``hubfs.web.upload_max`` bytes (default ``MAX_UPLOAD``) is refused with 413.
- ``/{P}ns/name/edit/{branch}/README.md``: the card in a text area, a preview, and a commit whose
  YAML is checked first exactly as ``POST /api/validate-yaml`` checks it.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, CsrfError, HubfsError, PayloadTooLargeError, PreconditionFailedError
from hubfs.paths import validate_revision
from hubfs.server import events
from hubfs.server.api_commit import CommitBuilder
from hubfs.server.card_rules import check_card
from hubfs.server.cards import readme_text
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.revisions import resolve as resolve_revision
from hubfs.server.web import session
from hubfs.server.web.forms import Form, form_page, form_route, redirect, signed_in, to_login
from hubfs.server.web.forms_repo import REPO, _kind
from hubfs.server.web.pages_base import error_page, page, repo_base, site_of
from hubfs.server.web.render import card_body, render_markdown, repo_linker
from hubfs.server.web.upload_store import MAX_UPLOAD, commit_upload, read_upload_form
from hubfs.server.wire import SUMMARY_MAX, hub_of

CARD_MAX = 200 << 10  # characters of a card edited in the browser


def _writable(request: Request, caller: Caller, prefix: str, ns: str, name: str, rev: str) -> Repo:
    validate_revision(rev)
    return hub_of(request).writable_repo(caller, _kind(prefix), f"{ns}/{name}")


# -- upload ----------------------------------------------------------------------------------------


@page
def upload_page(request: Request, prefix: str, ns: str, name: str, rev: str) -> Response:
    """GET /{P}ns/name/upload/{branch}: the upload form (for those who may write the repo)."""
    caller = signed_in(request)
    if caller is None:
        return to_login(request)
    repo = _writable(request, caller, prefix, ns, name, rev)
    return _upload_form(request, repo, rev, None)


def _upload_form(request: Request, repo: Repo, rev: str, error: str | None, status: int = 200) -> Response:
    base = repo_base(repo.type, repo.public_id)
    return form_page(request, "upload.html", {"title": f"Upload to {repo.public_id}", "repo": repo, "base": base,
                                              "rev": rev, "error": error}, status=status)


async def upload(request: Request, prefix: str, ns: str, name: str, rev: str) -> Response:
    """POST /{P}ns/name/upload/{branch} (multipart: ``files`` repeated, ``summary``, ``description``,
    ``csrf_token``) -> 303 to the tree (or JSON ``{commitOid, url}`` when asked with ``Accept: application/json``).

    Access and the session are checked before the body is read; the CSRF token after (it is a field)."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        caller = await run_in_threadpool(_upload_caller, request, prefix, ns, name, rev)
        if caller is None:
            return to_login(request)
        limit = request.scope.get("hubfs.web.upload_max") or MAX_UPLOAD
        form = await read_upload_form(request, hub_of(request).lfs.tmp_dir, limit=limit)
        try:
            sha, repo = await run_in_threadpool(_commit, request, caller, form, prefix, ns, name, rev)
        finally:
            await run_in_threadpool(form.close)
    except HubfsError as exc:
        if wants_json:
            return json_response({"error": exc.message}, status=exc.status)
        return await run_in_threadpool(functools.partial(_upload_error, request, prefix=prefix, ns=ns, name=name,
                                                         rev=rev, exc=exc))
    await events.publish(request, repo.type, repo.repo_id, "repo.content", refs=[(f"refs/heads/{rev}", None, sha)])
    url = f"{repo_base(repo.type, repo.public_id)}/tree/{rev}"
    if wants_json:
        return json_response({"commitOid": sha, "url": url})
    return redirect(url)


def _upload_caller(request: Request, prefix: str, ns: str, name: str, rev: str) -> Caller | None:
    caller = signed_in(request)
    if caller is not None:
        _writable(request, caller, prefix, ns, name, rev)
    return caller


def _commit(request: Request, caller: Caller, form: Any, prefix: str, ns: str, name: str,
            rev: str) -> tuple[str, Repo]:
    session.check_csrf(request, form.fields.get(session.CSRF_FIELD))
    summary = form.fields.get("summary", "").strip()[:SUMMARY_MAX] or "Upload files"
    hub = hub_of(request)
    repo = _writable(request, caller, prefix, ns, name, rev)
    sha = commit_upload(hub, caller, repo.type, repo.repo_id, rev, form, summary, form.fields.get("description", ""))
    return sha, repo


@page
def _upload_error(request: Request, prefix: str, ns: str, name: str, rev: str, exc: HubfsError) -> Response:
    caller = signed_in(request)
    if isinstance(exc, CsrfError) or caller is None or exc.status not in (400, 409, 412, 413, 422):
        return error_page(request, exc)
    repo = _writable(request, caller, prefix, ns, name, rev)
    return _upload_form(request, repo, rev, exc.message, status=exc.status)


# -- the model card ----------------------------------------------------------------------------------


def card_errors(hub: Hub, repo_type: str, text: str) -> list[str]:
    """What ``POST /api/validate-yaml`` would answer for ``text`` (empty: valid)."""
    try:
        return check_card(repo_type, hub.cards.front_matter(text))
    except (BadRequestError, PayloadTooLargeError) as exc:
        return [exc.message]


def _read_card(hub: Hub, repo: Repo, rev: str) -> tuple[str, str]:
    """(README.md text or "", the branch head sha)."""
    with hub.git.open(repo.type, repo.repo_id) as g:
        sha = resolve_revision(g, rev)
        entry = g.lookup(sha, "README.md")
        text = readme_text(g.read_blob(entry.oid)) if entry and entry.type == "file" and not entry.lfs else ""
    return text, sha


def _edit_form(request: Request, repo: Repo, rev: str, text: str, parent: str, *, errors: list[str] | None = None,
               preview: str | None = None, summary: str = "", status: int = 200) -> Response:
    return form_page(request, "edit_card.html", {
        "title": f"Edit the card of {repo.public_id}", "repo": repo, "base": repo_base(repo.type, repo.public_id),
        "rev": rev, "text": text, "parent": parent, "errors": errors or [], "preview": preview,
        "summary": summary}, status=status)


@page
def edit_page(request: Request, prefix: str, ns: str, name: str, rev: str) -> Response:
    """GET /{P}ns/name/edit/{branch}/README.md: the card editor."""
    caller = signed_in(request)
    if caller is None:
        return to_login(request)
    repo = _writable(request, caller, prefix, ns, name, rev)
    text, sha = _read_card(hub_of(request), repo, rev)
    return _edit_form(request, repo, rev, text, sha)


def edit(request: Request, form: Form, prefix: str, ns: str, name: str, rev: str) -> Response:
    """POST /{P}ns/name/edit/{branch}/README.md {content, summary, parent, action: preview|commit}:
    a preview, or the YAML checked and one commit (412 when the branch moved since the edit began)."""
    caller = signed_in(request)
    if caller is None:
        return to_login(request)
    hub = hub_of(request)
    repo = _writable(request, caller, prefix, ns, name, rev)
    text = form.get("content", "").replace("\r\n", "\n")
    summary = form.get("summary", "").strip()[:SUMMARY_MAX]
    parent = form.get("parent", "")
    if len(text) > CARD_MAX:
        raise PayloadTooLargeError(f"A card edited here has at most {CARD_MAX} characters.")
    errors = card_errors(hub, repo.type, text)
    if form.get("action") == "preview" or errors:
        base = repo_base(repo.type, repo.public_id)
        preview = render_markdown(site_of(request).md, card_body(text), repo_linker(base, rev))
        return _edit_form(request, repo, rev, text, parent, errors=errors, preview=preview, summary=summary,
                          status=400 if errors else 200)
    builder = CommitBuilder.start(hub, caller, repo.type, repo.repo_id, rev, False)
    try:
        with hub.git.open(repo.type, repo.repo_id) as g:
            builder.add_file(g, {"path": "README.md", "content": text, "encoding": "utf-8"})
            builder.header = {"summary": summary or "Update README.md", "parentCommit": parent or None}
            sha = builder.finish(g).sha
    except (BadRequestError, PreconditionFailedError) as exc:
        return _edit_form(request, repo, rev, text, parent, errors=[exc.message], summary=summary, status=exc.status)
    events.publish_from(request, repo.type, repo.repo_id, "repo.content", refs=[(f"refs/heads/{rev}", None, sha)])
    return redirect(repo_base(repo.type, repo.public_id))


def register(router: Router) -> None:
    router.add(["GET"], REPO + "/upload/{rev:path}", upload_page)
    router.add(["POST"], REPO + "/upload/{rev:path}", upload)
    router.add(["GET"], REPO + "/edit/{rev:path}/README.md", edit_page)
    router.add(["POST"], REPO + "/edit/{rev:path}/README.md", form_route(edit))
