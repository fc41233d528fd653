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
import gzip
import inspect
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from hubfs import config
from hubfs.errors import HubfsError, PermissionDeniedError, RangeNotSatisfiableError
from hubfs.server.zero_copy import ClientGone, FileSender, SendFile

log = logging.getLogger("hubfs.server")
Handler = Callable[..., Awaitable[Response] | Response]
MAX_HEADER_BYTES = 16 * 1024
CHUNK = 4 << 20
INLINE_MAX = 64 << 10  # bodies up to this size are read on the event loop: a thread hop costs more

_BYTES = re.compile(r"\s*bytes\s*=(.*)", re.DOTALL)
_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")
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
        self.aliases: list[Route] = []  # other spellings of routes (canonical repo ids), see add_aliases
        self._alias_at = 0

    def add(self, methods: Iterable[str], pattern: str, handler: Handler) -> None:
        regex = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>{_KINDS[m.group(2)]})", pattern) + "$"
        self.routes.append(Route(frozenset(methods), re.compile(regex), handler))

    def add_aliases(self, aliases: Iterable[Route]) -> None:
        """Other spellings of the routes added so far, tried after them and before any route added later
        (a catch-all); kept apart from ``routes``, which lists each route once."""
        self.aliases.extend(aliases)
        self._alias_at = len(self.routes)

    def _in_order(self) -> Iterator[Route]:
        yield from self.routes[:self._alias_at]
        yield from self.aliases
        yield from self.routes[self._alias_at:]

    def match(self, method: str, raw_path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """(handler, params, path_matched): path_matched tells a 405 from a 404."""
        path_matched = False
        for route in (self._in_order() if self.aliases else self.routes):
            m = route.regex.match(raw_path)
            if not m:
                continue
            path_matched = True
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                return route.handler, m.groupdict(), True
        return None, {}, path_matched


_TRACE_ID = re.compile(r"[\w=;:.\-]{1,128}", re.ASCII)


def request_id(scope: Scope) -> str:
    """The id every answer carries in ``X-Request-Id`` (the client shows it in errors): the caller's
    ``X-Amzn-Trace-Id`` or ``X-Request-Id`` when well-formed, else a new one in the Hub's shape."""
    for name, value in scope["headers"]:
        if name in (b"x-amzn-trace-id", b"x-request-id"):
            text = value.decode("latin-1")
            if _TRACE_ID.fullmatch(text):
                return text
    return f"Root=1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"


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
        self.gzip_json = config.gzip_json()

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
        response.headers["X-Request-Id"] = request_id(scope)
        if self.gzip_json and type(response) in (Response, JSONResponse) and scope["method"] != "HEAD":
            await gzip_json(request, response)
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
        except ClientDisconnect:  # the client hung up before sending its whole body: nothing to answer
            log.debug("client disconnected during %s %s", scope.get("method"), scope.get("path"))
            return error_response(HubfsError("The client disconnected before sending the whole body.", status=400))
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            return error_response(HubfsError("Internal server error.", status=500))


GZIP_MIN = 32 << 10  # JSON answers at least this big go gzipped to clients that accept it


async def gzip_json(request: Request, response: Response) -> None:
    """Compress ``response`` in place (gzip, level 1, in the thread pool) when it is JSON of ``GZIP_MIN``
    bytes or more, carries no ETag or encoding of its own, and ``request`` accepts gzip: a tree listing
    of thousands of files shrinks ~2x (the hashes in it do not compress). ``HUBFS_GZIP_JSON=0``: never."""
    body = response.body
    headers = response.headers
    if (len(body) < GZIP_MIN or not headers.get("content-type", "").startswith("application/json")
            or "content-encoding" in headers or "etag" in headers
            or not _accepts_gzip(request.headers.get("accept-encoding", ""))):
        return
    packed = await run_in_threadpool(gzip.compress, bytes(body), 1)
    response.body = packed
    headers["content-length"] = str(len(packed))
    headers["content-encoding"] = "gzip"
    headers["vary"] = "Accept-Encoding"


def _accepts_gzip(accept: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (not with ``q=0``)."""
    for item in accept.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> inclusive (start, end) clamped to the file; None: whole file.

    A start at or past the end raises 416. A header naming several ranges counts as none (the whole
    file, allowed by RFC 9110); :func:`parse_ranges` is the multi-range reading.
    """
    if not header or "," in header:
        return None
    ranges = parse_ranges(header, size)
    return ranges[0] if ranges else None


def parse_ranges(header: str | None, size: int, max_ranges: int = 64) -> list[tuple[int, int]] | None:
    """``bytes=a-b,c-,-n,...`` -> inclusive (start, end) pairs clamped to the file, in the order given
    (overlaps kept); None: the whole file.

    None also when the header is not a bytes range, a range-spec is malformed (no digits, last < first),
    or it names more than ``max_ranges`` ranges: RFC 9110 lets a server ignore such a header. Empty list
    elements are skipped (RFC 9110 §5.6.1). Ranges starting at or past the end (and ``-0``) are dropped;
    416 when none is left. One spec reads exactly as :func:`parse_range` reads it.
    """
    if not header:
        return None
    m = _BYTES.fullmatch(header)
    if not m:
        return None
    specs = [spec for spec in m.group(1).split(",") if spec.strip()]
    if not specs or len(specs) > max_ranges:
        return None
    out: list[tuple[int, int]] = []
    for spec in specs:
        sm = _SPEC.fullmatch(spec)
        if not sm or (not sm.group(1) and not sm.group(2)):
            return None
        if not sm.group(1):
            suffix = _range_int(sm.group(2))
            if suffix and size:
                out.append((max(0, size - suffix), size - 1))
            continue
        start = _range_int(sm.group(1))
        end = _range_int(sm.group(2)) if sm.group(2) else size - 1
        if sm.group(2) and end < start:
            return None
        if start < size:
            out.append((start, min(end, size - 1)))
    if not out:
        raise _unsatisfiable(size)
    return out


def check_allowed(ranges: Sequence[tuple[int, int]] | None, allowed: Sequence[tuple[int, int]], size: int) -> None:
    """Raise 403 unless each inclusive range lies inside one ``allowed`` inclusive interval; ``None``
    (the whole object) needs an interval covering ``0..size-1`` (a signed URL may grant only some bytes)."""
    if ranges is None:
        if not any(a <= 0 and b >= size - 1 for a, b in allowed):
            raise PermissionDeniedError(f"This URL grants only some byte ranges of the object ({size} bytes); "
                                        "ask for them with a Range header.")
        return
    for start, end in ranges:
        if not any(a <= start and end <= b for a, b in allowed):
            raise PermissionDeniedError(f"Bytes {start}-{end} are outside the byte ranges this URL grants.")


def _range_int(digits: str) -> int:
    """A range position; one past any file size (2**63) when longer than 19 digits, which ``int()``
    may refuse (RFC 9110: a last-pos past the end is clamped, a first-pos past it is 416)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 1 << 63


def _unsatisfiable(size: int) -> RangeNotSatisfiableError:
    exc = RangeNotSatisfiableError(f"Requested range not satisfiable (size {size}).")
    exc.headers = {"Content-Range": f"bytes */{size}"}  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class FileSlice:
    """``length`` bytes of the file at ``path`` from ``offset``: one piece of a body laid out over files."""

    path: str
    offset: int
    length: int


Segment = bytes | FileSlice  # a body's layout: literal bytes and file slices, in order


class RangedBody(Response):
    """A body from a file path, bytes, a loader of bytes or a layout of bytes and file slices, honouring
    Range. File bytes go out with ``sendfile`` (pieces of 1 MiB or more) or in ~4 MiB batches read
    off-loop while the previous one is sent; loaders run off-loop; bodies of at most ``INLINE_MAX``
    bytes are read on the loop.

    Several ranges make a ``206 multipart/byteranges`` body (RFC 9110 §14.6) whose parts go out the same
    way. ``allowed``: the inclusive intervals the request may ask for, else 403 (see :func:`check_allowed`)."""

    def __init__(self, request: Request, size: int, headers: dict[str, str], *,
                 path: str | None = None, data: bytes | None = None,
                 load: Callable[[], bytes] | None = None, layout: Sequence[Segment] | None = None,
                 allowed: Sequence[tuple[int, int]] | None = None) -> None:
        self.load, self.size = load, size
        self.layout: Sequence[Segment] = (layout if layout is not None else [FileSlice(path, 0, size)] if path
                                          else [data] if data is not None else [])
        ranges = parse_ranges(request.headers.get("range"), size)
        if allowed is not None:
            check_allowed(ranges, allowed, size)
        self.ranges = ranges or [(0, size - 1)]
        self.heads: list[bytes] = []
        self.closing = b""
        hdrs = {"Accept-Ranges": "bytes"}
        multipart_type = None
        if ranges and len(ranges) > 1:
            boundary = secrets.token_hex(16)
            multipart_type = f"multipart/byteranges; boundary={boundary}"
            part_type = headers.get("Content-Type") or "application/octet-stream"
            self.heads = [(b"\r\n" if i else b"") + f"--{boundary}\r\nContent-Type: {part_type}\r\n"
                          f"Content-Range: bytes {a}-{b}/{size}\r\n\r\n".encode("latin-1", "replace")
                          for i, (a, b) in enumerate(ranges)]
            self.closing = f"\r\n--{boundary}--\r\n".encode()
            length = sum(map(len, self.heads)) + sum(b - a + 1 for a, b in ranges) + len(self.closing)
            hdrs["Content-Length"] = str(length)
        else:
            start, end = self.ranges[0]
            hdrs["Content-Length"] = str(end - start + 1 if size else 0)
            if ranges:
                hdrs["Content-Range"] = f"bytes {start}-{end}/{size}"
        hdrs.update(headers)
        if multipart_type:
            hdrs["Content-Type"] = multipart_type
        status = 206 if ranges else 200
        self.head_only = request.method == "HEAD"
        super().__init__(None, status_code=status, headers=hdrs, media_type=hdrs.get("Content-Type"))
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
            self.layout = [self.load() if small else await anyio.to_thread.run_sync(self.load)]
        files = _OpenFiles()
        try:
            off_loop = int(self.headers["content-length"]) > INLINE_MAX
            await self._run_steps(sender, send, files, off_loop)
        finally:
            files.close()

    async def _run_steps(self, sender: FileSender, send: Send, files: _OpenFiles, off_loop: bool) -> None:
        """Send the steps of :meth:`_steps` in order; the next batch is read while one is being sent."""
        def read(batch: list[Segment]) -> bytes:
            return b"".join(p if isinstance(p, bytes) else _pread_exact(files.fd(p.path), p.offset, p.length)
                            for p in batch)

        def start(step: _Step | None) -> asyncio.Future[bytes] | None:
            if not isinstance(step, list):
                return None
            if off_loop:
                return asyncio.ensure_future(anyio.to_thread.run_sync(read, step))
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            done.set_result(read(step))
            return done

        steps = self._steps(lambda count: sender.sendfile(send, count, finish=False))
        step: _Step | None = next(steps)
        job = start(step)
        while step is not None:
            following = next(steps, None)
            if isinstance(step, list):
                assert job is not None
                body = await job
                job = start(following)
                try:
                    await sender.send(send, {"type": "http.response.body", "body": body,
                                             "more_body": following is not None})
                except BaseException:
                    if job is not None:  # let the read finish before the files close: never a reused fd
                        await asyncio.wait([job])
                    raise
            else:
                copy, piece = step
                await copy(files.fd(piece.path), piece.offset, piece.length)
                job = start(following)
                if following is None:
                    await send({"type": "http.response.body", "body": b""})
            step = following

    def _steps(self, zero_copy: Callable[[int], SendFile | None]) -> Iterator[_Step]:
        """The body in order: batches of literal bytes and file pieces of about ``CHUNK`` bytes, and
        ``(sendfile, piece)`` for file pieces sent zero-copy. Multipart heads and the closing
        delimiter are literal bytes."""
        batch: list[Segment] = []
        filled = 0
        heads = self.heads or [b""]
        for head, (start, end) in zip(heads, self.ranges):
            if head:
                batch.append(head)
                filled += len(head)
            for piece in _pieces(self.layout, start, end + 1):
                if isinstance(piece, FileSlice):
                    copy = zero_copy(piece.length)
                    if copy is not None:
                        if batch:
                            yield batch
                        batch, filled = [], 0
                        yield copy, piece
                        continue
                    while piece.length:
                        n = min(piece.length, CHUNK - filled)
                        batch.append(FileSlice(piece.path, piece.offset, n))
                        piece = FileSlice(piece.path, piece.offset + n, piece.length - n)
                        filled += n
                        if filled >= CHUNK:
                            yield batch
                            batch, filled = [], 0
                else:
                    batch.append(piece)
                    filled += len(piece)
                    if filled >= CHUNK:
                        yield batch
                        batch, filled = [], 0
        if self.closing:
            batch.append(self.closing)
        if batch:
            yield batch


_Step = list[Segment] | tuple[SendFile, FileSlice]


def _pieces(layout: Sequence[Segment], start: int, stop: int) -> Iterator[Segment]:
    """The parts of ``layout`` that hold bytes ``[start, stop)`` of the body it lays out."""
    pos = 0
    for seg in layout:
        n = len(seg) if isinstance(seg, bytes) else seg.length
        if pos + n > start and pos < stop:
            a, b = max(start - pos, 0), min(stop - pos, n)
            yield seg[a:b] if isinstance(seg, bytes) else FileSlice(seg.path, seg.offset + a, b - a)
        pos += n
        if pos >= stop:
            return


class _OpenFiles:
    """The files a body reads, each opened once and closed when the body is done."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def fd(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return fd

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _pread_exact(fd: int, offset: int, count: int) -> bytes:
    data = os.pread(fd, count, offset)
    if len(data) != count:
        raise ClientGone("file ended before its declared size")
    return data
