"""Bulk byte ranges: keep-alive ``http.client`` connections reading straight into caller buffers.

httpx parses bodies in Python (~0.35 GB/s here); ``HTTPResponse.readinto`` fills a preallocated
buffer with the GIL released, so several ranges fetched from threads run in parallel. Redirects are
followed like :class:`~hubfs.client.http.Transport` does (no token across origins) and the final
URL (a CDN's signed URL, say) is reused for later ranges until it fails, then re-resolved.
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urljoin, urlsplit

from hubfs.client.http import RETRY_STATUS, Transport, origin
from hubfs.errors import HubConnectionError, HubfsError, error_for

_REDIRECTS = (301, 302, 303, 307, 308)


class _Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes, method: str, url: str) -> None:
        self.status, self.headers, self.body, self.method, self.url = status, headers, body, method, url


class RangeFetcher:
    """Thread-safe: idle keep-alive connections are shared by every thread, per origin."""

    def __init__(self, transport: Transport, max_retries: int = 4, max_idle: int = 32) -> None:
        self.transport = transport
        self.max_retries = max_retries
        self.max_idle = max_idle
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._final: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _take(self, url: str) -> http.client.HTTPConnection:
        key = origin(url)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return cls(parts.hostname or "", parts.port, timeout=60)

    def _give_back(self, url: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin(url), [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def fetch_into(self, url: str, start: int, buf: memoryview, headers: dict[str, str] | None = None) -> tuple[int, int]:
        """Fill ``buf`` with the bytes at ``start``; returns (bytes read, total file size or -1).

        Hub errors (not found, forbidden, ...) raise at once; dropped connections and 429/5xx answers
        are retried with backoff. ``headers``, when given, receives the final answer's headers.
        """
        if len(buf) == 0:
            return 0, -1
        for attempt in range(self.max_retries + 1):
            target = self._target(url)
            try:
                return self._get(target, url, start, buf, headers)
            except HubfsError as exc:
                if exc.status not in RETRY_STATUS or attempt == self.max_retries:
                    raise
                time.sleep(min(4.0, 0.2 * 2 ** attempt))
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self._final.pop(url, None)
                if attempt == self.max_retries:
                    raise HubConnectionError(f"GET {url} bytes {start}+{len(buf)} failed: {exc!r}") from exc
                time.sleep(min(4.0, 0.2 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _target(self, url: str) -> str:
        with self._lock:
            hit = self._final.get(url)
        return hit[0] if hit and hit[1] > time.monotonic() else url

    def _get(self, target: str, url: str, start: int, buf: memoryview,
             headers_out: dict[str, str] | None) -> tuple[int, int]:
        end = start + len(buf) - 1
        current = target
        for _ in range(10):
            parts = urlsplit(current)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity",
                       "User-Agent": self.transport.client.headers.get("user-agent", "hubfs"),
                       **self.transport._auth_headers(current)}
            conn = self._take(current)
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            reusable = True
            try:
                if resp.status in _REDIRECTS:
                    resp.read()
                    current = urljoin(current, resp.headers.get("location", ""))
                    continue
                if resp.status == 416:
                    resp.read()
                    return 0, -1
                if resp.status >= 400:
                    body = resp.read()
                    raise _error(resp.status, resp.headers, body, current)
                total = _total(resp.headers)
                if headers_out is not None:
                    headers_out.update({k.lower(): v for k, v in resp.headers.items()})
                if resp.status == 200:  # Range ignored: skip to start
                    skip = start
                    while skip:
                        skip -= len(resp.read(min(skip, 1 << 20)))
                got = 0
                want = len(buf)
                while got < want:
                    n = resp.readinto(buf[got:])
                    if not n:
                        break
                    got += n
                if resp.status == 200 or got < want or not resp.isclosed():
                    reusable = False
                if current != url:
                    with self._lock:
                        self._final[url] = (current, time.monotonic() + 300)
                return got, total
            except BaseException:
                reusable = False
                raise
            finally:
                if reusable and not resp.will_close:
                    self._give_back(current, conn)
                else:
                    conn.close()
        raise HubfsError(f"Too many redirects for {url}.")


def _total(headers: http.client.HTTPMessage) -> int:
    content_range = headers.get("content-range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else -1


def _error(status: int, headers: http.client.HTTPMessage, body: bytes, url: str) -> HubfsError:
    message = headers.get("x-error-message") or body.decode("utf-8", "replace").strip()[:500] or str(status)
    return error_for(status, headers.get("x-error-code"), f"{message} (GET {url.split('?')[0]} -> {status})")
