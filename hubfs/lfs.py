"""Git LFS pointers (strict, byte-identical to git-lfs) and streaming sha256."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

LFS_SPEC = "https://git-lfs.github.com/spec/v1"
POINTER_MAX_SIZE = 1024
# hubfs's tree-listing extension (the hub's ``api_files.tree``, the clone's ``lfs_select.hub_listing``):
# ``?hubfs_lfs=all`` asks for only the LFS files of the whole subtree; a hub that did so answers this header.
LFS_ONLY_PARAM, LFS_ONLY_HEADER = "hubfs_lfs", "X-Hubfs-Lfs"
_OID_RE = re.compile(r"^[0-9a-f]{64}$")
_POINTER_RE = re.compile(
    rb"^version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>0|[1-9][0-9]{0,19})\n$"
)


def is_valid_oid(oid: str) -> bool:
    """True for a 64-hex lowercase sha256."""
    return bool(_OID_RE.match(oid or ""))


@dataclass(frozen=True)
class LfsPointer:
    """An LFS pointer: the sha256 ``oid`` and ``size`` of the content it stands for."""

    oid: str
    size: int

    def to_bytes(self) -> bytes:
        """The pointer text exactly as ``git lfs pointer`` writes it."""
        return f"version {LFS_SPEC}\noid sha256:{self.oid}\nsize {self.size}\n".encode()

    @classmethod
    def parse(cls, data: bytes) -> LfsPointer | None:
        """Parse a pointer strictly (the three keys, in order, nothing else); None if it is not one."""
        if len(data) > POINTER_MAX_SIZE:
            return None
        match = _POINTER_RE.match(data)
        if not match:
            return None
        return cls(match.group("oid").decode(), int(match.group("size")))


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data``: sha1 of ``blob {len}\\0`` + data."""
    h = hashlib.sha1(b"blob %d\x00" % len(data))
    h.update(data)
    return h.hexdigest()


def sha256_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    """Hash an iterable of byte chunks; return (sha256 hex, total size)."""
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def sha256_file(fileobj: BinaryIO, chunk_size: int = 8 << 20) -> tuple[str, int]:
    """Hash a binary file object from its current position to its end."""
    return sha256_chunks(iter(lambda: fileobj.read(chunk_size), b""))
