"""One commit of one repo: its listing as typed entries, lookups, and a branch re-resolve.

A :class:`Snapshot` is a cheap view (client, repo, revision, commit). Listings of a commit never
change, so they are kept in the client's :class:`Listings` and shared by every snapshot of that
commit; only the branch -> commit step expires (see :mod:`hubfs.client.pins`).

With ``HF_HUB_OFFLINE=1`` the client hands out a :class:`CachedSnapshot` instead, read from the
local cache in huggingface_hub's layout (``refs/<revision>`` -> commit, ``snapshots/<commit>/...``)
and sending nothing. Like huggingface_hub's offline mode it knows only what is cached: a listing
shows the files downloaded, not the whole commit, and a path or revision not in the cache raises an
:class:`~hubfs.errors.OfflineModeError` that names offline mode.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubfs.errors import EntryNotFoundError, OfflineEntryNotFoundError, OfflineModeError
from hubfs.paths import DEFAULT_REVISION, RepoRef, is_commit_sha, validate_path_in_repo

if TYPE_CHECKING:
    from hubfs.client.api import HubClient

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
ListingKey = tuple[RepoRef, str, str, bool]  # (repo, commit, folder, recursive)


@dataclass(frozen=True)
class FileEntry:
    """A file or folder of a commit. ``blob_id``: git blob (tree for folders) id; ``lfs_oid``: sha256
    of an LFS object; ``blob``: the complete cached blob file (offline snapshots only)."""

    path: str
    size: int
    blob_id: str | None = None
    lfs_oid: str | None = None
    pointer_size: int | None = None
    is_dir: bool = False
    blob: Path | None = None

    @property
    def etag(self) -> str | None:
        """The name of its blob in the cache: the LFS sha256, else the git blob id."""
        return self.lfs_oid or self.blob_id

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @classmethod
    def folder(cls, path: str, tree_id: str | None = None) -> FileEntry:
        return cls(path, 0, tree_id, is_dir=True)

    @classmethod
    def from_tree(cls, raw: dict[str, Any]) -> FileEntry:
        """From a ``tree`` or ``paths-info`` answer."""
        if raw["type"] == "directory":
            return cls.folder(raw["path"], raw.get("oid"))
        lfs = raw.get("lfs") or {}
        return cls(raw["path"], int(raw["size"]), raw.get("oid"), lfs.get("oid"), lfs.get("pointerSize"))

    def info(self, name: str) -> dict[str, Any]:
        """fsspec info named ``name``, with the keys ``HfFileSystem`` uses."""
        if self.is_dir:
            return {"name": name, "size": 0, "type": "directory", "tree_id": self.blob_id, "last_commit": None}
        lfs = {"sha256": self.lfs_oid, "size": self.size, "pointer_size": self.pointer_size} if self.lfs_oid else None
        return {"name": name, "size": self.size, "type": "file", "blob_id": self.blob_id, "lfs": lfs,
                "xet_hash": None, "last_commit": None, "security": None}


class Listings:
    """Listings and entries of commits (immutable, so never stale), bounded LRU. Thread-safe."""

    def __init__(self, max_listings: int = 4096, max_entries: int = 1 << 18) -> None:
        self._listings: OrderedDict[ListingKey, list[FileEntry]] = OrderedDict()
        self._entries: OrderedDict[tuple[RepoRef, str, str], FileEntry] = OrderedDict()
        self._max_listings, self._max_entries = max_listings, max_entries
        self._lock = threading.Lock()

    def listing(self, key: ListingKey) -> list[FileEntry] | None:
        with self._lock:
            return self._listings.get(key)

    def put_listing(self, key: ListingKey, entries: list[FileEntry]) -> None:
        with self._lock:
            self._listings[key] = entries
            self._listings.move_to_end(key)
            while len(self._listings) > self._max_listings:
                self._listings.popitem(last=False)

    def entry(self, repo: RepoRef, sha: str, path: str) -> FileEntry | None:
        with self._lock:
            return self._entries.get((repo, sha, path))

    def put_entries(self, repo: RepoRef, sha: str, entries: list[FileEntry]) -> None:
        with self._lock:
            for e in entries:
                self._entries[(repo, sha, e.path)] = e
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


class Snapshot:
    """One commit (``sha``) of ``repo``, reached through ``revision`` (None: main). Lookups cost at
    most one request and are remembered per commit in ``client.listings``."""

    def __init__(self, client: HubClient, repo: RepoRef, revision: str | None, sha: str) -> None:
        self.client, self.repo, self.revision, self.sha = client, repo, revision, sha

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.repo}@{self.revision or DEFAULT_REVISION} = {self.sha})"

    @property
    def _cache(self) -> Listings:
        return self.client.listings

    def url(self, path: str) -> str:
        """The pinned ``/resolve/<commit>/path`` URL of a file."""
        return self.client.file_url(self.repo.type.value, self.repo.id, self.sha, path)

    def refresh(self) -> Snapshot:
        """The snapshot ``revision`` points to now (asks the hub; ``self`` for a commit sha)."""
        if is_commit_sha(self.revision):
            return self
        sha = self.client.resolve(self.repo.type.value, self.repo.id, self.revision, refresh=True)
        return self if sha == self.sha else type(self)(self.client, self.repo, self.revision, sha)

    def local_path(self, path: str) -> Path | None:
        """The complete cached blob of file ``path``, when this snapshot knows one without a request."""
        entry = self.cached_entry(path)
        return entry.blob if entry is not None else None

    # -- lookups -------------------------------------------------------------------------------------

    def cached_entry(self, path: str) -> FileEntry | None:
        """The entry of ``path`` if already known (no request)."""
        return self._cache.entry(self.repo, self.sha, path)

    def remember(self, entry: FileEntry) -> None:
        """Record an entry learnt elsewhere (a peek) for this commit."""
        self._cache.put_entries(self.repo, self.sha, [entry])

    def entry(self, path: str) -> FileEntry | None:
        """The entry of ``path`` (the root is a folder), None when the commit has no such path."""
        if not path:
            return FileEntry.folder("")
        hit = self.cached_entry(path)
        if hit is not None:
            return hit
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if self._cache.listing((self.repo, self.sha, parent, False)) is not None:
            return None  # the parent's complete listing does not have it
        found = self._fetch_entry(path)
        if found is not None:
            self.remember(found)
        return found

    def listdir(self, folder: str) -> list[FileEntry] | None:
        """The entries right under ``folder``; None when it is not a folder (a file, or missing)."""
        key = (self.repo, self.sha, folder, False)
        entries = self._cache.listing(key)
        if entries is None:
            entries = self._fetch_listing(folder, recursive=False)
            if entries is None or (len(entries) == 1 and not entries[0].is_dir and entries[0].path == folder):
                return None
            self._cache.put_listing(key, entries)
            self._cache.put_entries(self.repo, self.sha, entries)
        return entries

    def walk(self, folder: str) -> list[FileEntry]:
        """Every entry under ``folder`` (a file: itself; missing: empty), and each folder's listing
        remembered, so later ``listdir``/``entry`` calls under it cost nothing."""
        key = (self.repo, self.sha, folder, True)
        entries = self._cache.listing(key)
        if entries is None:
            entries = self._under_walked_folder(folder)
        if entries is None:
            entries = self._fetch_listing(folder, recursive=True) or []
            self._cache.put_listing(key, entries)
        if entries and not (len(entries) == 1 and entries[0].path == folder):
            self._index(folder, entries)
        return entries

    def _under_walked_folder(self, folder: str) -> list[FileEntry] | None:
        """The recursive listing under ``folder``, cut from a remembered one of a folder above it."""
        above = folder
        while above:
            above = above.rsplit("/", 1)[0] if "/" in above else ""
            hit = self._cache.listing((self.repo, self.sha, above, True))
            if hit is not None:
                same = [e for e in hit if e.path == folder and not e.is_dir]
                return same or [e for e in hit if e.path.startswith(folder + "/")]
        return None

    def _index(self, folder: str, entries: list[FileEntry]) -> None:
        children: dict[str, list[FileEntry]] = {folder: []}
        for e in entries:
            children.setdefault(e.parent, []).append(e)
            if e.is_dir:
                children.setdefault(e.path, [])
        for name, listed in children.items():
            self._cache.put_listing((self.repo, self.sha, name, False), listed)
        self._cache.put_entries(self.repo, self.sha, entries)

    # -- the hub -------------------------------------------------------------------------------------

    def _fetch_listing(self, folder: str, *, recursive: bool) -> list[FileEntry] | None:
        try:
            raw = self.client.list_tree(self.repo.type.value, self.repo.id, self.sha, folder, recursive=recursive)
        except EntryNotFoundError:
            return None
        return [FileEntry.from_tree(r) for r in raw]

    def _fetch_entry(self, path: str) -> FileEntry | None:
        found = self.client.paths_info(self.repo.type.value, self.repo.id, self.sha, [path])
        return FileEntry.from_tree(found[0]) if found else None


class CachedSnapshot(Snapshot):
    """A snapshot read from the local cache only (offline mode): it lists what was downloaded, sizes
    come from the blob files, and it sends nothing. A path it lacks raises an
    :class:`~hubfs.errors.OfflineEntryNotFoundError` (a ``FileNotFoundError`` that names offline mode)."""

    @classmethod
    def open(cls, client: HubClient, repo: RepoRef, revision: str | None) -> CachedSnapshot:
        """The cached snapshot of ``revision`` (a ref in ``refs/`` or a commit sha with a snapshot folder)."""
        rev = revision or DEFAULT_REVISION
        root = Path(client.config.cache_dir) / repo.folder
        sha = rev if is_commit_sha(rev) else _read_ref(root / "refs" / rev)
        if sha is None or not (root / "snapshots" / sha).is_dir():
            raise OfflineModeError(
                f"HF_HUB_OFFLINE is set (offline mode) and revision {rev!r} of {repo} is not in the local cache "
                f"{root}; download it first (hubfs download, or huggingface_hub) or unset HF_HUB_OFFLINE.")
        return cls(client, repo, revision, sha)

    @property
    def root(self) -> Path:
        """``snapshots/<commit>`` of this repo in the cache."""
        return Path(self.client.config.cache_dir) / self.repo.folder / "snapshots" / self.sha

    def refresh(self) -> Snapshot:
        """Read the ref again from the cache (nothing is sent)."""
        snap = CachedSnapshot.open(self.client, self.repo, self.revision)
        return self if snap.sha == self.sha else snap

    def local_path(self, path: str) -> Path | None:
        """The cached blob of file ``path`` (None for a folder); raises when the cache lacks it."""
        entry = self.entry(path)
        return entry.blob if entry is not None else None

    def entry(self, path: str) -> FileEntry | None:
        found = super().entry(path)
        if found is None:
            raise self._missing(path)
        return found

    def listdir(self, folder: str) -> list[FileEntry] | None:
        if folder and self.entry(folder) is not None and not self._local(folder).is_dir():
            return None  # a file
        return super().listdir(folder)

    def _missing(self, path: str) -> OfflineEntryNotFoundError:
        return OfflineEntryNotFoundError(
            f"HF_HUB_OFFLINE is set (offline mode) and {path!r} is not in the cached snapshot {self.sha} of "
            f"{self.repo} in {self.root.parent.parent}: offline, only downloaded files are listed and read.")

    def _local(self, path: str) -> Path:
        return self.root / validate_path_in_repo(path) if path else self.root

    def _fetch_listing(self, folder: str, *, recursive: bool) -> list[FileEntry] | None:
        base = self._local(folder)
        if not base.is_dir():
            found = self._describe(folder, base) if folder else None
            return [found] if found is not None else None
        out: list[FileEntry] = []
        for item in sorted(base.rglob("*") if recursive else base.iterdir()):
            entry = self._describe(item.relative_to(self.root).as_posix(), item)
            if entry is not None:
                out.append(entry)
        return out

    def _fetch_entry(self, path: str) -> FileEntry | None:
        return self._describe(path, self._local(path))

    def _describe(self, path: str, local: Path) -> FileEntry | None:
        """The entry of a file or folder of the snapshot folder; None when absent or a dangling link."""
        if local.is_dir():
            return FileEntry.folder(path)
        try:
            blob = local.resolve(strict=True)
            size = blob.stat().st_size
        except OSError:
            return None
        # The link's own target names the blob by etag; huggingface_hub >= 2.4 may link that blob on to a
        # store shared across repos (``blobs/<xx>/<xet hash>``), so the name is read one hop only.
        name = Path(os.readlink(local)).name if local.is_symlink() else ""
        lfs_oid = name if _SHA256.match(name) else None
        blob_id = name if _SHA1.match(name) else None
        return FileEntry(path, size, blob_id, lfs_oid, None, blob=blob)


def _read_ref(ref: Path) -> str | None:
    try:
        sha = ref.read_text().strip()
    except OSError:
        return None
    return sha if is_commit_sha(sha) else None


__all__ = ["CachedSnapshot", "FileEntry", "Listings", "Snapshot"]
