"""A model repo's safetensors weights read straight from the hub's own storage, with no copy on disk.

An object stored whole in the LFS store is opened as a local file, and a Xet file whose content is one
slice at the start of a local xorb (as a new file that fits one xorb is stored) as that prefix of the
xorb: the loader maps either (zero-copy CPU tensors, as transformers maps a local file;
``HUBFS_INFERENCE_ZERO_COPY=0`` copies them instead). Any other Xet file is read slice by slice from its
xorbs (``preadv`` into the tensors' memory). Sharded checkpoints (``*.safetensors.index.json``) are
resolved and validated by the loader, exactly as for a folder. Blocking: call it off the event loop.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Sequence

from hubfs.config import inference_zero_copy
from hubfs.errors import HubfsError
from hubfs.loader.handle import SafeOpen
from hubfs.loader.sources import FileSource, LocalFile, checkpoint_layout
from hubfs.server.git_store import Entry
from hubfs.server.http import FileSlice, Segment
from hubfs.server.hub import Hub
from hubfs.server.metadata import Repo


class LayoutFile(FileSource):
    """A file whose bytes are literal pieces and slices of other files (a Xet file's chunks in its xorbs)."""

    def __init__(self, name: str, layout: Sequence[Segment]) -> None:
        self.name, self.layout = name, list(layout)
        self.starts: list[int] = []
        pos = 0
        for piece in self.layout:
            self.starts.append(pos)
            pos += len(piece) if isinstance(piece, bytes) else piece.length
        self.size = pos
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def _fd(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            return fd

    def readinto(self, offset: int, buf: memoryview) -> int:
        want = max(0, min(len(buf), self.size - offset))
        got = 0
        k = bisect.bisect_right(self.starts, offset) - 1
        while got < want:
            piece, inner = self.layout[k], offset + got - self.starts[k]
            if isinstance(piece, bytes):
                n = min(len(piece) - inner, want - got)
                buf[got:got + n] = piece[inner:inner + n]
            else:
                n = min(piece.length - inner, want - got)
                done = 0
                while done < n:
                    r = os.preadv(self._fd(piece.path), [buf[got + done:got + n]], piece.offset + inner + done)
                    if r <= 0:
                        raise HubfsError(f"{piece.path} ended early while reading {self.name}.")
                    done += r
            got += n
            k += 1
        return got

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


class PrefixFile(LocalFile):
    """The first ``length`` bytes of a local file (a Xet file stored whole at the start of one xorb), read
    with ``preadv`` and mapped (zero-copy CPU tensors) as if they were a file of their own."""

    def __init__(self, path: str, length: int, name: str) -> None:
        super().__init__(path, mmap=True, name=name)
        if length > self.size:
            self.close()
            raise HubfsError(f"{path} is shorter than the {length} bytes of {name} it should hold.")
        self.size = length


class BytesFile(FileSource):
    """A small file held in memory (a safetensors file committed to git rather than LFS)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data, self.size = name, data, len(data)

    def readinto(self, offset: int, buf: memoryview) -> int:
        n = max(0, min(len(buf), self.size - offset))
        buf[:n] = self.data[offset:offset + n]
        return n


def open_weights(hub: Hub, repo: Repo, entries: list[Entry], name: str) -> SafeOpen:
    """The repo's root-folder checkpoint (its index and shards, or its one ``.safetensors`` file) as a
    loader handle over the hub's storage; ``name`` names it in messages."""
    by_path = {e.path: e for e in entries if "/" not in e.path}
    zero_copy = inference_zero_copy()

    def open_file(path: str) -> FileSource:
        e = by_path[path]
        label = f"{name}/{path}"
        if e.lfs is None:
            return BytesFile(label, _blob(hub, repo, e))
        stored = hub.objects.get(e.lfs.oid) if hub.meta.lfs_linked(repo, e.lfs.oid) else None
        if stored is None or stored.size != e.lfs.size:
            raise HubfsError(f"The content of {e.path} ({e.lfs.oid}) is missing from this hub's storage.", status=404)
        whole = stored.layout[0] if len(stored.layout) == 1 else None
        if isinstance(whole, FileSlice) and whole.offset == 0:
            if os.path.getsize(whole.path) == whole.length:  # the LFS object itself
                return LocalFile(whole.path, mmap=zero_copy, name=label)
            if zero_copy:  # a Xet file at the start of its xorb
                return PrefixFile(whole.path, whole.length, label)
        return LayoutFile(label, stored.layout)

    def read_small(path: str) -> bytes:
        e = by_path[path]
        if e.lfs is None:
            return _blob(hub, repo, e)
        f = open_file(path)
        try:
            return f.read(0, f.size)
        finally:
            f.close()

    return SafeOpen(checkpoint_layout(name, sorted(by_path), open_file, read_small))


def _blob(hub: Hub, repo: Repo, e: Entry) -> bytes:
    with hub.git.open(repo.type, repo.repo_id) as g:
        return g.read_blob(e.oid)
