"""Pieces the benchmark scripts share: free ports, stopping what they started, a temporary workdir."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent.parent / "tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, name: str) -> None:
    """Terminate one process we started (by its PID), killing it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            print(f"note: {name} (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def workdir(keep: bool, prefix: str = "hubfs-bench-") -> Iterator[Path]:
    """A temporary folder, removed at the end unless ``keep``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def wait_http(url: str, proc: subprocess.Popen | None, log: Path | None, timeout: float = 30) -> None:
    """Until ``url`` answers anything over HTTP; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; log:\n{tail}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def start_hub(stack: contextlib.ExitStack, tmp: Path) -> tuple[str, str]:
    """``hubfs serve --port 0`` via the tests' HubServer; returns (endpoint, admin token)."""
    sys.path.insert(0, str(TESTS))
    from hub_server import HubServer

    server = HubServer(tmp / "hub-data")
    stack.callback(server.stop)
    server.start()
    return server.endpoint, server.admin_token
