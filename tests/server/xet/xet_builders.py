"""Hand-built Xet objects and a small HTTP client for the CAS routes of a test hub.

Everything is made with ``hubfs.server.xet.format``'s own functions (scheme-0 xorbs, hashes, upload
shards), so the tests speak the wire format without hf_xet in the loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hubfs.server.db import open_database
from hubfs.server.db.url import database_url
from hubfs.server.xet.format import (
    CasBlock,
    CasChunk,
    ShardFile,
    Term,
    chunk_hash,
    decode_xorb,
    encode_plain_xorb,
    encode_upload_shard,
    file_hash,
    hash_to_str,
    plain_offsets,
    verification_hash,
    xorb_hash,
)

HTTP = httpx.Client(timeout=60)


def random_chunks(n: int, low: int = 2_000, high: int = 9_000) -> list[bytes]:
    return [os.urandom(low + int.from_bytes(os.urandom(2), "little") % (high - low)) for _ in range(n)]


@dataclass(frozen=True)
class Xorb:
    """A xorb built by hand: its chunks (raw), their hashes, the scheme-0 body and its hash."""

    chunks: tuple[bytes, ...]

    @property
    def hashes(self) -> list[bytes]:
        return [chunk_hash(c) for c in self.chunks]

    @property
    def lengths(self) -> list[int]:
        return [len(c) for c in self.chunks]

    @property
    def hash(self) -> bytes:
        return xorb_hash(list(zip(self.hashes, self.lengths)))

    @property
    def name(self) -> str:
        return hash_to_str(self.hash)

    @property
    def body(self) -> bytes:
        return encode_plain_xorb(self.chunks)

    @property
    def offsets(self) -> list[int]:
        return plain_offsets(self.lengths)

    def cas_block(self) -> CasBlock:
        starts = [0]
        for n in self.lengths:
            starts.append(starts[-1] + n)
        return CasBlock(self.hash, tuple(CasChunk(h, s, n) for h, s, n in zip(self.hashes, starts, self.lengths)),
                        starts[-1], 0)


def new_xorb(n: int = 4, **kw: int) -> Xorb:
    return Xorb(tuple(random_chunks(n, **kw)))


@dataclass(frozen=True)
class XFile:
    """A file made of terms (xorb, chunk start, chunk end): its content, hashes and shard entry."""

    terms: tuple[tuple[Xorb, int, int], ...]

    @property
    def content(self) -> bytes:
        return b"".join(c for x, s, e in self.terms for c in x.chunks[s:e])

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def chunk_list(self) -> list[tuple[bytes, int]]:
        return [(h, n) for x, s, e in self.terms for h, n in list(zip(x.hashes, x.lengths))[s:e]]

    @property
    def hash(self) -> bytes:
        return file_hash(self.chunk_list)

    @property
    def name(self) -> str:
        return hash_to_str(self.hash)

    def shard_file(self, **override: Any) -> ShardFile:
        """The file's shard entry; ``override`` replaces fields (file_hash, terms, verifications, sha256)."""
        fields: dict[str, Any] = {
            "file_hash": self.hash,
            "terms": tuple(Term(x.hash, sum(x.lengths[s:e]), s, e) for x, s, e in self.terms),
            "verifications": tuple(verification_hash(x.hashes[s:e]) for x, s, e in self.terms),
            "sha256": self.sha256,
        }
        fields.update(override)
        return ShardFile(**fields)

    @property
    def xorbs(self) -> list[Xorb]:
        return list({x.hash: x for x, _, _ in self.terms}.values())

    def shard(self, **override: Any) -> bytes:
        """An upload shard with this file and a CAS block for each of its xorbs."""
        return encode_upload_shard([self.shard_file(**override)], [x.cas_block() for x in self.xorbs])


def whole_file(x: Xorb) -> XFile:
    return XFile(((x, 0, len(x.chunks)),))


def chunk_header(clen: int, ulen: int, scheme: int = 0, version: int = 0) -> bytes:
    return struct.pack("<II", version | (clen << 8), scheme | (ulen << 8))


# ---------------------------------------------------------------- HTTP


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class CasClient:
    """A CAS token (from the Hub's token route) and the calls made with it."""

    endpoint: str
    repo_id: str
    token: str
    url: str
    exp: int
    reply: httpx.Response = field(repr=False)

    @classmethod
    def get(cls, endpoint: str, repo_id: str, hub_token: str | None, scope: str = "write",
            repo_type: str = "model") -> CasClient:
        r = token_route(endpoint, repo_id, hub_token, scope, repo_type)
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        return cls(endpoint, repo_id, body["accessToken"], body["casUrl"], body["exp"], r)

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def post_xorb(self, name: str, body: bytes, token: str | None = "") -> httpx.Response:
        return HTTP.post(f"{self.url}/v1/xorbs/default/{name}", content=body, headers=self._h(token))

    def upload(self, x: Xorb) -> None:
        r = self.post_xorb(x.name, x.body)
        assert r.status_code == 200, (r.status_code, r.text)

    def post_shard(self, body: bytes, version: int = 1, token: str | None = "") -> httpx.Response:
        return HTTP.post(f"{self.url}/v{version}/shards", content=body, headers=self._h(token))

    def upload_file(self, f: XFile) -> None:
        for x in f.xorbs:
            self.upload(x)
        r = self.post_shard(f.shard())
        assert r.status_code == 200 and r.json() == {"result": 1}, (r.status_code, r.text)

    def reconstruction(self, file: str, rng: str | None = None, version: int = 1,
                       token: str | None = "") -> httpx.Response:
        headers = self._h(token)
        if rng is not None:
            headers["Range"] = rng
        return HTTP.get(f"{self.url}/v{version}/reconstructions/{file}", headers=headers)

    def chunk(self, chunk: str, prefix: str = "default", token: str | None = "") -> httpx.Response:
        return HTTP.get(f"{self.url}/v1/chunks/{prefix}/{chunk}", headers=self._h(token))

    def _h(self, token: str | None) -> dict[str, str]:
        return bearer(self.token if token == "" else token)


def token_route(endpoint: str, repo_id: str, hub_token: str | None, scope: str = "write",
                repo_type: str = "model", rev: str = "main") -> httpx.Response:
    return HTTP.get(f"{endpoint}/api/{repo_type}s/{repo_id}/xet-{scope}-token/{rev}", headers=bearer(hub_token))


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def commit_lfs(endpoint: str, repo_id: str, hub_token: str, path: str, oid: str, size: int) -> httpx.Response:
    """A commit with one ``lfsFile`` line, as huggingface_hub sends it after a Xet upload."""
    body = ndjson({"key": "header", "value": {"summary": f"add {path}", "description": ""}},
                  {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}})
    return HTTP.post(f"{endpoint}/api/models/{repo_id}/commit/main", content=body,
                     headers={"Content-Type": "application/x-ndjson", **bearer(hub_token)})


# ---------------------------------------------------------------- reading replies back


def fetch_ranges(url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
    """GET a signed xorb URL for inclusive byte ranges (no Authorization), one body per range."""
    r = HTTP.get(url, headers={"Range": "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)})
    assert r.status_code == 206, (r.status_code, r.text)
    if len(ranges) == 1:
        assert r.headers["content-range"].startswith(f"bytes {ranges[0][0]}-{ranges[0][1]}/")
        return [r.content]
    return parse_multipart(r)


def parse_multipart(r: httpx.Response) -> list[bytes]:
    m = re.search(r"boundary=([^;\s]+)", r.headers["content-type"])
    assert r.headers["content-type"].startswith("multipart/byteranges") and m, r.headers
    delim = b"--" + m.group(1).encode()
    body = r.content
    assert body.endswith(delim + b"--\r\n"), body[-80:]
    out = []
    for part in body.split(delim)[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        assert b"Content-Range: bytes " in head, head
        out.append(data[:-2] if data.endswith(b"\r\n") else data)
    return out


def decode_stream(data: bytes) -> list[bytes]:
    """The chunks of a served (scheme-0, footerless) xorb byte range."""
    return decode_xorb(data).chunks


def rebuild_v1(rec: dict[str, Any]) -> bytes:
    """The bytes a v1 reconstruction describes: every term's chunks, fetched through ``fetch_info``."""
    out = []
    for term in rec["terms"]:
        s, e = term["range"]["start"], term["range"]["end"]
        entries = [fi for fi in rec["fetch_info"][term["hash"]] if fi["range"]["start"] <= s and e <= fi["range"]["end"]]
        assert entries, f"no fetch_info covers term {term}"
        fi = entries[0]
        (data,) = fetch_ranges(fi["url"], [(fi["url_range"]["start"], fi["url_range"]["end"])])
        chunks = decode_stream(data)
        assert len(chunks) == fi["range"]["end"] - fi["range"]["start"]
        piece = b"".join(chunks[s - fi["range"]["start"]:e - fi["range"]["start"]])
        assert len(piece) == term["unpacked_length"]
        out.append(piece)
    return b"".join(out)


def rebuild_v2(rec: dict[str, Any]) -> bytes:
    """The same through the v2 ``xorbs`` map (one URL per xorb, multi-range fetches)."""
    fetched: dict[str, list[tuple[int, int, list[bytes]]]] = {}
    for name, entries in rec["xorbs"].items():
        for entry in entries:
            spans = [(r["bytes"]["start"], r["bytes"]["end"]) for r in entry["ranges"]]
            bodies = fetch_ranges(entry["url"], spans)
            for r, body in zip(entry["ranges"], bodies):
                chunks = decode_stream(body)
                assert len(chunks) == r["chunks"]["end"] - r["chunks"]["start"]
                fetched.setdefault(name, []).append((r["chunks"]["start"], r["chunks"]["end"], chunks))
    out = []
    for term in rec["terms"]:
        s, e = term["range"]["start"], term["range"]["end"]
        hits = [(cs, chunks) for cs, ce, chunks in fetched[term["hash"]] if cs <= s and e <= ce]
        assert hits, f"no xorb range covers term {term}"
        cs, chunks = hits[0]
        piece = b"".join(chunks[s - cs:e - cs])
        assert len(piece) == term["unpacked_length"]
        out.append(piece)
    return b"".join(out)


# ---------------------------------------------------------------- what is on disk


def xorb_files(data_dir: Path) -> set[str]:
    root = Path(data_dir) / "xet" / "xorbs"
    return {p.name for p in root.rglob("*") if p.is_file()}


def shard_files(data_dir: Path) -> set[str]:
    return {p.name for p in (Path(data_dir) / "xet" / "shards").glob("*")}


def index_rows(data_dir: Path, table: str, h: bytes | None = None) -> int:
    """Rows of a Xet index table in the data folder's database (hub.sqlite or PostgreSQL)."""
    db = open_database(database_url(Path(data_dir)))
    try:
        if h is None:
            return int(db.query(f"SELECT count(*) FROM {table}")[0][0])
        return int(db.query(f"SELECT count(*) FROM {table} WHERE hash=?", (h,))[0][0])
    finally:
        db.close()


def xorb_stored(data_dir: Path, h: bytes) -> bool:
    name = hash_to_str(h)
    return (Path(data_dir) / "xet" / "xorbs" / name[:2] / name).exists() or index_rows(data_dir, "xorbs", h) > 0
