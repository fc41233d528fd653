"""Git smart HTTP through hubfs's one :class:`~hubfs.client.http.Transport`: a dulwich HTTP git client
whose requests are the Transport's (its token, origin rule, retries, redirects, proxies, CA certificates
and error mapping), so git traffic needs no second HTTP stack.

``GitWire(transport).fetch(repo_url_path, target, wants)`` and ``.send_pack(...)`` are dulwich's own
``fetch``/``send_pack``; :func:`git_path` names a repo's git URL path (``datasets/ns/name.git``).
A connection dropped in the middle of an answer raises :class:`~hubfs.errors.HubConnectionError`; an
error answer raises the Transport's hubfs error (``RepoNotFoundError``, ``AuthenticationError``, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from dulwich.client import AbstractHttpGitClient
from dulwich.errors import GitProtocolError, HangupException, SendPackError

from hubfs.client.http import Transport
from hubfs.client.policy import safe_url
from hubfs.errors import HubConnectionError, HubfsError
from hubfs.paths import RepoType

__all__ = ["GitWire", "git_errors", "git_path"]


def git_path(repo_type: str, repo_id: str) -> str:
    """The git URL path of a repo relative to its endpoint: ``ns/name.git``, ``datasets/ns/name.git``."""
    return f"{RepoType.parse(repo_type).url_prefix}{repo_id}.git"


@contextlib.contextmanager
def git_errors(what: str) -> Iterator[None]:
    """Re-raise dulwich's errors as hubfs errors: the Transport's own error when it caused one (dulwich
    wraps I/O errors in ``GitProtocolError``), else a :class:`HubfsError` starting with ``what``."""
    try:
        yield
    except HubfsError:
        raise
    except (GitProtocolError, HangupException, SendPackError, OSError) as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, HubfsError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, HubfsError):
            raise cause from exc
        raise HubfsError(f"{what} failed: {exc}") from exc


class _Answer:
    """What dulwich reads of an answer (urllib3's shape): status, headers, content_type, redirect_location."""

    def __init__(self, resp: httpx.Response, asked: str) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = resp.headers
        self.content_type = resp.headers.get("content-type")
        final = str(resp.url)
        self.redirect_location = final if final != asked else ""

    def close(self) -> None:
        self._resp.close()


class _Reader:
    """``read(n)``: exactly ``n`` bytes of a streamed body (fewer only at its end), counting them."""

    def __init__(self, resp: httpx.Response, wire: GitWire) -> None:
        self._chunks = resp.iter_bytes(1 << 16)
        self._buf = bytearray()
        self._url = safe_url(str(resp.url))
        self._wire = wire

    def __call__(self, n: int = -1) -> bytes:
        try:
            while n < 0 or len(self._buf) < n:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buf += chunk
                self._wire.bytes_received += len(chunk)
        except httpx.HTTPError as exc:
            raise HubConnectionError(f"The connection to {self._url} broke during a git transfer ({exc}); "
                                     "run the command again: it resumes.") from exc
        n = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class GitWire(AbstractHttpGitClient):
    """A dulwich git client over ``transport`` (whose endpoint is the base URL). Not thread-safe: one
    fetch or push at a time. ``requests`` and ``bytes_received`` count what it sent and got."""

    def __init__(self, transport: Transport, base_url: str | None = None, **kwargs: Any) -> None:
        """``base_url``: the URL paths are relative to (default: the endpoint; a repo's git URL also works)."""
        kwargs.setdefault("quiet", True)
        super().__init__(base_url or transport.config.endpoint + "/", **kwargs)
        self.transport = transport
        self.requests = 0
        self.bytes_received = 0

    def _http_request(self, url: str, headers: dict[str, str] | None = None,
                      data: bytes | Iterator[bytes] | None = None,
                      raise_for_status: bool = True) -> tuple[Any, Callable[[int], bytes]]:
        """GET (no data) or POST ``url`` through the Transport (which alone adds the token: an
        ``Authorization`` dulwich derived from the URL is dropped); errors as hubfs exceptions."""
        self.requests += 1
        hdrs = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        hdrs["Pragma"] = "no-cache"
        try:
            if data is None:
                resp = self.transport.request("GET", url, headers=hdrs, stream=True)
            elif isinstance(data, bytes):
                resp = self.transport.request("POST", url, headers=hdrs, content=data, stream=True)
            else:  # a streamed push body cannot be replayed: one try
                body = iter(data)
                resp = self.transport.request("POST", url, headers=hdrs, content=lambda: body, stream=True,
                                              retry=False)
        except httpx.HTTPError as exc:
            raise HubConnectionError(f"Could not reach the hub for {safe_url(url)}: {exc}") from exc
        return _Answer(resp, url), _Reader(resp, self)
