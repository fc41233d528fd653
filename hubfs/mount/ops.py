"""The FUSE operations of a hubfs mount (mfusepy over libfuse3, multi-threaded, path based).

Reads go through a :class:`~hubfs.mount.repo.Namespace` (one repo, or the whole hub) for metadata and
:class:`~hubfs.mount.readers.Readers` for bytes; nothing here speaks HTTP. Contract:

- ``init``: reads and writes of up to 1 MiB per request (``max_write``; the read size follows once the
  daemon raises the bdi read-ahead, see :mod:`hubfs.mount.kernel`), ``max_background`` 64, entry and
  attribute timeouts from :class:`Timeouts`, negative lookups kept ``NEGATIVE_TTL`` (1 s);
- ``open`` builds one :class:`~hubfs.client.reader.FileReader` per handle (positional, thread-safe:
  the kernel's concurrent read-ahead requests share it, put back in file order by
  :class:`~hubfs.mount.inorder.InOrder` unless it reads a complete cached blob) and sets ``keep_cache``
  when the kernel's cached pages of that path hold the same content (same etag), so warm re-reads and
  ``mmap`` come from the page cache. With ``backings`` (FUSE passthrough,
  :mod:`hubfs.mount.passthrough`) a file whose complete blob is cached is handed to the kernel instead,
  which then reads and maps the blob without asking the daemon; with ``direct_reads`` a big weight or
  data file that is not cached yet opens with ``direct_io`` (:func:`reads_direct`; mmap still works:
  passthrough kernels map direct I/O files);
- ``read_buf`` (what libfuse calls; ``read`` serves direct callers): the reply goes out without a copy
  through Python ``bytes`` (:func:`hubfs.mount.readers.reply`);
- a refresh that changes files calls :meth:`HubOperations.changed`: those paths' pages and attributes
  are dropped (``fuse_invalidate_path``) and their next open does not keep the cache;
- errors: every exception becomes an errno through :func:`hubfs.errors.errno_for` (ENOENT, EACCES,
  EIO, ...); a folder opened as a file is EISDIR.

Writes: every call that changes something is forwarded to ``self.writes``, a :class:`WriteOps`. A
read-only mount uses :class:`ReadOnly` (EROFS for all, and the kernel mount is ``ro`` too); the
read-write mount plugs its staging in there (:class:`~hubfs.mount.writable.StagedWrites`, or
:class:`~hubfs.mount.hub_writes.HubWrites` for a whole hub), and a handle
it returns from ``create``/``open_write``/``open_read`` (a staged file's local copy, asked first by
``open``) lives in the same handle table as readers (it only needs ``read`` and ``close``). Files and
folders show writable modes on a read-write mount (or the mode, owner and times it kept for them, see
:class:`~hubfs.mount.repo.Node`); ``destroy`` closes the staging (which commits). ``statfs``: see its
docstring; folder link counts: 2 + subfolders.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hubfs.errors import errno_for
from hubfs.mount.inorder import InOrder
from hubfs.mount.libfuse import Invalidator, load
from hubfs.mount.passthrough import PAGE_CACHE, Backings
from hubfs.mount.readers import Readers, reply
from hubfs.mount.repo import NEGATIVE_TTL, Namespace, Node

_fuse = load()
Operations: Any = _fuse.Operations  # mfusepy has no types
log = logging.getLogger("hubfs.mount")

MAX_REQUEST = 1 << 20  # bytes per FUSE read or write request (the kernel's limit: 256 pages)
MAX_READAHEAD = 16 << 20  # offered in init; the bdi read_ahead_kb written after init is what counts
MAX_BACKGROUND = 64  # async requests (read-ahead) in flight; the kernel default is 12
BLKSIZE = 1 << 20  # st_blksize: cp, cat and friends read this much at a time
FRSIZE = 4096  # statfs: the block size df counts in
NAME_MAX = 255
F = TypeVar("F", bound=Callable[..., Any])


DIRECT_MIN = 64 << 20  # files at least this big may be read with direct I/O (see reads_direct)
# formats whose readers read big ranges or map the file (never line by line): weights, arrays, columnar data
DIRECT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack",
                   ".npy", ".npz", ".parquet", ".arrow", ".tflite", ".pb")


def reads_direct(path: str, size: int) -> bool:
    """Whether a cold open of ``path`` (``size`` bytes) should skip the page cache (``FOPEN_DIRECT_IO``).

    Direct I/O sends every application read to the daemon as it is, and copies the daemon's bytes
    straight into the application's buffer: a 1 MiB ``read()`` costs one copy instead of two (daemon to
    page cache, page cache to application) and no page-cache pages, but a 4 KiB ``read()`` is a round trip
    of its own. So only big files in formats read in big ranges or mapped go that way; the warm re-read
    of such a file passes through to its then complete blob (:mod:`hubfs.mount.passthrough`).

    Off unless ``HUBFS_MOUNT_DIRECT_READS=1``: on a 2-core machine a cold 1 GiB read in 1 MiB calls ran
    at 1,180 against 583 MiB/s through the page cache (bench_mount), the same with 128 KiB calls, but
    1.7x, 2.2x and 5.4x slower with 64, 32 and 8 KiB ones (``sha256sum`` reads 32 KiB; each request is a
    round trip through the daemon)."""
    return size >= DIRECT_MIN and path.lower().endswith(DIRECT_SUFFIXES)


@dataclass(frozen=True)
class Timeouts:
    """Seconds the kernel may trust an entry, its attributes, and a miss (libfuse ``fuse_config``)."""

    entry: float = 60.0
    attr: float = 60.0
    negative: float = NEGATIVE_TTL


class Handle(Protocol):
    """An open file: readers of the hub, or a writable file of the staging area."""

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class WriteOps(Protocol):
    """Every change a mount may be asked for (paths have no leading slash). The read-write mount's
    staging implements this; :class:`ReadOnly` refuses everything with EROFS."""

    def create(self, path: str, mode: int, owner: tuple[int, int] | None = None) -> Handle:
        """A new file, with ``mode`` and ``owner`` (uid, gid: the caller's)."""
        ...
    def open_write(self, path: str, flags: int) -> Handle: ...
    def write(self, handle: Handle, data: bytes, offset: int) -> int: ...
    def truncate(self, path: str, length: int, handle: Handle | None) -> None: ...
    def flush(self, handle: Handle) -> None: ...
    def fsync(self, handle: Handle, datasync: bool, path: str = "") -> None: ...
    def unlink(self, path: str) -> None: ...
    def mkdir(self, path: str, mode: int, owner: tuple[int, int] | None = None) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def rename(self, old: str, new: str, flags: int = 0) -> None:
        """rename(2); ``flags``: renameat2's (RENAME_NOREPLACE, RENAME_EXCHANGE, ...)."""
        ...
    def chmod(self, path: str, mode: int) -> None: ...
    def chown(self, path: str, uid: int, gid: int) -> None: ...
    def utimens(self, path: str, times: tuple[int, int] | None) -> None:
        """``times``: (atime, mtime) in ns, UTIME_NOW/UTIME_OMIT as libfuse passes them; None: now."""
        ...
    def refuse(self, what: str, path: str) -> None:
        """Links, symlinks, fifos, device nodes."""
        ...
    def space(self) -> os.statvfs_result | None:
        """The disk changes are staged on (its free space is the mount's); None: a read-only mount."""
        ...
    def open_read(self, path: str) -> Handle | None:
        """A read handle of a file staged here (its local copy); None: read the hub."""
        ...
    def close(self) -> None:
        """Unmount: commit what is staged."""
        ...


class ReadOnly:
    """The :class:`WriteOps` of a read-only mount: EROFS for every change; flush and fsync do nothing."""

    def _erofs(self, *args: Any) -> Any:
        raise _fuse.FuseOSError(errno.EROFS)

    create = open_write = write = truncate = unlink = mkdir = rmdir = rename = refuse = _erofs
    chmod = chown = utimens = _erofs

    def flush(self, handle: Handle) -> None:
        return None

    def fsync(self, handle: Handle, datasync: bool, path: str = "") -> None:
        return None

    def space(self) -> os.statvfs_result | None:
        return None

    def open_read(self, path: str) -> Handle | None:
        return None

    def close(self) -> None:
        return None


def _caller() -> tuple[int, int]:
    """(uid, gid) of the process whose request is being served (the owner of what it creates)."""
    uid, gid, _ = _fuse.fuse_get_context()
    return uid, gid


def _errno(fn: F) -> F:
    """Turn any exception of ``fn`` into a FuseOSError with the errno it stands for (logged when EIO)."""

    @functools.wraps(fn)
    def call(self: HubOperations, *args: Any) -> Any:
        try:
            return fn(self, *args)
        except _fuse.FuseOSError:
            raise
        except Exception as exc:  # every failure must become an errno, never a crash
            code = errno_for(exc)
            if code == errno.EIO:
                log.warning("%s %s: EIO: %s", fn.__name__, args[0] if args else "", exc)
            raise _fuse.FuseOSError(code) from exc

    return call  # type: ignore[return-value]


@dataclass
class _Paths:
    """Which content the kernel may hold in its page cache per mount path, and what is open."""

    cached: dict[str, str] = field(default_factory=dict)  # path -> etag of the pages the kernel may hold
    open: dict[str, dict[str, int]] = field(default_factory=dict)  # path -> etag -> open handles


class HubOperations(Operations):
    """The mount's FUSE operations over ``ns`` (see the module docstring); pass to ``mfusepy.FUSE`` with
    ``raw_fi=True``. ``changed`` is the listener repo views report refreshed files to."""

    use_ns = True  # times in ns

    def __init__(self, ns: Namespace, readers: Readers, *, timeouts: Timeouts | None = None,
                 writes: WriteOps | None = None, stream_window: int = MAX_REQUEST,
                 backings: Backings | None = None, direct_reads: bool = False) -> None:
        """``stream_window``: the kernel's read-ahead window in bytes (the bdi ``read_ahead_kb``): how far
        ahead of a stream its read-ahead requests may come (see :mod:`hubfs.mount.inorder`).
        ``backings``: FUSE passthrough of cached blobs (:mod:`hubfs.mount.passthrough`), or None.
        ``direct_reads``: with passthrough, files :func:`reads_direct` picks that are not cached yet open
        with direct I/O."""
        self.ns, self.readers = ns, readers
        self.stream_window = stream_window
        self.timeouts = timeouts or Timeouts()
        self.writes: WriteOps = writes or ReadOnly()
        self._write_bits = 0 if isinstance(self.writes, ReadOnly) else 0o200  # rw-r--r-- on a read-write mount
        self.invalidator = Invalidator()
        self.initialized = threading.Event()
        self.uid, self.gid = os.getuid(), os.getgid()
        self._handles: dict[int, tuple[Handle, str, str]] = {}  # fh -> (handle, mount path, etag)
        self.backings = backings
        self.direct_reads = direct_reads
        self._through: set[int] = set()  # handles opened in passthrough
        self._paths = _Paths()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        conn.max_write = MAX_REQUEST
        conn.max_readahead = MAX_READAHEAD
        conn.max_background = MAX_BACKGROUND
        conn.congestion_threshold = MAX_BACKGROUND * 3 // 4
        if config is not None:
            config.entry_timeout = self.timeouts.entry
            config.attr_timeout = self.timeouts.attr
            config.negative_timeout = self.timeouts.negative
            config.kernel_cache = 0  # keep_cache is decided per open, below
        self.invalidator.attach(_fuse)
        self.initialized.set()

    def destroy(self, path: str) -> None:
        self.invalidator.detach()
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle, _, _ in handles:
            handle.close()
        try:
            self.writes.close()  # a read-write mount commits what is staged
        except Exception:
            log.exception("closing the staging area failed (the changes stay staged for the next mount)")

    def changed(self, prefix: str, paths: list[str]) -> None:
        """Files under ``prefix`` (a repo's mount path) changed: drop what the kernel holds of them."""
        full = [f"{prefix}/{p}" if prefix else p for p in paths]
        with self._lock:
            for p in full:
                self._paths.cached.pop(p, None)
        if self.backings is not None:
            self.backings.changed(full)
        self.invalidator.invalidate(full)

    # -- metadata -----------------------------------------------------------------------------------------

    def _node(self, path: str) -> Node:
        node = self.ns.lookup(path.strip("/"))
        if node is None:
            raise _fuse.FuseOSError(errno.ENOENT)
        return node

    def _stat(self, node: Node) -> dict[str, Any]:
        bits = node.mode if node.mode is not None else ((0o555 if node.is_dir else 0o444) | self._write_bits)
        mtime = node.mtime_ns
        return {"st_mode": (stat.S_IFDIR if node.is_dir else stat.S_IFREG) | bits,
                "st_nlink": node.nlink if node.is_dir else 1, "st_size": node.size,
                "st_blocks": (node.size + 511) // 512, "st_blksize": BLKSIZE,
                "st_uid": self.uid if node.uid is None else node.uid, "st_gid": self.gid if node.gid is None else node.gid,
                "st_mtime": mtime, "st_ctime": max(mtime, node.ctime_ns or 0),
                "st_atime": mtime if node.atime_ns is None else node.atime_ns}

    @_errno
    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        return self._stat(self._node(path))

    @_errno
    def opendir(self, path: str) -> int:
        if not self._node(path).is_dir:
            raise _fuse.FuseOSError(errno.ENOTDIR)
        return 0

    @_errno
    def readdir(self, path: str, fh: int) -> list[Any]:
        listed = self.ns.listdir(path.strip("/"))
        if listed is None:
            raise _fuse.FuseOSError(errno.ENOTDIR)
        return [".", "..", *((name, {"st_mode": stat.S_IFDIR if is_dir else stat.S_IFREG}, 0)
                             for name, is_dir in listed)]

    @_errno
    def statfs(self, path: str) -> dict[str, int]:
        """``df``: used = the files of the commits shown (the repos listed so far); free = the staging disk's
        free space on a read-write mount, 0 on a read-only one. Blocks of ``FRSIZE`` bytes."""
        views = [v for v in self.ns.views() if v.listed]
        used = sum(v.tree().total_size for v in views)
        files = sum(len(v.tree().entries) for v in views)
        free = free_files = 0
        disk = self.writes.space()
        if disk is not None:
            free, free_files = disk.f_bavail * disk.f_frsize // FRSIZE, disk.f_favail
        return {"f_bsize": FRSIZE, "f_frsize": FRSIZE, "f_blocks": (used + FRSIZE - 1) // FRSIZE + free,
                "f_bfree": free, "f_bavail": free, "f_files": files + free_files, "f_ffree": free_files,
                "f_favail": free_files, "f_namemax": NAME_MAX}

    # -- reading ------------------------------------------------------------------------------------------

    @_errno
    def open(self, path: str, fi: Any) -> int:
        rel = path.strip("/")
        if fi.flags & os.O_ACCMODE != os.O_RDONLY or fi.flags & os.O_TRUNC:
            return self._register(fi, self.writes.open_write(rel, fi.flags), rel, "", keep=False)
        staged = self.writes.open_read(rel)  # a file a read-write mount staged: its local copy
        if staged is not None:
            return self._register(fi, staged, rel, "", keep=False)
        node = self._node(rel)
        if node.is_dir or node.view is None:
            raise _fuse.FuseOSError(errno.EISDIR)
        opened = self.readers.open(node.view.target(node), for_kernel=True)
        route = PAGE_CACHE
        if self.backings is not None and node.etag:
            route = self.backings.open(rel, node.etag, opened.blob_fd,
                                       direct=self.direct_reads and reads_direct(rel, node.size))
        # a cached blob needs no order (read_buf passes its fd); else the kernel reads ahead up to two windows
        # (the current one and the next, asynchronously)
        reader: Handle = opened if opened.local else InOrder(opened, 2 * self.stream_window + MAX_REQUEST)
        with self._lock:
            others = self._paths.open.get(rel, {})
            keep = self._paths.cached.get(rel) == node.etag and all(e == node.etag for e in others)
            if route.backing is None:
                self._paths.cached[rel] = node.etag
        self._register(fi, reader, rel, node.etag, keep=keep and route == PAGE_CACHE,
                       direct=route.direct and route.backing is None)
        if route.backing is not None and self.backings is not None:
            with self._lock:
                self._through.add(fi.fh)
            # the OPEN reply passes it through (see passthrough.py)
            self.backings.channel.mark(fi.fh, route.backing, route.direct)
        return 0

    def _register(self, fi: Any, handle: Handle, path: str, etag: str, *, keep: bool, direct: bool = False) -> int:
        with self._lock:
            fh = next(self._ids)
            self._handles[fh] = (handle, path, etag)
            counts = self._paths.open.setdefault(path, {})
            counts[etag] = counts.get(etag, 0) + 1
        fi.fh = fh
        fi.keep_cache = 1 if keep else 0
        fi.direct_io = 1 if direct else 0
        return 0

    @_errno
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        data = self._handle(fi).read(offset, size)  # libfuse calls read_buf; this serves direct callers
        return data if isinstance(data, bytes) else bytes(data)

    @_errno
    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        """What libfuse calls instead of ``read``: the reply goes out without mfusepy's copy, and a cached
        blob's pages without any Python (see :func:`hubfs.mount.readers.reply`)."""
        return reply(bufpp, self._handle(fi), offset, size)

    @_errno
    def release(self, path: str, fi: Any) -> int:
        with self._lock:
            handle, rel, etag = self._handles.pop(fi.fh, (None, "", ""))
            counts = self._paths.open.get(rel, {})
            if etag in counts:
                counts[etag] -= 1
                if counts[etag] <= 0:
                    del counts[etag]
            if not counts:
                self._paths.open.pop(rel, None)
            through = fi.fh in self._through
            self._through.discard(fi.fh)
        if self.backings is not None and handle is not None and etag:
            self.backings.channel.unmark(fi.fh)
            self.backings.release(rel, through)
        if handle is not None:
            handle.close()
        return 0

    def _handle(self, fi: Any) -> Handle:
        found = self._handles.get(fi.fh)
        if found is None:
            raise _fuse.FuseOSError(errno.EBADF)
        return found[0]

    @_errno
    def flush(self, path: str, fi: Any) -> int:
        self.writes.flush(self._handle(fi))
        return 0

    @_errno
    def fsync(self, path: str, datasync: int, fi: Any) -> int:
        self.writes.fsync(self._handle(fi), bool(datasync), (path or "").strip("/"))
        return 0

    # -- changes: all forwarded to self.writes (the read-write mount's staging plugs in here) -------------

    @_errno
    def create(self, path: str, mode: int, fi: Any) -> int:
        rel = path.strip("/")
        return self._register(fi, self.writes.create(rel, mode, _caller()), rel, "", keep=False)

    @_errno
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        return self.writes.write(self._handle(fi), data, offset)

    @_errno
    def truncate(self, path: str, length: int, fi: Any = None) -> int:
        self.writes.truncate(path.strip("/"), length, self._handle(fi) if fi is not None else None)
        return 0

    @_errno
    def unlink(self, path: str) -> int:
        self.writes.unlink(path.strip("/"))
        return 0

    @_errno
    def mkdir(self, path: str, mode: int) -> int:
        self.writes.mkdir(path.strip("/"), mode, _caller())
        return 0

    @_errno
    def rmdir(self, path: str) -> int:
        self.writes.rmdir(path.strip("/"))
        return 0

    @_errno
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        self.writes.rename(old.strip("/"), new.strip("/"), flags)  # flags: see libfuse.HubFUSE
        return 0

    @_errno
    def chmod(self, path: str, mode: int) -> int:
        self.writes.chmod(path.strip("/"), mode)
        return 0

    @_errno
    def chown(self, path: str, uid: int, gid: int) -> int:
        self.writes.chown(path.strip("/"), uid, gid)
        return 0

    @_errno
    def utimens(self, path: str, times: Any = None) -> int:
        self.writes.utimens(path.strip("/"), tuple(times) if times is not None else None)
        return 0

    @_errno
    def symlink(self, target: str, source: str) -> int:
        self.writes.refuse("symlink", target.strip("/"))
        return 0

    @_errno
    def link(self, target: str, source: str) -> int:
        self.writes.refuse("link", target.strip("/"))
        return 0

    @_errno
    def mknod(self, path: str, mode: int, dev: int) -> int:
        self.writes.refuse("mknod", path.strip("/"))
        return 0


__all__ = ["BLKSIZE", "MAX_BACKGROUND", "MAX_REQUEST", "HubOperations", "ReadOnly", "Timeouts", "WriteOps"]
