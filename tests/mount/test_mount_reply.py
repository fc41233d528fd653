"""How the mount answers libfuse's ``read_buf`` (no kernel): a cached blob by its descriptor, a received
piece handed over whole (libfuse frees it), anything else copied into a buffer libfuse owns."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hubfs.mount.readers import (
    BUF_FD_RETRY,
    BUF_FD_SEEK,
    BUF_IS_FD,
    _FuseBufvec,
    _libc,
    malloc_piece,
    reply,
)


class _Bytes:
    def __init__(self, data: Any) -> None:
        self.data, self.asked = data, []

    def read(self, offset: int, length: int) -> Any:
        self.asked.append((offset, length))
        return self.data

    def close(self) -> None:
        pass


def _answer(handle: Any, offset: int, size: int) -> _FuseBufvec:
    slot = ctypes.c_void_p()
    assert reply(ctypes.pointer(slot), handle, offset, size) == 0 and slot.value
    return _FuseBufvec.from_address(slot.value)


def _free(vec: _FuseBufvec) -> None:
    """What libfuse's fuse_free_buf does once the reply is sent."""
    if not vec.buf[0].flags & BUF_IS_FD:
        _libc().free(vec.buf[0].mem)
    _libc().free(ctypes.addressof(vec))


def test_bytes_are_copied_into_a_buffer_libfuse_frees() -> None:
    vec = _answer(_Bytes(b"hello"), 10, 4096)
    assert (vec.count, vec.idx, vec.off, vec.buf[0].size, vec.buf[0].flags) == (1, 0, 0, 5, 0)
    assert ctypes.string_at(vec.buf[0].mem, 5) == b"hello"
    _free(vec)
    empty = _answer(_Bytes(b""), 0, 4096)
    assert empty.buf[0].size == 0 and not empty.buf[0].mem
    _free(empty)


def test_a_whole_piece_is_handed_over_not_copied() -> None:
    piece = malloc_piece(4)
    ctypes.memmove(piece, b"abcd", 4)
    vec = _answer(_Bytes(piece), 0, 4)
    assert vec.buf[0].mem == ctypes.addressof(piece) and vec.buf[0].size == 4 and not piece.owned
    del piece  # not freed here: libfuse owns it now
    assert ctypes.string_at(vec.buf[0].mem, 4) == b"abcd"
    _free(vec)


def test_pieces_are_malloced_and_freed_by_whoever_owns_them() -> None:
    """Pieces of any size come from plain malloc and are freed by their own ``__del__`` unless handed over;
    freed ones are reused for the next, so the heap stays small over a long read (see malloc_piece)."""
    sizes = (1, 4096, 1 << 20, (1 << 20) + 5)
    pieces = [malloc_piece(n) for n in sizes]
    assert all(len(p) == n and p.owned for p, n in zip(pieces, sizes))
    ctypes.memmove(pieces[2], b"x" * (1 << 20), 1 << 20)
    assert pieces[2][:3] == b"xxx"
    del pieces  # each freed by its own __del__ (owned)
    # The heap's growth over a long stream, measured in a process of its own: a test worker's heap holds
    # what earlier tests left, and its other threads allocate meanwhile.
    out = subprocess.run([sys.executable, "-c", HEAP_STREAM], capture_output=True, text=True, check=True, timeout=120)
    grown, peak = (int(n) for n in out.stdout.split())
    # the pieces in flight at the peak, and little more (posix_memalign'ed pieces grew it by 95 MiB for 65)
    assert grown <= peak + 16, (grown, peak)


HEAP_STREAM = """import collections, ctypes
from hubfs.client.malloc import keep_freed_buffers
from hubfs.mount.readers import malloc_piece
class MallInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
keep_freed_buffers()  # as the daemon does: pieces come from the heap, not from mmap
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo
before = libc.mallinfo2().arena
in_flight, small, peak = collections.deque(), [], 0
for i in range(400):  # a stream: 64 pieces in flight, small allocations of the HTTP stack in between
    in_flight.append(malloc_piece(1 << 20))
    small = [*small[-50:], bytearray(3000 + i % 7 * 500)]
    peak = max(peak, len(in_flight))
    if len(in_flight) > 64:
        in_flight.popleft()
in_flight.clear()
print((libc.mallinfo2().arena - before) >> 20, peak)
"""


def test_a_cached_blob_is_answered_by_its_descriptor(tmp_path: Path) -> None:
    from hubfs.client.reader import FileReader

    class Local(FileReader):  # a reader of a complete cached blob, without a hub
        def __init__(self, fd: int, size: int) -> None:
            self._fd, self.size = fd, size

    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 3000)
        vec = _answer(Local(fd, 3000), 1000, 4096)  # clipped at the end of the file
        buf = vec.buf[0]
        assert (buf.flags, buf.fd, buf.pos, buf.size) == (BUF_IS_FD | BUF_FD_SEEK | BUF_FD_RETRY, fd, 1000, 2000)
        _free(vec)
    finally:
        os.close(fd)
