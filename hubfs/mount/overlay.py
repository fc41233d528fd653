"""What a read-write mount stages on top of a remote commit, in memory: entries and deletions by path.

An :class:`Overlay` maps paths to staged :class:`Entry` objects (a file whose content is a local
``blob``, or an unchanged remote file under a new name, with its :class:`Origin`; or a folder made
here) and to deletions (:class:`Deleted`, "whiteouts": the remote path and everything under it are
hidden). An entry wins over a deletion at the same path. Entries and deletions are immutable and
replaced on every change, so identity tells a snapshot taken for a commit whether a path changed since.

Every change returns the journal record that replays it (see :mod:`hubfs.mount.staging` for the
format); :meth:`Overlay.apply` replays one. Not thread-safe: the staging area holds its lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Origin:
    """The unchanged remote file a staged file is a copy of (after a rename): read ``path`` at ``commit``."""

    commit: str
    path: str
    size: int
    lfs_oid: str | None = None


@dataclass(frozen=True)
class Attrs:
    """Permission bits and owner of an entry made or staged here (None: the mount's defaults). Kept until
    the entry is committed (the Hub stores none of them)."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    def record(self) -> dict[str, int]:
        return {k: v for k, v in (("mode", self.mode), ("uid", self.uid), ("gid", self.gid)) if v is not None}

    @classmethod
    def parse(cls, raw: Any) -> Attrs | None:
        if not raw:
            return None
        return cls(*(int(raw[k]) if raw.get(k) is not None else None for k in ("mode", "uid", "gid")))


@dataclass(frozen=True)
class Staged:
    """What the mount shows at a path instead of the remote commit. ``file``: content in ``local`` (or, when
    None, ``origin``); ``dir``: a folder, ``opaque`` when the remote folder there is hidden (list only the
    staged children); ``deleted``: the remote path (and all under it) is gone. ``attrs``: mode and owner kept
    for it; ``*_ns``: a local copy's own times."""

    kind: Literal["file", "dir", "deleted"]
    local: Path | None = None
    size: int = 0
    mtime: float = 0.0
    origin: Origin | None = None
    opaque: bool = False
    attrs: Attrs | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None


@dataclass(frozen=True, eq=False)
class Entry:
    """A staged file (``blob`` or ``origin``) or folder. ``base``: the commit the mount showed when it was staged."""

    kind: Literal["file", "dir"]
    blob: str | None = None
    origin: Origin | None = None
    base: str | None = None
    mtime: float = 0.0
    attrs: Attrs | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "mtime": self.mtime}
        if self.attrs is not None:
            out["attrs"] = self.attrs.record()
        if self.kind == "file":
            out["base"] = self.base
            if self.blob is not None:
                out["blob"] = self.blob
            elif self.origin is not None:
                o = self.origin
                out["origin"] = {"commit": o.commit, "path": o.path, "size": o.size, "lfs": o.lfs_oid}
        return out

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Entry:
        attrs = Attrs.parse(raw.get("attrs"))
        if raw["kind"] == "dir":
            return cls("dir", mtime=float(raw.get("mtime", 0)), attrs=attrs)
        o = raw.get("origin")
        origin = Origin(str(o["commit"]), str(o["path"]), int(o["size"]), o.get("lfs")) if o else None
        if raw.get("blob") is None and origin is None:
            raise ValueError("a staged file needs a blob or an origin")
        return cls("file", raw.get("blob"), origin, raw.get("base"), float(raw.get("mtime", 0)), attrs)


@dataclass(frozen=True, eq=False)
class Deleted:
    """A deletion of the remote path; ``base`` as for :class:`Entry`."""

    base: str | None


Record = dict[str, Any]


class Overlay:
    """Staged entries and deletions by path, indexed by folder, and entries by blob."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.deleted: dict[str, Deleted] = {}
        self.by_blob: dict[str, str] = {}
        self._kids: dict[str, set[str]] = {}  # folder -> names of entries in it
        self._dkids: dict[str, set[str]] = {}  # folder -> names deleted in it

    def hidden(self, path: str) -> bool:
        """Whether a deletion hides the remote ``path`` (one at it or at a folder above it)."""
        return any(a in self.deleted for a in self_and_parents(path))

    def children(self, folder: str) -> tuple[list[str], set[str]]:
        """Names of the entries in ``folder``, and names deleted there that no entry replaces."""
        kids = sorted(self._kids.get(folder, ()))
        return kids, self._dkids.get(folder, set()) - set(kids)

    def under(self, top: str) -> list[str]:
        """Paths of the entries at or under ``top``."""
        return [p for p in self.entries if p == top or p.startswith(top + "/")]

    def files(self) -> set[str]:
        """Paths with a change to commit: staged files and deletions."""
        return {p for p, e in self.entries.items() if e.kind == "file"} | set(self.deleted)

    def put(self, path: str, e: Entry | None, records: list[Record]) -> None:
        """Stage ``e`` at ``path`` (None: unstage)."""
        old = self.entries.pop(path, None)
        if old is not None and old.blob and self.by_blob.get(old.blob) == path:
            del self.by_blob[old.blob]
        parent, _, name = path.rpartition("/")
        if e is None:
            _unindex(self._kids, parent, name)
        else:
            self.entries[path] = e
            self._kids.setdefault(parent, set()).add(name)
            if e.blob:
                self.by_blob[e.blob] = path
        records.append({"path": path, "entry": e.record() if e is not None else None})

    def mark(self, path: str, d: Deleted | None, records: list[Record]) -> None:
        """Set (None: drop) the deletion at ``path``."""
        parent, _, name = path.rpartition("/")
        if d is None:
            self.deleted.pop(path, None)
            _unindex(self._dkids, parent, name)
        else:
            self.deleted[path] = d
            self._dkids.setdefault(parent, set()).add(name)
        records.append({"path": path, "deleted": {"base": d.base} if d is not None else None})

    def hide(self, path: str, base: str | None, records: list[Record]) -> None:
        """Delete the remote ``path`` and all under it (one deletion covers the ones below it)."""
        if self.hidden(path):
            return
        for p in [p for p in self.deleted if p.startswith(path + "/")]:
            self.mark(p, None, records)
        self.mark(path, Deleted(base), records)

    def records(self) -> Iterator[Record]:
        """The whole state as records (a journal rewrite)."""
        for p, e in self.entries.items():
            yield {"path": p, "entry": e.record()}
        for p, d in self.deleted.items():
            yield {"path": p, "deleted": {"base": d.base}}

    def apply(self, rec: Record, path: str) -> None:
        """Replay one record (its path already checked); ValueError, KeyError or TypeError when malformed."""
        if "entry" in rec:
            self.put(path, Entry.parse(rec["entry"]) if rec["entry"] else None, [])
        else:
            d = rec["deleted"]
            self.mark(path, Deleted(d["base"]) if d else None, [])


def self_and_parents(path: str) -> Iterator[str]:
    while path:
        yield path
        path = path.rpartition("/")[0]


def parents(path: str) -> Iterator[str]:
    return self_and_parents(path.rpartition("/")[0])


def _unindex(index: dict[str, set[str]], parent: str, name: str) -> None:
    names = index.get(parent)
    if names is not None:
        names.discard(name)
        if not names:
            del index[parent]


__all__ = ["Attrs", "Deleted", "Entry", "Origin", "Overlay", "Staged"]
