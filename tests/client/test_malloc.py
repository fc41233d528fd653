"""``hubfs.client.malloc``: the allocator settings and page-aligned receive buffers."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import socket
import threading

import pytest

from hubfs.client.malloc import PAGE, receive_buffer


def _address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@pytest.mark.parametrize("n", [1, 100, PAGE, PAGE + 1, 1 << 20, 3 * (1 << 20) + 7])
def test_a_receive_buffer_starts_at_a_page_boundary_and_holds_n_writable_bytes(n: int) -> None:
    buf = receive_buffer(n)
    assert len(buf) == n and not buf.readonly and buf.format == "B"
    assert _address(buf) % PAGE == 0
    buf[:] = b"\x5a" * n
    gc.collect()  # the view keeps its bytearray alive
    assert bytes(buf[-1:]) == b"\x5a" and bytes(buf).count(0x5a) == n


def test_an_empty_receive_buffer_is_empty() -> None:
    assert len(receive_buffer(0)) == 0


def test_socket_bytes_received_into_a_receive_buffer_are_the_bytes_sent() -> None:
    """What a download does with it: recv_into slices of it, then hash and write it."""
    data = os.urandom(5 * (1 << 20) + 3)
    left, right = socket.socketpair()
    sender = threading.Thread(target=lambda: (left.sendall(data), left.close()))
    sender.start()
    buf, got = receive_buffer(len(data)), 0
    while n := right.recv_into(buf[got:]):
        got += n
    sender.join()
    right.close()
    assert got == len(data) and hashlib.sha256(buf).digest() == hashlib.sha256(data).digest()
