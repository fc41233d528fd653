"""A minimal mfusepy file system for bench_mount's ``--compare-minimal``: what any Python FUSE daemon reaches here.

``python minimal_fuse.py MOUNTPOINT URL SIZE`` (token in ``HF_TOKEN``) mounts one read-only file, ``big.bin``, of
``SIZE`` bytes, in the foreground until unmounted. One thread streams ``URL`` with a single GET (``http.client``,
1 MiB ``readinto`` s into ``malloc`` ed pieces, at most :data:`AHEAD` pieces ahead of the reader); the file opens with
direct I/O, so every 1 MiB ``read()`` of the application is one FUSE request, answered by handing the piece to
libfuse (``read_buf``), which sends and frees it. Nothing is kept, hashed or cached, and no hubfs code runs: the
bytes are received once and copied once more, by the kernel, into the reader's buffer. Only one reader, reading from
the start in 1 MiB calls into a page-aligned buffer (as ``dd bs=1M``), is served; any other read fails with EIO.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import http.client
import os
import stat
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

os.environ["FUSE_LIBRARY_NAME"] = "fuse3"
import mfusepy

PIECE = 1 << 20
AHEAD = 16  # pieces received ahead of the reader


# libfuse 3's struct fuse_buf and struct fuse_bufvec, as hubfs.mount.readers declares them: repeated here on purpose,
# so that this file system runs no hubfs code at all.
class _FuseBuf(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class _FuseBufvec(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", _FuseBuf * 1)]


libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p


class Stream:
    """The file's pieces, received in order by one thread; :meth:`take` hands one out (its ``malloc`` address)."""

    def __init__(self, url: str, size: int, token: str) -> None:
        self.url, self.size, self.token = url, size, token
        self.ready: dict[int, int] = {}
        self.cond = threading.Condition()
        self.failed = False
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        try:
            parts = urlsplit(self.url)
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
            conn.request("GET", parts.path, headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise OSError(f"GET answered {resp.status}")
            for offset in range(0, self.size, PIECE):
                n = min(PIECE, self.size - offset)
                mem = libc.malloc(n)
                view = memoryview((ctypes.c_char * n).from_address(mem)).cast("B")
                got = 0
                while got < n:
                    k = resp.readinto(view[got:])
                    if not k:
                        raise OSError("the body ended early")
                    got += k
                with self.cond:
                    while len(self.ready) >= AHEAD:
                        self.cond.wait()
                    self.ready[offset] = mem
                    self.cond.notify_all()
        except (OSError, http.client.HTTPException) as exc:
            print(f"minimal_fuse: {exc}", file=sys.stderr, flush=True)
            with self.cond:
                self.failed = True
                self.cond.notify_all()

    def take(self, offset: int) -> int:
        with self.cond:
            while offset not in self.ready and not self.failed:
                self.cond.wait()
            if offset not in self.ready:
                raise mfusepy.FuseOSError(errno.EIO)
            mem = self.ready.pop(offset)
            self.cond.notify_all()
            return mem


class MinimalFS(mfusepy.Operations):  # type: ignore[misc]
    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def init_with_config(self, conn: Any, config: Any) -> None:
        conn.max_write = PIECE
        conn.max_readahead = 16 * PIECE

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2}
        if path == "/big.bin":
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": self.stream.size}
        raise mfusepy.FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", "big.bin"]

    def open(self, path: str, fi: Any) -> int:
        fi.direct_io = 1
        return 0

    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        size = max(0, min(size, self.stream.size - offset))
        if size and (offset % PIECE or size != min(PIECE, self.stream.size - offset)):
            return -errno.EIO  # not a sequential 1 MiB reader
        try:
            mem = self.stream.take(offset) if size else None
        except mfusepy.FuseOSError:
            return -errno.EIO
        vec = libc.malloc(ctypes.sizeof(_FuseBufvec))
        v = _FuseBufvec.from_address(vec)
        v.count, v.idx, v.off = 1, 0, 0
        v.buf[0].size, v.buf[0].flags, v.buf[0].mem, v.buf[0].fd, v.buf[0].pos = size, 0, mem, -1, 0
        ctypes.cast(bufpp, ctypes.POINTER(ctypes.c_void_p))[0] = vec  # libfuse sends and frees both
        return 0


def main() -> None:
    mountpoint, url, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stream = Stream(url, size, os.environ.get("HF_TOKEN", ""))
    mfusepy.FUSE(MinimalFS(stream), mountpoint, foreground=True, nothreads=False, ro=True, raw_fi=True)


if __name__ == "__main__":
    main()
