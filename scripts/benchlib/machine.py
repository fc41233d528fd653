"""The machine a benchmark ran on, as a dict (for ``--json``) and as the one line every table follows."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path


def tool_version(argv: list[str], words: int = 0) -> str:
    """First line a tool prints about its version (stdout, else stderr); ``words`` > 0 keeps that many words."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "missing"
    text = (out.stdout or out.stderr).strip()
    if not text:
        return "unknown"
    line = text.splitlines()[0]
    return " ".join(line.split()[:words]) if words else line


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                platform.processor() or "unknown")


def machine_info(tools: dict[str, str] | None = None, packages: Iterable[str] = ()) -> dict[str, str]:
    """nproc, CPU model, Python, platform; then ``tools`` (name -> version line, see ``tool_version``)
    and the ``__version__`` of each of ``packages`` (imported here)."""
    info = {"nproc": str(os.cpu_count()), "cpu": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform()}
    info.update(tools or {})
    for name in packages:
        info[name] = importlib.import_module(name).__version__
    return info


def machine_line(info: dict[str, str], tools: Iterable[str] = (), packages: Iterable[str] = ()) -> str:
    """``machine: nproc=N, CPU ..., Python X.Y.Z``, then each tool's version line, then ``package version``."""
    parts = [f"nproc={info['nproc']}", f"CPU {info['cpu']}", f"Python {info['python']}"]
    parts += [info[t] for t in tools] + [f"{p} {info[p]}" for p in packages]
    return "machine: " + ", ".join(parts)
