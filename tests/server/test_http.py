"""Range handling of the hub's HTTP layer: parse_ranges, check_allowed, and multipart/byteranges bodies.

Bodies are checked byte for byte on the session's real hub (an LFS object served from disk, a small
git blob), on a private hub with sendfile off, and on an in-process uvicorn app that counts the parts
sent zero-copy and serves the ``allowed=`` check.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from huggingface_hub import HfApi
from starlette.requests import Request

from hubfs.errors import PermissionDeniedError, RangeNotSatisfiableError
from hubfs.server.http import App, RangedBody, Router, check_allowed, inline, parse_range, parse_ranges
from hubfs.server.zero_copy import MIN_SIZE, FileSender

MiB = 1024 * 1024


def parse_multipart(resp: httpx.Response) -> list[tuple[str, tuple[int, int, int], bytes]]:
    """(part Content-Type, (start, end, size) of its Content-Range, bytes) for each part, strictly (RFC 9110 §14.6)."""
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", resp.headers["content-type"])
    assert m, resp.headers["content-type"]
    body, delim = resp.content, b"--" + m.group(1).encode()
    assert int(resp.headers["content-length"]) == len(body)
    assert body.endswith(b"\r\n" + delim + b"--\r\n")
    parts: list[tuple[str, tuple[int, int, int], bytes]] = []
    pos = 0
    while True:
        assert body.startswith(delim, pos), body[pos:pos + 80]
        pos += len(delim)
        if body.startswith(b"--\r\n", pos):
            assert pos + 4 == len(body)
            return parts
        assert body.startswith(b"\r\n", pos)
        head_end = body.index(b"\r\n\r\n", pos)
        headers = dict(line.split(": ", 1) for line in body[pos + 2:head_end].decode("latin-1").split("\r\n"))
        assert "Content-Range" not in resp.headers
        cr = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["Content-Range"])
        assert cr, headers
        start, end, size = (int(g) for g in cr.groups())
        data_start = head_end + 4
        data = body[data_start:data_start + end - start + 1]
        pos = data_start + len(data)
        assert body.startswith(b"\r\n", pos)
        pos += 2
        parts.append((headers["Content-Type"], (start, end, size), data))


def check_parts(resp: httpx.Response, data: bytes, ranges: list[tuple[int, int]], content_type: str) -> None:
    assert resp.status_code == 206, resp.text[:200]
    parts = parse_multipart(resp)
    assert [p[1] for p in parts] == [(a, b, len(data)) for a, b in ranges]
    assert all(p[0] == content_type for p in parts)
    for (_, (a, b, _), got), (start, end) in zip(parts, ranges):
        assert got == data[start:end + 1], (a, b)


def header_of(ranges: list[str]) -> str:
    return "bytes=" + ",".join(ranges)


# --- parse_ranges / parse_range / check_allowed -----------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "bytes=", "bytes=-", "items=0-5", "bytes=a-b", "bytes=0-5,x-y",
                                    "bytes=0-5,5-3", "bytes=0-5,-", "bytes=0-5;1-2", "bytes=0-1-2"])
def test_parse_ranges_ignores_missing_or_malformed_headers(header: str | None) -> None:
    assert parse_ranges(header, 100) is None


def test_parse_ranges_reads_several_ranges_in_the_order_given() -> None:
    assert parse_ranges("bytes=0-9, 20-29 ,-5,90-", 100) == [(0, 9), (20, 29), (95, 99), (90, 99)]
    assert parse_ranges("bytes=0-9,5-14,0-9", 100) == [(0, 9), (5, 14), (0, 9)], "overlaps are kept as given"
    assert parse_ranges("bytes=50-150,-500", 100) == [(50, 99), (0, 99)], "ends are clamped"
    assert parse_ranges("bytes=0-1,,3-4,", 100) == [(0, 1), (3, 4)], "empty list elements are skipped"
    assert parse_ranges(f"bytes=0-{'9' * 40},5-6", 100) == [(0, 99), (5, 6)]


def test_parse_ranges_drops_unsatisfiable_ranges_and_refuses_when_none_is_left() -> None:
    assert parse_ranges("bytes=0-9,100-,-0,200-300", 100) == [(0, 9)]
    for header in ["bytes=100-,200-300", "bytes=-0,100-", f"bytes={'9' * 30}-,100-"]:
        with pytest.raises(RangeNotSatisfiableError) as exc:
            parse_ranges(header, 100)
        assert exc.value.status == 416 and exc.value.headers == {"Content-Range": "bytes */100"}  # type: ignore[attr-defined]
    with pytest.raises(RangeNotSatisfiableError):
        parse_ranges("bytes=0-1,-5", 0)


def test_parse_ranges_ignores_more_than_max_ranges() -> None:
    many = [f"{i}-{i}" for i in range(65)]
    assert parse_ranges(header_of(many[:64]), 100) == [(i, i) for i in range(64)]
    assert parse_ranges(header_of(many), 100) is None
    assert parse_ranges("bytes=0-1,2-3,4-5", 100, max_ranges=2) is None


@pytest.mark.parametrize("header", ["bytes=0-0", "bytes=0-", "bytes=5-9", " bytes = 5 - 9 ", "bytes=90-200", "bytes=-5",
                                    "bytes=-500", "bytes=100-", "bytes=-0", "bytes=9-5", "bytes=007-08",
                                    f"bytes=1-{'9' * 30}", f"bytes={'9' * 30}-", "bytes=-", "bytes=x"])
@pytest.mark.parametrize("size", [0, 1, 100])
def test_one_range_reads_as_parse_range_reads_it(header: str, size: int) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return fn(header, size)
        except RangeNotSatisfiableError as exc:
            return ("416", exc.headers)  # type: ignore[attr-defined]

    single, multi = outcome(parse_range), outcome(parse_ranges)
    if single is None or single[0] == "416":
        assert multi == single
    else:
        assert multi == [single]


def test_parse_range_still_serves_the_whole_file_for_several_ranges() -> None:
    assert parse_range("bytes=0-1,3-4", 100) is None
    assert parse_range("bytes=0-1,", 100) is None
    assert parse_range("bytes=0-1,500-", 100) is None


def test_check_allowed_needs_each_range_inside_one_interval() -> None:
    allowed = [(0, 99), (100, 199), (500, 999)]
    check_allowed([(0, 99), (150, 160), (500, 999), (600, 600)], allowed, 1000)
    for ranges in ([(0, 100)], [(90, 110)], [(0, 9), (200, 200)], [(499, 500)]):
        with pytest.raises(PermissionDeniedError) as exc:
            check_allowed(ranges, allowed, 1000)
        assert exc.value.status == 403 and "outside" in exc.value.message
    with pytest.raises(PermissionDeniedError):
        check_allowed([(0, 0)], [], 1000)


def test_check_allowed_without_a_range_needs_the_whole_object() -> None:
    check_allowed(None, [(0, 999)], 1000)
    check_allowed(None, [(10, 20), (0, 5000)], 1000)
    check_allowed(None, [(0, 0)], 0)
    for allowed in ([(0, 998)], [(1, 999)], [(0, 499), (500, 999)], []):
        with pytest.raises(PermissionDeniedError) as exc:
            check_allowed(None, allowed, 1000)
        assert "Range header" in exc.value.message


# --- RangedBody in process: the ASGI messages of data= and path= bodies ---------------------------------------


def _request(range_header: str | None, method: str = "GET") -> Request:
    headers = [(b"range", range_header.encode())] if range_header else []
    return Request({"type": "http", "method": method, "headers": headers, "path": "/", "query_string": b""})


def _run(body: RangedBody) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    asyncio.run(body({"type": "http", "hubfs.file_sender": FileSender()}, receive, send))  # type: ignore[arg-type]
    return messages[0], messages[1:]


@pytest.mark.parametrize("source", ["data", "path", "load"])
def test_ranged_body_multipart_messages(tmp_path: Path, source: str) -> None:
    data = os.urandom(9 * MiB + 3)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    kinds = {"data": {"data": data}, "path": {"path": str(blob)}, "load": {"load": lambda: data}}
    ranges = [(0, 0), (5 * MiB, 9 * MiB + 2), (10, 4 * MiB), (7, 7), (len(data) - 5, len(data) - 1)]
    header = header_of([f"{a}-{b}" for a, b in ranges[:-1]] + ["-5"])
    body = RangedBody(_request(header), len(data), {"Content-Type": "application/x-test", "ETag": '"e"'},
                      **kinds[source])  # type: ignore[arg-type]
    start, messages = _run(body)
    assert start["status"] == 206
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["etag"] == '"e"' and "content-range" not in headers
    assert all(m["more_body"] for m in messages[:-1]) and not messages[-1].get("more_body")
    assert max(len(m["body"]) for m in messages) <= 4 * MiB + 1024, "file parts go out in ~4 MiB pieces"
    resp = httpx.Response(206, headers=headers, content=b"".join(m["body"] for m in messages))
    check_parts(resp, data, ranges, "application/x-test")


def test_ranged_body_head_and_single_range_and_small_bodies(tmp_path: Path) -> None:
    data = b"0123456789" * 10
    start, messages = _run(RangedBody(_request("bytes=0-1,5-6", "HEAD"), 100, {}, data=data))
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 206 and headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert messages == [{"type": "http.response.body", "body": b""}]
    _, get_messages = _run(RangedBody(_request("bytes=0-1,5-6"), 100, {}, data=data))
    assert int(headers["content-length"]) == len(b"".join(m["body"] for m in get_messages))
    assert len(get_messages) == 1, "a small multipart body is one message"
    start, messages = _run(RangedBody(_request("bytes=3-5"), 100, {"Content-Type": "text/plain"}, data=data))
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert (start["status"], headers["content-range"], headers["content-type"]) == (206, "bytes 3-5/100", "text/plain")
    assert b"".join(m["body"] for m in messages) == b"345"


def test_ranged_body_allowed_refuses_before_sending(tmp_path: Path) -> None:
    with pytest.raises(PermissionDeniedError):
        RangedBody(_request("bytes=0-9,50-60"), 100, {}, data=bytes(100), allowed=[(0, 49), (50, 59)])
    with pytest.raises(PermissionDeniedError):
        RangedBody(_request(None), 100, {}, data=bytes(100), allowed=[(0, 98)])
    with pytest.raises(PermissionDeniedError):  # a malformed header asks for the whole object
        RangedBody(_request("bytes=0-9,x"), 100, {}, data=bytes(100), allowed=[(0, 98)])
    body = RangedBody(_request("bytes=0-9,50-59"), 100, {}, data=bytes(100), allowed=[(0, 49), (50, 59)])
    assert body.status_code == 206
    assert RangedBody(_request(None), 100, {}, data=bytes(100), allowed=[(0, 99)]).status_code == 200


# --- the session's real hub ------------------------------------------------------------------------------------


def test_multi_range_resolve_of_a_large_lfs_file(hub, api: HfApi, repo_id: str) -> None:
    data = os.urandom(12 * MiB + 7)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo_id)
    url = f"{hub.endpoint}/{repo_id}/resolve/main/w.bin"
    ranges = [(0, 99), (MiB + 5, 4 * MiB), (3 * MiB, 3 * MiB), (10, 2 * MiB + 9), (12 * MiB, 12 * MiB + 6)]
    with httpx.Client(timeout=60) as client:
        resp = client.get(url, headers={"Range": header_of([f"{a}-{b}" for a, b in ranges[:-1]] + ["-7"])})
        check_parts(resp, data, ranges, "application/octet-stream")
        assert resp.headers["etag"] and resp.headers["x-repo-commit"]
        head = client.head(url, headers={"Range": "bytes=0-9,20-29"})
        assert head.status_code == 206 and head.headers["content-type"].startswith("multipart/byteranges")
        single = client.get(url, headers={"Range": f"bytes={MiB}-{3 * MiB}"})
        assert single.status_code == 206 and single.headers["content-range"] == f"bytes {MiB}-{3 * MiB}/{len(data)}"
        assert single.headers["content-type"] == "application/octet-stream" and single.content == data[MiB:3 * MiB + 1]
        one_left = client.get(url, headers={"Range": f"bytes=5-9,{len(data)}-"})
        assert one_left.status_code == 206 and one_left.headers["content-range"] == f"bytes 5-9/{len(data)}"
        assert one_left.content == data[5:10]
        past = client.get(url, headers={"Range": f"bytes={len(data)}-,{len(data) + 10}-{len(data) + 20}"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
        for malformed in ["bytes=0-9,x-y", "bytes=5-3,0-1", header_of([f"{i}-{i}" for i in range(65)])]:
            whole = client.get(url, headers={"Range": malformed})
            assert whole.status_code == 200 and whole.content == data, malformed
        # The connection is still usable after all of these.
        assert client.get(url, headers={"Range": "bytes=0-3"}).content == data[:4]


def test_multi_range_resolve_of_a_small_regular_file(hub, api: HfApi, repo_id: str) -> None:
    data = b"".join(b"line %05d\n" % i for i in range(1000))
    api.upload_file(path_or_fileobj=data, path_in_repo="notes.txt", repo_id=repo_id)
    url = f"{hub.endpoint}/{repo_id}/resolve/main/notes.txt"
    ranges = [(0, 9), (5000, 5099), (20, 19 + 10), (len(data) - 1, len(data) - 1), (0, len(data) - 1)]
    resp = httpx.get(url, headers={"Range": header_of([f"{a}-{b}" for a, b in ranges])}, timeout=30)
    check_parts(resp, data, ranges, "text/plain")
    single = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
    assert single.status_code == 206 and single.content == data[10:20]
    assert httpx.get(url, headers={"Range": f"bytes={len(data)}-,-0"}, timeout=30).status_code == 416


def test_multi_range_resolve_with_sendfile_off(tmp_hub) -> None:
    hub = tmp_hub(env={"HUBFS_NO_SENDFILE": "1"})
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/ranges")
    data = os.urandom(12 * MiB + 7)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/ranges")
    url = f"{hub.endpoint}/admin/ranges/resolve/main/w.bin"
    ranges = [(5 * MiB, 11 * MiB), (1, 1), (0, 12 * MiB + 6), (7, 70000)]
    with httpx.Client(timeout=60) as client:
        check_parts(client.get(url, headers={"Range": header_of([f"{a}-{b}" for a, b in ranges])}), data, ranges,
                    "application/octet-stream")
        assert client.get(url, headers={"Range": "bytes=-10"}).content == data[-10:]


# --- an in-process uvicorn app: zero-copy parts are counted; allowed= on a real route --------------------------


class CountingSender(FileSender):
    def __init__(self) -> None:
        super().__init__()
        self.zero_copy_parts = 0

    def sendfile(self, send: Any, size: int, *, finish: bool = True) -> Any:
        copy = super().sendfile(send, size, finish=finish)
        self.zero_copy_parts += copy is not None
        return copy


@pytest.fixture
def file_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, bytes, CountingSender]]:
    """An app serving one 6 MiB file at /blob and at /granted (bytes 0-99 and 1-3 MiB only), over httptools."""
    monkeypatch.delenv("HUBFS_NO_SENDFILE", raising=False)
    data = os.urandom(6 * MiB)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    router = Router()
    router.add(["GET"], "/blob", inline(lambda request: RangedBody(request, len(data), {}, path=str(blob))))
    router.add(["GET"], "/granted", inline(lambda request: RangedBody(request, len(data), {}, path=str(blob),
                                                                       allowed=[(0, 99), (MiB, 3 * MiB - 1)])))
    sender = CountingSender()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(App(router, {"hubfs.file_sender": sender}), http="httptools", loop="asyncio",
                            lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the test app did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", data, sender
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_multipart_parts_go_zero_copy_when_big_enough(file_app: tuple[str, bytes, CountingSender]) -> None:
    endpoint, data, sender = file_app
    ranges = [(0, 9), (MiB, 3 * MiB), (2 * MiB, 2 * MiB + 99), (4 * MiB, 6 * MiB - 1), (5, MIN_SIZE + 4)]
    with httpx.Client(timeout=60) as client:
        for _ in range(2):  # twice on one keep-alive connection: the first response ended cleanly
            resp = client.get(f"{endpoint}/blob", headers={"Range": header_of([f"{a}-{b}" for a, b in ranges])})
            check_parts(resp, data, ranges, "application/octet-stream")
    assert sender.zero_copy_parts == 6, "the three parts of at least MIN_SIZE bytes, in each response"


def test_allowed_ranges_on_a_route(file_app: tuple[str, bytes, CountingSender]) -> None:
    endpoint, data, _ = file_app
    url = f"{endpoint}/granted"
    ok = [(0, 99), (MiB, 3 * MiB - 1), (10, 19), (2 * MiB, 2 * MiB + 5)]
    check_parts(httpx.get(url, headers={"Range": header_of([f"{a}-{b}" for a, b in ok])}, timeout=60), data, ok,
                "application/octet-stream")
    for header in [None, "bytes=0-100", f"bytes=0-9,{3 * MiB - 10}-{3 * MiB}", "bytes=-10", "bytes=0-9,x"]:
        resp = httpx.get(url, headers={"Range": header} if header else {}, timeout=60)
        assert resp.status_code == 403 and resp.headers["x-error-code"] == "Forbidden", header
    assert httpx.get(url, headers={"Range": "bytes=6291456-"}, timeout=60).status_code == 416
