"""Download actions that carry their own headers (allowed by the Git LFS batch spec; the embedded hub
never sends them): the headers are sent, an interrupted body is resumed with a Range request, and bytes
that do not match the oid are refused. A small LFS server on loopback plays the other side."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from git_remote_hf.lfs_store import LfsStore
from git_remote_hf.lfs_transfer import LfsTransferError, fetch_objects
from hubfs.client.api import HubClient
from hubfs.lfs import LfsPointer


class _Lfs(BaseHTTPRequestHandler):
    objects: ClassVar[dict[str, bytes]] = {}
    seen: ClassVar[list[tuple[str, str | None, str | None]]] = []  # (oid, X-Action header, Range)
    cut_first: ClassVar[bool] = True

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        out = [{"oid": o["oid"], "size": o["size"],
                "actions": {"download": {"href": f"{base}/obj/{o['oid']}", "header": {"X-Action": "token-42"}}}}
               for o in body["objects"]]
        data = json.dumps({"transfer": "basic", "objects": out}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.git-lfs+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        oid = self.path.rsplit("/", 1)[1]
        self.seen.append((oid, self.headers.get("X-Action"), self.headers.get("Range")))
        if self.headers.get("X-Action") != "token-42":
            self.send_error(403)
            return
        data = self.objects[oid]
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if type(self).cut_first and not start:  # the connection dies half-way through the first answer
            type(self).cut_first = False
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def lfs_server() -> Iterator[tuple[str, type[_Lfs]]]:
    handler = type("Handler", (_Lfs,), {"objects": {}, "seen": [], "cut_first": True})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_action_headers_are_sent_and_a_cut_body_resumes(tmp_path: Path, lfs_server) -> None:
    url, handler = lfs_server
    data = os.urandom(3 << 20)  # over the in-memory size: streamed into incomplete/
    pointer = LfsPointer(hashlib.sha256(data).hexdigest(), len(data))
    handler.objects[pointer.oid] = data
    git_dir = tmp_path / ".git"
    git_dir.mkdir()
    with HubClient(url, False, max_retries=0) as client:
        with pytest.raises(LfsTransferError, match="rerun to resume"):
            fetch_objects(git_dir, client, f"{url}/info/lfs", [pointer])
        partial = (git_dir / "lfs/incomplete" / pointer.oid).stat().st_size
        assert partial == len(data) // 2
        fetch_objects(git_dir, client, f"{url}/info/lfs", [pointer])
    assert LfsStore(git_dir).path(pointer.oid).read_bytes() == data
    assert handler.seen == [(pointer.oid, "token-42", None), (pointer.oid, "token-42", f"bytes={partial}-")]

    handler.cut_first, handler.seen[:] = True, []  # with retries, the same run resumes the cut body
    other = tmp_path / "other" / ".git"
    other.mkdir(parents=True)
    with HubClient(url, False) as client:
        fetch_objects(other, client, f"{url}/info/lfs", [pointer])
    assert LfsStore(other).path(pointer.oid).read_bytes() == data
    assert handler.seen == [(pointer.oid, "token-42", None), (pointer.oid, "token-42", f"bytes={partial}-")]


def test_action_header_download_refuses_wrong_bytes(tmp_path: Path, lfs_server) -> None:
    url, handler = lfs_server
    handler.cut_first = False
    data = os.urandom(2 << 20)
    pointer = LfsPointer(hashlib.sha256(b"something else").hexdigest(), len(data))
    handler.objects[pointer.oid] = data
    git_dir = tmp_path / ".git"
    git_dir.mkdir()
    with HubClient(url, False) as client, pytest.raises(LfsTransferError, match="refused"):
        fetch_objects(git_dir, client, f"{url}/info/lfs", [pointer])
    assert not list((git_dir / "lfs").rglob(pointer.oid))
