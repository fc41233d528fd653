"""Bad input to the embedded hub: every malformed request gets a clear 4xx with X-Error-Code, and
changes nothing (the branch head, the file list, the refs and the LFS store stay as they were).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import BadRequestError, HfHubHTTPError

LFS_JSON = "application/vnd.git-lfs+json"
HTTP = httpx.Client(timeout=30)  # one connection pool for all raw requests (a new client per call is slow)


# -- helpers ------------------------------------------------------------------------------------


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _auth(hub, token: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {token or hub.admin_token}"}


def header(summary: str = "bad input", **extra) -> dict:
    return {"key": "header", "value": {"summary": summary, "description": "", **extra}}


def file_op(path: str, data: bytes = b"data") -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


def lfs_op(path: str, oid: str, size: int | None) -> dict:
    value = {"path": path, "algo": "sha256", "oid": oid}
    if size is not None:
        value["size"] = size
    return {"key": "lfsFile", "value": value}


def ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def post_commit(hub, repo_id: str, body: bytes, rev: str = "main", token: str | None = None) -> httpx.Response:
    return HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/{quote(rev, safe='')}", content=body,
                     headers={"content-type": "application/x-ndjson", **_auth(hub, token)}, timeout=30)


def state(api, repo_id: str) -> tuple[str, list[str]]:
    """What must not change: the head of main and the file list."""
    info = api.model_info(repo_id)
    return info.sha, sorted(s.rfilename for s in info.siblings or [])


def refs_of(api, repo_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    refs = api.list_repo_refs(repo_id)
    return (sorted((b.name, b.target_commit) for b in refs.branches),
            sorted((t.name, t.target_commit) for t in refs.tags))


def assert_error(r: httpx.Response, status: int | tuple[int, ...], code: str | tuple[str, ...]) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    codes = code if isinstance(code, tuple) else (code,)
    assert r.status_code in statuses, (r.status_code, r.headers.get("x-error-code"), r.text[:300])
    assert r.headers.get("x-error-code") in codes, (r.headers.get("x-error-code"), r.text[:300])
    assert r.headers.get("x-error-message"), "errors carry a readable X-Error-Message"


def seed_ops() -> list[CommitOperationAdd]:
    return [CommitOperationAdd("keep.txt", b"keep me"), CommitOperationAdd("dir/a.txt", b"a")]


@pytest.fixture
def seeded(api, repo_id) -> str:
    """A fresh repo with a couple of files on main, for tests that go on to change it."""
    api.create_commit(repo_id, seed_ops(), commit_message="seed")
    return repo_id


@pytest.fixture(scope="module")
def shared(api) -> str:
    """One seeded repo for the tests that must leave it unchanged (each of them asserts that it did)."""
    rid = f"admin/bad-{_uid()}"
    api.create_repo(rid)
    api.create_commit(rid, seed_ops(), commit_message="seed")
    return rid


def lfs_batch(hub, repo_id: str, objects: list[dict], operation: str = "upload", token: str | None = None,
              **extra) -> httpx.Response:
    body = {"operation": operation, "transfers": ["basic"], "objects": objects, **extra}
    return HTTP.post(f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch", json=body,
                     headers={"accept": LFS_JSON, "content-type": LFS_JSON, **_auth(hub, token)}, timeout=30)


def upload_action(hub, repo_id: str, data: bytes) -> tuple[str, dict]:
    """(oid, the batch entry) for ``data``; the entry has actions when the repo lacks the object."""
    oid = hashlib.sha256(data).hexdigest()
    r = lfs_batch(hub, repo_id, [{"oid": oid, "size": len(data)}])
    assert r.status_code == 200, r.text
    (entry,) = r.json()["objects"]
    assert entry["oid"] == oid and entry["size"] == len(data)
    return oid, entry


def lfs_stored(hub, oid: str) -> bool:
    return (hub.data_dir / "lfs" / oid[:2] / oid[2:4] / oid).exists()


def with_query(href: str, **changes: str | None) -> str:
    parts = urlsplit(href)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for k, v in changes.items():
        if v is None:
            q.pop(k, None)
        else:
            q[k] = v
    return urlunsplit(parts._replace(query=urlencode(q)))


# -- the commit endpoint ------------------------------------------------------------------------


def test_well_formed_raw_commit_is_accepted(hub, api, seeded):
    """The helpers speak the wire format correctly, so the failures below are about the bad part."""
    before, files = state(api, seeded)
    r = post_commit(hub, seeded, ndjson(header("ok", parentCommit=before), file_op("new.txt", b"new")))
    assert r.status_code == 200, r.text
    assert r.json()["commitOid"] != before
    assert state(api, seeded) == (r.json()["commitOid"], sorted(files + ["new.txt"]))


MALFORMED_COMMITS = {
    "not json": (b"this is not json\n", 400, "BadRequest"),
    "not json after header": (ndjson(header()) + b"{nope\n", 400, "BadRequest"),
    "truncated json": (ndjson(header()) + b'{"key":"file","value":{"path":"x.txt"', 400, "BadRequest"),
    "json array line": (ndjson(header()) + b"[1,2,3]\n", 400, "BadRequest"),
    "line without key": (ndjson(header(), {"value": {"path": "x.txt"}}), 400, "BadRequest"),
    "line without value": (ndjson(header(), {"key": "file"}), 400, "BadRequest"),
    "value not an object": (ndjson(header(), {"key": "file", "value": "x.txt"}), 400, "BadRequest"),
    "unknown op copyFile": (ndjson(header(), {"key": "copyFile", "value": {"path": "x.txt", "from": "keep.txt"}}),
                            400, "BadRequest"),
    "unknown op foo": (ndjson(header(), {"key": "foo", "value": {}}), 400, "BadRequest"),
    "no header line": (ndjson(file_op("x.txt")), 400, "BadRequest"),
    "header not first": (ndjson(file_op("x.txt"), header()), 400, "BadRequest"),
    "two headers": (ndjson(header(), header(), file_op("x.txt")), 400, "BadRequest"),
    "empty body": (b"", 400, "BadRequest"),
    "blank lines only": (b"\n\n  \n", 400, "BadRequest"),
    "header without summary": (ndjson({"key": "header", "value": {"description": ""}}, file_op("x.txt")),
                               400, "BadRequest"),
    "malformed parentCommit": (ndjson(header(parentCommit="not-a-sha"), file_op("x.txt")), 400, "BadRequest"),
    "bad base64": (ndjson(header(), {"key": "file", "value": {"path": "x.txt", "content": "!!!not*base64",
                                                              "encoding": "base64"}}), 400, "BadRequest"),
    "content not a string": (ndjson(header(), {"key": "file", "value": {"path": "x.txt", "content": 12}}),
                             400, "BadRequest"),
    "unknown encoding": (ndjson(header(), {"key": "file", "value": {"path": "x.txt", "content": "eA==",
                                                                    "encoding": "rot13"}}), 400, "BadRequest"),
    "deletedFile of a missing path": (ndjson(header(), {"key": "deletedFile", "value": {"path": "nope.txt"}}),
                                      404, "EntryNotFound"),
    "deletedFolder of a missing folder": (ndjson(header(), {"key": "deletedFolder", "value": {"path": "nope/"}}),
                                          404, "EntryNotFound"),
    "lfsFile never uploaded": (ndjson(header(), lfs_op("w.bin", hashlib.sha256(b"never uploaded " + uuid.uuid4().bytes)
                                                       .hexdigest(), 10)), 400, "BadRequest"),
    "lfsFile bad oid": (ndjson(header(), lfs_op("w.bin", "xyz", 3)), 400, "BadRequest"),
    "lfsFile bad algo": (ndjson(header(), {"key": "lfsFile", "value": {"path": "w.bin", "algo": "md5",
                                                                       "oid": "0" * 64, "size": 1}}),
                         400, "BadRequest"),
    "file onto a folder": (ndjson(header(), file_op("dir", b"x")), 409, "Conflict"),
    "file under a file": (ndjson(header(), file_op("keep.txt/x", b"x")), 409, "Conflict"),
}


@pytest.mark.parametrize("case", list(MALFORMED_COMMITS))
def test_malformed_commit_changes_nothing(hub, api, shared, case):
    body, status, code = MALFORMED_COMMITS[case]
    before = state(api, shared)
    r = post_commit(hub, shared, body)
    assert_error(r, status, code)
    assert state(api, shared) == before


@pytest.mark.parametrize("bad_line", [
    b"{nope\n",
    json.dumps({"key": "foo", "value": {}}).encode() + b"\n",
    json.dumps({"key": "deletedFile", "value": {"path": "missing.txt"}}).encode() + b"\n",
    json.dumps(file_op("../escape.txt")).encode() + b"\n",
])
def test_good_lines_before_a_bad_one_are_not_committed(hub, api, shared, bad_line):
    before = state(api, shared)
    body = ndjson(header(), file_op("first.txt", b"1"), {"key": "deletedFile", "value": {"path": "keep.txt"}}) + bad_line
    r = post_commit(hub, shared, body)
    assert 400 <= r.status_code < 500 and r.headers.get("x-error-code")
    assert state(api, shared) == before
    r = HTTP.head(f"{hub.endpoint}/{shared}/resolve/main/first.txt")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"


def test_commit_to_missing_branch(hub, api, shared):
    before = state(api, shared)
    r = post_commit(hub, shared, ndjson(header(), file_op("x.txt")), rev="no-such-branch")
    assert_error(r, 404, "RevisionNotFound")
    assert state(api, shared) == before
    assert refs_of(api, shared)[0] == [("main", before[0])]


def test_stale_parent_commit_is_412(hub, api, seeded):
    old = api.model_info(seeded).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=seeded)
    current = state(api, seeded)
    assert current[0] != old

    r = post_commit(hub, seeded, ndjson(header(parentCommit=old), file_op("two.txt", b"2")))
    assert_error(r, 412, "PreconditionFailed")
    assert state(api, seeded) == current
    r = post_commit(hub, seeded, ndjson(header(parentCommit=old[:7]), file_op("two.txt", b"2")))
    assert_error(r, 412, "PreconditionFailed")
    assert state(api, seeded) == current

    # the official client surfaces it as a plain HfHubHTTPError with status 412 (no retry)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(seeded, [CommitOperationAdd("two.txt", b"2")], commit_message="stale",
                          parent_commit=old)
    assert exc.value.response.status_code == 412
    assert state(api, seeded) == current

    # the right parent (full or abbreviated) is accepted
    info = api.create_commit(seeded, [CommitOperationAdd("two.txt", b"2")], commit_message="fresh",
                             parent_commit=current[0][:7])
    assert state(api, seeded) == (info.oid, sorted(current[1] + ["two.txt"]))


# -- names: repo ids, revisions, paths ----------------------------------------------------------


def _model_ids(api) -> set[str]:
    return {m.id for m in api.list_models(author="admin")}


@pytest.mark.parametrize("body", [
    {"name": "a..b", "organization": "admin"},
    {"name": "-x", "organization": "admin"},
    {"name": "x-", "organization": "admin"},
    {"name": "a--b", "organization": "admin"},
    {"name": "x.git", "organization": "admin"},
    {"name": "sp ace", "organization": "admin"},
    {"name": "a" * 97, "organization": "admin"},
    {"name": "", "organization": "admin"},
    {"name": "a/b/c", "organization": None},
    {"name": "admin/a..b", "organization": None},
    {"name": "x", "organization": "bad..ns"},
    {"name": "x", "organization": "admin", "type": "notatype"},
])
def test_create_with_invalid_repo_id(hub, api, body):
    before = _model_ids(api)
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json=body, headers=_auth(hub))
    assert_error(r, 400, "InvalidName")
    assert _model_ids(api) == before


def test_create_with_reserved_namespace(hub, api):
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json={"name": f"x-{_uid()}", "organization": "datasets"},
                  headers=_auth(hub))
    assert_error(r, 400, "BadRequest")
    assert "reserved" in r.headers["x-error-message"]


def test_single_segment_name_goes_to_the_callers_namespace(hub, api, users):
    name = f"single-{_uid()}"
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json={"name": name, "organization": None})
    assert_error(r, 401, "Unauthorized")
    assert api.repo_exists(f"admin/{name}") is False

    alice = users["alice"]
    auth = {"authorization": f"Bearer {users['alice_token']}"}
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json={"name": name, "organization": None}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["url"] == f"{hub.endpoint}/{alice}/{name}"
    assert api.repo_exists(f"{alice}/{name}") is True
    # a non-admin's single-segment name is never a canonical repo of its own
    r = HTTP.get(f"{hub.endpoint}/api/models/{name}", headers=auth)
    assert_error(r, 404, "RepoNotFound")


def test_admin_single_segment_name_is_a_canonical_repo(hub, api):
    name = f"canon-{_uid()}"
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json={"name": name, "organization": None}, headers=_auth(hub))
    assert r.status_code == 200, r.text
    assert r.json()["url"] == f"{hub.endpoint}/{name}"
    assert api.repo_exists(f"admin/{name}") is False
    r = HTTP.get(f"{hub.endpoint}/api/models/{name}", headers=_auth(hub))
    assert r.status_code == 200 and r.json()["id"] == name, r.text


def test_create_with_malformed_json(hub, api):
    before = _model_ids(api)
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", content=b"{not json",
                  headers={"content-type": "application/json", **_auth(hub)})
    assert_error(r, 400, "BadRequest")
    assert _model_ids(api) == before


@pytest.mark.parametrize("bad_id", ["admin/a..b", "admin/-x", "admin/x.git", "a--b/x"])
def test_invalid_repo_id_in_urls(hub, bad_id):
    for method, url in (
        ("GET", f"{hub.endpoint}/api/models/{bad_id}"),
        ("GET", f"{hub.endpoint}/api/models/{bad_id}/tree/main"),
        ("HEAD", f"{hub.endpoint}/{bad_id}/resolve/main/README.md"),
        ("POST", f"{hub.endpoint}/api/models/{bad_id}/commit/main"),
    ):
        r = HTTP.request(method, url, headers={"content-type": "application/x-ndjson", **_auth(hub)},
                         content=ndjson(header(), file_op("x.txt")) if method == "POST" else None)
        assert r.status_code == 400, (method, url, r.status_code)
        assert r.headers["x-error-code"] == "InvalidName"


BAD_REVISIONS = ["a..b", "x.lock", "@{", "a b", "refs/heads/../x", "-x", "x/", ".hidden", "a~1", "a^", "a:b", "a*",
                 "a[b", "a\\b", "a//b"]


@pytest.mark.parametrize("rev", BAD_REVISIONS)
def test_invalid_revision_in_writes(hub, api, shared, rev):
    before, refs = state(api, shared), refs_of(api, shared)

    r = post_commit(hub, shared, ndjson(header(), file_op("x.txt")), rev=rev)
    assert_error(r, 400, "InvalidName")
    r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/branch/{quote(rev, safe='')}", json={}, headers=_auth(hub))
    assert_error(r, 400, "InvalidName")
    r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/tag/main", json={"tag": rev}, headers=_auth(hub))
    assert_error(r, 400, "InvalidName")
    r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/preupload/{quote(rev, safe='')}",
                  json={"files": [{"path": "x.txt", "size": 1, "sample": "eA=="}]}, headers=_auth(hub))
    assert_error(r, 400, "InvalidName")

    assert state(api, shared) == before
    assert refs_of(api, shared) == refs


@pytest.mark.parametrize("rev", ["a..b", "x.lock", "@{"])
def test_invalid_revision_through_official_client(api, shared, rev):
    refs = refs_of(api, shared)
    with pytest.raises(BadRequestError):
        api.create_branch(shared, branch=rev)
    with pytest.raises(BadRequestError):
        api.create_tag(shared, tag=rev)
    assert refs_of(api, shared) == refs


@pytest.mark.parametrize("rev", ["a..b", "x.lock", "@{"])
def test_invalid_revision_in_reads(hub, shared, rev):
    enc = quote(rev, safe="")
    for method, url in (
        ("GET", f"{hub.endpoint}/{shared}/resolve/{enc}/keep.txt"),
        ("HEAD", f"{hub.endpoint}/{shared}/resolve/{enc}/keep.txt"),
        ("GET", f"{hub.endpoint}/api/models/{shared}/tree/{enc}"),
        ("GET", f"{hub.endpoint}/api/models/{shared}/commits/{enc}"),
        ("POST", f"{hub.endpoint}/api/models/{shared}/paths-info/{enc}"),
    ):
        r = HTTP.request(method, url, headers=_auth(hub), json={"paths": ["keep.txt"]} if method == "POST" else None)
        assert r.status_code == 400, (method, url, r.status_code)
        assert r.headers["x-error-code"] == "InvalidName"
    # repo info answers as the Hub does for any unknown revision
    r = HTTP.get(f"{hub.endpoint}/api/models/{shared}/revision/{enc}", headers=_auth(hub))
    assert_error(r, (400, 404), ("InvalidName", "RevisionNotFound"))


BAD_PATHS = ["../escape.txt", "a/../../b.txt", "a/../b.txt", "/abs.txt", "/etc/passwd", "a\x00b.txt", "./a.txt",
             "a//b.txt", ".git/config", "sub/.git/hooks/x", "a\\b.txt", "..", "."]


def _has_dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


@pytest.mark.parametrize("path", BAD_PATHS)
def test_invalid_paths_in_commit_ops(hub, api, shared, path):
    before = state(api, shared)
    for op in (file_op(path), {"key": "deletedFile", "value": {"path": path}},
               {"key": "deletedFolder", "value": {"path": path}}, lfs_op(path, "0" * 64, 1)):
        r = post_commit(hub, shared, ndjson(header(), op))
        # '.' and '..' segments answer 422 as the Hub does; other invalid paths 400
        assert_error(r, 422 if _has_dot_segment(path) else 400, "InvalidName")
    assert state(api, shared) == before


def test_invalid_paths_in_preupload_and_paths_info(hub, api, shared):
    for path in ("../x", "/abs", "a\x00b"):
        r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/preupload/main",
                      json={"files": [{"path": path, "size": 1, "sample": "eA=="}]}, headers=_auth(hub))
        assert_error(r, 422 if _has_dot_segment(path) else 400, "InvalidName")
        r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/paths-info/main", json={"paths": [path]},
                      headers=_auth(hub))
        assert_error(r, 400, "InvalidName")
    r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/preupload/main", json={"files": "x"}, headers=_auth(hub))
    assert_error(r, 400, "BadRequest")
    r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/preupload/main", json={"files": [{"path": "x"}]},
                  headers=_auth(hub))
    assert_error(r, 400, "BadRequest")


@pytest.mark.parametrize("raw_path", [
    "..%2Fsecret",
    "..%2F..%2F..%2Fhub.sqlite",
    "%2E%2E/secret",
    "a%00b",
    "%00",
    "%2Fetc%2Fpasswd",
    "dir%2F..%2Fkeep.txt",
    ".git%2Fconfig",
    "a%5Cb",
])
def test_bad_paths_in_resolve_and_tree_urls(hub, shared, raw_path):
    for method, url in (
        ("GET", f"{hub.endpoint}/{shared}/resolve/main/{raw_path}"),
        ("HEAD", f"{hub.endpoint}/{shared}/resolve/main/{raw_path}"),
        ("GET", f"{hub.endpoint}/api/models/{shared}/tree/main/{raw_path}"),
    ):
        r = HTTP.request(method, url, headers=_auth(hub))
        assert r.status_code == 400, (method, url, r.status_code, r.text[:200])
        assert r.headers["x-error-code"] == "InvalidName"
        assert b"keep me" not in r.content


def test_bad_percent_encoding_in_urls(hub, shared):
    for url in (f"{hub.endpoint}/{shared}/resolve/main/%ff%fe",
                f"{hub.endpoint}/api/models/{shared}/tree/main/%c3"):
        r = HTTP.get(url, headers=_auth(hub))
        assert_error(r, 400, ("BadRequest", "InvalidName"))


# -- oversized input ----------------------------------------------------------------------------


def test_oversized_headers(hub, api, shared):
    before = state(api, shared)
    big = {"x-padding": "a" * 20_000}
    r = HTTP.get(f"{hub.endpoint}/api/models/{shared}", headers={**_auth(hub), **big})
    assert r.status_code in (400, 431)
    assert r.headers.get("x-error-code")
    r = HTTP.post(f"{hub.endpoint}/api/models/{shared}/commit/main", content=ndjson(header(), file_op("big.txt")),
                  headers={"content-type": "application/x-ndjson", **_auth(hub), **big})
    assert r.status_code in (400, 431)
    assert state(api, shared) == before
    # and the server is still fine afterwards
    assert HTTP.get(f"{hub.endpoint}/api/models/{shared}", headers=_auth(hub)).status_code == 200


# -- the LFS batch API and its signed uploads ---------------------------------------------------


def test_lfs_batch_invalid_objects(hub, shared):
    good = hashlib.sha256(b"good object " + uuid.uuid4().bytes).hexdigest()
    objects = [
        {"oid": "not-a-sha", "size": 5},
        {"oid": "A" * 64, "size": 5},
        {"oid": "0" * 63, "size": 5},
        {"oid": good, "size": -1},
        {"oid": good, "size": "5"},
        {"oid": good},
        {"size": 5},
        {"oid": good, "size": 5},
    ]
    r = lfs_batch(hub, shared, objects)
    assert r.status_code == 200, r.text
    out = r.json()["objects"]
    assert len(out) == len(objects)
    for entry in out[:-1]:
        assert entry["error"]["code"] == 422
        assert isinstance(entry["error"]["message"], str) and entry["error"]["message"]
        assert "actions" not in entry
    assert "error" not in out[-1] and "upload" in out[-1]["actions"]


@pytest.mark.parametrize("body", [
    {"operation": "delete", "objects": []},
    {"operation": "upload", "objects": "nope"},
    {"operation": "upload"},
    {},
])
def test_lfs_batch_malformed_request(hub, shared, body):
    r = HTTP.post(f"{hub.endpoint}/{shared}.git/info/lfs/objects/batch", json=body,
                  headers={"accept": LFS_JSON, "content-type": LFS_JSON, **_auth(hub)})
    assert_error(r, 400, "BadRequest")


def test_lfs_batch_not_json(hub, shared):
    r = HTTP.post(f"{hub.endpoint}/{shared}.git/info/lfs/objects/batch", content=b"{nope",
                  headers={"accept": LFS_JSON, "content-type": LFS_JSON, **_auth(hub)})
    assert_error(r, 400, "BadRequest")


def test_lfs_batch_unsupported_hash_algo(hub, shared):
    r = lfs_batch(hub, shared, [{"oid": "0" * 64, "size": 1}], hash_algo="md5")
    assert r.status_code == 422
    assert r.headers.get("x-error-code"), "a 422 is bad input too and carries X-Error-Code"


def test_lfs_batch_upload_needs_write(hub, users, shared):
    r = lfs_batch(hub, shared, [{"oid": "0" * 64, "size": 1}], token=users["bob_token"], ref={"name": "main"})
    assert_error(r, 403, "Forbidden")
    r = HTTP.post(f"{hub.endpoint}/{shared}.git/info/lfs/objects/batch",
                  json={"operation": "upload", "objects": [{"oid": "0" * 64, "size": 1}], "ref": {"name": "main"}},
                  headers={"accept": LFS_JSON, "content-type": LFS_JSON})
    assert_error(r, 401, "Unauthorized")


def test_lfs_upload_with_wrong_content_is_not_stored(hub, api, seeded):
    data = b"real content " + uuid.uuid4().bytes * 40
    oid, entry = upload_action(hub, seeded, data)
    href = entry["actions"]["upload"]["href"]
    verify = entry["actions"]["verify"]["href"]
    before = state(api, seeded)

    # same length, different bytes
    wrong = bytes(len(data))
    r = HTTP.put(href, content=wrong)
    assert_error(r, 400, "IntegrityError")
    assert not lfs_stored(hub, oid)
    assert not lfs_stored(hub, hashlib.sha256(wrong).hexdigest())
    r = HTTP.post(verify, json={"oid": oid, "size": len(data)}, headers=_auth(hub))
    assert r.status_code == 404 and r.headers.get("x-error-code")
    # the batch still asks for the upload
    _, again = upload_action(hub, seeded, data)
    assert "upload" in again.get("actions", {})
    # and a commit cannot reference it
    r = post_commit(hub, seeded, ndjson(header(), lfs_op("w.bin", oid, len(data))))
    assert_error(r, 400, "BadRequest")
    assert state(api, seeded) == before
    assert not list((hub.data_dir / "tmp").glob("upload-*")), "a failed upload leaves no temp file behind"

    # the right bytes are accepted, verified, and then committable
    r = HTTP.put(again["actions"]["upload"]["href"], content=data)
    assert r.status_code == 200, r.text
    assert lfs_stored(hub, oid)
    r = HTTP.post(again["actions"]["verify"]["href"], json={"oid": oid, "size": len(data)}, headers=_auth(hub))
    assert r.status_code == 200
    _, done = upload_action(hub, seeded, data)
    assert "actions" not in done
    r = post_commit(hub, seeded, ndjson(header(), lfs_op("w.bin", oid, len(data))))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("kind", ["truncated", "too long", "empty"])
def test_lfs_upload_with_wrong_size_is_not_stored(hub, shared, kind):
    data = b"sized content " + uuid.uuid4().bytes * 40
    oid, entry = upload_action(hub, shared, data)
    body = {"truncated": data[: len(data) // 2], "too long": data + b"extra", "empty": b""}[kind]
    r = HTTP.put(entry["actions"]["upload"]["href"], content=body)
    assert_error(r, 400, "IntegrityError")
    assert not lfs_stored(hub, oid)
    _, again = upload_action(hub, shared, data)
    assert "upload" in again.get("actions", {})


def test_lfs_upload_forged_or_expired_signature(hub, shared):
    data = b"signed content " + uuid.uuid4().bytes * 10
    oid, entry = upload_action(hub, shared, data)
    href = entry["actions"]["upload"]["href"]
    q = parse_qs(urlsplit(href).query)
    expires, sig = q["expires"][0], q["sig"][0]

    forged = [
        with_query(href, sig="0" * 64),
        with_query(href, sig=sig[:-1] + ("0" if sig[-1] != "0" else "1")),
        with_query(href, expires=str(int(expires) + 1000)),
        with_query(href, sig=None),
        with_query(href, expires=None),
        with_query(href, expires="soon"),
        urlunsplit(urlsplit(href)._replace(query="")),
        # the signature binds the size and the oid of the URL
        href.replace(f"/{oid}/{len(data)}?", f"/{oid}/{len(data) + 1}?"),
    ]
    for url in forged:
        r = HTTP.put(url, content=data)
        assert_error(r, 401, "Unauthorized")
        assert not lfs_stored(hub, oid)

    # a genuinely signed URL whose time is up (signed with the hub's own key, white-box)
    secret = (hub.data_dir / "secret.key").read_text().strip().encode()
    ns, name = shared.split("/")
    with sqlite3.connect(f"file:{hub.data_dir / 'hub.sqlite'}?mode=ro", uri=True) as db:
        (repo_pk,) = db.execute("SELECT id FROM repos WHERE type='model' AND namespace=? AND name=?",
                                (ns, name)).fetchone()
    past = int(time.time()) - 60
    mac = hmac.new(secret, f"upload|{repo_pk}|{oid}|{len(data)}|{past}".encode(), hashlib.sha256).hexdigest()
    # the message proves the signature itself was accepted: only the time is wrong
    r = HTTP.put(with_query(href, expires=str(past), sig=mac), content=data)
    assert_error(r, 401, "Unauthorized")
    assert "expired" in r.headers["x-error-message"].lower()
    assert not lfs_stored(hub, oid)

    # the genuine URL still works
    r = HTTP.put(href, content=data)
    assert r.status_code == 200
    assert lfs_stored(hub, oid)


def test_lfsfile_size_mismatch(hub, api, seeded):
    data = b"lfs payload " + uuid.uuid4().bytes * 20
    oid, entry = upload_action(hub, seeded, data)
    assert HTTP.put(entry["actions"]["upload"]["href"], content=data).status_code == 200
    before = state(api, seeded)
    for size in (len(data) + 1, len(data) - 1, 0, "12"):
        r = post_commit(hub, seeded, ndjson(header(), lfs_op("w.bin", oid, size)))
        assert_error(r, 400, "BadRequest")
        assert state(api, seeded) == before
    # the right size (or none: a copy) is accepted
    r = post_commit(hub, seeded, ndjson(header(), lfs_op("w.bin", oid, len(data))))
    assert r.status_code == 200, r.text
    r = HTTP.get(f"{hub.endpoint}/{seeded}/resolve/main/w.bin")
    assert r.content == data


def test_lfsfile_from_another_repo_is_refused(hub, api, shared, repo_id):
    """Knowing an oid stored for another repo is not proof of possession."""
    other = repo_id
    data = b"owned by another repo " + uuid.uuid4().bytes
    oid, entry = upload_action(hub, other, data)
    assert HTTP.put(entry["actions"]["upload"]["href"], content=data).status_code == 200
    before = state(api, shared)
    r = post_commit(hub, shared, ndjson(header(), lfs_op("w.bin", oid, len(data))))
    assert_error(r, 400, "BadRequest")
    assert state(api, shared) == before


# -- ranged and HEAD reads ----------------------------------------------------------------------


@pytest.fixture
def ranged(api, repo_id):
    data = bytes(range(256)) * 4 + b"tail"
    api.create_commit(repo_id, [CommitOperationAdd("r.txt", data), CommitOperationAdd("r.bin", data)],
                      commit_message="ranged")
    return repo_id, data


@pytest.mark.parametrize("filename", ["r.txt", "r.bin"])
def test_ranges(hub, ranged, filename):
    repo_id, data = ranged
    size = len(data)
    url = f"{hub.endpoint}/{repo_id}/resolve/main/{filename}"

    def get(rng: str) -> httpx.Response:
        return HTTP.get(url, headers={"range": rng})

    cases = {
        "bytes=10-19": (10, 19),
        "bytes=0-0": (0, 0),
        f"bytes={size - 1}-{size - 1}": (size - 1, size - 1),
        "bytes=1000-500000": (1000, size - 1),  # end clamped
        "bytes=100-": (100, size - 1),
        "bytes=-16": (size - 16, size - 1),  # suffix
        f"bytes=-{size * 10}": (0, size - 1),  # suffix longer than the file
    }
    for rng, (a, b) in cases.items():
        r = get(rng)
        assert r.status_code == 206, (rng, r.status_code)
        assert r.content == data[a:b + 1], rng
        assert r.headers["content-range"] == f"bytes {a}-{b}/{size}", rng
        assert r.headers["content-length"] == str(b - a + 1), rng

    for rng in (f"bytes={size}-", f"bytes={size}-{size + 10}", "bytes=5000-6000", "bytes=-0"):
        r = get(rng)
        assert r.status_code == 416, (rng, r.status_code)
        assert r.headers["content-range"] == f"bytes */{size}", rng
        assert r.headers["x-error-code"] == "RangeNotSatisfiable"

    r = HTTP.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("filename", ["r.txt", "r.bin"])
def test_head_headers(hub, api, ranged, filename):
    repo_id, data = ranged
    sha = api.model_info(repo_id).sha
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/main/{filename}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["x-repo-commit"] == sha
    if filename.endswith(".bin"):  # LFS-tracked by the default .gitattributes
        expected = hashlib.sha256(data).hexdigest()
    else:
        expected = hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
    assert r.headers["etag"].strip('"') == expected
    # by commit sha too
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/{sha}/{filename}")
    assert r.status_code == 200 and r.headers["x-repo-commit"] == sha
    assert r.headers["content-length"] == str(len(data))


def test_head_errors(hub, api, ranged):
    repo_id, _ = ranged
    sha = api.model_info(repo_id).sha
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/main/missing.txt")
    assert r.status_code == 404
    assert r.headers["x-error-code"] == "EntryNotFound"
    assert r.headers["x-repo-commit"] == sha
    # a folder is not an entry one can download
    api.upload_file(path_or_fileobj=b"x", path_in_repo="sub/x.txt", repo_id=repo_id)
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/main/sub")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/no-such-branch/r.txt")
    assert r.status_code == 404
    assert r.headers["x-error-code"] == "RevisionNotFound"
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/{'0' * 40}/r.txt")
    assert r.status_code == 404
    assert r.headers["x-error-code"] == "RevisionNotFound"
    r = HTTP.head(f"{hub.endpoint}/admin/no-such-repo-{_uid()}/resolve/main/r.txt", headers=_auth(hub))
    assert r.status_code == 404
    assert r.headers["x-error-code"] == "RepoNotFound"


# -- unknown endpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/papers/search"),
    ("GET", "/api/models/admin/x/runtime"),
    ("POST", "/api/models/admin/x/duplicate"),
    ("DELETE", "/api/whatever/else"),
    ("PATCH", "/api/models/admin/x/settings"),
    ("GET", "/api/spaces/admin/x/events"),
])
def test_unknown_api_endpoints_are_501(hub, method, path):
    r = HTTP.request(method, f"{hub.endpoint}{path}", headers=_auth(hub))
    assert_error(r, 501, "NotImplemented")
