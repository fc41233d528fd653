"""A clone's LFS download in a background process, overlapping git's checkout; the filter follows its progress.

git checks a clone out only after the helper has exited, and checks out every other file before the
first LFS one reaches the filter. So that the LFS objects download meanwhile, the helper forks a child
(:func:`start`) that downloads them (pipelined batch calls, adaptive concurrency; see
:mod:`git_remote_hf.lfs_transfer`) in the order git checks them out, then exits; the helper itself
answers git at once. The child's stdin, stdout and stderr are ``/dev/null``: git and whoever reads
git's output do not wait for it.

By default the child starts even earlier, at ``option cloning true`` right after ``list``
(:func:`start_listing`): it lists the remote HEAD's commit through the hub's tree API (the root, then
each top-level folder, in parallel) and fetches each group of objects as it is listed, while the
helper still fetches and indexes the pack. If the clone then checks out another commit
(``--single-branch -b``), the helper stops it (:func:`stop`) and starts the usual child; if the
listing fails, the child ends and the filter fetches. Off: ``GIT_REMOTE_HF_EARLY=0`` or
``hf.lfs.early=false``.

The status file ``.git/lfs/hf-prefetch`` ties the two: the child holds an exclusive ``flock`` on it for
its whole life (the kernel releases it however the child ends) and appends ``want <oid>`` (written
before the fork; by the early child as it lists, between a ``listing`` and a ``listed`` line),
``ok <oid>`` or ``fail <oid> <why>`` lines. The filter process (:class:`Watch`)
answers ``delayed`` for an object the child will bring and lists it to git once it is stored; when the
child has ended, whatever is still missing is fetched by the filter itself, the same path as without
a background download. The child removes the file when it is done.

Off switch: ``GIT_REMOTE_HF_BACKGROUND=0`` or ``git config hf.lfs.background false`` (the download
then happens in the helper before it answers, as in a ``git fetch``); no ``fork`` (not POSIX) falls
back to that too. A clone that checks nothing out starts no child (:mod:`git_remote_hf.clone_args`); git may
finish a clone with no LFS file while the early child still ends (it removes the status file last).
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from git_remote_hf.trace import mark, mark_cpu

if TYPE_CHECKING:
    from hubfs.client.api import HubClient
    from hubfs.lfs import LfsPointer

__all__ = ["EARLY_ENV", "ENV", "STATUS_FILE", "Watch", "early_enabled", "enabled", "redirect_std", "start", "start_listing",
           "stop"]

ENV = "GIT_REMOTE_HF_BACKGROUND"
EARLY_ENV = "GIT_REMOTE_HF_EARLY"
STATUS_FILE = "hf-prefetch"  # under .git/lfs
POLL = 0.005  # seconds between looks at the status file while waiting for the child
GONE_POLL = 0.1  # seconds between the child's checks that the repository still exists


def status_path(git_dir: Path) -> Path:
    return Path(git_dir) / "lfs" / STATUS_FILE


def enabled(config_value: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether a clone downloads in the background: not turned off by ``GIT_REMOTE_HF_BACKGROUND`` or by
    ``hf.lfs.background`` (``config_value``: the boolean set, None when unset), and ``fork`` exists."""
    return _switch(ENV, config_value, env) and hasattr(os, "fork")


def early_enabled(config_value: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether a clone's background download starts from the hub's tree listing before the pack arrives:
    not turned off by ``GIT_REMOTE_HF_EARLY`` or ``hf.lfs.early`` (``config_value``)."""
    return _switch(EARLY_ENV, config_value, env)


def _switch(name: str, config_value: bool | None, env: Mapping[str, str] | None) -> bool:
    value = (os.environ if env is None else env).get(name, "").strip().lower()
    return value not in ("0", "false", "no", "off") and config_value is not False


def start(git_dir: Path, client: HubClient, lfs_url: str, wanted: list[tuple[str, LfsPointer]]) -> bool:
    """Fork the child that downloads the objects of ``wanted`` (``(path, pointer)``, in checkout order) the
    store lacks: True once it runs, or when none is missing; False when it could not start (the caller
    then downloads in the foreground)."""
    from git_remote_hf.lfs_store import LfsStore

    todo = LfsStore(git_dir).missing(p for _, p in wanted)
    if not todo:
        return True
    names = {p.oid: path for path, p in reversed(wanted)}  # the first path of each oid
    pid = _fork(git_dir, "".join(f"want {p.oid}\n" for p in todo),
                lambda fd, path: _download(git_dir, client, lfs_url, todo, names, fd, path))
    if pid is None:
        return False
    mark("helper", "background-prefetch", f"pid {pid}, {len(todo)} objects")
    return True


def start_listing(git_dir: Path, client: HubClient, lfs_url: str,
                  pages: Callable[[HubClient], Iterable[list[tuple[str, LfsPointer]]]]) -> int | None:
    """Fork the child that downloads what ``pages(client)`` names (groups of ``(path, pointer)``, in checkout
    order: the hub's tree listing of the commit a clone checks out, called in the child with its own
    client), before the pack has even arrived. The status file starts with ``listing``; the child adds
    ``want`` lines group by group as the listing comes, then ``listed``. The child's pid, or None when it
    could not start."""
    pid = _fork(git_dir, "listing\n", lambda fd, path: _download_listed(git_dir, client, lfs_url, pages, fd, path))
    if pid is not None:
        mark("helper", "early-prefetch", f"pid {pid}")
    return pid


def stop(pid: int) -> None:
    """End an early child started for a commit the clone does not check out after all, and reap it (its
    lock goes with it); what it stored stays."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _fork(git_dir: Path, head: str, work: Callable[[int, Path], int]) -> int | None:
    """Open and lock the status file, write ``head`` to it, fork a child that runs ``work(fd, path)`` with
    its stdio on /dev/null and exits with its result: the child's pid, or None when it could not start."""
    path = status_path(git_dir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, head.encode())
        pid = os.fork()
    except OSError:
        os.close(fd)
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            redirect_std()
            code = work(fd, path)
        finally:
            os._exit(code)
    os.close(fd)  # the child's copy keeps the lock
    return pid


def redirect_std() -> None:
    """Put a forked child's stdin, stdout and stderr on /dev/null, so that git and whoever reads git's output
    do not wait for it (the parent flushed its buffers before the fork). Its other descriptors stay open:
    its objects still own them, and closing a number one of them may free later would close whatever
    reused it."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.close(devnull)


class _Status:
    """The child's side of the status file: one ``ok``/``fail`` line per settled object, counting failures."""

    def __init__(self, fd: int) -> None:
        self.fd, self.failures = fd, 0

    def line(self, text: str) -> None:
        os.write(self.fd, text.encode("utf-8", "replace"))  # O_APPEND: each line lands whole

    def settled(self, pointer: LfsPointer, why: str | None) -> None:
        if why is None:
            self.line(f"ok {pointer.oid}\n")
        else:
            self.failures += 1
            self.line(f"fail {pointer.oid} {' '.join(why.split())}\n")


def _download(git_dir: Path, client: HubClient, lfs_url: str, todo: list[LfsPointer], names: dict[str, str],
              fd: int, path: Path) -> int:
    """The child's work: fetch ``todo``, one status line per object; 0 if all arrived."""
    from git_remote_hf.lfs_transfer import fetch_objects
    from hubfs.client.api import HubClient
    from hubfs.errors import HubfsError

    _freeze()
    mark("prefetch", "start")
    status = _Status(fd)
    threading.Thread(target=_exit_when_gone, args=(git_dir,), daemon=True).start()
    # a client of its own: the parent closes the inherited one's connections when it exits
    own = HubClient(client.endpoint, client.config.token or False, tls=client.transport.tls)
    try:
        fetch_objects(git_dir, own, lfs_url, todo, progress=False, names=names, on_done=status.settled)
    except (HubfsError, OSError):
        pass  # each object already has its line; the filter fetches what is missing
    finally:
        own.close()
        path.unlink(missing_ok=True)
        mark_cpu("prefetch")
        mark("prefetch", "done", f"{status.failures} failed")
    return 1 if status.failures else 0


def _download_listed(git_dir: Path, client: HubClient, lfs_url: str,
                     pages: Callable[[HubClient], Iterable[list[tuple[str, LfsPointer]]]], fd: int, path: Path) -> int:
    """The early child's work: list, and fetch each group as it is listed; 0 if all arrived. A listing that
    fails ends it (``listed`` is written whatever happens): the filter then fetches what it needs itself."""
    from git_remote_hf.lfs_store import LfsStore
    from git_remote_hf.lfs_transfer import BackgroundFetch
    from hubfs.client.api import HubClient

    _freeze()
    mark("prefetch", "start")
    status = _Status(fd)
    threading.Thread(target=_exit_when_gone, args=(git_dir,), daemon=True).start()
    own = HubClient(client.endpoint, client.config.token or False, tls=client.transport.tls)
    store, fetch, count = LfsStore(git_dir), None, 0
    try:
        fetch = BackgroundFetch(git_dir, own, lfs_url, {}, on_done=status.settled)
        try:
            for group in pages(own):
                todo = [p for p in store.missing(p for _, p in group) if p.oid not in fetch.run.names]
                fetch.run.names.update((p.oid, name) for name, p in reversed(group) if p.oid not in fetch.run.names)
                if todo:
                    status.line("".join(f"want {p.oid}\n" for p in todo))
                    fetch.submit(todo, missing=True)
                    count += len(todo)
        except Exception as err:  # noqa: BLE001 - no listing (an older hub, an error): the filter fetches
            mark("prefetch", "listing-failed", " ".join(str(err).split())[:200])
        status.line("listed\n")
        mark("prefetch", "listed", f"{count} objects")
        fetch.drain()
    finally:
        if fetch is not None:
            fetch.close()
        own.close()
        path.unlink(missing_ok=True)
        mark_cpu("prefetch")
        mark("prefetch", "done", f"{status.failures} failed")
    return 1 if status.failures else 0


def _freeze() -> None:
    """Leave the objects of the imports out of the child's garbage collections (``gc.freeze``): they
    live as long as the process. Not with ``GIT_REMOTE_HF_GC=0``."""
    import gc

    if os.environ.get("GIT_REMOTE_HF_GC", "1") != "0":
        gc.freeze()


def _exit_when_gone(git_dir: Path) -> None:
    """End the child at once if the repository is removed under it (git removes a clone that failed after
    the fetch), so that it recreates no folder there."""
    while True:
        time.sleep(GONE_POLL)
        if not git_dir.is_dir():
            os._exit(1)


class Watch:
    """The filter's view of a running background download: ``wanted``, ``done`` and ``failed`` oids."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.wanted: set[str] = set()
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.arrived: list[str] = []  # the ``done`` oids in the order they were read
        self.running = True
        self.listing = False  # the child is still listing what it will bring (more ``want`` lines to come)
        self._partial = b""

    @classmethod
    def open(cls, git_dir: Path) -> Watch | None:
        """The watch of the download running for ``git_dir``, or None when there is none."""
        try:
            fd = os.open(status_path(git_dir), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        watch = cls(fd)
        if not watch.refresh():
            watch.close()
            return None
        return watch

    def refresh(self) -> bool:
        """Read the lines written since the last look; whether the child still runs."""
        running = self._locked()  # first: once it is seen ended, every line it wrote is there to read
        while chunk := os.read(self.fd, 1 << 16):
            self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for raw in lines:
            kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
            if kind in ("listing", "listed"):
                self.listing = kind == "listing"
                continue
            oid = rest.split(" ", 1)[0]
            {"want": self.wanted, "ok": self.done, "fail": self.failed}.get(kind, set()).add(oid)
            if kind == "ok":
                self.arrived.append(oid)
        self.running = running
        return running

    def _locked(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return False

    def brings(self, oid: str) -> bool:
        """Whether the running child is still to deliver ``oid``; while it is still listing, waits until
        it names ``oid``, has listed everything, or has ended."""
        while self.running and self.listing and oid not in self.wanted:
            time.sleep(POLL)
            self.refresh()
        return self.running and oid in self.wanted and oid not in self.done and oid not in self.failed

    def wait_for(self, oid: str) -> None:
        """Block until ``oid`` is delivered or failed, or the child has ended."""
        while self.refresh() and self.brings(oid):
            time.sleep(POLL)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
