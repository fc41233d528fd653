"""A clone's LFS filter started before git asks for it: ``git-remote-hf filter-process`` hands its session
to it instead of starting the filter itself.

git starts the filter at the first LFS file a checkout meets and waits for its handshake; in a clone of
300 LFS files (``scripts/bench_git.py``) that start (Python, the filter's imports, its set-up) took
0.2-0.35 s of a 1.0-1.4 s clone, at the moment the machine is busiest. So during a clone that checks
out and smudges, the helper forks a *server* (:func:`start`) as it fetches: it imports the filter while
the pack arrives, listens on a Unix socket named after the repository (Linux's abstract namespace: no
file in the repository, nothing left behind) and waits for one connection. ``git-remote-hf
filter-process`` (:func:`hand_over`, the standard library only) connects, passes its stdin, stdout and
stderr (``SCM_RIGHTS``) with its working folder and environment, drops its own copies of git's pipes and
waits for the exit status, which it exits with. The server takes the descriptors, folder and environment
as its own and runs :func:`git_remote_hf.filter_process.main`: the session the process would have run.

Each side makes sure the other is its own user (``SO_PEERCRED``) before anything is sent: a process of
another user that took the name first is handed nothing (the name is free to take in the abstract
namespace), and one that connects is refused. The server serves one session, of its own repository;
it ends after it, when the ``git clone`` that started it has ended (a clone with no LFS file to check
out), when the repository is removed (a failed clone), or after :data:`IDLE` seconds. A launcher that
finds no server, or is refused, runs the filter itself; one whose server vanishes mid-session exits 1
and says so, and git reports the failed filter (git sees the end of the filter's output: the launcher
kept no copy). Off: ``GIT_REMOTE_HF_FILTER_SERVER=0`` or ``git config hf.lfs.filterServer false``; only
on Linux (abstract sockets, descriptor passing).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from typing import TYPE_CHECKING

from git_remote_hf.trace import mark, mark_cpu

if TYPE_CHECKING:  # the launcher imports this module on every checkout: the standard library's lightest parts
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = ["ENV", "IDLE", "enabled", "hand_over", "socket_name", "start"]

ENV = "GIT_REMOTE_HF_FILTER_SERVER"
IDLE = 600.0  # seconds a server waits for its session at most
POLL = 0.1  # seconds between the server's looks at the repository while it waits
TIMEOUT = 10.0  # seconds either side waits for the other during the hand-over
TAKEN, REFUSED = b"y", b"n"
_LENGTH = struct.Struct("<I")
_STATUS = struct.Struct("<i")
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
MAX_MESSAGE = 1 << 20  # the launcher's folder and environment


def enabled(config_value: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether a clone starts a filter server: not turned off by ``GIT_REMOTE_HF_FILTER_SERVER`` or
    ``hf.lfs.filterServer`` (``config_value``: the boolean set, None when unset), on Linux."""
    value = (os.environ if env is None else env).get(ENV, "").strip().lower()
    return (value not in ("0", "false", "no", "off") and config_value is not False and sys.platform == "linux"
            and hasattr(os, "fork") and hasattr(socket, "send_fds"))


def socket_name(git_dir: Path | str) -> str:
    """The abstract socket name of ``git_dir``'s server: two CRC-32s of its real path (cheap to import;
    a collision only makes the other repository's server refuse the launcher, which then runs alone)."""
    import zlib

    real = os.fsencode(os.path.realpath(git_dir))
    return f"\0git-remote-hf-filter-{zlib.crc32(real):08x}{zlib.crc32(real[::-1]):08x}"


def _same_user(sock: socket.socket) -> tuple[bool, int]:
    """Whether the process at the other end of ``sock`` is this process's user, and its pid."""
    pid, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid == os.getuid(), pid


# -- the launcher's side: ``git-remote-hf filter-process`` -----------------------------------------------

def hand_over() -> int | None:
    """Give this process's filter session (stdin, stdout, stderr, folder, environment) to the clone's
    waiting server: its exit status once it has run it, or None when there is no server to take it (the
    caller runs the filter itself)."""
    if sys.platform != "linux":
        return None
    git_dir = _launcher_git_dir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(TIMEOUT)
        sock.connect(socket_name(git_dir))
        if not _same_user(sock)[0]:  # someone else's socket under that name: it gets nothing
            raise PermissionError("another user's socket")
        payload = _encode(os.getcwd(), git_dir, os.environ)
        socket.send_fds(sock, [_LENGTH.pack(len(payload)) + payload], [0, 1, 2])
        answer = sock.recv(1)
    except OSError:
        sock.close()
        return None
    if answer != TAKEN:
        sock.close()
        return None
    mark("launcher", "handed-over")
    # The session is the server's: without our copy of git's pipes, git sees the filter's output end
    # when the server's copy goes, however it ends.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    status = b""
    try:
        sock.settimeout(None)
        while len(status) < _STATUS.size and (chunk := sock.recv(_STATUS.size - len(status))):
            status += chunk
    except OSError:
        pass
    finally:
        sock.close()
    if len(status) < _STATUS.size:
        sys.stderr.write("git-remote-hf filter-process: the clone's filter server ended before its session\n")
        return 1
    code: int = _STATUS.unpack(status)[0]
    return code


def _launcher_git_dir() -> str:
    """The repository whose server may be waiting: git runs the filter at the top of the worktree, with an
    absolute ``GIT_DIR`` during a clone."""
    git_dir = os.environ.get("GIT_DIR", "")
    if os.path.isabs(git_dir) and "GIT_WORK_TREE" not in os.environ:
        return git_dir
    return os.path.join(os.getcwd(), ".git")


def _encode(cwd: str, git_dir: str, env: Mapping[str, str]) -> bytes:
    """The launcher's folder, repository and environment: NUL-separated, ``key=value`` for the environment."""
    fields = [cwd, git_dir, *(f"{k}={v}" for k, v in env.items())]
    return b"\0".join(os.fsencode(f) for f in fields)


def _decode(data: bytes) -> tuple[str, str, dict[str, str]]:
    cwd, git_dir, *pairs = [os.fsdecode(f) for f in data.split(b"\0")]
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError("malformed environment")
        env[key] = value
    if not os.path.isabs(cwd) or not os.path.isabs(git_dir):
        raise ValueError("malformed folders")
    return cwd, git_dir, env


# -- the server's side -----------------------------------------------------------------------------------

def start(git_dir: Path, clone_pid: int | None) -> int | None:
    """Fork the server of ``git_dir``'s filter session (its socket is bound before this returns, so no
    launcher can come too early); ``clone_pid``: the ``git clone`` whose end ends it too. Its pid, or
    None when it could not start (the name is taken, no fork: the filter then starts as usual)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(socket_name(git_dir))
        listener.listen(4)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except OSError as err:
        listener.close()
        mark("helper", "filter-server-failed", str(err))
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            from git_remote_hf.background import redirect_std

            redirect_std()  # off git's pipes to the helper
            code = _serve(listener, git_dir, clone_pid)
        finally:
            os._exit(code)
    listener.close()
    mark("helper", "filter-server", f"pid {pid}")
    return pid


def _serve(listener: socket.socket, git_dir: Path, clone_pid: int | None) -> int:
    """Import the filter, wait for one session of ``git_dir`` and run it; 0 when it ends unused."""
    import select
    import time

    from git_remote_hf import filter_process  # the imports this process is here to have done in time

    mark("filter-server", "ready")
    clone = _pidfd(clone_pid)
    deadline = time.monotonic() + IDLE
    try:
        while time.monotonic() < deadline and git_dir.is_dir():
            waits: list[socket.socket | int] = [listener] + ([clone] if clone is not None else [])
            ready, _, _ = select.select(waits, [], [], POLL)
            if clone is not None and clone in ready:
                break  # the clone has ended: no checkout will come
            if clone is None and clone_pid is not None and not _alive(clone_pid):
                break
            if listener in ready:
                conn, _ = listener.accept()
                session = _take(conn, git_dir)
                if session is None:
                    conn.close()
                    continue
                listener.close()  # the name is free again: a later launcher runs alone
                return _run(conn, *session, filter_process.main)
    finally:
        if clone is not None:
            os.close(clone)
    mark("filter-server", "unused")
    return 0


def _take(conn: socket.socket, git_dir: Path) -> tuple[list[int], str, dict[str, str]] | None:
    """Receive a launcher's descriptors, folder and environment and answer it: them, or None (refused:
    another user, another repository, a malformed message)."""
    fds: list[int] = []
    try:
        conn.settimeout(TIMEOUT)
        if not _same_user(conn)[0]:
            raise PermissionError("another user")
        data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
        if len(fds) != 3 or len(data) < _LENGTH.size:
            raise ValueError("not stdin, stdout and stderr")
        (length,) = _LENGTH.unpack_from(data)
        if length > MAX_MESSAGE:
            raise ValueError("too long")
        body = data[_LENGTH.size:]
        while len(body) < length and (chunk := conn.recv(length - len(body))):
            body += chunk
        if len(body) < length:
            raise ValueError("cut short")
        cwd, theirs, env = _decode(body[:length])
        if os.path.realpath(theirs) != os.path.realpath(git_dir):
            raise ValueError("another repository")
        conn.sendall(TAKEN)
        return fds, cwd, env
    except (OSError, ValueError) as err:
        mark("filter-server", "refused", str(err))
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(REFUSED)
        except OSError:
            pass
        return None


def _run(conn: socket.socket, fds: list[int], cwd: str, env: dict[str, str], main: Callable[[], int]) -> int:
    """Become the launcher's filter process (its stdio, folder and environment), run ``main`` and tell the
    launcher its exit status."""
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    # Fresh standard streams over them: the helper's own may still buffer bytes git sent the helper (the
    # originals stay referenced as sys.__stdin__ and so on, and never close a descriptor).
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's stdin for the rest of its life
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, errors="backslashreplace", buffering=1)  # noqa: SIM115
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        mark("filter", "handed-over")
        code = main()
        mark_cpu("filter")
    except Exception as err:  # noqa: BLE001 - the launcher's git must hear of it, as from the process
        sys.stderr.write(f"git-remote-hf filter-process: {err}\n")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.sendall(_STATUS.pack(code))
        except OSError:
            pass
        conn.close()
    return code


def _pidfd(pid: int | None) -> int | None:
    """A descriptor that becomes readable when process ``pid`` ends (Linux >= 5.3), or None."""
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
