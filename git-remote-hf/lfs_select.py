"""Which LFS objects a checkout needs: pointer blobs of commits' trees, and git-lfs's fetch include/exclude rules.

Trees are listed by git itself (``git ls-tree -r -l``) and the candidate blobs (under 1,024 bytes, git-lfs's
cutoff) read in one ``git cat-file --batch``; a blob is a pointer only if it parses strictly
(:meth:`hubfs.lfs.LfsPointer.parse`).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from git_remote_hf.lfs_store import lfs_enabled
from hubfs.errors import HubfsError
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer

__all__ = ["PathFilter", "skip_smudge", "tree_pointers", "wanted_objects"]


def skip_smudge(env: Mapping[str, str] | None = None) -> bool:
    """``GIT_LFS_SKIP_SMUDGE`` set to a true value: leave pointers in the worktree, fetch nothing."""
    value = (os.environ if env is None else env).get("GIT_LFS_SKIP_SMUDGE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "--git-dir", str(git_dir), *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise HubfsError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


@dataclass(frozen=True)
class PathFilter:
    """``lfs.fetchinclude`` / ``lfs.fetchexclude``: comma-separated gitignore-style patterns. A path is
    fetched when it matches an include (or there are none) and no exclude."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_git(cls, git_dir: Path) -> PathFilter:
        """The patterns in the repo's git config (any level)."""
        out = subprocess.run(["git", "--git-dir", str(git_dir), "config", "-z", "--get-regexp",
                              r"^lfs\.fetch(in|ex)clude$"], capture_output=True, text=True, check=False).stdout
        found: dict[str, list[str]] = {"lfs.fetchinclude": [], "lfs.fetchexclude": []}
        for record in out.split("\0"):
            key, _, value = record.partition("\n")
            if key.lower() in found:
                found[key.lower()] += _split(value)
        return cls(tuple(found["lfs.fetchinclude"]), tuple(found["lfs.fetchexclude"]))

    def allows(self, path: str) -> bool:
        if self.include and not any(_matches(path, p) for p in self.include):
            return False
        return not any(_matches(path, p) for p in self.exclude)


def _matches(path: str, pattern: str) -> bool:
    """git-lfs's rules, in short: ``dir/`` or ``dir`` matches what is under it; a pattern without ``/``
    matches any path component; one with ``/`` matches the whole path (``*`` and ``**`` cross ``/``)."""
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern = pattern.rstrip("/")
        return path.startswith(pattern + "/") or ("/" not in pattern and f"/{pattern}/" in f"/{path}")
    if "/" not in pattern:
        parts = path.split("/")
        return any(fnmatch.fnmatchcase(part, pattern) for part in parts)
    pattern = pattern.replace("**/", "*").replace("/**", "/*")
    return fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern + "/")


def tree_pointers(git_dir: Path, tips: Iterable[str], paths: PathFilter | None = None
                  ) -> list[tuple[str, LfsPointer]]:
    """``(path, pointer)`` for every LFS pointer blob in the trees of ``tips`` that ``paths`` allows."""
    small: dict[str, list[str]] = {}  # blob sha -> paths
    for tip in dict.fromkeys(tips):
        listing = _git(git_dir, "ls-tree", "-r", "-l", "-z", "--full-tree", tip)
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, blob_id, blob_size = meta.split()
            if kind != b"blob" or mode == b"120000" or not blob_size.isdigit() or int(blob_size) >= POINTER_MAX_SIZE:
                continue
            path = name.decode("utf-8", "surrogateescape")
            if paths is None or paths.allows(path):
                small.setdefault(blob_id.decode(), []).append(path)
    if not small:
        return []
    shas = list(small)
    data = _git(git_dir, "cat-file", "--batch", stdin="".join(s + "\n" for s in shas).encode())
    out: list[tuple[str, LfsPointer]] = []
    pos = 0
    for sha in shas:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        if len(header) < 3 or header[1] != b"blob":
            pos = end + 1
            continue
        size = int(header[2])
        blob = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1
        pointer = LfsPointer.parse(blob)
        if pointer is not None:
            out.extend((path, pointer) for path in small[sha])
    return out


def wanted_objects(git_dir: Path, tips: list[str]) -> list[tuple[str, LfsPointer]]:
    """``(path, pointer)`` of the LFS files in the trees of ``tips`` (in path order) that a checkout smudges
    and ``lfs.fetchinclude``/``lfs.fetchexclude`` allow: none with ``GIT_LFS_SKIP_SMUDGE=1``, or when the
    user opted out of the helper's LFS handling (:func:`~git_remote_hf.lfs_store.lfs_enabled`)."""
    if skip_smudge() or not tips or not lfs_enabled(git_dir):
        return []
    return tree_pointers(git_dir, tips, PathFilter.from_git(git_dir))
