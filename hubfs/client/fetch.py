"""Bulk byte ranges: keep-alive ``http.client`` connections reading straight into their destination.

httpx parses bodies in Python (~0.35 GB/s here); ``HTTPResponse.readinto`` fills a preallocated
buffer, and ``HTTPResponse.read(n)`` a new ``bytes`` object, with the GIL released, so several
ranges fetched from threads run in parallel and no byte is copied twice. Retries, redirects (no
token across origins) and errors follow :mod:`hubfs.client.policy`, as metadata does, and the final
URL (a CDN's signed URL, say) is reused for later ranges until it fails, then re-resolved.
:meth:`RangeFetcher.post_stream` reads a POST's streamed answer the same way (hubfs's LFS streams).

A URL that a proxy from the environment applies to, and every URL when the transport has an injected
httpx transport (tests), goes through the transport's httpx client instead, streamed the same way.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from hubfs.client.http import Transport
from hubfs.client.policy import (
    DROPPED,
    MAX_REDIRECTS,
    RetryableAnswer,
    answer_error,
    origin,
    proxy_for,
    redirect_target,
    safe_url,
)
from hubfs.errors import HubfsError

T = TypeVar("T")


class RangeFetcher:
    """Thread-safe: idle keep-alive connections are shared by every thread, per origin."""

    def __init__(self, transport: Transport, max_retries: int | None = None, max_idle: int = 32,
                 timeout: float = 60) -> None:
        """``max_retries``: tries beyond the first (default: the transport's retry policy)."""
        self.transport = transport
        self.retry = (transport.retry if max_retries is None
                      else dataclasses.replace(transport.retry, tries=max_retries + 1))
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
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=self.timeout,
                                               context=self.transport.tls)
        return _KernelTimeoutConnection(parts.hostname or "", parts.port, timeout=self.timeout)

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

    def idle_connections(self) -> int:
        """How many keep-alive connections wait for reuse (all origins)."""
        with self._lock:
            return sum(len(conns) for conns in self._idle.values())

    def close(self) -> None:
        """Close every idle connection; connections in use are closed by their callers as they finish
        (they are not taken back after this: the idle lists start empty, and reuse simply reconnects)."""
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
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

    def fetch_pieces(self, url: str, start: int, length: int, piece: int,
                     alloc: Callable[[int], Any] | None = None) -> list[bytes]:
        """The ``length`` bytes at ``start`` as new ``bytes`` objects split at the file offsets that are
        multiples of ``piece``, each received straight into its own object: no copy on the way.
        ``alloc(n)``, when given, makes each piece's buffer instead of ``bytes`` (writable, ``len`` n,
        slicing to ``bytes``: a ctypes array, say, that a FUSE reply hands on without copying it).

        Fewer bytes than asked (past the end of the file) come back as fewer or shorter pieces.
        """
        if length <= 0:
            return []

        def receive(resp: http.client.HTTPResponse, n: int) -> Any:
            if alloc is None:
                return resp.read(n)
            data = alloc(n)
            with memoryview(data).cast("B") as view:
                got = 0
                while got < n and (k := resp.readinto(view[got:])):
                    got += k
                return data if got == n else bytes(view[:got])

        def body(resp: http.client.HTTPResponse) -> list[bytes]:
            pieces = []
            pos, end = start, start + length
            while pos < end:
                data = receive(resp, min(end, (pos // piece + 1) * piece) - pos)
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
        self.transport.check_online("GET", url)

        def attempt() -> tuple[T, int]:
            if headers is not None:
                headers.clear()  # only the answers of the attempt that succeeds
            try:
                return self._get(self._target(url) if pinned else url, url, start, length, body, headers, pinned)
            except HubfsError:
                raise
            except DROPPED:
                with self._lock:
                    self._final.pop(url, None)
                raise

        return self.retry.run(attempt, f"GET {safe_url(url)} bytes {start}+{length}")

    def _target(self, url: str) -> str:
        with self._lock:
            hit = self._final.get(url)
        return hit[0] if hit and hit[1] > time.monotonic() else url

    def _get(self, target: str, url: str, start: int, length: int, body: Callable[[http.client.HTTPResponse], T],
             headers_out: dict[str, str] | None, pinned: bool = True) -> tuple[T, int]:
        span = f"{start}-{start + length - 1}" if start >= 0 else str(start)  # start < 0: the last -start bytes
        current = target
        for _ in range(MAX_REDIRECTS):
            headers = {"Range": f"bytes={span}", **self._headers(current)}
            resp, done = self._send(current, headers)
            reusable = True
            try:
                if headers_out is not None:
                    headers_out.update({k.lower(): v for k, v in resp.headers.items()})
                hop = redirect_target(current, resp.status, resp.headers.get("location"), "GET")
                if hop is not None:
                    resp.read()
                    current = hop.url
                    continue
                if resp.status == 416:
                    resp.read()
                    return body(_EMPTY), -1
                if resp.status >= 400:
                    answer = {k.lower(): v for k, v in resp.headers.items()}
                    error = answer_error(resp.status, answer, resp.read(), "GET", current)
                    if self.retry.should_retry(resp.status):
                        raise RetryableAnswer(error, answer)
                    raise error
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
                done(reusable and not resp.will_close)
        raise HubfsError(f"Too many redirects for {safe_url(url)}.")

    def _headers(self, url: str) -> dict[str, str]:
        """What every request of raw bytes sends: no content coding, hubfs's user agent, the token for the hub."""
        return {"Accept-Encoding": "identity", "User-Agent": self.transport.client.headers.get("user-agent", "hubfs"),
                **self.transport.auth_headers(url)}

    @contextmanager
    def post_stream(self, url: str, body: bytes, headers: dict[str, str]) -> Iterator[Any]:
        """POST ``body`` to ``url`` (the token only to the hub, as for GETs) and yield the answer, read with
        ``readinto``/``read`` (``length``: bytes still expected). Not retried and no redirect followed:
        an error answer raises its hub error, a 3xx a :class:`HubfsError`, and a caller that loses the
        body midway decides what to do. The connection is kept only if the body was read to its end."""
        self.transport.check_online("POST", url)
        hdrs = {**self._headers(url), **headers}
        resp, done = self._send(url, hdrs, "POST", body)
        reusable = False
        try:
            if resp.status >= 300:
                answer = {k.lower(): v for k, v in resp.headers.items()}
                if resp.status >= 400:
                    raise answer_error(resp.status, answer, resp.read(), "POST", url)
                raise HubfsError(f"POST {safe_url(url)} answered {resp.status}, not the body asked for.")
            yield resp
            reusable = resp.isclosed() and not resp.will_close
        finally:
            done(reusable)

    def _send(self, url: str, headers: dict[str, str], method: str = "GET",
              body: bytes | None = None) -> tuple[Any, Callable[[bool], None]]:
        """Send a GET (or ``method`` with ``body``) of ``url``; (the answer with its head read, a callable to
        release it, told whether its connection may be reused). Through httpx when a proxy applies or the
        transport is injected."""
        if self.transport.injected or proxy_for(url, self.transport.proxies):
            client = self.transport.client
            request = client.build_request(method, url, headers=headers, content=body)
            answer = _HttpxAnswer(client.send(request, stream=True))
            return answer, lambda _reusable: answer.close()
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn, reused = self._take(url)
        try:
            resp = _exchange(conn, path, headers, method, body)
        except (OSError, http.client.HTTPException):
            if not reused:
                raise
            conn = self._take_new(url)  # an idle connection the server closed: once more, on a new one
            resp = _exchange(conn, path, headers, method, body)

        def done(reusable: bool) -> None:
            if reusable:
                self._give_back(url, conn)
            else:
                conn.close()

        return resp, done


class _HttpxAnswer:
    """A streamed httpx answer read like an ``http.client.HTTPResponse`` by the body readers: ``read``,
    ``readinto``, ``length`` (bytes still expected, a limit the caller may lower) and ``isclosed``."""

    will_close = True

    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = resp.headers
        size = resp.headers.get("content-length", "")
        self.length: int | None = int(size) if size.isdigit() else None
        try:
            self._chunks: Iterator[bytes] = iter([resp.content])  # an answer built in memory (a mock)
        except httpx.ResponseNotRead:
            self._chunks = resp.iter_raw()
        self._rest = b""
        self._ended = False

    def _next(self) -> bytes:
        if self._rest:
            data, self._rest = self._rest, b""
            return data
        for chunk in self._chunks:
            if chunk:
                return chunk
        self._ended = True
        return b""

    def read(self, n: int = -1) -> bytes:
        want = self.length if n < 0 else (n if self.length is None else min(n, self.length))
        parts: list[bytes] = []
        got = 0
        while want is None or got < want:
            data = self._next()
            if not data:
                break
            if want is not None and got + len(data) > want:
                data, self._rest = data[:want - got], data[want - got:]
            parts.append(data)
            got += len(data)
        if self.length is not None:
            self.length -= got
        return b"".join(parts)

    def readinto(self, buf: memoryview) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def isclosed(self) -> bool:
        return self._ended or self.length == 0

    def close(self) -> None:
        self._resp.close()


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


def _exchange(conn: http.client.HTTPConnection, path: str, headers: dict[str, str], method: str = "GET",
              body: bytes | None = None) -> http.client.HTTPResponse:
    """Send a request (a GET unless told) and read the answer's head; the connection is closed if that fails."""
    try:
        conn.request(method, path, body=body, headers=headers)
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


def _total(headers: Mapping[str, str]) -> int:
    content_range = headers.get("content-range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else -1

