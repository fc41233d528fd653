"""Browser sessions, CSRF tokens and login rate limits of the web pages.

- A session is a row of ``web_sessions`` (hub.sqlite) named by a random id; the browser holds
  ``id.HMAC(id)`` in the ``hubfs_session`` cookie (HttpOnly, SameSite=Lax, Secure over https), signed
  with a key derived from the hub's secret. Sign-out deletes the row; a password change ends them all.
- CSRF: a form carries ``csrf_token``: HMAC of the session id when signed in, else of a random
  ``hubfs_csrf`` cookie (double submit). :func:`check_csrf` refuses a POST without a valid one (403).
- Failed sign-ins are limited per user name and per client address (:class:`LoginLimiter`, bounded).

Web sessions authenticate web pages only: API routes keep reading the Authorization header, so a
cookie never authorises a cross-site API call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import CsrfError, TooManyRequestsError
from hubfs.server.db import open_db
from hubfs.server.hub import Caller, Hub
from hubfs.server.web.passwords import SCHEMA as PASSWORD_SCHEMA
from hubfs.server.web.passwords import PasswordStore

SESSION_COOKIE = "hubfs_session"
CSRF_COOKIE = "hubfs_csrf"
CSRF_FIELD = "csrf_token"
SESSION_TTL = 14 * 24 * 3600
SCHEMA = PASSWORD_SCHEMA + """
CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, epoch INTEGER NOT NULL, created_at REAL NOT NULL,
    expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS web_sessions_by_user ON web_sessions (user);
"""


@dataclass
class LoginLimiter:
    """At most ``per_user`` failed sign-ins per user name and ``per_address`` per client address in
    ``window`` seconds. Keeps at most ``max_keys`` keys (oldest dropped): bounded memory."""

    per_user: int = 5
    per_address: int = 20
    window: float = 300.0
    max_keys: int = 10_000
    _fails: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, user: str, address: str) -> None:
        """Raise 429 when either key is over its limit (``user`` "": the address only)."""
        now = time.monotonic()
        with self._lock:
            for key, limit in self._keys(user, address):
                if len(self._recent(key, now)) >= limit:
                    raise TooManyRequestsError(
                        f"Too many failed sign-ins; try again in {int(self.window // 60) or 1} minutes.")

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key, _ in self._keys(user, address):
                times = self._recent(key, now)
                times.append(now)
                self._fails[key] = times
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(f"u:{user.lower()}", None)

    def _keys(self, user: str, address: str) -> list[tuple[str, int]]:
        keys = [(f"a:{address}", self.per_address)]
        return keys + [(f"u:{user.lower()}", self.per_user)] if user else keys

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._fails.get(key) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            self._fails.pop(key, None)
        return times


class WebAuth:
    """One hub's web sign-in state: passwords, sessions, the login limiter and the sign-up switch.

    Lives in the app state (``hubfs.web.auth``); built once per app."""

    def __init__(self, hub: Hub, *, allow_signup: bool = False, limiter: LoginLimiter | None = None) -> None:
        self.hub = hub
        self._db = open_db(hub.db, SCHEMA)
        self.passwords = PasswordStore(hub.db)
        self.allow_signup = allow_signup
        self.limiter = limiter or LoginLimiter()
        self._session_key = hub.derive_key("web-session")
        self._csrf_key = hub.derive_key("web-csrf")

    # -- sessions ------------------------------------------------------------------------------

    def new_session(self, user: str) -> str:
        """Start a session for ``user`` (who has a password); returns the cookie value."""
        sid = secrets.token_urlsafe(32)
        epoch = self.passwords.epoch(user) or 0
        now = time.time()
        with self._db.tx() as db:
            db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
            db.execute("INSERT INTO web_sessions VALUES (?,?,?,?,?)",
                       (_hash(sid), user, epoch, now, now + SESSION_TTL))
        return f"{sid}.{self._mac(self._session_key, sid)}"

    def session_of(self, cookie: str | None) -> tuple[str, str] | None:
        """(user, session id) for a valid, unexpired cookie whose user still exists; else None."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 200:
            return None
        sid, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(self._session_key, sid)):
            return None
        rows = self._db.query(
            "SELECT s.user AS user FROM web_sessions s JOIN web_passwords p ON p.user = s.user "
            "JOIN accounts a ON a.name = s.user "
            "WHERE s.id_hash=? AND s.expires_at > ? AND s.epoch = p.epoch AND a.is_org = 0",
            (_hash(sid), time.time()))
        return (rows[0]["user"], sid) if rows else None

    def end_session(self, sid: str) -> None:
        with self._db.tx() as db:
            db.execute("DELETE FROM web_sessions WHERE id_hash=?", (_hash(sid),))

    def csrf_mac(self, text: str) -> str:
        """A CSRF token for ``text`` (a session id or a CSRF cookie value, tagged)."""
        return self._mac(self._csrf_key, text)

    def _mac(self, key: bytes, text: str) -> str:
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def web_auth(request: Request) -> WebAuth:
    """The app's :class:`WebAuth` (``create_app`` puts it in the app state)."""
    auth = request.scope.get("hubfs.web.auth")
    if auth is None:
        raise RuntimeError("the app state has no hubfs.web.auth (see hubfs.server.app.create_app)")
    return auth  # type: ignore[no-any-return]


def _session(request: Request) -> tuple[str, str] | None:
    if "hubfs.web.session" not in request.scope:
        auth = request.scope.get("hubfs.web.auth")
        found = auth.session_of(request.cookies.get(SESSION_COOKIE)) if auth is not None else None
        request.scope["hubfs.web.session"] = found
    return request.scope["hubfs.web.session"]  # type: ignore[no-any-return]


def request_user(request: Request) -> Caller | None:
    """The signed-in browser user as a write :class:`Caller` (None: anonymous), from the session cookie.

    Cached on the request. Pages pass this caller to the same ``Hub`` checks the API uses."""
    found = _session(request)
    if found is None:
        return None
    return Caller(found[0], "write", None)


# -- cookies -------------------------------------------------------------------------------------


def is_https(request: Request) -> bool:
    """True when the browser reached the hub over https (directly, or per ``--public-url``)."""
    hub = request.scope.get("hubfs.hub")
    public = getattr(hub, "public_url", None) or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=is_https(request))


def sign_in(request: Request, response: Response, user: str) -> None:
    """Start a session for ``user`` and put its cookie on ``response``."""
    set_cookie(request, response, SESSION_COOKIE, web_auth(request).new_session(user), SESSION_TTL)


def sign_out(request: Request, response: Response) -> None:
    found = _session(request)
    if found is not None:
        web_auth(request).end_session(found[1])
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))


# -- CSRF ----------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The token every form of this page carries in the hidden ``csrf_token`` field.

    Signed in: bound to the session. Anonymous: bound to the ``hubfs_csrf`` cookie, made here when
    missing (call :func:`attach_cookies` on the response)."""
    auth = web_auth(request)
    found = _session(request)
    if found is not None:
        return auth.csrf_mac("s|" + found[1])
    value = request.cookies.get(CSRF_COOKIE) or request.scope.get("hubfs.web.new_csrf")
    if not value or len(value) > 100:
        value = secrets.token_urlsafe(24)
        request.scope["hubfs.web.new_csrf"] = value
    return auth.csrf_mac("a|" + value)


def attach_cookies(request: Request, response: Response) -> Response:
    """Set the CSRF cookie that :func:`csrf_token` made for this page, if any; returns ``response``."""
    value = request.scope.get("hubfs.web.new_csrf")
    if value:
        set_cookie(request, response, CSRF_COOKIE, value, None)
    return response


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise :class:`CsrfError` (403) unless ``submitted`` is this browser's current CSRF token."""
    auth = web_auth(request)
    found = _session(request)
    if found is not None:
        expected = auth.csrf_mac("s|" + found[1])
    else:
        value = request.cookies.get(CSRF_COOKIE)
        expected = auth.csrf_mac("a|" + value) if value else ""
    if not submitted or not expected or not hmac.compare_digest(submitted, expected):
        raise CsrfError("This form has expired or did not come from this site (missing or invalid CSRF token). "
                        "Reload the page and try again.")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
