"""The local cache as ``hubfs cache ls`` and ``hubfs cache rm`` see it: each cached repo with its size,
files, revisions and last access, and the selection of repos by id or glob pattern.

A target is ``[datasets/|spaces/]ID`` where ``ID`` is a repo id (``ns/name``, or a canonical ``gpt2``)
or a glob over ids (``facebook/*``, ``*bert*``); without a prefix it names models, as ``hf://`` paths do.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hubfs.client.cache import CachedRepo, HubCache
from hubfs.errors import InvalidNameError, NotFoundError
from hubfs.paths import RepoType, validate_name

__all__ = ["CacheEntry", "ago", "scan", "select"]


@dataclass(frozen=True)
class CacheEntry:
    """One cached repo and the last time any of its files was read or written (None: no files)."""

    repo: CachedRepo
    last_access: float | None

    @property
    def label(self) -> str:
        """``ns/name`` for models, ``datasets/ns/name`` otherwise (what ``cache rm`` takes)."""
        return f"{RepoType.parse(self.repo.repo_type).url_prefix}{self.repo.repo_id}"


def _last_access(folder: Path) -> float | None:
    latest = None
    for sub in ("blobs", "snapshots", "refs"):
        base = folder / sub
        if not base.is_dir():
            continue
        for root, _dirs, files in os.walk(base):
            for name in files:
                try:
                    st = os.stat(os.path.join(root, name), follow_symlinks=False)
                except OSError:
                    continue
                seen = max(st.st_atime, st.st_mtime)
                latest = seen if latest is None else max(latest, seen)
    return latest


def scan(cache: HubCache) -> list[CacheEntry]:
    """Every repo of the cache, sorted by type and id."""
    return [CacheEntry(r, _last_access(r.path)) for r in cache.scan()]


def _target(text: str) -> tuple[RepoType, str]:
    """``[datasets/|spaces/]ID-or-glob`` -> (type, pattern)."""
    rest, kind = text.strip().strip("/"), RepoType.MODEL
    for candidate in (RepoType.DATASET, RepoType.SPACE):
        if rest.startswith(candidate.url_prefix):
            kind, rest = candidate, rest[len(candidate.url_prefix):]
            break
    parts = rest.split("/")
    if not rest or len(parts) > 2:
        raise InvalidNameError(f"{text!r}: expected a repo id (ns/name, or a canonical name like gpt2), a glob "
                               "such as 'facebook/*', with datasets/ or spaces/ in front for those types.")
    if not any(c in rest for c in "*?["):
        for i, part in enumerate(parts):
            validate_name(part, "namespace" if i == 0 and len(parts) == 2 else "repo name")
    return kind, rest


def select(entries: list[CacheEntry], targets: list[str]) -> list[CacheEntry]:
    """The entries the targets name, each once, in cache order; a target matching nothing raises
    :class:`NotFoundError` (nothing is selected then)."""
    chosen: dict[Path, CacheEntry] = {}
    for text in targets:
        kind, pattern = _target(text)
        hits = [e for e in entries if RepoType.parse(e.repo.repo_type) is kind
                and fnmatch.fnmatchcase(e.repo.repo_id.lower(), pattern.lower())]
        if not hits:
            raise NotFoundError(f"{text} is not in the cache (see `hubfs cache ls`).")
        for e in hits:
            chosen[e.repo.path] = e
    return [e for e in entries if e.repo.path in chosen]


def ago(ts: float | None, now: float | None = None) -> str:
    """``5 minutes ago``-style ages (``never`` for None)."""
    if ts is None:
        return "never"
    seconds = max(0.0, (now if now is not None else time.time()) - ts)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "a few seconds ago"
