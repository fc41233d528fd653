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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lfs_fixtures import VENV_BIN, commit_files, git, git_env, new_repo
from test_lfs_background import _alive, marks

from git_remote_hf.filter_handoff import _LENGTH, TAKEN, _encode, socket_name
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
    work is done in the server's process, the worktree is the original's, the server is gone afterwards and
    left no file in the repository; turned off, no server starts and the filter runs in its own process.
    Same worktree."""
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
    assert not [p for p in (repo / ".git/lfs").iterdir() if p.name not in ("objects", "tmp")]


def test_a_clone_that_never_smudges_ends_its_server_unused(tmp_path: Path, env: dict[str, str], hub) -> None:
    """A clone with no LFS file to check out never starts the filter: the server ends with the clone."""
    repo_id = lfs_repo(hub, {"README.md": b"hi\n", "a.txt": b"a\n"})
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, tmp_path, "clone", "-q", f"hf://{repo_id}", "c")
    (server,) = server_pids(trace)
    wait_gone(server)
    assert ("filter-server", "unused") in [(role, phase) for _, role, phase, _ in marks(trace)]


START_SERVER_AFTER_READING = """import sys
from pathlib import Path
from git_remote_hf import filter_handoff
sys.stdin.buffer.read(1)  # the rest of what was sent sits in the stream's buffer, as a helper's commands can
print(filter_handoff.start(Path(sys.argv[1]), None))
"""


def test_the_session_reads_git_not_what_the_helper_had_buffered(tmp_path: Path, env: dict[str, str], hub) -> None:
    """The server is a fork of the helper, whose stdin stream may hold bytes git sent the helper: the
    session reads the launcher's pipe from its first byte (fresh streams), and the checkout is right."""
    files = files_of(2)
    repo_id = lfs_repo(hub, files)
    git(env, tmp_path, "clone", "-q", "--no-checkout", f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    trace = tmp_path / "trace"
    junk = b"x" + b"0012option junk\n" * 100
    out = subprocess.run([sys.executable, "-c", START_SERVER_AFTER_READING, str(repo / ".git")], input=junk,
                         env={**os.environ, TRACE_ENV: str(trace)}, capture_output=True, check=True, timeout=60)
    server = int(out.stdout)
    git({**env, TRACE_ENV: str(trace)}, repo, "checkout", "-q", "main")
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert {pid for pid, role, phase, _ in marks(trace) if (role, phase) == ("filter", "handshake-done")} == {server}
    wait_gone(server)


def test_the_server_ends_when_its_repository_is_removed(tmp_path: Path) -> None:
    """A failed clone's repository is removed by git: its server ends within a look."""
    git_dir = tmp_path / "r" / ".git"
    git_dir.mkdir(parents=True)
    pid = start_server(git_dir, tmp_path / "trace")
    assert _alive(pid) and socket_name(git_dir)[1:] in Path("/proc/net/unix").read_text()  # bound before start returned
    shutil.rmtree(tmp_path / "r")
    wait_gone(pid, timeout=3)
    assert ("filter-server", "unused") in [(role, phase) for _, role, phase, _ in marks(tmp_path / "trace")]


SQUATTER = """import os, socket, sys
os.setgid(65534); os.setuid(65534)  # another user's process from here on
s = socket.socket(socket.AF_UNIX)
s.bind("\\0" + sys.argv[1])  # the abstract name, given without its NUL
s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
print("got", len(data), len(fds), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="playing another user takes root (CI runs as root)")
def test_a_socket_of_another_user_is_handed_nothing(tmp_path: Path, env: dict[str, str], hub) -> None:
    """Another user's process listening under the repository's name (the abstract namespace is open to
    all): the launcher sees it is not its own user's, sends it nothing, and runs the filter itself."""
    files = files_of(1)
    repo_id = lfs_repo(hub, files)
    git(env, tmp_path, "clone", "-q", "--no-checkout", f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER, socket_name(repo / ".git")[1:]],
                                stdout=subprocess.PIPE)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == b"ready\n"
        trace = tmp_path / "trace"
        git({**env, TRACE_ENV: str(trace)}, repo, "checkout", "-q", "main")
        for name, content in files.items():
            assert (repo / name).read_bytes() == content
        assert ("launcher", "handed-over") not in [(role, phase) for _, role, phase, _ in marks(trace)]
        out, _ = squatter.communicate(timeout=30)
        assert out == b"got 0 0\n"  # the launcher connected, checked, and closed: no byte, no descriptor
    finally:
        squatter.kill()
        squatter.wait()


def _hand(name: str, git_dir: str, fds: list[int]) -> bytes:
    """Connect to the server ``name`` as a launcher of ``git_dir`` would, passing ``fds``; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(name)
        payload = _encode(os.getcwd(), git_dir, {"PATH": os.environ.get("PATH", "")})
        socket.send_fds(sock, [_LENGTH.pack(len(payload)) + payload], fds)
        return sock.recv(1)


OTHER_USER = """import os, socket, sys
from git_remote_hf.filter_handoff import _encode, _LENGTH
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect("\\0" + sys.argv[1])
p = _encode("/", sys.argv[2], {})
try:
    socket.send_fds(s, [_LENGTH.pack(len(p)) + p], [0, 1, 2])
except BrokenPipeError:
    pass  # refused at once (its answer is there to read), before the message
print(s.recv(1).decode())
"""


def test_the_server_refuses_another_repository_and_other_users(tmp_path: Path) -> None:
    """A connection naming another repository, or not passing stdin, stdout and stderr, is refused, and
    so is one from another user (as root: the test plays one); the server keeps waiting for its session."""
    git_dir = tmp_path / "r" / ".git"
    git_dir.mkdir(parents=True)
    (tmp_path / "other").mkdir()
    pid = start_server(git_dir, tmp_path / "trace")
    name = socket_name(git_dir)
    try:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            assert _hand(name, str(tmp_path / "other"), [null, null, null]) == b"n"
            assert _hand(name, str(git_dir), [null]) == b"n"
        finally:
            os.close(null)
        if os.geteuid() == 0:
            out = subprocess.run([str(VENV_BIN / "python"), "-c", OTHER_USER, name[1:], str(git_dir)], capture_output=True,
                                 timeout=30, cwd="/", check=False)
            assert out.stdout.strip() == b"n", out.stderr
        assert _alive(pid)
        refused = [detail for _, role, phase, detail in marks(tmp_path / "trace") if (role, phase) == ("filter-server", "refused")]
        assert refused[:2] == ["another repository", "not stdin, stdout and stderr"]
        assert refused[2:] == (["another user"] if os.geteuid() == 0 else [])
    finally:
        shutil.rmtree(tmp_path / "r")
        wait_gone(pid)


def test_a_server_that_vanishes_mid_session_fails_the_filter_without_a_hang(tmp_path: Path) -> None:
    """A server that takes the session and dies: the launcher exits 1 with a message, and whoever reads the
    filter's output (git) sees it end instead of waiting forever (the launcher kept no copy of the pipe)."""
    git_dir = tmp_path / "r" / ".git"
    git_dir.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_name(git_dir))
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
