"""The browser upload's body and commit: a ``multipart/form-data`` body streamed to temp files, then
one commit through the API's :class:`~hubfs.server.api_commit.CommitBuilder`.

The body is parsed as it arrives, in worker threads (batches of about 1 MiB), into ``locked_temp``
files of the LFS store's ``tmp`` folder, hashed on the way; nothing holds a whole file in memory.
Files go to LFS by the API's rule (the regular-size limit, or ``.gitattributes``); a failed upload
moves no branch (objects already stored are left to gc).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hubfs.errors import BadRequestError, PayloadTooLargeError
from hubfs.server.api_commit import CommitBuilder, path_in_repo
from hubfs.server.hub import Caller, Hub
from hubfs.server.lfs_store import locked_temp

MAX_UPLOAD = 20 << 30  # bytes in one browser upload
MAX_FILES = 10_000
MAX_FIELD = 64 << 10  # bytes of one text field (the commit message, the CSRF token)
BATCH = 1 << 20
READ = 8 << 20


@dataclass
class UploadedFile:
    """One file of the form: its path in the repo, the temp file holding it, its size and sha256."""

    path: str
    tmp: Path
    fd: int
    size: int = 0
    sha256: str = ""


@dataclass
class UploadForm:
    """The parsed form: text fields and files (close it to drop the temp files)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def close(self) -> None:
        for f in self.files:
            f.tmp.unlink(missing_ok=True)
            try:
                os.close(f.fd)
            except OSError:
                pass
        self.files.clear()


class _Parser:
    """python-multipart callbacks that write file parts to temp files and keep small text fields."""

    def __init__(self, boundary: bytes, tmp_dir: Path, form: UploadForm, file_field: str) -> None:
        self.form, self.tmp_dir, self.file_field = form, tmp_dir, file_field
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name = ""
        self._file: UploadedFile | None = None
        self._hash = hashlib.sha256()
        self._text = bytearray()
        self._skip = False
        callbacks = {
            "on_part_begin": self._part_begin, "on_header_field": self._hfield, "on_header_value": self._hvalue,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
            "on_part_data": self._data, "on_part_end": self._part_end,
        }
        self.parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def _part_begin(self) -> None:
        self._headers, self._file, self._text, self._skip = {}, None, bytearray(), False

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            return
        if self._name != self.file_field or not filename:
            self._skip = True  # an empty file input sends one part with no file name
            return
        if len(self.form.files) >= MAX_FILES:
            raise PayloadTooLargeError(f"At most {MAX_FILES} files in one upload.")
        path = filename.decode("utf-8", "replace").replace("\\", "/").lstrip("/")
        fd, tmp = locked_temp(self.tmp_dir)
        self._file = UploadedFile(path, tmp, fd)
        self.form.files.append(self._file)
        self._hash = hashlib.sha256()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        chunk = data[start:end]
        if self._file is not None:
            self._file.size += len(chunk)
            self._hash.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._file.fd, view):]
            return
        self._text += chunk
        if len(self._text) > MAX_FIELD:
            raise PayloadTooLargeError(f"The form field {self._name!r} is larger than {MAX_FIELD} bytes.")

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.sha256 = self._hash.hexdigest()
        elif not self._skip and self._name:
            self.form.fields[self._name] = self._text.decode("utf-8", "replace")

    def feed(self, data: bytes) -> None:
        try:
            self.parser.write(data)
        except MultipartParseError as exc:
            raise BadRequestError(f"Malformed upload form: {exc}") from None

    def finish(self) -> None:
        self.parser.finalize()
        if self._file is not None and not self._file.sha256:
            raise BadRequestError("The upload form ended in the middle of a file.")


async def read_upload_form(request: Request, tmp_dir: Path, file_field: str = "files",
                           limit: int = MAX_UPLOAD) -> UploadForm:
    """Stream a ``multipart/form-data`` body into an :class:`UploadForm` of temp files in ``tmp_dir``
    (the LFS store's: gc spares live ones); 413 past ``limit`` bytes, 400 when malformed. Parsing
    and file writes run in worker threads, about 1 MiB at a time."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequestError("An upload is a multipart/form-data form.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The upload of {declared} bytes is larger than the limit of {limit} bytes.")
    form = UploadForm()
    try:
        parser = _Parser(boundary, tmp_dir, form, file_field)
        total = 0
        batch = bytearray()
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise PayloadTooLargeError(f"The upload is larger than the limit of {limit} bytes.")
            batch += chunk
            if len(batch) >= BATCH:
                await run_in_threadpool(parser.feed, bytes(batch))
                batch = bytearray()
        if batch:
            await run_in_threadpool(parser.feed, bytes(batch))
        await run_in_threadpool(parser.finish)
    except BaseException:
        form.close()
        raise
    return form


def commit_upload(hub: Hub, caller: Caller, repo_type: str, repo_id: str, rev: str, form: UploadForm,
                  summary: str, description: str = "") -> str:
    """Commit the form's files to branch ``rev`` in one commit; returns the commit sha. Blocking.

    The same access rules, LFS rule, card check and commit as ``POST /api/.../commit/{rev}``; any
    refused file refuses the whole upload before the branch moves."""
    if not form.files:
        raise BadRequestError("Choose at least one file to upload.")
    seen: set[str] = set()
    for f in form.files:
        f.path = path_in_repo(f.path)
        if f.path in seen:
            raise BadRequestError(f"{f.path} appears twice in this upload.")
        seen.add(f.path)
    builder = CommitBuilder.start(hub, caller, repo_type, repo_id, rev, False)
    with hub.reclaim.shared(), hub.git.open(builder.repo.type, builder.repo.repo_id) as g:
        for f in form.files:
            if f.size >= hub.regular_max_size or (f.size and builder.rules.tracks(f.path)):
                if not hub.lfs.touch(f.sha256):
                    hub.lfs.put_chunks(f.sha256, f.size, _chunks(f))
                hub.meta.link_lfs(builder.repo, f.sha256, f.size)
                builder.add_lfs_file(g, {"path": f.path, "oid": f.sha256, "size": f.size})
            else:
                data = os.pread(f.fd, f.size, 0) if f.size else b""
                builder.add_file(g, {"path": f.path, "encoding": "base64",
                                     "content": base64.b64encode(data).decode()})
        builder.header = {"summary": summary, "description": description}
        return builder.finish(g).sha


def _chunks(f: UploadedFile) -> Iterator[bytes]:
    """The bytes of an uploaded temp file, ``READ`` bytes at a time."""
    offset = 0
    while offset < f.size:
        chunk = os.pread(f.fd, min(READ, f.size - offset), offset)
        if not chunk:
            raise BadRequestError(f"{f.path}: the uploaded file shrank while being stored.")
        offset += len(chunk)
        yield chunk
