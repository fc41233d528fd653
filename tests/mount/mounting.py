"""Helpers of the mount tests: real kernel mounts made with the `hubfs mount` command, always undone.

``mounter(tmp_path)`` gives ``mount(target, *args, env=...) -> Mount``; every mount it made is unmounted
at the end of the test (``hubfs umount``, then ``fusermount3 -u -z``), and every daemon it started is
killed if still alive, even when the test failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hub_server import RequestLog

MiB = 1 << 20


def hubfs(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``hubfs ARGS`` (the real command line) and return its result."""
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def is_mounted(path: Path) -> bool:
    from hubfs.mount.kernel import mount_at

    return mount_at(path) is not None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Mount:
    """A live mount: its folder, the daemon's pid and log file."""

    path: Path
    pid: int
    log: Path

    def __truediv__(self, other: str) -> Path:
        return self.path / other


class Mounter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: list[Mount] = []
        self.pids: list[int] = []

    def __call__(self, target: str, *args: str, env: dict[str, str] | None = None, name: str = "mnt") -> Mount:
        path = self.root / name
        path.mkdir(exist_ok=True)
        cli = ["mount", *([target] if target else []), str(path), *args]
        done = hubfs(*cli, env=env)
        assert done.returncode == 0, done.stderr
        m = re.search(r"daemon pid (\d+), log (.+)\)$", done.stdout.strip())
        assert m, done.stdout
        mount = Mount(path, int(m.group(1)), Path(m.group(2)))
        self.mounts.append(mount)
        self.pids.append(mount.pid)
        assert is_mounted(path)
        return mount

    def cleanup(self) -> None:
        for mount in self.mounts:
            if is_mounted(mount.path):
                hubfs("umount", str(mount.path), timeout=30)
            if is_mounted(mount.path):
                subprocess.run(["fusermount3", "-u", "-z", str(mount.path)], check=False)
        for pid in self.pids:
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def mounting(root: Path) -> Iterator[Mounter]:
    mounter = Mounter(root)
    try:
        yield mounter
    finally:
        mounter.cleanup()


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Mounter]:
    """``mounter(target, *args)`` mounts into ``tmp_path`` and unmounts at the end, even on failure."""
    with mounting(tmp_path) as m:
        yield m


def ranges(log: RequestLog, name: str) -> list[tuple[int, int]]:
    """(start, end) of the ranged GETs a logging hub answered for files named ``name``."""
    out = []
    for method, path, rng, _ in log.lines():
        if method == "GET" and path.endswith("/" + name) and rng.startswith("bytes="):
            a, b = rng[len("bytes="):].split("-")
            out.append((int(a), int(b) + 1))
    return out


def read_in_child(path: Path, *, offset: int = 0, length: int = -1, timeout: float = 60) -> tuple[int, str]:
    """Read in another process (a hung read can then never hang the test): (exit code, stderr)."""
    code = ("import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "off, n = int(sys.argv[2]), int(sys.argv[3])\n"
            "size = os.fstat(fd).st_size if n < 0 else off + n\n"
            "while off < size:\n"
            "    got = os.pread(fd, min(1 << 20, size - off), off)\n"
            "    if not got: break\n"
            "    off += len(got)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(offset), str(length)], capture_output=True, check=False,
                          text=True, timeout=timeout)
    return done.returncode, done.stderr


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Wait until ``check()`` holds (polling; never a fixed sleep), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def errno_of(fn: Callable[[], Any]) -> int:
    """The errno ``fn()`` fails with (0: it did not fail)."""
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def committed(hub: Any, rid: str, repo_type: str = "model") -> dict[str, bytes]:
    """Every file of the branch head (but .gitattributes) and its bytes, read from the hub."""
    from hubfs.client.api import HubClient

    with HubClient(hub.endpoint, hub.admin_token) as client:
        sha = client.resolve(repo_type, rid, "main", refresh=True)
        out = {}
        for e in client.list_tree(repo_type, rid, sha, recursive=True):
            if e.get("type") == "file" and e["path"] != ".gitattributes":
                out[e["path"]] = client.read_range(client.file_url(repo_type, rid, sha, e["path"]), 0, 1 << 40)[0]
        return out


__all__ = ["MiB", "Mount", "Mounter", "alive", "committed", "errno_of", "hubfs", "is_mounted", "mounter", "mounting",
           "ranges", "read_in_child", "wait_for"]
