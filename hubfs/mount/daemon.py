"""The life of a mount: check, validate, mount, serve, unmount.

``hubfs mount`` (:func:`start`) checks the mount point, then starts the daemon (``python -m
hubfs.mount.daemon``, its own session, cwd ``/``, stdout and stderr appended to a log file it names)
and waits on a pipe for one line: ``ready ...`` once the kernel mount answers, or ``error ...`` (the
endpoint, token, repo or revision is wrong, FUSE failed) -- then it exits 1 with that one line and no
mount is left. ``--foreground`` runs :func:`serve` in the calling process instead.

:func:`serve` validates before mounting: it resolves the revision and lists the commit (one-repo
mount), or checks the token (``whoami``) or the endpoint (whole hub); then runs mfusepy's
multi-threaded loop, with ``ro`` unless ``--read-write`` (one repo: then the branch is checked, and the
staging area of :mod:`hubfs.mount.writable` opened, which commits changes a crashed mount of that branch
left staged; the whole hub: :mod:`hubfs.mount.hub_writes`, which opens every staging area left with
changes now, and each repo's own at its first change). Once the kernel answers it raises the bdi ``read_ahead_kb`` (root
only), starts the ``--refresh`` poller, writes a pid file and says ``ready``. It returns when the
mount goes away (``hubfs umount``, ``fusermount3 -u``, SIGTERM/SIGINT/SIGHUP: libfuse unmounts).
A read-only mount run as root on Linux >= 6.9 mounts ``/dev/fuse`` itself (:mod:`hubfs.mount.session`)
so that files whose complete blob is cached pass through to it (:mod:`hubfs.mount.passthrough`; the
log says whether the kernel agreed); ``HUBFS_MOUNT_PASSTHROUGH=0``: libfuse mounts, as for the others.

The daemon's environment (:func:`daemon_env`) asks glibc to back its heap with transparent huge pages
(``HUBFS_MOUNT_HUGEPAGES=0``: not), so the kernel pins and copies every 1 MiB read reply from a few huge
pages instead of 256 small ones.

:func:`umount` unmounts (lazily when busy or when the daemon is dead: a SIGKILLed daemon leaves a
mount answering ENOTCONN, which :func:`umount` and the next :func:`start` both clear) and waits for
the daemon to exit. Log files and pid files live in ``$HF_HOME/hubfs/mounts/``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from hubfs import config
from hubfs.client.api import HubClient
from hubfs.errors import (
    AuthenticationError,
    HubConnectionError,
    HubfsError,
    MountError,
    PermissionDeniedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from hubfs.mount import kernel
from hubfs.paths import RepoRef, RepoType

if TYPE_CHECKING:
    from hubfs.mount.hub_writes import HubWrites
    from hubfs.mount.passthrough import Backings
    from hubfs.mount.session import OwnSession
    from hubfs.mount.writable import StagedWrites

log = logging.getLogger("hubfs.mount")

MAX_IDLE_THREADS = 64  # libfuse's worker threads kept waiting for requests
READ_AHEAD_KB = 4096  # the bdi read-ahead set after mounting: 1 MiB requests, up to 4 in flight (see inorder.py)
START_TIMEOUT = 120.0  # seconds `hubfs mount` waits for the daemon to say ready
COMMIT_DELAY = 2.0  # a read-write mount commits this long after the last change (closed file, rm, mv, ...)
Notify = Callable[[str], None]


@dataclass(frozen=True)
class MountSpec:
    """What to mount where. ``repo`` None: the whole hub (``--all``). Paths are absolute. The token is
    never part of a spec (it would show in ``ps``): it travels in the daemon's environment."""

    mountpoint: str
    repo_type: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    endpoint: str | None = None
    cache_dir: str | None = None
    refresh: float | None = None
    timeout: float = 15.0
    read_ahead_kb: int = READ_AHEAD_KB
    log_file: str | None = None
    read_write: bool = False
    commit_delay: float = COMMIT_DELAY
    allow_other: bool = True  # wanted; see allow_other(): root always, others if /etc/fuse.conf allows it

    @property
    def repo(self) -> RepoRef | None:
        return RepoRef(RepoType.parse(self.repo_type), self.repo_id) if self.repo_id else None

    def describe(self) -> str:
        """``datasets/ns/name@rev``, or ``the whole hub``."""
        repo = self.repo
        if repo is None:
            return "the whole hub"
        return f"{repo.url_prefix}" + (f"@{self.revision}" if self.revision else "")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MountSpec:
        return cls(**json.loads(text))


FUSE_CONF = "/etc/fuse.conf"


def allow_other(spec: MountSpec, fuse_conf: str = FUSE_CONF) -> bool:
    """Whether to mount with ``allow_other,default_permissions``: other users may then use the mount, and
    the kernel enforces the modes it reports (0444/0555 read-only, 0644/0755 read-write, owned by the
    mounting user). Root: unless ``--no-allow-other``. Other users: only when ``fuse_conf`` has a
    ``user_allow_other`` line (fusermount3 refuses the option otherwise), else silently off."""
    if not spec.allow_other:
        return False
    if os.geteuid() == 0:
        return True
    try:
        with open(fuse_conf) as f:
            return any(line.strip() == "user_allow_other" for line in f)
    except OSError:
        return False


# -- files of a mount ----------------------------------------------------------------------------------


def state_dir() -> Path:
    """Where mount logs and pid files go: ``$HF_HOME/hubfs/mounts``."""
    return config.hf_home() / "hubfs" / "mounts"


def _slug(mountpoint: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", mountpoint.strip("/"))[-80:] or "root"
    return f"{name}-{hashlib.sha1(mountpoint.encode()).hexdigest()[:8]}"


def log_file_for(mountpoint: str) -> Path:
    return state_dir() / f"{_slug(os.path.abspath(mountpoint))}.log"


def pid_file_for(mountpoint: str) -> Path:
    return state_dir() / f"{_slug(os.path.abspath(mountpoint))}.pid"


def daemon_pid(mountpoint: str) -> int | None:
    """The pid of the daemon serving ``mountpoint``, when its pid file names a live hubfs daemon."""
    try:
        pid = int(pid_file_for(mountpoint).read_text().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"hubfs.mount.daemon" in cmdline and state != "Z" else None


# -- checks ----------------------------------------------------------------------------------------------


def check_mountpoint(mountpoint: str) -> None:
    """A folder that is not a live hubfs mount; a dead one (its daemon killed) is unmounted first."""
    entry = kernel.mount_at(mountpoint)
    if entry is not None and entry.fstype == kernel.FSTYPE:
        if kernel.is_alive(mountpoint):
            raise MountError(f"{mountpoint} is already a hubfs mount ({entry.source}); run `hubfs umount "
                             f"{mountpoint}` first.")
        log.warning("%s: clearing a mount whose daemon is gone", mountpoint)
        kernel.unmount(mountpoint, lazy=True)
    if not os.path.isdir(mountpoint):
        raise MountError(f"mount point {mountpoint} is not a directory.")


def one_line(exc: BaseException, spec: MountSpec) -> str:
    """The message ``hubfs mount`` exits with: what was wrong, in one line."""
    where = spec.endpoint or os.environ.get("HF_ENDPOINT") or config.DEFAULT_ENDPOINT
    text = " ".join(str(exc).split())
    if isinstance(exc, HubConnectionError):
        return f"cannot reach the hub at {where}: {text}"
    if isinstance(exc, AuthenticationError):
        return f"the hub at {where} refused the token: {text}"
    if isinstance(exc, RevisionNotFoundError):
        return f"revision {spec.revision} of {spec.describe().split('@')[0]} not found at {where}: {text}"
    if isinstance(exc, RepoNotFoundError | PermissionDeniedError):
        return f"repo {spec.describe()} not found at {where} (or not visible with this token): {text}"
    return text


# -- serving (the daemon) ------------------------------------------------------------------------------


def serve(spec: MountSpec, notify: Notify | None = None) -> None:
    """Validate, mount at ``spec.mountpoint`` and serve until unmounted (see the module docstring).
    Raises a :class:`~hubfs.errors.HubfsError` (nothing mounted) when validation or mounting fails."""
    from hubfs.mount.hub_root import HubRoot
    from hubfs.mount.hub_writes import HubWrites
    from hubfs.mount.libfuse import fuse_class, load
    from hubfs.mount.ops import HubOperations, Timeouts
    from hubfs.mount.readers import Readers
    from hubfs.mount.refresh import Poller
    from hubfs.mount.repo import RepoView
    from hubfs.mount.writable import StagedWrites

    mfusepy = load()
    check_mountpoint(spec.mountpoint)
    client = HubClient(config=config.HubConfig.load(spec.endpoint, None, spec.cache_dir), timeout=spec.timeout,
                       max_retries=2)
    readers: Readers | None = None
    writes: StagedWrites | HubWrites | None = None
    try:
        recheck = spec.refresh is not None
        ns: RepoView | HubRoot
        repo = spec.repo
        readers = Readers(client, timeout=spec.timeout)
        if repo is not None:
            ns = RepoView(client, repo, spec.revision, recheck=recheck)
            ns.tree()  # the one recursive listing, before the mount appears
            what = f"{spec.describe()} at commit {ns.sha}" + (" (read-write)" if spec.read_write else "")
            timeouts = Timeouts()
            if spec.read_write:
                writes = _staged(client, ns, readers, spec)
        else:
            _check_hub(client)
            ns = HubRoot(client, recheck=recheck)
            what = f"the whole hub {client.endpoint}" + (" (read-write)" if spec.read_write else "")
            timeouts = Timeouts(entry=10.0, attr=10.0)
            if spec.read_write:
                writes = HubWrites(client, ns, readers, debounce=spec.commit_delay)
        shown = writes.ns if isinstance(writes, StagedWrites) else ns
        others = allow_other(spec)
        fsname = f"hubfs:{spec.describe() if repo is not None else client.endpoint}"
        own = _own_session(spec, fsname, others)
        ops = HubOperations(shown, readers, timeouts=timeouts, writes=writes, stream_window=spec.read_ahead_kb << 10,
                            backings=own[1] if own is not None else None, direct_reads=config.mount_direct_reads())
        ns.on_change = ops.changed
        if isinstance(writes, HubWrites) and writes.recover():
            log.info("read-write: staged changes of earlier mounts recovered; committing them")
        poller = Poller(ns, spec.refresh) if spec.refresh else None
        failed = threading.Event()
        watcher = threading.Thread(target=_announce, args=(spec, ops, poller, failed, what, notify),
                                   name="hubfs-announce", daemon=True)
        watcher.start()
        log.info("mounting %s at %s%s", what, spec.mountpoint, " (allow_other)" if others else "")
        shared = {"allow_other": True, "default_permissions": True} if others else {}
        try:
            with own[0].replacing(mfusepy) if own is not None else contextlib.nullcontext():
                fuse_class(mfusepy)(ops, spec.mountpoint, foreground=True, raw_fi=True, ro=not spec.read_write,
                                    subtype="hubfs", fsname=fsname, max_idle_threads=MAX_IDLE_THREADS, **shared)
        except RuntimeError as exc:  # libfuse's status: a failed mount, or a loop ended by a signal
            failed.set()
            if not ops.initialized.is_set():
                raise MountError(f"FUSE could not mount {spec.mountpoint} (see the log above: {exc}).") from exc
            log.info("stopped by a signal (libfuse status %s)", exc)
        finally:
            failed.set()
            if poller is not None:
                poller.stop()
        if not ops.initialized.is_set():
            raise MountError(f"FUSE could not mount {spec.mountpoint} (libfuse gave up before init; see the log).")
        log.info("unmounted %s", spec.mountpoint)
    finally:
        pid_file_for(spec.mountpoint).unlink(missing_ok=True)
        if writes is not None:
            writes.close()  # idempotent: destroy closed it already unless the mount never came up
        if readers is not None:
            readers.close()
        client.close()


PASSTHROUGH_KERNEL = (6, 9)  # the first Linux with FUSE passthrough


def _own_session(spec: MountSpec, fsname: str, others: bool) -> tuple[OwnSession, Backings] | None:
    """The session of our own that lets cached blobs pass through (:mod:`hubfs.mount.passthrough`): for
    a read-only mount run as root on Linux >= 6.9, unless ``HUBFS_MOUNT_PASSTHROUGH=0``; None: libfuse
    mounts as usual."""
    if not config.mount_passthrough() or spec.read_write or os.geteuid() != 0:
        return None
    found = re.match(r"(\d+)\.(\d+)", platform.release()) if platform.system() == "Linux" else None
    if found is None or (int(found.group(1)), int(found.group(2))) < PASSTHROUGH_KERNEL:
        log.info("FUSE passthrough of cached blobs: off (needs Linux >= 6.9)")
        return None
    from hubfs.mount.passthrough import Backings, Channel
    from hubfs.mount.session import OwnSession

    channel = Channel()
    session = OwnSession(channel, spec.mountpoint, fsname, ro=True, allow_other=others,
                         idle_threads=MAX_IDLE_THREADS)
    return session, Backings(channel)


def _staged(client: HubClient, view: object, readers: object, spec: MountSpec) -> StagedWrites:
    """The write side of a read-write mount of ``view``'s branch: its staging area, opened (recovering
    what a crashed mount left; refused when another mount of the branch holds it)."""
    from hubfs.mount.readers import Readers
    from hubfs.mount.repo import RepoView
    from hubfs.mount.writable import check_branch, open_staged

    assert isinstance(view, RepoView) and isinstance(readers, Readers)
    return open_staged(client, view, readers, check_branch(client, view.repo, spec.revision),
                       debounce=spec.commit_delay)


def _check_hub(client: HubClient) -> None:
    """A whole-hub mount: the token works (``whoami``), or, anonymous, the endpoint answers."""
    if client.config.token:
        client.whoami()
    else:
        list(islice(client.paginate("/api/models", {"limit": 1}), 1))


def _announce(spec: MountSpec, ops: object, poller: object, failed: threading.Event, what: str,
              notify: Notify | None) -> None:
    """Once the kernel mount answers: raise the bdi read-ahead, start the poller, write the pid file,
    say ``ready``. Runs beside the FUSE loop (a ``stat`` of the mount point waits for its ``init``)."""
    from hubfs.mount.ops import HubOperations
    from hubfs.mount.refresh import Poller

    assert isinstance(ops, HubOperations) and (poller is None or isinstance(poller, Poller))
    while not ops.initialized.wait(0.02):
        if failed.is_set():
            return
    while not kernel.is_hubfs_mount(spec.mountpoint):
        if failed.wait(0.01):
            return
    os.stat(spec.mountpoint)  # returns once init is answered: the bdi now takes a new read-ahead
    if ops.backings is not None:
        cache = ops.readers.deps.cache
        log.info("FUSE passthrough of cached blobs: %s",
                 ops.backings.probe(cache.root if cache is not None else Path(tempfile.gettempdir())))
    if kernel.set_read_ahead(spec.mountpoint, spec.read_ahead_kb):
        log.info("bdi read_ahead_kb = %d", spec.read_ahead_kb)
    else:
        log.warning("could not raise the bdi read-ahead (needs root): reads stay at 128 KiB per request")
    if poller is not None:
        poller.start()
        log.info("following the branch: a poll every %s s", poller.interval)
    path = pid_file_for(spec.mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    if notify is not None:
        notify(f"ready {what}")


# -- the front door -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A daemon that said ready: its pid, its log file and what it mounted."""

    pid: int
    log_file: Path
    what: str


def start(spec: MountSpec, token: str | None = None, wait: float = START_TIMEOUT) -> Started:
    """Start the daemon for ``spec`` and return once the mount answers; :class:`MountError` with the
    daemon's one-line reason otherwise (and then nothing is mounted)."""
    check_mountpoint(spec.mountpoint)
    log_path = Path(spec.log_file) if spec.log_file else log_file_for(spec.mountpoint)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = daemon_env(token)
    read, write = os.pipe()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hubfs.mount.daemon", "--notify-fd", str(write), spec.to_json()],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, pass_fds=(write,), env=env,
                                cwd="/", start_new_session=True)
    os.close(write)
    try:
        line = _read_line(read, wait)
    finally:
        os.close(read)
    if line.startswith("ready "):
        return Started(proc.pid, log_path, line[len("ready "):])
    if line.startswith("error "):
        proc.wait(30)
        raise MountError(line[len("error "):])
    if proc.poll() is None:  # no word in time: give up on it
        proc.kill()
        proc.wait(10)
        if kernel.is_hubfs_mount(spec.mountpoint):
            kernel.unmount(spec.mountpoint, lazy=True)
        raise MountError(f"the mount daemon did not get ready within {wait:.0f} s; see {log_path}")
    raise MountError(f"the mount daemon exited ({proc.returncode}) before mounting: {_last_line(log_path)} "
                     f"(log: {log_path})")


HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"  # glibc >= 2.35: madvise(MADV_HUGEPAGE) on the heap it grows


def daemon_env(token: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The daemon's environment: ``base`` (default: this process's), ``HF_TOKEN`` when ``token`` is given,
    and :data:`HUGETLB_TUNABLE` added to ``GLIBC_TUNABLES`` on glibc unless ``HUBFS_MOUNT_HUGEPAGES=0``
    (or the caller set ``glibc.malloc.hugetlb`` itself). The read pieces the daemon receives and hands
    to libfuse (see :mod:`hubfs.mount.readers`) then live in transparent huge pages where the kernel
    allows them (``/sys/kernel/mm/transparent_hugepage/enabled`` ``madvise`` or ``always``): the
    kernel pins and copies each reply from one or two folios instead of 256 pages. A tunable is read
    when a process starts, so ``--foreground`` (serving in the calling process) runs without it; older
    glibc and kernels without THP ignore it."""
    env = dict(os.environ if base is None else base)
    if token:
        env["HF_TOKEN"] = token
    tunables = env.get("GLIBC_TUNABLES", "")
    if (config.mount_hugepages() and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
            and "glibc.malloc.hugetlb=" not in tunables):
        env["GLIBC_TUNABLES"] = f"{tunables}:{HUGETLB_TUNABLE}" if tunables else HUGETLB_TUNABLE
    return env


def _read_line(fd: int, wait: float) -> str:
    """The first line written on pipe ``fd`` within ``wait`` seconds ('' on EOF or timeout)."""
    deadline = time.monotonic() + wait
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").split("\n", 1)[0]


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def umount(mountpoint: str, wait: float = 10.0) -> str:
    """Unmount a hubfs mount (lazily if busy or dead) and wait up to ``wait`` s for its daemon to exit;
    returns what was done, in words. :class:`MountError` when ``mountpoint`` is no hubfs mount."""
    mountpoint = os.path.abspath(mountpoint)
    entry = kernel.mount_at(mountpoint)
    if entry is None or entry.fstype != kernel.FSTYPE:
        raise MountError(f"{mountpoint} is not a hubfs mount.")
    pid = daemon_pid(mountpoint)
    alive = kernel.is_alive(mountpoint)
    how = "unmounted"
    try:
        kernel.unmount(mountpoint)
    except MountError:
        kernel.unmount(mountpoint, lazy=True)
        how = "lazily unmounted (busy)" if alive else "lazily unmounted (its daemon was gone)"
    if not alive and how == "unmounted":
        how = "unmounted (its daemon was gone)"
    deadline = time.monotonic() + wait
    while pid is not None and daemon_pid(mountpoint) == pid and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid is not None and daemon_pid(mountpoint) == pid:
        return f"{how} {mountpoint}; its daemon (pid {pid}) is still finishing"
    pid_file_for(mountpoint).unlink(missing_ok=True)
    return f"{how} {mountpoint}"


# -- the daemon process ---------------------------------------------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubfs.mount.daemon")
    parser.add_argument("--notify-fd", type=int)
    parser.add_argument("spec")
    args = parser.parse_args(argv)
    spec = MountSpec.from_json(args.spec)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def notify(line: str) -> None:
        if args.notify_fd is not None:
            try:
                os.write(args.notify_fd, (line + "\n").encode())
                os.close(args.notify_fd)
            except OSError:
                pass
            args.notify_fd = None

    try:
        serve(spec, notify)
    except HubfsError as exc:
        message = one_line(exc, spec)
        log.error("%s", message)
        notify(f"error {message}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
