"""Zero-copy file bodies: ``os.sendfile`` straight from the page cache to the client's socket.

ASGI has no portable way to hand a file to the server (uvicorn does not implement the
``http.response.pathsend`` extension), so this reaches into uvicorn's protocol object: the ASGI
``send`` callable is a bound method of the request cycle, which owns the transport and counts the
bytes still due. Everything is feature-checked; when any piece is missing :func:`sendfile_sender`
returns None and the caller streams the file through Python instead.
"""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

MIN_SIZE = 1 << 20


def _sendfile_all(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """Blocking loop over ``os.sendfile`` on a non-blocking socket; returns the bytes sent."""
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            _, writable, _ = select.select([], [sock_fd], [], 30)
            if not writable:
                raise TimeoutError("client stopped reading for 30 s") from None
            continue
        if n == 0:
            break
        sent += n
    return sent


def sendfile_sender(send: Callable[..., Awaitable[None]], size: int) -> Callable[[int, int, int], Awaitable[None]] | None:
    """A coroutine ``(file_fd, offset, count)`` sending file bytes zero-copy, or None if unavailable.

    Call it after ``http.response.start`` has been sent; it completes the response itself.
    """
    if os.environ.get("HUBFS_NO_SENDFILE") or size < MIN_SIZE or not hasattr(os, "sendfile"):
        return None
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not isinstance(getattr(cycle, "expected_content_length", None), int):
        return None
    if getattr(cycle, "chunked_encoding", False) or not hasattr(transport, "get_write_buffer_size"):
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(sock, "fileno"):
        return None

    async def send_file(file_fd: int, offset: int, count: int) -> None:
        while transport.get_write_buffer_size():  # the headers must be on the wire first
            await asyncio.sleep(0.0005)
        sent = await anyio.to_thread.run_sync(_sendfile_all, sock.fileno(), file_fd, offset, count)
        cycle.expected_content_length -= sent
        if sent != count:
            transport.close()
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_file
