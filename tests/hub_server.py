"""A real `hubfs serve` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


class HubServer:
    """Starts ``python -m hubfs.cli serve --port 0`` and reads the endpoint it prints."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.server.log"

    def start(self, timeout: float = 30) -> "HubServer":
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hubfs.cli", "serve", "--data", str(self.data_dir), "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
        )
        deadline = time.time() + timeout
        assert self.proc.stdout is not None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"hub exited early; see {self.log_path}")
            m = re.match(r"endpoint: (\S+)", line)
            if m:
                self.endpoint = m.group(1)
                break
        self._wait_ready(deadline)
        return self

    def _wait_ready(self, deadline: float) -> None:
        while time.time() < deadline:
            try:
                httpx.get(f"{self.endpoint}/api/agent-harnesses", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("hub did not answer in time")

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def cli(self, *args: str) -> str:
        """Run ``hubfs ARGS --data DIR`` and return its stdout."""
        out = subprocess.run([sys.executable, "-m", "hubfs.cli", *args, "--data", str(self.data_dir)],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def add_user(self, name: str, org: str | None = None, role: str = "write") -> str:
        """Create a user (optionally in an org) and return a new token of theirs."""
        self.cli("user", "add", name, *(["--org", org] if org else []))
        return self.cli("token", "create", name, "--role", role)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "_log", None):
            self._log.close()


class RequestLog:
    """The requests a hub appended to ``HUBFS_REQUEST_LOG`` (start it with that variable set): one
    ``(method, raw path, range, auth|anon)`` per request."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def clear(self) -> None:
        self.path.write_text("")

    def lines(self) -> list[tuple[str, str, str, str]]:
        out = []
        for line in self.path.read_text().splitlines():
            method, path, rest = line.split(" ", 2)
            rng, auth = rest.rsplit(" ", 1)
            out.append((method, path, rng, auth))
        return out

    def matching(self, method: str, pattern: str) -> list[tuple[str, str, str, str]]:
        return [ln for ln in self.lines() if ln[0] == method and re.search(pattern, ln[1])]

    def text(self) -> str:
        return self.path.read_text()

    def count(self, pattern: str) -> int:
        """Requests whose ``METHOD PATH`` matches ``pattern``."""
        return sum(1 for m, p, *_ in self.lines() if re.search(pattern, f"{m} {p}"))
