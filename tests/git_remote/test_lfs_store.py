"""``git_remote_hf.lfs_store.LfsStore``: git-lfs's object layout under ``.git/lfs``."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from git_remote_hf.lfs_store import LfsStore
from hubfs.errors import IntegrityError
from hubfs.lfs import LfsPointer


def pointer_of(data: bytes) -> LfsPointer:
    return LfsPointer(hashlib.sha256(data).hexdigest(), len(data))


def test_put_verified_stores_at_git_lfs_path_with_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    """``objects/ab/cd/<oid>``, mode 0644 under a 077 umask, nothing else left in its folder."""
    data = os.urandom(20_000)
    pointer = pointer_of(data)
    store = LfsStore(tmp_path)
    old = os.umask(0o077)
    try:
        where = store.put_verified(memoryview(data), pointer)
    finally:
        os.umask(old)
    assert where == tmp_path / "lfs/objects" / pointer.oid[:2] / pointer.oid[2:4] / pointer.oid
    assert where.read_bytes() == data and stat.S_IMODE(where.stat().st_mode) == 0o644
    assert [p.name for p in where.parent.iterdir()] == [pointer.oid]
    assert store.has(pointer.oid, pointer.size) and not store.has(pointer.oid, pointer.size + 1)
    assert store.missing([pointer, pointer_of(b"other")]) == [pointer_of(b"other")]


def test_put_verified_over_a_damaged_object_leaves_the_right_bytes(tmp_path: Path) -> None:
    data = os.urandom(5_000)
    pointer = pointer_of(data)
    store = LfsStore(tmp_path)
    store.path(pointer.oid).parent.mkdir(parents=True)
    store.path(pointer.oid).write_bytes(b"\0" * 5_000)
    store.put_verified(data, pointer)
    assert store.path(pointer.oid).read_bytes() == data


@pytest.mark.parametrize("oid", ["../../etc/passwd", "A" * 64, "ab"])
def test_an_oid_that_is_not_a_sha256_is_refused(tmp_path: Path, oid: str) -> None:
    store = LfsStore(tmp_path)
    for attempt in (lambda: store.put_verified(b"x", LfsPointer(oid, 1)), lambda: store.path(oid),
                    lambda: store.has(oid, 1)):
        with pytest.raises(IntegrityError):
            attempt()
    assert not (tmp_path / "lfs").exists()
