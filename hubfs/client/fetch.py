"""Bulk byte ranges: keep-alive ``http.client`` connections reading straight into their destination.

httpx parses bodies in Python (~0.35 GB/s here); ``HTTPResponse.readinto`` fills a preallocated
buffer, and ``HTTPResponse.read(n)`` a new ``bytes`` object, with the GIL released, so several
ranges fetched from threads run in parallel and no byte is copied twice. Redirects are
followed like :class:`~hubfs.client.http.Transport` does (no token across origins) and the final
URL (a CDN's signed URL, say) is reused for later ranges until it fails, then re-resolved.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from hubfs.client.http import RETRY_STATUS, Transport, origin
from hubfs.errors import HubConnectionError, HubfsError, OfflineModeError, error_for

_REDIRECTS = (301, 302, 303, 307, 308)
T = TypeVar("T")


class _Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes, method: str, url: str) -> None:
        self.status, self.headers, self.body, self.method, self.url = status, headers, body, method, url


class RangeFetcher:
    """Thread-safe: idle keep-alive connections are shared by every thread, per origin."""

    def __init__(self, transport: Transport, max_retries: int = 4, max_idle: int = 32, timeout: float = 60) -> None:
        self.transport = transport
        self.max_retries = max_retries
        self.max_idle = max_idle
        self.timeout = timeout  # seconds a connect, a send or a receive may stall
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._final: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _take(self, url: str) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to ``url``'s origin, and whether it was idle (the server may have closed it since)."""
        key = origin(url)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return self._take_new(url), False

    def _take_new(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else _KernelTimeoutConnection
        return cls(parts.hostname or "", parts.port, timeout=self.timeout)

    def _give_back(self, url: str, conn: http.client.HTTPConnection, *, fresh: bool = False) -> None:
        """Keep a connection for reuse; used ones are taken first (proven alive, their TCP window grown)."""
        with self._lock:
            idle = self._idle.setdefault(origin(url), [])
            if len(idle) < self.max_idle:
                if fresh:
                    idle.insert(0, conn)
                else:
                    idle.append(conn)
                return
        conn.close()

    def preconnect(self, url: str, count: int, pool: Executor) -> None:
        """Open connections to ``url``'s final origin in the background until ``count`` are idle, so that a
        burst of concurrent ranges expected soon (a strided prefetch) does not wait for handshakes."""
        target = self._target(url)
        with self._lock:
            missing = count - len(self._idle.get(origin(target), []))
        for _ in range(max(0, min(missing, self.max_idle))):
            pool.submit(self._open_idle, target)

    def _open_idle(self, url: str) -> None:
        conn = self._take_new(url)
        try:
            conn.connect()
        except OSError:
            conn.close()
            return
        self._give_back(url, conn, fresh=True)

    def fetch_into(self, url: str, start: int, buf: memoryview, headers: dict[str, str] | None = None) -> tuple[int, int]:
        """Fill ``buf`` with the bytes at ``start``; returns (bytes read, total file size or -1).

        Hub errors (not found, forbidden, ...) raise at once; dropped connections and 429/5xx answers
        are retried with backoff. ``headers``, when given, receives the final answer's headers.
        """
        if len(buf) == 0:
            return 0, -1

        def body(resp: http.client.HTTPResponse) -> int:
            got = 0
            while got < len(buf):
                n = resp.readinto(buf[got:])
                if not n:
                    break
                got += n
            return got

        got, total = self._with_retries(url, start, len(buf), body, headers)
        return got, total

    def fetch_pieces(self, url: str, start: int, length: int, piece: int) -> list[bytes]:
        """The ``length`` bytes at ``start`` as new ``bytes`` objects split at the file offsets that are
        multiples of ``piece``, each received straight into its own object: no copy on the way.

        Fewer bytes than asked (past the end of the file) come back as fewer or shorter pieces.
        """
        if length <= 0:
            return []

        def body(resp: http.client.HTTPResponse) -> list[bytes]:
            pieces = []
            pos, end = start, start + length
            while pos < end:
                data = resp.read(min(end, (pos // piece + 1) * piece) - pos)
                if not data:
                    break
                pieces.append(data)
                pos += len(data)
            return pieces

        return self._with_retries(url, start, length, body, None)[0]

    def fetch_edge(self, url: str, length: int, *, tail: bool, headers: dict[str, str] | None = None
                   ) -> tuple[bytes, int, int]:
        """The first (or, with ``tail``, the last) ``length`` bytes of a file, in one request whose answer
        also tells the size: (bytes, their offset in the file, total size). ``headers`` receives the
        headers of every answer on the way, redirects included (a CDN redirect carries the hub's)."""

        def body(resp: http.client.HTTPResponse) -> bytes:
            return resp.read()

        data, total = self._with_retries(url, -length if tail else 0, length, body, headers, pinned=False)
        total = total if total >= 0 else len(data)
        return data, (total - len(data) if tail else 0), total

    def _with_retries(self, url: str, start: int, length: int, body: Callable[[http.client.HTTPResponse], T],
                      headers: dict[str, str] | None, pinned: bool = True) -> tuple[T, int]:
        """``pinned``: ``url`` names one content (a commit's file), so where it redirected to may be reused."""
        if self.transport.config.offline:
            raise OfflineModeError(f"HF_HUB_OFFLINE is set: not fetching {url.split('?')[0]}.")
        for attempt in range(self.max_retries + 1):
            target = self._target(url) if pinned else url
            if headers is not None:
                headers.clear()  # only the answers of the attempt that succeeds
            try:
                return self._get(target, url, start, length, body, headers, pinned)
            except HubfsError as exc:
                if exc.status not in RETRY_STATUS or attempt == self.max_retries:
                    raise
                time.sleep(min(4.0, 0.2 * 2 ** attempt))
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self._final.pop(url, None)
                if attempt == self.max_retries:
                    raise HubConnectionError(f"GET {url} bytes {start}+{length} failed: {exc!r}") from exc
                time.sleep(min(4.0, 0.2 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _target(self, url: str) -> str:
        with self._lock:
            hit = self._final.get(url)
        return hit[0] if hit and hit[1] > time.monotonic() else url

    def _get(self, target: str, url: str, start: int, length: int, body: Callable[[http.client.HTTPResponse], T],
             headers_out: dict[str, str] | None, pinned: bool = True) -> tuple[T, int]:
        span = f"{start}-{start + length - 1}" if start >= 0 else str(start)  # start < 0: the last -start bytes
        current = target
        for _ in range(10):
            parts = urlsplit(current)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"Range": f"bytes={span}", "Accept-Encoding": "identity",
                       "User-Agent": self.transport.client.headers.get("user-agent", "hubfs"),
                       **self.transport._auth_headers(current)}
            conn, reused = self._take(current)
            try:
                resp = _exchange(conn, path, headers)
            except (OSError, http.client.HTTPException):
                if not reused:
                    raise
                conn = self._take_new(current)  # an idle connection the server closed: once more, on a new one
                resp = _exchange(conn, path, headers)
            reusable = True
            try:
                if headers_out is not None:
                    headers_out.update({k.lower(): v for k, v in resp.headers.items()})
                if resp.status in _REDIRECTS:
                    resp.read()
                    current = urljoin(current, resp.headers.get("location", ""))
                    continue
                if resp.status == 416:
                    resp.read()
                    return body(_EMPTY), -1
                if resp.status >= 400:
                    raise _error(resp.status, resp.headers, resp.read(), current)
                total = _total(resp.headers)
                if resp.status == 200:  # Range ignored: skip to start, and stop reading at the end
                    reusable = False
                    skip = start if start >= 0 else max(0, total + start)
                    while skip:
                        skipped = len(resp.read(min(skip, 1 << 20)))
                        if not skipped:
                            break
                        skip -= skipped
                    resp.length = min(resp.length, length) if resp.length is not None else length
                result = body(resp)
                if resp.length and resp.isclosed():  # the body ended or stalled early: not a short file
                    raise http.client.IncompleteRead(b"", resp.length)
                if not resp.isclosed():
                    reusable = False
                if current != url and pinned:
                    with self._lock:
                        self._final[url] = (current, time.monotonic() + 300)
                return result, total
            except BaseException:
                reusable = False
                raise
            finally:
                if reusable and not resp.will_close:
                    self._give_back(current, conn)
                else:
                    conn.close()
        raise HubfsError(f"Too many redirects for {url}.")


class _KernelTimeoutConnection(http.client.HTTPConnection):
    """Plain HTTP whose socket blocks with the timeout kept by the kernel (``SO_RCVTIMEO``/``SO_SNDTIMEO``):
    a Python-level timeout polls before every ``recv``, twice the system calls and GIL hand-offs on
    the bulk path (4% of a 1 GiB read, measured). A stall still fails, as ``BlockingIOError``."""

    def connect(self) -> None:
        super().connect()  # with the timeout, for the handshake
        assert self.sock is not None and self.timeout is not None
        whole = int(self.timeout)
        limit = struct.pack("ll", whole, int((self.timeout - whole) * 1e6))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        except OSError:  # a platform with another timeval layout: keep Python's timeout
            return
        self.sock.settimeout(None)


def _exchange(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """Send a GET and read the answer's head; the connection is closed if that fails."""
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse()
    except BaseException:
        conn.close()
        raise


class _Empty:
    """The body of a 416 answer, for the body readers."""

    def readinto(self, buf: memoryview) -> int:
        return 0

    def read(self, n: int = -1) -> bytes:
        return b""


_EMPTY: Any = _Empty()


def content_hash(headers: dict[str, str]) -> str:
    """The content hash a Hub answer names (lower-cased headers): ``X-Linked-Etag`` for LFS files, else
    ``ETag``, without ``W/`` and quotes."""
    return (headers.get("x-linked-etag") or headers.get("etag") or "").removeprefix("W/").strip('"')


def _total(headers: http.client.HTTPMessage) -> int:
    content_range = headers.get("content-range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else -1


def _error(status: int, headers: http.client.HTTPMessage, body: bytes, url: str) -> HubfsError:
    message = headers.get("x-error-message") or body.decode("utf-8", "replace").strip()[:500] or str(status)
    return error_for(status, headers.get("x-error-code"), f"{message} (GET {url.split('?')[0]} -> {status})")
