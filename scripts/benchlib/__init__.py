"""Pieces the benchmark scripts share.

Here: free ports, starting and stopping the processes a benchmark runs, a temporary workdir, the
embedded hub, curl timings, CPU seconds and folder sizes, and the argparse and JSON boilerplate.
Beside it: ``benchlib.proxy`` (a loopback proxy that adds latency and counts requests and bytes),
``benchlib.machine`` (the machine line every benchmark prints) and ``benchlib.table`` (Markdown
tables).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

TESTS = Path(__file__).resolve().parent.parent.parent / "tests"


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


def spawn(stack: contextlib.ExitStack, name: str, argv: list[str], log: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``argv`` with stdout+stderr to ``log``; it is stopped (by its PID) when ``stack`` closes."""
    out = stack.enter_context(open(log, "wb"))  # noqa: SIM115 - closed by the stack
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    stack.callback(stop_process, proc, name)
    return proc


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
    server = start_hub_server(stack, tmp)
    return server.endpoint, server.admin_token


def start_hub_server(stack: contextlib.ExitStack, tmp: Path, *args: str) -> Any:
    """Like :func:`start_hub` (data in ``tmp/hub-data``, stopped by PID when ``stack`` closes), with extra
    ``hubfs serve`` arguments; returns the tests' ``HubServer`` (``.endpoint``, ``.admin_token``,
    ``.proc.pid``, ``.log_path``)."""
    sys.path.insert(0, str(TESTS))
    from hub_server import HubServer

    server = HubServer(tmp / "hub-data", *args)
    stack.callback(server.stop)
    server.start()
    return server


# -- measuring -----------------------------------------------------------------------------------


def curl_seconds(url: str, size: int, headers: Sequence[str] = ()) -> float:
    """One ``curl -s -o /dev/null`` of ``url`` (each of ``headers`` sent with ``-H``): curl's own
    ``time_total``, after checking that it got HTTP 200 and exactly ``size`` bytes."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}"]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    code, got, secs = out.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"curl {url}: HTTP {code}, {got} bytes (expected {size})")
    return float(secs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_bytes(root: Path) -> int:
    """The total size of the regular files under ``root`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


# -- command line and results --------------------------------------------------------------------


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def add_numbers(p: argparse.ArgumentParser, *options: tuple[str, float, str]) -> None:
    """Numeric options, each ``(flag, default, help)``, typed as their default (int or float), the help
    ending with ``(default N)``."""
    for flag, default, text in options:
        p.add_argument(flag, type=type(default), default=default, help=f"{text} (default {default:g})")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """The options every benchmark ends with: ``--json PATH`` and ``--keep``."""
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")


def write_json(path: Path, machine: dict[str, str], args: argparse.Namespace, **fields: Any) -> None:
    """The run's numbers: the machine, the arguments (as strings), then ``fields`` in their order."""
    report = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, **fields}
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


# -- hub request log and FUSE mounts (bench_mount) ---------------------------------------------------


def start_logged_hub(stack: contextlib.ExitStack, tmp: Path, request_log: Path, *args: str) -> Any:
    """Like :func:`start_hub_server`, with ``HUBFS_REQUEST_LOG=request_log``: the hub appends one line
    per request it answers (``METHOD PATH RANGE auth|anon``); read it with :class:`RequestLog`."""
    sys.path.insert(0, str(TESTS))
    from hub_server import HubServer

    request_log.touch()
    server = HubServer(tmp / "hub-data", *args, env={"HUBFS_REQUEST_LOG": str(request_log)})
    stack.callback(server.stop)
    server.start()
    return server


class RequestLog:
    """The lines a hub appended to its ``HUBFS_REQUEST_LOG`` since :meth:`mark`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> list[str]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return [ln for ln in f.read().decode("latin-1").splitlines() if ln.strip()]


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point right now (``/proc/self/mountinfo``, never touching the mount)."""
    from hubfs.mount.kernel import mount_at

    return mount_at(path) is not None


def wait_mounted(path: Path, proc: subprocess.Popen | None, log: Path | None, timeout: float = 60) -> None:
    """Until ``path`` is a mount point; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_mounted(path):
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before mounting; log:\n{tail}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} was not mounted within {timeout:.0f}s")


def fuse_unmount(path: Path) -> None:
    """``fusermount3 -u`` (lazily when busy) if ``path`` is still mounted; quiet when it is not."""
    for argv in (["fusermount3", "-u", str(path)], ["fusermount3", "-u", "-z", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(argv, capture_output=True, check=False)
    if is_mounted(path):
        print(f"note: could not unmount {path}", file=sys.stderr)


def stop_pid(pid: int, name: str, timeout: float = 15) -> None:
    """SIGTERM one process we started (by its PID, not our child), SIGKILL if it lingers."""
    import signal

    def alive() -> bool:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return False
        return state != "Z"  # a zombie has exited (its parent has not reaped it yet)

    if not alive():
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return
        time.sleep(0.05)
    print(f"note: {name} (pid {pid}) ignored SIGTERM; killing it", file=sys.stderr)
    os.kill(pid, signal.SIGKILL)
