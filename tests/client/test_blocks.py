"""The sparse block cache: fetches only missing blocks, shares them, promotes complete objects."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from byte_source import recording_source as _source

from hubfs.client.blocks import BlockCache, gaps, merge
from hubfs.client.cache import HubCache

BLOCK = 64 * 1024


def test_reads_fetch_missing_blocks_once(tmp_path: Path) -> None:
    data = os.urandom(10 * BLOCK + 123)
    oid = hashlib.sha256(data).hexdigest()
    blocks = BlockCache(HubCache(tmp_path))
    calls: list[tuple[int, int]] = []
    assert blocks.read(oid, len(data), 100, 200, _source(data, calls)) == data[100:200]
    assert calls == [(100, 100)], "exactly what was asked"
    assert blocks.read(oid, len(data), 150, BLOCK + 10, _source(data, calls)) == data[150:BLOCK + 10]
    assert calls[1:] == [(200, BLOCK + 10 - 200)], "only the missing part is fetched"
    calls.clear()
    again = BlockCache(HubCache(tmp_path))  # another process sees the same ranges
    assert again.read(oid, len(data), 120, BLOCK, _source(data, calls)) == data[120:BLOCK]
    assert calls == []
    assert again.read(oid, len(data), 0, 3 * BLOCK, _source(data, calls)) == data[: 3 * BLOCK]
    assert calls == [(0, 100), (BLOCK + 10, 2 * BLOCK - 10)], "each gap is one exact fetch"


def test_range_helpers() -> None:
    assert merge([(5, 9), (0, 3), (3, 4), (8, 12)]) == [(0, 4), (5, 12)]
    assert gaps([(0, 4), (5, 12)], 2, 20) == [(4, 5), (12, 20)]
    assert gaps([], 0, 10) == [(0, 10)] and gaps([(0, 10)], 3, 7) == []


def test_complete_objects_are_verified_and_promoted(tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK + 5)
    oid = hashlib.sha256(data).hexdigest()
    cache = HubCache(tmp_path)
    blocks = BlockCache(cache)
    blocks.read(oid, len(data), 0, BLOCK, _source(data, []))
    assert blocks.promote(oid, len(data), "model", "a/b", "c" * 40, "w.bin") is None, "incomplete stays sparse"
    blocks.read(oid, len(data), 0, len(data), _source(data, []))
    linked = blocks.promote(oid, len(data), "model", "a/b", "c" * 40, "w.bin")
    assert linked is not None and linked.read_bytes() == data
    assert cache.blob("model", "a/b", oid).exists() and not list((tmp_path / ".hubfs-blocks").iterdir())


def test_corrupted_blocks_are_never_promoted(tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK)
    oid = hashlib.sha256(data).hexdigest()
    blocks = BlockCache(HubCache(tmp_path))
    bad = bytearray(data)
    bad[7] ^= 1
    blocks.read(oid, len(data), 0, len(data), _source(bytes(bad), []))
    assert blocks.promote(oid, len(data), "model", "a/b", "c" * 40, "w.bin") is None
    assert not HubCache(tmp_path).blob("model", "a/b", oid).exists()
