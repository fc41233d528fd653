"""What the kernel says about mounts, and the two things hubfs asks of it besides FUSE itself.

- :func:`mount_at`: the mount at a path, from ``/proc/self/mountinfo`` (no ``stat``, so asking about a
  mount whose daemon died never blocks or fails);
- :func:`set_read_ahead`: the FUSE connection's bdi ``read_ahead_kb``. The kernel caps a FUSE mount's
  read-ahead at 128 KiB (the ``max_readahead`` of ``init`` is a minimum with it), which also caps the
  size of read requests; raising it after ``init`` is what gives 1 MiB requests and a read-ahead
  window the daemon can fill in parallel. Needs root; without it the mount works with 128 KiB requests;
- :func:`unmount`: ``fusermount3 -u``, or ``-u -z`` (lazy) when the mount is busy or its daemon is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hubfs.errors import MountError

FSTYPE = "fuse.hubfs"


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``: ``device`` is the bdi name (``major:minor``)."""

    device: str
    mountpoint: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` (octal)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts() -> list[MountEntry]:
    """Every mount this process sees, in mount order."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.append(MountEntry(fields[2], _unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2])))
    return out


def mount_at(mountpoint: str | Path) -> MountEntry | None:
    """The topmost mount at ``mountpoint`` (an absolute path), or None."""
    target = os.path.abspath(mountpoint)
    found = None
    for entry in mounts():
        if entry.mountpoint == target:
            found = entry
    return found


def is_hubfs_mount(mountpoint: str | Path) -> bool:
    entry = mount_at(mountpoint)
    return entry is not None and entry.fstype == FSTYPE


def is_alive(mountpoint: str | Path) -> bool:
    """Whether a FUSE mount answers (False when its daemon died: ENOTCONN). ``statfs`` always reaches the
    daemon; a ``stat`` may be answered from the kernel's attribute cache."""
    try:
        os.statvfs(mountpoint)
    except OSError:
        return False
    return True


def set_read_ahead(mountpoint: str | Path, kib: int) -> bool:
    """Set the read-ahead of the mount's bdi to ``kib`` KiB; False when not permitted or not found."""
    entry = mount_at(mountpoint)
    if entry is None:
        return False
    try:
        Path(f"/sys/class/bdi/{entry.device}/read_ahead_kb").write_text(f"{kib}\n")
    except OSError:
        return False
    return True


def read_ahead(mountpoint: str | Path) -> int | None:
    """The mount's bdi read-ahead in KiB, or None."""
    entry = mount_at(mountpoint)
    try:
        return int(Path(f"/sys/class/bdi/{entry.device}/read_ahead_kb").read_text()) if entry else None
    except (OSError, ValueError):
        return None


def unmount(mountpoint: str | Path, *, lazy: bool = False) -> None:
    """``fusermount3 -u [-z] MOUNTPOINT``; :class:`MountError` with its message when it fails."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise MountError("fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3).")
    args = [tool, "-u", *(["-z"] if lazy else []), os.fspath(mountpoint)]
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise MountError(f"{' '.join(args[:-1])} {mountpoint} failed: {message}")


__all__ = ["FSTYPE", "MountEntry", "is_alive", "is_hubfs_mount", "mount_at", "mounts", "read_ahead",
           "set_read_ahead", "unmount"]
