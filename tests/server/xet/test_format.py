"""Xet wire formats (hubfs.server.xet.format) against xet-core's reference vectors and the real hf_xet client.

Golden sources: the hash vectors of xet-core's ``aggregated_hashes.rs test_correctness``; ``hf_xet.hash_files`` for
single-chunk and empty files; and, for everything bigger, what hf_xet 1.8.0 itself uploads to a capturing CAS on
loopback (its xorb URLs carry the xorb hash, its results the file hashes, its shard the terms and sha256), plus the
full shard xet-core writes into its local shard cache.
"""

from __future__ import annotations

import array
import hashlib
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import blake3
import lz4.frame  # type: ignore[import-untyped]
import pytest

from hubfs.server.xet.format import (
    MAX_CHUNK_BYTES,
    MAX_XORB_CHUNKS,
    CasBlock,
    CasChunk,
    ShardFile,
    Term,
    XetFormatError,
    build_dedup_shard,
    check_cas_block,
    check_file,
    chunk_hash,
    decode_xorb,
    dedup_eligible,
    encode_plain_xorb,
    encode_upload_shard,
    file_hash,
    hash_to_str,
    parse_shard,
    plain_offsets,
    str_to_hash,
    verification_hash,
    xorb_hash,
)

# ---------------------------------------------------------------- hashes

# MerkleHash::random_from_seed(i) for i = 1..7 (seed 0 = zeros), from aggregated_hashes.rs; node i has length i*100.
SEEDED = ["0" * 64, "cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6",
          "c3e67584b5c4fc2a89837ec39e40f2c8a6bb0b2987ac94cd4b31e5fbdd210a72",
          "0d2beb91b9196929a5ddec9f6e306924ddf4a24268e3e59fd8464738d525af37",
          "adf8773496a9b7319b2e50dc98093f344053b17d8ad37100b9c07d9805988784",
          "4ac202caf347fc1e9c874b1ef6a1c5e619141eb775a6f43f0f0124ccd0060d9e",
          "b3b28636f65c149ea52eb1f94669466f70f033b54cea792824c696ba6ef3c389",
          "0e2c1a002aae913d2c0fc8ddfa4e9e14b7b311b3b0d458726d5d9f6a6318013c"]
# (node seeds, xorb hash, file hash with salt 0) from xet-core test_correctness
REFERENCE = [
    ([], "0" * 64, "0" * 64),
    ([0], "0" * 64, "638a6bc391964a85939d48f008e8bdbae6a7975e7ca2d87a3ce2492f4e4d8a4c"),
    ([1], SEEDED[1], "8e16257caa3fe079d484d872a8975264b2ff683b0d6db9028cc7c0f968a45661"),
    ([1, 2, 3], "71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc",
     "54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715"),
    ([1, 2, 1, 2, 3, 4], "52c826f99507aa05d0b45e9837fa1709e0485425cfbcb1e80db3905cf98b3ee9",
     "91d21684db364c8883ab8209fa5eb2e781cf07f37e1fa43e731c30839afe422f"),
    ([0, 1, 0, 1, 0], "f36c6a6374a567efd36ed087aeb680b57e3af4e0b5b8e7be2593df4cb647a2de",
     "ab2f46d31855e1133b3b5b70e78f841394a648710a208923b221c1a8a0572a1f"),
    ([3, 4, 5, 5, 5], "2c1fd1eca47e284512fcb40fcf45a1874939f9b91c774d46aeba5d004d9d263d",
     "0799ba7ee2c3fed173a8e8d832cd13970ddc16070ffbc8aa6dcd77476f66dc73"),
    (list(range(8)) + [1, 1, 1, 1], "e7fc30b73ec9930593f80fe777b334e9d3bb73e45e6a79fa5784b2603446158b",
     "69e1af2fd6023ce133e0d1b90e32d1d42ef79f5a710f2b0accfc3a735e98de9d"),
    ([i // 2 for i in range(16)], "636c65db520ec16e8166f9ec7a0cf9f74b26369077ac60160ec0221c86bc9f77",
     "6a90ad0d6f5246ac61f1de898c6944c03e14004a1368e6fb23387108c4d039e0"),
    ([1] * 32, "0a0123c1617921883b7e13902095fcb86676e77c49120c33b233003b0af0e0a6",
     "53af4711fd1d5e5bdc7f931b6be932314d8d673cb16ad2482f6f5222eaf9e63d"),
    ([i % 8 for i in range(64)], "6554007c9b5d0a5e7918f79596a1b68815c1407535585435f5735db761f21b88",
     "a8640ab81d48854e00078e12b1ea8be5d90be0ffb5f73a15b7009981d093ddd8"),
]


DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155, 235,
                  43, 88, 180, 208, 176, 75, 147, 173, 242, 41])  # xet-core data_hash.rs, copied independently


def test_hash_string_is_four_little_endian_words_and_round_trips() -> None:
    h = bytes(range(32))
    s = hash_to_str(h)
    assert s == "0706050403020100" "0f0e0d0c0b0a0908" "1716151413121110" "1f1e1d1c1b1a1918"
    assert str_to_hash(s) == h and str_to_hash(s.upper()) == h
    for seeded in SEEDED:
        assert hash_to_str(str_to_hash(seeded)) == seeded


@pytest.mark.parametrize("bad", ["", "0" * 63, "0" * 65, "g" * 64, " " + "0" * 63, "+" + "0" * 63, "0_" * 32, None, 7])
def test_str_to_hash_rejects_anything_but_64_hex_digits(bad: object) -> None:
    with pytest.raises(XetFormatError):
        str_to_hash(bad)  # type: ignore[arg-type]


def test_hash_to_str_rejects_wrong_length() -> None:
    with pytest.raises(XetFormatError, match="32 bytes"):
        hash_to_str(bytes(31))


@pytest.mark.parametrize(("seeds", "want_xorb", "want_file"), REFERENCE)
def test_merkle_hashes_match_xet_core_reference(seeds: list[int], want_xorb: str, want_file: str) -> None:
    nodes = [(str_to_hash(SEEDED[i]), 100 * i) for i in seeds]
    assert hash_to_str(xorb_hash(nodes)) == want_xorb
    assert hash_to_str(file_hash(nodes)) == want_file


def test_dedup_eligible_reads_the_last_word_little_endian() -> None:
    base = bytearray(32)
    assert dedup_eligible(bytes(base))
    base[24:32] = (1024 * 77).to_bytes(8, "little")
    assert dedup_eligible(bytes(base))
    base[24:32] = (1024 * 77 + 1).to_bytes(8, "little")
    assert not dedup_eligible(bytes(base))
    base[24:32] = bytes([0, 4, 0, 0, 0, 0, 0, 1])  # LE 0x0100000000000400: eligible; read BE it would be odd
    assert dedup_eligible(bytes(base))
    base[24:32] = bytes([1, 0, 0, 0, 0, 0, 4, 0])  # the reverse: eligible only if read big-endian
    assert not dedup_eligible(bytes(base))
    base[24:32], base[0:8] = bytes(8), b"\x01" * 8  # the first word does not matter
    assert dedup_eligible(bytes(base))


def test_verification_hash_is_keyed_blake3_of_concatenated_hashes() -> None:
    hs = [chunk_hash(b"a"), chunk_hash(b"b")]
    assert verification_hash(hs) == verification_hash(hs[:1] + hs[1:])
    assert verification_hash(hs) != verification_hash(hs[::-1])
    key = bytes([127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243, 164, 205, 38, 213, 181, 219,
                 73, 230, 65, 36, 152, 127, 40, 251, 148, 195])
    assert verification_hash(hs) == blake3.blake3(hs[0] + hs[1], key=key).digest()


def test_single_chunk_and_empty_file_hashes_match_hf_xet(tmp_path: Path) -> None:
    hf_xet = pytest.importorskip("hf_xet")
    datas = [b"", b"x", b"hello world\n", os.urandom(1000), os.urandom(8000)]  # < 8 KiB: always a single chunk
    paths = []
    for i, data in enumerate(datas):
        (tmp_path / f"f{i}").write_bytes(data)
        paths.append(str(tmp_path / f"f{i}"))
    for data, info in zip(datas, hf_xet.hash_files(paths)):
        chunks = [(chunk_hash(data), len(data))] if data else []
        assert info.hash == hash_to_str(file_hash(chunks))
        assert info.file_size == len(data)
    assert hash_to_str(file_hash([])) == "0" * 64  # the empty file: no chunks, zero hash (not a keyed hash of zeros)


# ---------------------------------------------------------------- xorbs


def frame(data: bytes, scheme: int) -> bytes:
    """One chunk as a client writes it: header + payload in the given scheme."""
    if scheme == 1:
        payload = lz4.frame.compress(data)
    elif scheme == 2:
        payload = lz4.frame.compress(b"".join(data[k::4] for k in range(4)))
    else:
        payload = data
    return struct.pack("<II", len(payload) << 8, scheme | len(data) << 8) + payload


def raw_header(clen: int, ulen: int, scheme: int = 0, version: int = 0) -> bytes:
    return struct.pack("<II", version | clen << 8, scheme | ulen << 8)


CHOSEN = [b"a", b"abcde", bytes(range(256)) * 16, os.urandom(4097), os.urandom(4098), b"z" * 4099,
          os.urandom(MAX_CHUNK_BYTES), b"\x00\x01" * (MAX_CHUNK_BYTES // 2)]


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_decode_xorb_all_schemes(scheme: int) -> None:
    body = b"".join(frame(c, scheme) for c in CHOSEN)
    want = xorb_hash([(chunk_hash(c), len(c)) for c in CHOSEN])
    content = decode_xorb(body, want)
    assert content.chunks == CHOSEN
    assert content.hashes == [blake3.blake3(c, key=DATA_KEY).digest() for c in CHOSEN]
    assert content.lengths == [len(c) for c in CHOSEN]
    assert decode_xorb(memoryview(body)).hashes == content.hashes


def test_encode_plain_xorb_round_trips_and_offsets_locate_chunks() -> None:
    plain = encode_plain_xorb(CHOSEN)
    offsets = plain_offsets([len(c) for c in CHOSEN])
    assert offsets[-1] == len(plain) and offsets[0] == 0
    for i, c in enumerate(CHOSEN):
        assert plain[offsets[i] + 8:offsets[i + 1]] == c
    assert decode_xorb(plain).chunks == CHOSEN
    with pytest.raises(XetFormatError):
        encode_plain_xorb([b""])


GOOD = frame(b"first chunk", 0)
MALFORMED_XORBS: dict[str, tuple[bytes, str]] = {
    "empty body": (b"", "empty xorb"),
    "bad version": (GOOD + raw_header(1, 1, version=1) + b"x", "chunk 1 at offset 19: unknown chunk header version 1"),
    "bad scheme": (GOOD + raw_header(1, 1, scheme=3) + b"x", "chunk 1 .*compression scheme 3"),
    "truncated header": (GOOD + GOOD[:5], "chunk 1 at offset 19: truncated chunk header"),
    "truncated payload": (GOOD + GOOD[:-1], "chunk 1 .*truncated payload"),
    "trailing bytes": (GOOD + b"\x00\x00", "chunk 1 .*truncated chunk header"),
    "raw length mismatch": (raw_header(3, 4) + b"abc", "lengths 3 != 4"),
    "empty chunk": (raw_header(0, 0), "empty chunk"),
    "oversized chunk": (raw_header(1, MAX_CHUNK_BYTES + 1, scheme=1) + b"x", f"more than {MAX_CHUNK_BYTES}"),
    "oversized compressed": (raw_header(256 * 1024 + 1, 10, scheme=1), "compressed, more than"),
    "lz4 decodes short": (GOOD + frame(b"y" * 100, 1)[:5] + bytes([101]) + frame(b"y" * 100, 1)[6:],
                          "chunk 1 .*decompresses to 100 bytes, header says 101"),
    "lz4 decodes long": (frame(b"y" * 100, 1)[:5] + bytes([99]) + frame(b"y" * 100, 1)[6:], "more than the declared 99"),
    "lz4 garbage": (raw_header(10, 10, scheme=1) + b"0123456789", "corrupt LZ4 frame"),
    "lz4 truncated": (raw_header(len(lz4.frame.compress(b"q" * 50)) - 4, 50, scheme=1) + lz4.frame.compress(b"q" * 50)[:-4],
                      "truncated"),
    "lz4 trailing": (raw_header(len(lz4.frame.compress(b"q" * 50)) + 2, 50, scheme=1) + lz4.frame.compress(b"q" * 50) + b"!!",
                     "2 bytes after the end of the LZ4 frame"),
    "footer": (GOOD + b"XETBLOB\x01" + bytes(64), "chunk 1 .*footer"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_XORBS))
def test_decode_xorb_rejects_malformed(case: str) -> None:
    body, message = MALFORMED_XORBS[case]
    with pytest.raises(XetFormatError, match=message):
        decode_xorb(body)


def test_decode_xorb_lz4_bomb_is_bounded() -> None:
    bomb = lz4.frame.compress(bytes(64 * 1024 * 1024))  # ~260 KB of frame for 64 MiB of zeros
    body = raw_header(len(bomb), 1000, scheme=1) + bomb
    with pytest.raises(XetFormatError, match="compressed, more than"):  # beyond the 256 KiB compressed cap
        decode_xorb(body)
    small_bomb = lz4.frame.compress(bytes(8 * 1024 * 1024))  # fits the compressed cap, expands 8 MiB
    t0 = time.perf_counter()
    with pytest.raises(XetFormatError, match="more than the declared 1000"):
        decode_xorb(raw_header(len(small_bomb), 1000, scheme=2) + small_bomb)
    assert time.perf_counter() - t0 < 0.5  # stopped after ~1 KB of output, never decoded the 8 MiB


def test_decode_xorb_lying_lz4_content_size_fails() -> None:
    header = lz4.frame.compress(bytes(1 << 28), store_size=True)[:15]  # frame header claiming 256 MiB of content
    payload = header + lz4.frame.compress(b"x" * 10, store_size=False)[7:]
    with pytest.raises(XetFormatError, match="chunk 0 .*LZ4"):
        decode_xorb(raw_header(len(payload), 10, scheme=1) + payload)


def test_decode_xorb_caps_chunk_count_and_total_size() -> None:
    one = frame(b"x", 0)
    assert len(decode_xorb(one * MAX_XORB_CHUNKS).chunks) == MAX_XORB_CHUNKS
    with pytest.raises(XetFormatError, match=f"chunk {MAX_XORB_CHUNKS} .*more than {MAX_XORB_CHUNKS} chunks"):
        decode_xorb(one * (MAX_XORB_CHUNKS + 1))
    zeros = frame(bytes(MAX_CHUNK_BYTES), 1)  # 512 of them make exactly 64 MiB
    with pytest.raises(XetFormatError, match="chunk 512 .*exceeds 67108864 uncompressed bytes"):
        decode_xorb(zeros * 513)


def test_decode_xorb_checks_expected_hash() -> None:
    body = b"".join(frame(c, 1) for c in CHOSEN[:3])
    right = xorb_hash([(chunk_hash(c), len(c)) for c in CHOSEN[:3]])
    decode_xorb(body, right)
    with pytest.raises(XetFormatError, match="not " + hash_to_str(bytes(32))):
        decode_xorb(body, bytes(32))
    reordered = xorb_hash([(chunk_hash(c), len(c)) for c in CHOSEN[2::-1]])
    with pytest.raises(XetFormatError):
        decode_xorb(body, reordered)


# ---------------------------------------------------------------- shards

ALPHA = [(chunk_hash(bytes([i]) * (100 + i)), 100 + i) for i in range(6)]
BETA = [(chunk_hash(b"beta%d" % i), 6) for i in range(3)]
XORBS = {xorb_hash(ALPHA): ALPHA, xorb_hash(BETA): BETA}
XA, XB = xorb_hash(ALPHA), xorb_hash(BETA)


def block(x: bytes) -> CasBlock:
    chunks, start = [], 0
    for h, n in XORBS[x]:
        chunks.append(CasChunk(h, start, n))
        start += n
    return CasBlock(x, tuple(chunks), start, 0)


def make_file(ranges: list[tuple[bytes, int, int]], sha: str | None = "ab" * 32, verify: bool = True) -> ShardFile:
    terms = tuple(Term(x, sum(n for _, n in XORBS[x][s:e]), s, e) for x, s, e in ranges)
    chunks = [c for x, s, e in ranges for c in XORBS[x][s:e]]
    ver = tuple(verification_hash([h for h, _ in XORBS[x][s:e]]) for x, s, e in ranges) if verify else None
    return ShardFile(file_hash(chunks), terms, ver, sha)


FILES = [make_file([(XA, 0, 4), (XB, 1, 3)]), make_file([(XA, 2, 6)], sha="cd" * 32), make_file([(XB, 0, 1)], None, False)]
CAS = [block(XA), block(XB)]


def chunks_of(x: bytes) -> list[tuple[bytes, int]] | None:
    return XORBS.get(x)


def sort32(items: list, key: Callable) -> list:
    return sorted(items, key=lambda i: struct.unpack("<4Q", key(i)))


def test_upload_shard_round_trip() -> None:
    body = encode_upload_shard(FILES, CAS)
    shard = parse_shard(body)
    assert shard.footer is None
    assert list(shard.files) == sort32(FILES, lambda f: f.file_hash)
    assert list(shard.cas) == sort32(CAS, lambda b: b.xorb)
    assert struct.unpack_from("<Q", body, 40)[0] == 0  # footer_size 0, as hf_xet uploads
    assert len(body) == 48 + 48 * (6 + 4 + 2 + 1) + 48 * (7 + 4 + 1)
    for f in FILES[:2]:
        assert check_file(f, chunks_of) == sum(t.unpacked for t in f.terms)
    for b in CAS:
        check_cas_block(b, XORBS[b.xorb])


def _corrupt(body: bytes, offset: int, value: bytes) -> bytes:
    return body[:offset] + value + body[offset + len(value):]


def _malformed_shards() -> dict[str, tuple[bytes, str]]:
    body = encode_upload_shard(FILES[:1], CAS[:1])
    first_file_at, n_terms_at = 48, 48 + 36
    cas_at = 48 + 48 * (1 + 2 + 2 + 1) + 48
    return {
        "bad tag": (_corrupt(body, 0, b"X"), "wrong header tag"),
        "bad version": (_corrupt(body, 32, struct.pack("<Q", 3)), "version 3"),
        "bad footer size": (_corrupt(body, 40, struct.pack("<Q", 7)), "footer size 7"),
        "missing bookend": (body[:cas_at - 48], "file-info section has no bookend"),
        "truncated in a section": (body[:cas_at + 10], "CAS-info section has no bookend"),
        "truncated bookend": (body[:-20], "CAS-info section has no bookend"),
        "truncated records": (body[:cas_at + 48 * 3], "CAS block 0 at offset 384 claims 6 records, more than the shard holds"),
        "trailing bytes": (body + b"\x00" * 5, "5 trailing bytes"),
        "absurd term count": (_corrupt(body, n_terms_at, struct.pack("<I", 2**32 - 1)), "claims 8589934591 records"),
        "absurd chunk count": (_corrupt(body, cas_at + 36, struct.pack("<I", 2**31)), "CAS block 0 .*claims 2147483648"),
        "unknown flags": (_corrupt(body, first_file_at + 32, struct.pack("<I", 0xC0000001)), "unknown flags"),
        "empty term range": (_corrupt(body, first_file_at + 48 + 44, struct.pack("<I", 0)), "term 0 has empty chunk range"),
        "bad bookend tail": (_corrupt(body, cas_at - 48 + 40, b"\x01"), "malformed file-info bookend"),
        "too short": (body[:100], "truncated"),
    }


@pytest.mark.parametrize("case", sorted(_malformed_shards()))
def test_parse_shard_rejects_malformed(case: str) -> None:
    body, message = _malformed_shards()[case]
    t0 = time.perf_counter()
    with pytest.raises(XetFormatError, match=message):
        parse_shard(body)
    assert time.perf_counter() - t0 < 0.5


def test_check_file_accepts_good_and_rejects_each_lie() -> None:
    good = FILES[0]
    assert check_file(good, chunks_of) == sum(n for _, n in ALPHA[0:4] + BETA[1:3])
    t0, t1 = good.terms
    cases: list[tuple[ShardFile, str]] = [
        (ShardFile(good.file_hash, (Term(bytes(32), 1, 0, 1), t1), good.verifications, good.sha256),
         "references xorb 0{64} which is not stored"),
        (ShardFile(good.file_hash, (Term(XA, t0.unpacked, 0, 7), t1), good.verifications, good.sha256), "out of range"),
        (ShardFile(good.file_hash, (Term(XA, t0.unpacked + 1, 0, 4), t1), good.verifications, good.sha256),
         "term 0: claims"),
        (ShardFile(good.file_hash, good.terms, (good.verifications or ())[::-1], good.sha256), "verification hash"),
        (ShardFile(bytes(32), good.terms, good.verifications, good.sha256), "its chunks hash to"),
        (ShardFile(good.file_hash, good.terms, good.verifications, None), "no sha256"),
        (ShardFile(good.file_hash, good.terms, None, good.sha256), "no verification records"),
    ]
    for bad, message in cases:
        with pytest.raises(XetFormatError, match=message):
            check_file(bad, chunks_of)


def test_check_cas_block_rejects_mismatches() -> None:
    good = block(XA)
    check_cas_block(good, ALPHA)
    c = list(good.chunks)
    lies = [
        (CasBlock(XA, good.chunks[:-1], good.unpacked_total, 0), "lists 5 chunks"),
        (CasBlock(XA, (CasChunk(bytes(32), 0, c[0].length), *c[1:]), good.unpacked_total, 0), "chunk 0 is"),
        (CasBlock(XA, (c[0], CasChunk(c[1].hash, c[1].start + 1, c[1].length), *c[2:]), good.unpacked_total, 0), "chunk 1"),
        (CasBlock(XA, good.chunks, good.unpacked_total + 1, 0), "claims"),
    ]
    for bad, message in lies:
        with pytest.raises(XetFormatError, match=message):
            check_cas_block(bad, ALPHA)


def test_dedup_shard_parses_and_its_lookup_tables_point_at_the_records() -> None:
    key = os.urandom(32)
    body = build_dedup_shard([block(XB), block(XA), block(XB)], key, 1_700_000_000, 1_700_604_800)
    shard = parse_shard(body)  # footer and lookup tables are cross-checked by the parser
    assert shard.footer is not None and shard.footer.key == key
    assert (shard.footer.created, shard.footer.expiry) == (1_700_000_000, 1_700_604_800)
    assert shard.files == () and [b.xorb for b in shard.cas] == sort32([XA, XB], lambda x: x)
    for b in shard.cas:
        assert [c.hash for c in b.chunks] == [blake3.blake3(h, key=key).digest() for h, _ in XORBS[b.xorb]]
        assert [(c.start, c.length) for c in b.chunks] == [(c.start, c.length) for c in block(b.xorb).chunks]
    footer = struct.unpack_from("<9Q", body, len(body) - 200)
    _, fi, ci, _, fl_n, xl, xl_n, cl, cl_n = footer
    assert (fi, fl_n, xl_n, cl_n) == (48, 0, 2, len(ALPHA) + len(BETA))
    assert struct.unpack_from("<Q", body, 40)[0] == 200 and struct.unpack_from("<Q", body, len(body) - 8)[0] == len(body) - 200
    xorb_rows = [struct.unpack_from("<QI", body, xl + 12 * k) for k in range(xl_n)]
    chunk_rows = [struct.unpack_from("<QII", body, cl + 16 * k) for k in range(cl_n)]
    assert [r[0] for r in xorb_rows] == sorted(r[0] for r in xorb_rows)
    assert [r[0] for r in chunk_rows] == sorted(r[0] for r in chunk_rows)
    for key8, index in xorb_rows:
        assert body[ci + 48 * index:ci + 48 * index + 8] == key8.to_bytes(8, "little")
    for key8, index, k in chunk_rows:
        record = ci + 48 * (index + 1 + k)
        assert body[record:record + 8] == key8.to_bytes(8, "little")
        assert struct.unpack_from("<I", body, ci + 48 * index + 36)[0] > k  # index is a xorb header with > k chunks
    tampered = _corrupt(body, cl, struct.pack("<Q", chunk_rows[0][0] ^ 1))
    with pytest.raises(XetFormatError, match="chunk lookup table"):
        parse_shard(tampered)


# ---------------------------------------------------------------- the real client


class CaptureCAS:
    """A loopback CAS that records what hf_xet sends; GET /v1/chunks answers from ``dedup`` (else 404)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.dedup: dict[str, bytes] = {}
        cas = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"{}") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                cas.requests.append(("GET", self.path, b""))
                reply = cas.dedup.get(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/v1/chunks/") else None
                if reply:
                    self._reply(200, reply)
                else:
                    self._reply(404)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                cas.requests.append(("POST", self.path, body))
                if self.path.startswith("/v1/xorbs/"):
                    self._reply(200, b'{"was_inserted":true}')
                elif self.path in ("/v1/shards", "/v1/telemetry"):
                    self._reply(200, b'{"result":1}')
                else:
                    self._reply(404)  # grants, /v2/shards: the client falls back

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def upload(self, paths: list[Path], cache: Path) -> list[str]:
        """Upload with hf_xet into a fresh cache dir; returns the file hashes hf_xet reports."""
        import hf_xet

        self.requests.clear()
        old = os.environ.get("HF_XET_CACHE")
        os.environ["HF_XET_CACHE"] = str(cache)
        try:
            with hf_xet.XetSession().new_upload_commit(endpoint=f"http://127.0.0.1:{self.server.server_port}",
                                                       token="t", token_expiry_unix_secs=int(time.time()) + 3600) as c:
                handles = [c.start_upload_file(str(p)) for p in paths]
            return [h.result().xet_info.hash for h in handles]
        finally:
            if old is None:
                os.environ.pop("HF_XET_CACHE")
            else:
                os.environ["HF_XET_CACHE"] = old

    def posted(self, prefix: str) -> dict[str, bytes]:
        return {p.rsplit("/", 1)[-1]: b for m, p, b in self.requests if m == "POST" and p.startswith(prefix)}


@pytest.fixture(scope="module")
def cas() -> Iterator[CaptureCAS]:
    pytest.importorskip("hf_xet")
    server = CaptureCAS()
    yield server
    server.server.shutdown()


def _schemes(body: bytes) -> set[int]:
    out, pos = set(), 0
    while pos < len(body):
        w0, w1 = struct.unpack_from("<II", body, pos)
        out.add(w1 & 0xFF)
        pos += 8 + (w0 >> 8)
    return out


def test_real_client_upload_decodes_and_verifies(cas: CaptureCAS, tmp_path: Path) -> None:
    rng = random.Random(os.urandom(8))
    words = [rng.randbytes(3).hex().encode() + b" " for _ in range(300)]
    datas = {
        "random.bin": os.urandom(3_000_000),  # ~46 chunks, stored raw (scheme 0)
        "text.txt": b"".join(rng.choice(words) for _ in range(100_000)),  # LZ4 (scheme 1)
        "floats.bin": array.array("f", (rng.gauss(0, 1) for _ in range(200_000))).tobytes(),  # BG4-LZ4 (scheme 2)
        "small.txt": b"hello " + os.urandom(8),
    }
    paths = []
    for name, data in datas.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    hashes = cas.upload(paths, tmp_path / "cache")
    xorbs = cas.posted("/v1/xorbs/")
    assert xorbs, "hf_xet uploaded no xorb"
    contents = {str_to_hash(h): decode_xorb(body, str_to_hash(h)) for h, body in xorbs.items()}  # URL hash == ours
    assert set().union(*map(_schemes, xorbs.values())) == {0, 1, 2}
    shard_body = cas.posted("/v1/shards")["shards"]
    shard = parse_shard(shard_body)
    assert encode_upload_shard(shard.files, shard.cas) == shard_body  # byte for byte what hf_xet sends
    stored = {x: list(zip(c.hashes, c.lengths)) for x, c in contents.items()}
    by_hash = {f.file_hash: f for f in shard.files}
    for data, h in zip(datas.values(), hashes):
        f = by_hash[str_to_hash(h)]
        assert check_file(f, stored.get) == len(data)  # file hash recomputed from the client's own chunks
        assert f.sha256 == hashlib.sha256(data).hexdigest()
    for b in shard.cas:
        check_cas_block(b, stored[b.xorb])
    queried = {str_to_hash(p.rsplit("/", 1)[-1]) for m, p, _ in cas.requests if p.startswith("/v1/chunks/")}
    firsts = {stored[f.terms[0].xorb][f.terms[0].start][0] for f in shard.files}
    assert firsts <= queried and all(q in firsts or dedup_eligible(q) for q in queried)
    local = list((tmp_path / "cache").glob("*/shard-cache/*.mdb"))  # xet-core's own full shard: footer + lookups
    assert local and {f.file_hash for f in parse_shard(local[0].read_bytes()).files} == set(by_hash)


def test_real_client_dedups_against_our_dedup_shard(cas: CaptureCAS, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(300_000))
    first = cas.upload([tmp_path / "a.bin"], tmp_path / "c1")
    queried = [p.rsplit("/", 1)[-1] for m, p, _ in cas.requests if p.startswith("/v1/chunks/")]
    shard = parse_shard(cas.posted("/v1/shards")["shards"])
    assert queried and len(cas.posted("/v1/xorbs/")) == 1
    now = int(time.time())
    forged = build_dedup_shard(shard.cas, os.urandom(32), now, now + 86400)
    wrong_key = bytearray(forged)
    wrong_key[-200 + 72:-200 + 104] = os.urandom(32)  # hashes keyed with a key the footer does not carry
    cas.dedup = dict.fromkeys(queried, bytes(wrong_key))
    cas.upload([tmp_path / "a.bin"], tmp_path / "c2")
    assert len(cas.posted("/v1/xorbs/")) == 1, "a shard keyed with the wrong key must not dedup"
    cas.dedup = dict.fromkeys(queried, forged)
    again = cas.upload([tmp_path / "a.bin"], tmp_path / "c3")
    cas.dedup = {}
    assert again == first
    assert cas.posted("/v1/xorbs/") == {}, "hf_xet re-uploaded a xorb our dedup shard lists"
    reused = parse_shard(cas.posted("/v1/shards")["shards"])
    assert reused.cas == () and reused.files[0].terms == shard.files[0].terms
