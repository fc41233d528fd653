"""File bodies: ``os.sendfile`` straight from the page cache to the client's socket, with send timeouts.

ASGI has no portable way to hand a file to the server (uvicorn does not implement the
``http.response.pathsend`` extension), so this reaches into uvicorn's protocol object: the ASGI
``send`` callable is a bound method of the request cycle, which owns the transport and counts the
bytes still due. Everything is feature-checked; when any piece is missing :meth:`FileSender.sendfile`
returns None and the caller streams the file through Python instead.

Safety contract of the zero-copy path:

- It writes only to its own duplicate of the connection's descriptor, taken while the transport is
  open. When uvicorn closes the connection, the number it frees can go to a new connection at once;
  a duplicate still names the old socket, so bytes can never reach another client.
- It stops as soon as the client goes away (EPIPE/ECONNRESET) or uvicorn closes the transport.
- Threads copy bytes only while the socket accepts them: a stalled reader is waited for on the event
  loop, never in a thread, and cut after ``send_timeout`` seconds without progress. Copies run under
  their own thread limit, so downloads cannot starve the handlers' thread pool.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from hubfs import config

MIN_SIZE = 1 << 20
DEFAULT_SEND_TIMEOUT = 60.0
DEFAULT_MAX_THREADS = 8
_POLL_S = 0.05  # how long a copying thread waits for a full socket before handing the wait to the loop
_BURST_S = 1.0  # longest a thread copies before the loop checks the connection again
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED)

SendFile = Callable[[int, int, int], Awaitable[None]]


class ClientGone(Exception):
    """The client hung up, stopped reading for longer than the send timeout, or the file ended early."""


def _send_burst(sock_fd: int, file_fd: int, offset: int, count: int) -> tuple[int, bool]:
    """Copy up to ``count`` bytes with ``os.sendfile`` on a non-blocking socket.

    Returns (bytes sent, socket full): stops when done, after ``_BURST_S``, or when the socket has
    stayed full for ``_POLL_S``. Raises ClientGone when the peer is gone or the file is shorter.
    """
    sent = 0
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    deadline = time.monotonic() + _BURST_S
    while sent < count:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            if not poller.poll(_POLL_S * 1000):
                return sent, True
            continue
        except OSError as exc:
            if exc.errno in _GONE:
                raise ClientGone("client closed the connection") from None
            raise
        if n == 0:
            raise ClientGone("file ended before its declared size")
        sent += n
        if time.monotonic() > deadline:
            break
    return sent, False


class FileSender:
    """How the hub sends file bodies: zero-copy switch, send timeout, and the copy threads' limit.

    One instance per app (``HUBFS_NO_SENDFILE=1`` or ``zero_copy=False`` turns ``sendfile`` off).
    """

    def __init__(self, *, zero_copy: bool = True, send_timeout: float = DEFAULT_SEND_TIMEOUT,
                 max_threads: int = DEFAULT_MAX_THREADS) -> None:
        self.zero_copy = zero_copy and hasattr(os, "sendfile") and config.sendfile_enabled()
        self.send_timeout = send_timeout
        self.max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # made inside the running loop, on first use
            self._limiter = anyio.CapacityLimiter(self.max_threads)
        return self._limiter

    async def send(self, send: Callable[..., Awaitable[None]], message: dict[str, Any]) -> None:
        """``send(message)``, cutting the connection when the client takes longer than the send timeout."""
        try:
            await asyncio.wait_for(send(message), self.send_timeout)
        except asyncio.TimeoutError:
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            await _cut(transport)
            raise ClientGone(f"client read nothing for {self.send_timeout:.0f} s") from None

    def sendfile(self, send: Callable[..., Awaitable[None]], size: int, *, finish: bool = True) -> SendFile | None:
        """A coroutine ``(file_fd, offset, count)`` sending file bytes zero-copy, or None if unavailable.

        Call it after ``http.response.start`` has been sent; it completes the response itself (unless
        ``finish`` is False: more of the body follows, as in a multipart answer), or closes the
        connection and raises ClientGone.
        """
        if not self.zero_copy or size < MIN_SIZE:
            return None
        cycle: Any = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None or not isinstance(getattr(cycle, "expected_content_length", None), int):
            return None
        if getattr(cycle, "chunked_encoding", False) or not hasattr(transport, "get_write_buffer_size"):
            return None
        if not isinstance(getattr(cycle, "disconnected", None), bool):
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or not hasattr(sock, "fileno"):
            return None

        async def send_file(file_fd: int, offset: int, count: int) -> None:
            await self._flush(cycle, transport)
            if transport.is_closing() or cycle.disconnected:
                raise ClientGone("client closed the connection")
            own = os.dup(sock.fileno())  # taken while the transport is open: it names this connection
            try:
                sent = await self._copy(cycle, transport, own, file_fd, offset, count)
            except BaseException:
                await _cut(transport)
                raise
            finally:
                os.close(own)
            cycle.expected_content_length -= sent
            if finish:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        return send_file

    async def _flush(self, cycle: Any, transport: Any) -> None:
        """Wait until the headers have left the transport's buffer (bounded by the send timeout)."""
        deadline = time.monotonic() + self.send_timeout
        while transport.get_write_buffer_size() and not cycle.disconnected:
            if time.monotonic() > deadline:
                await _cut(transport)
                raise ClientGone(f"client read nothing for {self.send_timeout:.0f} s")
            await asyncio.sleep(0.0005)

    async def _copy(self, cycle: Any, transport: Any, sock_fd: int, file_fd: int, offset: int, count: int) -> int:
        sent = 0
        while sent < count:
            if transport.is_closing() or cycle.disconnected:
                raise ClientGone("client closed the connection")
            n, full = await anyio.to_thread.run_sync(_send_burst, sock_fd, file_fd, offset + sent, count - sent,
                                                     limiter=self.limiter())
            sent += n
            if full:
                await self._writable(sock_fd)
        return sent

    async def _writable(self, sock_fd: int) -> None:
        """Wait on the event loop (no thread held) until the socket takes bytes again."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(sock_fd, wake)
        try:
            await asyncio.wait_for(ready, self.send_timeout)
        except asyncio.TimeoutError:
            raise ClientGone(f"client read nothing for {self.send_timeout:.0f} s") from None
        finally:
            loop.remove_writer(sock_fd)


async def _cut(transport: Any) -> None:
    """Drop the connection now and let uvicorn see it gone (so it logs nothing about the response)."""
    if transport is not None and not transport.is_closing():
        transport.abort()
    await asyncio.sleep(0)
