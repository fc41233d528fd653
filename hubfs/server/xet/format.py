"""Xet wire formats, ported from xet-core (hashes, xorbs, shards): pure functions, no I/O.

Sources (huggingface/xet-core): merklehash/{data_hash,aggregated_hashes}.rs, xorb_object/{xorb_chunk_format,
compression_scheme,constants}.rs, metadata_shard/{shard_format,file_structs,xorb_structs,chunk_verification,
constants,utils}.rs. A hash is 32 raw bytes as stored on the wire; its string form is four little-endian u64 words,
each printed as 16 lowercase hex digits. Every malformed input raises :class:`XetFormatError` (HTTP 400).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import blake3
import lz4.frame  # type: ignore[import-untyped]

from hubfs.errors import BadRequestError


class XetFormatError(BadRequestError):
    """A Xet hash, xorb or shard is malformed or does not match what it claims."""

    code = "XetFormatError"


HASH_LEN = 32
MAX_CHUNK_BYTES = 128 * 1024  # client: TARGET_CHUNK_SIZE * MAXIMUM_CHUNK_MULTIPLIER, strictly enforced
MAX_COMPRESSED_CHUNK_BYTES = 2 * MAX_CHUNK_BYTES  # xorb_chunk_format.rs validate()
MAX_XORB_BYTES = 64 * 1024 * 1024  # uncompressed total; the client cuts a xorb before exceeding it
MAX_XORB_CHUNKS = 8 * 1024  # the client cuts before chunk 8193
CHUNK_HEADER_LEN = 8
# A real client stores a chunk raw when compression does not shrink it, so a body never exceeds this.
MAX_XORB_BODY = MAX_XORB_BYTES + CHUNK_HEADER_LEN * MAX_XORB_CHUNKS
DEDUP_MODULUS = 1024  # MDB_SHARD_GLOBAL_DEDUP_CHUNK_MODULUS

DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155,
                  235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41])
INTERNAL_NODE_KEY = bytes([1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111,
                           55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63])
VERIFICATION_KEY = bytes([127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243, 164, 205, 38, 213,
                          181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195])

_WORDS = struct.Struct("<4Q")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_XORB_FOOTER_IDENT = b"XETBLOB"


# ---------------------------------------------------------------- hashes


def hash_to_str(h: bytes) -> str:
    """The hash's string form: four little-endian u64 words, each as 16 lowercase hex digits."""
    if len(h) != HASH_LEN:
        raise XetFormatError(f"a Xet hash is {HASH_LEN} bytes, got {len(h)}")
    return "{:016x}{:016x}{:016x}{:016x}".format(*_WORDS.unpack(h))


def str_to_hash(s: str) -> bytes:
    """Inverse of :func:`hash_to_str`; anything but exactly 64 hex digits raises XetFormatError."""
    if not isinstance(s, str) or not _HEX64.fullmatch(s):
        raise XetFormatError(f"not a Xet hash (64 hex digits): {str(s)[:80]!r}")
    return _WORDS.pack(*(int(s[i:i + 16], 16) for i in range(0, 64, 16)))


def _sort_key(h: bytes) -> tuple[int, ...]:
    """xet-core's order on hashes (``[u64; 4]`` compared word by word)."""
    return _WORDS.unpack(h)


def _truncate(h: bytes) -> int:
    """The lookup-table key of a hash: its first word (``utils.rs truncate_hash``)."""
    return int.from_bytes(h[:8], "little")


def chunk_hash(data: bytes | memoryview) -> bytes:
    """BLAKE3 keyed with DATA_KEY over the chunk's uncompressed bytes."""
    return blake3.blake3(data, key=DATA_KEY).digest()


def _next_cut(nodes: Sequence[tuple[bytes, int]], start: int) -> int:
    """End of the group starting at ``start``: 2..9 nodes, cut after a node (index >= 2) whose hash % 4 == 0."""
    left = len(nodes) - start
    if left <= 2:
        return len(nodes)
    end = min(9, left)
    for i in range(2, end):
        if int.from_bytes(nodes[start + i][0][24:32], "little") % 4 == 0:
            return start + i + 1
    return start + end


def _merkle_root(nodes: Sequence[tuple[bytes, int]]) -> bytes:
    """Aggregated hash of (hash, length) nodes (``aggregated_hashes.rs``); 32 zero bytes for none."""
    if not nodes:
        return bytes(HASH_LEN)
    level = list(nodes)
    while len(level) > 1:
        merged: list[tuple[bytes, int]] = []
        i = 0
        while i < len(level):
            end = _next_cut(level, i)
            group = level[i:end]
            text = "".join(f"{hash_to_str(h)} : {size}\n" for h, size in group).encode()
            merged.append((blake3.blake3(text, key=INTERNAL_NODE_KEY).digest(), sum(size for _, size in group)))
            i = end
        level = merged
    return level[0][0]


def xorb_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The xorb hash: Merkle root over its (chunk hash, uncompressed length) list."""
    return _merkle_root(chunks)


def file_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The file hash: BLAKE3 keyed with 32 zero bytes over the Merkle root of all its chunks; zeros when empty."""
    if not chunks:
        return bytes(HASH_LEN)
    return blake3.blake3(_merkle_root(chunks), key=bytes(HASH_LEN)).digest()


def verification_hash(chunk_hashes: Sequence[bytes]) -> bytes:
    """A term's verification hash: BLAKE3 keyed with VERIFICATION_KEY over its raw chunk hashes, concatenated."""
    return blake3.blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()


def dedup_eligible(h: bytes) -> bool:
    """The client's global-dedup test on a chunk hash (last LE u64 word % 1024 == 0); the client also queries
    the first chunk of every file, which this does not cover."""
    return int.from_bytes(h[24:32], "little") % DEDUP_MODULUS == 0


def hmac_hash(h: bytes, key: bytes) -> bytes:
    """A chunk hash as stored in a keyed (dedup) shard; an all-zero key means no keying, as in xet-core."""
    return h if key == bytes(HASH_LEN) else blake3.blake3(h, key=key).digest()


# ---------------------------------------------------------------- xorbs


@dataclass(frozen=True)
class XorbContent:
    """A decoded xorb: chunk hashes and uncompressed chunk bytes, in order."""

    hashes: list[bytes]
    chunks: list[bytes]

    @property
    def lengths(self) -> list[int]:
        return [len(c) for c in self.chunks]


def _lz4(payload: memoryview, size: int, where: str) -> bytes:
    """Decompress one LZ4 frame that must yield exactly ``size`` bytes; never produces more than size + 1."""
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        out = d.decompress(payload, max_length=size + 1)
    except (RuntimeError, ValueError, EOFError) as e:  # lz4 raises RuntimeError on corrupt frames
        raise XetFormatError(f"{where}: corrupt LZ4 frame ({e})") from None
    if len(out) > size:
        raise XetFormatError(f"{where}: decompresses to more than the declared {size} bytes")
    if not d.eof:
        raise XetFormatError(f"{where}: LZ4 frame is truncated ({len(out)} of {size} bytes decoded)")
    if d.unused_data:
        raise XetFormatError(f"{where}: {len(d.unused_data)} bytes after the end of the LZ4 frame")
    if len(out) != size:
        raise XetFormatError(f"{where}: decompresses to {len(out)} bytes, header says {size}")
    return bytes(out)


def _bg4_regroup(g: bytes) -> bytes:
    """Undo BG4: the input is 4 byte planes (plane k = bytes k, k+4, ...), concatenated."""
    n = len(g)
    out = bytearray(n)
    view = memoryview(g)
    pos = 0
    for k in range(4):
        size = (n - k + 3) // 4
        out[k::4] = view[pos:pos + size]
        pos += size
    return bytes(out)


def decode_xorb(body: bytes | memoryview, expected: bytes | None = None) -> XorbContent:
    """Walk, decompress, bound-check and hash every chunk of an uploaded (footerless) xorb.

    Chunk = 8-byte header (version u8 == 0, compressed length u24 LE, scheme u8, uncompressed length u24 LE) +
    payload; schemes 0 raw, 1 LZ4 frame, 2 BG4 planes + LZ4 frame. With ``expected``, the xorb hash must equal it.
    Clients never send the xorb footer (``file_upload_session.rs``: "XORBs are sent without footer"), so one is
    rejected. Decompression is bounded by each header's declared length.
    """
    view = memoryview(body).cast("B")
    n = len(view)
    if n == 0:
        raise XetFormatError("empty xorb: a xorb holds at least one chunk")
    if n > MAX_XORB_BODY:
        raise XetFormatError(f"xorb body is {n} bytes, more than the {MAX_XORB_BODY} a xorb can take")
    hashes: list[bytes] = []
    chunks: list[bytes] = []
    total = pos = 0
    while pos < n:
        i = len(chunks)
        where = f"chunk {i} at offset {pos}"
        if view[pos:pos + 7] == _XORB_FOOTER_IDENT:
            raise XetFormatError(f"{where}: xorb footer found; uploaded xorbs must not carry one")
        if i >= MAX_XORB_CHUNKS:
            raise XetFormatError(f"{where}: more than {MAX_XORB_CHUNKS} chunks in one xorb")
        if n - pos < CHUNK_HEADER_LEN:
            raise XetFormatError(f"{where}: truncated chunk header ({n - pos} of {CHUNK_HEADER_LEN} bytes)")
        w0, w1 = struct.unpack_from("<II", view, pos)
        version, clen, scheme, ulen = w0 & 0xFF, w0 >> 8, w1 & 0xFF, w1 >> 8
        if version != 0:
            raise XetFormatError(f"{where}: unknown chunk header version {version}")
        if scheme not in (0, 1, 2):
            raise XetFormatError(f"{where}: unknown compression scheme {scheme}")
        if ulen == 0:
            raise XetFormatError(f"{where}: empty chunk")
        if ulen > MAX_CHUNK_BYTES:
            raise XetFormatError(f"{where}: {ulen} bytes uncompressed, more than {MAX_CHUNK_BYTES}")
        if clen > MAX_COMPRESSED_CHUNK_BYTES:
            raise XetFormatError(f"{where}: {clen} bytes compressed, more than {MAX_COMPRESSED_CHUNK_BYTES}")
        if total + ulen > MAX_XORB_BYTES:
            raise XetFormatError(f"{where}: xorb exceeds {MAX_XORB_BYTES} uncompressed bytes")
        start = pos + CHUNK_HEADER_LEN
        if start + clen > n:
            raise XetFormatError(f"{where}: truncated payload ({n - start} of {clen} bytes)")
        payload = view[start:start + clen]
        if scheme == 0:
            if clen != ulen:
                raise XetFormatError(f"{where}: uncompressed chunk with lengths {clen} != {ulen}")
            data = bytes(payload)
        elif scheme == 1:
            data = _lz4(payload, ulen, where)
        else:
            data = _bg4_regroup(_lz4(payload, ulen, where))
        chunks.append(data)
        hashes.append(chunk_hash(data))
        total += ulen
        pos = start + clen
    content = XorbContent(hashes, chunks)
    if expected is not None:
        got = xorb_hash(list(zip(hashes, content.lengths)))
        if got != expected:
            raise XetFormatError(f"xorb hash is {hash_to_str(got)}, not {hash_to_str(expected)} as claimed")
    return content


def plain_header(size: int) -> bytes:
    """The 8-byte header of a chunk of ``size`` bytes stored raw (scheme 0)."""
    return struct.pack("<II", size << 8, size << 8)  # version 0, scheme 0, compressed == uncompressed


def encode_plain_xorb(chunks: Sequence[bytes]) -> bytes:
    """The xorb with every chunk stored raw (scheme 0): header + bytes each; chunk i spans plain_offsets()[i:i+2]."""
    for i, c in enumerate(chunks):
        if not 0 < len(c) <= MAX_CHUNK_BYTES:
            raise XetFormatError(f"chunk {i}: {len(c)} bytes, must be 1..{MAX_CHUNK_BYTES}")
    return b"".join(part for c in chunks for part in (plain_header(len(c)), c))


def plain_offsets(lengths: Sequence[int]) -> list[int]:
    """Physical start of each chunk in :func:`encode_plain_xorb`'s output, plus the total length."""
    out = [0]
    for size in lengths:
        out.append(out[-1] + CHUNK_HEADER_LEN + size)
    return out


# ---------------------------------------------------------------- shards

SHARD_TAG = b"HFRepoMetaData\x00" + bytes([85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209,
                                              74, 169])
SHARD_VERSION = 2
MAX_SHARD_BYTES = 64 * 1024 * 1024  # upload-protocol.md: a shard upload is at most 64 MiB
SHARD_FOOTER_VERSION = 1
SHARD_HEADER_LEN = 48
SHARD_FOOTER_LEN = 200
RECORD = 48  # every file-info and CAS-info record
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
BOOKEND = b"\xff" * HASH_LEN + bytes(16)
_HEADER = struct.Struct("<32sQQ")
_REC = struct.Struct("<32sIIII")  # hash + four u32 (file header: flags, n, reserved u64 as two u32)
_FOOTER = struct.Struct("<9Q32s2Q6Q4Q")
_LOOKUP = struct.Struct("<QI")
_CHUNK_LOOKUP = struct.Struct("<QII")


@dataclass(frozen=True)
class Term:
    """Chunks [start, end) of a xorb, ``unpacked`` bytes in all."""

    xorb: bytes
    unpacked: int
    start: int
    end: int


@dataclass(frozen=True)
class ShardFile:
    """A file's reconstruction; ``sha256`` is the LFS oid (the hash-string form of the stored 32 bytes)."""

    file_hash: bytes
    terms: tuple[Term, ...]
    verifications: tuple[bytes, ...] | None
    sha256: str | None


@dataclass(frozen=True)
class CasChunk:
    hash: bytes
    start: int  # unpacked offset in the xorb
    length: int


@dataclass(frozen=True)
class CasBlock:
    xorb: bytes
    chunks: tuple[CasChunk, ...]
    unpacked_total: int
    stored_bytes: int  # "bytes on disk": hf_xet sends 0


@dataclass(frozen=True)
class ShardFooter:
    key: bytes  # HMAC key of the chunk hashes; zeros = unkeyed
    created: int
    expiry: int


@dataclass(frozen=True)
class Shard:
    files: tuple[ShardFile, ...]
    cas: tuple[CasBlock, ...]
    footer: ShardFooter | None = None  # only in stored shards and dedup replies, never in uploads


def _records(view: memoryview, pos: int, limit: int, count: int, what: str) -> list[tuple[bytes, int, int, int, int]]:
    if count * RECORD > limit - pos:  # checked before anything is allocated
        raise XetFormatError(f"{what} claims {count} records, more than the shard holds")
    return [_REC.unpack_from(view, pos + k * RECORD) for k in range(count)]


def _bookend(view: memoryview, pos: int, limit: int, section: str) -> bool:
    if pos + RECORD > limit:
        raise XetFormatError(f"shard truncated at offset {pos}: the {section} section has no bookend")
    if view[pos:pos + HASH_LEN] != b"\xff" * HASH_LEN:
        return False
    if view[pos:pos + RECORD] != BOOKEND:
        raise XetFormatError(f"malformed {section} bookend at offset {pos}")
    return True


def parse_shard(body: bytes | memoryview) -> Shard:
    """Structure of a shard: header, file-info section, CAS section (each to its bookend), then either nothing
    (footer_size 0, as uploaded) or lookup tables + footer, which must then agree with the sections."""
    view = memoryview(body).cast("B")
    n = len(view)
    if n < SHARD_HEADER_LEN + 2 * RECORD:
        raise XetFormatError(f"shard truncated: {n} bytes")
    if n > MAX_SHARD_BYTES:
        raise XetFormatError(f"shard is {n} bytes, more than {MAX_SHARD_BYTES}")
    tag, version, footer_size = _HEADER.unpack_from(view, 0)
    if tag != SHARD_TAG:
        raise XetFormatError("not a shard: wrong header tag")
    if version != SHARD_VERSION:
        raise XetFormatError(f"unsupported shard version {version}")
    if footer_size not in (0, SHARD_FOOTER_LEN):
        raise XetFormatError(f"shard footer size {footer_size}: must be 0 or {SHARD_FOOTER_LEN}")
    limit = n - footer_size
    files: list[ShardFile] = []
    pos = SHARD_HEADER_LEN
    while not _bookend(view, pos, limit, "file-info"):
        h, flags, count, _, _ = _REC.unpack_from(view, pos)
        what = f"file {len(files)} at offset {pos}"
        if flags & ~(FLAG_VERIFICATION | FLAG_METADATA_EXT):
            raise XetFormatError(f"{what}: unknown flags {flags:#010x}")
        n_ver = count if flags & FLAG_VERIFICATION else 0
        n_ext = 1 if flags & FLAG_METADATA_EXT else 0
        recs = _records(view, pos + RECORD, limit, count + n_ver + n_ext, what)
        terms = tuple(Term(x, unpacked, start, end) for x, _, unpacked, start, end in recs[:count])
        for k, t in enumerate(terms):
            if t.start >= t.end:
                raise XetFormatError(f"{what}: term {k} has empty chunk range [{t.start}, {t.end})")
        ver = tuple(r[0] for r in recs[count:count + n_ver]) if flags & FLAG_VERIFICATION else None
        sha = hash_to_str(recs[-1][0]) if n_ext else None
        files.append(ShardFile(h, terms, ver, sha))
        pos += RECORD * (1 + len(recs))
    pos += RECORD
    cas_offset = pos
    cas: list[CasBlock] = []
    while not _bookend(view, pos, limit, "CAS-info"):
        x, _, count, total, stored = _REC.unpack_from(view, pos)
        recs = _records(view, pos + RECORD, limit, count, f"CAS block {len(cas)} at offset {pos}")
        cas.append(CasBlock(x, tuple(CasChunk(h, start, size) for h, start, size, _, _ in recs), total, stored))
        pos += RECORD * (1 + count)
    pos += RECORD
    if footer_size == 0:
        if pos != n:
            raise XetFormatError(f"{n - pos} trailing bytes after the shard's CAS-info section (offset {pos})")
        return Shard(tuple(files), tuple(cas))
    footer = _parse_footer(view, cas_offset, pos, files, cas)
    return Shard(tuple(files), tuple(cas), footer)


def _lookups(files: Sequence[ShardFile], cas: Sequence[CasBlock]) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                                                            list[tuple[int, int, int]]]:
    """The three lookup tables (file, xorb, chunk) xet-core writes for these sections, sorted by key."""
    file_rows: list[tuple[int, int]] = []
    index = 0
    for f in files:
        file_rows.append((_truncate(f.file_hash), index))
        index += 1 + len(f.terms) + (len(f.verifications or ())) + (f.sha256 is not None)
    xorb_rows: list[tuple[int, int]] = []
    chunk_rows: list[tuple[int, int, int]] = []
    index = 0
    for b in cas:
        xorb_rows.append((_truncate(b.xorb), index))
        chunk_rows.extend((_truncate(c.hash), index, k) for k, c in enumerate(b.chunks))
        index += 1 + len(b.chunks)
    return sorted(file_rows), sorted(xorb_rows), sorted(chunk_rows)


def _parse_footer(view: memoryview, cas_offset: int, lookup_offset: int, files: Sequence[ShardFile],
                  cas: Sequence[CasBlock]) -> ShardFooter:
    """Check the footer and its lookup tables (each empty, or exactly the expected entries sorted by key)."""
    n = len(view)
    (fv, fi_off, ci_off, fl_off, fl_n, xl_off, xl_n, cl_off, cl_n, key, created, expiry,
     *_rest, footer_off) = _FOOTER.unpack_from(view, n - SHARD_FOOTER_LEN)
    if fv != SHARD_FOOTER_VERSION:
        raise XetFormatError(f"unsupported shard footer version {fv}")
    layout = (fi_off, ci_off, fl_off, xl_off, cl_off, footer_off)
    want = (SHARD_HEADER_LEN, cas_offset, lookup_offset, lookup_offset + 12 * fl_n,
            lookup_offset + 12 * (fl_n + xl_n), lookup_offset + 12 * (fl_n + xl_n) + 16 * cl_n)
    if layout != want or footer_off != n - SHARD_FOOTER_LEN:
        raise XetFormatError(f"shard footer offsets {layout} do not match the sections {want[:3]} and the body")
    exp_files, exp_xorbs, exp_chunks = _lookups(files, cas)
    got_files = [_LOOKUP.unpack_from(view, fl_off + 12 * k) for k in range(fl_n)]
    got_xorbs = [_LOOKUP.unpack_from(view, xl_off + 12 * k) for k in range(xl_n)]
    got_chunks = [_CHUNK_LOOKUP.unpack_from(view, cl_off + 16 * k) for k in range(cl_n)]
    for name, got, exp in (("file", got_files, exp_files), ("xorb", got_xorbs, exp_xorbs),
                           ("chunk", got_chunks, exp_chunks)):
        if got and (sorted(got) != exp or [g[0] for g in got] != [e[0] for e in exp]):
            raise XetFormatError(f"shard {name} lookup table does not match its records or is not sorted")
    return ShardFooter(key, created, expiry)


def check_file(f: ShardFile, chunks_of: Callable[[bytes], Sequence[tuple[bytes, int]] | None]) -> int:
    """Check a shard's file entry against stored xorbs (``chunks_of(xorb)``: its (chunk hash, length) list or None
    if not stored); returns the file's size. Requires verification records and a sha256."""
    name = f"file {hash_to_str(f.file_hash)}"
    if f.verifications is None:
        raise XetFormatError(f"{name} has no verification records")
    if f.sha256 is None:
        raise XetFormatError(f"{name} has no sha256 metadata")
    everything: list[tuple[bytes, int]] = []
    for k, t in enumerate(f.terms):
        stored = chunks_of(t.xorb)
        if stored is None:
            raise XetFormatError(f"{name} term {k} references xorb {hash_to_str(t.xorb)} which is not stored")
        if not 0 <= t.start < t.end <= len(stored):
            raise XetFormatError(f"{name} term {k}: chunks [{t.start}, {t.end}) out of range, the xorb has {len(stored)}")
        part = list(stored[t.start:t.end])
        size = sum(length for _, length in part)
        if size != t.unpacked:
            raise XetFormatError(f"{name} term {k}: claims {t.unpacked} bytes, its chunks hold {size}")
        if verification_hash([h for h, _ in part]) != f.verifications[k]:
            raise XetFormatError(f"{name} term {k}: wrong verification hash")
        everything.extend(part)
    got = file_hash(everything)
    if got != f.file_hash:
        raise XetFormatError(f"{name}: its chunks hash to {hash_to_str(got)}")
    return sum(length for _, length in everything)


def check_cas_block(b: CasBlock, content_hashes_lengths: Sequence[tuple[bytes, int]]) -> None:
    """A shard's CAS block must list exactly the stored xorb's chunks (hash, unpacked start, length)."""
    name = f"CAS block {hash_to_str(b.xorb)}"
    if len(b.chunks) != len(content_hashes_lengths):
        raise XetFormatError(f"{name} lists {len(b.chunks)} chunks, the xorb has {len(content_hashes_lengths)}")
    offset = 0
    for k, (c, (h, length)) in enumerate(zip(b.chunks, content_hashes_lengths)):
        if (c.hash, c.start, c.length) != (h, offset, length):
            raise XetFormatError(f"{name} chunk {k} is ({hash_to_str(c.hash)}, {c.start}, {c.length}), "
                                 f"the xorb has ({hash_to_str(h)}, {offset}, {length})")
        offset += length
    if b.unpacked_total != offset:
        raise XetFormatError(f"{name} claims {b.unpacked_total} bytes, its chunks hold {offset}")


def _cas_section(blocks: Sequence[CasBlock], key: bytes) -> tuple[list[bytes], list[CasBlock]]:
    out, kept = [], []
    for b in blocks:
        chunks = tuple(CasChunk(hmac_hash(c.hash, key), c.start, c.length) for c in b.chunks)
        kept.append(CasBlock(b.xorb, chunks, b.unpacked_total, b.stored_bytes))
        out.append(_REC.pack(b.xorb, 0, len(chunks), b.unpacked_total, b.stored_bytes))
        out.extend(_REC.pack(c.hash, c.start, c.length, 0, 0) for c in chunks)
    out.append(BOOKEND)
    return out, kept


def encode_upload_shard(files: Sequence[ShardFile], cas: Sequence[CasBlock]) -> bytes:
    """A shard as hf_xet uploads it: footer_size 0, files and CAS blocks in hash order, sections + bookends only."""
    out = [_HEADER.pack(SHARD_TAG, SHARD_VERSION, 0)]
    for f in sorted(files, key=lambda f: _sort_key(f.file_hash)):
        flags = (FLAG_VERIFICATION if f.verifications is not None else 0) | (FLAG_METADATA_EXT if f.sha256 is not None else 0)
        if f.verifications is not None and len(f.verifications) != len(f.terms):
            raise XetFormatError(f"file {hash_to_str(f.file_hash)}: one verification record per term needed")
        out.append(_REC.pack(f.file_hash, flags, len(f.terms), 0, 0))
        out.extend(_REC.pack(t.xorb, 0, t.unpacked, t.start, t.end) for t in f.terms)
        out.extend(v + bytes(16) for v in f.verifications or ())
        if f.sha256 is not None:
            out.append(str_to_hash(f.sha256) + bytes(16))
    out.append(BOOKEND)
    out += _cas_section(sorted(cas, key=lambda b: _sort_key(b.xorb)), bytes(HASH_LEN))[0]
    return b"".join(out)


def build_dedup_shard(blocks: Sequence[CasBlock], key: bytes, created: int, expiry: int) -> bytes:
    """A GET /v1/chunks reply: no files, the CAS blocks (one per xorb, hash order) with chunk hashes keyed by
    ``key``, the xorb and chunk lookup tables, and the 200-byte footer carrying key, creation and expiry times."""
    if len(key) != HASH_LEN:
        raise XetFormatError(f"HMAC key must be {HASH_LEN} bytes")
    unique = {b.xorb: b for b in reversed(blocks)}  # first occurrence of each xorb wins
    ordered = sorted(unique.values(), key=lambda b: _sort_key(b.xorb))
    parts = [_HEADER.pack(SHARD_TAG, SHARD_VERSION, SHARD_FOOTER_LEN), BOOKEND]
    cas_offset = SHARD_HEADER_LEN + RECORD
    section, keyed = _cas_section(ordered, key)
    parts += section
    lookup_offset = cas_offset + RECORD * len(section)
    _, xorbs, chunks = _lookups((), keyed)
    parts += [_LOOKUP.pack(*row) for row in xorbs]
    parts += [_CHUNK_LOOKUP.pack(*row) for row in chunks]
    xl_off = lookup_offset
    cl_off = xl_off + 12 * len(xorbs)
    footer_off = cl_off + 16 * len(chunks)
    on_disk = sum(b.stored_bytes for b in ordered)
    stored = sum(b.unpacked_total for b in ordered)
    parts.append(_FOOTER.pack(SHARD_FOOTER_VERSION, SHARD_HEADER_LEN, cas_offset, lookup_offset, 0, xl_off,
                              len(xorbs), cl_off, len(chunks), key, created, expiry, *[0] * 6, on_disk, 0, stored,
                              footer_off))
    return b"".join(parts)
