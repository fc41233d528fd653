"""Rewriting the cached stat data of git index entries, so that files replaced behind git's back read as clean.

git keeps, for each path in ``.git/index``, the ``lstat`` of the file it last wrote or checked (ctime,
mtime, dev, ino, uid, gid, size; mode is the entry's own). :func:`restat` replaces those fields for chosen
paths with the ``lstat`` of the file now there, under git's own lock protocol (``index.lock`` created
exclusively, written, renamed over ``index``), and rewrites the trailing checksum. Files changed in the
same clock tick as the index (git compares seconds, or nanoseconds where built with them) are "racily
clean" to git, which reads them once more on its next look, as it does after any checkout. An entry is
only changed when its cached stat still describes the file the caller replaced (``expected``: the replaced
file's ``os.stat_result``), so a path git touched since is left alone.

Contract: index versions 2, 3 and 4, SHA-1 or SHA-256 repositories (``hash_size`` 20 or 32); every
byte but the changed stat fields and the checksum stays as it was (entries keep their size, so the
offsets in the ``EOIE``/``IEOT`` extensions stay valid). Returns the paths it changed; an index it
cannot take (locked by a running git, split, unknown version, malformed) changes nothing and returns
an empty set: git then compares those files' content on its next look, which is slower, never wrong.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path

__all__ = ["restat"]

HEADER = struct.Struct(">4sII")
STAT = struct.Struct(">10I")  # ctime s, ns; mtime s, ns; dev; ino; mode; uid; gid; size
EXTENDED = 0x4000
NAME_MASK = 0x0FFF
U32 = 0xFFFFFFFF
NS = 1_000_000_000


def restat(git_dir: Path, worktree: Path, expected: Mapping[str, os.stat_result], hash_size: int = 20) -> set[str]:
    """Give the index entries of ``expected``'s paths (relative, ``/``-separated) the ``lstat`` of their
    worktree files, where the entry still holds ``expected[path]``'s (see the module docstring)."""
    index, lock = git_dir / "index", git_dir / "index.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError:
        return set()
    done = False
    try:
        data = bytearray(index.read_bytes())
        changed = _patch(data, worktree, expected, hash_size)
        if not changed:
            return set()
        data[-hash_size:] = _digest(hash_size, memoryview(data)[:-hash_size])
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.close(fd)
        fd = -1
        os.replace(lock, index)
        done = True
        return changed
    except (OSError, ValueError, struct.error):
        return set()
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            lock.unlink(missing_ok=True)


def _digest(hash_size: int, data: memoryview) -> bytes:
    return (hashlib.sha1(data) if hash_size == 20 else hashlib.sha256(data)).digest()


def _patch(data: bytearray, worktree: Path, expected: Mapping[str, os.stat_result], hash_size: int) -> set[str]:
    magic, version, count = HEADER.unpack_from(data, 0)
    if magic != b"DIRC" or version not in (2, 3, 4) or len(data) < HEADER.size + hash_size:
        return set()
    if bytes(_digest(hash_size, memoryview(data)[:-hash_size])) != bytes(data[-hash_size:]):
        return set()  # not an index this code understands (or a torn one): leave it to git
    wanted = {p.encode("utf-8", "surrogateescape"): p for p in expected}
    changed: set[str] = set()
    pos, previous = HEADER.size, b""
    fixed = STAT.size + hash_size + 2
    for _ in range(count):
        start = pos
        flags = struct.unpack_from(">H", data, start + STAT.size + hash_size)[0]
        pos = start + fixed + (2 if flags & EXTENDED and version >= 3 else 0)
        if version == 4:
            strip, pos = _varint(data, pos)
            end = data.index(0, pos)
            name = previous[:len(previous) - strip] + bytes(data[pos:end])
            pos = end + 1
        else:
            length = flags & NAME_MASK
            end = data.index(0, pos) if length == NAME_MASK else pos + length
            name = bytes(data[pos:end])
            pos = start + ((end - start + 8) & ~7)
        previous = name
        path = wanted.get(name)
        if path is not None and _restat_entry(data, start, worktree / path, expected[path]):
            changed.add(path)
    if pos > len(data) - hash_size:
        raise ValueError("index entries run past the end of the file")
    return changed


def _restat_entry(data: bytearray, start: int, file: Path, old: os.stat_result) -> bool:
    fields = list(STAT.unpack_from(data, start))
    # size 0: git's mark of an entry it wrote in the same clock tick as the index ("racily clean")
    same = (fields[5] == old.st_ino & U32 and fields[2] == (old.st_mtime_ns // NS) & U32
            and fields[9] in (old.st_size & U32, 0))
    if not same:
        return False  # git wrote or looked at this path again since: its own stat stands
    try:
        st = file.lstat()
    except OSError:
        return False
    fields[0:6] = [(st.st_ctime_ns // NS) & U32, st.st_ctime_ns % NS, (st.st_mtime_ns // NS) & U32,
                   st.st_mtime_ns % NS, st.st_dev & U32, st.st_ino & U32]
    fields[7:10] = [st.st_uid & U32, st.st_gid & U32, st.st_size & U32]
    STAT.pack_into(data, start, *fields)
    return True


def _varint(data: bytearray, pos: int) -> tuple[int, int]:
    """git's offset varint (``decode_varint``): the value and the position after it."""
    byte = data[pos]
    value = byte & 0x7F
    pos += 1
    while byte & 0x80:
        byte = data[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
        pos += 1
    return value, pos
