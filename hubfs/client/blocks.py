"""A sparse block cache for partial reads of large LFS files, beside the huggingface_hub cache.

``{cache}/.hubfs-blocks/{sha256}.data`` is a sparse file the size of the object and
``{sha256}.map`` holds one byte per 64 KiB block (1: present). Reads fetch only the missing runs of
blocks, write them in place and mark them, under an ``flock`` on the map, so several processes
share one cache safely. When every block is present the object is verified against its sha256 and
promoted into ``blobs/{sha256}`` of the repo it was read from, and the sparse files are removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from hubfs.client.cache import HubCache

BLOCK = 64 << 10
Fetch = Callable[[int, memoryview], int]


class BlockCache:
    """Partial copies of LFS objects, keyed by sha256."""

    def __init__(self, cache: HubCache) -> None:
        self.cache = cache
        self.root = cache.root / ".hubfs-blocks"

    def _paths(self, oid: str) -> tuple[Path, Path]:
        return self.root / f"{oid}.data", self.root / f"{oid}.map"

    def read(self, oid: str, size: int, start: int, end: int, fetch: Fetch) -> bytes:
        """Bytes [start, end) of object ``oid``; missing blocks are fetched with ``fetch(offset, buf)``."""
        end = min(end, size)
        if end <= start:
            return b""
        data_path, map_path = self._paths(oid)
        self.root.mkdir(parents=True, exist_ok=True)
        first, last = start // BLOCK, (end - 1) // BLOCK
        nblocks = (size + BLOCK - 1) // BLOCK
        fd = os.open(data_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            for run_start, run_end in self._missing(map_path, nblocks, first, last):
                offset = run_start * BLOCK
                length = min(run_end * BLOCK, size) - offset
                buf = bytearray(length)
                got = 0
                while got < length:
                    n = fetch(offset + got, memoryview(buf)[got:])
                    if n <= 0:
                        raise OSError(f"no bytes for {oid} at {offset + got}")
                    got += n
                os.pwrite(fd, buf, offset)
                self._mark(map_path, nblocks, run_start, run_end)
            return os.pread(fd, end - start, start)
        finally:
            os.close(fd)

    def _missing(self, map_path: Path, nblocks: int, first: int, last: int) -> list[tuple[int, int]]:
        present = self._load(map_path, nblocks)
        runs: list[tuple[int, int]] = []
        i = first
        while i <= last:
            if present[i]:
                i += 1
                continue
            j = i
            while j <= last and not present[j]:
                j += 1
            runs.append((i, j))
            i = j
        return runs

    @staticmethod
    def _load(map_path: Path, nblocks: int) -> bytearray:
        try:
            with open(map_path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)
                data = bytearray(f.read())
        except FileNotFoundError:
            data = bytearray()
        return data + bytearray(nblocks - len(data)) if len(data) < nblocks else data[:nblocks]

    @staticmethod
    def _mark(map_path: Path, nblocks: int, run_start: int, run_end: int) -> None:
        with open(map_path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            data = bytearray(f.read())
            if len(data) < nblocks:
                data += bytearray(nblocks - len(data))
            data[run_start:run_end] = b"\x01" * (run_end - run_start)
            f.seek(0)
            f.truncate()
            f.write(data)

    def complete(self, oid: str, size: int) -> bool:
        _, map_path = self._paths(oid)
        nblocks = (size + BLOCK - 1) // BLOCK
        return map_path.exists() and all(self._load(map_path, nblocks))

    def promote(self, oid: str, size: int, repo_type: str, repo_id: str, commit: str, path: str) -> Path | None:
        """Move a complete, verified object into ``blobs/{oid}`` and link it into the snapshot."""
        data_path, map_path = self._paths(oid)
        if not self.complete(oid, size):
            return None
        digest = hashlib.sha256()
        with open(data_path, "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        if digest.hexdigest() != oid:
            data_path.unlink(missing_ok=True)  # corrupted: start over rather than serve bad bytes
            map_path.unlink(missing_ok=True)
            return None
        blob = self.cache.blob(repo_type, repo_id, oid)
        blob.parent.mkdir(parents=True, exist_ok=True)
        with self.cache.lock(repo_type, repo_id, oid):
            if not blob.exists():
                os.replace(data_path, blob)
            else:
                data_path.unlink(missing_ok=True)
            map_path.unlink(missing_ok=True)
        return self.cache.link(repo_type, repo_id, commit, path, oid)
