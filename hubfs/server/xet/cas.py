"""The Xet CAS service: what the CAS routes decide, apart from HTTP (blocking; run off the event loop).

- Xorbs are decoded and fully validated (every chunk decompressed, measured and hashed, the Merkle
  root equal to the URL's hash) before they are stored.
- A shard is checked against the stored xorbs (``format.check_file``: ranges, lengths, verification
  hashes, file hash), then each file's content is read back from the xorbs and hashed: the sha256
  the shard claims is a client's word until the bytes say so. A verified file is an LFS object linked
  to the uploading repo (``server/objects.py`` serves its bytes from the xorbs), so the commit's
  ``lfsFile`` line, ``resolve``, git-lfs and every plain client keep working, and one user's shard can
  never stand for another user's object.
- Reconstructions answer only for files linked to the token's repo, and their xorb URLs are signed
  for exactly the byte ranges they list (a range outside them is refused), so no one reads chunks of
  a xorb that belong to files they cannot see. With S3 object storage they are presigned GETs of the
  bucket's xorb object whose signature covers the ``Range`` header (one URL per range): the bytes
  never pass through the hub, and the store refuses any other range.
- Dedup answers HMAC their chunk hashes with a fresh key (``format.build_dedup_shard``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hubfs.errors import NotFoundError, PayloadTooLargeError
from hubfs.lfs import is_valid_oid
from hubfs.server.http import parse_range
from hubfs.server.hub import Hub
from hubfs.server.metadata import Repo
from hubfs.server.xet.format import (
    CasBlock,
    CasChunk,
    Shard,
    XetFormatError,
    build_dedup_shard,
    check_cas_block,
    check_file,
    decode_xorb,
    hash_to_str,
    parse_shard,
    str_to_hash,
)
from hubfs.server.xet.store import StoredXorb, XetFile, XetStore, xorb_name
from hubfs.server.xet.tokens import CasGrant

XORB_URL_TTL = 3600  # seconds a reconstruction's xorb URLs stay valid (hf_xet asks again on 403)
DEDUP_KEY_TTL = 7 * 24 * 3600
DEDUP_MAX_XORBS = 256  # xorbs named in one dedup answer (~12 MiB of shard at most)
DEFAULT_MAX_SHARD_FILE_BYTES = 1 << 40  # bytes of file content one shard may ask the server to verify


@dataclass(frozen=True)
class CheckedShard:
    """A shard that passed every check against the stored xorbs: its files and their sizes."""

    body: bytes
    shard: Shard
    sizes: tuple[int, ...]


class Cas:
    """The CAS of one hub. ``max_shard_file_bytes`` bounds the file content one shard may describe
    (each byte is read back and hashed); at most ``verifiers`` shards are verified at once."""

    def __init__(self, hub: Hub, *, max_shard_file_bytes: int = DEFAULT_MAX_SHARD_FILE_BYTES, verifiers: int = 2,
                 decoders: int = 2) -> None:
        self.hub = hub
        self.store: XetStore = hub.xet
        self.max_shard_file_bytes = max_shard_file_bytes
        self._verifying = threading.BoundedSemaphore(verifiers)
        self._decoding = threading.BoundedSemaphore(decoders)

    # -- uploads ---------------------------------------------------------------------------------

    def accept_xorb(self, h: bytes, body: bytes | memoryview) -> bool:
        """Validate and store one xorb (400 when anything is wrong); False if it was stored already."""
        if self.store.has_xorb(h):
            return False  # same hash, same chunks: nothing to learn from the body
        with self._decoding:
            content = decode_xorb(body, expected=h)
        return self.store.put_xorb(h, content)

    def check_shard(self, body: bytes, *, sha256_given: bool = True) -> CheckedShard:
        """Parse ``body`` and check it against the stored xorbs (400 on the first problem).
        ``sha256_given=False``: the files may come without a sha256 (hf_xet's bucket uploads); the
        caller computes it from the content."""
        shard = parse_shard(body)
        if not sha256_given:
            shard = dataclasses.replace(shard, files=tuple(dataclasses.replace(f, sha256=f.sha256 or "0" * 64)
                                                           for f in shard.files))
        chunk_lists: dict[bytes, list[tuple[bytes, int]] | None] = {}

        def chunks_of(h: bytes) -> list[tuple[bytes, int]] | None:
            if h not in chunk_lists:
                x = self.store.xorb(h)
                chunk_lists[h] = x.chunk_list() if x is not None else None
            return chunk_lists[h]

        for block in shard.cas:
            stored = chunks_of(block.xorb)
            if stored is None:
                raise XetFormatError(f"The shard lists xorb {hash_to_str(block.xorb)}, which was never uploaded.")
            check_cas_block(block, stored)
        sizes = tuple(check_file(f, chunks_of) for f in shard.files)
        if sum(sizes) > self.max_shard_file_bytes:
            raise PayloadTooLargeError(f"The shard describes {sum(sizes)} bytes of files; this hub takes at most "
                                       f"{self.max_shard_file_bytes} per shard.")
        return CheckedShard(body, shard, sizes)

    def commit_shard(self, repo: Repo, checked: CheckedShard, progress: Callable[[int, int], None] | None = None) -> None:
        """Verify each file's content against its claimed sha256 (read back from the xorbs); then, only
        once every file passed, record them as Xet files and link them to ``repo`` as LFS objects. A
        mismatch answers 400 and links nothing. The content is never copied: xorbs hold it once."""
        files = [XetFile(f.file_hash, f.sha256 or "", size, f.terms) for f, size in zip(checked.shard.files, checked.sizes)]
        with self._verifying, self.hub.reclaim.shared():
            for i, f in enumerate(files):
                self._verify(f)
                if progress:
                    progress(i + 1, len(files))
            for f in files:
                self.store.add_file(f)
                self.store.index_for_dedup(f)
                self.hub.meta.link_lfs(repo, f.sha256, f.size)
                self.hub.lfs.touch(f.sha256)  # when the LFS store holds it too: gc's grace covers the commit
            self.store.put_shard(checked.body)

    def _verify(self, f: XetFile) -> None:
        """Check that ``f``'s content hashes to the sha256 the shard claims (400 otherwise). A file hash
        recorded before with the same sha256 needs no new read: same chunk hashes, same content."""
        known = self.store.file(f.hash)
        if known is not None and known.sha256 == f.sha256:
            return
        digest = hashlib.sha256()
        for piece in self.store.chunk_data(f.terms):
            digest.update(piece)
        if digest.hexdigest() != f.sha256:
            raise self._mismatch(f, digest.hexdigest())

    @staticmethod
    def _mismatch(f: XetFile, actual: str) -> XetFormatError:
        return XetFormatError(f"File {hash_to_str(f.hash)}: the shard says its sha256 is {f.sha256}, "
                              f"but its content hashes to {actual}.")

    # -- cross-repo copies -----------------------------------------------------------------------

    def duplicate(self, source: Repo, target: Repo, files: list[Any]) -> list[dict[str, str]]:
        """Link the Xet files ``files`` (``{xetHash, sha256, filename}`` each) of ``source`` to ``target``
        (access was checked); returns the failures, one ``{sha256, error}`` each."""
        failed = []
        for item in files:
            sha = item.get("sha256") if isinstance(item, dict) else None
            xet = item.get("xetHash") if isinstance(item, dict) else None
            if not isinstance(sha, str) or not isinstance(xet, str):
                failed.append({"sha256": str(sha), "error": "Each file needs 'sha256' and 'xetHash' strings."})
                continue
            f = self.store.file_by_sha256(sha) if is_valid_oid(sha) else None
            if f is None or not self.hub.meta.lfs_linked(source, sha) or hash_to_str(f.hash) != xet:
                failed.append({"sha256": sha, "error": f"No Xet file {xet} with sha256 {sha} in {source.public_id}."})
                continue
            self.hub.meta.link_lfs(target, sha, f.size)
        return failed

    # -- global dedup ------------------------------------------------------------------------------

    def dedup_shard(self, chunk: bytes) -> bytes | None:
        """The dedup answer for a chunk hash: a shard listing the xorbs of a file that holds it (up to
        :data:`DEDUP_MAX_XORBS`, the nearest first), None if unknown. The client asks about only ~1
        chunk in 1024, so naming the whole file's xorbs is what lets a fine-tune skip its unchanged
        tensors, as xet-core's own server does by answering with the whole shard that held the chunk."""
        found = self.store.file_with_chunk(chunk)
        if found is None:
            return None
        f, holder = found
        order = list(dict.fromkeys(t.xorb for t in f.terms))
        position = {xh: i for i, xh in enumerate(order)}
        hit = position.get(holder, 0)
        order.sort(key=lambda xh: abs(position[xh] - hit))
        blocks = []
        for xh in order[:DEDUP_MAX_XORBS]:
            x = self.store.xorb(xh)
            if x is None:
                continue
            starts, pos = [], 0
            for n in x.lengths:
                starts.append(pos)
                pos += n
            blocks.append(CasBlock(xorb=x.hash, chunks=tuple(CasChunk(h, s, n) for h, s, n in
                                                               zip(x.hashes, starts, x.lengths)),
                                   unpacked_total=pos, stored_bytes=x.stream_size))
        now = int(time.time())
        return build_dedup_shard(blocks, key=os.urandom(32), created=now, expiry=now + DEDUP_KEY_TTL)

    # -- downloads ---------------------------------------------------------------------------------

    def file_for(self, grant: CasGrant, h: bytes) -> XetFile:
        """The Xet file ``h`` if the token's repo holds it; 404 otherwise (whether or not it exists)."""
        f = self.store.file(h)
        if f is None or not self.hub.meta.lfs_linked(grant.repo, f.sha256):
            raise NotFoundError(f"File {hash_to_str(h)} is not in this repository.")
        return f

    def reconstruction(self, grant: CasGrant, h: bytes, range_header: str | None, cas_url: str,
                       version: int) -> dict[str, Any]:
        """The reconstruction of file ``h`` (bytes ``Range``, 416 past the end) in the v1 or v2 shape."""
        f = self.file_for(grant, h)
        rng = parse_range(range_header, f.size)
        start, end = rng if rng is not None else (0, f.size - 1)
        terms, offset = self._terms_for(f, start, end)
        wanted: dict[bytes, list[tuple[int, int]]] = {}
        for xh, cs, ce, _ in terms:
            wanted.setdefault(xh, []).append((cs, ce))
        out: dict[str, Any] = {
            "offset_into_first_range": offset,
            "terms": [{"hash": hash_to_str(xh), "unpacked_length": n, "range": {"start": cs, "end": ce}}
                      for xh, cs, ce, n in terms],
        }
        fetch: dict[str, list[dict[str, Any]]] = {}
        for xh, ranges in wanted.items():
            x = self.store.xorb(xh)
            if x is None:
                raise NotFoundError(f"Xorb {hash_to_str(xh)} of file {hash_to_str(h)} is missing from this hub.")
            merged = _merge(ranges)
            spans = [(cs, ce, *x.byte_range(cs, ce)) for cs, ce in merged]
            name = hash_to_str(xh)
            if self.store.remote is not None:  # presigned GETs of the bucket's object, one per range
                remote = self.store.remote
                fetch[name] = [{"range": {"start": cs, "end": ce},
                                "url": remote.blob_range_url(xorb_name(xh), a, b, XORB_URL_TTL),
                                "url_range": {"start": a, "end": b}} if version == 1 else
                               {"url": remote.blob_range_url(xorb_name(xh), a, b, XORB_URL_TTL),
                                "ranges": [{"chunks": {"start": cs, "end": ce}, "bytes": {"start": a, "end": b}}]}
                               for cs, ce, a, b in spans]
            elif version == 1:
                fetch[name] = [{"range": {"start": cs, "end": ce}, "url": self.xorb_url(cas_url, x, [(a, b)]),
                                "url_range": {"start": a, "end": b}} for cs, ce, a, b in spans]
            else:
                fetch[name] = [{"url": self.xorb_url(cas_url, x, [(a, b) for _, _, a, b in spans]),
                                "ranges": [{"chunks": {"start": cs, "end": ce}, "bytes": {"start": a, "end": b}}
                                           for cs, ce, a, b in spans]}]
        out["fetch_info" if version == 1 else "xorbs"] = fetch
        return out

    def _terms_for(self, f: XetFile, start: int, end: int) -> tuple[list[tuple[bytes, int, int, int]], int]:
        """The terms covering bytes ``[start, end]``, trimmed to whole chunks: (xorb, chunk start, chunk
        end, unpacked bytes) each, and the offset of ``start`` into the first of them."""
        out: list[tuple[bytes, int, int, int]] = []
        offset, pos = 0, 0
        for term in f.terms:
            if pos > end:
                break
            if pos + term.unpacked <= start:
                pos += term.unpacked
                continue
            x = self.store.xorb(term.xorb)
            if x is None:
                raise NotFoundError(f"Xorb {hash_to_str(term.xorb)} of file {hash_to_str(f.hash)} is missing.")
            cs, p = term.start, pos
            while p + x.lengths[cs] <= start:
                p += x.lengths[cs]
                cs += 1
            if not out:
                offset = start - p
            ce, q = cs, p
            while ce < term.end and q <= end:
                q += x.lengths[ce]
                ce += 1
            out.append((term.xorb, cs, ce, q - p))
            pos += term.unpacked
        return out, offset

    # -- signed xorb ranges --------------------------------------------------------------------------

    def xorb_url(self, cas_url: str, x: StoredXorb, ranges: list[tuple[int, int]]) -> str:
        """A URL that serves exactly ``ranges`` (inclusive) of a stored xorb, with no token, for an hour."""
        spec = ",".join(f"{a}-{b}" for a, b in ranges)
        name = hash_to_str(x.hash)
        return f"{cas_url}/xorb/{name}?r={spec}&{self.hub.sign(_xorb_payload(name, spec), ttl=XORB_URL_TTL)}"

    def signed_xorb(self, name: str, spec: str | None, expires: str | None, sig: str | None) -> tuple[StoredXorb,
                                                                                                       list[tuple[int, int]]]:
        """The stored xorb and the byte ranges a signed URL allows (401 for a bad or stale signature)."""
        self.hub.verify_signature(_xorb_payload(name, spec or ""), expires, sig)
        x = self.store.xorb(str_to_hash(name))
        if x is None:
            raise NotFoundError(f"Xorb {name} is not stored on this hub.")
        ranges = []
        for part in (spec or "").split(","):
            a, _, b = part.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise XetFormatError("Malformed range list in a xorb URL.")
            ranges.append((int(a), int(b)))
        return x, ranges


def _xorb_payload(name: str, spec: str) -> str:
    return f"xet-xorb|{name}|{spec}"


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Chunk ranges ``[start, end)`` sorted, with overlapping or touching ones joined."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
