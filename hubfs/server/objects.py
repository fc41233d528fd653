"""LFS objects, wherever their bytes are: a whole file in the LFS store, or a Xet file's slices of xorbs.

Everything that asks whether an object is stored, how big it is or what to send for it (``resolve``,
the LFS batch and download routes, commits, the git pre-receive hook) asks :class:`Objects`, so an
object uploaded through Xet (stored once, as xorbs) serves every client an LFS object serves.
Whether a *repo* may use an object is a separate question (``Metadata.lfs_linked``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hubfs.server.http import FileSlice, Segment
from hubfs.server.lfs_store import LfsStore
from hubfs.server.xet.store import XetStore


@dataclass(frozen=True)
class StoredObject:
    """An object's size and its bytes laid out as file slices (for ``RangedBody(layout=...)``)."""

    size: int
    layout: list[Segment]
    xet_hash: bytes | None = None  # set when the bytes are a Xet file's


class Objects:
    """LFS objects by sha256, in the LFS store first, then as verified Xet files."""

    def __init__(self, lfs: LfsStore, xet: XetStore) -> None:
        self.lfs, self.xet = lfs, xet

    def size(self, oid: str) -> int | None:
        """The object's size, None when it is stored nowhere."""
        size = self.lfs.size(oid)
        if size is None:
            f = self.xet.file_by_sha256(oid)
            size = f.size if f is not None else None
        return size

    def has(self, oid: str, size: int) -> bool:
        return self.size(oid) == size

    def get(self, oid: str) -> StoredObject | None:
        """The bytes the hub itself can send: None for an object only in a remote store (S3), which
        callers serve through ``lfs.download_url`` instead."""
        if not self.lfs.remote:
            name = self.lfs.name(oid)
            try:
                size = os.stat(name).st_size
            except FileNotFoundError:
                pass
            else:
                return StoredObject(size, [FileSlice(name, 0, size)])
        f = self.xet.file_by_sha256(oid)
        if f is None:
            return None
        try:
            return StoredObject(f.size, self.xet.file_layout(f.terms), f.hash)
        except FileNotFoundError:
            return None  # a xorb is missing: the data folder lost it
