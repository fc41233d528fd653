"""HTTP transport: one httpx connection pool, auth, retries and redirects the way the Hub needs.

- Retries with exponential backoff on 408/429/5xx and on dropped connections, honouring
  ``Retry-After`` (seconds) and the ``RateLimit: "api";r=0;t=N`` header.
- Redirects are followed by hand: relative and same-origin hops keep the Authorization header,
  cross-origin hops (a CDN) drop it, and so are never sent a token.
- Every error answer becomes a :mod:`hubfs.errors` exception carrying the server's message.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from hubfs import __version__
from hubfs.config import HubConfig
from hubfs.errors import HubConnectionError, HubfsError, OfflineModeError, error_for

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_RATELIMIT_T = re.compile(r"\bt=(\d+)")

Body = bytes | Callable[[], Iterator[bytes]] | None


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname or "", port


def error_from_response(resp: httpx.Response) -> HubfsError:
    """The exception for an error answer: X-Error-Code, then the message from headers or JSON body."""
    message = resp.headers.get("x-error-message", "")
    try:
        body = json.loads(resp.read() or b"{}") if "json" in resp.headers.get("content-type", "") else {}
    except (ValueError, httpx.HTTPError):
        body = {}
    if isinstance(body, dict) and isinstance(body.get("error"), str) and len(body["error"]) >= len(message):
        message = body["error"]
    if not message:
        text = resp.text if not resp.is_stream_consumed or resp.content else ""
        message = text.strip()[:500] if text and "<html" not in text.lower() else resp.reason_phrase
    return error_for(resp.status_code, resp.headers.get("x-error-code"),
                     f"{message} ({resp.request.method} {resp.request.url.copy_with(query=None)} -> {resp.status_code})")


class Transport:
    """Sends requests to one hub with its token; the only place hubfs touches the network."""

    def __init__(self, config: HubConfig, *, max_retries: int = 5, timeout: float = 60.0,
                 pool_size: int = 64) -> None:
        self.config = config
        self.max_retries = max_retries
        self._origin = origin(config.endpoint)
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            headers={"user-agent": f"hubfs/{__version__}"},
            follow_redirects=False,
        )

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.config.endpoint + path

    def _auth_headers(self, url: str) -> dict[str, str]:
        if self.config.token and origin(url) == self._origin:
            return {"authorization": f"Bearer {self.config.token}"}
        return {}

    def request(self, method: str, path: str, *, params: Any = None, headers: dict[str, str] | None = None,
                content: Body = None, json_body: Any = None, stream: bool = False, auth: bool = True,
                retry: bool = True) -> httpx.Response:
        """Send with retries and manual redirects; raise a hubfs error for 4xx/5xx answers.

        ``content`` may be a zero-argument callable returning a fresh iterator of chunks, so a
        streamed upload can be replayed on retry. With ``stream=True`` the caller must close the
        response.
        """
        if self.config.offline:
            raise OfflineModeError(f"HF_HUB_OFFLINE is set: not sending {method} {path}.")
        url = self.url(path)
        attempt = 0
        while True:
            try:
                resp = self._send_following(method, url, params, headers or {}, content, json_body, stream, auth)
            except httpx.TransportError as exc:
                if not retry or attempt >= self.max_retries:
                    raise HubConnectionError(f"{method} {url} failed: {exc!r}") from exc
                self._sleep(attempt, None)
                attempt += 1
                continue
            if resp.status_code in RETRY_STATUS and retry and attempt < self.max_retries:
                wait = _server_wait(resp)
                resp.close()
                self._sleep(attempt, wait)
                attempt += 1
                continue
            if resp.status_code >= 400:
                try:
                    raise error_from_response(resp)
                finally:
                    resp.close()
            return resp

    def _send_following(self, method: str, url: str, params: Any, headers: dict[str, str], content: Body,
                        json_body: Any, stream: bool, auth: bool) -> httpx.Response:
        for _ in range(10):
            hdrs = {**(self._auth_headers(url) if auth else {}), **headers}
            body = content() if callable(content) else content
            req = self.client.build_request(method, url, params=params, headers=hdrs, content=body, json=json_body)
            resp = self.client.send(req, stream=stream)
            if resp.status_code not in (301, 302, 303, 307, 308) or "location" not in resp.headers:
                return resp
            resp.close()
            url = urljoin(str(resp.request.url), resp.headers["location"])
            params = None
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method not in ("GET", "HEAD")):
                method, content, json_body = "GET", None, None
        raise HubfsError(f"Too many redirects for {url}.")

    @staticmethod
    def _sleep(attempt: int, server_wait: float | None) -> None:
        delay = server_wait if server_wait is not None else min(8.0, 0.25 * 2 ** attempt)
        time.sleep(delay + random.uniform(0, 0.1))

    def close(self) -> None:
        self.client.close()


def _server_wait(resp: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (Retry-After, or the RateLimit header's t=)."""
    retry_after = resp.headers.get("retry-after", "")
    if retry_after.isdigit():
        return float(retry_after)
    limit = _RATELIMIT_T.search(resp.headers.get("ratelimit", ""))
    return float(limit.group(1)) if limit else None
