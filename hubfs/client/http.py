"""HTTP transport: one httpx connection pool and the hub's token, under the one transport policy.

Retries, redirects, tokens across origins and error mapping are decided by :mod:`hubfs.client.policy`,
the same decisions the bulk byte path (:mod:`hubfs.client.fetch`) takes. Proxies from the environment
and the CA certificates of :func:`~hubfs.client.policy.tls_context` apply. An injected
``httpx.BaseTransport`` (``httpx.MockTransport`` in tests) replaces the network for metadata and bytes.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from hubfs import __version__
from hubfs.client.policy import (
    MAX_REDIRECTS,
    RETRY_STATUS,
    RetryableAnswer,
    RetryPolicy,
    answer_error,
    env_proxies,
    origin,
    redirect_target,
    safe_url,
    sends_token,
    tls_context,
    without_auth,
)
from hubfs.config import HubConfig
from hubfs.errors import HubfsError, OfflineModeError

__all__ = ["RETRY_STATUS", "Body", "Transport", "error_from_response", "origin"]

Body = bytes | Callable[[], Iterator[bytes]] | None


def error_from_response(resp: httpx.Response) -> HubfsError:
    """The exception for an error answer (see :func:`~hubfs.client.policy.answer_error`)."""
    try:
        body = resp.read()
    except httpx.HTTPError:
        body = b""
    return answer_error(resp.status_code, resp.headers, body, resp.request.method, str(resp.request.url))


class Transport:
    """Sends requests to one hub with its token; every hubfs request goes through it or its policy.

    ``http_transport`` replaces the network (tests); ``retry`` the retry policy (``max_retries`` + 1
    tries by default); ``tls`` the TLS settings (:func:`~hubfs.client.policy.tls_context` by default).
    """

    def __init__(self, config: HubConfig, *, max_retries: int = 5, timeout: float = 60.0,
                 pool_size: int = 64, http_transport: httpx.BaseTransport | None = None,
                 retry: RetryPolicy | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.retry = retry or RetryPolicy(tries=max_retries + 1)
        self.injected = http_transport is not None
        self.tls = tls or tls_context()
        self.proxies = {} if self.injected else env_proxies()
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            headers={"user-agent": f"hubfs/{__version__}"},
            follow_redirects=False,
            verify=self.tls,
            transport=http_transport,
        )

    @property
    def max_retries(self) -> int:
        return self.retry.tries - 1

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.config.endpoint + path

    def auth_headers(self, url: str) -> dict[str, str]:
        """The Authorization header for ``url``: only to the hub's own origin."""
        if self.config.token and sends_token(url, self.config.endpoint):
            return {"authorization": f"Bearer {self.config.token}"}
        return {}

    _auth_headers = auth_headers

    def check_online(self, method: str, url: str) -> None:
        """Raise :class:`OfflineModeError` (nothing is sent) when ``HF_HUB_OFFLINE`` is set."""
        if self.config.offline:
            raise OfflineModeError(f"HF_HUB_OFFLINE is set: not sending {method} {safe_url(url)}.")

    def request(self, method: str, path: str, *, params: Any = None, headers: dict[str, str] | None = None,
                content: Body = None, json_body: Any = None, stream: bool = False, auth: bool = True,
                retry: bool = True) -> httpx.Response:
        """Send with retries and manual redirects; raise a hubfs error for 4xx/5xx answers.

        ``content`` may be a zero-argument callable returning a fresh iterator of chunks, so a
        streamed upload can be replayed on retry. With ``stream=True`` the caller must close the
        response.
        """
        url = self.url(path)
        self.check_online(method, url)
        policy = self.retry if retry else dataclasses.replace(self.retry, tries=1)

        def attempt() -> httpx.Response:
            resp = self._send_following(method, url, params, headers or {}, content, json_body, stream, auth)
            if resp.status_code < 400:
                return resp
            try:
                error = error_from_response(resp)
                if policy.should_retry(resp.status_code):
                    raise RetryableAnswer(error, dict(resp.headers))
                raise error
            finally:
                resp.close()

        return policy.run(attempt, f"{method} {safe_url(url)}")

    def _send_following(self, method: str, url: str, params: Any, headers: dict[str, str], content: Body,
                        json_body: Any, stream: bool, auth: bool) -> httpx.Response:
        for _ in range(MAX_REDIRECTS):
            hdrs = {**(self.auth_headers(url) if auth else {}), **headers}
            body = content() if callable(content) else content
            req = self.client.build_request(method, url, params=params, headers=hdrs, content=body, json=json_body)
            resp = self.client.send(req, stream=stream)
            hop = redirect_target(str(resp.request.url), resp.status_code, resp.headers.get("location"), method)
            if hop is None:
                return resp
            resp.close()
            url, method, params = hop.url, hop.method, None
            if not hop.keeps_body:
                content, json_body = None, None
            if hop.cross_origin:
                headers = without_auth(headers)
        raise HubfsError(f"Too many redirects for {safe_url(url)}.")

    def close(self) -> None:
        self.client.close()
