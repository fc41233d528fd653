"""FUSE passthrough of complete cached blobs: the kernel reads (and maps) them itself, at page-cache speed.

libfuse 3.14 does not know passthrough (Linux >= 6.9, ``CONFIG_FUSE_PASSTHROUGH``), but lets a program
bring its own ``/dev/fuse`` descriptor and its own ``read``/``writev`` of it (``fuse_session_custom_io``,
see :mod:`hubfs.mount.session`). :class:`Channel` is that pair (libc's ``read``, a Python ``writev``)
and edits two kinds of replies on their way out:

- ``INIT``: when libfuse answers with ``FUSE_INIT_EXT`` (the kernel offered it), the reply also asks
  for ``FUSE_PASSTHROUGH`` with a ``max_stack_depth`` of :data:`MAX_STACK_DEPTH` (backing files must
  live on a plain file system; the mount then cannot be stacked under more than one layer). A kernel
  without passthrough ignores the flag: :meth:`Backings.probe` then finds backing files refused, and
  every open goes on as before. It also asks for ``FUSE_DIRECT_IO_ALLOW_MMAP`` (Linux >= 6.6, so any
  kernel with passthrough has it): a file opened with ``FOPEN_DIRECT_IO`` can then be mapped shared too
  (``safe_open``, ``np.memmap``);
- ``OPEN``: a handle :meth:`Channel.mark` ed by the operations gets ``FOPEN_PASSTHROUGH`` and its
  ``backing_id`` (and loses ``FOPEN_KEEP_CACHE``, which the kernel refuses with passthrough).

:class:`Backings` decides per open and holds the backing ids (``FUSE_DEV_IOC_BACKING_OPEN`` of a blob's
descriptor; needs CAP_SYS_ADMIN). The kernel keeps an inode in one io mode at a time, and answers an
open that does not fit with EIO: while a file is open through the page cache, a passthrough open of it
fails; while it is open in passthrough, every open must pass through, with the same backing file. So:

- a path with handles open through the page cache stays there until the last of them is closed;
- a path with handles open in passthrough passes every open through with its backing file. An open
  of new content (a refresh changed the file) gets ``FOPEN_DIRECT_IO`` as well: its ``read()`` s come
  to the daemon, which serves the new bytes; only its ``mmap`` shows the backing file (the bytes the
  older handles read) until those handles are all closed;
- a file with no complete blob yet that the operations call ``direct`` (big weights, see
  :mod:`hubfs.mount.ops`) opens with ``FOPEN_DIRECT_IO`` once passthrough is on (the kernel then also
  maps such files, see INIT above): its reads come to the daemon in the application's own sizes, and
  the bytes go from the daemon's buffer straight into the application's, past the page cache (half the
  copies and no page-cache pages to find). Such an open enters no io mode, but a shared mmap of it
  enters the page-cache mode, so it counts as a page-cache handle: the path passes through once it is
  closed (its blob is complete by then when it was read whole);
- a path's backing id is kept after its last close (at most :data:`IDLE_BACKINGS` paths, the least
  recently used dropped first), so that a reopened file finds the kernel's inode and the daemon
  agreeing on the backing file; one a refresh changed is dropped once no handle uses it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hubfs.mount")

FUSE_INIT_EXT = 1 << 30
FUSE_PASSTHROUGH = 1 << 37  # in flags2 (bit 5) of INIT
FUSE_DIRECT_IO_ALLOW_MMAP = 1 << 36  # in flags2 (bit 4)
FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FOPEN_PASSTHROUGH = 1 << 0, 1 << 1, 1 << 7
MAX_STACK_DEPTH = 1
IDLE_BACKINGS = 1024
# _IOW(229, 1, struct fuse_backing_map {int32 fd; uint32 flags; uint64 padding}), _IOW(229, 2, uint32)
FUSE_DEV_IOC_BACKING_OPEN = (1 << 30) | (16 << 16) | (229 << 8) | 1
FUSE_DEV_IOC_BACKING_CLOSE = (1 << 30) | (4 << 16) | (229 << 8) | 2

OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
INIT_OUT_HEAD = struct.Struct("<IIII")  # fuse_init_out: major, minor, max_readahead, flags, ...
INIT_OUT_FLAGS2, INIT_OUT_STACK_DEPTH, INIT_OUT_SIZE = 32, 36, 64  # ... u32 flags2, u32 max_stack_depth
OPEN_OUT = struct.Struct("<QIi")  # fuse_open_out: fh, open_flags, backing_id


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


READ_FN = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
WRITEV_FN = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_int, ctypes.c_void_p)


class CustomIO(ctypes.Structure):
    """libfuse's ``struct fuse_custom_io`` (3.14): no splice callbacks, so libfuse never splices."""

    _fields_ = [("writev", WRITEV_FN), ("read", READ_FN), ("splice_receive", ctypes.c_void_p),
                ("splice_send", ctypes.c_void_p)]


def _libc() -> tuple[Any, Any]:
    """libc with ctypes' errno copy (for ``writev``), and libc's ``__errno_location`` (no copy)."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    with_errno, plain = ctypes.CDLL(name, use_errno=True), ctypes.CDLL(name)
    with_errno.writev.argtypes = [ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_int]
    with_errno.writev.restype = ctypes.c_ssize_t
    errno_location = plain.__errno_location  # (in a class body the name would be mangled)
    errno_location.restype = ctypes.POINTER(ctypes.c_int)
    return with_errno, errno_location


def _keep_thread_state() -> None:
    """Let the calling thread keep its Python thread state (one more ``PyGILState_Ensure``, never released).

    libfuse's worker threads are not Python's: every callback into Python (each FUSE operation, and
    :meth:`Channel._writev`) would otherwise create and destroy a thread state, which costs more than
    most operations themselves (``ls -lR`` of 10,000 files: 0.56 s with kept states, 0.90 s without).
    A worker runs no Python when libfuse ends it (it waits in libc's ``read``, see :class:`Channel`),
    so a kept state is only left behind, and Python's own threads drop theirs when they end."""
    ctypes.pythonapi.PyGILState_Ensure()


class Channel:
    """The ``read``/``writev`` libfuse uses on the mount's ``/dev/fuse`` descriptor (see the module
    docstring); :attr:`io` is the ``struct fuse_custom_io`` to hand to libfuse (kept alive here).

    ``read`` is libc's own: a worker waits for requests in C, where libfuse may cancel it when the
    loop ends, and requests cost no Python. ``writev`` is Python; it edits two replies: the first one
    of the session (INIT's: the kernel sends nothing else before INIT is answered) and an OPEN reply
    (16 bytes of ``fuse_open_out``) whose ``fh`` :meth:`mark` named (``fh`` values are the operations'
    own small counters; the only other 16-byte reply, OPENDIR's, carries a libfuse pointer)."""

    def __init__(self) -> None:
        self.fd = -1  # the mount's /dev/fuse descriptor, once mounted (see hubfs.mount.session)
        self._libc, self._errno_location = _libc()
        self._marks: dict[int, tuple[int, bool]] = {}  # fh -> (backing id, direct), for OPEN replies to come
        self._kept = threading.local()  # ``kept``: this worker thread keeps its Python thread state
        self._first = True  # no reply sent yet: the next is INIT's
        self.asked = False  # the INIT reply asked for passthrough
        self.enabled = False  # ... and a backing file was accepted (:meth:`Backings.probe`)
        read = READ_FN(ctypes.cast(self._libc.read, ctypes.c_void_p).value or 0)
        self.io = CustomIO(WRITEV_FN(self._writev), read, None, None)

    def mark(self, fh: int, backing_id: int, direct: bool = False) -> None:
        """The OPEN reply carrying ``fh`` is to pass through to ``backing_id``; ``direct``: its reads come to
        the daemon all the same (``FOPEN_DIRECT_IO``; only its mmap goes to the backing file)."""
        self._marks[fh] = (backing_id, direct)

    def unmark(self, fh: int) -> None:
        self._marks.pop(fh, None)

    def _writev(self, fd: int, iov: Any, count: int, userdata: Any) -> int:
        if not getattr(self._kept, "kept", False):
            _keep_thread_state()
            self._kept.kept = True
        if self._first or (count == 2 and self._marks):
            try:
                self._edit(iov, count)
            except Exception:  # the reply goes out as libfuse made it
                log.exception("FUSE passthrough: editing a reply failed")
        n: int = self._libc.writev(fd, iov, count)
        if n < 0:
            self._errno_location()[0] = ctypes.get_errno()  # libfuse reads errno
            return -1
        return n

    def _edit(self, iov: Any, count: int) -> None:
        if self._first:
            self._first = False
            _, error, _ = OUT_HEADER.unpack(ctypes.string_at(iov[0].base, OUT_HEADER.size))
            if error == 0 and count == 2 and iov[1].len >= INIT_OUT_SIZE:
                self._patch_init(iov[1].base)
        elif iov[1].len == OPEN_OUT.size:
            self._patch_open(iov[1].base)

    def _patch_open(self, out: int) -> None:
        fh, flags, _ = OPEN_OUT.unpack(ctypes.string_at(out, OPEN_OUT.size))
        mark = self._marks.pop(fh, None)
        if mark is not None:
            backing, direct = mark
            flags = (flags & ~FOPEN_KEEP_CACHE) | FOPEN_PASSTHROUGH | (FOPEN_DIRECT_IO if direct else 0)
            ctypes.memmove(out, OPEN_OUT.pack(fh, flags, backing), OPEN_OUT.size)

    def _patch_init(self, out: int) -> None:
        major, _, _, flags = INIT_OUT_HEAD.unpack(ctypes.string_at(out, INIT_OUT_HEAD.size))
        if major != 7 or not flags & FUSE_INIT_EXT:  # INIT_EXT: the kernel reads flags2
            return
        ctypes.c_uint32.from_address(out + INIT_OUT_FLAGS2).value |= (FUSE_PASSTHROUGH | FUSE_DIRECT_IO_ALLOW_MMAP) >> 32
        ctypes.c_uint32.from_address(out + INIT_OUT_STACK_DEPTH).value = MAX_STACK_DEPTH
        self.asked = True


@dataclass(frozen=True)
class Route:
    """How one open goes (:meth:`Backings.open`): through the page cache (the default), in passthrough to
    ``backing``, and/or with ``direct`` I/O (reads come to the daemon and skip the page cache)."""

    backing: int | None = None
    direct: bool = False


PAGE_CACHE = Route()


@dataclass
class _Path:
    """What one mount path (one kernel inode) has open, and its backing file."""

    cached: int = 0  # handles open through the page cache
    passthrough: int = 0  # handles open in passthrough
    backing: int | None = None  # its backing id (kept while idle, see IDLE_BACKINGS)
    etag: str = ""  # the content of that backing file
    stale: bool = False  # a refresh changed the path: drop the backing once idle


class Backings:
    """Per-path io modes, and backing ids on ``channel.fd`` (see the module docstring)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._paths: dict[str, _Path] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()  # paths holding a backing and no handle
        self._lock = threading.Lock()
        self._warned = False

    def probe(self, where: Path) -> str:
        """Whether the kernel takes backing files of ``where``'s file system (the cache's): registers and
        drops an unnamed file there, and turns passthrough on when that works. Says how it went, in words."""
        if not self.channel.asked:
            return "off (the kernel did not offer it)"
        try:
            where.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=where) as f:
                backing = self._ioctl_open(f.fileno())
        except OSError as exc:
            return f"off (the kernel refused a backing file in {where}: {os.strerror(exc.errno or 0)})"
        self._close(backing)
        self.channel.enabled = True
        return "on"

    def open(self, path: str, etag: str, blob_fd: int | None, *, direct: bool = False) -> Route:
        """Count an open of ``path`` (content ``etag``; ``blob_fd``: its complete cached blob, if any) and
        say how it goes: in passthrough when the path is (reads still come to the daemon when it passes
        through to earlier content) or when its blob is complete and no page-cache handle is open; else
        through the page cache, or with direct I/O when the caller asks for it (``direct``) and
        passthrough is on."""
        with self._lock:
            state = self._paths.setdefault(path, _Path())
            self._idle.pop(path, None)
            if state.passthrough and state.backing is not None:
                state.passthrough += 1
                return Route(state.backing, state.etag != etag)
            if state.cached or blob_fd is None or not self.channel.enabled:
                state.cached += 1
                return Route(direct=direct and blob_fd is None and self.channel.enabled)
            if state.backing is not None and (state.etag != etag or state.stale):
                self._close(state.backing)
                state.backing = None
            if state.backing is None:
                state.backing, state.etag, state.stale = self._register(blob_fd), etag, False
            if state.backing is None:
                state.cached += 1
                return PAGE_CACHE
            state.passthrough += 1
            return Route(state.backing)

    def release(self, path: str, passthrough: bool) -> None:
        """A handle of ``path`` opened as :meth:`open` said (``passthrough``: with a backing id) closed."""
        with self._lock:
            state = self._paths.get(path)
            if state is None:
                return
            if passthrough:
                state.passthrough -= 1
            else:
                state.cached -= 1
            if state.passthrough or state.cached:
                return
            if state.backing is None:
                del self._paths[path]
            elif state.stale:
                self._close(state.backing)
                del self._paths[path]
            else:
                self._idle[path] = None
                while len(self._idle) > IDLE_BACKINGS:
                    old, _ = self._idle.popitem(last=False)
                    gone = self._paths.pop(old)
                    if gone.backing is not None:
                        self._close(gone.backing)

    def changed(self, paths: list[str]) -> None:
        """A refresh changed ``paths``: their backing files go once no handle uses them."""
        with self._lock:
            for path in paths:
                state = self._paths.get(path)
                if state is None:
                    continue
                state.stale = True
                if path in self._idle:
                    del self._idle[path]
                    del self._paths[path]
                    if state.backing is not None:
                        self._close(state.backing)

    def _ioctl_open(self, fd: int) -> int:
        backing: int = fcntl.ioctl(self.channel.fd, FUSE_DEV_IOC_BACKING_OPEN, bytearray(struct.pack("<iIQ", fd, 0, 0)))
        return backing

    def _register(self, blob_fd: int) -> int | None:
        try:
            return self._ioctl_open(blob_fd)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("FUSE passthrough refused a cached blob (%s): such files are read through the "
                            "daemon", errno.errorcode.get(exc.errno or 0, exc))
            return None

    def _close(self, backing: int) -> None:
        try:
            fcntl.ioctl(self.channel.fd, FUSE_DEV_IOC_BACKING_CLOSE, bytearray(struct.pack("<I", backing)))
        except OSError as exc:
            log.debug("closing backing id %d: %s", backing, exc)


__all__ = ["PAGE_CACHE", "Backings", "Channel", "CustomIO", "Route"]
