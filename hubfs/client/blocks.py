"""A sparse cache for partial reads of large LFS files, beside the huggingface_hub cache.

``{cache}/.hubfs-blocks/{sha256}.data`` is a sparse file the size of the object and
``{sha256}.map`` lists the byte ranges it holds. A read fetches exactly the gaps between ranges
already there (so random reads still fetch only what was asked), writes them in place and records
them under an ``flock`` on the map, so several processes share one cache safely. When the ranges
cover the whole object it is verified against its sha256 and promoted into ``blobs/{sha256}`` of
the repo it was read from, and the sparse files are removed.

The cache is an optimisation: on a full disk a read still returns its bytes (what is cached is read
from disk, the rest comes from ``fetch`` and is simply not kept), and a promotion is left for later.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from hubfs.client.cache import HubCache, is_disk_full

Fetch = Callable[[int, memoryview], int]
Ranges = list[tuple[int, int]]


def merge(ranges: Ranges) -> Ranges:
    """Sorted, non-overlapping, non-adjacent ranges."""
    out: Ranges = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def gaps(have: Ranges, start: int, end: int) -> Ranges:
    """The parts of [start, end) not covered by ``have``."""
    out: Ranges = []
    pos = start
    for a, b in have:
        if b <= pos:
            continue
        if a >= end:
            break
        if a > pos:
            out.append((pos, min(a, end)))
        pos = max(pos, b)
        if pos >= end:
            break
    if pos < end:
        out.append((pos, end))
    return out


def pieces(have: Ranges, start: int, end: int) -> list[tuple[int, int, bool]]:
    """[start, end) cut into consecutive ``(a, b, cached)`` pieces, ``cached`` when ``have`` covers it."""
    out = []
    pos = start
    for a, b in gaps(have, start, end):
        if a > pos:
            out.append((pos, a, True))
        out.append((a, b, False))
        pos = b
    if pos < end:
        out.append((pos, end, True))
    return out


def _fetch_exact(fetch: Fetch, offset: int, buf: memoryview, oid: str) -> None:
    """Fill ``buf`` with the bytes at ``offset``; OSError when the source runs dry."""
    got = 0
    while got < len(buf):
        n = fetch(offset + got, buf[got:])
        if n <= 0:
            raise OSError(f"no bytes for {oid} at {offset + got}")
        got += n


def _pwrite_all(fd: int, buf: memoryview, offset: int) -> None:
    """All of ``buf`` at ``offset``: a short write (a nearly full disk) is continued until it errors."""
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


def _copy_into(buf: memoryview, data: bytes) -> int:
    buf[: len(data)] = data
    return len(data)


class BlockCache:
    """Partial copies of LFS objects, keyed by sha256."""

    def __init__(self, cache: HubCache) -> None:
        self.cache = cache
        self.root = cache.root / ".hubfs-blocks"

    def _paths(self, oid: str) -> tuple[Path, Path]:
        return self.root / f"{oid}.data", self.root / f"{oid}.map"

    def read(self, oid: str, size: int, start: int, end: int, fetch: Fetch) -> bytes:
        """Bytes [start, end) of object ``oid``; the missing parts are fetched with ``fetch(offset, buf)``."""
        end = min(end, size)
        if end <= start:
            return b""
        data_path, map_path = self._paths(oid)
        fd = self._open(data_path, size)
        try:
            have = self._load(map_path) if fd is not None else []
            out = bytearray(end - start)
            view = memoryview(out)
            for a, b, cached in pieces(have, start, end):
                piece = view[a - start: b - start]
                if cached and fd is not None:
                    piece[:] = os.pread(fd, b - a, a)
                    continue
                _fetch_exact(fetch, a, piece, oid)
                if fd is not None and not self._keep(fd, map_path, piece, a):
                    os.close(fd)
                    fd = None
            return bytes(out)
        finally:
            if fd is not None:
                os.close(fd)

    def _open(self, data_path: Path, size: int) -> int | None:
        """The sparse file, created at ``size``; None when the disk is full (read without the cache)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(data_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if is_disk_full(err):
                return None
            raise
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
        except OSError as err:
            os.close(fd)
            if is_disk_full(err):
                return None
            raise
        return fd

    def _keep(self, fd: int, map_path: Path, data: memoryview, offset: int) -> bool:
        """Write fetched bytes in place and record them; False (nothing recorded) when the disk is full."""
        try:
            _pwrite_all(fd, data, offset)
            self._mark(map_path, offset, offset + len(data))
        except OSError as err:
            if is_disk_full(err):
                return False
            raise
        return True

    def store(self, oid: str, size: int, offset: int, data: bytes) -> None:
        """Keep bytes that were fetched anyway (the first window of an opened file)."""
        self.read(oid, size, offset, offset + len(data),
                  lambda at, buf: _copy_into(buf, data[at - offset: at - offset + len(buf)]))

    @staticmethod
    def _parse(text: bytes) -> Ranges:
        ranges = []
        for line in text.decode().splitlines():
            a, _, b = line.partition(" ")
            if a.isdigit() and b.isdigit():
                ranges.append((int(a), int(b)))
        return merge(ranges)

    def _load(self, map_path: Path) -> Ranges:
        try:
            with open(map_path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)
                return self._parse(f.read())
        except FileNotFoundError:
            return []

    def _mark(self, map_path: Path, a: int, b: int) -> None:
        with open(map_path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            ranges = merge(self._parse(f.read()) + [(a, b)])
            f.seek(0)
            f.truncate()
            f.write("".join(f"{x} {y}\n" for x, y in ranges).encode())

    def complete(self, oid: str, size: int) -> bool:
        _, map_path = self._paths(oid)
        return map_path.exists() and self._load(map_path) == [(0, size)]

    def promote(self, oid: str, size: int, repo_type: str, repo_id: str, commit: str, path: str) -> Path | None:
        """Move a complete, verified object into ``blobs/{oid}`` and link it into the snapshot; None when it
        is not complete, not intact, or the disk is too full to finish (it stays here for a later try)."""
        try:
            return self._promote(oid, size, repo_type, repo_id, commit, path)
        except OSError as err:
            if is_disk_full(err):
                return None
            raise

    def _promote(self, oid: str, size: int, repo_type: str, repo_id: str, commit: str, path: str) -> Path | None:
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
        map_path.unlink(missing_ok=True)
        return self.cache.adopt(data_path, repo_type, repo_id, oid, size, commit, path)
