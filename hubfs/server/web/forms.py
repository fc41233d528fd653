"""What the web forms share: reading a posted form (bounded, off the loop), the CSRF check, the
signed-in caller, redirects, and running an API route's own service function as the browser user.

A form handler is ``(request, form, **params) -> Response``, wrapped by :func:`form_route`: the body
(at most ``FORM_MAX`` bytes, urlencoded) is read on the loop, then the CSRF token is checked and the
handler runs in the thread pool, with hubfs errors shown as HTML error pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hubfs.errors import BadRequestError, HubfsError
from hubfs.server.hub import Caller
from hubfs.server.web import session
from hubfs.server.web.pages_base import error_page, html, page, page_caller
from hubfs.server.wire import read_body

FORM_MAX = 256 << 10  # bytes of a posted form (a model card edit is the largest)
Form = dict[str, str]
FormHandler = Callable[..., Response]


def parse_form(raw: bytes) -> Form:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a repeated name)."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("The form is not valid urlencoded UTF-8.") from None
    return dict(pairs)


def form_route(handler: FormHandler) -> Callable[..., Awaitable[Response]]:
    """An ``async`` route for a POSTed form: read it, then (in the thread pool) check its CSRF token
    and call ``handler(request, form, **params)`` as a :func:`~pages_base.page`."""

    @page
    def checked(request: Request, raw: bytes, **params: str) -> Response:
        form = parse_form(raw)
        session.check_csrf(request, form.get(session.CSRF_FIELD))
        return handler(request, form, **params)

    async def route(request: Request, **params: str) -> Response:
        try:
            raw = await read_body(request, FORM_MAX, "Form")
        except HubfsError as exc:
            return await run_in_threadpool(error_page, request, exc)
        return await run_in_threadpool(checked, request, raw=bytes(raw), **params)

    route.__doc__ = handler.__doc__  # named ``route`` still: tests/server/test_concurrency_rule.py checks it
    return route


def signed_in(request: Request) -> Caller | None:
    """The browser's signed-in user (a session cookie), or None. A request that also carries a bearer
    token has it checked as the API does: a wrong or revoked one is a 401, never a sign-in redirect."""
    if request.headers.get("authorization"):
        page_caller(request)
    return session.request_user(request)


def to_login(request: Request) -> Response:
    """303 to the sign-in page, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in ("/" for anything else: no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def as_caller(request: Request, caller: Caller) -> Request:
    """Make the API's ``caller_of(request)`` answer ``caller``: an API service function called from a
    form then decides exactly as it does for a token of that user."""
    request.scope["hubfs.caller"] = caller
    return request


def form_page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    """Render a page holding forms: the CSRF token is in the context (anonymous visitors too)."""
    token = session.csrf_token(request)
    response = html(request, template, {"csrf_token": token, **context}, status=status)
    return session.attach_cookies(request, response)
