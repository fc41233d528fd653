"""Content-addressed LFS object store on local disk: ``lfs/ab/cd/<sha256>``.

Objects are written to a temporary file, hashed while they stream in, checked against the declared
oid and size, and only then renamed into place, so a crash or a bad upload never leaves a wrong
object under a valid name. The class is the one interface the server uses; an S3-compatible store
can implement the same methods.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable

from hubfs.errors import BadRequestError, IntegrityError, NotFoundError
from hubfs.lfs import is_valid_oid


class ObjectWriter:
    """A streaming writer for one object: ``write`` chunks, then ``commit`` (verifies) or ``abort``."""

    def __init__(self, store: "LfsStore", oid: str, size: int) -> None:
        self._store, self.oid, self.size = store, oid, size
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._tmp = Path(name)
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
        self._file.close()
        try:
            if self.written != self.size:
                raise IntegrityError(f"Object {self.oid}: received {self.written} bytes, declared size {self.size}.")
            actual = self._hash.hexdigest()
            if actual != self.oid:
                raise IntegrityError(f"Object hash mismatch: declared sha256 {self.oid}, content hashes to {actual}.")
            self._store._install(self._tmp, self.oid)
        finally:
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop the partial object."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class LfsStore:
    """LFS objects under ``root/lfs``, temporary uploads under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "lfs"
        self.tmp_dir = Path(root) / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, oid: str) -> Path:
        """Where object ``oid`` lives (whether or not it exists)."""
        if not is_valid_oid(oid):
            raise BadRequestError(f"Invalid LFS oid {oid!r}: expected 64 lowercase hex characters.")
        return Path(f"{self.root}/{oid[:2]}/{oid[2:4]}/{oid}")  # one parse: this is on every download

    def size(self, oid: str) -> int | None:
        """The stored object's size, or None if it is not stored."""
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, oid: str, size: int | None = None) -> bool:
        """True if the object is stored (with this size, when given)."""
        stored = self.size(oid)
        return stored is not None and (size is None or stored == size)

    def open(self, oid: str) -> BinaryIO:
        """Open a stored object for reading."""
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
        """Store bytes whose hash the server computed itself; returns the oid."""
        oid = hashlib.sha256(data).hexdigest()
        if not self.has(oid, len(data)):
            self.put_chunks(oid, len(data), [data])
        return oid

    def _install(self, tmp: Path, oid: str) -> None:
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
        """Create a staging folder; returns its id."""
        upload_id = str(uuid.uuid4())
        self.multipart_dir(upload_id).mkdir(parents=True)
        return upload_id

    def part_writer(self, upload_id: str, part: int) -> tuple[BinaryIO, Path]:
        """Open a temp file for one part; rename it to the returned path when complete."""
        folder = self.multipart_dir(upload_id)
        if not folder.is_dir():
            raise NotFoundError("Unknown or expired multipart upload.")
        return open(folder / f"{part}.partial", "wb"), folder / f"{part}.part"

    def complete_multipart(self, upload_id: str, oid: str, size: int, parts: list[int]) -> None:
        """Concatenate the parts in order, verify oid and size, store; the staging folder is removed."""
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

            if not self.has(oid, size):
                self.put_chunks(oid, size, chunks())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
