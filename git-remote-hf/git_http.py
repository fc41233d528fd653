"""dulwich's smart-HTTP git client over :class:`hubfs.client.http.Transport` (no second HTTP stack).

The transport adds the token (only for the hub's origin), retries and error mapping: a 401, 404 or
5xx answer raises the matching :mod:`hubfs.errors` exception. A body that breaks off mid-stream raises
:class:`~hubfs.errors.HubConnectionError`. The last ref advertisement is kept and answers the next
discovery of the same service once, so ``list`` followed by ``fetch`` (or ``list for-push`` then
``push``) costs one advertisement, as in git's own remote-curl.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
from dulwich.client import AbstractHttpGitClient

from hubfs.client.http import Body, Transport
from hubfs.errors import HubConnectionError

__all__ = ["HubGitClient"]

_CHUNK = 1 << 16


class _Response:
    """The bits of a urllib3 response dulwich reads: content type, redirect location, close()."""

    def __init__(self, resp: httpx.Response, url: str) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = resp.headers
        self.content_type: str | None = resp.headers.get("content-type")
        final = str(resp.url)
        self.redirect_location = final if final != url else ""

    def close(self) -> None:
        self._resp.close()


class _Reader:
    """``read(n)``: exactly n bytes of a streamed body, fewer only at its end (as urllib3's read)."""

    def __init__(self, resp: httpx.Response, url: str) -> None:
        self._chunks = resp.iter_bytes(_CHUNK)
        self._buf = bytearray()
        self._eof = False
        self._url = url

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                self._eof = True
            except httpx.HTTPError as exc:
                raise HubConnectionError(f"The connection to the hub broke while reading {self._url}: {exc}") from exc
        if n < 0 or n >= len(self._buf):
            out, self._buf = bytes(self._buf), bytearray()
            return out
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class HubGitClient(AbstractHttpGitClient):
    """A dulwich HTTP git client for one repository URL whose requests go through ``transport``."""

    def __init__(self, transport: Transport, git_url: str, *, thin_packs: bool = True, quiet: bool = True) -> None:
        super().__init__(git_url, thin_packs=thin_packs, quiet=quiet)
        self._transport = transport
        self._memo: dict[tuple[bytes, str], Any] = {}
        self.fetch_protocol = 0

    def _http_request(self, url: str, headers: dict[str, str] | None = None,
                      data: bytes | Iterator[bytes] | None = None,
                      raise_for_status: bool = True) -> tuple[Any, Callable[[int], bytes]]:
        """GET (no data) or POST ``url``; errors as hubfs exceptions (``raise_for_status`` is always on)."""
        method = "GET" if data is None else "POST"
        # a ref advertisement or a fetch may be sent again; a push never (it may have landed before the error)
        replayable = data is None or (isinstance(data, bytes) and not url.endswith("/git-receive-pack"))
        content: Body
        if data is None or isinstance(data, bytes):
            content = data
        else:
            chunks = data
            content = lambda: chunks
        hdrs = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        hdrs["Pragma"] = "no-cache"
        try:
            resp = self._transport.request(method, url, headers=hdrs, content=content, stream=True, retry=replayable)
        except httpx.HTTPError as exc:
            raise HubConnectionError(f"Could not reach the hub for {url}: {exc}") from exc
        return _Response(resp, url), _Reader(resp, url).read

    def _discover_references(self, service: bytes, base_url: str, protocol_version: int | None = None,
                             ref_prefix: Sequence[bytes] | None = None) -> Any:
        """dulwich's discovery, answered once from the previous advertisement of the same service."""
        key = (service, base_url)
        if key in self._memo:
            result, self.protocol_version = self._memo.pop(key)
            return result
        result = super()._discover_references(service, base_url, protocol_version, ref_prefix)
        return result

    def remember(self, service: bytes, result: Any) -> None:
        """Keep ``result`` (of :meth:`discover`) to answer the next discovery of ``service`` once."""
        self._memo[(service, self._get_url(""))] = (result, self.protocol_version)

    def discover(self, service: bytes) -> Any:
        """(refs, capabilities, url, symrefs, peeled) of the repository for ``service``; remembered once.

        Protocol v0: its advertisement carries the refs in the first answer (v2 needs a second request,
        ``ls-refs``), so a no-op fetch costs one request and a clone two.
        """
        result = super()._discover_references(service, self._get_url(""), protocol_version=self.fetch_protocol)
        self.remember(service, result)
        return result
