"""One repo as a mount shows it: one commit at a time, switched atomically on refresh.

A :class:`RepoView` pins its revision to a commit (:class:`~hubfs.client.snapshot.Snapshot`) and shows
that commit's :class:`~hubfs.mount.tree.Tree`, built from one recursive listing the first time it is
needed. :meth:`RepoView.refresh` asks the hub where the branch points now (one cheap request) and, when
it moved, lists the new commit, swaps snapshot and tree in one assignment, and reports the files whose
content changed to ``on_change``. A path missing from a view that follows a branch (``recheck`` on)
re-checks the branch first when the last check is older than ``NEGATIVE_TTL``: ENOENT is answered only
for a listing known to be current.

:class:`Namespace` is what :class:`~hubfs.mount.ops.HubOperations` reads through; a RepoView is the
namespace of a one-repo mount, :class:`~hubfs.mount.hub_root.HubRoot` that of a whole-hub mount.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hubfs.client.api import HubClient
from hubfs.client.reader import ReadTarget
from hubfs.client.snapshot import FileEntry, Snapshot
from hubfs.mount.tree import Tree
from hubfs.paths import DEFAULT_REVISION, RepoRef, is_commit_sha

log = logging.getLogger("hubfs.mount")

NEGATIVE_TTL = 1.0  # seconds a miss is trusted before the branch is asked again (kernel negative_timeout too)
ChangeListener = Callable[[str, list[str]], None]  # (mount path of the repo's root, changed paths in the repo)


@dataclass(frozen=True)
class Node:
    """What a mount path names: a folder, or a file of ``view`` at commit ``sha`` (``path`` in the repo).

    ``nlink``: a folder's link count, 2 + its subfolders (1 when not known without a request: the "not
    counted" convention ``find`` understands); files 1. ``mode`` (permission bits), ``uid``/``gid``,
    ``atime_ns`` and ``ctime_ns``: set where the mount keeps them (staged entries, touched files); None: the
    defaults (the mount's modes and owner, all times ``mtime_ns``)."""

    is_dir: bool
    size: int
    mtime_ns: int
    view: RepoView | None = None
    path: str = ""
    entry: FileEntry | None = None
    sha: str = ""
    nlink: int = 1
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    ctime_ns: int | None = None

    @property
    def etag(self) -> str:
        """The file's content hash (empty for folders): two nodes with one etag hold the same bytes."""
        return (self.entry.etag or "") if self.entry is not None else ""


class Namespace(Protocol):
    """The tree a mount shows. Paths have no leading slash; ``""`` is the mount's root."""

    def lookup(self, path: str) -> Node | None:
        """The node at ``path``; None when there is none (after any re-check)."""
        ...

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        """(name, is folder) of the entries in folder ``path``; None when it is not a folder."""
        ...

    def views(self) -> list[RepoView]:
        """The repos shown so far (what a refresh polls)."""
        ...


class RepoView:
    """``repo`` at ``revision`` (default main), mounted at ``prefix`` ("" for a one-repo mount).

    Creating one resolves the revision (one request; raises the hub's error: repo or revision not
    found, bad token, unreachable). ``recheck``: misses re-check a branch before they are final.
    """

    def __init__(self, client: HubClient, repo: RepoRef, revision: str | None = None, *, prefix: str = "",
                 recheck: bool = False, on_change: ChangeListener | None = None) -> None:
        self.client, self.repo, self.prefix = client, repo, prefix
        self.revision = revision or DEFAULT_REVISION
        self.recheck = recheck and not is_commit_sha(self.revision)
        self.on_change = on_change
        self._state: tuple[Snapshot, Tree | None] = (client.snapshot(repo, revision), None)
        self._lock = threading.Lock()  # one tree build or refresh at a time
        self._checked = time.monotonic()

    def __repr__(self) -> str:
        return f"RepoView({self.repo}@{self.revision} = {self.sha})"

    @property
    def sha(self) -> str:
        """The commit shown now."""
        return self._state[0].sha

    @property
    def listed(self) -> bool:
        """Whether the tree was built (something inside the repo was looked at)."""
        return self._state[1] is not None

    @property
    def follows_branch(self) -> bool:
        """Whether the revision can move (a branch or tag, not a commit sha)."""
        return not is_commit_sha(self.revision)

    def tree(self) -> Tree:
        """The tree of the commit shown now (listed on first use: one request per 1,000 entries)."""
        snapshot, tree = self._state
        if tree is not None:
            return tree
        with self._lock:
            snapshot, tree = self._state
            if tree is None:
                tree = Tree.build(snapshot.sha, snapshot.walk(""))
                self._state = (snapshot, tree)
                log.info("%s: %d entries at commit %s", self.repo, len(tree.entries), snapshot.sha)
            return tree

    # -- the namespace --------------------------------------------------------------------------------

    def lookup(self, path: str) -> Node | None:
        tree = self.tree()
        entry = tree.entry(path)
        if entry is None and self._stale():
            self.refresh()
            tree = self.tree()
            entry = tree.entry(path)
        if entry is None:
            return None
        return Node(entry.is_dir, entry.size, tree.times[path], self, path, entry, tree.sha,
                    nlink=2 + tree.subdirs.get(path, 0) if entry.is_dir else 1)

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        tree = self.tree()
        names = tree.listdir(path)
        if names is None:
            return None
        base = f"{path}/" if path else ""
        return [(name, tree.entries[base + name].is_dir) for name in names]

    def views(self) -> list[RepoView]:
        return [self]

    def target(self, node: Node) -> ReadTarget:
        """What a reader of file ``node`` reads: its commit's ``/resolve/<sha>/path``, size and hashes."""
        url = self.client.file_url(self.repo.type.value, self.repo.id, node.sha, node.path)
        return ReadTarget.from_entry(self.repo.type.value, self.repo.id, node.sha, node.path, url, node.entry)

    # -- moving on ------------------------------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Follow the branch: one request when it has not moved; else the new commit's listing, swapped in
        at once. Returns the files whose content changed (also told to ``on_change``)."""
        if not self.follows_branch:
            return []
        with self._lock:
            self._checked = time.monotonic()
            snapshot, tree = self._state
            newer = snapshot.refresh()
            if newer.sha == snapshot.sha:
                return []
            changed = self._swap(snapshot, tree, newer)
        log.info("%s@%s: %s -> %s, %d files changed", self.repo, self.revision, snapshot.sha, newer.sha, len(changed))
        if changed and self.on_change is not None:
            self.on_change(self.prefix, changed)
        return changed

    def show(self, sha: str) -> list[str]:
        """Switch to commit ``sha`` of the branch, known to be its head (a read-write mount's own commit:
        no request to find it, one listing of it); as :meth:`refresh` otherwise."""
        with self._lock:
            self._checked = time.monotonic()
            snapshot, tree = self._state
            if sha == snapshot.sha:
                return []
            self.client.pin(self.repo.type.value, self.repo.id, self.revision, sha)
            changed = self._swap(snapshot, tree, Snapshot(self.client, self.repo, self.revision, sha))
        log.info("%s@%s: %s -> %s (committed here), %d files changed", self.repo, self.revision, snapshot.sha, sha,
                 len(changed))
        if changed and self.on_change is not None:
            self.on_change(self.prefix, changed)
        return changed

    def _swap(self, snapshot: Snapshot, tree: Tree | None, newer: Snapshot) -> list[str]:
        """List ``newer`` and show it (lock held); the files of ``tree`` whose content changed."""
        fresh = Tree.build(newer.sha, newer.walk(""), previous=tree)
        self._state = (newer, fresh)
        return tree.changed(fresh) if tree is not None else []

    def _stale(self) -> bool:
        """Whether a miss should re-check the branch first (and claims that check when so)."""
        if not self.recheck:
            return False
        with self._lock:
            if time.monotonic() - self._checked < NEGATIVE_TTL:
                return False
            self._checked = time.monotonic()
            return True


__all__ = ["NEGATIVE_TTL", "ChangeListener", "Namespace", "Node", "RepoView"]
