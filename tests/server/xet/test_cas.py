"""The Xet CAS over HTTP, driven by hand: xorbs and shards built with ``hubfs.server.xet.format``, sent to a
real ``hubfs serve`` process, then checked through the commit API, ``resolve``, reconstructions, signed xorb
URLs, dedup answers, token rules, crash recovery and the access log.

Wire contract: ``shared/anchors/xet.md`` (tokens 1.2, CAS routes 1.3, xorb 2.3, shard 2.4, downloads 3,
risks 6).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import lz4.frame  # type: ignore[import-untyped]
import pytest
from huggingface_hub import HfApi

from hubfs.server.xet.format import (
    BOOKEND,
    HASH_LEN,
    MAX_CHUNK_BYTES,
    MAX_XORB_BYTES,
    MAX_XORB_CHUNKS,
    ShardFile,
    Term,
    chunk_hash,
    encode_upload_shard,
    file_hash,
    hash_to_str,
    hmac_hash,
    parse_shard,
    verification_hash,
    xorb_hash,
)
from hubfs.server.xet.routes import MAX_SHARD_BODY, MAX_XORB_BODY

sys.path.insert(0, str(Path(__file__).parent))
from xet_builders import (
    HTTP,
    CasClient,
    XFile,
    Xorb,
    bearer,
    chunk_header,
    commit_lfs,
    index_rows,
    new_xorb,
    rebuild_v1,
    rebuild_v2,
    shard_files,
    token_route,
    whole_file,
    xorb_files,
    xorb_stored,
)


def _rid(owner: str, tag: str = "x") -> str:
    return f"{owner}/{tag}-{uuid.uuid4().hex[:10]}"


def _new_repo(endpoint: str, token: str, owner: str, private: bool = False) -> str:
    rid = _rid(owner)
    HfApi(endpoint=endpoint, token=token).create_repo(rid, private=private)
    return rid


def _resolve(endpoint: str, rid: str, path: str, token: str | None, method: str = "GET"):
    return HTTP.request(method, f"{endpoint}/{rid}/resolve/main/{path}", headers=bearer(token))


def _ndjson_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ====================================================================================== 1. happy path


def test_upload_by_hand_commit_and_resolve(hub) -> None:
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    x = new_xorb(5)
    assert not xorb_stored(hub.data_dir, x.hash)
    r = cas.post_xorb(x.name, x.body)
    assert r.status_code == 200 and r.json() == {"was_inserted": True}, r.text
    assert xorb_stored(hub.data_dir, x.hash) and index_rows(hub.data_dir, "xorbs", x.hash) == 1
    r = cas.post_xorb(x.name, x.body)
    assert r.status_code == 200 and r.json() == {"was_inserted": False}, "a repeat is not an error"

    f = whole_file(x)
    before = commit_lfs(hub.endpoint, rid, hub.admin_token, "w.bin", f.sha256, f.size)
    assert before.status_code == 400, "an oid no shard has linked yet cannot be committed"
    shards = shard_files(hub.data_dir)
    r = cas.post_shard(f.shard())
    assert r.status_code == 200 and r.json() == {"result": 1}, r.text
    assert len(shard_files(hub.data_dir) - shards) == 1, "the accepted shard is kept"

    r = commit_lfs(hub.endpoint, rid, hub.admin_token, "w.bin", f.sha256, f.size)
    assert r.status_code == 200, r.text
    got = _resolve(hub.endpoint, rid, "w.bin", hub.admin_token)
    assert got.status_code == 200 and got.content == f.content
    assert got.headers["x-xet-hash"] == f.name
    assert got.headers["etag"] == f'"{f.sha256}"' and got.headers["x-linked-size"] == str(f.size)
    link = got.headers["link"]
    m = re.fullmatch(r'<([^>]+)>; rel="xet-auth"', link)
    assert m and "/api/models/" + rid + "/xet-read-token/" in m.group(1), link
    head = _resolve(hub.endpoint, rid, "w.bin", hub.admin_token, "HEAD")
    assert head.headers["x-xet-hash"] == f.name and head.headers["link"] == link
    read = HTTP.get(m.group(1), headers=bearer(hub.admin_token))
    assert read.status_code == 200 and read.json()["accessToken"] and read.headers["x-xet-access-token"]
    tree = HTTP.get(f"{hub.endpoint}/api/models/{rid}/tree/main", headers=bearer(hub.admin_token)).json()
    entry = next(e for e in tree if e["path"] == "w.bin")
    assert entry["xetHash"] == f.name and entry["lfs"]["oid"] == f.sha256


def test_v2_shards_stream_ndjson_ending_in_result(hub) -> None:
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    x = new_xorb(3)
    cas.upload(x)
    f = whole_file(x)
    r = cas.post_shard(f.shard(), version=2)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson"), r.text
    lines = _ndjson_lines(r.text)
    assert lines[-1] == {"type": "result"}, lines
    assert {line["type"] for line in lines} <= {"validating", "committing", "result"}, lines
    assert commit_lfs(hub.endpoint, rid, hub.admin_token, "v2.bin", f.sha256, f.size).status_code == 200
    assert _resolve(hub.endpoint, rid, "v2.bin", hub.admin_token).content == f.content


@pytest.fixture(scope="module")
def published(hub) -> dict:
    """Admin's repo with one committed Xet file of three terms: X[0,3) Y[0,2) X[4,6)."""
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin", private=False)
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    x, y = new_xorb(6), new_xorb(3)
    f = XFile(((x, 0, 3), (y, 0, 2), (x, 4, 6)))
    cas.upload_file(f)
    assert commit_lfs(hub.endpoint, rid, hub.admin_token, "three.bin", f.sha256, f.size).status_code == 200
    return {"rid": rid, "cas": cas, "x": x, "y": y, "f": f}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("rng", [None, "full"])
def test_reconstruction_of_the_whole_file(published, version: int, rng: str | None) -> None:
    f, x, y, cas = published["f"], published["x"], published["y"], published["cas"]
    r = cas.reconstruction(f.name, None if rng is None else f"bytes=0-{f.size - 1}", version)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["offset_into_first_range"] == 0
    assert [(t["hash"], t["range"]["start"], t["range"]["end"], t["unpacked_length"]) for t in rec["terms"]] == [
        (x.name, 0, 3, sum(x.lengths[0:3])), (y.name, 0, 2, sum(y.lengths[0:2])), (x.name, 4, 6, sum(x.lengths[4:6]))]
    if version == 1:
        assert set(rec["fetch_info"]) == {x.name, y.name} and "xorbs" not in rec
        spans = sorted((fi["range"]["start"], fi["range"]["end"], fi["url_range"]["start"], fi["url_range"]["end"])
                       for fi in rec["fetch_info"][x.name])
        assert spans == [(0, 3, 0, x.offsets[3] - 1), (4, 6, x.offsets[4], x.offsets[6] - 1)]
        assert rebuild_v1(rec) == f.content
    else:
        assert set(rec["xorbs"]) == {x.name, y.name} and "fetch_info" not in rec
        (entry,) = rec["xorbs"][x.name]
        assert [(g["chunks"]["start"], g["chunks"]["end"], g["bytes"]["start"], g["bytes"]["end"])
                for g in entry["ranges"]] == [(0, 3, 0, x.offsets[3] - 1), (4, 6, x.offsets[4], x.offsets[6] - 1)]
        assert rebuild_v2(rec) == f.content  # x's two ranges come back as multipart/byteranges


def _middle_ranges(f: XFile) -> dict[str, tuple[int, int]]:
    x, _y = f.terms[0][0], f.terms[1][0]
    c0, c1, c2 = x.lengths[0], x.lengths[1], x.lengths[2]
    t1 = c0 + c1 + c2  # where y's first chunk starts in the file
    return {
        "inside first chunk": (10, c0 - 20),
        "first byte": (0, 0),
        "last byte": (f.size - 1, f.size - 1),
        "chunk boundaries": (c0, c0 + c1 - 1),
        "across a term boundary": (c0 + 100, t1 + 50),
        "across every term": (c0 + 7, f.size - 9),
        "one byte on each side of a boundary": (t1 - 1, t1),
    }


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", ["inside first chunk", "first byte", "last byte", "chunk boundaries",
                                  "across a term boundary", "across every term", "one byte on each side of a boundary"])
def test_reconstruction_of_a_middle_range(published, version: int, case: str) -> None:
    f, cas = published["f"], published["cas"]
    a, b = _middle_ranges(f)[case]
    r = cas.reconstruction(f.name, f"bytes={a}-{b}", version)
    assert r.status_code == 200, r.text
    rec = r.json()
    data = rebuild_v1(rec) if version == 1 else rebuild_v2(rec)
    off = rec["offset_into_first_range"]
    assert data[off:off + (b - a + 1)] == f.content[a:b + 1]
    # trimmed to whole chunks: the offset lies in the first chunk, the end in the last one
    first = rec["terms"][0]
    xorb = published["x"] if first["hash"] == published["x"].name else published["y"]
    assert 0 <= off < xorb.lengths[first["range"]["start"]]
    last = rec["terms"][-1]
    xorb = published["x"] if last["hash"] == published["x"].name else published["y"]
    assert off + (b - a + 1) > len(data) - xorb.lengths[last["range"]["end"] - 1]


@pytest.mark.parametrize("version", [1, 2])
def test_reconstruction_open_and_suffix_ranges(published, version: int) -> None:
    f, cas = published["f"], published["cas"]
    for header, (a, b) in ((f"bytes={f.size - 5000}-", (f.size - 5000, f.size - 1)),
                           ("bytes=-1234", (f.size - 1234, f.size - 1)),
                           (f"bytes=100-{f.size + 10_000}", (100, f.size - 1))):
        rec = cas.reconstruction(f.name, header, version).json()
        data = rebuild_v1(rec) if version == 1 else rebuild_v2(rec)
        off = rec["offset_into_first_range"]
        assert data[off:off + (b - a + 1)] == f.content[a:b + 1], header
        assert len(data) - off == b - a + 1, f"{header}: a range that runs to the end ends with the file"


@pytest.mark.parametrize("version", [1, 2])
def test_reconstruction_past_the_end_is_416(published, version: int) -> None:
    f, cas = published["f"], published["cas"]
    for header in (f"bytes={f.size}-", f"bytes={f.size}-{f.size + 10}", f"bytes={f.size + 1000}-"):
        r = cas.reconstruction(f.name, header, version)
        assert r.status_code == 416, (header, r.status_code, r.text)


def _v1_middle(published) -> tuple[dict, dict]:
    """A v1 reconstruction starting in x's chunk 1, and its fetch_info entry for x."""
    f, x, cas = published["f"], published["x"], published["cas"]
    rec = cas.reconstruction(f.name, f"bytes={x.lengths[0] + 5}-{x.lengths[0] + x.lengths[1] + 5}").json()
    (fi,) = rec["fetch_info"][x.name]
    assert fi["range"] == {"start": 1, "end": 3} and fi["url_range"]["start"] == x.offsets[1] > 0
    return rec, fi


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(changes)
    return parts._replace(query=urlencode(q, safe=",")).geturl()


def test_signed_xorb_url_serves_only_its_ranges(published) -> None:
    x = published["x"]
    _, fi = _v1_middle(published)
    url, a, b = fi["url"], fi["url_range"]["start"], fi["url_range"]["end"]
    assert "sig=" in url and "expires=" in url
    ok = HTTP.get(url, headers={"Range": f"bytes={a}-{b}"})  # no Authorization: the URL is the grant
    assert ok.status_code == 206 and ok.content == x.body[a:b + 1]
    inner = HTTP.get(url, headers={"Range": f"bytes={a + 8}-{b - 8}"})
    assert inner.status_code == 206 and inner.content == x.body[a + 8:b - 7], "a sub-range of a signed one is fine"
    for outside in (f"bytes={a}-{b + 1}", f"bytes={a - 1}-{b}", f"bytes=0-{a - 1}", f"bytes={b + 1}-",
                    "bytes=-10", f"bytes={a}-{b},{b + 1}-{b + 10}"):
        r = HTTP.get(url, headers={"Range": outside})
        assert r.status_code == 403, (outside, r.status_code)
        assert x.body[b + 1:b + 200] not in r.content
    whole = HTTP.get(url)
    assert whole.status_code == 403, "no Range asks for the whole xorb, which this URL does not grant"


def test_signed_xorb_url_tampering_is_401(published) -> None:
    _, fi = _v1_middle(published)
    url, a, b = fi["url"], fi["url_range"]["start"], fi["url_range"]["end"]
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    flipped = q["sig"][:-1] + ("0" if q["sig"][-1] != "0" else "1")
    rng = {"Range": f"bytes={a}-{b}"}
    for bad in (_with_query(url, sig=flipped), _with_query(url, sig="0" * len(q["sig"])),
                _with_query(url, r=f"0-{b}"), _with_query(url, expires=str(int(q["expires"]) + 3600)),
                url.split("&sig=")[0]):
        r = HTTP.get(bad, headers={"Range": f"bytes=0-{b}"} if "r=0-" in bad else rng)
        assert r.status_code == 401, (bad, r.status_code, r.text)
    assert HTTP.get(url, headers=rng).status_code == 206


def test_signed_url_for_a_whole_xorb_serves_it_without_range(hub) -> None:
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    f = whole_file(new_xorb(4))
    cas.upload_file(f)
    rec = cas.reconstruction(f.name).json()
    (fi,) = rec["fetch_info"][f.terms[0][0].name]
    r = HTTP.get(fi["url"])
    assert r.status_code == 200 and r.content == f.terms[0][0].body, "exactly the chunk stream, no index trailer"


def test_compressed_xorbs_are_accepted_and_served(hub) -> None:
    """Schemes 1 (LZ4 frame) and 2 (BG4 + LZ4) are decoded on upload; downloads serve the chunks raw."""
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    text = [(b"hello xet %d " % i) * 900 for i in range(3)]
    floats = struct.pack("<2000f", *[i * 0.5 for i in range(2000)])
    body = b""
    for c in text:
        z = lz4.frame.compress(c)
        body += chunk_header(len(z), len(c), scheme=1) + z
    planes = b"".join(floats[k::4] for k in range(4))
    z = lz4.frame.compress(planes)
    body += chunk_header(len(z), len(floats), scheme=2) + z
    x = Xorb(tuple(text + [floats]))
    assert len(body) < len(x.body)
    r = cas.post_xorb(x.name, body)
    assert r.status_code == 200 and r.json() == {"was_inserted": True}, r.text
    f = whole_file(x)
    assert cas.post_shard(f.shard()).status_code == 200
    assert rebuild_v2(cas.reconstruction(f.name, version=2).json()) == f.content


def test_reconstruction_of_repeated_and_overlapping_terms(hub) -> None:
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    x, y = new_xorb(6), new_xorb(2)
    f = XFile(((x, 0, 3), (x, 1, 4), (y, 0, 2), (x, 0, 2), (x, 5, 6)))
    cas.upload_file(f)
    for version in (1, 2):
        rec = cas.reconstruction(f.name, version=version).json()
        assert len(rec["terms"]) == 5
        assert (rebuild_v1(rec) if version == 1 else rebuild_v2(rec)) == f.content
        for a, b in ((x.lengths[0] + 1, f.size - 2), (sum(x.lengths[0:3]) + 3, sum(x.lengths[0:3]) + 4)):
            rec = cas.reconstruction(f.name, f"bytes={a}-{b}", version).json()
            data = rebuild_v1(rec) if version == 1 else rebuild_v2(rec)
            off = rec["offset_into_first_range"]
            assert data[off:off + b - a + 1] == f.content[a:b + 1], (version, a, b)


def test_dataset_repo_round_trip(hub, dataset_id) -> None:
    cas = CasClient.get(hub.endpoint, dataset_id, hub.admin_token, repo_type="dataset")
    f = whole_file(new_xorb(3))
    cas.upload_file(f)
    body = (json.dumps({"key": "header", "value": {"summary": "add", "description": ""}}) + "\n"
            + json.dumps({"key": "lfsFile", "value": {"path": "d.bin", "algo": "sha256", "oid": f.sha256,
                                                      "size": f.size}}) + "\n").encode()
    r = HTTP.post(f"{hub.endpoint}/api/datasets/{dataset_id}/commit/main", content=body,
                  headers={"Content-Type": "application/x-ndjson", **bearer(hub.admin_token)})
    assert r.status_code == 200, r.text
    got = HTTP.get(f"{hub.endpoint}/datasets/{dataset_id}/resolve/main/d.bin", headers=bearer(hub.admin_token))
    assert got.content == f.content and got.headers["x-xet-hash"] == f.name
    assert f"/api/datasets/{dataset_id}/xet-read-token/" in got.headers["link"]
    assert commit_lfs(hub.endpoint, _new_repo(hub.endpoint, hub.admin_token, "admin"), hub.admin_token, "d.bin",
                      f.sha256, f.size).status_code == 400, "linked to the dataset, not to a model of the same owner"


# ====================================================================================== 2. malformed xorbs


def _lz4_chunk(c: bytes, payload: bytes | None = None, ulen: int | None = None) -> bytes:
    z = lz4.frame.compress(c) if payload is None else payload
    return chunk_header(len(z), len(c) if ulen is None else ulen, scheme=1) + z


def _text_chunk() -> bytes:
    return (b"compressible %s " % uuid.uuid4().hex.encode()) * 300


def _bad_xorbs() -> dict[str, Callable[[], tuple[str, bytes, list[bytes]]]]:
    """Each case: (hash string in the URL, body, hashes that must not be stored)."""

    def plain(mutate: Callable[[Xorb, bytearray], bytes]) -> Callable[[], tuple[str, bytes, list[bytes]]]:
        def make() -> tuple[str, bytes, list[bytes]]:
            x = new_xorb(3)
            return x.name, mutate(x, bytearray(x.body)), [x.hash]
        return make

    def other_hash() -> tuple[str, bytes, list[bytes]]:
        x, y = new_xorb(3), new_xorb(3)
        return y.name, x.body, [x.hash, y.hash]

    def reordered() -> tuple[str, bytes, list[bytes]]:
        x = new_xorb(3)
        swapped = Xorb((x.chunks[1], x.chunks[0], x.chunks[2]))
        return x.name, swapped.body, [x.hash, swapped.hash]

    def set_byte(at: Callable[[Xorb], int], value: int) -> Callable[[Xorb, bytearray], bytes]:
        def m(x: Xorb, b: bytearray) -> bytes:
            b[at(x)] = value
            return bytes(b)
        return m

    def last_header(clen_delta: int, ulen_delta: int) -> Callable[[Xorb, bytearray], bytes]:
        def m(x: Xorb, b: bytearray) -> bytes:
            n = x.lengths[-1]
            b[x.offsets[-2]:x.offsets[-2] + 8] = chunk_header(n + clen_delta, n + ulen_delta)
            return bytes(b)
        return m

    def oversized() -> tuple[str, bytes, list[bytes]]:
        big = os.urandom(MAX_CHUNK_BYTES + 1)
        h = xorb_hash([(chunk_hash(big), len(big))])
        return hash_to_str(h), chunk_header(len(big), len(big)) + big, [h]

    def lz4_case(kind: str) -> Callable[[], tuple[str, bytes, list[bytes]]]:
        def make() -> tuple[str, bytes, list[bytes]]:
            c = _text_chunk()
            x = Xorb((c,))
            z = bytearray(lz4.frame.compress(c))
            if kind == "bad magic":
                z[0] ^= 0xFF
                body = _lz4_chunk(c, bytes(z))
            elif kind == "garbled block":
                z[len(z) // 2:len(z) // 2 + 16] = b"\xff" * 16
                body = _lz4_chunk(c, bytes(z))
            elif kind == "truncated frame":
                body = _lz4_chunk(c, bytes(z[:-12]))
            elif kind == "declares fewer bytes":
                body = _lz4_chunk(c, ulen=len(c) - 1)
            elif kind == "declares more bytes":
                body = _lz4_chunk(c, ulen=len(c) + 1)
            else:  # two frames in one payload
                body = _lz4_chunk(c, bytes(z) + bytes(z))
            return x.name, body, [x.hash]
        return make

    def many_chunks() -> tuple[str, bytes, list[bytes]]:
        x = Xorb(tuple(bytes([i % 251]) for i in range(MAX_XORB_CHUNKS + 1)))
        return x.name, x.body, [x.hash]

    def lz4_bomb() -> tuple[str, bytes, list[bytes]]:
        zeros = bytes(MAX_CHUNK_BYTES)
        z = lz4.frame.compress(zeros)
        n = MAX_XORB_BYTES // MAX_CHUNK_BYTES + 1  # one chunk past 64 MiB uncompressed, ~300 KiB on the wire
        h = xorb_hash([(chunk_hash(zeros), len(zeros))] * n)
        return hash_to_str(h), (chunk_header(len(z), len(zeros), scheme=1) + z) * n, [h]

    def compressed_too_long() -> tuple[str, bytes, list[bytes]]:
        c = _text_chunk()
        x = Xorb((c,))
        clen = 2 * MAX_CHUNK_BYTES + 1
        return x.name, chunk_header(clen, len(c), scheme=1) + lz4.frame.compress(c).ljust(clen, b"\0"), [x.hash]

    return {
        "content hashes to another xorb": other_hash,
        "more than 8192 chunks": many_chunks,
        "lz4 bomb past 64 MiB uncompressed": lz4_bomb,
        "compressed length over 256 KiB": compressed_too_long,
        "chunks in another order": reordered,
        "header version 1": plain(set_byte(lambda x: 0, 1)),
        "header version 1 on a later chunk": plain(set_byte(lambda x: x.offsets[1], 1)),
        "unknown compression scheme": plain(set_byte(lambda x: 4, 7)),
        "raw chunk with compressed != uncompressed length": plain(last_header(0, -1)),
        "length claims more than the body holds": plain(last_header(10, 10)),
        "length claims less than the chunk holds": plain(last_header(-10, -10)),
        "zero-length chunk header": plain(lambda x, b: bytes(chunk_header(0, 0)) + bytes(b)),
        "truncated inside the last payload": plain(lambda x, b: bytes(b[:-100])),
        "truncated inside a header": plain(lambda x, b: bytes(b[:x.offsets[2] + 5])),
        "trailing partial header": plain(lambda x, b: bytes(b) + b"\x00\x00\x00"),
        "trailing garbage": plain(lambda x, b: bytes(b) + os.urandom(40)),
        "trailing empty chunk header": plain(lambda x, b: bytes(b) + bytes(8)),
        "a footer after the chunks": plain(lambda x, b: bytes(b) + b"XETBLOB\x01" + x.hash + bytes(64)),
        "empty body": plain(lambda x, b: b""),
        "chunk over 128 KiB uncompressed": oversized,
        "lz4 frame with a bad magic": lz4_case("bad magic"),
        "lz4 frame with a garbled block": lz4_case("garbled block"),
        "lz4 frame truncated": lz4_case("truncated frame"),
        "lz4 chunk decompressing to more than declared": lz4_case("declares fewer bytes"),
        "lz4 chunk decompressing to less than declared": lz4_case("declares more bytes"),
        "lz4 payload with bytes after the frame": lz4_case("two frames"),
    }


BAD_XORBS = _bad_xorbs()


@pytest.fixture(scope="module")
def writer(hub) -> CasClient:
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    return CasClient.get(hub.endpoint, rid, hub.admin_token)


@pytest.mark.parametrize("case", list(BAD_XORBS))
def test_malformed_xorb_is_refused_and_nothing_stored(hub, writer, case: str) -> None:
    name, body, hashes = BAD_XORBS[case]()
    files, rows = xorb_files(hub.data_dir), index_rows(hub.data_dir, "xorbs")
    r = writer.post_xorb(name, body)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.json()["error"], r.text
    for h in hashes:
        assert not xorb_stored(hub.data_dir, h), case
    assert xorb_files(hub.data_dir) == files and index_rows(hub.data_dir, "xorbs") == rows


def test_xorb_at_the_chunk_count_limit_is_accepted(hub, writer) -> None:
    """The control for "more than 8192 chunks": exactly 8192 is fine."""
    x = Xorb(tuple(os.urandom(3) for _ in range(MAX_XORB_CHUNKS)))
    r = writer.post_xorb(x.name, x.body)
    assert r.status_code == 200 and r.json() == {"was_inserted": True}, r.text


@pytest.mark.parametrize("name", ["z" * 64, "abc", "0" * 63, "0" * 65, "g" + "0" * 63, "0" * 62 + "%20"])
def test_invalid_hash_string_in_a_xorb_url_is_400(hub, writer, name: str) -> None:
    x = new_xorb(2)
    files = xorb_files(hub.data_dir)
    r = writer.post_xorb(name, x.body)
    assert r.status_code == 400, (name, r.status_code, r.text)
    assert xorb_files(hub.data_dir) == files and not xorb_stored(hub.data_dir, x.hash)


def _raw_request(url: str, method: str, headers: dict[str, str], body: bytes = b"") -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = f"{method} {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    return sock


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def _chunked(sock: socket.socket, total: int, piece: int = 1 << 20) -> None:
    block = bytes(piece)
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        sock.sendall(f"{n:x}\r\n".encode() + block[:n] + b"\r\n")
        sent += n
    sock.sendall(b"0\r\n\r\n")


@pytest.mark.parametrize("what", ["xorb", "shard"])
def test_bodies_over_the_limit_are_413(hub, writer, what: str) -> None:
    x = new_xorb(1)
    url = f"{writer.url}/v1/xorbs/default/{x.name}" if what == "xorb" else f"{writer.url}/v1/shards"
    limit = MAX_XORB_BODY if what == "xorb" else MAX_SHARD_BODY
    files, shards = xorb_files(hub.data_dir), shard_files(hub.data_dir)
    sock = _raw_request(url, "POST", {**writer.auth, "Content-Length": str(limit + 1)})  # declared: refused unread
    with sock:
        assert _read_status(sock)[0] == 413
    sock = _raw_request(url, "POST", {**writer.auth, "Transfer-Encoding": "chunked"})  # undeclared: cut off
    with sock:
        _chunked(sock, limit + 1)
        assert _read_status(sock)[0] == 413
    assert xorb_files(hub.data_dir) == files and shard_files(hub.data_dir) == shards


# ====================================================================================== 3. malformed shards


def _fresh(writer: CasClient, n: int = 3) -> tuple[Xorb, XFile]:
    x = new_xorb(n)
    writer.upload(x)
    return x, whole_file(x)


def _patch(body: bytes, at: int, data: bytes) -> bytes:
    b = bytearray(body)
    b[at:at + len(data)] = data
    return bytes(b)


def _bad_shards() -> dict[str, Callable[[CasClient], tuple[bytes, XFile]]]:
    """Each case: (shard body, the file whose sha256 must stay unlinked). Referenced xorbs are uploaded
    unless the case is about a missing one."""

    def on(mutate: Callable[[Xorb, XFile], bytes]) -> Callable[[CasClient], tuple[bytes, XFile]]:
        def make(writer: CasClient) -> tuple[bytes, XFile]:
            x, f = _fresh(writer)
            return mutate(x, f), f
        return make

    def missing_xorb(with_block: bool) -> Callable[[CasClient], tuple[bytes, XFile]]:
        def make(writer: CasClient) -> tuple[bytes, XFile]:
            x = new_xorb(3)  # never uploaded
            f = whole_file(x)
            return (f.shard() if with_block else encode_upload_shard([f.shard_file()], [])), f
        return make

    def second_term_missing(writer: CasClient) -> tuple[bytes, XFile]:
        x, _ = _fresh(writer)
        y = new_xorb(2)
        f = XFile(((x, 0, 3), (y, 0, 2)))
        return encode_upload_shard([f.shard_file()], [x.cas_block()]), f

    def term(**change: int) -> Callable[[Xorb, XFile], bytes]:
        def m(x: Xorb, f: XFile) -> bytes:
            t = f.shard_file().terms[0]
            fields = {"xorb": t.xorb, "unpacked": t.unpacked, "start": t.start, "end": t.end}
            fields.update({k: getattr(t, k) + v for k, v in change.items()})
            return encode_upload_shard([f.shard_file(terms=(Term(**fields),))], [x.cas_block()])
        return m

    def block(m: Callable[[Xorb], object]) -> Callable[[Xorb, XFile], bytes]:
        return lambda x, f: encode_upload_shard([f.shard_file()], [m(x)])  # type: ignore[list-item]

    def fewer_chunks(x: Xorb):
        b = x.cas_block()
        return type(b)(b.xorb, b.chunks[:-1], b.unpacked_total, 0)

    def wrong_length(x: Xorb):
        b = x.cas_block()
        c = b.chunks[1]
        return type(b)(b.xorb, (b.chunks[0], type(c)(c.hash, c.start, c.length + 1), *b.chunks[2:]),
                       b.unpacked_total + 1, 0)

    def wrong_chunk_hash(x: Xorb):
        b = x.cas_block()
        c = b.chunks[0]
        return type(b)(b.xorb, (type(c)(os.urandom(32), c.start, c.length), *b.chunks[1:]), b.unpacked_total, 0)

    file_rec = 48  # the first file-info record follows the 48-byte header
    return {
        "bad header tag": on(lambda x, f: _patch(f.shard(), 0, b"X")),
        "bad version": on(lambda x, f: _patch(f.shard(), 32, struct.pack("<Q", 3))),
        "footer size without a footer": on(lambda x, f: _patch(f.shard(), 40, struct.pack("<Q", 200))),
        "truncated by one byte": on(lambda x, f: f.shard()[:-1]),
        "truncated before the CAS bookend": on(lambda x, f: f.shard()[:-48]),
        "truncated to the header": on(lambda x, f: f.shard()[:60]),
        "trailing byte": on(lambda x, f: f.shard() + b"\x00"),
        "trailing record": on(lambda x, f: f.shard() + BOOKEND),
        "unknown file flags": on(lambda x, f: _patch(f.shard(), file_rec + 32,
                                                     struct.pack("<I", 0xC0000001))),
        "term count past the end": on(lambda x, f: _patch(f.shard(), file_rec + 36, struct.pack("<I", 1000))),
        "referenced xorb never uploaded": missing_xorb(True),
        "referenced xorb never uploaded, no CAS block": missing_xorb(False),
        "second term's xorb never uploaded": second_term_missing,
        "term chunk range past the xorb": on(term(end=1, unpacked=0)),
        "term chunk range empty": on(term(end=-3)),
        "term unpacked length too large": on(term(unpacked=1)),
        "term unpacked length too small": on(term(unpacked=-1)),
        "term starting one chunk later": on(term(start=1)),
        "wrong verification hash": on(lambda x, f: f.shard(verifications=(os.urandom(32),))),
        "no verification records": on(lambda x, f: f.shard(verifications=None)),
        "wrong file hash": on(lambda x, f: f.shard(file_hash=os.urandom(32))),
        "file hash of other chunks": on(lambda x, f: f.shard(file_hash=whole_file(new_xorb(3)).hash)),
        "no sha256 metadata": on(lambda x, f: f.shard(sha256=None)),
        "sha256 of other content": on(lambda x, f: f.shard(sha256=os.urandom(32).hex())),
        "CAS block with fewer chunks than the xorb": on(block(fewer_chunks)),
        "CAS block with a wrong chunk length": on(block(wrong_length)),
        "CAS block with a wrong chunk hash": on(block(wrong_chunk_hash)),
    }


BAD_SHARDS = _bad_shards()


def _assert_unlinked(hub, writer: CasClient, f: XFile, shards: set[str], case: str) -> None:
    assert shard_files(hub.data_dir) == shards, f"{case}: a refused shard is not kept"
    assert index_rows(hub.data_dir, "files", f.hash) == 0, case
    assert writer.reconstruction(f.name).status_code == 404, case
    r = commit_lfs(hub.endpoint, writer.repo_id, hub.admin_token, f"{uuid.uuid4().hex}.bin", f.sha256, f.size)
    assert r.status_code == 400, (case, r.status_code, r.text)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", list(BAD_SHARDS))
def test_malformed_shard_is_refused_and_nothing_linked(hub, writer, case: str, version: int) -> None:
    body, f = BAD_SHARDS[case](writer)
    shards = shard_files(hub.data_dir)
    r = writer.post_shard(body, version)
    if version == 2 and case == "sha256 of other content":
        # the content check runs while the v2 answer streams: 200, then an "error" line, never "result"
        assert r.status_code == 200, r.text
        lines = _ndjson_lines(r.text)
        assert lines[-1]["type"] == "error" and all(line["type"] != "result" for line in lines), lines
    else:
        assert r.status_code == 400, (case, r.status_code, r.text)
        assert r.json()["error"], r.text
    _assert_unlinked(hub, writer, f, shards, case)


def test_a_good_shard_after_the_bad_ones_still_links(hub, writer) -> None:
    """The control for the cases above: the same checks pass for a correct shard."""
    _x, f = _fresh(writer)
    assert writer.post_shard(f.shard()).json() == {"result": 1}
    assert writer.reconstruction(f.name).status_code == 200
    r = commit_lfs(hub.endpoint, writer.repo_id, hub.admin_token, "good.bin", f.sha256, f.size)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("same_size", [True, False])
@pytest.mark.parametrize("version", [1, 2])
def test_sha256_of_another_users_file_cannot_be_claimed(hub, users, same_size: bool, version: int) -> None:
    """Risk 2(a): bob uploads his own chunks with a shard claiming alice's file's sha256."""
    alice_repo = _new_repo(hub.endpoint, users["alice_token"], users["alice"])
    alice = CasClient.get(hub.endpoint, alice_repo, users["alice_token"])
    mine = whole_file(new_xorb(3))
    alice.upload_file(mine)
    assert commit_lfs(hub.endpoint, alice_repo, users["alice_token"], "secret.bin", mine.sha256,
                      mine.size).status_code == 200

    bob_repo = _new_repo(hub.endpoint, users["bob_token"], users["bob"])
    bob = CasClient.get(hub.endpoint, bob_repo, users["bob_token"])
    lengths = mine.terms[0][0].lengths if same_size else [n + 1 for n in mine.terms[0][0].lengths]
    forged = whole_file(Xorb(tuple(os.urandom(n) for n in lengths)))
    bob.upload(forged.terms[0][0])
    shards = shard_files(hub.data_dir)
    r = bob.post_shard(forged.shard(sha256=mine.sha256), version)
    if version == 1:
        assert r.status_code == 400, r.text
    else:
        assert r.status_code == 200 and _ndjson_lines(r.text)[-1]["type"] == "error", r.text
    assert shard_files(hub.data_dir) == shards
    commit = commit_lfs(hub.endpoint, bob_repo, users["bob_token"], "stolen.bin", mine.sha256, mine.size)
    assert commit.status_code == 400, commit.text
    assert bob.reconstruction(forged.name).status_code == 404
    got = _resolve(hub.endpoint, alice_repo, "secret.bin", users["alice_token"])
    assert got.content == mine.content and got.headers["x-xet-hash"] == mine.name, "alice's file is untouched"


def test_the_same_content_uploaded_by_someone_else_links_for_them(hub, users) -> None:
    """The control for the claim check: bob holding alice's actual bytes may link them to his repo."""
    alice_repo = _new_repo(hub.endpoint, users["alice_token"], users["alice"])
    alice = CasClient.get(hub.endpoint, alice_repo, users["alice_token"])
    f = whole_file(new_xorb(3))
    alice.upload_file(f)
    bob_repo = _new_repo(hub.endpoint, users["bob_token"], users["bob"])
    bob = CasClient.get(hub.endpoint, bob_repo, users["bob_token"])
    assert bob.post_xorb(f.terms[0][0].name, f.terms[0][0].body).json() == {"was_inserted": False}
    assert bob.post_shard(f.shard()).json() == {"result": 1}
    assert commit_lfs(hub.endpoint, bob_repo, users["bob_token"], "same.bin", f.sha256, f.size).status_code == 200
    assert _resolve(hub.endpoint, bob_repo, "same.bin", users["bob_token"]).content == f.content


# ====================================================================================== 4. tokens and access


def test_token_reply_has_json_and_headers(hub, repo_id) -> None:
    for scope in ("read", "write"):
        now = time.time()
        c = CasClient.get(hub.endpoint, repo_id, hub.admin_token, scope)
        h = c.reply.headers
        assert h["x-xet-access-token"] == c.token and h["x-xet-cas-url"] == c.url
        assert int(h["x-xet-token-expiration"]) == c.exp >= now + 3600
        assert c.url.startswith(f"{hub.endpoint}/cas/")
        assert hub.admin_token not in c.token


def test_a_token_names_its_repo(hub) -> None:
    a = _new_repo(hub.endpoint, hub.admin_token, "admin")
    b = _new_repo(hub.endpoint, hub.admin_token, "admin")
    ca, cb = CasClient.get(hub.endpoint, a, hub.admin_token), CasClient.get(hub.endpoint, b, hub.admin_token)
    f = whole_file(new_xorb(3))
    cb.upload_file(f)
    assert cb.reconstruction(f.name).status_code == 200
    for version in (1, 2):
        r = ca.reconstruction(f.name, version=version)
        assert r.status_code == 404, r.text
    read_a = CasClient.get(hub.endpoint, a, hub.admin_token, "read")
    assert read_a.reconstruction(f.name).status_code == 404
    missing = ca.reconstruction(hash_to_str(os.urandom(32)))
    other = ca.reconstruction(f.name)
    assert missing.status_code == 404 and other.headers["x-error-code"] == missing.headers["x-error-code"], \
        "a file of another repo reads as a missing one"
    assert commit_lfs(hub.endpoint, a, hub.admin_token, "b.bin", f.sha256, f.size).status_code == 400
    assert commit_lfs(hub.endpoint, b, hub.admin_token, "b.bin", f.sha256, f.size).status_code == 200


def test_anonymous_read_token_public_yes_private_no(hub, users, published) -> None:
    f = published["f"]
    anon = CasClient.get(hub.endpoint, published["rid"], None, "read")
    r = anon.reconstruction(f.name, version=2)
    assert r.status_code == 200 and rebuild_v2(r.json()) == f.content
    assert anon.post_xorb(new_xorb(1).name, new_xorb(1).body).status_code in (401, 403)
    assert token_route(hub.endpoint, published["rid"], None, "write").status_code == 401

    private = _new_repo(hub.endpoint, users["alice_token"], users["alice"], private=True)
    for scope in ("read", "write"):
        r = token_route(hub.endpoint, private, None, scope)
        assert r.status_code in (401, 404), r.text
        assert "accessToken" not in r.text and "x-xet-access-token" not in r.headers


def test_private_repo_token_routes_are_invisible_to_others(hub, users) -> None:
    private = _new_repo(hub.endpoint, users["alice_token"], users["alice"], private=True)
    nowhere = _rid(users["alice"])
    assert token_route(hub.endpoint, private, users["alice_token"], "read").status_code == 200
    for scope in ("read", "write"):
        hidden = token_route(hub.endpoint, private, users["bob_token"], scope)
        missing = token_route(hub.endpoint, nowhere, users["bob_token"], scope)
        assert hidden.status_code == missing.status_code == 404, (scope, hidden.text)
        assert hidden.headers["x-error-code"] == missing.headers["x-error-code"]
        assert hidden.json()["error"].replace(private, "R") == missing.json()["error"].replace(nowhere, "R")
        assert "x-xet-access-token" not in hidden.headers


def test_read_tokens_cannot_upload(hub, users) -> None:
    rid = _new_repo(hub.endpoint, users["bob_token"], users["bob"])
    read = CasClient.get(hub.endpoint, rid, users["bob_token"], "read")
    x = new_xorb(2)
    r = read.post_xorb(x.name, x.body)
    assert r.status_code == 403, r.text
    assert not xorb_stored(hub.data_dir, x.hash)
    write = CasClient.get(hub.endpoint, rid, users["bob_token"], "write")
    write.upload(x)
    f = whole_file(x)
    shards = shard_files(hub.data_dir)
    for version in (1, 2):
        r = read.post_shard(f.shard(), version)
        assert r.status_code == 403, r.text
    assert shard_files(hub.data_dir) == shards and write.reconstruction(f.name).status_code == 404
    # a Hub read token gets no write token at all; nor does a writer of another namespace
    assert token_route(hub.endpoint, rid, users["bob_read"], "write").status_code == 403
    assert token_route(hub.endpoint, rid, users["bob_read"], "read").status_code == 200
    assert token_route(hub.endpoint, rid, users["alice_token"], "write").status_code == 403


def _token_id(hub, user: str, name: str) -> str:
    for line in hub.cli("token", "list", user).splitlines()[1:]:
        fields = line.split()
        if fields[1] == name:
            return fields[0]
    raise AssertionError(f"token {name} not listed")


def test_revoking_the_hub_token_stops_its_cas_tokens(hub, users) -> None:
    name = f"xet-{uuid.uuid4().hex[:6]}"
    token = hub.cli("token", "create", users["alice"], "--name", name)
    rid = _new_repo(hub.endpoint, token, users["alice"])
    write = CasClient.get(hub.endpoint, rid, token, "write")
    read = CasClient.get(hub.endpoint, rid, token, "read")
    f = whole_file(new_xorb(2))
    write.upload_file(f)
    assert read.reconstruction(f.name).status_code == 200
    hub.cli("token", "revoke", _token_id(hub, users["alice"], name))
    x = new_xorb(2)
    assert write.post_xorb(x.name, x.body).status_code == 401
    assert not xorb_stored(hub.data_dir, x.hash)
    assert write.post_shard(f.shard()).status_code == 401
    assert read.reconstruction(f.name).status_code == 401
    assert read.chunk(hash_to_str(f.terms[0][0].hashes[0])).status_code == 401
    assert token_route(hub.endpoint, rid, token, "read").status_code == 401


def test_forged_or_garbled_cas_tokens_are_401(hub, published) -> None:
    good = CasClient.get(hub.endpoint, published["rid"], hub.admin_token, "read")
    f = published["f"]
    prefix, payload, mac = good.token.split(".")
    claims = json.loads(_unb64(payload))
    as_write = _b64(json.dumps({**claims, "s": "write"}, separators=(",", ":")).encode())
    other_repo = _b64(json.dumps({**claims, "r": claims["r"] + 1}, separators=(",", ":")).encode())
    later = _b64(json.dumps({**claims, "e": claims["e"] + 10**6}, separators=(",", ":")).encode())
    flipped = mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB")
    forged = [
        None, "", "xet1", "xet1..", f"{prefix}.{payload}", f"{prefix}.{payload}.{flipped}", f"{prefix}.{as_write}.{mac}",
        f"{prefix}.{other_repo}.{mac}", f"{prefix}.{later}.{mac}", f"xet2.{payload}.{mac}", f"{good.token}x",
        "xet1.!!!.???", hub.admin_token, "x" * 5000,
    ]
    for bad in forged:
        headers = bearer(bad) if bad is not None else {}
        r = HTTP.get(f"{good.url}/v1/reconstructions/{f.name}", headers=headers)
        assert r.status_code == 401, (bad and bad[:40], r.status_code, r.text)
    r = HTTP.get(f"{good.url}/v1/reconstructions/{f.name}", headers={"Authorization": f"Basic {good.token}"})
    assert r.status_code == 401
    x = new_xorb(1)
    r = HTTP.post(f"{good.url}/v1/xorbs/default/{x.name}", content=x.body,
                  headers=bearer(f"{prefix}.{as_write}.{mac}"))
    assert r.status_code == 401 and not xorb_stored(hub.data_dir, x.hash)
    assert good.reconstruction(f.name).status_code == 200, "the genuine token works"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_making_the_repo_private_stops_outsiders_tokens(hub, users) -> None:
    rid = _new_repo(hub.endpoint, users["alice_token"], users["alice"])
    alice = CasClient.get(hub.endpoint, rid, users["alice_token"])
    f = whole_file(new_xorb(3))
    alice.upload_file(f)
    assert commit_lfs(hub.endpoint, rid, users["alice_token"], "f.bin", f.sha256, f.size).status_code == 200
    bob = CasClient.get(hub.endpoint, rid, users["bob_token"], "read")
    anon = CasClient.get(hub.endpoint, rid, None, "read")
    first = hash_to_str(f.terms[0][0].hashes[0])
    for c in (bob, anon):
        assert c.reconstruction(f.name).status_code == 200
        assert c.chunk(first).status_code == 200
    HfApi(endpoint=hub.endpoint, token=users["alice_token"]).update_repo_settings(rid, private=True)
    for c, status in ((bob, 404), (anon, 401)):
        for version in (1, 2):
            assert c.reconstruction(f.name, version=version).status_code == status
        assert c.chunk(first).status_code == status
    assert alice.reconstruction(f.name).status_code == 200, "members keep access"


def test_gated_repo_cas_needs_access(hub, users) -> None:
    rid = _new_repo(hub.endpoint, users["alice_token"], users["alice"])
    alice = CasClient.get(hub.endpoint, rid, users["alice_token"])
    f = whole_file(new_xorb(2))
    alice.upload_file(f)
    bob = CasClient.get(hub.endpoint, rid, users["bob_token"], "read")
    assert bob.reconstruction(f.name).status_code == 200
    HfApi(endpoint=hub.endpoint, token=users["alice_token"]).update_repo_settings(rid, gated="manual")
    assert bob.reconstruction(f.name).status_code == 403, "a token minted before gating stops too"
    assert token_route(hub.endpoint, rid, users["bob_token"], "read").status_code == 403
    assert token_route(hub.endpoint, rid, None, "read").status_code == 401
    assert alice.reconstruction(f.name).status_code == 200


# ====================================================================================== 5. dedup


def test_dedup_answers_a_keyed_shard(hub, published) -> None:
    """The answer names every xorb of a file holding the chunk (the client asks about ~1 chunk in 1024,
    so one xorb per answer would miss most of a fine-tune's unchanged tensors), the chunk's own first."""
    x, y, cas = published["x"], published["y"], published["cas"]
    first = hash_to_str(x.hashes[0])
    replies = []
    for prefix in ("default", "default-merkledb"):
        r = cas.chunk(first, prefix)
        assert r.status_code == 200, r.text
        replies.append(r.content)
    shards = [parse_shard(body) for body in replies]
    for s in shards:
        assert s.files == () and s.footer is not None
        assert s.footer.key != bytes(HASH_LEN) and s.footer.expiry > time.time()
        blocks = {b.xorb: b for b in s.cas}
        assert set(blocks) == {x.hash, y.hash}
        for xorb in (x, y):
            block = blocks[xorb.hash]
            assert [c.length for c in block.chunks] == xorb.lengths
            assert [c.hash for c in block.chunks] == [hmac_hash(h, s.footer.key) for h in xorb.hashes]
            assert not {c.hash for c in block.chunks} & set(xorb.hashes), "raw chunk hashes never leave the hub"
    assert replies[0] != replies[1] and shards[0].footer.key != shards[1].footer.key  # type: ignore[union-attr]
    again = parse_shard(cas.chunk(first).content)
    assert again.footer.key not in (shards[0].footer.key, shards[1].footer.key)  # type: ignore[union-attr]


def test_dedup_unknown_chunk_and_auth(hub, published) -> None:
    cas = published["cas"]
    assert cas.chunk(hash_to_str(os.urandom(32))).status_code == 404
    assert cas.chunk("nothex").status_code == 400
    assert cas.chunk(hash_to_str(published["x"].hashes[0]), token=None).status_code == 401


def test_dedup_on_a_private_xorb_grants_only_the_chunks_you_hold(hub, users) -> None:
    """Bob holds the first chunk of a file in alice's private repo: global dedup tells him its xorb, he may
    link that one chunk (he has its bytes), and his signed URLs reach no other chunk of alice's xorb."""
    private = _new_repo(hub.endpoint, users["alice_token"], users["alice"], private=True)
    alice = CasClient.get(hub.endpoint, private, users["alice_token"])
    x = new_xorb(4)
    secret = whole_file(x)
    alice.upload_file(secret)
    bob_repo = _new_repo(hub.endpoint, users["bob_token"], users["bob"])
    bob = CasClient.get(hub.endpoint, bob_repo, users["bob_token"])
    reply = bob.chunk(hash_to_str(x.hashes[0]))
    assert reply.status_code == 200
    dedup = parse_shard(reply.content)
    assert dedup.cas[0].xorb == x.hash
    assert bob.reconstruction(secret.name).status_code == 404

    # claiming the whole xorb with what the dedup answer shows (keyed hashes) fails the checks
    keyed = [c.hash for c in dedup.cas[0].chunks]
    greedy = ShardFile(file_hash(list(zip(keyed, x.lengths))), (Term(x.hash, sum(x.lengths), 0, 4),),
                       (verification_hash(keyed),), secret.sha256)
    assert bob.post_shard(encode_upload_shard([greedy], [])).status_code == 400
    assert commit_lfs(hub.endpoint, bob_repo, users["bob_token"], "s.bin", secret.sha256,
                      secret.size).status_code == 400

    # the chunk he holds is his to link
    mine = XFile(((x, 0, 1),))
    r = bob.post_shard(encode_upload_shard([mine.shard_file()], []))
    assert r.status_code == 200, r.text
    rec = bob.reconstruction(mine.name, version=2).json()
    assert rebuild_v2(rec) == x.chunks[0]
    (entry,) = rec["xorbs"][x.name]
    url = entry["url"]
    assert HTTP.get(url, headers={"Range": f"bytes=0-{x.offsets[1] - 1}"}).status_code == 206
    for rng in (f"bytes={x.offsets[1]}-{x.offsets[4] - 1}", f"bytes=0-{x.offsets[1]}", "bytes=-100"):
        assert HTTP.get(url, headers={"Range": rng}).status_code == 403, rng
    assert HTTP.get(url).status_code == 403


# ====================================================================================== 6. unknown routes


def test_unknown_newer_routes_are_404(hub, published) -> None:
    cas, f, x = published["cas"], published["f"], published["x"]
    grant = HTTP.post(f"{cas.url}/v1/xorb-grants/default/{x.name}", headers=cas.auth,
                      json={"length": 10, "checksum": {"algo": "crc64nvme", "value": "1"}})
    assert grant.status_code == 404, grant.text
    assert HTTP.get(f"{cas.url}/v3/reconstructions/{f.name}", headers=cas.auth).status_code == 404
    assert HTTP.get(f"{cas.url}/v0/reconstructions/{f.name}", headers=cas.auth).status_code == 404
    batch = HTTP.post(f"{cas.url}/v1/reconstructions", headers=cas.auth, json={"files": [f.name]})
    assert batch.status_code == 404, batch.text
    commit = HTTP.post(f"{cas.url}/v1/xorb-commits/default/{x.name}/grant/1", headers=cas.auth)
    assert commit.status_code == 404


def test_telemetry_is_accepted_with_a_token_only(hub, published) -> None:
    cas = published["cas"]
    ok = HTTP.post(f"{cas.url}/v1/telemetry", json={"event": "xet_upload_summary"}, headers=cas.auth)
    assert ok.status_code == 200
    assert HTTP.post(f"{cas.url}/v1/telemetry", json={"event": "x"}).status_code == 401
    big = HTTP.post(f"{cas.url}/v1/telemetry", content=b"{" + b" " * (2 << 20) + b"}", headers=cas.auth)
    assert big.status_code == 413


def test_wrong_instance_segment_is_404(hub, published) -> None:
    cas, f, x = published["cas"], published["f"], published["x"]
    wrong = re.sub(r"/cas/[^/]+$", "/cas/0123456789abcdef", cas.url)
    assert wrong != cas.url
    assert HTTP.get(f"{wrong}/v1/reconstructions/{f.name}", headers=cas.auth).status_code == 404
    assert HTTP.get(f"{wrong}/v1/chunks/default/{hash_to_str(x.hashes[0])}", headers=cas.auth).status_code == 404
    y = new_xorb(1)
    assert HTTP.post(f"{wrong}/v1/xorbs/default/{y.name}", content=y.body, headers=cas.auth).status_code == 404
    assert not xorb_stored(hub.data_dir, y.hash)
    assert HTTP.post(f"{wrong}/v1/shards", content=f.shard(), headers=cas.auth).status_code == 404
    (fi,) = [e for e in cas.reconstruction(f.name).json()["fetch_info"][x.name] if e["range"]["start"] == 0]
    moved = fi["url"].replace(cas.url, wrong)
    assert moved != fi["url"]
    r = HTTP.get(moved, headers={"Range": f"bytes={fi['url_range']['start']}-{fi['url_range']['end']}"})
    assert r.status_code == 404


# ====================================================================================== 7. crash safety


def _partial_xorb_upload(cas: CasClient, x: Xorb, fraction: float = 0.5) -> socket.socket:
    body = x.body
    return _raw_request(f"{cas.url}/v1/xorbs/default/{x.name}", "POST",
                        {**cas.auth, "Content-Length": str(len(body))}, body[:int(len(body) * fraction)])


def _big_xorb() -> Xorb:
    return new_xorb(120, low=100_000, high=MAX_CHUNK_BYTES)  # ~13.5 MiB


def test_an_upload_cut_off_half_way_stores_nothing(tmp_hub) -> None:
    hub = tmp_hub()
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    x = _big_xorb()
    sock = _partial_xorb_upload(cas, x)
    time.sleep(0.5)
    sock.close()
    deadline = time.time() + 10
    while time.time() < deadline and list((hub.data_dir / "tmp").glob("upload-*")):
        time.sleep(0.1)
    assert not xorb_stored(hub.data_dir, x.hash) and xorb_files(hub.data_dir) == set()
    assert not list((hub.data_dir / "tmp").glob("upload-*")), "no temporary outlives the request"
    f = whole_file(x)
    r = cas.post_shard(f.shard())
    assert r.status_code == 400, r.text
    assert hub.proc.poll() is None
    cas.upload_file(f)  # the whole body afterwards is fine
    assert xorb_stored(hub.data_dir, x.hash)


def test_a_client_that_hangs_up_mid_upload_is_not_a_server_error(tmp_hub) -> None:
    """A client going away mid-body (hf_xet cancelled, network drop) is not an internal error: no
    "unhandled error" traceback in the server log."""
    hub = tmp_hub()
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    sock = _partial_xorb_upload(cas, new_xorb(20, low=60_000, high=100_000))
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    assert CasClient.get(hub.endpoint, rid, hub.admin_token).token  # still serving
    hub.stop()
    log = hub.log_path.read_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-2000:]


def test_a_hub_killed_mid_upload_restarts_without_the_xorb(tmp_hub) -> None:
    hub = tmp_hub()
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    x = _big_xorb()
    sock = _partial_xorb_upload(cas, x, 0.9)
    time.sleep(0.5)
    hub.kill()
    sock.close()
    tmp = hub.data_dir / "tmp"
    dead = tmp / "upload-deadbeef"  # what a writer killed between write and rename leaves (no lock held)
    dead.write_bytes(os.urandom(4096))
    data = hub.data_dir

    again = tmp_hub(data=data)
    assert not dead.exists(), "start-up reclaims dead upload temporaries"
    assert not list(tmp.glob("upload-*"))
    assert not xorb_stored(data, x.hash)
    cas2 = CasClient.get(again.endpoint, rid, again.admin_token)
    assert cas2.url.rsplit("/", 1)[1] == cas.url.rsplit("/", 1)[1], "same data folder, same CAS instance"
    f = whole_file(x)
    r = cas2.post_shard(f.shard())
    assert r.status_code == 400, r.text
    assert commit_lfs(again.endpoint, rid, again.admin_token, "big.bin", f.sha256, f.size).status_code == 400
    assert cas2.post_xorb(x.name, x.body).json() == {"was_inserted": True}
    assert cas2.post_shard(f.shard()).json() == {"result": 1}
    assert commit_lfs(again.endpoint, rid, again.admin_token, "big.bin", f.sha256, f.size).status_code == 200
    assert _resolve(again.endpoint, rid, "big.bin", again.admin_token).content == f.content


# ====================================================================================== 8. logs


def test_access_log_never_shows_cas_tokens_or_xorb_signatures(tmp_hub) -> None:
    hub = tmp_hub("--access-log")
    rid = _new_repo(hub.endpoint, hub.admin_token, "admin")
    cas = CasClient.get(hub.endpoint, rid, hub.admin_token)
    read = CasClient.get(hub.endpoint, rid, hub.admin_token, "read")
    x, y = new_xorb(4), new_xorb(3)
    f = XFile(((x, 0, 2), (y, 0, 3), (x, 3, 4)))
    cas.upload_file(f)
    assert commit_lfs(hub.endpoint, rid, hub.admin_token, "f.bin", f.sha256, f.size).status_code == 200
    urls = []
    for version in (1, 2):
        rec = read.reconstruction(f.name, "bytes=10-", version).json()
        assert (rebuild_v1(rec) if version == 1 else rebuild_v2(rec))
        if version == 1:
            urls += [fi["url"] for entries in rec["fetch_info"].values() for fi in entries]
        else:
            urls += [e["url"] for entries in rec["xorbs"].values() for e in entries]
    assert HTTP.get(urls[0]).status_code == 403  # refused requests are logged too
    assert HTTP.get(_with_query(urls[0], sig="0" * 64), headers={"Range": "bytes=0-0"}).status_code == 401
    assert read.chunk(hash_to_str(x.hashes[0])).status_code == 200
    assert HTTP.get(f"{read.url}/v1/reconstructions/{f.name}?token={read.token}",
                    headers=bearer(read.token)).status_code == 200
    assert HTTP.get(f"{read.url}/v1/reconstructions/{f.name}", headers=bearer(read.token + "x")).status_code == 401
    hub.proc.terminate()  # uvicorn writes its access log to stdout, the rest to stderr (the log file)
    log = hub.proc.stdout.read() + hub.log_path.read_text()
    hub.stop()
    assert "/v1/xorbs/default/" in log and "/xorb/" in log, "the CAS requests are in the access log"
    assert "sig=REDACTED" in log
    assert not re.search(r"sig=(?!REDACTED)", log), [ln for ln in log.splitlines() if "sig=" in ln][:3]
    for url in urls:
        sig = parse_qs(urlsplit(url).query)["sig"][0]
        assert sig not in log
    for token in (cas.token, read.token, hub.admin_token):
        for part in token.split("."):
            if len(part) > 8:
                assert part not in log, "no CAS token (nor its payload or MAC) in the log"


@pytest.mark.parametrize("version", [1, 2])
def test_a_shard_with_one_bad_file_links_none_of_its_files(hub, writer, version: int) -> None:
    """A shard is all or nothing: its good file is not linked when another file's content check fails."""
    good, bad = whole_file(new_xorb(3)), whole_file(new_xorb(2))
    for x in (*good.xorbs, *bad.xorbs):
        writer.upload(x)
    body = encode_upload_shard([good.shard_file(), bad.shard_file(sha256="ab" * 32)],
                               [x.cas_block() for x in (*good.xorbs, *bad.xorbs)])
    r = writer.post_shard(body, version)
    assert (r.status_code == 400) if version == 1 else (_ndjson_lines(r.text)[-1]["type"] == "error"), r.text
    assert writer.reconstruction(good.name).status_code == 404
    assert commit_lfs(hub.endpoint, writer.repo_id, hub.admin_token, "g.bin", good.sha256, good.size).status_code == 400
    assert writer.post_shard(good.shard(), version).status_code == 200  # alone, it links
    assert writer.reconstruction(good.name).status_code == 200
