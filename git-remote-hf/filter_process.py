"""``git-remote-hf filter-process``: git's long-running filter protocol (version 2; clean, smudge, delay) for
``filter=lfs`` paths, with content in the repo's ``.git/lfs`` (:class:`~git_remote_hf.lfs_store.LfsStore`).

* smudge: a pointer becomes its object's bytes, read from the store straight into ~1 MiB writes of
  packets and checked against the oid as they are sent (a mismatch ends the answer with
  ``status=error``, so git does not check the file out); an object this clone's own download verified
  seconds ago is not hashed twice (``hf.lfs.verifySmudge=true`` hashes every one). A missing object
  that the clone's background download (:mod:`git_remote_hf.background`) is still to bring is answered
  ``status=delayed`` and listed once it is stored. Any other missing object is answered
  ``status=delayed`` when git allows it and fetched by the filter
  (:class:`~git_remote_hf.lfs_transfer.BackgroundFetch`: batch calls of 100 as the requests come,
  pipelined), and git checks out each delayed file as soon as it has arrived. Input
  that is not a pointer passes through; so do pointers under ``GIT_LFS_SKIP_SMUDGE=1`` and pointers of
  paths ``lfs.fetchinclude``/``lfs.fetchexclude`` leave out whose object is not here.
* deferred checkout (during a clone's background download): a pointer whose object the download is still to
  bring, or has brought and is of 256 KiB or more (a smaller stored one crosses the pipe faster), is
  answered with the pointer itself, so git writes 130 bytes instead of waiting for the object (no
  ``delayed`` round trip) or receiving it through its single-threaded pipe, and checks every other file
  out meanwhile. Each object is placed (:meth:`FilterServer.place_deferred`) once git has written its pointer
  (git's next request says so) and the download has stored it, while git goes on; the rest when git is done
  (its index written, the filter's input closed; git waits for the filter to exit): waited for, fetched by
  the filter where the download failed or left it, checked where this clone did not just verify it, and
  written from the store into git's pointer file if that is still the one git wrote (a reflink where the
  file system can; ``hardlink`` mode links the store object into place instead; a failed write puts the
  pointer back). Then each placed file's index entry gets the new file's stat
  (:func:`git_remote_hf.index_stat.restat`), so ``git status`` stays clean without hashing it. An object
  that cannot be had leaves the pointer file, and says so. Off: ``GIT_REMOTE_HF_DEFER=0`` or ``git config
  hf.lfs.deferCheckout false`` (and with ``hf.lfs.verifySmudge``).
* clean: the content is hashed into the store and the answer is the pointer, byte-identical to
  git-lfs's; input that already is a pointer, and empty input, pass through (as with git-lfs).
* no second copy (``hf.lfs.linkMode``, default ``reflink``): when git is done, each object smudged in
  this run is replaced by a reflink (FICLONE) of the worktree file, sharing its blocks; with
  ``hardlink`` the store object becomes a hard link to the worktree file where reflinks are not
  available. Caveat of ``hardlink``: a program that edits the worktree file in place also changes the
  store's object (``git lfs fsck`` then reports it); git itself replaces files, so checkouts are safe.
  ``copy`` keeps two copies, as git-lfs does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from git_remote_hf.background import POLL, Watch
from git_remote_hf.gitconfig import GitConfig
from git_remote_hf.index_stat import restat
from git_remote_hf.lfs_select import PathFilter, skip_smudge
from git_remote_hf.lfs_store import LfsStore
from git_remote_hf.pktline import PktLine
from git_remote_hf.trace import mark
from hubfs.errors import HubfsError
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer, sha256_file

if TYPE_CHECKING:
    from git_remote_hf.lfs_transfer import BackgroundFetch
    from hubfs.client.api import HubClient

__all__ = ["FilterServer", "main"]

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
PIECE = 1 << 20
BATCH_SIZE = 100  # delayed objects handed to the background fetch at once (one batch call)
DEFER_ENV = "GIT_REMOTE_HF_DEFER"
PLACERS = 4  # deferred objects copied into the worktree at once
CHANGED = "it changed while git-remote-hf fetched its object"
DEFER_MIN = 256 << 10  # smaller stored objects cross git's pipe faster than a file of their own is placed


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def reflink(src: Path, dst: Path) -> bool:
    """Create ``dst`` as a copy-on-write clone of ``src`` (FICLONE); False where the filesystem cannot."""
    try:
        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        return True
    except OSError:
        dst.unlink(missing_ok=True)
        return False


def _same_file(now: os.stat_result, old: os.stat_result) -> bool:
    """Whether ``now`` is the stat of the same, unchanged file as ``old`` (git has not rewritten it)."""
    return (now.st_ino, now.st_size, now.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns)


def _copy_into(src: Path, fd: int, size: int, clone: bool = True) -> bool:
    """Write ``src``'s ``size`` bytes over the file open at ``fd`` from its start: a reflink where the
    file system shares blocks (not tried with ``clone`` False), else ``copy_file_range`` (in the kernel),
    else a plain copy. Whether it was a reflink."""
    s = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        done, cloned = 0, False
        if clone:
            try:
                fcntl.ioctl(fd, FICLONE, s)
                done, cloned = size, True
            except OSError:
                pass
        try:
            while done < size:
                n = os.copy_file_range(s, fd, size - done, done, done)
                if n == 0:
                    break
                done += n
        except OSError:
            pass
        while done < size:
            chunk = os.pread(s, min(PIECE, size - done), done)
            if not chunk:
                break
            os.pwrite(fd, chunk, done)
            done += len(chunk)
        if done != size:
            raise OSError(f"{src} holds {done} of its {size} bytes")
        return cloned
    finally:
        os.close(s)


def _head(content: Iterator[bytes]) -> tuple[bytes, bool]:
    """The first bytes of ``content``, read until they are more than any pointer could be or it ends:
    (those bytes, whether that was all of it). The rest stays in ``content``."""
    head = b""
    for chunk in content:
        head += chunk
        if len(head) > POINTER_MAX_SIZE:
            return head, False
    return head, True


class FilterServer:
    """One filter process: answers git's requests on ``pkt`` for the repo at ``git_dir``."""

    def __init__(self, pkt: PktLine, git_dir: Path, worktree: Path, log: IO[str] | None = None) -> None:
        self.pkt, self.git_dir, self.worktree = pkt, git_dir, worktree
        self.store = LfsStore(git_dir)
        self.log = log if log is not None else sys.stderr
        self.skip = skip_smudge()
        self.config = GitConfig.read(git_dir)  # every setting below, from one read
        self.paths = PathFilter.from_git(git_dir, self.config)
        self.delayed: dict[str, LfsPointer] = {}
        self._defer: bool | None = None  # deferred checkout on (see the module docstring), once known
        self._replaced: dict[str, os.stat_result] = {}  # placed path -> the stat of git's pointer file there
        self._unplaced: dict[str, LfsPointer] = {}  # deferred, not yet handed to a placer
        self._awaiting: dict[str, list[str]] = {}  # oid -> the unplaced paths of an object yet to arrive
        self._placeable: list[str] = []  # unplaced paths whose object has arrived
        self._arrivals_seen = 0  # how much of the watch's ``arrived`` was sorted into ``_placeable``
        self._placing: dict[str, Future[str | None]] = {}  # deferred, being placed
        self._placers: ThreadPoolExecutor | None = None
        self._link_mode = (self.config.get("hf.lfs.linkMode") or "reflink").lower()
        self._reflinks: bool | None = None  # whether the worktree's file system clones files, once tried
        self.failed: dict[str, str] = {}
        self.smudged: dict[str, LfsPointer] = {}
        self._remote: tuple[HubClient, str] | None = None  # made on the first fetch, kept for the next ones
        self.queue: dict[str, LfsPointer] = {}  # delayed, not yet handed to the background fetch
        self.names: dict[str, str] = {}  # oid -> a path, for messages
        self.handed: set[str] = set()  # oids handed to the background fetch
        self.background: BackgroundFetch | None = None
        self.watch = Watch.open(git_dir)  # the clone's background download, while it runs
        self._verify_all: bool | None = None  # hf.lfs.verifySmudge, read when first needed
        self.started = time.time()

    # -- protocol ---------------------------------------------------------------------------------

    def handshake(self) -> None:
        hello = self.pkt.read_list()
        if "git-filter-client" not in hello or "version=2" not in hello:
            raise HubfsError(f"git-remote-hf filter-process: unexpected handshake {hello!r}")
        self.pkt.text("git-filter-server", "version=2")
        offered = self.pkt.read_list()
        caps = [c for c in ("capability=clean", "capability=smudge", "capability=delay") if c in offered]
        self.pkt.text(*caps)

    def serve(self) -> None:
        """Answer requests until git closes the pipe."""
        mark("filter", "handshake-done")
        counts: dict[str, int] = {}
        while True:
            try:
                headers = dict(line.partition("=")[::2] for line in self.pkt.read_list())
            except EOFError:
                mark("filter", "git-done", " ".join(f"{k}={v}" for k, v in counts.items()))
                return
            if self._unplaced:  # git asks again: the pointers answered so far are written
                self._place_early()
            command = headers.get("command", "")
            counts[command] = counts.get(command, 0) + 1
            if counts[command] == 1:
                mark("filter", f"first-{command}")
            if command == "list_available_blobs":
                self._list_available()
                continue
            content = self.pkt.read_content()
            path = headers.get("pathname", "")
            if command == "clean":
                self._clean(content)
            elif command == "smudge":
                self._smudge(path, content, headers.get("can-delay") == "1")
            else:
                for _ in content:
                    pass
                self.pkt.text("status=error")

    def _answer(self, chunks: Iterator[bytes]) -> None:
        """``status=success``, the content, and a final status: ``error`` if ``chunks`` raised on the way."""
        self.pkt.text("status=success", send=False)
        try:
            self.pkt.content(chunks)
        except (HubfsError, OSError) as err:
            self._end_content(err)
            return
        self._end_content(None)

    def _end_content(self, err: Exception | None) -> None:
        """Close the content; with ``err`` (logged), the final status says the content is not to be used."""
        self.pkt.flush(send=False)
        if err is not None:
            self.log.write(f"git-remote-hf: {err}\n")
            self.pkt.text("status=error")
        else:
            self.pkt.flush()  # an empty status list: success stands

    # -- clean ------------------------------------------------------------------------------------

    def _clean(self, content: Iterator[bytes]) -> None:
        head, whole = _head(content)
        if not head or (whole and LfsPointer.parse(head) is not None):
            # an empty file stays empty (git-lfs's rule: no pointer, no object); a pointer stays itself
            self._answer(iter([head]))
            return
        try:
            pointer = self.store.add_stream(chain([head], content))
        except (HubfsError, OSError) as err:
            for _ in content:
                pass
            self.log.write(f"git-remote-hf: clean failed: {err}\n")
            self.pkt.text("status=error")
            return
        self._answer(iter([pointer.to_bytes()]))

    # -- smudge -----------------------------------------------------------------------------------

    def _smudge(self, path: str, content: Iterator[bytes], can_delay: bool) -> None:
        head, whole = _head(content)
        if whole:  # all of it, at most a pointer's size: in memory
            if path in self.delayed and not head:  # git asks again for a blob it was told is available
                self._smudge_pointer(path, self.delayed.pop(path), can_delay=False)
                return
            pointer = LfsPointer.parse(head)
            if pointer is None or self.skip:
                self._answer(iter([head]))
            else:
                self._smudge_pointer(path, pointer, can_delay)
            return
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:  # larger than a pointer: passes through
            for chunk in chain([head], content):
                spool.write(chunk)
            spool.seek(0)
            self._answer(iter(lambda: spool.read(PIECE), b""))

    def _smudge_pointer(self, path: str, pointer: LfsPointer, can_delay: bool) -> None:
        if path in self.failed:
            self.log.write(f"git-remote-hf: {path}: {self.failed.pop(path)}\n")
            self.pkt.text("status=error")
            return
        if self._defers(pointer) and self.paths.allows(path):
            self._unplaced[path] = pointer
            if self.watch is not None and pointer.oid in self.watch.done:
                self._placeable.append(path)
            else:
                self._awaiting.setdefault(pointer.oid, []).append(path)
            self._answer(iter([pointer.to_bytes()]))
            return
        if not self.store.has(pointer.oid, pointer.size):
            if not self.paths.allows(path):  # left out by lfs.fetchinclude/fetchexclude: the pointer stays
                self._answer(iter([pointer.to_bytes()]))
                return
            if self.watch is not None and self.watch.brings(pointer.oid):  # the clone's background download
                if can_delay:  # listed once it is here
                    self.delayed[path] = pointer
                    self.pkt.text("status=delayed")
                    return
                self.watch.wait_for(pointer.oid)
            if self.store.has(pointer.oid, pointer.size):
                pass
            elif can_delay:  # fetched in the background while git goes on; listed once it is here
                self.delayed[path] = pointer
                self.queue[path] = pointer
                if len(self.queue) >= BATCH_SIZE:
                    self._start_fetch()
                self.pkt.text("status=delayed")
                return
            else:
                self._fetch({path: pointer})
            if path in self.failed:
                self._smudge_pointer(path, pointer, can_delay=False)
                return
        self.smudged[path] = pointer
        self._answer_object(pointer)

    def _answer_object(self, pointer: LfsPointer) -> None:
        """``status=success``, the stored object's bytes, and a final ``status=error`` if they do not hash
        to its oid (git then does not check the file out). An object this clone downloaded and verified
        moments ago (:meth:`_fresh`) is sent without hashing it again."""
        self.pkt.text("status=success", send=False)
        digest = None if self._fresh(pointer.oid) else hashlib.sha256()
        try:
            with open(self.store.name(pointer.oid), "rb", buffering=0) as f:
                size = self.pkt.content_from(f, None if digest is None else digest.update)
            if size != pointer.size or (digest is not None and digest.hexdigest() != pointer.oid):
                found = f"sha256 {digest.hexdigest()}, " if digest is not None else ""
                raise HubfsError(f"LFS object {pointer.oid} in {self.store.objects} is corrupt ({found}{size} bytes); "
                                 "refused. Remove it and fetch again.")
        except (HubfsError, OSError) as err:
            self._end_content(err)
            return
        self._end_content(None)

    def _fresh(self, oid: str) -> bool:
        """Whether this clone's download stored ``oid`` (hashed as it arrived, seconds ago), unless
        ``hf.lfs.verifySmudge`` asks to hash every object again as it is checked out."""
        if self.watch is not None and oid not in self.watch.done:
            self.watch.refresh()
        fresh = ((self.watch is not None and oid in self.watch.done)
                 or (self.background is not None and oid in self.background.stored))
        return fresh and not self._verify()

    def _defers(self, pointer: LfsPointer) -> bool:
        """Whether ``pointer`` is answered with itself and placed when git is done (module docstring):
        during a clone's background download, for an object it is still to bring, or brought and of
        ``DEFER_MIN`` or more."""
        if self.watch is None:
            return False
        if self._defer is None:
            self._defer = (os.environ.get(DEFER_ENV, "1") != "0"
                           and self.config.get_bool("hf.lfs.deferCheckout") is not False and not self._verify())
        if not self._defer:
            return False
        if pointer.oid in self.watch.done:
            return pointer.size >= DEFER_MIN
        return self.watch.brings(pointer.oid)

    # -- deferred checkout ------------------------------------------------------------------------

    def _place_early(self) -> None:
        """Hand the pointers git has written whose objects this clone's download has stored (and checked)
        to the placers now, while git checks the rest out. Costs a look at the objects that arrived since
        the last call, not at every unplaced path (a clone of thousands of small objects asks this on each
        request)."""
        if self.watch is None or self._verify():
            return
        self.watch.refresh()
        arrived = self.watch.arrived
        for oid in arrived[self._arrivals_seen:]:
            self._placeable += self._awaiting.pop(oid, ())
        self._arrivals_seen = len(arrived)
        placeable, self._placeable = self._placeable, []
        for path in placeable:
            pointer = self._unplaced.get(path)
            if pointer is not None and self.store.has(pointer.oid, pointer.size):
                old = self._pointer_file(path, pointer)
                if old is not None:
                    del self._unplaced[path]
                    self._placing[path] = self._pool().submit(self._place, path, pointer, old, False)

    def _pool(self) -> ThreadPoolExecutor:
        if self._placers is None:
            self._placers = ThreadPoolExecutor(PLACERS, thread_name_prefix="hf-place")
        return self._placers

    def _pointer_file(self, path: str, pointer: LfsPointer) -> os.stat_result | None:
        """The stat of ``path`` when it is the pointer file git wrote, else None."""
        try:
            st = (self.worktree / path).lstat()
        except OSError:
            return None  # gone already (git removed it again, or a sparse checkout): nothing to place
        return st if stat.S_ISREG(st.st_mode) and st.st_size == len(pointer.to_bytes()) else None

    @property
    def deferring(self) -> bool:
        """Whether pointers were answered whose objects are still to be placed (:meth:`place_deferred`)."""
        return bool(self._unplaced or self._placing)

    def place_deferred(self) -> None:
        """Put each deferred object where git wrote its pointer, and tell the index (module docstring)."""
        mark("filter", "place-start", f"{len(self._unplaced) + len(self._placing)} files, {len(self._placing)} under way")
        waiting: dict[str, tuple[LfsPointer, os.stat_result]] = {}
        for path, pointer in self._unplaced.items():
            old = self._pointer_file(path, pointer)
            if old is not None:
                waiting[path] = (pointer, old)
        self._unplaced, self._awaiting, self._placeable = {}, {}, []
        verified: set[str] = set()  # oids fetched here (checked as they arrived)
        placing, problems = self._placing, {}
        pool = self._pool()
        watch = self.watch
        by_oid: dict[str, list[str]] = {}
        for path, (pointer, _) in waiting.items():
            by_oid.setdefault(pointer.oid, []).append(path)
        candidates: Iterable[str] = list(waiting)  # first every path, then those whose object just arrived
        seen = 0
        try:
            while waiting:
                running = watch.refresh() if watch is not None else False
                if not running:
                    candidates = list(waiting)
                elif watch is not None:
                    candidates = chain(candidates, *(by_oid.get(oid, ()) for oid in watch.arrived[seen:]))
                    seen = len(watch.arrived)
                for path in candidates:
                    if path not in waiting:
                        continue
                    pointer, st = waiting[path]
                    if not self.store.has(pointer.oid, pointer.size) or (
                            running and watch is not None and watch.brings(pointer.oid)):
                        continue
                    del waiting[path]
                    fresh = pointer.oid in verified or (watch is not None and pointer.oid in watch.done)
                    placing[path] = pool.submit(self._place, path, pointer, st, not fresh or bool(self._verify()))
                candidates = []
                if not waiting:
                    break
                if running and watch is not None and (watch.listing or not watch.wanted.isdisjoint(
                        {ptr.oid for ptr, _ in waiting.values()} - watch.done - watch.failed)):
                    time.sleep(POLL)
                    continue
                # the download ended or will not bring the rest: the filter fetches them (checked as they come)
                wanted = {p: ptr for p, (ptr, _) in waiting.items() if not self.store.has(ptr.oid, ptr.size)}
                if wanted:
                    mark("filter", "own-fetch", f"{len(wanted)} objects")
                    self._fetch(wanted)
                    verified.update(ptr.oid for ptr in wanted.values() if self.store.has(ptr.oid, ptr.size))
                for path in [p for p, (ptr, _) in waiting.items() if not self.store.has(ptr.oid, ptr.size)]:
                    problems[path] = self.failed.pop(path, "it could not be fetched")
                    del waiting[path]
                candidates = list(waiting)  # stored now: placed on the next round
            for path, future in placing.items():
                why = future.result()
                if why is not None:
                    problems[path] = why
        finally:
            pool.shutdown(wait=True)
            self._placers = None
        placed_ok = {p: st for p, st in self._replaced.items() if p in placing}
        hash_size = 32 if (self.config.get("extensions.objectformat") or "").lower() == "sha256" else 20
        restat(self.git_dir, self.worktree, placed_ok, hash_size)
        for path, why in sorted(problems.items()):
            self.log.write(f"git-remote-hf: {path}: {why}; it is left as its LFS pointer (remove it and run "
                           f"`git checkout -- {path}` to try again)\n")
        mark("filter", "placed", f"{len(placed_ok)} files, {len(problems)} left")

    def _verify(self) -> bool:
        """``hf.lfs.verifySmudge``: hash every object again as it is checked out (read once)."""
        if self._verify_all is None:
            self._verify_all = self.config.get_bool("hf.lfs.verifySmudge") is True
        return self._verify_all

    def _place(self, path: str, pointer: LfsPointer, old: os.stat_result, verify: bool) -> str | None:
        """Put the stored object in git's pointer file at ``path`` (whose stat was ``old``); why not, or None.

        The object is written into the pointer file itself (its inode, and so its mode, stay): replacing
        it by a new file would free an inode for every object while git still creates files, and ext4
        makes every inode allocated in the next minutes search past recently freed ones. Only a
        ``hardlink`` link mode links the store object into place. A failed write puts the pointer back."""
        work = self.worktree / path
        src = self.store.path(pointer.oid)
        try:
            if verify:
                with open(src, "rb") as f:
                    if sha256_file(f) != (pointer.oid, pointer.size):
                        return f"LFS object {pointer.oid} in {self.store.objects} is corrupt; refused"
            if self._link_mode == "hardlink" and stat.S_IMODE(src.stat().st_mode) == stat.S_IMODE(old.st_mode):
                return self._link_into_place(path, src, old)
            fd = os.open(work, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            return f"could not be placed ({err})"
        try:
            if not _same_file(os.fstat(fd), old):
                return CHANGED
            try:
                cloned = _copy_into(src, fd, pointer.size, clone=self._reflinks is not False)
                if self._reflinks is None:
                    self._reflinks = cloned  # one file system: its first answer stands for the rest
            except OSError as err:
                os.ftruncate(fd, 0)
                os.pwrite(fd, pointer.to_bytes(), 0)
                return f"could not be placed ({err})"
            self._replaced[path] = old
            return None
        except OSError as err:
            return f"could not be placed, and its pointer may be damaged ({err}); run `git checkout -- {path}`"
        finally:
            os.close(fd)

    def _link_into_place(self, path: str, src: Path, old: os.stat_result) -> str | None:
        """``hardlink`` mode: the store object becomes the worktree file (renamed over git's pointer)."""
        work = self.worktree / path
        tmp = work.with_name(f".{work.name}.hf-{os.getpid()}")
        try:
            os.link(src, tmp)
            if not _same_file(work.lstat(), old):
                return CHANGED
            os.replace(tmp, work)
            self._replaced[path] = old
            return None
        except OSError as err:
            return f"could not be placed ({err})"
        finally:
            tmp.unlink(missing_ok=True)

    def _start_fetch(self) -> None:
        """Hand the queued delayed objects to the background fetch (made on first use)."""
        queued = {path: p for path, p in self.queue.items() if p.oid not in self.handed}
        self.queue = {}
        if not queued:
            return
        if self.background is None:
            from git_remote_hf.lfs_transfer import BackgroundFetch

            try:
                if self._remote is None:
                    self._remote = self._client()
                client, lfs_url = self._remote
                self.background = BackgroundFetch(self.git_dir, client, lfs_url, self.names)
            except (HubfsError, OSError) as err:
                self.failed.update((path, str(err)) for path in queued)
                return
        self.names.update((p.oid, path) for path, p in queued.items())
        self.handed.update(p.oid for p in queued.values())
        mark("filter", "own-fetch", f"{len(queued)} objects")
        self.background.submit(queued.values())

    def _list_available(self) -> None:
        """git asks which delayed paths are ready: block until at least one is (stored, or failed), as the
        protocol wants, and list those; an empty list once none is left."""
        ready = self._from_watch() if self.watch is not None else []
        self._start_fetch()
        while self.delayed and not ready:
            waiting = {p: ptr for p, ptr in self.delayed.items() if p not in self.failed}
            if self.background is not None and waiting:
                self.background.wait({ptr.oid for ptr in waiting.values()})
            for path, ptr in self.delayed.items():
                why = self.background.failed.get(ptr.oid) if self.background is not None else None
                if why is not None and not self.store.has(ptr.oid, ptr.size):
                    self.failed.setdefault(path, why)
                if path in self.failed or self.store.has(ptr.oid, ptr.size):
                    ready.append(path)
            if not ready and (self.background is None or not waiting):
                ready = list(self.delayed)  # nothing in flight for them: let git ask again, and fail them
                for path in ready:
                    self.failed.setdefault(path, "it could not be fetched")
        self.pkt.text(*(f"pathname={p}" for p in ready), send=False)
        self.pkt.text("status=success")

    def _from_watch(self) -> list[str]:
        """The delayed paths the clone's background download has stored, waiting while it still brings
        some; the ones it failed or left are queued for the filter's own fetch (all, once it has ended)."""
        watch = self.watch
        assert watch is not None
        while True:
            watch.refresh()
            ready = [path for path, ptr in self.delayed.items() if ptr.oid in watch.done]
            waiting = any(watch.brings(ptr.oid) for ptr in self.delayed.values())
            if ready or not waiting:
                break
            time.sleep(POLL)
        for path, ptr in self.delayed.items():
            if path not in ready and not watch.brings(ptr.oid) and not self.store.has(ptr.oid, ptr.size):
                self.queue.setdefault(path, ptr)
        return ready

    def _fetch(self, wanted: dict[str, LfsPointer]) -> None:
        """Fetch the objects of ``wanted`` (path -> pointer) in one run; failures recorded per path."""
        from git_remote_hf.lfs_transfer import fetch_objects

        try:
            if self._remote is None:
                self._remote = self._client()
            client, lfs_url = self._remote
            fetch_objects(self.git_dir, client, lfs_url, list(wanted.values()),
                          names={p.oid: path for path, p in wanted.items()})
        except (HubfsError, OSError) as err:
            why = str(err)
            for path, pointer in wanted.items():
                if not self.store.has(pointer.oid, pointer.size):
                    self.failed[path] = why

    def close(self) -> None:
        """Stop the background fetch (waiting for what is in flight) and release the hub client."""
        if self.background is not None:
            self.background.close()
            self.background = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self._remote is not None:
            self._remote[0].close()
            self._remote = None

    def _client(self) -> tuple[HubClient, str]:
        """The hub client and LFS URL of the repo's hf remote (``remote.origin.url`` first; ``lfs.url`` if set)."""
        from git_remote_hf.auth import client_for
        from git_remote_hf.url import parse_remote_url

        urls = self.config.matching("remote", "url")
        for name in ["origin"] + sorted(r for r in urls if r != "origin"):
            url = urls.get(name, "").removeprefix("hf::")
            if not url:
                continue
            try:
                remote = parse_remote_url(url, os.environ)
            except HubfsError:
                continue
            # remote.<name>.lfsurl is what configure_repo wrote for stock git-lfs; the helper itself follows
            # HF_ENDPOINT, as the git side does, unless lfs.url says otherwise
            lfs_url = self.config.get("lfs.url") or remote.lfs_url
            return client_for(remote, self.git_dir), lfs_url
        raise HubfsError("no hf:// remote in this repository to fetch LFS objects from")

    # -- no second copy ---------------------------------------------------------------------------

    def link_smudged(self) -> None:
        """Share each smudged object's blocks with its worktree file (``hf.lfs.linkMode``, see the module doc).

        Only files git wrote during this run, with the object's size, are considered, and the link is
        hashed before it replaces the object: a worktree file that differs never enters the store.
        """
        mode = self._link_mode
        if mode not in ("reflink", "hardlink"):
            return
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        can_reflink = True
        for path, pointer in self.smudged.items():
            work = self.worktree / path
            tmp = self.store.tmp_dir / f"link-{os.getpid()}-{pointer.oid}"
            try:
                st = work.lstat()
                obj = self.store.path(pointer.oid)
                if (not work.is_file() or work.is_symlink() or st.st_size != pointer.size
                        or st.st_mtime < self.started - 2 or os.path.samestat(st, obj.stat())):
                    continue
                tmp.unlink(missing_ok=True)
                linked = can_reflink and reflink(work, tmp)
                can_reflink = linked
                if not linked:
                    if mode != "hardlink":
                        return
                    os.link(work, tmp)
                with open(tmp, "rb") as f:
                    if sha256_file(f) != (pointer.oid, pointer.size):
                        continue
                os.replace(tmp, obj)
            except FileNotFoundError:
                continue  # not in the worktree (``git cat-file --filters``, a sparse checkout, ...)
            except OSError as err:
                self.log.write(f"git-remote-hf: could not link {path} to the LFS store: {err}\n")
            finally:
                tmp.unlink(missing_ok=True)


def _grow_pipes(*fds: int) -> None:
    """Give the pipes to and from git 1 MiB of buffer (Linux; 64 KiB by default), so that an object's
    bytes cross in a few large writes instead of a ping-pong of 64 KiB ones."""
    for fd in fds:
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass  # not a pipe, or over /proc/sys/fs/pipe-max-size: the default stays


def _where() -> tuple[Path, Path]:
    """The repository's git dir and worktree top. git runs the filter at the top of the worktree; with an
    absolute ``GIT_DIR`` set (a clone sets it) and no ``GIT_WORK_TREE``, that is all it takes, otherwise
    ``git rev-parse`` says (a process start less on the way to a clone's first checked-out file)."""
    git_dir = os.environ.get("GIT_DIR", "")
    if os.path.isabs(git_dir) and "GIT_WORK_TREE" not in os.environ and os.path.isdir(git_dir):
        return Path(git_dir), Path.cwd()
    where = _git("rev-parse", "--absolute-git-dir", "--show-toplevel").splitlines()
    return Path(where[0] if where else ".git"), Path(where[1] if len(where) > 1 else ".")


def main() -> int:
    """Run the filter on stdin/stdout until git closes the pipe; 0 on a clean end."""
    git_dir, worktree = _where()
    stdout: BinaryIO = sys.stdout.buffer
    _grow_pipes(sys.stdin.fileno(), sys.stdout.fileno())
    server = FilterServer(PktLine(sys.stdin.buffer, stdout), git_dir, worktree)
    try:
        server.handshake()
        server.serve()
    except EOFError:
        pass
    except BrokenPipeError:  # git went away mid-answer (killed, or it gave up): nothing left to tell it
        return 1
    except (HubfsError, OSError) as err:
        sys.stderr.write(f"git-remote-hf filter-process: {err}\n")
        return 1
    finally:
        if server.deferring:
            server.place_deferred()
        server.close()
        if server.smudged:
            server.link_smudged()
            mark("filter", "linked")
    return 0
