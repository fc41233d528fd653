"""Multipart LFS part uploads carry a Content-Length, as S3 and MinIO require.

The part URLs point at a loopback server that behaves like S3 for a part PUT: without a
Content-Length (a chunked body) it answers 411 Length Required, as S3 does; moto, the test S3 server,
accepts chunked parts, so it cannot show this fault."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hubfs.client.api import HubClient
from hubfs.client.commit import Add, _upload_one
from hubfs.errors import HubfsError


class _StrictParts:
    """Records (path, Content-Length, body) of each PUT; 411 for a PUT without a Content-Length."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, int, bytes]] = []
        self.completed: list[bytes] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self) -> None:
                length = self.headers.get("content-length")
                if length is None or self.headers.get("transfer-encoding"):
                    self.send_response(411)
                    self.send_header("content-length", "0")
                    self.send_header("connection", "close")
                    self.end_headers()
                    return
                store.puts.append((self.path, int(length), self.rfile.read(int(length))))
                self.send_response(200)
                self.send_header("etag", f'"etag-{len(store.puts)}"')
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                store.completed.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def strict() -> Iterator[_StrictParts]:
    s = _StrictParts()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_each_part_put_has_its_content_length(strict, tmp_path) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: parts of 4096, 4096 and 2048
    (tmp_path / "w.bin").write_bytes(data)
    add = Add("w.bin", tmp_path / "w.bin")
    add.hash()
    actions = {"upload": {"href": f"{strict.url}/complete", "header": {
        "chunk_size": "4096", "1": f"{strict.url}/p/1", "2": f"{strict.url}/p/2", "3": f"{strict.url}/p/3"}}}
    with HubClient(strict.url, token=False, max_retries=0) as client:
        _upload_one(client, add, actions, None)
    assert [(path, length) for path, length, _ in strict.puts] == [("/p/1", 4096), ("/p/2", 4096), ("/p/3", 2048)]
    assert b"".join(body for _, _, body in strict.puts) == data
    (completed,) = strict.completed
    assert json.loads(completed) == {"oid": add.sha256, "parts": [
        {"partNumber": n, "etag": f'"etag-{n}"'} for n in (1, 2, 3)]}


def test_a_chunked_part_is_what_s3_refuses(strict) -> None:
    """The server's check has teeth: a part PUT streamed without a length is refused."""
    with HubClient(strict.url, token=False, max_retries=0) as client, pytest.raises(HubfsError):
        client.transport.request("PUT", f"{strict.url}/p/1", content=lambda: iter([b"abc"]), auth=False)
    assert strict.puts == []
