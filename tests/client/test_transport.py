"""The one transport policy (hubfs/client/policy.py) as metadata (Transport) and bytes (RangeFetcher) apply it.

Most tests run on an injected ``httpx.MockTransport`` with an injected sleep, so they neither touch the
network nor wait; the proxy tests use a real forward proxy on loopback in front of the session hub.
"""

from __future__ import annotations

import http.client
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import httpx
import pytest

from hubfs.client import HubClient
from hubfs.client.fetch import RangeFetcher
from hubfs.client.http import Transport
from hubfs.client.policy import RetryPolicy, proxy_for, safe_url, server_wait, tls_context
from hubfs.config import HubConfig
from hubfs.errors import EntryNotFoundError, HubConnectionError, HubfsError, OfflineModeError

HUB = "https://hub.test"
TOKEN = "hf_s3cret_token"
NOW = 1_700_000_000.0
FILE = f"{HUB}/me/m/resolve/{'a' * 40}/f.bin"
DATA = bytes(range(256)) * 64

Handler = Callable[[httpx.Request], httpx.Response]


class Mock:
    """A transport under test: the requests it sent, and the waits it slept."""

    def __init__(self, handler: Handler, *, tries: int = 4, offline: bool = False) -> None:
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        config = HubConfig(HUB, TOKEN, Path("/nonexistent-cache"), offline)
        policy = RetryPolicy(tries=tries, sleep=self.slept.append, clock=lambda: NOW, random=lambda: 0.0)
        self.transport = Transport(config, http_transport=httpx.MockTransport(record), retry=policy)
        self.fetcher = RangeFetcher(self.transport)


def ranged(request: httpx.Request, data: bytes = DATA) -> httpx.Response:
    """A 206 answer to the request's ``Range: bytes=a-b``."""
    first, last = request.headers["range"].removeprefix("bytes=").split("-")
    start, end = int(first), min(int(last), len(data) - 1)
    return httpx.Response(206, content=data[start:end + 1],
                          headers={"content-range": f"bytes {start}-{end}/{len(data)}"})


def sequence(*answers: httpx.Response | Exception | Handler) -> Handler:
    """A handler giving ``answers`` in turn (the last one again and again); an exception is raised."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    return handler


def read_bytes(mock: Mock, url: str = FILE, n: int = 1000) -> bytes:
    buf = bytearray(n)
    got, total = mock.fetcher.fetch_into(url, 0, memoryview(buf))
    assert total == len(DATA)
    return bytes(buf[:got])


# -- retries ---------------------------------------------------------------------------------------


def test_429_then_200_waits_what_retry_after_says_for_metadata() -> None:
    mock = Mock(sequence(httpx.Response(429, headers={"retry-after": "1"}), httpx.Response(200, json={"ok": 1})))
    assert mock.transport.request("GET", "/api/whoami-v2").json() == {"ok": 1}
    assert len(mock.requests) == 2 and mock.slept == [1.0]


def test_429_then_206_waits_what_retry_after_says_for_bytes() -> None:
    mock = Mock(sequence(httpx.Response(429, headers={"retry-after": "1"}), ranged))
    assert read_bytes(mock) == DATA[:1000]
    assert len(mock.requests) == 2 and mock.slept == [1.0]


@pytest.mark.parametrize(("headers", "wait"), [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": formatdate(NOW + 5, usegmt=True)}, 5.0),
    ({"retry-after": formatdate(NOW - 5, usegmt=True)}, 0.0),
    ({"ratelimit": '"api";r=0;t=7'}, 7.0),
    ({"ratelimit-reset": "2"}, 2.0),
    ({"retry-after": "3600"}, 60.0),  # capped at max_wait
    ({"retry-after": "soon"}, 0.125),  # unreadable: our own back-off
])
def test_the_wait_honours_the_server_and_is_capped(headers: dict[str, str], wait: float) -> None:
    policy = RetryPolicy(base=0.25, max_wait=60.0, clock=lambda: NOW, random=lambda: 0.0)
    assert policy.delay_for(0, headers) == pytest.approx(wait)


def test_server_wait_is_none_without_a_hint() -> None:
    assert server_wait({}, NOW) is None


def test_back_off_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    low = RetryPolicy(base=0.25, cap=8.0, random=lambda: 0.0)
    high = RetryPolicy(base=0.25, cap=8.0, random=lambda: 0.999999)
    assert [low.delay_for(n) for n in range(3)] == [0.125, 0.25, 0.5]
    assert [round(high.delay_for(n), 3) for n in range(3)] == [0.25, 0.5, 1.0]
    assert high.delay_for(10) == pytest.approx(8.0)
    rolls = RetryPolicy(base=1.0, random=random.Random(1).random)
    assert len({rolls.delay_for(2) for _ in range(20)}) > 1, "jittered"


def test_a_503_storm_gives_up_after_n_tries_with_a_clear_error() -> None:
    mock = Mock(sequence(httpx.Response(503)), tries=4)
    with pytest.raises(HubfsError) as info:
        mock.transport.request("GET", "/api/models/me/m?expand=1")
    assert len(mock.requests) == 4 and len(mock.slept) == 3
    assert mock.slept == sorted(mock.slept) and mock.slept[0] < mock.slept[-1], "exponential back-off"
    message = str(info.value)
    assert info.value.status == 503 and "4 tries" in message and f"{HUB}/api/models/me/m" in message
    assert TOKEN not in message and "expand" not in message


def test_a_503_storm_on_bytes_gives_up_without_leaking_a_signed_query() -> None:
    mock = Mock(sequence(httpx.Response(503, text="busy")), tries=3)
    with pytest.raises(HubfsError) as info:
        read_bytes(mock, FILE + "?X-Amz-Signature=topsecret")
    assert len(mock.requests) == 3 and info.value.status == 503
    message = str(info.value)
    assert "3 tries" in message and FILE in message and "topsecret" not in message and TOKEN not in message


def test_dropped_connections_are_retried_then_reported() -> None:
    drop = httpx.ConnectError("connection refused")
    mock = Mock(sequence(drop, drop, httpx.Response(200, json={})), tries=4)
    assert mock.transport.request("GET", "/api/whoami-v2").json() == {}
    assert len(mock.slept) == 2

    mock = Mock(sequence(drop), tries=3)
    with pytest.raises(HubConnectionError, match="3 tries") as info:
        read_bytes(mock)
    assert FILE in str(info.value) and len(mock.requests) == 3
    assert isinstance(info.value, ConnectionError)


def test_client_errors_are_mapped_and_never_retried() -> None:
    answer = httpx.Response(404, headers={"x-error-code": "EntryNotFound", "x-error-message": "no f.bin here"})
    for call in (lambda m: m.transport.request("GET", "/api/x"), read_bytes):
        mock = Mock(sequence(answer))
        with pytest.raises(EntryNotFoundError, match="no f.bin here") as info:
            call(mock)
        assert isinstance(info.value, FileNotFoundError) and len(mock.requests) == 1 and not mock.slept


def test_retry_false_makes_one_try() -> None:
    mock = Mock(sequence(httpx.Response(503)))
    with pytest.raises(HubfsError) as info:
        mock.transport.request("POST", "/api/repos/create", json_body={}, retry=False)
    assert len(mock.requests) == 1 and "tries" not in str(info.value)


# -- redirects and tokens --------------------------------------------------------------------------


def cdn_redirect(request: httpx.Request) -> httpx.Response:
    if request.url.host == "hub.test" and "/resolve/" in request.url.path:
        return httpx.Response(302, headers={"location": "https://cdn.test/blob?X-Amz-Signature=abc"})
    if request.url.host == "hub.test" and request.url.path == "/old":
        return httpx.Response(307, headers={"location": "/new"})
    return ranged(request) if "range" in request.headers else httpx.Response(200, json={})


def auth_by_host(mock: Mock) -> list[tuple[str, str | None]]:
    return [(r.url.host, r.headers.get("authorization")) for r in mock.requests]


def test_a_cross_origin_redirect_drops_the_token_for_bytes() -> None:
    mock = Mock(cdn_redirect)
    assert read_bytes(mock) == DATA[:1000]
    assert auth_by_host(mock) == [("hub.test", f"Bearer {TOKEN}"), ("cdn.test", None)]


def test_a_cross_origin_redirect_drops_the_token_for_metadata() -> None:
    mock = Mock(cdn_redirect)
    mock.transport.request("GET", FILE)
    assert auth_by_host(mock) == [("hub.test", f"Bearer {TOKEN}"), ("cdn.test", None)]


def test_a_same_origin_redirect_keeps_the_token() -> None:
    mock = Mock(cdn_redirect)
    mock.transport.request("GET", "/old")
    assert auth_by_host(mock) == [("hub.test", f"Bearer {TOKEN}")] * 2
    assert mock.requests[1].url.path == "/new"


def test_a_callers_authorization_header_does_not_cross_origins() -> None:
    mock = Mock(cdn_redirect)
    mock.transport.request("GET", FILE, headers={"Authorization": "Basic lfs"}, auth=False)
    assert auth_by_host(mock) == [("hub.test", "Basic lfs"), ("cdn.test", None)]


def test_the_token_never_goes_to_another_origin() -> None:
    mock = Mock(cdn_redirect)
    mock.transport.request("GET", "https://cdn.test/other")
    mock.transport.request("GET", "http://hub.test/downgraded")
    assert auth_by_host(mock) == [("cdn.test", None), ("hub.test", None)]


def test_safe_url_drops_secrets() -> None:
    assert safe_url("https://user:pw@cdn.test:8443/a/b?sig=x#frag") == "https://cdn.test:8443/a/b"


# -- offline ---------------------------------------------------------------------------------------


def test_offline_sends_nothing() -> None:
    mock = Mock(lambda request: pytest.fail("sent while offline"), offline=True)
    with pytest.raises(OfflineModeError, match="HF_HUB_OFFLINE"):
        mock.transport.request("GET", "/api/whoami-v2")
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        read_bytes(mock)
    assert not mock.requests


# -- proxies and certificates ----------------------------------------------------------------------

_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "transfer-encoding", "te",
        "upgrade", "content-length"}


class ForwardProxy:
    """A minimal HTTP forward proxy on loopback (absolute-form requests, no CONNECT), recording each
    request as (method, absolute URL)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        seen = self.seen

        class Relay(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def relay(self) -> None:
                seen.append((self.command, self.path))
                target = urlsplit(self.path)
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size) if size else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
                try:
                    upstream.request(self.command, target.path + (f"?{target.query}" if target.query else ""),
                                     body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response_only(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hub_file(hub) -> tuple[str, bytes]:
    """(pinned URL, content) of a 2 MiB file on the session hub."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    rid = f"admin/proxy-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    data = random.Random(7).randbytes(2 << 20)
    sha = api.upload_file(path_or_fileobj=data, path_in_repo="f.bin", repo_id=rid).oid
    return HubClient(hub.endpoint, hub.admin_token).file_url("model", rid, sha, "f.bin"), data


@pytest.fixture
def proxy(monkeypatch) -> Iterator[ForwardProxy]:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server = ForwardProxy()
    yield server
    server.close()


def test_byte_reads_and_metadata_go_through_the_proxy_from_the_environment(hub, hub_file, proxy, monkeypatch) -> None:
    url, data = hub_file
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = HubClient(hub.endpoint, hub.admin_token)
    fetcher = RangeFetcher(client.transport)
    buf = bytearray(1 << 20)
    assert fetcher.fetch_into(url, 4096, memoryview(buf)) == (1 << 20, len(data)) and bytes(buf) == data[4096:4096 + (1 << 20)]
    assert b"".join(fetcher.fetch_pieces(url, 0, len(data), 1 << 20)) == data
    client.transport.request("GET", "/api/whoami-v2")
    assert ("GET", url) in proxy.seen, "bytes through the proxy"
    assert ("GET", f"{hub.endpoint}/api/whoami-v2") in proxy.seen, "metadata through the proxy"


def test_no_proxy_keeps_the_direct_path(hub, hub_file, proxy, monkeypatch) -> None:
    url, data = hub_file
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", urlsplit(hub.endpoint).hostname or "")
    client = HubClient(hub.endpoint, hub.admin_token)
    buf = bytearray(1000)
    assert RangeFetcher(client.transport).fetch_into(url, 0, memoryview(buf)) == (1000, len(data))
    client.transport.request("GET", "/api/whoami-v2")
    assert proxy.seen == []


def test_proxy_for_follows_the_scheme_and_no_proxy() -> None:
    proxies = {"https": "http://proxy:3128", "no": "internal.test,.corp.test"}
    assert proxy_for("https://huggingface.co/x", proxies) == "http://proxy:3128"
    assert proxy_for("http://huggingface.co/x", proxies) is None
    assert proxy_for("https://internal.test/x", proxies) is None
    assert proxy_for("https://cdn.corp.test/x", proxies) is None
    assert proxy_for("https://x.test/", {"all": "http://p:1"}) == "http://p:1"


def test_a_client_can_share_another_clients_tls_settings(monkeypatch) -> None:
    """Loading a CA bundle costs 20-50 ms: a stand-in client (a forked download's) takes the other's."""
    from hubfs.client.api import HubClient

    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    first = HubClient(HUB, False)
    shared = HubClient(HUB, False, tls=first.transport.tls)
    own = HubClient(HUB, False)
    assert shared.transport.tls is first.transport.tls and own.transport.tls is not first.transport.tls
    assert RangeFetcher(shared.transport)._take_new("https://cdn.test/f")._context is first.transport.tls  # type: ignore[attr-defined]
    for client in (first, shared, own):
        client.close()


def test_ca_bundle_variables_set_the_tls_context_of_both_paths(monkeypatch) -> None:
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    with pytest.raises(FileNotFoundError):
        tls_context()
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())  # wins over REQUESTS_CA_BUNDLE
    assert tls_context().cert_store_stats()["x509_ca"] > 10
    transport = Transport(HubConfig(HUB, None, Path("/nonexistent-cache"), False))
    conn = RangeFetcher(transport)._take_new("https://cdn.test/f")
    assert conn._context is transport.tls  # type: ignore[attr-defined]
