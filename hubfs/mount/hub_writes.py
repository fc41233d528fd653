"""A read-write whole-hub mount (``hubfs mount --all MOUNTPOINT --read-write``): every repo writable on its branch.

:class:`HubWrites` is the :class:`~hubfs.mount.ops.WriteOps` of such a mount. It sends each change inside a
repo (``ns/name/...``, ``datasets/ns/name/...``, ``spaces/ns/name/...``) to that repo's own
:class:`~hubfs.mount.writable.StagedWrites` -- the same staging area, journal, commit batching and crash
recovery as a one-repo ``--read-write`` mount (:func:`~hubfs.mount.writable.open_staged`), opened at the
repo's first change (one request: its refs) and put over its view in the :class:`~hubfs.mount.hub_root.HubRoot`
(:meth:`~hubfs.mount.hub_root.HubRoot.layer`). ``ns/name`` writes to the main branch, ``ns/name@rev`` to
branch ``rev``; both names of one branch share one staging area. A tag or commit (``name@v1``) stays
read-only (EROFS); a branch another mount holds read-write answers EBUSY.

Above the repos nothing changes: creating or deleting repos or namespaces (mkdir, rmdir, files next to
repos), renaming a repo or across repos: EPERM, with a log line saying why. :meth:`HubWrites.recover`
(before mounting) opens every staging area a crashed mount left changes in, which commits them;
:meth:`HubWrites.close` (unmount) flushes every repo.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from hubfs.client.api import HubClient
from hubfs.errors import ConflictError, HubfsError, MountError
from hubfs.mount.hub_root import INSIDE, HubRoot, RepoKey
from hubfs.mount.readers import Readers
from hubfs.mount.repo import RepoView
from hubfs.mount.writable import STAGING_FOLDER, StagedWrites, WriteHandle, check_branch, open_staged
from hubfs.paths import DEFAULT_REVISION, RepoType

log = logging.getLogger("hubfs.mount")


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class HubWrites:
    """The write operations of a read-write whole-hub mount over ``root`` (see the module docstring)."""

    def __init__(self, client: HubClient, root: HubRoot, readers: Readers, *, debounce: float) -> None:
        self.client, self.root, self.readers, self.debounce = client, root, readers, debounce
        self.staging_dir = Path(client.config.cache_dir) / STAGING_FOLDER
        self._lock = threading.Lock()  # one repo's staging opened at a time
        self._repos: dict[RepoKey, StagedWrites | int] = {}  # a repo's writes, or the errno its changes get
        self._branches: dict[tuple[RepoType, str, str], tuple[StagedWrites, list[RepoView]]] = {}
        self._closed = False

    # -- finding a repo's writes --------------------------------------------------------------------------

    def _inside(self, path: str, what: str) -> tuple[StagedWrites, str]:
        """The writes of the repo ``path`` lies inside, and the path in it; EPERM above the repos."""
        place = self.root.place(path)
        if place.depth != INSIDE or place.key is None:
            self._refuse(what, path)
        assert place.key is not None
        return self._writes(place.key), place.rest

    def _refuse(self, what: str, path: str) -> None:
        log.info("%s %s: refused (EPERM): a whole-hub mount does not create, delete or rename repos or namespaces "
                 "(use `hubfs repo create` / `hubfs repo delete`)", what, path or "/")
        raise _fail(errno.EPERM)

    def _known(self, path: str) -> tuple[StagedWrites, str] | None:
        """The writes of the repo ``path`` lies inside when they were opened already (no request)."""
        place = self.root.place(path)
        if place.depth != INSIDE or place.key is None:
            return None
        found = self._repos.get(place.key)  # no lock: a dict lookup, and opening a repo's writes may take a request
        return (found, place.rest) if isinstance(found, StagedWrites) else None

    def _writes(self, key: RepoKey) -> StagedWrites:
        with self._lock:
            found = self._repos.get(key)
            if found is None:
                found = self._repos[key] = self._open(key)
        if isinstance(found, int):
            raise _fail(found)
        return found

    def _open(self, key: RepoKey) -> StagedWrites | int:
        """Open the writes of repo ``key`` (lock held): its staging area over its view, or the errno its
        changes get (ENOENT: no such repo, EROFS: a tag or commit, EBUSY: held by another mount)."""
        if self._closed:
            return errno.EROFS
        view = self.root.repo(key)
        if view is None:
            raise _fail(errno.ENOENT)
        rev = key[1].partition("@")[2] or None
        try:
            branch = check_branch(self.client, view.repo, rev)
        except MountError as exc:
            log.info("%s%s: read-only in this mount: %s", key[0].url_prefix, key[1], exc)
            return errno.EROFS
        same = (view.repo.type, view.repo.id, branch)
        shared = self._branches.get(same)
        if shared is not None:  # ns/name and ns/name@main: one branch, one staging area
            writes, views = shared
            views.append(view)
        else:
            views = [view]

            def committed(sha: str) -> None:
                for other in views[1:]:
                    other.show(sha)

            try:
                writes = open_staged(self.client, view, self.readers, branch, debounce=self.debounce,
                                     on_commit=committed)
            except ConflictError as exc:
                log.warning("%s@%s: read-only in this mount (EBUSY): %s", view.repo, branch, exc)
                return errno.EBUSY
            self._branches[same] = (writes, views)
        self.root.layer(key, writes.ns)
        return writes

    def recover(self) -> int:
        """Open the staging area of every repo whose changes a mount left staged (a crash, a failed commit):
        they show at once and their commit is scheduled. Returns how many; failures are logged."""
        count = 0
        for journal in sorted(self.staging_dir.glob("*/*/journal")):
            try:
                lines = journal.read_bytes().splitlines()
                header = json.loads(lines[0]) if lines else {}
                repo_type, _, repo_id = str(header.get("repo", "")).partition("/")
                branch = str(header.get("branch", ""))
                if len(lines) < 2 or not repo_id or not branch:
                    continue
                name = repo_id if branch == DEFAULT_REVISION else f"{repo_id}@{branch}"
                key = (RepoType.parse(repo_type), name)
                if "/" in branch:
                    log.warning("%s: changes staged for branch %s of %s cannot be shown in a whole-hub mount "
                                "(mount the repo at that branch to commit them)", journal.parent, branch, repo_id)
                    continue
                self._writes(key)
                count += 1
            except (OSError, ValueError, HubfsError) as exc:
                log.warning("%s: staged changes not recovered now (%s: %s)", journal.parent, type(exc).__name__, exc)
        return count

    # -- the WriteOps -----------------------------------------------------------------------------------------

    def create(self, path: str, mode: int, owner: tuple[int, int] | None = None) -> WriteHandle:
        writes, rest = self._inside(path, "create")
        return writes.create(rest, mode, owner)

    def open_write(self, path: str, flags: int) -> WriteHandle:
        place = self.root.place(path)
        if place.depth != INSIDE or place.key is None:
            raise _fail(errno.EISDIR)  # the root, namespaces and repos are folders
        return self._writes(place.key).open_write(place.rest, flags)

    def write(self, handle: Any, data: bytes, offset: int) -> int:
        if not isinstance(handle, WriteHandle):
            raise _fail(errno.EBADF)
        return handle.write(data, offset)

    def truncate(self, path: str, length: int, handle: Any) -> None:
        if isinstance(handle, WriteHandle):
            handle.truncate(length)
            return
        place = self.root.place(path)
        if place.depth != INSIDE or place.key is None:
            raise _fail(errno.EISDIR)
        self._writes(place.key).truncate(place.rest, length, None)

    def flush(self, handle: Any) -> None:
        return None

    def fsync(self, handle: Any, datasync: bool, path: str = "") -> None:
        """Commits everything staged in the repo of ``path`` (or of the handle) at once."""
        if isinstance(handle, WriteHandle):
            handle.owner.fsync(handle, datasync)
            return
        known = self._known(path)
        if known is not None:
            known[0].fsync(handle, datasync)

    def unlink(self, path: str) -> None:
        writes, rest = self._inside(path, "unlink")
        writes.unlink(rest)

    def mkdir(self, path: str, mode: int, owner: tuple[int, int] | None = None) -> None:
        writes, rest = self._inside(path, "mkdir")
        writes.mkdir(rest, mode, owner)

    def rmdir(self, path: str) -> None:
        writes, rest = self._inside(path, "rmdir")
        writes.rmdir(rest)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        a, b = self.root.place(old), self.root.place(new)
        if a.depth != INSIDE or b.depth != INSIDE or a.key is None:
            self._refuse("rename", old if a.depth != INSIDE else new)
        assert a.key is not None
        if a.key != b.key:
            log.info("rename %s -> %s: refused (EPERM): a rename moves files within one repo (and revision)", old, new)
            raise _fail(errno.EPERM)
        self._writes(a.key).rename(a.rest, b.rest, flags)

    def chmod(self, path: str, mode: int) -> None:
        writes, rest = self._inside(path, "chmod")
        writes.chmod(rest, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        writes, rest = self._inside(path, "chown")
        writes.chown(rest, uid, gid)

    def utimens(self, path: str, times: tuple[int, int] | None) -> None:
        place = self.root.place(path)
        if place.depth != INSIDE or place.key is None:
            return  # touch of the root, a namespace or a repo's folder: accepted (nothing keeps it)
        self._writes(place.key).utimens(place.rest, times)

    def refuse(self, what: str, path: str) -> None:
        log.info("%s %s: refused (EPERM): a read-write mount does not support it", what, path)
        raise _fail(errno.EPERM)

    def open_read(self, path: str) -> Any:
        known = self._known(path)
        return known[0].open_read(known[1]) if known is not None else None

    def space(self) -> os.statvfs_result:
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        return os.statvfs(self.staging_dir)

    def close(self) -> None:
        """Unmount: commit what every repo has staged (a failure is logged; the changes stay staged for the
        next mount). Idempotent."""
        with self._lock:
            self._closed = True
            everything = [w for w, _ in self._branches.values()]
            self._branches.clear()
        for writes in everything:
            try:
                writes.close()
            except Exception:
                log.exception("closing the staging area of %s failed (its changes stay staged)", writes.ns.view.repo)


__all__ = ["HubWrites"]
