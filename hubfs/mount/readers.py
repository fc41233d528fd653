"""The mount's byte path: :class:`~hubfs.client.reader.FileReader` s sharing one fetcher, pools and caches.

Built the way :meth:`hubfs.fs.HubFileSystem.reader_deps` builds them (no fsspec, no HTTP of its own):
the complete blob in the local cache when there is one, the sparse block cache for partial reads of
big LFS objects, the read-ahead stream for sequential reads, exactly the bytes asked for random ones,
and one fetch for concurrent readers of one range; a file served whole, in order, is kept in the cache
as its blob (``HUBFS_MOUNT_KEEP_READS=0``: not), so its next open is local. The range fetcher gets the mount's ``timeout``
and ``max_retries``, so that a stalled or vanished hub fails a read with EIO instead of hanging it.

:func:`reply` answers a FUSE read (libfuse's ``read_buf``) without the copy mfusepy's ``read`` makes
through a Python ``bytes``: a reader of a complete cached blob replies with the blob's descriptor
(libfuse reads it with the GIL released: no Python byte in between); a reader opened ``for_kernel``
streams into ``malloc`` ed pieces (:func:`malloc_piece`), and a read that is one whole piece hands it
to libfuse, which sends it and frees it: the bytes are received once and copied once more, by the
kernel, into the page cache. Any other reply is copied into a buffer libfuse owns.

:func:`one_arena`: the daemon serves every thread from glibc's main arena. The 1 MiB pieces the
read-ahead threads receive and the FUSE threads free otherwise live in per-thread arenas whose heaps
come and go, and every fresh page costs a fault (a tenth of the mount's system time, measured).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hubfs.client.api import HubClient
from hubfs.client.blocks import BlockCache
from hubfs.client.cache import HubCache
from hubfs.client.fetch import RangeFetcher
from hubfs.client.malloc import keep_freed_buffers
from hubfs.client.reader import FileReader, ReaderDeps, ReadTarget, SingleFlight
from hubfs.config import malloc_tuning, mount_keep_reads

if TYPE_CHECKING:
    from hubfs.mount.ops import Handle

M_ARENA_MAX = -8
BUF_IS_FD, BUF_FD_SEEK, BUF_FD_RETRY = 1 << 1, 1 << 2, 1 << 3  # enum fuse_buf_flags


class _FuseBuf(ctypes.Structure):
    """``struct fuse_buf`` (libfuse 3; off_t is 64-bit)."""

    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class _FuseBufvec(ctypes.Structure):
    """``struct fuse_bufvec`` with its one inline ``buf[1]`` (mfusepy declares a pointer there instead)."""

    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", _FuseBuf * 1)]


@functools.cache
def _libc() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    return libc


class _Piece(ctypes.Array):  # type: ignore[type-arg]
    """The ``malloc`` ed buffer of one received piece (a ``c_char`` array; slices are ``bytes``): freed
    when dropped, unless :func:`reply` handed it to libfuse (``owned`` False), which frees it."""

    _length_ = 0
    _type_ = ctypes.c_char
    owned = False

    def __del__(self) -> None:
        if self.owned:
            self.owned = False
            _libc().free(ctypes.addressof(self))


@functools.cache
def _piece_type(n: int) -> type[_Piece]:
    return type(f"Piece{n}", (_Piece,), {"_length_": n, "_type_": ctypes.c_char})


def malloc_piece(n: int) -> _Piece:
    """A buffer of ``n`` bytes from ``malloc`` (see :class:`_Piece`), for ``fetch_pieces``' ``alloc``.

    Plain ``malloc``, not ``posix_memalign``: the socket copies into a page-aligned buffer faster (see
    :mod:`hubfs.client.malloc`), but every aligned piece leaves its alignment slack behind as small free
    chunks that pin the heap, and freed pieces are then too small for the next aligned one: reading
    1 GiB grew the heap to 380 MiB with 65 MiB in use (fresh pages faulted in all along, and kept after),
    against 73 MiB with plain pieces, which also read 1.5x faster (measured in one process, no FUSE)."""
    address = _libc().malloc(max(1, n))
    if not address:
        raise MemoryError(f"malloc of {n} bytes failed")
    piece = _piece_type(n).from_address(address)
    piece.owned = True
    return piece


def reply(bufpp: Any, handle: Handle, offset: int, size: int) -> int:
    """Answer libfuse's ``read_buf(path, bufpp, size, offset, fi)`` for ``handle``: ``*bufpp`` becomes a
    ``fuse_bufvec`` libfuse sends and frees (the descriptor of a cached blob, or the bytes read). 0."""
    libc = _libc()
    fd, data = None, b""
    if isinstance(handle, FileReader) and handle.blob_fd is not None:
        fd = handle.blob_fd
        if handle.size is not None:
            size = max(0, min(size, handle.size - offset))
    else:
        data = handle.read(offset, size)
    vec = libc.malloc(ctypes.sizeof(_FuseBufvec))
    if not vec:
        raise MemoryError("malloc of a fuse_bufvec failed")
    v = _FuseBufvec.from_address(vec)
    v.count, v.idx, v.off = 1, 0, 0
    buf = v.buf[0]
    buf.mem, buf.fd, buf.pos = None, -1, 0
    if fd is not None and size:
        buf.size, buf.flags, buf.fd, buf.pos = size, BUF_IS_FD | BUF_FD_SEEK | BUF_FD_RETRY, fd, offset
    else:
        buf.size, buf.flags = len(data), 0
        if isinstance(data, _Piece) and data.owned:  # the piece itself goes: libfuse frees it
            data.owned = False
            buf.mem = ctypes.addressof(data)
        elif data:
            mem = libc.malloc(len(data))
            if not mem:
                libc.free(vec)
                raise MemoryError(f"malloc of {len(data)} bytes failed")
            ctypes.memmove(mem, data, len(data))  # the GIL is released while it copies
            buf.mem = mem
    ctypes.cast(bufpp, ctypes.POINTER(ctypes.c_void_p))[0] = vec
    return 0


@functools.cache
def one_arena() -> bool:
    """Serve every thread's ``malloc`` from glibc's main arena (see the module docstring); True when set."""
    if not malloc_tuning() or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(_libc().mallopt(M_ARENA_MAX, 1))
    except (OSError, AttributeError):
        return False


class Readers:
    """Opens readers of one client's hub; ``close()`` stops the pools and drops idle connections."""

    def __init__(self, client: HubClient, *, timeout: float = 15.0, max_retries: int = 2, workers: int = 8,
                 block_cache: bool = True) -> None:
        self.fetcher = RangeFetcher(client.transport, max_retries=max_retries, timeout=timeout)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="hubfs-mount")
        self.part_pool = ThreadPoolExecutor(workers, thread_name_prefix="hubfs-mount-part")
        cache = HubCache(client.config.cache_dir)
        self.deps = ReaderDeps(self.fetcher, self.pool, self.part_pool, BlockCache(cache) if block_cache else None,
                               cache, client.config.offline, SingleFlight(), keep_reads=mount_keep_reads())
        self._kernel_deps = replace(self.deps, alloc=malloc_piece)
        keep_freed_buffers()
        one_arena()

    def open(self, target: ReadTarget, *, for_kernel: bool = False) -> FileReader:
        """A reader of ``target`` (no request: the size and hashes come with the target). ``for_kernel``: its
        reads are answered by :func:`reply` only, and sequential ones may return a :func:`malloc_piece`
        (which is no ``bytes``) instead of ``bytes``."""
        return FileReader(target, self._kernel_deps if for_kernel else self.deps)

    def close(self) -> None:
        for pool in (self.pool, self.part_pool):
            pool.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()


__all__ = ["Readers", "malloc_piece", "one_arena", "reply"]
