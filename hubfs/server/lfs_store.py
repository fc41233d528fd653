"""Content-addressed LFS object store on local disk: ``lfs/ab/cd/<sha256>``.

Objects are written to a temporary file, hashed while they stream in, checked against the declared
oid and size, and only then renamed into place, so a crash or a bad upload never leaves a wrong
object under a valid name. The class is the one interface the server uses; an S3-compatible store
can implement the same methods.

Temporaries are reclaimable by rule, never by guess: an upload's ``tmp/upload-*`` file is flock-ed by
its writer for its whole life, so a file whose lock can be taken belongs to a dead writer; a multipart
staging folder is created by its first part and is dead once untouched for longer than its signed
URLs live (:data:`MULTIPART_TTL`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from hubfs.errors import BadRequestError, IntegrityError, NotFoundError
from hubfs.lfs import is_valid_oid
from hubfs.server.object_store import ObjectStore, open_object_store

MULTIPART_TTL = 24 * 3600  # the lifetime of the signed part URLs (Hub.sign's default ttl)


def locked_temp(tmp_dir: Path) -> tuple[int, Path]:
    """A new ``tmp_dir/upload-*`` file, open (fd) and flock-ed by this process until the fd closes: the
    mark of a live upload, so :meth:`LfsStore.clean_temporaries` only removes those of dead writers."""
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, Path(name)


class ObjectWriter:
    """A streaming writer for one object: ``write`` chunks, then ``commit`` (verifies) or ``abort``."""

    def __init__(self, store: LfsStore, oid: str, size: int) -> None:
        self._store, self.oid, self.size = store, oid, size
        fd, self._tmp = locked_temp(store.tmp_dir)  # locked until installed or dropped: a live upload
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk; refuses to grow past the declared size."""
        self.written += len(chunk)
        if self.written > self.size:
            self.abort()
            raise IntegrityError(f"Object {self.oid} is larger than its declared size {self.size}.")
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> None:
        """Check size and sha256, then move the object into place (atomic rename)."""
        try:
            self._file.flush()
            if self.written != self.size:
                raise IntegrityError(f"Object {self.oid}: received {self.written} bytes, declared size {self.size}.")
            actual = self._hash.hexdigest()
            if actual != self.oid:
                raise IntegrityError(f"Object hash mismatch: declared sha256 {self.oid}, content hashes to {actual}.")
            self._store._install(self._tmp, self.oid)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the partial object (the file first, then the lock that marks it live)."""
        self._tmp.unlink(missing_ok=True)
        if not self._file.closed:
            self._file.close()


class LfsStore:
    """LFS objects in the data folder's object store (``root/lfs``, or S3: see :mod:`object_store`),
    temporary uploads under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "lfs"
        self.tmp_dir = Path(root) / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.store: ObjectStore = open_object_store(Path(root))

    @property
    def remote(self) -> bool:
        """True when objects live off this machine (S3): ``path`` then names no file."""
        return self.store.kind != "local"

    def download_url(self, oid: str, ttl: int = 3600) -> str | None:
        """A presigned URL on the store's origin for a stored object; None on local disk or when absent."""
        if not self.remote or self.store.size(oid) is None:
            return None
        return self.store.download_url(oid, ttl)

    def path(self, oid: str) -> Path:
        """Where object ``oid`` lives (whether or not it exists)."""
        return Path(self.name(oid))

    def name(self, oid: str) -> str:
        """:meth:`path` as a string (no path object: this is on every download, thousands per stream)."""
        if not is_valid_oid(oid):
            raise BadRequestError(f"Invalid LFS oid {oid!r}: expected 64 lowercase hex characters.")
        return f"{self.root}/{oid[:2]}/{oid[2:4]}/{oid}"

    def size(self, oid: str) -> int | None:
        """The stored object's size, or None if it is not stored."""
        if self.remote:
            return self.store.size(oid)
        try:
            return os.stat(self.name(oid)).st_size
        except FileNotFoundError:
            return None

    def has(self, oid: str, size: int | None = None) -> bool:
        """True if the object is stored (with this size, when given)."""
        stored = self.size(oid)
        return stored is not None and (size is None or stored == size)

    def open(self, oid: str) -> BinaryIO:
        """Open a stored object for reading."""
        if self.remote:
            return self.store.open(oid)
        try:
            return open(self.path(oid), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"LFS object {oid} is not stored on this hub.") from None

    def writer(self, oid: str, size: int) -> ObjectWriter:
        """Start a verified streaming upload of ``oid``."""
        self.path(oid)
        if size < 0:
            raise BadRequestError("LFS object size must be >= 0.")
        return ObjectWriter(self, oid, size)

    def put_chunks(self, oid: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an object from an iterable of chunks, verified."""
        w = self.writer(oid, size)
        try:
            for chunk in chunks:
                w.write(chunk)
        except BaseException:
            w.abort()
            raise
        w.commit()

    def put_bytes(self, data: bytes) -> str:
        """Store bytes whose hash the server computed itself; returns the oid (a present object is touched)."""
        oid = hashlib.sha256(data).hexdigest()
        if not self.touch(oid):
            self.put_chunks(oid, len(data), [data])
        return oid

    def touch(self, oid: str) -> bool:
        """Mark a stored object as just used (mtime = now), so gc's grace period protects it again.

        Call it when a repo links or re-uses an object it did not just upload. False if not stored.
        """
        if self.remote:
            return self.store.touch(oid)
        try:
            os.utime(self.path(oid))
        except FileNotFoundError:
            return False
        return True

    def delete(self, oid: str) -> bool:
        """Remove a stored object (on disk or in S3); False if it was not stored."""
        if self.remote:
            return self.store.delete(oid)
        try:
            self.path(oid).unlink()
        except FileNotFoundError:
            return False
        return True

    def _install(self, tmp: Path, oid: str) -> None:
        if self.remote:
            self.path(oid)
            self.store.install(tmp, oid)
            return
        final = self.path(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    # -- multipart staging (the Hub's chunked upload) --------------------------------------------

    def multipart_dir(self, upload_id: str) -> Path:
        """The staging folder of one multipart upload."""
        try:
            uuid.UUID(upload_id)
        except ValueError:
            raise BadRequestError("Invalid multipart upload id.") from None
        return self.tmp_dir / "multipart" / upload_id

    def new_multipart(self) -> str:
        """A fresh upload id; nothing is created on disk until its first part arrives."""
        return str(uuid.uuid4())

    def part_writer(self, upload_id: str, part: int) -> tuple[BinaryIO, Path]:
        """Open a temp file for one part (creating the staging folder); rename it to the returned path
        when complete. The id must come from a signed URL: ids are not remembered anywhere else."""
        folder = self.multipart_dir(upload_id)
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / f"{part}.partial", "wb"), folder / f"{part}.part"

    def complete_multipart(self, upload_id: str, oid: str, size: int, parts: list[int]) -> None:
        """Concatenate the parts in order, verify oid and size, store; the staging folder is removed.

        The bytes are checked even when the object is stored already: completing an upload is how a
        repo proves it holds an object, so parts that do not hash to ``oid`` are refused."""
        folder = self.multipart_dir(upload_id)
        try:
            files = [folder / f"{p}.part" for p in parts]
            missing = [p for p, f in zip(parts, files) if not f.exists()]
            if missing:
                raise BadRequestError(f"Multipart upload is missing parts {missing}.")

            def chunks() -> Iterable[bytes]:
                for f in files:
                    with open(f, "rb") as fh:
                        yield from iter(lambda: fh.read(8 << 20), b"")

            self.put_chunks(oid, size, chunks())  # verified even when stored already: proof of possession
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- temporaries -------------------------------------------------------------------------------

    def clean_temporaries(self, multipart_ttl: float = MULTIPART_TTL) -> tuple[int, int]:
        """Remove dead uploads and multipart folders untouched for ``multipart_ttl`` seconds.

        Safe beside live servers on the same data folder. Returns (entries removed, bytes freed).
        """
        removed = freed = 0
        for tmp in self.tmp_dir.glob("upload-*"):
            size = _dead_upload_size(tmp)
            if size is not None:
                removed, freed = removed + 1, freed + size
        cutoff = time.time() - multipart_ttl
        for folder in (self.tmp_dir / "multipart").glob("*"):
            stats = _tree_stats(folder)
            if stats is not None and stats[0] < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed, freed = removed + 1, freed + stats[1]
        staged = self.store.clean_staging(cutoff)  # uploads staged in S3 whose signed links expired
        return removed + staged[0], freed + staged[1]


def _dead_upload_size(tmp: Path) -> int | None:
    """Delete ``tmp`` if no live writer holds its lock; returns the bytes freed, None if kept."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # a live upload
    try:
        st = os.fstat(fd)
        if st.st_size == 0 and time.time() - st.st_mtime < 60:
            return None  # maybe created a moment ago, before its writer took the lock
        tmp.unlink(missing_ok=True)
        return st.st_size
    finally:
        os.close(fd)


def _tree_stats(folder: Path) -> tuple[float, int] | None:
    """(newest mtime, total bytes) of a folder and the files in it; None if it vanished."""
    try:
        newest, total = folder.stat().st_mtime, 0
        for entry in os.scandir(folder):
            st = entry.stat(follow_symlinks=False)
            newest, total = max(newest, st.st_mtime), total + st.st_size
    except FileNotFoundError:
        return None
    return newest, total
