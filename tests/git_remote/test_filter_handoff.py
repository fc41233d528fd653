"""A clone's LFS filter started in advance (git_remote_hf.filter_handoff): ``git-remote-hf filter-process``
hands its session to it, each way off, its refusals and its ends, with real git, a real hub, real sockets
and no git-lfs on PATH."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lfs_fixtures import VENV_BIN, commit_files, git, git_env, new_repo
from test_lfs_background import _alive, marks

from git_remote_hf.filter_handoff import _LENGTH, SOCKET, TAKEN, _encode, socket_path
from git_remote_hf.trace import TRACE_ENV
from hubfs.client.api import HubClient


@pytest.fixture
def env(tmp_path: Path, hub) -> dict[str, str]:
    return git_env(tmp_path, lfs=False, endpoint=hub.endpoint, token=hub.admin_token)


def lfs_repo(hub, files: dict[str, bytes]) -> str:
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
    return repo_id


def server_pids(trace: Path) -> list[int]:
    """The filter servers the helper forked ("pid N" at ``filter-server``)."""
    return [int(detail.split()[1]) for _, role, phase, detail in marks(trace) if (role, phase) == ("helper", "filter-server")]


def wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid), f"process {pid} still runs"


def files_of(i: int) -> dict[str, bytes]:
    rng = random.Random(i)
    files = {f"w/{n:02d}.bin": rng.randbytes(30_000 + 97 * n + i) for n in range(12)}
    files.update({f"t/{n:02d}.txt": b"text %d %d\n" % (i, n) for n in range(20)})
    return files


START_SERVER = """import sys
from pathlib import Path
from git_remote_hf import filter_handoff
print(filter_handoff.start(Path(sys.argv[1]), None))
"""


def start_server(git_dir: Path, trace: Path) -> int:
    """A server for ``git_dir`` forked by a process of its own (not by this test's threaded one); its pid."""
    out = subprocess.run([sys.executable, "-c", START_SERVER, str(git_dir)], env={**os.environ, TRACE_ENV: str(trace)},
                         capture_output=True, check=True, timeout=60)
    return int(out.stdout)


@pytest.mark.parametrize("switch", ["default", "env-off", "config-off"])
def test_the_checkout_hands_its_filter_session_to_the_server(tmp_path: Path, env: dict[str, str], hub,
                                                            switch: str) -> None:
    """By default the helper forks a server that git's filter launcher hands its session to: the filter's
    work is done in the server's process, the worktree is the original's, and server and socket are gone
    afterwards; turned off, no server starts and the filter runs in its own process. Same worktree."""
    files = files_of(0)
    repo_id = lfs_repo(hub, files)
    trace = tmp_path / "trace"
    run_env, options = {**env, TRACE_ENV: str(trace)}, []
    if switch == "env-off":
        run_env["GIT_REMOTE_HF_FILTER_SERVER"] = "0"
    elif switch == "config-off":
        options = ["-c", "hf.lfs.filterServer=false"]
    git(run_env, tmp_path, "clone", "-q", *options, f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert git(env, repo, "status", "--porcelain").stdout == b""
    seen = marks(trace)
    smudging = {pid for pid, role, phase, _ in seen if (role, phase) == ("filter", "handshake-done")}
    launchers = {pid for pid, role, phase, _ in seen if (role, phase) == ("filter", "start")}
    servers = server_pids(trace)
    if switch == "default":
        assert len(servers) == 1 and smudging == set(servers)  # the session ran in the server
        assert ("launcher", "handed-over") in [(role, phase) for _, role, phase, _ in seen]
        assert launchers.isdisjoint(smudging)
        wait_gone(servers[0])
    else:
        assert not servers and smudging == launchers and len(smudging) == 1
    assert not (repo / ".git/lfs" / SOCKET).exists()


def test_a_clone_that_never_smudges_ends_its_server_unused(tmp_path: Path, env: dict[str, str], hub) -> None:
    """A clone with no LFS file to check out never starts the filter: the server ends with the clone, and
    takes its socket with it."""
    repo_id = lfs_repo(hub, {"README.md": b"hi\n", "a.txt": b"a\n"})
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, tmp_path, "clone", "-q", f"hf://{repo_id}", "c")
    (server,) = server_pids(trace)
    wait_gone(server)
    assert ("filter-server", "unused") in [(role, phase) for _, role, phase, _ in marks(trace)]
    assert not (tmp_path / "c/.git/lfs" / SOCKET).exists()


def test_the_server_ends_when_its_repository_is_removed(tmp_path: Path) -> None:
    """A failed clone's repository is removed by git: its server ends within a look."""
    git_dir = tmp_path / "r" / ".git"
    git_dir.mkdir(parents=True)
    pid = start_server(git_dir, tmp_path / "trace")
    assert _alive(pid) and Path(socket_path(git_dir)).exists()  # bound before start returned
    shutil.rmtree(tmp_path / "r")
    wait_gone(pid, timeout=3)
    assert ("filter-server", "unused") in [(role, phase) for _, role, phase, _ in marks(tmp_path / "trace")]


def test_a_stale_socket_leaves_the_filter_to_its_own_process(tmp_path: Path, env: dict[str, str], hub) -> None:
    """A socket file nobody listens on (a server that was killed): the launcher cannot connect and runs
    the filter itself; the checkout is the same."""
    files = files_of(1)
    repo_id = lfs_repo(hub, files)
    git(env, tmp_path, "clone", "-q", "--no-checkout", f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    (repo / ".git/lfs").mkdir(exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(repo / ".git/lfs" / SOCKET))
    dead.close()
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, repo, "checkout", "-q", "main")
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert ("launcher", "handed-over") not in [(role, phase) for _, role, phase, _ in marks(trace)]


def _hand(path: str, git_dir: str, fds: list[int]) -> bytes:
    """Connect to the server at ``path`` as a launcher of ``git_dir`` would, passing ``fds``; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        payload = _encode(os.getcwd(), git_dir, {"PATH": os.environ.get("PATH", "")})
        socket.send_fds(sock, [_LENGTH.pack(len(payload)) + payload], fds)
        return sock.recv(1)


def test_the_server_refuses_another_repository_and_other_users(tmp_path: Path) -> None:
    """A connection naming another repository is refused (the server keeps waiting); the socket is its
    user's alone, and a connection from another user that gets through anyway is refused too."""
    root = Path(tempfile.mkdtemp(prefix="hubfs-handoff-"))  # a folder any user may cross (not pytest's)
    root.chmod(0o755)
    git_dir = root / "r" / ".git"
    git_dir.mkdir(parents=True)
    (root / "r").chmod(0o755)
    git_dir.chmod(0o755)
    (tmp_path / "other").mkdir()
    pid = start_server(git_dir, tmp_path / "trace")
    path = socket_path(git_dir)
    os.chmod(os.path.dirname(path), 0o755)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
        null = os.open(os.devnull, os.O_RDWR)
        try:
            assert _hand(path, str(tmp_path / "other"), [null, null, null]) == b"n"
            assert _hand(path, str(git_dir), [null]) == b"n"  # not stdin, stdout and stderr
        finally:
            os.close(null)
        if os.geteuid() == 0:  # another user: the file's mode keeps it out; the server's check too
            probe = ("import os, socket, sys; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX);"
                     "\ntry:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('denied')\n")
            out = subprocess.run([str(VENV_BIN / "python"), "-c", probe, path], capture_output=True, timeout=30, check=False)
            assert out.stdout.strip() == b"denied", out.stderr
            os.chmod(path, 0o777)
            script = ("import os, socket, sys\n"
                      "from git_remote_hf.filter_handoff import _encode, _LENGTH\n"
                      "os.setgid(65534); os.setuid(65534)\n"
                      "s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])\n"
                      "p = _encode('/', sys.argv[2], {})\n"
                      "socket.send_fds(s, [_LENGTH.pack(len(p)) + p], [0, 1, 2])\n"
                      "print(s.recv(1).decode())\n")
            out = subprocess.run([str(VENV_BIN / "python"), "-c", script, path, str(git_dir)], capture_output=True, check=False,
                                 timeout=30, cwd="/")
            assert out.stdout.strip() == b"n", out.stderr
        assert _alive(pid)  # still waiting for its own session
        assert [(role, phase) for _, role, phase, _ in marks(tmp_path / "trace")].count(("filter-server", "refused")) \
            == (3 if os.geteuid() == 0 else 2)
    finally:
        shutil.rmtree(root)
        wait_gone(pid)


def test_a_server_that_vanishes_mid_session_fails_the_filter_without_a_hang(tmp_path: Path) -> None:
    """A server that takes the session and dies: the launcher exits 1 with a message, and whoever reads the
    filter's output (git) sees it end instead of waiting forever (the launcher kept no copy of the pipe)."""
    git_dir = tmp_path / "r" / ".git"
    (git_dir / "lfs").mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path(git_dir))
    listener.listen(1)

    def dying_server() -> None:
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            conn.sendall(TAKEN)
            for fd in fds:
                os.close(fd)  # and never a status

    server = threading.Thread(target=dying_server)
    server.start()
    try:
        launcher = subprocess.Popen([str(VENV_BIN / "git-remote-hf"), "filter-process"], cwd=git_dir.parent,
                                    env={**os.environ, "GIT_DIR": str(git_dir)}, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = launcher.communicate(timeout=30)
        assert launcher.returncode == 1 and out == b""
        assert b"filter server ended before its session" in err
    finally:
        server.join(timeout=30)
        listener.close()


def test_concurrent_clones_each_hand_over_to_their_own_server(tmp_path: Path, env: dict[str, str], hub) -> None:
    """Four clones of four repositories at once: each checkout is handed to its own clone's server, and
    every file of every clone is its repository's (byte-checked)."""
    repos = [(lfs_repo(hub, files_of(i)), files_of(i)) for i in range(4)]

    def clone(i: int) -> tuple[Path, Path]:
        trace, dest = tmp_path / f"trace{i}", tmp_path / f"c{i}"
        git({**env, TRACE_ENV: str(trace)}, tmp_path, "clone", "-q", f"hf://{repos[i][0]}", dest.name)
        return trace, dest

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(clone, range(4)))
    servers = []
    for (trace, dest), (_, files) in zip(done, repos):
        for name, content in files.items():
            assert (dest / name).read_bytes() == content, (dest, name)
        assert git(env, dest, "status", "--porcelain").stdout == b""
        (server,) = server_pids(trace)
        assert {pid for pid, role, phase, _ in marks(trace) if (role, phase) == ("filter", "handshake-done")} == {server}
        servers.append(server)
    assert len(set(servers)) == 4
