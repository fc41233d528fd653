"""What every web page shares: the template environment, the signed-in caller, security headers,
server timing, HTML error pages and the static files.

A page handler is a plain function ``(request, **params) -> Response`` wrapped by :func:`page`; it
asks :class:`~hubfs.server.hub.Hub` every access question exactly as the API routes do. The
``Site`` (templates, markdown engine) lives in the app state under ``hubfs.web``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hubfs.errors import AuthenticationError, HubfsError, RepoNotFoundError
from hubfs.paths import RepoType
from hubfs.server.hub import ANONYMOUS, Caller
from hubfs.server.web.render import markdown_engine
from hubfs.server.wire import caller_of

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,100}")
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


def human_size(n: int | None) -> str:
    """Bytes as the Hub writes them: ``512 Bytes``, ``1.2 kB``, ``3.4 MB`` (powers of 1000)."""
    if n is None:
        return ""
    if n < 1000:
        return f"{n} Byte{'' if n == 1 else 's'}"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000 or unit == "PB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} Bytes"  # unreachable


def ago(ts: float | None, now: float | None = None) -> str:
    """A timestamp as ``just now``, ``5 minutes ago``, ``3 days ago``, or the date past a year."""
    if not ts:
        return ""
    delta = max(0.0, (now if now is not None else time.time()) - ts)
    for unit, seconds in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600),
                          ("minute", 60)):
        if delta >= seconds:
            count = int(delta // seconds)
            if unit == "year":
                return time.strftime("%Y-%m-%d", time.gmtime(ts))
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def repo_base(repo_type: str, public_id: str) -> str:
    """The web path of a repo: ``/ns/name``, ``/datasets/ns/name``, ``/spaces/ns/name``."""
    return "/" + RepoType.parse(repo_type).url_prefix + "/".join(quote(p, safe="") for p in public_id.split("/"))


def url_path(path: str) -> str:
    """A path inside a repo, percent-encoded segment by segment for a URL."""
    return "/".join(quote(p, safe="") for p in path.split("/"))


class Site:
    """The web interface's immutable parts: the Jinja2 environment (autoescape on) and the markdown engine."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                      trim_blocks=True, lstrip_blocks=True, auto_reload=False,
                                      undefined=jinja2.StrictUndefined)
        self.env.filters.update(size=human_size, ago=ago, urlpath=url_path, q=lambda s: quote(str(s), safe=""))
        self.env.globals.update(repo_base=repo_base)
        self.md: MarkdownIt = markdown_engine()

    def render(self, name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(name).render(context)


def site_of(request: Request) -> Site:
    return request.scope["hubfs.web"]  # type: ignore[no-any-return]


def _session() -> Any:
    """The sign-in session module (``hubfs.server.web.session``) when the sign-in part is installed."""
    if importlib.util.find_spec("hubfs.server.web.session") is None:
        return None
    return importlib.import_module("hubfs.server.web.session")


def page_caller(request: Request) -> Caller:
    """Who views a page: a bearer token if the request carries one (as the API reads it), else the
    signed-in browser session, else anonymous. Cached on the request."""
    cached = request.scope.get("hubfs.web.caller")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if request.headers.get("authorization"):
        caller = caller_of(request)
    else:
        session = _session()
        found = session.request_user(request) if session is not None else None
        caller = found if isinstance(found, Caller) else ANONYMOUS
    request.scope["hubfs.web.caller"] = caller
    return caller


def csrf_token(request: Request) -> str | None:
    """The session's CSRF token for forms in the layout (sign out), when the sign-in part provides one."""
    session = _session()
    fn = getattr(session, "csrf_token", None) if session is not None else None
    return fn(request) if callable(fn) else None


def html(request: Request, template: str, context: dict[str, Any], status: int = 200,
         headers: dict[str, str] | None = None) -> Response:
    """Render ``template`` with the layout's context (the caller, the CSRF token, the request path)."""
    caller = page_caller(request)
    signed_in = caller.user is not None and not request.headers.get("authorization")  # a browser session
    full = {"user": caller.user, "csrf_token": csrf_token(request) if signed_in else None,
            "path": request.url.path, "query": request.query_params, "title": "", **context}
    body = site_of(request).render(template, full)
    return HTMLResponse(body, status_code=status, headers=headers)


def error_page(request: Request, exc: HubfsError) -> Response:
    """An error as a page. A repo that is missing or hidden reads the same to everyone: 404."""
    status = exc.status
    message = exc.message
    if isinstance(exc, RepoNotFoundError):
        status, message = 404, "This repository does not exist, or you do not have access to it."
    elif isinstance(exc, AuthenticationError) and status == 401:
        message = exc.message
    return html(request, "error.html", {"status": status, "message": message, "title": f"Error {status}"},
                status=status)


def page(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap a page handler: HubfsError -> an HTML error page, the security headers and a
    ``Server-Timing: app;dur=MS`` header on every answer."""

    @functools.wraps(handler)
    def wrapped(request: Request, **params: str) -> Response:
        start = time.perf_counter()
        try:
            response = handler(request, **params)
        except HubfsError as exc:
            response = error_page(request, exc)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        return response

    return wrapped


@page
def static(request: Request, name: str) -> Response:
    """GET /static/{name}: the stylesheet and scripts shipped in ``web/static`` (nothing else)."""
    suffix = Path(name).suffix
    path = STATIC / name
    if not _STATIC_NAME.fullmatch(name) or suffix not in _STATIC_TYPES or not path.is_file():
        raise HubfsError("Not found.", status=404)
    return Response(path.read_bytes(), media_type=_STATIC_TYPES[suffix],
                    headers={"Cache-Control": "public, max-age=3600"})
