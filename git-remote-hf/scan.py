"""What a push would send, seen before anything is sent: new blobs too big for plain git, and new LFS pointers.

The walk is git's own (``git rev-list --objects <new> --not <remote tips>`` and ``git cat-file``), run in
``$GIT_DIR``: it names each blob's path, which the refusal message needs.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hubfs.config import REGULAR_MAX
from hubfs.errors import HubfsError
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer

__all__ = ["PushScan", "git", "scan_push"]


@dataclass
class PushScan:
    """The new objects of one pushed tip: blobs of ``REGULAR_MAX`` bytes or more, and LFS pointers."""

    too_big: list[tuple[str, int]] = field(default_factory=list)  # (path, size)
    pointers: list[LfsPointer] = field(default_factory=list)


def git(git_dir: Path, *args: str, data: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``git <args>`` in ``git_dir`` (stdin ``data``); raise a one-line error if ``check`` and it fails."""
    env = {**os.environ, "GIT_DIR": str(git_dir)}
    proc = subprocess.run(["git", *args], input=data, capture_output=True, env=env, check=False)
    if check and proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise HubfsError(f"git {args[0]} failed: {detail[-1] if detail else proc.returncode}")
    return proc


def scan_push(git_dir: Path, new: str, haves: list[str], limit: int = REGULAR_MAX) -> PushScan:
    """Scan the objects reachable from ``new`` and not from ``haves`` (all present locally)."""
    listing = git(git_dir, "rev-list", "--objects", "--stdin", data="\n".join([new, *(f"^{h}" for h in haves)]).encode()
                  + b"\n").stdout
    paths: dict[bytes, bytes] = {}
    for line in listing.splitlines():
        sha, _, path = line.partition(b" ")
        if path:  # commits have no path; trees and blobs do
            paths.setdefault(sha, path)
    if not paths:
        return PushScan()
    checks = git(git_dir, "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)",
                 data=b"\n".join(paths) + b"\n").stdout
    result, small = PushScan(), []
    for line in checks.splitlines():
        sha, kind, size_text = line.split(b" ")
        if kind != b"blob":
            continue
        size = int(size_text)
        if size >= limit:
            result.too_big.append((paths[sha].decode("utf-8", "surrogateescape"), size))
        elif size < POINTER_MAX_SIZE:
            small.append(sha)
    if small:
        result.pointers = _pointers(git_dir, small)
    return result


def _pointers(git_dir: Path, blobs: list[bytes]) -> list[LfsPointer]:
    """The LFS pointers among the (small) ``blobs``, each oid once."""
    out = git(git_dir, "cat-file", "--batch", data=b"\n".join(blobs) + b"\n").stdout
    found: dict[str, LfsPointer] = {}
    pos = 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        _sha, _kind, size_text = out[pos:header_end].split(b" ")
        start = header_end + 1
        end = start + int(size_text)
        pointer = LfsPointer.parse(out[start:end])
        if pointer is not None:
            found.setdefault(pointer.oid, pointer)
        pos = end + 1  # the LF after each object
    return list(found.values())
