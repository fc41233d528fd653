"""Commit operations and their upload: preupload, LFS batch (basic and multipart), NDJSON commit.

Content is streamed from disk (or bytes) at every step: hashed in 8 MiB pieces, PUT as a stream,
base64-encoded into the commit body piece by piece; no second full copy is held in RAM.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hubfs.errors import BadRequestError, HubfsError
from hubfs.paths import validate_path_in_repo

PIECE = 8 << 20


@dataclass
class Add:
    """Put ``source`` (bytes or a local file path) at ``path``."""

    path: str
    source: bytes | str | Path
    mode: str = field(default="", init=False)
    sha256: str = field(default="", init=False)
    git_sha1: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.path = validate_path_in_repo(self.path)

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else os.path.getsize(self.source)

    def open(self) -> IO[bytes]:
        import io

        return io.BytesIO(self.source) if isinstance(self.source, bytes) else open(self.source, "rb")

    def pieces(self, start: int = 0, length: int | None = None, piece: int = PIECE) -> Iterator[bytes]:
        """The content from ``start`` (``length`` bytes, or to the end), in pieces."""
        with self.open() as f:
            f.seek(start)
            left = self.size - start if length is None else length
            while left > 0:
                chunk = f.read(min(piece, left))
                if not chunk:
                    raise HubfsError(f"{self.path}: the local file shrank while it was being uploaded.")
                left -= len(chunk)
                yield chunk

    def sample(self) -> str:
        with self.open() as f:
            return base64.b64encode(f.read(512)).decode()

    def hash(self) -> None:
        sha, blob = hashlib.sha256(), hashlib.sha1(b"blob %d\x00" % self.size)
        for chunk in self.pieces():
            sha.update(chunk)
            blob.update(chunk)
        self.sha256, self.git_sha1 = sha.hexdigest(), blob.hexdigest()


@dataclass
class Delete:
    """Delete the file (or, with ``folder``, everything under the folder) at ``path``."""

    path: str
    folder: bool = False

    def __post_init__(self) -> None:
        self.path = validate_path_in_repo(self.path)


@dataclass
class LfsRef:
    """Point ``path`` at an LFS object already in the repo (a server-side copy)."""

    path: str
    oid: str
    size: int


Operation = Add | Delete | LfsRef


def ndjson_body(header: dict[str, Any], ops: list[Operation]) -> Iterator[bytes]:
    """The commit body, generated lazily; regular files are base64-encoded piece by piece."""
    yield json.dumps({"key": "header", "value": header}).encode() + b"\n"
    for op in ops:
        if isinstance(op, Add) and op.mode == "regular":
            yield b'{"key":"file","value":{"path":' + json.dumps(op.path).encode() + b',"encoding":"base64","content":"'
            for chunk in op.pieces(piece=3 * (1 << 20)):
                yield base64.b64encode(chunk)
            yield b'"}}\n'
        elif isinstance(op, Add):
            line = {"key": "lfsFile", "value": {"path": op.path, "algo": "sha256", "oid": op.sha256, "size": op.size}}
            yield json.dumps(line).encode() + b"\n"
        elif isinstance(op, LfsRef):
            line = {"key": "lfsFile", "value": {"path": op.path, "algo": "sha256", "oid": op.oid, "size": op.size}}
            yield json.dumps(line).encode() + b"\n"
        else:
            key = "deletedFolder" if op.folder else "deletedFile"
            yield json.dumps({"key": key, "value": {"path": op.path}}).encode() + b"\n"


def upload_lfs_objects(client: Any, lfs_url: str, adds: list[Add], revision: str | None, progress: Any = None,
                       workers: int = 4) -> None:
    """Send objects the hub lacks through the LFS batch API (basic PUT or HF multipart), then verify."""
    headers = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}
    by_oid = {a.sha256: a for a in adds}
    todo: list[tuple[Add, dict[str, Any]]] = []
    items = list(by_oid.values())
    for i in range(0, len(items), 256):
        body: dict[str, Any] = {"operation": "upload", "transfers": ["basic", "multipart"], "hash_algo": "sha256",
                                "objects": [{"oid": a.sha256, "size": a.size} for a in items[i:i + 256]]}
        if revision:
            body["ref"] = {"name": revision}
        answer = client.transport.request("POST", lfs_url, json_body=body, headers=headers).json()
        for obj in answer.get("objects", []):
            if obj.get("error"):
                raise BadRequestError(f"LFS upload of {obj.get('oid')} refused: {obj['error'].get('message')}")
            if obj.get("actions", {}).get("upload"):
                todo.append((by_oid[obj["oid"]], obj["actions"]))
            elif progress is not None:
                progress.update(by_oid[obj["oid"]].size)
    with ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
        list(pool.map(lambda item: _upload_one(client, item[0], item[1], progress), todo))


def _upload_one(client: Any, add: Add, actions: dict[str, Any], progress: Any) -> None:
    upload = actions["upload"]
    header = upload.get("header") or {}
    transport = client.transport
    if "chunk_size" in header:
        chunk = int(header["chunk_size"])
        parts = []
        for n in range(1, math.ceil(add.size / chunk) + 1):
            start = (n - 1) * chunk
            length = min(chunk, add.size - start)

            def body(start: int = start, length: int = length) -> Iterator[bytes]:
                return add.pieces(start, length)

            # a known length, never chunked transfer encoding: S3 and MinIO refuse chunked part uploads
            resp = transport.request("PUT", header[str(n)], content=body, auth=False,
                                     headers={"Content-Length": str(length)})
            etag = resp.headers.get("etag", "")
            if not etag:
                raise HubfsError(f"The hub returned no ETag for part {n} of {add.path}.")
            parts.append({"partNumber": n, "etag": etag})
            if progress is not None:
                progress.update(length)
        transport.request("POST", upload["href"], json_body={"oid": add.sha256, "parts": parts}, auth=False,
                          headers={"Accept": "application/vnd.git-lfs+json"})
    else:
        transport.request("PUT", upload["href"], content=lambda: add.pieces(), auth=False,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(add.size)})
        if progress is not None:
            progress.update(add.size)
    verify = actions.get("verify")
    if verify:
        transport.request("POST", verify["href"], json_body={"oid": add.sha256, "size": add.size},
                          headers={"Accept": "application/vnd.git-lfs+json", **(verify.get("header") or {})})
