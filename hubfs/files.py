"""The file objects of the ``hf://`` filesystem: reads over a pinned :class:`FileReader`, and commit-on-close writes."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubfs.client.commit import Add
from hubfs.client.reader import BLOCK_CACHE_MIN, FileReader
from hubfs.client.stride import STRIDE_DEPTH, StridePrefetcher

if TYPE_CHECKING:
    from typing_extensions import Self

    from hubfs.fs import HubFileSystem

__all__ = ["BLOCK_CACHE_MIN", "STRIDE_DEPTH", "HubFile", "HubWriteFile", "StridePrefetcher"]


class HubFile(io.RawIOBase):
    """A read-only file pinned to one commit: a position over a :class:`~hubfs.client.reader.FileReader`,
    which decides where the bytes come from (the cached blob, the block cache, read-ahead, the hub)."""

    def __init__(self, fs: HubFileSystem, name: str, reader: FileReader) -> None:
        super().__init__()
        self.fs, self.name, self.path, self.reader = fs, name, name, reader
        self.url = reader.target.url
        self.size: int = reader.size if reader.size is not None else 0
        self.loc = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.loc

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.loc, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.loc = base + offset
        return self.loc

    def readinto(self, b: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        n = self.reader.readinto(self.loc, memoryview(b))
        self.loc += n
        return n

    def read(self, length: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if length is None or length < 0:
            length = self.size - self.loc
        data = self.reader.read(self.loc, length)
        self.loc += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def read1(self, length: int = -1) -> bytes:
        return self.read(length)

    def close(self) -> None:
        if self.closed:
            return
        self.reader.close()
        super().close()

    def __enter__(self) -> Self:
        return self


class HubWriteFile(io.RawIOBase):
    """Written to a temporary file; committed (or queued in the transaction) on close."""

    def __init__(self, fs: HubFileSystem, path: str, autocommit: bool = True) -> None:
        super().__init__()
        self.fs, self.path, self.autocommit = fs, path, autocommit
        self._tmp = tempfile.NamedTemporaryFile(prefix="hubfs-write-", delete=False)  # noqa: SIM115 - open until close()
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._tmp.write(data)

    def tell(self) -> int:
        return self._tmp.tell()

    def close(self) -> None:
        if self.closed:
            return
        self._tmp.close()
        super().close()
        if self.autocommit:
            self.commit()

    def commit(self) -> None:
        """Queue or commit the content (fsspec calls this at the end of a transaction)."""
        if self._done:
            return
        self._done = True
        path = self._tmp.name
        try:
            data = Path(path).read_bytes() if os.path.getsize(path) <= (8 << 20) else None
            if data is not None:
                self.fs._queue(self.path, lambda rp: Add(rp.path, data))
            else:
                keep = tempfile.mkdtemp(prefix="hubfs-upload-")
                moved = os.path.join(keep, "content")
                os.replace(path, moved)
                self.fs._cleanup.append(keep)
                self.fs._queue(self.path, lambda rp: Add(rp.path, moved))
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def discard(self) -> None:
        self._done = True
        self._tmp.close()
        if os.path.exists(self._tmp.name):
            os.unlink(self._tmp.name)
