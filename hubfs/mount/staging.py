"""The write path of a ``--read-write`` mount: changes to one branch, staged on local disk, committed in batches.

A :class:`StagingArea` is what the mount shows on top of the remote commit: staged files (local copies,
or unchanged remote files under a new name), folders made here, and deletions ("whiteouts", which hide a
remote path and everything under it). Every mutation takes effect at once for :meth:`~StagingArea.lookup`;
commits happen later, one per batch: ``debounce`` seconds after the last closed write handle (or other
change), at most ``max_delay`` after the first, on :meth:`~StagingArea.flush` (fsync) and on
:meth:`~StagingArea.close` (unmount). Commits go through the one client (``HubClient.commit``): large
files and ``.gitattributes`` LFS paths as LFS uploads, a renamed LFS file as an ``lfsFile`` line naming
the same object (no re-upload), a renamed regular file as its bytes plus a delete.

The Hub has no folders: a folder made here stays local (shown, never committed) until a file lands in it,
and so does a folder whose file was deleted or moved away here (the commit may leave it empty on the hub).

What is staged lives in an :class:`~hubfs.mount.overlay.Overlay` in memory and on disk under ``root``::

    lock        flock'ed while a StagingArea uses the folder (one mount per root; see hubfs.mount.journal)
    journal     JSON lines: a header, then records, the last one per path winning (see below)
    files/<id>  the content of staged files; the mount's write handles write into them in place
    tmp/        copy-ups in progress and frozen copies of open files being committed

Journal records: ``{"hubfs_staging": 1, "repo": "model/ns/name", "branch": "main"}`` first, then
``{"path": P, "entry": E}`` (E: ``{"kind": "file", "blob": id, "base": sha, "mtime": t}``, or a
renamed remote file ``{"kind": "file", "origin": {"commit", "path", "size", "lfs"}, "base", "mtime"}``,
or ``{"kind": "dir", "mtime": t}``, or null for none; entries made or chmod'ed here add
``"attrs": {"mode", "uid", "gid"}``) and ``{"path": P, "deleted": {"base": sha} | null}``.
``base`` is the commit the mount showed when the path was staged (how conflicts are found). Each
mutation appends its records with one write and an fsync; content files appear (temp + rename) before
the record naming them and disappear after the record dropping them; after each commit the journal is
rewritten whole (temp + fsync + rename). So after a crash (SIGKILL) a new StagingArea on the same root
replays the journal (a torn last line is skipped), deletes orphan content files, shows the leftovers
and schedules their commit (``__init__`` does it all; no separate recover step). Bytes a killed
process had written into a content file are committed as they are on disk (content files are not
fsynced: a power cut keeps what the kernel had written back; an fsync commits, which is stronger).

A commit (its operations: :mod:`hubfs.mount.batch`) is checked against the branch head first: a path whose remote state changed since its
``base`` is a conflict, and then nothing is committed (the batch stays staged, the log says which paths);
otherwise the batch is committed with the head as parent (a moved branch is re-checked and retried).
Any failure (conflict, permission, server down) leaves everything staged, is logged, and is retried
by the next flush, or by the timer after a back-off.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hubfs.client.api import HubClient
from hubfs.client.commit import Add
from hubfs.client.snapshot import FileEntry, Snapshot
from hubfs.errors import (
    BadRequestError,
    ConflictError,
    HubConnectionError,
    HubfsError,
    PreconditionFailedError,
)
from hubfs.mount.batch import Batch, Planner, message
from hubfs.mount.journal import Journal
from hubfs.mount.overlay import Attrs, Deleted, Entry, Origin, Overlay, Staged, parents, self_and_parents
from hubfs.paths import RepoRef, validate_path_in_repo

if TYPE_CHECKING:
    from typing_extensions import Self

VERSION = 1
COMMIT_TRIES = 3  # a branch that moves between the check and the commit is re-checked this often
MAX_BACKOFF = 300.0  # seconds between automatic retries of a failing commit, at most
COPY_PIECE = 8 << 20
COMPACT_AFTER = 4096  # journal records appended before the journal is rewritten whole (when also > 4x the state)


class Readable(Protocol):
    """What ``open_for_write``'s ``remote`` callable returns: a binary file object, read to its end."""

    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


class StagingArea:
    """Changes to one repo branch made through a mount, staged on local disk and committed in batches.

    Thread-safe. ``base`` returns the commit the mount shows now (default: the client's pin of the
    branch); ``on_commit(sha)`` is called after each commit, before the committed paths stop being
    staged, so the mount can switch to that commit first (it must not call back into this object).
    Raises :class:`~hubfs.errors.ConflictError` when another StagingArea holds ``root``.
    """

    def __init__(self, client: HubClient, repo: RepoRef, branch: str, root: Path, *, debounce: float = 2.0,
                 max_delay: float = 30.0, log: logging.Logger | None = None,
                 base: Callable[[], str | None] | None = None, on_commit: Callable[[str], None] | None = None) -> None:
        self.client, self.repo, self.branch, self.root = client, repo, branch, Path(root)
        self.debounce, self.max_delay = debounce, max(max_delay, debounce)
        self.log = log or logging.getLogger(__name__)
        self._base_fn, self._on_commit = base, on_commit
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()
        self._ov = Overlay()
        self._open: dict[str, int] = {}  # blob -> write handles not yet closed (written)
        self._inflight: set[str] = set()  # blobs a running commit reads: never written in place
        self._doomed: set[str] = set()  # unreferenced blobs to delete when the commit ends
        self._copying: dict[str, threading.Event] = {}
        self._due: float | None = None
        self._first: float | None = None
        self._retry_at = 0.0
        self._failures = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        header = {"hubfs_staging": VERSION, "repo": f"{repo.type.value}/{repo.id}", "branch": branch}
        self._journal = Journal(self.root, header, self.log)
        self._planner = Planner(client, repo, branch, self.root, self.log)
        try:
            self._recover()
        except BaseException:
            self._journal.close()
            raise

    # -- what the mount shows ------------------------------------------------------------------------

    def lookup(self, path: str) -> Staged | None:
        """The staged state of ``path``; None: ask the remote commit."""
        path = path.strip("/")
        with self._lock:
            e = self._ov.entries.get(path)
            if e is not None:
                return self._view(path, e)
            return Staged("deleted") if path and self._ov.hidden(path) else None

    def listdir(self, folder: str) -> tuple[dict[str, Staged], set[str]]:
        """Staged children of ``folder`` by name, and names of remote children deleted here. When
        ``lookup(folder)`` is an opaque dir, no remote child shows at all."""
        folder = folder.strip("/")
        with self._lock:
            names, deleted = self._ov.children(folder)
            return {n: self._view(_join(folder, n), self._ov.entries[_join(folder, n)]) for n in names}, deleted

    def implied(self, folder: str) -> set[str]:
        """Names in ``folder`` that staged entries lie under: folders the mount shows whatever the commit has
        (a commit that emptied them on the hub does not hide what is staged inside)."""
        folder = folder.strip("/")
        base = f"{folder}/" if folder else ""
        with self._lock:
            return {p[len(base):].split("/", 1)[0] for p in self._ov.entries
                    if p.startswith(base) and "/" in p[len(base):]}

    @property
    def pending(self) -> int:
        """Staged files and deletions not committed yet (folders made here not counted)."""
        with self._lock:
            return len(self._ov.files())

    # -- mutations -------------------------------------------------------------------------------------

    def create(self, path: str, attrs: Attrs | None = None) -> Path:
        """A new empty local file for ``path`` (replacing a staged, deleted or remote one), open for writing;
        ``attrs``: its mode and owner (kept until committed)."""
        return self.open_for_write(path, None, truncate=True, attrs=attrs)

    def open_for_write(self, path: str, remote: Callable[[], Readable] | None, truncate: bool,
                       attrs: Attrs | None = None) -> Path:
        """The local file holding ``path``'s content, to write into in place; counts as one open write
        handle until :meth:`written`. Unless ``truncate``, a path not staged yet is first copied up from
        ``remote()`` (the content the mount shows: for a staged file with an ``origin``, that origin's
        bytes); ``remote`` None means there is none (an empty file). ``attrs``: those of a path not staged
        yet (a staged file keeps its own)."""
        path = _valid(path)
        base = self._base_sha()
        while True:
            with self._lock:
                seen = self._ov.entries.get(path)
                if seen is not None and seen.kind == "dir":
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
                if seen is not None and seen.blob is not None and seen.blob not in self._inflight:
                    local = self._blob_path(seen.blob)
                    if truncate:
                        os.truncate(local, 0)
                    self._open[seen.blob] = self._open.get(seen.blob, 0) + 1
                    self._ov.entries[path] = replace(seen)
                    return local
                waiting = self._copying.get(path)
                if waiting is None:
                    self._copying[path] = threading.Event()
            if waiting is not None:
                waiting.wait()
                continue
            try:
                tmp = self._fill(seen, remote, truncate)
                with self._lock:
                    if self._ov.entries.get(path) is not seen:  # changed while copying: start again
                        tmp.unlink(missing_ok=True)
                        continue
                    name = uuid.uuid4().hex
                    os.replace(tmp, self._blob_path(name))
                    records: list[dict[str, Any]] = []
                    self._ov.put(path, Entry("file", name, base=(seen.base if seen else None) or base,
                                           mtime=time.time(), attrs=seen.attrs if seen else attrs), records)
                    self._open[name] = 1
                    self._append(records)
                    self._gc([seen.blob] if seen is not None and seen.blob else [])
                    return self._blob_path(name)
            finally:
                with self._lock:
                    self._copying.pop(path).set()

    def written(self, local: Path | str) -> None:
        """A write handle on ``local`` (what :meth:`create` or :meth:`open_for_write` returned) was closed:
        schedule a commit."""
        name = Path(local).name
        with self._lock:
            left = self._open.pop(name, 0) - 1
            if left > 0:
                self._open[name] = left
            path = self._ov.by_blob.get(name)
            if path is not None:
                self._ov.entries[path] = replace(self._ov.entries[path])  # changed since any snapshot
                self._schedule()

    def unlink(self, path: str) -> None:
        """Delete the file at ``path`` (staged, remote or both)."""
        path = _valid(path)
        base = self._base_sha()
        with self._lock:
            e = self._ov.entries.get(path)
            if e is not None and e.kind == "dir":
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            records: list[dict[str, Any]] = []
            if e is not None:
                self._ov.put(path, None, records)
            self._ov.hide(path, (e.base if e is not None else None) or base, records)
            self._keep_parent(path, records)
            self._append(records)
            self._gc([e.blob] if e is not None and e.blob else [])
            self._schedule()

    def mkdir(self, path: str, attrs: Attrs | None = None) -> None:
        """Make a folder; it stays local until a file lands in it (the Hub has no empty folders)."""
        path = _valid(path)
        with self._lock:
            if path in self._ov.entries:
                raise FileExistsError(errno.EEXIST, "File exists", path)
            records: list[dict[str, Any]] = []
            self._ov.put(path, Entry("dir", mtime=time.time(), attrs=attrs), records)
            self._append(records)

    def set_attrs(self, path: str, mode: int | None = None, uid: int | None = None, gid: int | None = None) -> bool:
        """chmod/chown of a folder made here or a file with a local copy: kept (journaled) until committed.
        False (nothing done) for anything else: a remote file or folder, a renamed remote file."""
        path = _valid(path)
        with self._lock:
            e = self._ov.entries.get(path)
            if e is None or (e.kind == "file" and e.blob is None):
                return False
            old = e.attrs or Attrs()
            attrs = Attrs(old.mode if mode is None else mode, old.uid if uid is None else uid,
                          old.gid if gid is None else gid)
            records: list[dict[str, Any]] = []
            self._ov.put(path, replace(e, attrs=attrs), records)
            self._append(records)
            if e.blob is not None:
                local = self._blob_path(e.blob)
                st = os.stat(local)
                os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns))  # its ctime: now
                self._schedule()  # the entry changed identity: a commit running now leaves it staged
            return True

    def set_times(self, path: str, atime_ns: int, mtime_ns: int) -> bool:
        """utimensat of a folder made here or a file with a local copy: kept until committed (the local copy's
        own times). False (nothing done) for anything else."""
        path = _valid(path)
        with self._lock:
            e = self._ov.entries.get(path)
            if e is None or (e.kind == "file" and e.blob is None):
                return False
            if e.blob is not None:
                os.utime(self._blob_path(e.blob), ns=(atime_ns, mtime_ns))
                return True
            records: list[dict[str, Any]] = []
            self._ov.put(path, replace(e, mtime=mtime_ns / 1e9), records)
            self._append(records)
            return True

    def rmdir(self, path: str) -> None:
        """Remove a folder the mount shows empty (the caller checks the remote side)."""
        path = _valid(path)
        base = self._base_sha()
        with self._lock:
            e = self._ov.entries.get(path)
            if e is not None and e.kind != "dir":
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            if any(p.startswith(path + "/") for p in self._ov.entries):
                raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
            records: list[dict[str, Any]] = []
            if e is not None:
                self._ov.put(path, None, records)
            self._ov.hide(path, base, records)
            self._keep_parent(path, records)
            self._append(records)
            self._schedule()

    def rename(self, old: str, new: str) -> None:
        """Move a file or folder within the repo, replacing what is at ``new``. Remote files move as
        copies of their remote object (:class:`Origin`), read from the hub only when committed."""
        old, new = _valid(old), _valid(new)
        if old == new:
            return
        if new.startswith(old + "/"):
            raise OSError(errno.EINVAL, "Cannot move a folder into itself", new)
        if old.startswith(new + "/"):
            raise OSError(errno.ENOTEMPTY, "Directory not empty", new)
        base = self._base_sha()
        with self._lock:
            e = self._ov.entries.get(old)
            remote_side = not self._ov.hidden(old) and (e is None or e.kind == "dir")
        remote = self._remote_tree(old, base) if remote_side else []
        now = time.time()
        with self._lock:
            e = self._ov.entries.get(old)
            if e is None and not remote:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", old)
            records: list[dict[str, Any]] = []
            freed = [x.blob for p, x in self._ov.entries.items() if _under(p, new) and x.blob]
            for p in [p for p in self._ov.entries if _under(p, new)]:
                self._ov.put(p, None, records)
            moved = {p: x for p, x in self._ov.entries.items() if _under(p, old)}
            for p in moved:
                self._ov.put(p, None, records)
            for p, x in moved.items():
                self._ov.put(new + p[len(old):], replace(x), records)
            assert base is not None or not remote
            for r in remote:
                dest = new + r.path[len(old):]
                if r.path in moved or dest in self._ov.entries or self._ov.hidden(r.path):
                    continue
                origin = None if r.is_dir else Origin(base or "", r.path, r.size, r.lfs_oid)
                self._ov.put(dest, Entry("dir", mtime=now) if r.is_dir else
                             Entry("file", origin=origin, base=base, mtime=now), records)
            self._ov.hide(new, base, records)
            self._ov.hide(old, (e.base if e is not None else None) or base, records)
            self._keep_parent(old, records)
            self._append(records)
            self._gc(freed)
            self._schedule()

    def _keep_parent(self, path: str, records: list[dict[str, Any]]) -> None:
        """``path`` was removed or moved away (lock held): its folder stays shown as a folder made here, or
        the commit that deletes the folder's last file on the hub would take the folder away too."""
        parent = path.rpartition("/")[0]
        if parent and parent not in self._ov.entries:
            self._ov.put(parent, Entry("dir", mtime=time.time()), records)

    def exchange(self, a: str, b: str) -> None:
        """Swap what is at ``a`` and ``b`` (renameat2's RENAME_EXCHANGE), both existing, neither under the other:
        staged entries trade places, remote ones move as in :meth:`rename`. One journal append: a crash
        leaves both swapped or neither."""
        a, b = _valid(a), _valid(b)
        if a == b:
            return
        if _under(a, b) or _under(b, a):
            raise OSError(errno.EINVAL, "Cannot exchange a folder with something inside it", b)
        base = self._base_sha()
        with self._lock:
            remote_side = {p: not self._ov.hidden(p) and (self._ov.entries.get(p) is None or
                                                         self._ov.entries[p].kind == "dir") for p in (a, b)}
        remote = {p: self._remote_tree(p, base) if remote_side[p] else [] for p in (a, b)}
        now = time.time()
        with self._lock:
            staged = {p: {q: x for q, x in self._ov.entries.items() if _under(q, p)} for p in (a, b)}
            if not staged[a] and not remote[a] or not staged[b] and not remote[b]:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", a if not staged[a] else b)
            records: list[dict[str, Any]] = []
            for p in (a, b):
                for q in staged[p]:
                    self._ov.put(q, None, records)
            for src, dst in ((a, b), (b, a)):
                for q, x in staged[src].items():
                    self._ov.put(dst + q[len(src):], replace(x), records)
            assert base is not None or not (remote[a] or remote[b])
            for src, dst in ((a, b), (b, a)):
                for r in remote[src]:
                    dest = dst + r.path[len(src):]
                    if r.path in staged[src] or dest in self._ov.entries or self._ov.hidden(r.path):
                        continue
                    origin = None if r.is_dir else Origin(base or "", r.path, r.size, r.lfs_oid)
                    self._ov.put(dest, Entry("dir", mtime=now) if r.is_dir else
                                 Entry("file", origin=origin, base=base, mtime=now), records)
            for p in (a, b):
                self._ov.hide(p, base, records)
            self._append(records)
            self._schedule()

    # -- commits ---------------------------------------------------------------------------------------

    def flush(self) -> str | None:
        """Commit everything staged (files still open for writing too, as they are now) as one commit.
        Returns its sha, or None when there was nothing to commit. On failure everything stays staged,
        the reason is logged and raised (a :mod:`hubfs.errors` error), and a retry is scheduled."""
        return self._flush(include_open=True)

    def close(self) -> None:
        """Stop the timer, flush (a failure is logged; the staged changes stay on disk for the next
        StagingArea on this root), release ``root``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        try:
            self._flush(include_open=True)
        except Exception:  # logged by _flush; the changes stay on disk for the next StagingArea
            self.log.debug("final flush of %s failed", self.root, exc_info=True)
        with self._lock:
            self._journal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flush(self, include_open: bool) -> str | None:
        with self._flush_lock:
            batch = self._snapshot(include_open)
            if batch is None:
                return None
            try:
                sha = self._commit(batch)
            except BaseException as exc:
                self._abandon(batch)
                self.log.warning("%s@%s: commit of %d staged changes failed, kept in %s for the next flush: %s",
                                 self.repo, self.branch, len(batch.files) + len(batch.deleted), self.root,
                                 f"{type(exc).__name__}: {exc}")
                raise
            finally:
                for tmp in [*batch.frozen.values(), *batch.fetched.values()]:
                    tmp.unlink(missing_ok=True)
            if sha is not None:
                self.log.info("%s@%s: committed %d changes as %s", self.repo, self.branch, batch.ops, sha)
                if self._on_commit is not None:
                    try:
                        self._on_commit(sha)
                    except Exception:
                        self.log.exception("on_commit(%s) failed", sha)
            self._finish(batch, sha)
            return sha

    def _snapshot(self, include_open: bool) -> Batch | None:
        """The pending changes, with their content files frozen for the commit (the writers go on)."""
        with self._lock:
            files = {p: e for p, e in self._ov.entries.items() if e.kind == "file"}
            busy = {p for p, e in files.items() if e.blob and self._open.get(e.blob)}
            if not include_open:
                files = {p: e for p, e in files.items() if p not in busy}
            batch = Batch(files, dict(self._ov.deleted))
            if not files and not batch.deleted:
                return None
            copies = {p: files[p].blob for p in busy if p in files}
            self._inflight.update(e.blob for p, e in files.items() if e.blob and p not in copies)
        for p, blob in copies.items():
            tmp = self.root / "tmp" / uuid.uuid4().hex
            try:
                shutil.copyfile(self._blob_path(blob or ""), tmp)
            except FileNotFoundError:  # unlinked meanwhile
                del batch.files[p]
                continue
            batch.frozen[p] = tmp
        return batch

    def _commit(self, batch: Batch) -> str | None:
        t, rid = self.repo.type.value, self.repo.id
        for _ in range(COMMIT_TRIES):
            head = self.client.resolve(t, rid, self.branch, refresh=True)
            ops = self._planner.ops(batch, head)
            batch.ops = len(ops)
            if not ops:
                return None
            summary, description = message(ops)
            try:
                sha = self.client.commit(t, rid, ops, summary, description=description, revision=self.branch,
                                         parent_commit=head)
            except PreconditionFailedError:
                self.log.info("%s@%s moved during a commit; checking the staged paths again", self.repo, self.branch)
                continue
            if all(isinstance(op, Add) and op.mode == "skip" for op in ops):
                return None  # the hub already had all of it
            return sha
        raise ConflictError(f"{self.repo}@{self.branch} kept moving during {COMMIT_TRIES} commit attempts.")

    def _finish(self, batch: Batch, sha: str | None) -> None:
        """After a commit (or when nothing needed one): unstage what was committed and has not changed since.
        A deletion stays (rebased on the commit) when a file the batch added at or under it was moved or
        deleted meanwhile: the commit put that file on the hub, and only the deletion still hides it (a
        deletion under an existing one adds no record of its own). The batch's files under such a deletion
        stay staged too, or the deletion would hide them. What was staged meanwhile at, under or above a path
        the commit changed is rebased on the commit: the mount's own change is no conflict."""
        records: list[dict[str, Any]] = []
        with self._lock:
            freed = list(self._doomed)
            gone = {a for q, e in batch.files.items() if self._ov.entries.get(q) is not e for a in self_and_parents(q)}
            kept = {p for p, d in batch.deleted.items() if self._ov.deleted.get(p) is d and p in gone}
            for p, e in batch.files.items():
                if self._ov.entries.get(p) is e and not (e.blob and self._open.get(e.blob)) \
                        and not any(a in kept for a in self_and_parents(p)):
                    freed.append(e.blob or "")
                    self._ov.put(p, None, records)
            for p, d in batch.deleted.items():
                if self._ov.deleted.get(p) is d and p not in kept:
                    self._ov.mark(p, None, records)
            if sha is not None:  # what is staged at, under or above a path the commit changed builds on it now
                touched = set(batch.files) | set(batch.deleted)
                above = {a for t in touched for a in self_and_parents(t)}
                for p, staged in list(self._ov.entries.items()):
                    if staged.kind == "file" and staged.base != sha and any(a in touched for a in self_and_parents(p)):
                        self._ov.put(p, replace(staged, base=sha), records)
                for p, whiteout in list(self._ov.deleted.items()):
                    if whiteout.base != sha and (p in above or any(a in touched for a in self_and_parents(p))):
                        self._ov.mark(p, Deleted(sha), records)
            landed = {a for p in batch.files for a in parents(p)}
            for folder in landed:
                x = self._ov.entries.get(folder)
                if x is not None and x.kind == "dir" and not self._ov.hidden(folder):
                    self._ov.put(folder, None, records)
            self._inflight.clear()
            self._doomed.clear()
            self._rewrite()
            self._gc(b for b in freed if b)
            self._failures, self._retry_at = 0, 0.0
            if not any(e.kind == "file" and not (e.blob and self._open.get(e.blob)) for e in self._ov.entries.values()) \
                    and not self._ov.deleted:
                self._due = self._first = None

    def _abandon(self, batch: Batch) -> None:
        with self._lock:
            self._inflight.clear()
            doomed, self._doomed = self._doomed, set()
            self._gc(doomed)
            self._failures += 1
            self._retry_at = time.monotonic() + min(max(self.debounce, 0.5) * 2 ** self._failures, MAX_BACKOFF)
            if not self._closed:
                self._due = self._retry_at
                self._start_timer()

    # -- the timer -------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """A change was made (lock held): commit ``debounce`` after it, at most ``max_delay`` after the first."""
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._due = max(min(now + self.debounce, self._first + self.max_delay), self._retry_at)
        self._start_timer()

    def _start_timer(self) -> None:
        if self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_timer, name=f"hubfs-staging {self.repo}", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _run_timer(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._due is None or self._due > time.monotonic()):
                    self._cond.wait(None if self._due is None else self._due - time.monotonic())
                if self._closed:
                    return
                self._due = self._first = None
            try:
                self._flush(include_open=False)
            except Exception:  # logged by _flush, retried after a back-off
                self.log.debug("timed flush of %s failed", self.root, exc_info=True)

    # -- state (lock held) -----------------------------------------------------------------------------

    def _view(self, path: str, e: Entry) -> Staged:
        if e.kind == "dir":
            return Staged("dir", mtime=e.mtime, opaque=self._ov.hidden(path), attrs=e.attrs)
        if e.blob is None:
            assert e.origin is not None
            return Staged("file", size=e.origin.size, mtime=e.mtime, origin=e.origin)
        local = self._blob_path(e.blob)
        try:
            st = os.stat(local)
        except FileNotFoundError:
            return Staged("file", local=local, mtime=e.mtime)
        return Staged("file", local=local, size=st.st_size, mtime=st.st_mtime, attrs=e.attrs, atime_ns=st.st_atime_ns,
                      mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)

    def _gc(self, blobs: Iterable[str]) -> None:
        """Delete content files no entry names (after the journal stopped naming them)."""
        for b in blobs:
            if b in self._ov.by_blob:
                continue
            if b in self._inflight:
                self._doomed.add(b)
            else:
                self._blob_path(b).unlink(missing_ok=True)

    def _blob_path(self, name: str) -> Path:
        return self.root / "files" / name

    # -- helpers that may block (no lock held) ----------------------------------------------------------

    def _base_sha(self) -> str | None:
        """The commit the mount shows now; None when unknown (conflicts then cannot be told)."""
        try:
            if self._base_fn is not None:
                return self._base_fn()
            return self.client.resolve(self.repo.type.value, self.repo.id, self.branch)
        except (HubfsError, OSError) as exc:
            self.log.debug("no base commit for %s@%s: %s", self.repo, self.branch, exc)
            return None

    def _remote_tree(self, path: str, base: str | None) -> list[FileEntry]:
        """The remote file or folder at ``path`` in commit ``base``, and everything under it."""
        if base is None:
            raise HubConnectionError(f"Cannot move {path}: the commit of {self.repo}@{self.branch} is unknown "
                                     "(is the hub reachable?).")
        snap = Snapshot(self.client, self.repo, self.branch, base)
        entry = snap.entry(path)
        if entry is None:
            return []
        return [entry, *snap.walk(path)] if entry.is_dir else [entry]

    def _fill(self, seen: Entry | None, remote: Callable[[], Readable] | None, truncate: bool) -> Path:
        """A temp file with the content a write handle starts from."""
        tmp = self.root / "tmp" / uuid.uuid4().hex
        with open(tmp, "wb") as out:
            if truncate:
                pass
            elif seen is not None and seen.blob is not None:  # being committed: copy, do not write in place
                with open(self._blob_path(seen.blob), "rb") as src:
                    shutil.copyfileobj(src, out, COPY_PIECE)
            elif remote is not None:
                src2 = remote()
                try:
                    shutil.copyfileobj(src2, out, COPY_PIECE)
                finally:
                    src2.close()
            elif seen is not None:
                tmp.unlink()
                raise BadRequestError("open_for_write of a renamed remote file needs its content (remote).")
        return tmp

    # -- the journal (see :mod:`hubfs.mount.journal`) ----------------------------------------------------

    def _append(self, records: list[dict[str, Any]]) -> None:
        self._journal.append(records)
        if self._journal.appended > max(COMPACT_AFTER, 4 * (len(self._ov.entries) + len(self._ov.deleted))):
            self._rewrite()

    def _rewrite(self) -> None:
        self._journal.rewrite(self._ov.records())

    def _recover(self) -> None:
        """Replay the journal left by an earlier StagingArea (crashed or not) and drop stray files."""
        for n, rec in enumerate(self._journal.replay()):
            try:
                self._ov.apply(rec, validate_path_in_repo(rec["path"]))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self.log.warning("%s record %d: skipped (%s: %s)", self._journal.path, n + 1, type(exc).__name__, exc)
        for p, e in list(self._ov.entries.items()):
            if e.blob and not self._blob_path(e.blob).is_file():
                self.log.warning("%s: the staged content of %s is missing; dropped", self.root, p)
                self._ov.put(p, None, [])
        for f in (self.root / "tmp").iterdir():
            f.unlink(missing_ok=True)
        for f in (self.root / "files").iterdir():
            if f.name not in self._ov.by_blob:
                f.unlink(missing_ok=True)
        self._rewrite()
        if self._ov.deleted or any(e.kind == "file" for e in self._ov.entries.values()):
            self.log.info("%s@%s: %d staged changes recovered from %s; committing them", self.repo, self.branch,
                          self.pending, self.root)
            with self._lock:
                self._schedule()


def _valid(path: str) -> str:
    return validate_path_in_repo(path.strip("/"))


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


__all__ = ["Origin", "Readable", "Staged", "StagingArea"]
