"""Wrong JSON shapes, wrong-typed fields, huge numbers and odd headers on every route of the embedded hub.

The routes are enumerated from the Router that ``create_app`` builds, and each gets concrete values for
its path parameters (a real repo, an existing discussion). Whatever is sent, the answer is never a 5xx
(501 for the catch-all ``/api/...`` route excepted), and every error carries a message.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from routes import ALIASES, ROUTES, concrete_path, route_ids
from routes import route_values as _values

HTTP = httpx.Client(timeout=60)
HUGE = "9" * 4400  # more digits than int() accepts by default
BIG = "9" * 20  # more than SQLite's 64-bit integers
LFS_JSON = "application/vnd.git-lfs+json"

# Every top-level key a handler reads from a JSON body.
KEYS = ["name", "organization", "type", "private", "visibility", "sdk", "gated", "fromRepo", "toRepo", "files",
        "gitIgnore", "paths", "expand", "tag", "message", "startingPoint", "title", "description", "pullRequest",
        "comment", "status", "user", "operation", "objects", "transfers", "ref", "hash_algo", "oid", "parts",
        "size", "content", "repoType"]
WRONG_VALUES: list[Any] = [[], {}, 5, -1, 10 ** 30, int(HUGE[:4000]), 1.5, True, None, "x", [[]], {"x": [[]]}]
SHAPES = [b"[]", b"5", b'"x"', b"null", b"true", b'{"x": [[]]}', b"[[]]", b"{}", b"1e999", b"{", b"\xff\xfe",
          b"[" * 50_000 + b"]" * 50_000, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000]


def _bodies() -> list[bytes]:
    """The raw bodies sent to every route: odd shapes, then every key at every wrong type, bare and nested."""
    out = list(SHAPES)
    for v in WRONG_VALUES:
        out.append(json.dumps({k: v for k in KEYS}).encode())
        nested = {k: [v] for k in KEYS}
        nested.update(ref={"name": v}, operation="upload", header={"summary": v})
        out.append(json.dumps(nested).encode())
        out.append(json.dumps({"operation": "download", "objects": [v], "files": [{"path": v, "size": v}],
                               "parts": [{"partNumber": v, "etag": v}], "paths": [v], "tag": "t", "message": v,
                               "title": "t", "description": v, "comment": v, "status": v}).encode())
    return out


BODIES = _bodies()


@pytest.fixture(scope="module")
def target(api) -> str:
    """A repo with a file and an open pull request #1, so that handlers get as far as the body."""
    from huggingface_hub import CommitOperationAdd

    rid = f"admin/shapes-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    api.create_commit(rid, [CommitOperationAdd("keep.txt", b"keep me")], commit_message="seed")
    api.create_pull_request(rid, title="pr")
    return rid


@pytest.fixture(scope="module")
def canonical_target(hub) -> str:
    """A canonical repo (no namespace) like ``target``, for the alias spellings of the repo routes."""
    from hubfs.client.api import HubClient
    from hubfs.client.commit import Add

    name = f"shapes-{uuid.uuid4().hex[:8]}"
    with HubClient(hub.endpoint, hub.admin_token) as client:  # huggingface_hub refuses single-segment ids
        client.create_repo("model", name)
        client.commit("model", name, [Add("keep.txt", b"keep me")], "seed")
    r = HTTP.post(f"{hub.endpoint}/api/models/{name}/discussions", json={"title": "pr", "pullRequest": True},
                  headers=_auth(hub))
    assert r.status_code == 200 and r.json()["num"] == 1, r.text
    return name


def _auth(hub) -> dict[str, str]:
    return {"authorization": f"Bearer {hub.admin_token}"}


@pytest.fixture(scope="module")
def cas(hub, target) -> tuple[str, str]:
    """(CAS instance segment, CAS write token) of ``target``: CAS routes get those, so the handlers
    behind the token check are reached too."""
    r = HTTP.get(f"{hub.endpoint}/api/models/{target}/xet-write-token/main", headers=_auth(hub))
    body = r.json()
    return body["casUrl"].rsplit("/", 1)[1], body["accessToken"]


def _for(route, hub, cas, values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Path values and auth headers for ``route``: the CAS token and instance for CAS routes."""
    if route.regex.pattern.startswith("^/cas/"):
        return {**values, "instance": cas[0]}, {"authorization": f"Bearer {cas[1]}"}
    return values, _auth(hub)


def assert_clean(r: httpx.Response, what: str, *, allow_501: bool = False) -> None:
    """Not a server error (but 501 NotImplemented where this hub has no such endpoint: Xet, unknown
    ``/api/`` routes), and an error has a readable message (header, JSON or text)."""
    limit = 502 if allow_501 or r.headers.get("x-error-code") == "NotImplemented" else 500
    assert r.status_code < limit, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        message = r.headers.get("x-error-message") or r.text.strip()
        assert message, (what, r.status_code, "error without a message")
        if "json" in r.headers.get("content-type", "") and r.request.method != "HEAD":
            body = r.json()
            assert isinstance(body, dict) and (body.get("error") or body.get("message")), (what, r.text[:300])


CATCH_ALL = next(r for r in ROUTES if r.regex.pattern == "^/api/(?P<rest>.+)$")


def test_routes_are_enumerated():
    assert len(ROUTES) >= 40
    # the catch-all comes after every API route (web pages follow it)
    assert all(not r.regex.pattern.startswith("^/api/") for r in ROUTES[ROUTES.index(CATCH_ALL) + 1:])
    assert ALIASES and all("(?P<ns>)" in r.regex.pattern for r in ALIASES)


EVERY = ROUTES + ALIASES  # the alias routes get a canonical repo


@pytest.mark.parametrize("route", EVERY, ids=route_ids(EVERY))
def test_wrong_json_shapes_on_every_route(hub, target, canonical_target, cas, route):
    values, auth = _for(route, hub, cas, _values(canonical_target if route in ALIASES else target))
    path = concrete_path(route, values)
    for method in sorted(route.methods):
        for body in BODIES:
            for ctype in ("application/json", "application/x-ndjson"):
                r = HTTP.request(method, hub.endpoint + path, content=body if method != "GET" else None,
                                 headers={"content-type": ctype, **auth})
                assert_clean(r, f"{method} {path} {body[:60]!r}", allow_501=route is CATCH_ALL)


@pytest.mark.parametrize("route", EVERY, ids=route_ids(EVERY))
def test_huge_numbers_in_segments_and_queries(hub, target, canonical_target, cas, route):
    repo = canonical_target if route in ALIASES else target
    for number in (BIG, HUGE, "00000000000000000000000000001", "-1"):
        values, auth = _for(route, hub, cas, _values(repo, num=number if number != "-1" else "1",
                                                     size=number if number != "-1" else "5",
                                                     part=number if number != "-1" else "1"))
        path = concrete_path(route, values)
        query = {k: number for k in ("limit", "cursor", "expires", "offset", "p", "num", "size", "partNumber", "r")}
        query.update(sig="x" * 64, expand="true", recursive="true", blobs="true")
        for method in sorted(route.methods):
            r = HTTP.request(method, hub.endpoint + path, params=query, headers=auth,
                             content=b"{}" if method != "GET" else None)
            assert_clean(r, f"{method} {path[:120]} {number[:25]}", allow_501=route is CATCH_ALL)


@pytest.mark.parametrize("num", [BIG, HUGE, "9223372036854775808"])
def test_discussion_number_out_of_range_is_4xx(hub, target, num):
    base = f"{hub.endpoint}/api/models/{target}/discussions/{num}"
    for method, url in (("GET", base), ("POST", base + "/comment"), ("POST", base + "/status"),
                        ("POST", base + "/merge")):
        r = HTTP.request(method, url, json={"comment": "hi", "status": "closed"}, headers=_auth(hub))
        assert 400 <= r.status_code < 500, (method, url[-40:], r.status_code, r.text[:200])
        assert r.headers.get("x-error-message")


@pytest.mark.parametrize("body", [b"[]", b"5", b'"x"', b"null", b'{"x": [[]]}'])
def test_json_routes_refuse_non_objects(hub, target, body):
    for method, url in (
        ("POST", "/api/repos/create"), ("DELETE", "/api/repos/delete"), ("POST", "/api/repos/move"),
        ("POST", "/api/validate-yaml"), ("PUT", f"/api/models/{target}/settings"),
        ("POST", f"/api/models/{target}/preupload/main"), ("POST", f"/api/models/{target}/branch/x-{uuid.uuid4().hex[:6]}"),
        ("POST", f"/api/models/{target}/tag/main"), ("POST", f"/api/models/{target}/discussions"),
        ("POST", f"/api/models/{target}/discussions/1/comment"), ("POST", f"/api/models/{target}/discussions/1/status"),
        ("POST", f"/api/models/{target}/user-access-request/grant"),
        ("POST", f"/api/models/{target}/user-access-request/handle"), ("POST", f"/{target}.git/info/lfs/objects/batch"),
    ):
        r = HTTP.request(method, hub.endpoint + url, content=body,
                         headers={"content-type": "application/json", **_auth(hub)})
        if body == b'{"x": [[]]}':
            assert r.status_code < 500, (method, url, r.status_code, r.text[:200])
        else:
            assert r.status_code == 400, (method, url, r.status_code, r.text[:200])
        assert r.headers.get("x-error-message") or r.status_code < 400


def test_tag_message_must_be_a_string(hub, api, target):
    r = HTTP.post(f"{hub.endpoint}/api/models/{target}/tag/main", json={"tag": "t5", "message": 5},
                  headers=_auth(hub))
    assert r.status_code == 400, r.text
    assert "message" in r.headers["x-error-message"]
    assert "t5" not in {t.name for t in api.list_repo_refs(target).tags}


def test_multipart_complete_with_bad_part_numbers(hub, target):
    size = 64 * 1024 * 1024 + 1
    oid = uuid.uuid4().hex * 2
    r = HTTP.post(f"{hub.endpoint}/{target}.git/info/lfs/objects/batch", headers={"content-type": LFS_JSON, **_auth(hub)},
                  json={"operation": "upload", "transfers": ["basic", "multipart"],
                        "objects": [{"oid": oid, "size": size}], "ref": {"name": "main"}})
    assert r.status_code == 200, r.text
    complete = r.json()["objects"][0]["actions"]["upload"]["href"]
    for parts in ([{"partNumber": "abc", "etag": "x"}], [{"partNumber": None}], [{"partNumber": 1.5}],
                  [{"partNumber": [1]}], ["x"], [{"partNumber": True}], [{"partNumber": int(HUGE[:4000])}]):
        r = HTTP.post(complete, json={"oid": oid, "parts": parts})
        assert r.status_code == 400, (parts, r.status_code, r.text[:200])
        assert r.headers.get("x-error-message")


def test_lfs_batch_object_with_huge_size(hub, target):
    r = HTTP.post(f"{hub.endpoint}/{target}.git/info/lfs/objects/batch", headers={"content-type": LFS_JSON, **_auth(hub)},
                  json={"operation": "upload", "transfers": ["multipart"], "ref": {"name": "main"},
                        "objects": [{"oid": "b" * 64, "size": 10 ** 400}, {"oid": "c" * 64, "size": 1 << 63}]})
    assert r.status_code == 200, r.text
    assert all(o.get("error", {}).get("code") == 422 for o in r.json()["objects"])


@pytest.mark.parametrize("rng", [f"bytes=0-{HUGE}", f"bytes=-{HUGE}", f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}",
                                 f"bytes=1-{BIG}", f"bytes=-{BIG}", "bytes=" + "0" * 5000 + "1-2", "bytes=٣-٤",
                                 "bytes=5-1", "bytes=a-b", "bytes=0-1,2-3", "chars=0-1", "bytes=-", "bytes"])
def test_odd_range_headers(hub, target, rng):
    """RFC 9110: a last-pos past the end is clamped, a first-pos past it is 416, an invalid range ignored."""
    data = b"keep me"
    r = HTTP.get(f"{hub.endpoint}/{target}/resolve/main/keep.txt", headers={"range": rng.encode()})
    assert r.status_code in (200, 206, 416), (rng[:40], r.status_code, r.text[:200])
    if rng in (f"bytes=0-{HUGE}", f"bytes=-{HUGE}", f"bytes=-{BIG}"):
        assert (r.status_code, r.content) == (206, data)
    if rng == f"bytes=1-{BIG}":
        assert (r.status_code, r.content) == (206, data[1:])
    if rng.startswith(f"bytes={HUGE}"):
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    if rng == "bytes=" + "0" * 5000 + "1-2":
        assert (r.status_code, r.content) == (206, data[1:3])
    if rng in ("bytes=5-1", "bytes=a-b", "chars=0-1", "bytes=-", "bytes"):
        assert (r.status_code, r.content) == (200, data)


@pytest.mark.parametrize("auth", ["Bearer", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                                  "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "Token abc", "Bearer a b c",
                                  "Bearer " + "x" * 8000, "bearer\tx", "Bearer \x7f", "Basic", "Negotiate " + HUGE,
                                  "Bearer hf_" + "é".encode().decode("latin-1")])
def test_malformed_authorization(hub, target, auth):
    for method, url in (("GET", f"/api/models/{target}"), ("GET", "/api/whoami-v2"),
                        ("HEAD", f"/{target}/resolve/main/keep.txt"), ("POST", f"/api/models/{target}/commit/main"),
                        ("POST", f"/{target}.git/info/lfs/objects/batch"), ("GET", f"/{target}.git/info/refs")):
        r = HTTP.request(method, hub.endpoint + url, headers={"authorization": auth.encode("latin-1")},
                         content=b"{}" if method == "POST" else None)
        assert 400 <= r.status_code < 500, (auth[:30], method, url, r.status_code)
        assert_clean(r if method != "HEAD" else HTTP.get(r.url, headers={"authorization": auth.encode("latin-1")}),
                     f"{auth[:30]} {method} {url}")


def test_big_json_bodies_are_parsed_and_refused_like_small_ones(hub, target):
    """Bodies past ``INLINE_JSON`` are parsed in the thread pool: same answers as small ones."""
    from hubfs.server.wire import INLINE_JSON

    files = [{"path": f"f/{i:06d}.txt", "size": 10, "sample": ""} for i in range(INLINE_JSON // 40)]
    body = json.dumps({"files": files}).encode()
    assert len(body) > INLINE_JSON
    r = HTTP.post(f"{hub.endpoint}/api/models/{target}/preupload/main", content=body,
                  headers={"content-type": "application/json", **_auth(hub)})
    assert r.status_code == 200 and len(r.json()["files"]) == len(files), r.text[:200]
    for bad in (body[:-1], b"[" + body + b"]", b"[" * (INLINE_JSON + 1)):
        r = HTTP.post(f"{hub.endpoint}/api/models/{target}/preupload/main", content=bad,
                      headers={"content-type": "application/json", **_auth(hub)})
        assert r.status_code == 400, (bad[:40], r.status_code, r.text[:200])
