"""The read-write mount (``hubfs mount REPO[@BRANCH] MOUNTPOINT --read-write``): a branch's commit with a
:class:`~hubfs.mount.staging.StagingArea` on top.

- :class:`Overlaid` is the :class:`~hubfs.mount.repo.Namespace` the FUSE operations read through: the
  staging area first (a deleted path is missing, a staged folder is a folder, a staged file is its local
  copy or, after a rename, the unchanged remote object it names), then the commit shown. A folder lists
  the remote names minus the deleted ones (none when the folder is opaque: a remote folder deleted and
  made again) plus the staged ones.
- :class:`StagedWrites` is the :class:`~hubfs.mount.ops.WriteOps` of the mount: every change is checked
  against that combined view first (ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, as POSIX says), then staged.
  A file opened for writing is copied up from the hub only at its first write (``touch`` or an open
  without writes downloads nothing); ``O_TRUNC`` and new files never copy. Reads of a staged file come
  from its local copy (never ``keep_cache``). ``fsync`` commits everything staged at once (EIO when the
  commit fails; the changes stay staged). Hard links, symlinks, fifos and device nodes are refused with
  EPERM, and so are chmod/chown of remote files. Files and folders made or staged here keep their mode,
  owner (the creator's uid/gid) and times (``utimensat``) until committed; ``touch`` of a remote file is
  remembered for the life of the mount (the Hub stores no modes, owners or times). ``rename`` honours
  RENAME_NOREPLACE (EEXIST) and RENAME_EXCHANGE (a swap, journaled as one change). Folder link counts are
  2 + the subfolders shown; adding or removing an entry sets its folder's mtime (kept in memory).
- The staging area commits (one commit per batch) on close plus a debounce, on ``fsync`` and at unmount
  (:meth:`StagedWrites.close`); after each commit the view switches to the new commit
  (:meth:`~hubfs.mount.repo.RepoView.show`), which drops the kernel's cache of the files it changed.

Staged changes live in :func:`staging_root` (``<cache>/hubfs-staging/<repo folder>/<branch>``), the same
for every mount of one repo and branch: a mount killed with changes staged leaves them there, and the next
mount of that branch commits them. Only branches can be mounted read-write (:func:`check_branch`).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hubfs.client.api import HubClient
from hubfs.client.cache import repo_folder
from hubfs.client.snapshot import FileEntry, Snapshot
from hubfs.errors import HubfsError, MountError
from hubfs.mount.overlay import Attrs, Origin, Staged
from hubfs.mount.readers import Readers
from hubfs.mount.repo import Node, RepoView
from hubfs.mount.staging import Readable, StagingArea
from hubfs.paths import DEFAULT_REVISION, RepoRef, is_commit_sha

log = logging.getLogger("hubfs.mount")

STAGING_FOLDER = "hubfs-staging"
READ_PIECE = 8 << 20  # bytes per read of a copy-up from the hub


def staging_root(cache_dir: Path | str, repo: RepoRef, branch: str) -> Path:
    """Where the changes to ``repo``@``branch`` made through a mount are staged (stable across mounts)."""
    return Path(cache_dir) / STAGING_FOLDER / repo_folder(repo.type.value, repo.id) / quote(branch, safe="")


def check_branch(client: HubClient, repo: RepoRef, revision: str | None) -> str:
    """The branch a read-write mount of ``repo@revision`` commits to; :class:`MountError` for a commit sha or
    a tag (nothing to commit to). One request (the repo's refs) unless ``revision`` is a commit sha."""
    rev = revision or DEFAULT_REVISION
    if is_commit_sha(rev):
        raise MountError(f"{repo}@{rev} is a commit: --read-write needs a branch (commits go to a branch).")
    refs = client.transport.request("GET", client.api_path(repo.type.value, repo.id) + "/refs").json()
    branches = {str(b.get("name")) for b in refs.get("branches") or []}
    if rev in branches:
        return rev
    tags = {str(t.get("name")) for t in refs.get("tags") or []}
    what = "a tag" if rev in tags else "not a branch"
    raise MountError(f"{repo}@{rev} is {what}: --read-write needs a branch (commits go to a branch).")


def open_staged(client: HubClient, view: RepoView, readers: Readers, branch: str, *, debounce: float,
                on_commit: Callable[[str], None] | None = None) -> StagedWrites:
    """The write side of a read-write ``view`` of ``branch``: its staging area (:func:`staging_root`) opened,
    which recovers and schedules the commit of what a crashed mount of that branch left staged. After each
    commit the view shows it, then ``on_commit(sha)`` runs. :class:`~hubfs.errors.ConflictError` when another
    mount holds the branch read-write."""
    overlaid = Overlaid(view)

    def committed(sha: str) -> None:
        view.show(sha)  # the mount shows its own commit at once (and drops the kernel's cache of what changed)
        if on_commit is not None:
            on_commit(sha)

    overlaid.staging = StagingArea(client, view.repo, branch, staging_root(client.config.cache_dir, view.repo, branch),
                                   debounce=debounce, log=log, base=lambda: view.sha, on_commit=committed)
    log.info("read-write: changes to %s@%s staged in %s, committed %s s after the last one", view.repo, branch,
             overlaid.staging.root, debounce)
    return StagedWrites(overlaid, readers)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Overlaid:
    """The namespace of a read-write mount of one repo: ``view`` with ``staging`` on top (see the module
    docstring). ``staging`` may be set after construction (it needs the view's commit)."""

    def __init__(self, view: RepoView, staging: StagingArea | None = None) -> None:
        self.view, self._staging = view, staging
        self.touched: dict[str, tuple[int, int]] = {}  # remote path -> (atime, mtime) ns set by utimensat

    @property
    def staging(self) -> StagingArea:
        assert self._staging is not None, "Overlaid used before its staging area was set"
        return self._staging

    @staging.setter
    def staging(self, staging: StagingArea) -> None:
        self._staging = staging

    def lookup(self, path: str) -> Node | None:
        staged = self.staging.lookup(path) if path else None
        if staged is not None and staged.kind != "deleted":
            node = self._node(path, staged)
        else:
            node = self.view.lookup(path) if staged is None else None
            if node is None and path and path.rpartition("/")[2] in self.staging.implied(path.rpartition("/")[0]):
                # holds staged entries: a folder, whatever the hub has there (nothing, or a deleted one)
                node = Node(True, 0, self.view.tree().times.get("", 0))
        if node is None:
            return None
        if node.is_dir:  # staging may add or hide subfolders: count what the mount shows
            node = replace(node, nlink=2 + sum(1 for _, is_dir in self.listdir(path) or () if is_dir))
        touched = self.touched.get(path) if staged is None or staged.local is None else None
        return replace(node, atime_ns=touched[0], mtime_ns=touched[1]) if touched else node

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        staged = self.staging.lookup(path) if path else None
        if staged is not None and staged.kind == "file":
            return None
        remote = None if staged is not None and (staged.opaque or staged.kind == "deleted") else self.view.listdir(path)
        implied = self.staging.implied(path)
        children, deleted = self.staging.listdir(path)
        if (staged is None or staged.kind == "deleted") and remote is None and not implied and not children:
            return None
        names = {name: is_dir for name, is_dir in remote or () if name not in deleted}
        names.update((name, True) for name in implied)
        for name, child in children.items():
            names[name] = child.kind == "dir"
        return sorted(names.items())

    def views(self) -> list[RepoView]:
        return self.view.views()

    def remote_node(self, path: str) -> Node | None:
        """The file whose bytes the mount shows at ``path`` when it has no local copy: the commit's file, or
        the remote object a staged rename names. None for anything else (a folder, a local copy, nothing)."""
        node = self.lookup(path)
        return node if node is not None and not node.is_dir and node.view is not None else None

    def _node(self, path: str, staged: Staged) -> Node | None:
        if staged.kind == "deleted":
            return None
        a = staged.attrs
        mode, uid, gid = (a.mode, a.uid, a.gid) if a is not None else (None, None, None)
        if staged.kind == "dir":
            return Node(True, 0, _ns(staged.mtime), mode=mode, uid=uid, gid=gid)
        if staged.local is not None or staged.origin is None:  # a local copy: no view
            return Node(False, staged.size, staged.mtime_ns or _ns(staged.mtime), path=path, mode=mode, uid=uid,
                        gid=gid, atime_ns=staged.atime_ns, ctime_ns=staged.ctime_ns)
        origin = staged.origin
        return Node(False, origin.size, _ns(staged.mtime), self.view, origin.path, self._origin_entry(origin),
                    origin.commit)

    def _origin_entry(self, origin: Origin) -> FileEntry:
        """The entry of a renamed remote file in its commit (the tree shown, or one request for an older one)."""
        tree = self.view.tree()
        entry = tree.entry(origin.path) if tree.sha == origin.commit else None
        if entry is None:
            try:
                entry = Snapshot(self.view.client, self.view.repo, self.view.revision, origin.commit).entry(origin.path)
            except HubfsError as exc:
                log.debug("no entry for %s@%s: %s", origin.path, origin.commit, exc)
        if entry is None or entry.is_dir:
            entry = FileEntry(origin.path, origin.size, None, origin.lfs_oid)
        return entry


class LocalFile:
    """A read handle of a staged file's local copy."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Stream:
    """A FileReader read front to back (what a copy-up reads)."""

    def __init__(self, reader: Any) -> None:
        self.reader, self.pos = reader, 0

    def read(self, size: int = -1, /) -> bytes:
        size = READ_PIECE if size is None or size < 0 else size
        data: bytes = self.reader.read(self.pos, size)
        self.pos += len(data)
        return data

    def close(self) -> None:
        self.reader.close()


class WriteHandle:
    """A file open for writing: its local copy in the staging area, copied up at the first write (or
    ftruncate) when the file was not staged yet; until then reads come from what the mount shows."""

    def __init__(self, owner: StagedWrites, path: str, local: Path | None) -> None:
        self.owner, self.path = owner, path
        self._lock = threading.Lock()
        self._reader: Any = None
        self.local: Path | None = None
        self.fd = -1
        self.orphan = False  # unlinked before its first write
        self.remote: Node | None = None  # what it copies up from when orphaned
        if local is not None:
            self._adopt(local)
        else:
            self.remote = owner.ns.remote_node(path)
            with owner.lazy_lock:
                owner.lazy.add(self)

    def _adopt(self, local: Path) -> None:
        try:
            self.fd = os.open(local, os.O_RDWR)
        except BaseException:
            self.owner.staging.written(local)
            raise
        self.local = local

    def _writable(self, truncate: bool = False) -> int:
        with self._lock:
            if self.fd < 0:
                with self.owner.lazy_lock:  # from here on the staged copy follows renames and unlinks
                    path, orphan = self.path, self.orphan
                    self.owner.lazy.discard(self)
                if orphan:  # unlinked before its first write: an unnamed copy, never committed
                    node = self.remote
                    reader = self.owner.readers.open(node.view.target(node)) if node and node.view else None
                    try:
                        self.fd = _unnamed_copy(self.owner.staging.root / "tmp", reader, truncate)
                    finally:
                        if reader is not None:
                            reader.close()
                else:
                    self._adopt(self.owner.staging.open_for_write(path, self.owner.opener(path), truncate=truncate))
                    self.owner.ns.touched.pop(path, None)  # its local copy has times of its own
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            return self.fd

    def read(self, offset: int, length: int) -> bytes:
        with self._lock:
            fd, reader = self.fd, self._reader
            if fd < 0 and reader is None:
                reader = self._reader = self.owner.reader(self.path)
        if fd >= 0:
            return os.pread(fd, length, offset)
        return reader.read(offset, length) if reader is not None else b""

    def write(self, data: bytes, offset: int) -> int:
        return os.pwrite(self._writable(), data, offset)

    def truncate(self, length: int) -> None:
        os.ftruncate(self._writable(truncate=length == 0), length)

    def close(self) -> None:
        with self.owner.lazy_lock:
            self.owner.lazy.discard(self)
        with self._lock:
            reader, self._reader = self._reader, None
            fd, local, self.fd, self.local = self.fd, self.local, -1, None
        if reader is not None:
            reader.close()
        if fd >= 0:
            os.close(fd)
        if local is not None:
            self.owner.staging.written(local)


def _unnamed_copy(folder: Path, reader: Any, empty: bool) -> int:
    """A descriptor of an unnamed file holding what ``reader`` reads (nothing when ``empty``)."""
    with tempfile.TemporaryFile(dir=folder) as f:
        fd = os.dup(f.fileno())
    pos = 0
    while reader is not None and not empty:
        piece = reader.read(pos, READ_PIECE)
        if not piece:
            break
        os.pwrite(fd, piece, pos)
        pos += len(piece)
    return fd


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2  # renameat2 flags (linux/fs.h)
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2  # what libfuse passes for utimensat's special values


def _attrs(mode: int, owner: tuple[int, int] | None) -> Attrs:
    return Attrs(mode & 0o7777, *(owner or (None, None)))


def _times(times: tuple[int, int] | None, current: tuple[int, int]) -> tuple[int, int]:
    """(atime, mtime) in ns from utimens' ``times`` (None: both now; UTIME_NOW, UTIME_OMIT as utimensat says)."""
    now = time.time_ns()
    if times is None:
        return now, now
    a, m = (cur if t == UTIME_OMIT else now if t == UTIME_NOW else int(t) for t, cur in zip(times, current))
    return a, m


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


class StagedWrites:
    """The :class:`~hubfs.mount.ops.WriteOps` of a read-write mount (see the module docstring)."""

    def __init__(self, ns: Overlaid, readers: Readers) -> None:
        self.ns, self.readers = ns, readers
        self.lazy: set[WriteHandle] = set()  # write handles not copied up yet: they follow renames and unlinks
        self.lazy_lock = threading.Lock()

    def moved(self, old: str, new: str | None) -> None:
        """``old`` (and all under it) was renamed to ``new`` (None: deleted); what is at ``new`` was replaced."""
        touched = self.ns.touched
        for p in [p for p in list(touched) if (new is not None and _under(p, new)) or _under(p, old)]:
            times = touched.pop(p)
            if new is not None and _under(p, old):
                touched[new + p[len(old):]] = times
        with self.lazy_lock:
            for h in self.lazy:
                if new is not None and (h.path == new or h.path.startswith(new + "/")):
                    h.orphan = True
                if h.path == old or h.path.startswith(old + "/"):
                    if new is None:
                        h.orphan = True
                    else:
                        h.path = new + h.path[len(old):]

    def swapped(self, a: str, b: str) -> None:
        """What was at ``a`` (and under it) is at ``b`` now, and the other way round."""

        def other(p: str) -> str | None:
            return b + p[len(a):] if _under(p, a) else a + p[len(b):] if _under(p, b) else None

        touched = self.ns.touched
        moving = {p: touched.pop(p) for p in list(touched) if other(p) is not None}
        touched.update({other(p) or p: times for p, times in moving.items()})
        with self.lazy_lock:
            for h in self.lazy:
                h.path = other(h.path) or h.path

    @property
    def staging(self) -> StagingArea:
        return self.ns.staging

    # -- what writes start from ---------------------------------------------------------------------------

    def opener(self, path: str) -> Callable[[], Readable]:
        """What ``open_for_write`` copies up from: the bytes the mount shows at ``path`` (none: empty)."""

        def open_remote() -> Readable:
            node = self.ns.remote_node(path)
            if node is None or node.view is None:
                return io.BytesIO(b"")
            return _Stream(self.readers.open(node.view.target(node)))

        return open_remote

    def reader(self, path: str) -> Any:
        """A read handle of what the mount shows at ``path`` now (before a write handle copied it up)."""
        local = self.open_read(path)
        if local is not None:
            return local
        node = self.ns.remote_node(path)
        return self.readers.open(node.view.target(node)) if node is not None and node.view is not None else None

    def open_read(self, path: str) -> LocalFile | None:
        """A read handle of the local copy of ``path`` when it is staged; None: read the hub."""
        for _ in range(3):
            staged = self.staging.lookup(path)
            if staged is None or staged.kind != "file" or staged.local is None:
                return None
            try:
                return LocalFile(os.open(staged.local, os.O_RDONLY))
            except FileNotFoundError:  # committed and unstaged meanwhile: look again
                continue
        return None

    # -- files --------------------------------------------------------------------------------------------

    def create(self, path: str, mode: int, owner: tuple[int, int] | None = None) -> WriteHandle:
        self._parent_folder(path)
        handle = WriteHandle(self, path, self.staging.create(path, _attrs(mode, owner)))
        self.ns.touched.pop(path, None)
        self._dir_changed(path)
        return handle

    def open_write(self, path: str, flags: int) -> WriteHandle:
        node = self._existing(path)
        if node.is_dir:
            raise _fail(errno.EISDIR)
        if flags & os.O_TRUNC:
            self.ns.touched.pop(path, None)  # its local copy has times of its own
            return WriteHandle(self, path, self.staging.open_for_write(path, None, truncate=True))
        staged = self.staging.lookup(path)
        if staged is not None and staged.local is not None:  # staged already: no copy
            return WriteHandle(self, path, self.staging.open_for_write(path, self.opener(path), truncate=False))
        return WriteHandle(self, path, None)  # copied up at its first write

    def write(self, handle: Any, data: bytes, offset: int) -> int:
        if not isinstance(handle, WriteHandle):
            raise _fail(errno.EBADF)
        return handle.write(data, offset)

    def truncate(self, path: str, length: int, handle: Any) -> None:
        if isinstance(handle, WriteHandle):
            handle.truncate(length)
            return
        if self._existing(path).is_dir:
            raise _fail(errno.EISDIR)
        local = self.staging.open_for_write(path, self.opener(path) if length else None, truncate=length == 0)
        self.ns.touched.pop(path, None)
        try:
            os.truncate(local, length)
        finally:
            self.staging.written(local)

    def flush(self, handle: Any) -> None:
        return None  # commits follow the release of write handles (plus a debounce), and fsync

    def fsync(self, handle: Any, datasync: bool, path: str = "") -> None:
        try:
            self.staging.flush()
        except Exception as exc:  # logged by the staging area; the changes stay staged
            raise _fail(errno.EIO) from exc

    # -- names ----------------------------------------------------------------------------------------------

    def unlink(self, path: str) -> None:
        if self._existing(path).is_dir:
            raise _fail(errno.EISDIR)
        with self.lazy_lock:  # no copy-up starts meanwhile
            self.staging.unlink(path)
        self.moved(path, None)
        self._keep_parent(path)
        self._dir_changed(path)

    def mkdir(self, path: str, mode: int, owner: tuple[int, int] | None = None) -> None:
        self._parent_folder(path)
        if self.ns.lookup(path) is not None:
            raise _fail(errno.EEXIST)
        self.staging.mkdir(path, _attrs(mode, owner))
        self._dir_changed(path)

    def rmdir(self, path: str) -> None:
        if not path:
            raise _fail(errno.EBUSY)
        if not self._existing(path).is_dir:
            raise _fail(errno.ENOTDIR)
        if self.ns.listdir(path):
            raise _fail(errno.ENOTEMPTY)
        self.staging.rmdir(path)
        self.moved(path, None)
        self._keep_parent(path)
        self._dir_changed(path)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        """rename(2), and renameat2's RENAME_NOREPLACE (EEXIST when ``new`` exists) and RENAME_EXCHANGE (both
        must exist; swapped in one journal record batch); other flags (RENAME_WHITEOUT): EINVAL."""
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            log.info("rename %s -> %s: flags %#x refused (EINVAL)", old, new, flags)
            raise _fail(errno.EINVAL)
        if flags & RENAME_EXCHANGE:
            self._existing(old)
            self._existing(new)
            if old != new:
                with self.lazy_lock:
                    self.staging.exchange(old, new)
                self.swapped(old, new)
                self._dir_changed(old)
                self._dir_changed(new)
            return
        src = self._existing(old)
        if old == new and not flags:
            return
        if new.startswith(old + "/"):
            raise _fail(errno.EINVAL)
        self._parent_folder(new)
        dst = self.ns.lookup(new)
        if dst is not None and flags & RENAME_NOREPLACE:
            raise _fail(errno.EEXIST)
        if dst is not None:
            if src.is_dir and not dst.is_dir:
                raise _fail(errno.ENOTDIR)
            if not src.is_dir and dst.is_dir:
                raise _fail(errno.EISDIR)
            if dst.is_dir and self.ns.listdir(new):
                raise _fail(errno.ENOTEMPTY)
        with self.lazy_lock:
            self.staging.rename(old, new)
        self.moved(old, new)
        self._keep_parent(old)
        self._dir_changed(old)
        self._dir_changed(new)

    def refuse(self, what: str, path: str) -> None:
        """Links, symlinks, fifos, device nodes: EPERM (the Hub has none)."""
        log.info("%s %s: refused (EPERM): a read-write mount does not support it", what, path)
        raise _fail(errno.EPERM)

    # -- modes, owners and times --------------------------------------------------------------------------------

    def chmod(self, path: str, mode: int) -> None:
        """A folder made here or a file staged here (not committed yet): its mode is kept until its commit;
        a remote file or folder: EPERM (the Hub keeps no modes)."""
        self._existing(path)
        if not path or not self.staging.set_attrs(path, mode=mode & 0o7777):
            self.refuse("chmod", path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        """As :meth:`chmod`, for the owner (-1: unchanged)."""
        self._existing(path)
        if not path or not self.staging.set_attrs(path, uid=None if uid < 0 else uid, gid=None if gid < 0 else gid):
            self.refuse("chown", path)

    def utimens(self, path: str, times: tuple[int, int] | None) -> None:
        """utimensat (``touch``): a folder made here or a staged file keeps the times until its commit; a remote
        file or folder keeps them in memory for the life of the mount (the Hub stores no times)."""
        node = self._existing(path)
        atime, mtime = _times(times, (node.atime_ns or node.mtime_ns, node.mtime_ns))
        if path and self.staging.set_times(path, atime, mtime):
            self.ns.touched.pop(path, None)
        else:
            self.ns.touched[path] = (atime, mtime)

    def space(self) -> os.statvfs_result:
        """The staging disk's (``df`` shows its free space as the mount's)."""
        return os.statvfs(self.staging.root)

    def close(self) -> None:
        """Unmount: commit what is staged (a failure is logged and keeps it staged for the next mount)."""
        self.staging.close()

    # -- checks against the combined view ---------------------------------------------------------------------

    def _dir_changed(self, path: str) -> None:
        """An entry was added to or removed from ``path``'s folder: its mtime and ctime are now (in memory)."""
        now = time.time_ns()
        self.ns.touched[path.rpartition("/")[0]] = (now, now)

    def _keep_parent(self, path: str) -> None:
        """The folder ``path`` left may now be empty: the Hub would drop it at the next commit (it has no empty
        folders), POSIX keeps it. Stage it as a folder made here (shown until a file lands in it or rmdir)."""
        parent = path.rpartition("/")[0]
        if not parent or self.ns.listdir(parent):
            return
        staged = self.staging.lookup(parent)
        if staged is None or staged.kind == "deleted":  # a remote folder, or one shown for what is staged in it
            try:
                self.staging.mkdir(parent)
            except FileExistsError:  # staged meanwhile
                pass

    def _existing(self, path: str) -> Node:
        node = self.ns.lookup(path)
        if node is None:
            raise _fail(errno.ENOENT)
        return node

    def _parent_folder(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if parent:
            node = self.ns.lookup(parent)
            if node is None:
                raise _fail(errno.ENOENT)
            if not node.is_dir:
                raise _fail(errno.ENOTDIR)


__all__ = ["LocalFile", "Overlaid", "StagedWrites", "WriteHandle", "check_branch", "open_staged", "staging_root"]
