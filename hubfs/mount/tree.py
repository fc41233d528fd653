"""The entry table of one commit as a mount shows it, built from ONE recursive listing.

A :class:`Tree` is immutable: every folder's children, every path's :class:`~hubfs.client.snapshot.FileEntry`
and modification time, all in memory, so ``ls -l``, ``du`` and ``find`` cost no request once it is built.
A refresh builds a new tree and swaps it in whole (see :mod:`hubfs.mount.repo`); :meth:`Tree.changed`
names the files whose content differs, the only ones whose kernel cache must go.

Times: listings carry no dates, so a path's time is when this mount first saw its current content
(the mount, or the refresh that changed it); unchanged files keep theirs across refreshes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hubfs.client.snapshot import FileEntry

ROOT = FileEntry.folder("")


@dataclass(frozen=True)
class Tree:
    """One commit: ``entries`` by path (``""`` is the root folder), ``children`` names per folder (sorted),
    ``times`` in ns since the epoch per path, ``subdirs``: the number of folders in each folder (link counts)."""

    sha: str
    entries: dict[str, FileEntry]
    children: dict[str, tuple[str, ...]]
    times: dict[str, int]
    subdirs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, sha: str, listing: list[FileEntry], previous: Tree | None = None,
              now_ns: int | None = None) -> Tree:
        """The tree of ``listing`` (a recursive listing of the whole commit); folders only implied by a
        file's path are added. Times of paths whose content ``previous`` already had are kept."""
        now = time.time_ns() if now_ns is None else now_ns
        entries: dict[str, FileEntry] = {"": ROOT}
        for entry in listing:
            if entry.path:
                entries[entry.path] = entry
        for path in list(entries):
            parent = _parent(path)
            while path and parent not in entries:
                entries[parent] = FileEntry.folder(parent)
                path, parent = parent, _parent(parent)
        names: dict[str, list[str]] = {p: [] for p, e in entries.items() if e.is_dir}
        subdirs: dict[str, int] = {}
        for path, e in entries.items():
            if path:
                parent = _parent(path)
                names[parent].append(path.rsplit("/", 1)[-1])
                if e.is_dir:
                    subdirs[parent] = subdirs.get(parent, 0) + 1
        times = {p: previous.times[p] if previous is not None and previous.same(p, e) else now
                 for p, e in entries.items()}
        return cls(sha, entries, {p: tuple(sorted(n)) for p, n in names.items()}, times, subdirs)

    def entry(self, path: str) -> FileEntry | None:
        """The file or folder at ``path`` (no leading slash), None when this commit has none."""
        return self.entries.get(path)

    def listdir(self, path: str) -> tuple[str, ...] | None:
        """The names in folder ``path``; None when it is not a folder."""
        return self.children.get(path)

    def same(self, path: str, entry: FileEntry) -> bool:
        """Whether this tree has ``entry``'s content at ``path`` (same kind, size and blob)."""
        mine = self.entries.get(path)
        if mine is None or mine.is_dir != entry.is_dir:
            return False
        return entry.is_dir or (mine.size == entry.size and mine.etag == entry.etag)

    def changed(self, newer: Tree) -> list[str]:
        """The files of this tree that ``newer`` changed or removed (sorted): the kernel cache of
        these, and only these, must be dropped."""
        return sorted(p for p, e in self.entries.items() if not e.is_dir and not newer.same(p, e))

    @property
    def total_size(self) -> int:
        """Bytes of all files (for ``statfs``/``df``)."""
        return sum(e.size for e in self.entries.values() if not e.is_dir)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


__all__ = ["Tree"]
