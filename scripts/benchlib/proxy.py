"""A loopback HTTP/1.1 proxy that adds latency and counts what crosses it, run in its own process.

``ProxyHandle(endpoint, latency)`` starts it (a ``spawn`` child, so it never competes with the
benchmark's own threads for the GIL) and gives ``.endpoint``; every forwarded chunk is delayed by
half of ``latency`` each way and every new connection by ``latency`` (its TCP handshake), so a
request/response round trip costs ``latency``. It frames both directions of each connection and
counts connections, requests (by method), bytes each way and response body bytes, and records
each exchange (method, target, Range, status, body bytes): ``stats()`` returns them, ``reset()``
starts the counts again, ``stop()`` ends the process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

PROXY_CHUNK = 256 << 10
PROXY_QUEUE = 64  # chunks in flight per direction: 16 MiB per half round trip, far above what is read here
MAX_EXCHANGES = 5000


class Framer:
    """Splits one direction of an HTTP/1.1 connection into message heads and bodies.

    ``on_head(head)`` gets each head (start line + headers, without the blank line) and returns
    how its body is framed: ``("length", n)``, ``("chunked", 0)`` or ``("close", 0)`` (to EOF);
    ``on_body(n)`` gets the count of body (payload) bytes as they pass.
    """

    HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, TO_EOF = range(7)

    def __init__(self, on_head: Callable[[bytes], tuple[str, int]], on_body: Callable[[int], None]) -> None:
        self.on_head, self.on_body = on_head, on_body
        self.state = self.HEAD
        self.left = 0
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            if self.state in (self.BODY, self.CHUNK_DATA, self.TO_EOF):
                take = len(view) if self.state == self.TO_EOF else min(self.left, len(view))
                self.on_body(take)
                view = view[take:]
                if self.state != self.TO_EOF:
                    self.left -= take
                    if not self.left:
                        self.state = self.HEAD if self.state == self.BODY else self.CHUNK_END
                continue
            self.buf += view
            sep = b"\r\n\r\n" if self.state == self.HEAD else b"\r\n"
            at = self.buf.find(sep)
            if at < 0:
                return
            token, rest = bytes(self.buf[:at]), bytes(self.buf[at + len(sep):])
            self.buf.clear()
            view = memoryview(rest)
            self._token(token)

    def _token(self, token: bytes) -> None:
        if self.state == self.HEAD:
            kind, n = self.on_head(token)
            self.state, self.left = {"length": (self.BODY, n), "chunked": (self.CHUNK_SIZE, 0),
                                     "close": (self.TO_EOF, 0)}[kind]
            if self.state == self.BODY and not n:
                self.state = self.HEAD
        elif self.state == self.CHUNK_SIZE:
            size = int(token.split(b";")[0].strip() or b"0", 16)
            self.state, self.left = (self.CHUNK_DATA, size) if size else (self.TRAILER, 0)
        elif self.state == self.CHUNK_END:
            self.state = self.CHUNK_SIZE
        elif self.state == self.TRAILER and not token:
            self.state = self.HEAD


def parse_head(head: bytes) -> tuple[list[str], dict[str, str]]:
    """(start line split in 3, lower-cased headers) of one HTTP/1.1 message head."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].split(" ", 2), headers


def body_framing(headers: dict[str, str], default: str) -> tuple[str, int]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", 0
    if headers.get("content-length", "").isdigit():
        return "length", int(headers["content-length"])
    return default, 0


def new_stats() -> dict[str, Any]:
    return {"connections": 0, "requests": 0, "methods": Counter(), "up_bytes": 0, "down_bytes": 0,
            "down_head_bytes": 0, "down_body_bytes": 0, "parse_errors": 0, "exchanges": []}


class ProxyConnection:
    """Counts the requests of one client connection and the response bodies that answer them."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.pending: deque[list[Any]] = deque()
        self.current: list[Any] | None = None
        self.request = Framer(self._on_request, lambda n: None)
        self.response = Framer(self._on_response, self._on_response_body)

    def _on_request(self, head: bytes) -> tuple[str, int]:
        start, headers = parse_head(head)
        exchange = [start[0], start[1] if len(start) > 1 else "", headers.get("range", ""), 0, 0]
        self.pending.append(exchange)
        self.stats["requests"] += 1
        self.stats["methods"][start[0]] += 1
        if len(self.stats["exchanges"]) < MAX_EXCHANGES:
            self.stats["exchanges"].append(exchange)
        return body_framing(headers, "length")

    def _on_response(self, head: bytes) -> tuple[str, int]:
        start, headers = parse_head(head)
        self.stats["down_head_bytes"] += len(head) + 4
        status = int(start[1])
        if 100 <= status < 200:
            return "length", 0
        self.current = self.pending.popleft() if self.pending else None
        if self.current is not None:
            self.current[3] = status
        if status in (204, 304) or (self.current is not None and self.current[0] == "HEAD"):
            return "length", 0
        return body_framing(headers, "close")

    def _on_response_body(self, n: int) -> None:
        self.stats["down_body_bytes"] += n
        if self.current is not None:
            self.current[4] += n


class LatencyProxy:
    """A TCP proxy adding ``latency`` seconds to every round trip (half each way) and to every connect."""

    def __init__(self, upstream: tuple[str, int], latency: float) -> None:
        self.upstream, self.latency = upstream, latency
        self.stats = new_stats()
        self.done = asyncio.Event()

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        conn = ProxyConnection(self.stats)
        await asyncio.sleep(self.latency)  # the TCP handshake's round trip
        try:
            sreader, swriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            cwriter.close()
            return
        writers = (cwriter, swriter)
        half = self.latency / 2
        await asyncio.gather(self.pipe(creader, swriter, half, conn.request.feed, "up_bytes", writers),
                             self.pipe(sreader, cwriter, half, conn.response.feed, "down_bytes", writers),
                             return_exceptions=True)
        for w in writers:
            w.close()

    def _parse(self, feed: Callable[[bytes], None], data: bytes) -> Callable[[bytes], None]:
        try:
            feed(data)
            return feed
        except (ValueError, IndexError, KeyError):
            self.stats["parse_errors"] += 1
            return lambda _: None

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                   feed: Callable[[bytes], None], counter: str, writers: tuple[asyncio.StreamWriter, ...]) -> None:
        """Forward ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived (a delay line)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(PROXY_QUEUE)

        async def take_in() -> None:
            nonlocal feed
            try:
                while data := await reader.read(PROXY_CHUNK):
                    self.stats[counter] += len(data)
                    feed = self._parse(feed, data)
                    await queue.put((loop.time() + delay, data))
                await queue.put((loop.time() + delay, b""))
            except (OSError, asyncio.IncompleteReadError):
                await queue.put((loop.time(), None))

        incoming = asyncio.create_task(take_in())
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    raise ConnectionResetError
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except OSError:
            for w in writers:
                w.close()
        finally:
            incoming.cancel()

    def command(self, conn: multiprocessing.connection.Connection) -> None:
        """Answer one control message from the parent: "stats" or "reset"."""
        try:
            what = conn.recv()
        except EOFError:  # the parent is done
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self.done.set()
            return
        if what == "reset":  # in place: open connections hold this dict
            self.stats.clear()
            self.stats.update(new_stats())
            conn.send("ok")
        else:
            conn.send({**self.stats, "methods": dict(self.stats["methods"])})


def proxy_main(upstream: tuple[str, int], latency: float, conn: multiprocessing.connection.Connection) -> None:
    """Entry point of the proxy process: sends its port to the parent, serves until the parent closes the pipe."""

    async def run() -> None:
        proxy = LatencyProxy(upstream, latency)

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await proxy.handle(r, w)
            except asyncio.CancelledError:  # shutdown with idle keep-alive connections still open
                w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        asyncio.get_running_loop().add_reader(conn.fileno(), proxy.command, conn)
        conn.send(server.sockets[0].getsockname()[1])
        await proxy.done.wait()
        server.close()

    asyncio.run(run())


class ProxyHandle:
    """The parent's side of the proxy process."""

    def __init__(self, upstream: str, latency: float) -> None:
        host, port = upstream.split("://", 1)[1].rsplit(":", 1)
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=proxy_main, args=((host, int(port)), latency, child), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(30):
            raise RuntimeError("the latency proxy did not start")
        self.endpoint = f"http://127.0.0.1:{self.conn.recv()}"

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def stats(self) -> dict[str, Any]:
        self.conn.send("stats")
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.close()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()  # by its PID; we started it
            self.proc.join(10)

