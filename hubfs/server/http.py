"""The HTTP plumbing of the embedded hub: routing on the raw path, Hub-style errors, ranged bodies.

Routing uses ``scope["raw_path"]`` because the Hub's client puts ``%2F`` inside path segments
(revisions, tree sub-paths); each captured segment is decoded only after the split.

Concurrency rule: a plain handler runs in the thread pool (an ``@inline`` one on the loop: cached
reads only); an ``async def`` handler only awaits the request body, then hops (``run_in_threadpool``)
to a synchronous service call that opens its own ``GitRepo``, so no dulwich object crosses threads.
ruff's ``ASYNC`` rules and ``tests/server/test_concurrency_rule.py`` check it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from hubfs import config
from hubfs.errors import HubfsError, RangeNotSatisfiableError
from hubfs.server.zero_copy import ClientGone, FileSender

log = logging.getLogger("hubfs.server")
Handler = Callable[..., Awaitable[Response] | Response]
MAX_HEADER_BYTES = 16 * 1024
CHUNK = 4 << 20
INLINE_MAX = 64 << 10  # bodies up to this size are read on the event loop: a thread hop costs more

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_KINDS = {
    None: r"[^/]+",
    "path": r".+",
    "type": r"models|datasets|spaces",
    "prefix": r"(?:datasets/|spaces/)?",
    "int": r"\d+",
}


def inline(handler: Handler) -> Handler:
    """Mark a plain (sync) handler as quick enough for the event loop: cached git and SQLite reads only.

    A hop to the thread pool and back costs more than such a handler (it halved the small-file rate);
    anything that can take milliseconds (a commit, a history walk, a big blob) stays off the loop.
    """
    handler.inline = True  # type: ignore[attr-defined]
    return handler


@dataclass
class Route:
    methods: frozenset[str]
    regex: re.Pattern[str]
    handler: Handler


class Router:
    """Ordered routes over the raw (still percent-encoded) path; the first match wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, methods: Iterable[str], pattern: str, handler: Handler) -> None:
        regex = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>{_KINDS[m.group(2)]})", pattern) + "$"
        self.routes.append(Route(frozenset(methods), re.compile(regex), handler))

    def match(self, method: str, raw_path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """(handler, params, path_matched): path_matched tells a 405 from a 404."""
        path_matched = False
        for route in self.routes:
            m = route.regex.match(raw_path)
            if not m:
                continue
            path_matched = True
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                return route.handler, m.groupdict(), True
        return None, {}, path_matched


def decode_segment(raw: str) -> str:
    return unquote(raw, errors="strict")


def error_response(exc: HubfsError, headers: dict[str, str] | None = None) -> Response:
    """The Hub's error shape: JSON ``{"error": msg}`` plus X-Error-Code and X-Error-Message."""
    safe = " ".join(exc.message.split()).encode("latin-1", "replace").decode("latin-1")[:1000]
    out = {"X-Error-Code": exc.code, "X-Error-Message": safe}
    out.update(headers or {})
    out.update(getattr(exc, "headers", None) or {})
    body: dict[str, Any] = {"error": exc.message, "message": exc.message}
    body.update(getattr(exc, "body", None) or {})
    return JSONResponse(body, status_code=exc.status, headers=out)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, headers=headers,
                    media_type="application/json")


class App:
    """An ASGI app: header-size guard, routing, and mapping of hubfs errors to Hub responses."""

    def __init__(self, router: Router, state: dict[str, Any], fallback: Handler | None = None) -> None:
        self.router, self.state, self.fallback = router, state, fallback
        # HUBFS_REQUEST_LOG=FILE appends "METHOD PATH RANGE" per request (for request-budget tests).
        self.request_log = config.request_log()

    def _log_request(self, scope: Scope) -> None:
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        headers = dict(scope["headers"])
        rng = headers.get(b"range", b"-").decode("latin-1")
        auth = "auth" if b"authorization" in headers else "anon"
        with open(self.request_log, "a") as f:  # type: ignore[arg-type]
            f.write(f"{scope['method']} {raw} {rng} {auth}\n")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        scope.update(self.state)
        if self.request_log is not None:
            self._log_request(scope)
        request = Request(scope, receive)
        response = await self.dispatch(scope, request)
        await response(scope, receive, send)

    async def dispatch(self, scope: Scope, request: Request) -> Response:
        try:
            header_bytes = sum(len(k) + len(v) for k, v in scope["headers"])
            if header_bytes > MAX_HEADER_BYTES:
                return error_response(HubfsError(f"Request headers exceed {MAX_HEADER_BYTES} bytes.", status=431))
            raw = scope.get("raw_path") or scope["path"].encode()
            raw_path = raw.decode("latin-1").split("?", 1)[0]
            handler, params, path_matched = self.router.match(scope["method"], raw_path)
            if handler is None:
                if path_matched:
                    return error_response(HubfsError(f"Method {scope['method']} not allowed here.", status=405))
                if self.fallback is not None:
                    return await cast(Callable[..., Awaitable[Response]], self.fallback)(request)
                return error_response(HubfsError("Not found.", status=404))
            try:
                kwargs = {k: (v if k.endswith("_raw") else decode_segment(v)) for k, v in params.items() if v is not None}
            except UnicodeDecodeError:
                return error_response(HubfsError("Invalid percent-encoding in path.", status=400))
            if inspect.iscoroutinefunction(handler):
                return await cast(Callable[..., Awaitable[Response]], handler)(request, **kwargs)
            sync = cast(Callable[..., Response], handler)
            if getattr(handler, "inline", False):
                return sync(request, **kwargs)
            # Plain functions do blocking git and SQLite work: keep it off the event loop.
            return await run_in_threadpool(sync, request, **kwargs)
        except HubfsError as exc:
            return error_response(exc)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            return error_response(HubfsError("Internal server error.", status=500))


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> inclusive (start, end) clamped to the file; None: whole file.

    A start at or past the end raises 416. Multiple ranges are served as the whole file (allowed by
    RFC 9110), since no Hub client sends them.
    """
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        suffix = _range_int(m.group(2))
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    start = _range_int(m.group(1))
    end = _range_int(m.group(2)) if m.group(2) else size - 1
    if m.group(2) and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _range_int(digits: str) -> int:
    """A range position; one past any file size (2**63) when longer than 19 digits, which ``int()``
    may refuse (RFC 9110: a last-pos past the end is clamped, a first-pos past it is 416)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 1 << 63


def _unsatisfiable(size: int) -> RangeNotSatisfiableError:
    exc = RangeNotSatisfiableError(f"Requested range not satisfiable (size {size}).")
    exc.headers = {"Content-Range": f"bytes */{size}"}  # type: ignore[attr-defined]
    return exc


class RangedBody(Response):
    """A body from a file path, bytes or a loader of bytes, honouring Range; files are sent with
    ``sendfile`` or streamed in 4 MiB pieces read off-loop, loaders run off-loop, except for bodies of
    at most ``INLINE_MAX`` bytes."""

    def __init__(self, request: Request, size: int, headers: dict[str, str], *,
                 path: str | None = None, data: bytes | None = None,
                 load: Callable[[], bytes] | None = None) -> None:
        self.path, self.data, self.load, self.size = path, data, load, size
        rng = parse_range(request.headers.get("range"), size)
        self.start, self.end = rng if rng else (0, size - 1)
        status = 206 if rng else 200
        hdrs = {"Accept-Ranges": "bytes", "Content-Length": str(self.end - self.start + 1 if size else 0)}
        if rng:
            hdrs["Content-Range"] = f"bytes {self.start}-{self.end}/{size}"
        hdrs.update(headers)
        self.head_only = request.method == "HEAD"
        super().__init__(None, status_code=status, headers=hdrs, media_type=headers.get("Content-Type"))
        self.headers["content-length"] = hdrs["Content-Length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender: FileSender = scope.get("hubfs.file_sender") or FileSender()
        try:
            await self._send_body(sender, send)
        except ClientGone:
            return  # the connection is closed already; nothing more to say to this client

    async def _send_body(self, sender: FileSender, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.head_only or self.size == 0:
            await send({"type": "http.response.body", "body": b""})
            return
        if self.load is not None:
            small = self.size <= INLINE_MAX
            self.data = self.load() if small else await anyio.to_thread.run_sync(self.load)
        if self.data is not None:
            await sender.send(send, {"type": "http.response.body", "body": self.data[self.start:self.end + 1]})
            return
        assert self.path is not None
        remaining = self.end - self.start + 1
        with open(self.path, "rb", buffering=0) as f:
            zero_copy = sender.sendfile(send, remaining)
            if zero_copy is not None:
                await zero_copy(f.fileno(), self.start, remaining)
                return
            position = self.start

            def read() -> bytes:
                return os.pread(f.fileno(), min(CHUNK, remaining), position)

            chunk = read() if remaining <= INLINE_MAX else await anyio.to_thread.run_sync(read)
            while chunk:
                remaining -= len(chunk)
                position += len(chunk)
                # Read the next piece in a worker thread while this one is being sent.
                pending = asyncio.ensure_future(anyio.to_thread.run_sync(read)) if remaining > 0 else None
                try:
                    await sender.send(send, {"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
                except BaseException:
                    if pending is not None:  # let the read finish before the file closes: never a reused fd
                        await asyncio.wait([pending])
                    raise
                chunk = await pending if pending is not None else b""
        if remaining > 0:
            await send({"type": "http.response.body", "body": b""})
