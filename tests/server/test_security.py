"""The standing adversarial suite of the embedded hub: each test replays an attack found in review.

Users: alice (write, owns private, gated and public repos), bob (read token), carol (write, unrelated),
and anonymous callers. Every test runs against a real ``hubfs serve`` process on loopback.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

MiB = 1 << 20


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Raw:
    """One HTTP/1.1 exchange on its own socket: every byte the server sent, until it closed."""

    status: int
    headers: dict[str, str]
    body: bytes


def raw_get(endpoint: str, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> Raw:
    """GET with ``Connection: close`` and read to EOF: bytes before or after the response show up."""
    host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no header block in {data[:200]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return Raw(int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, body)


def abandon_get(endpoint: str, path: str, headers: dict[str, str], read: int) -> None:
    """Start a download, read ``read`` bytes of it, and hang up."""
    host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"] + [f"{k}: {v}" for k, v in headers.items()]
    s = socket.create_connection((host, port), timeout=30)
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        got = 0
        while got < read:
            chunk = s.recv(min(1 << 16, read - got))
            if not chunk:
                break
            got += len(chunk)
    finally:
        s.close()


@pytest.fixture
def private_hub(tmp_hub):
    """A private hub with alice (write) and carol (write, unrelated), for tests that read its log."""

    def start(**env: str):
        hub = tmp_hub(env=env)
        tokens = {name: hub.add_user(name) for name in ("alice", "carol")}
        tokens["bob_read"] = hub.add_user("bob", role="read")
        return hub, tokens

    return start


# -- 1. zero-copy sends never cross connections ------------------------------------------------------


@pytest.mark.parametrize("no_sendfile", ["", "1"], ids=["sendfile", "streamed"])
def test_abandoned_private_downloads_never_leak_into_other_connections(private_hub, no_sendfile) -> None:
    hub, tokens = private_hub(HUBFS_NO_SENDFILE=no_sendfile)
    alice = HfApi(endpoint=hub.endpoint, token=tokens["alice"])
    alice.create_repo("alice/secret", private=True)
    alice.create_repo("alice/open")
    secret = os.urandom(64 * MiB)
    public = os.urandom(2000)
    alice.upload_file(path_or_fileobj=secret, path_in_repo="w.bin", repo_id="alice/secret")
    alice.upload_file(path_or_fileobj=public, path_in_repo="small.bin", repo_id="alice/open")
    # A public file big enough for the zero-copy path too: both kinds of response must stay exact.
    public_big = os.urandom(2 * MiB + 3)
    alice.upload_file(path_or_fileobj=public_big, path_in_repo="big.bin", repo_id="alice/open")

    stop = time.monotonic() + 8
    bad: list[str] = []
    counts = {"public": 0, "abandoned": 0}

    def leaker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            abandon_get(hub.endpoint, "/alice/secret/resolve/main/w.bin",
                        {"Authorization": f"Bearer {tokens['alice']}"}, rng.randrange(64 << 10, 8 * MiB))
            counts["abandoned"] += 1

    def reader(which: int) -> None:
        path, expected = [("/alice/open/resolve/main/small.bin", public),
                          ("/alice/open/resolve/main/big.bin", public_big)][which % 2]
        while time.monotonic() < stop:
            try:
                got = raw_get(hub.endpoint, path)
            except (OSError, AssertionError, ValueError) as exc:
                bad.append(f"{path}: {exc!r}")
                continue
            counts["public"] += 1
            if got.status != 200 or got.body != expected:
                bad.append(f"{path}: status {got.status}, {len(got.body)} bytes, expected {len(expected)}")

    threads = [threading.Thread(target=leaker, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts["abandoned"] > 20 and counts["public"] > 100, counts
    assert not bad, f"{len(bad)} of {counts['public']} public responses were wrong: {bad[:5]}"
    log = hub.log_path.read_text(errors="replace")
    assert "Bad file descriptor" not in log and "EBADF" not in log
    assert "Traceback" not in log, log[-3000:]
    assert hashlib.sha256(raw_get(hub.endpoint, "/alice/secret/resolve/main/w.bin",
                                  {"Authorization": f"Bearer {tokens['alice']}"}).body).digest() == \
        hashlib.sha256(secret).digest()


def _multipart_parts(raw: Raw) -> list[tuple[int, int, bytes]]:
    """(start, end, bytes) of each part of a ``multipart/byteranges`` answer, checked for shape."""
    boundary = raw.headers["content-type"].split("boundary=", 1)[1].encode()
    out = []
    for piece in raw.body.split(b"--" + boundary)[1:-1]:
        head, _, data = piece.partition(b"\r\n\r\n")
        rng = [ln for ln in head.decode("latin-1").split("\r\n") if ln.lower().startswith("content-range:")][0]
        start, end = map(int, rng.split("bytes ", 1)[1].split("/")[0].split("-"))
        assert data.endswith(b"\r\n"), "a part ends with CRLF before the next boundary"
        out.append((start, end, data[:-2]))
    return out


@pytest.mark.parametrize("no_sendfile", ["", "1"], ids=["sendfile", "streamed"])
def test_multi_range_answers_stay_exact_beside_abandoned_private_ones(private_hub, no_sendfile) -> None:
    """Multipart answers send each big part zero-copy: several sends per response, so check that abandoned
    multi-range downloads of a private file never leak into other connections' multipart bodies."""
    hub, tokens = private_hub(HUBFS_NO_SENDFILE=no_sendfile)
    alice = HfApi(endpoint=hub.endpoint, token=tokens["alice"])
    alice.create_repo("alice/secret", private=True)
    alice.create_repo("alice/open")
    secret, public = os.urandom(24 * MiB), os.urandom(12 * MiB + 5)
    alice.upload_file(path_or_fileobj=secret, path_in_repo="w.bin", repo_id="alice/secret")
    alice.upload_file(path_or_fileobj=public, path_in_repo="w.bin", repo_id="alice/open")
    stop = time.monotonic() + 6
    bad: list[str] = []
    counts = {"public": 0, "abandoned": 0}

    def ranges_of(rng: random.Random, size: int) -> list[tuple[int, int]]:
        starts = sorted(rng.sample(range(size - 3 * MiB), 3))
        return [(a, a + rng.randrange(1, 3 * MiB)) for a in starts]

    def leaker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            wanted = ranges_of(rng, len(secret))
            spec = ",".join(f"{a}-{b}" for a, b in wanted)
            body = sum(b - a + 1 for a, b in wanted)  # hang up before the end: never wait on a finished answer
            abandon_get(hub.endpoint, "/alice/secret/resolve/main/w.bin",
                        {"Authorization": f"Bearer {tokens['alice']}", "Range": f"bytes={spec}"},
                        rng.randrange(1, min(4 * MiB, body)))
            counts["abandoned"] += 1

    def reader(seed: int) -> None:
        rng = random.Random(1000 + seed)
        while time.monotonic() < stop:
            wanted = ranges_of(rng, len(public))
            spec = ",".join(f"{a}-{b}" for a, b in wanted)
            try:
                got = raw_get(hub.endpoint, "/alice/open/resolve/main/w.bin", {"Range": f"bytes={spec}"})
                parts = _multipart_parts(got)
            except (OSError, AssertionError, ValueError, IndexError, KeyError) as exc:
                bad.append(f"{spec}: {exc!r}")
                continue
            counts["public"] += 1
            expected = [(a, b, public[a:b + 1]) for a, b in wanted]
            if got.status != 206 or parts != expected:
                bad.append(f"{spec}: status {got.status}, parts {[(a, b, len(d)) for a, b, d in parts]}")

    threads = [threading.Thread(target=leaker, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts["abandoned"] > 10 and counts["public"] > 20, counts
    assert not bad, f"{len(bad)} of {counts['public']} multipart responses were wrong: {bad[:5]}"
    log = hub.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


# -- 4. stalled readers hold no threads and are cut after the send timeout -----------------------------


@pytest.mark.parametrize("no_sendfile", ["", "1"], ids=["sendfile", "streamed"])
def test_stalled_downloads_neither_starve_the_hub_nor_stay_open(tmp_hub, no_sendfile) -> None:
    hub = tmp_hub("--send-timeout", "3", env={"HUBFS_NO_SENDFILE": no_sendfile})
    admin = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    admin.create_repo("admin/public")
    big = os.urandom(64 * MiB)
    admin.upload_file(path_or_fileobj=big, path_in_repo="w.bin", repo_id="admin/public")
    host, port = urlsplit(hub.endpoint).hostname, urlsplit(hub.endpoint).port
    stalled = []
    for _ in range(45):
        s = socket.create_connection((host, port))
        s.sendall(f"GET /admin/public/resolve/main/w.bin HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        stalled.append(s)
    try:
        time.sleep(1)
        with httpx.Client(timeout=10) as client:
            started = time.monotonic()
            for _ in range(5):
                assert client.get(f"{hub.endpoint}/api/models/admin/public").status_code == 200
                r = client.post(f"{hub.endpoint}/api/models/admin/public/paths-info/main", data={"paths": ["w.bin"]})
                assert r.status_code == 200
            assert time.monotonic() - started < 5, "API calls wait behind stalled downloads"
        time.sleep(4)  # past the send timeout: every stalled connection must be closed by the hub
        for s in stalled:
            s.settimeout(10)
            total = 0
            try:
                while chunk := s.recv(1 << 20):
                    total += len(chunk)
            except ConnectionResetError:
                pass
            assert total < len(big), "a stalled download was never cut"
    finally:
        for s in stalled:
            s.close()
    log = hub.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


# -- 2. a repo references only LFS content uploaded to it ----------------------------------------------

LFS_JSON = {"accept": "application/vnd.git-lfs+json", "content-type": "application/vnd.git-lfs+json"}


def _pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _batch(hub, repo_id: str, token: str | None, operation: str, objects: list[dict], transfers=("basic",)) -> dict:
    headers = {**LFS_JSON, **({"authorization": f"Bearer {token}"} if token else {})}
    r = httpx.post(f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch", headers=headers, timeout=30,
                   json={"operation": operation, "transfers": list(transfers), "objects": objects,
                         "ref": {"name": "refs/heads/main"}})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def victims(hub):
    """alice's private and gated repos, each with a 3 MiB LFS file, and carol's own public repo."""
    suffix = _uid()
    alice, carol = f"alice{suffix}", f"carol{suffix}"
    tokens = {"alice": hub.add_user(alice), "carol": hub.add_user(carol)}
    api = HfApi(endpoint=hub.endpoint, token=tokens["alice"])
    files = {}
    for kind in ("private", "gated"):
        rid = f"{alice}/{kind}"
        api.create_repo(rid, private=kind == "private")
        data = os.urandom(3 * MiB)
        api.upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id=rid)
        files[kind] = (rid, data, hashlib.sha256(data).hexdigest())
    api.update_repo_settings(f"{alice}/gated", gated="manual")
    HfApi(endpoint=hub.endpoint, token=tokens["carol"]).create_repo(f"{carol}/loot")
    return {"alice": alice, "carol": carol, "tokens": tokens, "files": files, "loot": f"{carol}/loot"}


def test_gated_oid_from_the_public_listing_is_only_a_name(hub, victims) -> None:
    rid, data, oid = victims["files"]["gated"]
    listed = httpx.get(f"{hub.endpoint}/api/models/{rid}/tree/main", timeout=30).json()
    entry = next(e for e in listed if e["path"] == "w.safetensors")
    assert entry["lfs"]["oid"] == oid  # the Hub shows it too; knowing it must not be enough
    carol = HfApi(endpoint=hub.endpoint, token=victims["tokens"]["carol"])
    pointer = _pointer(oid, len(data))
    carol.create_commit(victims["loot"], [CommitOperationAdd("x.txt", pointer)], commit_message="copy a pointer")
    for token in (None, victims["tokens"]["carol"]):
        got = raw_get(hub.endpoint, f"/{victims['loot']}/resolve/main/x.txt",
                      {"Authorization": f"Bearer {token}"} if token else {})
        assert got.status == 200 and got.body == pointer, "a plain file is served as its own bytes"
    # The official client's LFS path for the same oid: refused, nothing committed.
    r = httpx.post(f"{hub.endpoint}/api/models/{victims['loot']}/commit/main", timeout=30,
                   headers={"authorization": f"Bearer {victims['tokens']['carol']}",
                            "content-type": "application/x-ndjson"},
                   content=b'{"key":"header","value":{"summary":"steal"}}\n'
                           + f'{{"key":"lfsFile","value":{{"path":"w.bin","algo":"sha256","oid":"{oid}",'
                             f'"size":{len(data)}}}}}\n'.encode())
    assert r.status_code == 400, r.text
    assert "w.bin" not in [s.rfilename for s in carol.model_info(victims["loot"]).siblings or []]


@pytest.mark.parametrize("kind", ["private", "gated"])
def test_an_empty_upload_proves_nothing(hub, victims, kind) -> None:
    _, data, oid = victims["files"][kind]
    carol = victims["tokens"]["carol"]
    ask = _batch(hub, victims["loot"], carol, "upload", [{"oid": oid, "size": len(data)}])["objects"][0]
    assert "upload" in ask.get("actions", {}), "an object stored for another repo is not 'already there'"
    put = httpx.put(ask["actions"]["upload"]["href"], content=b"", timeout=30)
    assert put.status_code == 400, put.text
    # Same answer as for an (oid, size) that exists nowhere: no existence oracle.
    ghost_oid = hashlib.sha256(b"nothing like this is stored " + _uid().encode()).hexdigest()
    ghost = _batch(hub, victims["loot"], carol, "upload", [{"oid": ghost_oid, "size": len(data)}])["objects"][0]
    put_ghost = httpx.put(ghost["actions"]["upload"]["href"], content=b"", timeout=30)
    assert (put_ghost.status_code, put_ghost.headers.get("x-error-code")) == \
        (put.status_code, put.headers.get("x-error-code"))
    verify = httpx.post(ask["actions"]["verify"]["href"], json={"oid": oid, "size": len(data)}, timeout=30)
    assert verify.status_code == 404
    down = _batch(hub, victims["loot"], carol, "download", [{"oid": oid, "size": len(data)}])["objects"][0]
    assert down.get("error", {}).get("code") == 404 and "actions" not in down
    r = httpx.post(f"{hub.endpoint}/api/models/{victims['loot']}/commit/main", timeout=30,
                   headers={"authorization": f"Bearer {carol}", "content-type": "application/x-ndjson"},
                   content=b'{"key":"header","value":{"summary":"steal"}}\n'
                           + f'{{"key":"lfsFile","value":{{"path":"{kind}.bin","oid":"{oid}","size":{len(data)}}}}}\n'
                           .encode())
    assert r.status_code == 400, r.text


def test_multipart_completion_of_a_stored_object_needs_its_bytes(tmp_hub) -> None:
    hub = tmp_hub("--multipart-chunk-size", "1MiB")
    tokens = {name: hub.add_user(name) for name in ("alice", "carol")}
    HfApi(endpoint=hub.endpoint, token=tokens["alice"]).create_repo("alice/secret", private=True)
    data = os.urandom(3 * MiB)
    oid = hashlib.sha256(data).hexdigest()
    HfApi(endpoint=hub.endpoint, token=tokens["alice"]).upload_file(
        path_or_fileobj=data, path_in_repo="w.bin", repo_id="alice/secret")
    HfApi(endpoint=hub.endpoint, token=tokens["carol"]).create_repo("carol/loot")
    ask = _batch(hub, "carol/loot", tokens["carol"], "upload", [{"oid": oid, "size": len(data)}],
                 transfers=("basic", "multipart"))["objects"][0]
    header = ask["actions"]["upload"]["header"]
    parts = [k for k in header if k.isdigit()]
    assert len(parts) == 3
    for n in parts:  # garbage parts of the right sizes
        assert httpx.put(header[n], content=b"\0" * MiB, timeout=30).status_code == 200
    done = httpx.post(ask["actions"]["upload"]["href"], timeout=30,
                      json={"oid": oid, "parts": [{"partNumber": int(n), "etag": "x"} for n in parts]})
    assert done.status_code == 400, done.text
    down = _batch(hub, "carol/loot", tokens["carol"], "download", [{"oid": oid, "size": len(data)}])["objects"][0]
    assert down.get("error", {}).get("code") == 404
    # The owner's object is untouched by the failed completion.
    got = raw_get(hub.endpoint, "/alice/secret/resolve/main/w.bin", {"Authorization": f"Bearer {tokens['alice']}"})
    assert got.body == data


def test_real_upload_of_known_bytes_links_them(hub, victims) -> None:
    """Proof of possession still works: uploading the very bytes makes them the uploader's too."""
    rid, data, oid = victims["files"]["private"]
    carol = HfApi(endpoint=hub.endpoint, token=victims["tokens"]["carol"])
    carol.upload_file(path_or_fileobj=data, path_in_repo="mine.bin", repo_id=victims["loot"])
    got = raw_get(hub.endpoint, f"/{victims['loot']}/resolve/main/mine.bin")
    assert got.status == 200 and got.body == data


def test_git_push_of_a_foreign_pointer_is_refused(hub, victims, tmp_path) -> None:
    import subprocess

    _, data, oid = victims["files"]["gated"]
    work = tmp_path / "w"
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_PUSH": "1"}
    host = hub.endpoint.replace("http://", f"http://{victims['carol']}:{victims['tokens']['carol']}@")
    subprocess.run(["git", "clone", "-q", f"{host}/{victims['loot']}", str(work)], check=True, env=env)
    (work / "stolen.bin").write_bytes(_pointer(oid, len(data)))
    git = ["git", "-C", str(work), "-c", "user.name=c", "-c", "user.email=c@x"]
    subprocess.run([*git, "add", "stolen.bin"], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "steal"], check=True, env=env)
    push = subprocess.run([*git, "push", "origin", "main"], capture_output=True, text=True, env=env)
    assert push.returncode != 0 and "was not uploaded" in push.stderr, push.stderr


# -- 5. LFS object routes do not tell private repos from missing ones -----------------------------------


def test_lfs_object_routes_answer_the_same_for_private_and_missing_repos(hub, victims) -> None:
    rid, data, oid = victims["files"]["private"]
    missing = f"{victims['alice']}/no-such-repo"
    for token in (None, victims["tokens"]["carol"], "garbage"):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        for method, tail in (("GET", f"/{oid}"), ("GET", f"/{oid}?expires=99999999999&sig={'0' * 64}"),
                             ("PUT", f"/{oid}/{len(data)}"), ("POST", f"/{oid}/{len(data)}/verify"),
                             ("PUT", f"/{oid}/{len(data)}/parts/{uuid.uuid4()}/1?expires=1&sig=x"),
                             ("POST", f"/{oid}/{len(data)}/parts/{uuid.uuid4()}")):
            answers = []
            for repo in (rid, missing):
                r = httpx.request(method, f"{hub.endpoint}/{repo}.git/info/lfs/objects{tail}", headers=headers,
                                  content=b"{}" if method != "GET" else None, timeout=30)
                answers.append((r.status_code, r.headers.get("x-error-code"), r.text.replace(repo, "REPO")))
            assert answers[0] == answers[1], (token, method, tail, answers)
            assert answers[0][0] in (400, 401, 404), answers[0]


# -- the access matrix: every route, every kind of caller ----------------------------------------------


def _revoked_token(hub, user: str) -> str:
    token = hub.cli("token", "create", user, "--name", "soon-revoked")
    listing = hub.cli("token", "list", user)
    token_id = next(line.split()[0] for line in listing.splitlines() if "soon-revoked" in line)
    hub.cli("token", "revoke", token_id)
    return token


def test_private_repos_are_invisible_on_every_route(hub, victims) -> None:
    from routes import ALIASES, ROUTES, concrete_path, route_values

    from hubfs.client.api import HubClient
    from hubfs.client.commit import Add

    private, _, _ = victims["files"]["private"]
    missing = f"{victims['alice']}/never-existed"
    canonical = f"private-{_uid()}"  # a private canonical repo (no namespace), on the alias routes
    with HubClient(hub.endpoint, hub.admin_token) as admin:
        admin.create_repo("model", canonical, private=True)
        admin.commit("model", canonical, [Add("w.txt", b"secret")], "seed")
    callers = {"anonymous": None, "read token": hub.add_user(f"bob{_uid()}", role="read"),
               "unrelated write token": victims["tokens"]["carol"], "garbage token": "hf_" + "x" * 34,
               "revoked token": _revoked_token(hub, victims["carol"])}
    checked = 0
    with httpx.Client(timeout=30) as client:
        for route in ROUTES + ALIASES:
            groups = route.regex.groupindex  # repo routes: a name, namespaced or canonical (not /static/)
            if ("name" not in groups and "name_git" not in groups) or route.regex.pattern.startswith("^/static/"):
                continue
            spelled_canonical = "ns" not in groups or route in ALIASES
            pair = (canonical, f"never-{_uid()}") if spelled_canonical else (private, missing)
            for method in sorted(route.methods):
                for who, token in callers.items():
                    answers = []
                    for repo in pair:
                        path = concrete_path(route, route_values(repo, branch="b", upload_id=str(uuid.UUID(int=1))))
                        if path.endswith("/info/refs"):
                            path += "?service=git-upload-pack"
                        r = client.request(method, hub.endpoint + path, content=b"{}" if method != "GET" else None,
                                           headers={"content-type": "application/json",
                                                    **({"authorization": f"Bearer {token}"} if token else {})})
                        answers.append((r.status_code, r.headers.get("x-error-code"),
                                        r.text.replace(repo, "REPO")))
                    assert answers[0] == answers[1], (who, method, route.regex.pattern, answers)
                    if who in ("garbage token", "revoked token"):
                        assert answers[0][0] == 401, (who, method, route.regex.pattern, answers[0])
                    checked += 1
    assert checked > 150


# -- 7. a commit line is bounded by the regular-file limit -----------------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_huge_inline_commit_line_is_refused_without_buffering_it(tmp_hub) -> None:
    hub = tmp_hub()
    HfApi(endpoint=hub.endpoint, token=hub.admin_token).create_repo("admin/inline")
    before = _rss_kib(hub.proc.pid)

    def body():
        yield b'{"key":"header","value":{"summary":"big"}}\n{"key":"file","value":{"path":"x.bin","content":"'
        for _ in range(200):  # 200 MiB of base64 that never ends its line
            yield b"A" * MiB

    r = httpx.post(f"{hub.endpoint}/api/models/admin/inline/commit/main", content=body(), timeout=60,
                   headers={"authorization": f"Bearer {hub.admin_token}", "content-type": "application/x-ndjson"})
    assert r.status_code == 413, r.text
    assert "LFS" in r.headers["x-error-message"]
    assert _rss_kib(hub.proc.pid) - before < 100 * 1024, "the server held the line in RAM"
    # A file just under the limit still travels inline.
    ok = HfApi(endpoint=hub.endpoint, token=hub.admin_token).upload_file(
        path_or_fileobj=b"x" * (9 * MiB), path_in_repo="ok.txt", repo_id="admin/inline")
    assert ok.oid
