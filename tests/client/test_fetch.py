"""RangeFetcher (hubfs/client/fetch.py): edges, warm-up connections, idle connections the server dropped."""

from __future__ import annotations

import ctypes
import dataclasses
import random
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from huggingface_hub import HfApi

from hubfs.client import HubClient
from hubfs.client.fetch import RangeFetcher
from hubfs.client.http import origin

MiB = 1 << 20


@pytest.fixture(scope="module")
def remote(hub):
    """(fetcher, pinned url, data) of a 3 MiB file."""
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    rid = f"admin/fetch-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    data = random.Random(5).randbytes(3 * MiB + 5)
    sha = api.upload_file(path_or_fileobj=data, path_in_repo="f.bin", repo_id=rid).oid
    client = HubClient(hub.endpoint, hub.admin_token)
    return RangeFetcher(client.transport), client.file_url("model", rid, sha, "f.bin"), data


def test_edges_come_with_the_size_and_the_headers(remote) -> None:
    fetcher, url, data = remote
    headers: dict[str, str] = {}
    tail, offset, total = fetcher.fetch_edge(url, 1000, tail=True, headers=headers)
    assert (tail, offset, total) == (data[-1000:], len(data) - 1000, len(data))
    assert headers["x-repo-commit"] in url and headers["x-linked-size"] == str(len(data))
    assert fetcher.fetch_edge(url, 1000, tail=False) == (data[:1000], 0, len(data))
    assert fetcher.fetch_edge(url, 10 * MiB, tail=True) == (data, 0, len(data))  # longer than the file: all of it


def test_preconnect_opens_idle_connections_and_used_ones_go_first(remote) -> None:
    fetcher, url, data = remote
    fetcher = RangeFetcher(fetcher.transport)
    buf = bytearray(100)
    assert fetcher.fetch_into(url, 0, memoryview(buf)) == (100, len(data))
    used = fetcher._idle[origin(url)][-1]
    with ThreadPoolExecutor(4) as pool:
        fetcher.preconnect(url, 4, pool)
    idle = fetcher._idle[origin(url)]
    assert len(idle) == 4 and all(conn.sock is not None for conn in idle), "connected before any request"
    assert idle[-1] is used, "the connection that already carried a response is taken first"
    with ThreadPoolExecutor(4) as pool:
        fetcher.preconnect(url, 4, pool)  # enough idle already: nothing more
    assert len(fetcher._idle[origin(url)]) == 4


def test_an_idle_connection_the_server_dropped_is_replaced_at_once(remote, monkeypatch) -> None:
    fetcher, url, data = remote
    fetcher = RangeFetcher(fetcher.transport)
    buf = bytearray(1000)
    fetcher.fetch_into(url, 0, memoryview(buf))
    dead = fetcher._idle[origin(url)][-1]
    dead.sock.shutdown(socket.SHUT_RDWR)  # as if the server had closed it while it sat idle
    monkeypatch.setattr(fetcher, "retry", dataclasses.replace(
        fetcher.retry, sleep=lambda s: pytest.fail("no back-off for a stale connection")))
    t0 = time.perf_counter()
    assert fetcher.fetch_into(url, 5000, memoryview(buf)) == (1000, len(data)) and bytes(buf) == data[5000:6000]
    assert time.perf_counter() - t0 < 1.0
    assert dead not in fetcher._idle[origin(url)]


@pytest.fixture
def plain_server(tmp_path):
    """``http.server`` (stdlib) serving ``tmp_path``: it ignores Range and always answers 200 with the whole file."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # the fetcher hangs up once it has its bytes: a broken pipe here is expected

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_a_server_that_ignores_range_still_gives_the_right_bytes(plain_server) -> None:
    endpoint, root = plain_server
    data = random.Random(9).randbytes(3 * MiB + 11)
    (root / "f.bin").write_bytes(data)
    url = f"{endpoint}/f.bin"
    fetcher = RangeFetcher(HubClient(endpoint, False).transport)
    buf = bytearray(5000)
    assert fetcher.fetch_into(url, 1000, memoryview(buf)) == (5000, len(data)) and bytes(buf) == data[1000:6000]
    assert b"".join(fetcher.fetch_pieces(url, 1000, 2 * MiB, MiB)) == data[1000:1000 + 2 * MiB]
    made: list[int] = []

    def alloc(n: int) -> ctypes.Array:  # the pieces' buffers, as a FUSE reply wants them
        made.append(n)
        return (ctypes.c_char * n)()

    pieces = fetcher.fetch_pieces(url, 3 * MiB - 5, 100, MiB, alloc)  # past the end: a short last piece
    assert made[:2] == [5, 95] and [bytes(p) for p in pieces] == [data[3 * MiB - 5:3 * MiB], data[3 * MiB:]]
    assert isinstance(pieces[0], ctypes.Array) and type(pieces[1]) is bytes  # short: copied out
    assert fetcher.fetch_edge(url, 4096, tail=True) == (data[-4096:], len(data) - 4096, len(data))
    assert fetcher.fetch_edge(url, 4096, tail=False) == (data[:4096], 0, len(data))


@pytest.mark.parametrize("stall", ["before the answer", "mid-body", "closed mid-body"])
def test_a_stalled_server_fails_the_fetch_after_the_timeout(stall: str) -> None:
    """Never a short read passed off as the file: a stall or an early close is an error (after retries)."""
    import threading

    from hubfs.errors import HubConnectionError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # kept open, never closed: a stall, not a reset
            conn.recv(65536)
            if stall != "before the answer":
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1000\r\n"
                             b"Content-Range: bytes 0-999/5000\r\n\r\n" + b"x" * 100)
            if stall == "closed mid-body":
                conn.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=serve, daemon=True).start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    fetcher = RangeFetcher(HubClient(endpoint, False).transport, max_retries=0, timeout=0.5)
    t0 = time.perf_counter()
    try:
        with pytest.raises(HubConnectionError):
            fetcher.fetch_into(f"{endpoint}/f.bin", 0, memoryview(bytearray(1000)))
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert time.perf_counter() - t0 < 5
