"""Sign in (``/login``), sign out (``POST /logout``) and self sign-up (``/join``, only with
``hubfs serve --allow-signup``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, ConflictError, HubfsError, NotFoundError, TooManyRequestsError
from hubfs.paths import validate_name
from hubfs.server.http import Router
from hubfs.server.hub import RESERVED_NAMES
from hubfs.server.web import session
from hubfs.server.web.forms import Form, form_page, form_route, redirect, safe_next
from hubfs.server.web.pages_base import page
from hubfs.server.web.passwords import check_password_rules
from hubfs.server.wire import hub_of

# Words the web pages use as first path segment: never a user name (``/login`` is not a profile).
WEB_WORDS = ("login", "logout", "join", "new", "new-dataset", "new-space", "settings", "static", "search",
             "organizations", "docs")


@page
def login_page(request: Request) -> Response:
    """GET /login[?next=PATH]: the sign-in form (a signed-in visitor goes on to ``next``)."""
    if session.request_user(request) is not None:
        return redirect(safe_next(request.query_params.get("next")))
    return _login_form(request, "", safe_next(request.query_params.get("next")), None)


def _login_form(request: Request, username: str, next_path: str, error: str | None, status: int = 200) -> Response:
    auth = session.web_auth(request)
    return form_page(request, "login.html", {"title": "Sign in", "username": username, "next": next_path,
                                             "error": error, "allow_signup": auth.allow_signup}, status=status)


def login(request: Request, form: Form) -> Response:
    """POST /login {username, password, next, csrf_token}: 303 to ``next`` with a session cookie;
    the form again (401) on a wrong name or password; 429 past the rate limit."""
    auth = session.web_auth(request)
    username = form.get("username", "").strip()[:100]
    password = form.get("password", "")
    next_path = safe_next(form.get("next"))
    address = session.client_address(request)
    try:
        auth.limiter.check(username, address)
    except TooManyRequestsError as exc:
        return _login_form(request, username, next_path, exc.message, status=429)
    if not username or not auth.passwords.check(username, password):
        auth.limiter.failed(username, address)
        return _login_form(request, username, next_path, "Wrong user name or password.", status=401)
    auth.limiter.succeeded(username)
    response = redirect(next_path)
    session.sign_in(request, response, username)
    return response


def logout(request: Request, form: Form) -> Response:
    """POST /logout {csrf_token}: end the session; 303 to the home page."""
    response = redirect("/")
    session.sign_out(request, response)
    return response


@page
def join_page(request: Request) -> Response:
    """GET /join: the sign-up form (404 unless the hub runs with ``--allow-signup``)."""
    _signup_allowed(request)
    return form_page(request, "join.html", {"title": "Sign up", "username": "", "error": None})


def join(request: Request, form: Form) -> Response:
    """POST /join {username, password, password2, csrf_token}: make the account, sign in, 303 to /."""
    _signup_allowed(request)
    auth = session.web_auth(request)
    username = form.get("username", "").strip()[:100]
    password = form.get("password", "")
    address = session.client_address(request)
    try:
        auth.limiter.check("", address)  # sign-ups count against the address like failed sign-ins
        if password != form.get("password2", ""):
            raise BadRequestError("The two passwords differ.")
        validate_name(username, "user name")
        if username.lower() in RESERVED_NAMES + WEB_WORDS:
            raise BadRequestError(f"{username} is a reserved name.")
        check_password_rules(password)
        hub = hub_of(request)
        if hub.meta.account(username) is not None:
            raise ConflictError("This user name is taken.")
        hub.add_user(username)
        auth.passwords.set_password(username, password)
    except (BadRequestError, ConflictError, NotFoundError, TooManyRequestsError) as exc:
        if not isinstance(exc, TooManyRequestsError):
            auth.limiter.failed("", address)
        return form_page(request, "join.html", {"title": "Sign up", "username": username, "error": exc.message},
                         status=exc.status)
    auth.limiter.failed("", address)  # each new account uses one of the address's attempts too
    response = redirect("/")
    session.sign_in(request, response, username)
    return response


def _signup_allowed(request: Request) -> None:
    if not session.web_auth(request).allow_signup:
        raise HubfsError("Sign-up is off on this hub: ask its admin for an account.", status=404)


def register(router: Router) -> None:
    router.add(["GET"], "/login", login_page)
    router.add(["POST"], "/login", form_route(login))
    router.add(["POST"], "/logout", form_route(logout))
    router.add(["GET"], "/join", join_page)
    router.add(["POST"], "/join", form_route(join))
