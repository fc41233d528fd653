"""The transport policy: the decisions about an answer, written once for metadata and bytes alike.

Both :class:`~hubfs.client.http.Transport` (httpx, metadata) and
:class:`~hubfs.client.fetch.RangeFetcher` (bulk byte ranges) ask this module:

- **retries**: 408, 429 and 5xx answers and dropped connections are tried again, up to
  ``RetryPolicy.tries`` attempts in all. The wait honours ``Retry-After`` (seconds or an HTTP date),
  ``RateLimit: "api";r=0;t=N`` and ``RateLimit-Reset: N``, capped at ``max_wait``; without them it is
  an exponential back-off with jitter, capped at ``cap``. Giving up raises an error naming the URL
  (never its query, which may be signed, and never a token) and the number of tries.
- **redirects** are followed by hand; a token goes only to the hub's own origin, and an
  ``Authorization`` header a caller set is dropped when a redirect crosses origins.
- **errors**: every error answer becomes a :mod:`hubfs.errors` exception (``error_for``) carrying the
  server's message.
- **environment**: proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and CA
  certificates (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_DIR``).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from hubfs.config import ca_locations
from hubfs.errors import HubConnectionError, HubfsError, error_for

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
# A dropped, refused or stalled connection, from httpx or http.client. Note that every HubfsError that
# derives from OSError (FileNotFoundError, ...) is an answer, not a drop: callers test it first.
DROPPED: tuple[type[BaseException], ...] = (httpx.TransportError, OSError, http.client.HTTPException)
_RATELIMIT_T = re.compile(r"\bt=(\d+)")
T = TypeVar("T")


# -- URLs and origins ------------------------------------------------------------------------------


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname or "", port


def safe_url(url: str) -> str:
    """``url`` fit for a message or a log: no user info, no query (a signed URL's secret), no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def sends_token(url: str, endpoint: str) -> bool:
    """Whether the hub's token may go to ``url``: only to the hub's own origin (never to a CDN)."""
    return origin(url) == origin(endpoint)


@dataclass(frozen=True)
class Hop:
    """Where a redirect leads: the next URL and method, whether the body goes along, whether it
    crosses origins (then any caller-set ``Authorization`` is dropped)."""

    url: str
    method: str
    keeps_body: bool
    cross_origin: bool


def redirect_target(url: str, status: int, location: str | None, method: str) -> Hop | None:
    """The hop an answer asks for, or None when it is not a redirect."""
    if status not in REDIRECTS or not location:
        return None
    target = urljoin(url, location)
    to_get = status == 303 or (status in (301, 302) and method not in ("GET", "HEAD"))
    return Hop(target, "GET" if to_get else method, not to_get, origin(target) != origin(url))


def without_auth(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` less any ``Authorization`` (for a hop to another origin)."""
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


# -- errors ----------------------------------------------------------------------------------------


def answer_error(status: int, headers: Mapping[str, str], body: bytes, method: str, url: str) -> HubfsError:
    """The exception for an error answer: its ``X-Error-Code``, and the message from ``X-Error-Message``,
    a JSON ``error`` field or a short non-HTML body, else the status phrase; the URL without its query."""
    message = headers.get("x-error-message", "")
    if "json" in headers.get("content-type", ""):
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str) and len(parsed["error"]) >= len(message):
            message = parsed["error"]
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = text[:500] if text and "<html" not in text.lower() else _phrase(status)
    return error_for(status, headers.get("x-error-code"), f"{message} ({method} {safe_url(url)} -> {status})")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


class RetryableAnswer(Exception):
    """An answer worth another try (429, 5xx): its error, and its headers for the wait."""

    def __init__(self, error: HubfsError, headers: Mapping[str, str]) -> None:
        super().__init__(str(error))
        self.error, self.headers = error, headers


def gave_up(error: HubfsError, tries: int) -> HubfsError:
    """``error`` (of the same class) saying how many tries were made; unchanged after a single try."""
    if tries <= 1:
        return error
    return type(error)(f"{error.message}; gave up after {tries} tries", status=error.status)


# -- retries ---------------------------------------------------------------------------------------


def server_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked to wait: ``Retry-After`` (seconds or an HTTP date, ``now`` being the
    wall clock), else the ``RateLimit`` header's ``t=``, else ``RateLimit-Reset``; None when none."""
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return float(retry_after)
    if retry_after:
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass
    limit = _RATELIMIT_T.search(headers.get("ratelimit", ""))
    if limit:
        return float(limit.group(1))
    reset = headers.get("ratelimit-reset", "").strip()
    return float(reset) if reset.isdigit() else None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``sleep``, ``clock`` (wall clock, for HTTP dates) and ``random``
    (in [0, 1), for jitter) may be replaced, so tests run without waiting."""

    tries: int = 6
    base: float = 0.25  # the first back-off, doubled at each try
    cap: float = 8.0  # the longest back-off chosen by us
    max_wait: float = 60.0  # the longest wait asked by a server that we honour
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.time, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    @staticmethod
    def should_retry(status: int) -> bool:
        """Whether an answer with this status is worth another try."""
        return status in RETRY_STATUS

    def delay_for(self, attempt: int, headers: Mapping[str, str] | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (0 for the first): the server's wait
        (plus up to 10%), capped at ``max_wait``, else ``base * 2**attempt`` capped at ``cap``, jittered
        between half and all of it."""
        asked = server_wait(headers, self.clock()) if headers is not None else None
        if asked is not None:
            return min(self.max_wait, asked * (1 + 0.1 * self.random()))
        return min(self.cap, self.base * 2 ** attempt) * (0.5 + 0.5 * self.random())

    def run(self, attempt: Callable[[], T], what: str) -> T:
        """``attempt()`` until it returns. A :class:`RetryableAnswer` or a dropped connection is tried again
        after :meth:`delay_for`; other errors propagate at once. After ``tries`` tries the answer's error
        (or a :class:`HubConnectionError`) says so, naming ``what`` (a method and a safe URL)."""
        for tried in range(1, max(1, self.tries) + 1):
            try:
                return attempt()
            except HubfsError:
                raise
            except RetryableAnswer as answer:
                if tried >= self.tries:
                    raise gave_up(answer.error, tried) from None
                wait = self.delay_for(tried - 1, answer.headers)
            except DROPPED as exc:
                if tried >= self.tries:
                    raise HubConnectionError(f"{what} failed after {tried} tries: {exc!r}") from exc
                wait = self.delay_for(tried - 1)
            self.sleep(wait)
        raise AssertionError("unreachable")


# -- environment -----------------------------------------------------------------------------------


def env_proxies() -> dict[str, str]:
    """The proxies the environment names (``urllib.request.getproxies``), ``no`` holding ``NO_PROXY``."""
    return dict(urllib.request.getproxies())


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy ``url`` must go through, or None (no proxy for its scheme, or ``NO_PROXY`` matches)."""
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # public, not in typeshed
    return None if bypass(host, dict(proxies)) else proxy


def tls_context() -> ssl.SSLContext:
    """The TLS settings of every https connection: the CA certificates from ``SSL_CERT_FILE`` /
    ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_DIR`` when set, else certifi's (as httpx uses). Loading them
    takes 20-50 ms: a client made to stand in for another (a forked download's) takes that one's
    (``HubClient(..., tls=...)``)."""
    cafile, capath = ca_locations()
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
