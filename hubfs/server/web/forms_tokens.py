"""Access tokens in the browser (``/settings/tokens``): create (a name, read or write; the token is
shown once, on the answer to the create form, never in a URL), list (by id) and revoke."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, NotFoundError
from hubfs.server.http import Router
from hubfs.server.web.forms import Form, form_page, form_route, redirect, signed_in, to_login
from hubfs.server.web.pages_base import page
from hubfs.server.wire import hub_of

NAME_MAX = 100


def _tokens_page(request: Request, user: str, *, new_token: str | None = None, error: str | None = None,
                 status: int = 200) -> Response:
    rows = hub_of(request).meta.list_tokens(user)
    return form_page(request, "tokens.html", {"title": "Access tokens", "tokens": rows, "new_token": new_token,
                                              "error": error}, status=status)


@page
def tokens_page(request: Request) -> Response:
    """GET /settings/tokens: the signed-in user's tokens (id, name, role, dates) and the create form."""
    caller = signed_in(request)
    if caller is None or caller.user is None:
        return to_login(request)
    return _tokens_page(request, caller.user)


def create_token(request: Request, form: Form) -> Response:
    """POST /settings/tokens {name, role}: the page again, with the new token shown this once."""
    caller = signed_in(request)
    if caller is None or caller.user is None:
        return to_login(request)
    name = form.get("name", "").strip()
    role = form.get("role", "read")
    try:
        if not name or len(name) > NAME_MAX:
            raise BadRequestError(f"A token needs a name of 1 to {NAME_MAX} characters.")
        token = hub_of(request).meta.create_token(caller.user, name, role)
    except BadRequestError as exc:
        return _tokens_page(request, caller.user, error=exc.message, status=exc.status)
    return _tokens_page(request, caller.user, new_token=token)


def revoke_token(request: Request, form: Form) -> Response:
    """POST /settings/tokens/revoke {token_id}: revoke one of the user's own tokens; 303 back."""
    caller = signed_in(request)
    if caller is None or caller.user is None:
        return to_login(request)
    meta = hub_of(request).meta
    token_id = form.get("token_id", "")
    if token_id not in {row.id for row in meta.list_tokens(caller.user)}:
        raise NotFoundError("You have no token with this id.")
    meta.revoke_token(token_id)
    return redirect("/settings/tokens")


def register(router: Router) -> None:
    router.add(["GET"], "/settings/tokens", tokens_page)
    router.add(["POST"], "/settings/tokens", form_route(create_token))
    router.add(["POST"], "/settings/tokens/revoke", form_route(revoke_token))
