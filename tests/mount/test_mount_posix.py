"""POSIX details of real mounts: statfs (df), folder link counts, renameat2 flags, and the modes, owners and
times a read-write mount keeps for what it staged (and the times of remote files it was asked to touch)."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from mounting import alive, committed, errno_of, hubfs, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")

AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FILES = {"a/b/c.txt": b"c" * 5000, "a/d/e.txt": b"e" * 7, "a/f.txt": b"f" * 12345, "top.txt": b"t", "x/y.txt": b"y"}


def renameat2(old: Path, new: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@pytest.fixture
def seeded(api: HfApi, repo_id: str) -> str:
    api.create_commit(repo_id, [CommitOperationAdd(p, d) for p, d in FILES.items()], commit_message="seed")
    return repo_id


def total_size(api: HfApi, rid: str) -> int:
    return sum(getattr(e, "size", 0) or 0 for e in api.list_repo_tree(rid, recursive=True) if hasattr(e, "blob_id"))


def test_read_only_statfs_link_counts_and_erofs(mounter, api, seeded) -> None:
    mount = mounter(seeded)
    root = mount.path
    st = os.statvfs(root)
    size = total_size(api, seeded)
    assert st.f_namemax == 255 and st.f_bsize == st.f_frsize == 4096
    assert st.f_blocks == (size + st.f_frsize - 1) // st.f_frsize and st.f_bfree == st.f_bavail == 0
    df = subprocess.run(["df", "-B1", "--output=size,used,avail", str(root)], capture_output=True, text=True,
                        check=True).stdout.split()
    assert df[-3:] == [str(st.f_blocks * 4096), str(st.f_blocks * 4096), "0"]

    assert os.stat(root).st_nlink == 4  # a, x
    assert os.stat(root / "a").st_nlink == 4  # b, d
    assert os.stat(root / "a/b").st_nlink == 2 and os.stat(root / "a/f.txt").st_nlink == 1

    assert errno_of(lambda: renameat2(root / "top.txt", root / "new.txt", RENAME_NOREPLACE)) == errno.EROFS
    assert errno_of(lambda: os.utime(root / "top.txt", ns=(1, 1))) == errno.EROFS
    assert errno_of(lambda: os.chmod(root / "top.txt", 0o600)) == errno.EROFS


def test_read_write_statfs_and_link_counts(mounter, api, seeded, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mount = mounter(seeded, "--read-write", "--commit-delay", "3600", "--cache-dir", str(cache))
    root = mount.path
    st, disk = os.statvfs(root), os.statvfs(cache)
    free = disk.f_bavail * disk.f_frsize
    assert st.f_namemax == 255 and st.f_bsize == st.f_frsize == 4096
    assert st.f_bfree == st.f_bavail and abs(st.f_bavail * 4096 - free) < max(free // 20, 64 << 20)
    assert st.f_blocks == (total_size(api, seeded) + 4095) // 4096 + st.f_bfree

    before = os.stat(root / "a").st_mtime_ns
    os.mkdir(root / "a/new")
    os.mkdir(root / "a/new/sub")
    assert os.stat(root / "a").st_mtime_ns > before and os.stat(root / "a").st_ctime_ns > before  # a new entry
    assert os.stat(root / "a").st_nlink == 5 and os.stat(root / "a/new").st_nlink == 3
    os.rename(root / "a/b", root / "z")  # a remote folder moves
    assert os.stat(root).st_nlink == 5 and os.stat(root / "a").st_nlink == 4 and os.stat(root / "z").st_nlink == 2
    os.rmdir(root / "a/new/sub")
    assert os.stat(root / "a/new").st_nlink == 2


def test_rename_flags(mounter, api, hub, seeded) -> None:
    """RENAME_NOREPLACE: EEXIST on any existing target; RENAME_EXCHANGE swaps files and folders (staged or remote),
    durably: a SIGKILLed daemon's next mount shows and commits the swapped tree."""
    mount = mounter(seeded, "--read-write", "--commit-delay", "3600")
    root = mount.path
    (root / "local.txt").write_bytes(b"local\n")
    assert errno_of(lambda: renameat2(root / "local.txt", root / "top.txt", RENAME_NOREPLACE)) == errno.EEXIST
    assert errno_of(lambda: renameat2(root / "a/f.txt", root / "x/y.txt", RENAME_NOREPLACE)) == errno.EEXIST
    assert (root / "local.txt").read_bytes() == b"local\n" and (root / "top.txt").read_bytes() == b"t"
    renameat2(root / "local.txt", root / "moved.txt", RENAME_NOREPLACE)
    renameat2(root / "a/f.txt", root / "x/f.txt", RENAME_NOREPLACE)
    assert not (root / "local.txt").exists() and (root / "moved.txt").read_bytes() == b"local\n"
    assert (root / "x/f.txt").read_bytes() == FILES["a/f.txt"]

    assert errno_of(lambda: renameat2(root / "moved.txt", root / "nope", RENAME_EXCHANGE)) == errno.ENOENT
    renameat2(root / "moved.txt", root / "top.txt", RENAME_EXCHANGE)  # a staged file and a remote one
    assert (root / "moved.txt").read_bytes() == b"t" and (root / "top.txt").read_bytes() == b"local\n"
    renameat2(root / "a", root / "x", RENAME_EXCHANGE)  # two remote folders
    assert sorted(os.listdir(root / "a")) == ["f.txt", "y.txt"] and sorted(os.listdir(root / "x")) == ["b", "d"]
    renameat2(root / "moved.txt", root / "x/d", RENAME_EXCHANGE)  # a file and a folder
    assert (root / "x/d").read_bytes() == b"t" and os.listdir(root / "moved.txt") == ["e.txt"]
    expected = {"top.txt": b"local\n", "a/f.txt": FILES["a/f.txt"], "a/y.txt": b"y", "x/b/c.txt": FILES["a/b/c.txt"],
                "x/d": b"t", "moved.txt/e.txt": FILES["a/d/e.txt"]}

    os.kill(mount.pid, signal.SIGKILL)
    wait_for(lambda: not alive(mount.pid), what="the daemon to die")
    assert hubfs("umount", str(root)).returncode == 0
    n = len(api.list_repo_commits(seeded))
    again = mounter(seeded, "--read-write", "--commit-delay", "0.2", name="again")
    assert {p: (again.path / p).read_bytes() for p in expected} == expected
    wait_for(lambda: len(api.list_repo_commits(seeded)) == n + 1, what="the swapped tree to be committed")
    assert committed(hub, seeded) == expected


def test_modes_owners_and_times(mounter, api, seeded, tmp_path: Path) -> None:
    mount = mounter(seeded, "--read-write", "--commit-delay", "3600")
    root = mount.path
    # a new file keeps its creation mode, chmod and utimensat until its commit
    os.close(os.open(root / "new.bin", os.O_CREAT | os.O_WRONLY, 0o600))
    assert stat.S_IMODE(os.stat(root / "new.bin").st_mode) == 0o600
    os.chmod(root / "new.bin", 0o640)
    os.utime(root / "new.bin", ns=(1_000_000_000_123, 2_000_000_000_456))
    st = os.stat(root / "new.bin")
    assert stat.S_IMODE(st.st_mode) == 0o640 and (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000_123, 2_000_000_000_456)

    (root / "x/y.txt").write_bytes(b"overwritten\n")  # a remote file overwritten: staged, so its mode is kept
    os.chmod(root / "x/y.txt", 0o600)
    assert stat.S_IMODE(os.stat(root / "x/y.txt").st_mode) == 0o600

    # cp -p, install -m, touch -d of files made here
    src = tmp_path / "src.sh"
    src.write_bytes(b"#!/bin/sh\n")
    os.chmod(src, 0o751)
    os.utime(src, ns=(1_500_000_000_000_000_000, 1_600_000_000_000_000_000))
    subprocess.run(["cp", "-p", str(src), str(root / "copied.sh")], check=True)
    subprocess.run(["install", "-m", "0700", str(src), str(root / "installed.sh")], check=True)
    copied = os.stat(root / "copied.sh")
    assert stat.S_IMODE(copied.st_mode) == 0o751 and copied.st_mtime_ns == 1_600_000_000_000_000_000
    assert stat.S_IMODE(os.stat(root / "installed.sh").st_mode) == 0o700
    subprocess.run(["touch", "-d", "@1234567890", str(root / "installed.sh")], check=True)
    assert os.stat(root / "installed.sh").st_mtime == 1234567890

    # folders made here: mode, chmod, and files another user creates in them are theirs
    os.mkdir(root / "pub", 0o700)
    assert stat.S_IMODE(os.stat(root / "pub").st_mode) == 0o700
    os.chmod(root / "pub", 0o777)
    os.utime(root / "pub", ns=(5_000_000_000, 5_000_000_000))
    assert stat.S_IMODE(os.stat(root / "pub").st_mode) == 0o777 and os.stat(root / "pub").st_mtime_ns == 5_000_000_000
    code = "import os, sys; os.setgid(65534); os.setuid(65534); open(sys.argv[1], 'wb').write(b'nobody')"
    subprocess.run([sys.executable, "-c", code, "theirs.txt"], cwd=root / "pub", check=True)  # tmp_path is 0700
    theirs = os.stat(root / "pub/theirs.txt")
    assert (theirs.st_uid, theirs.st_gid) == (65534, 65534)
    os.chown(root / "pub/theirs.txt", 0, 0)  # root may give it away (kept until committed)
    assert (os.stat(root / "pub/theirs.txt").st_uid, os.stat(root / "pub/theirs.txt").st_gid) == (0, 0)

    # remote (committed) files: touch is remembered for the life of the mount, chmod and chown stay EPERM
    os.utime(root / "top.txt", ns=(3_000_000_000, 4_000_000_000))
    st = os.stat(root / "top.txt")
    assert (st.st_atime_ns, st.st_mtime_ns) == (3_000_000_000, 4_000_000_000)
    subprocess.run(["touch", "-d", "@1111111111", str(root / "a")], check=True)
    assert os.stat(root / "a").st_mtime == 1111111111
    assert errno_of(lambda: os.chmod(root / "top.txt", 0o600)) == errno.EPERM
    assert errno_of(lambda: os.chown(root / "top.txt", 1, 1)) == errno.EPERM
    assert errno_of(lambda: os.chmod(root / "a", 0o700)) == errno.EPERM
    os.rename(root / "top.txt", root / "top2.txt")  # the remembered times follow a rename
    assert os.stat(root / "top2.txt").st_mtime_ns == 4_000_000_000

    # a commit (fsync) keeps the remembered times of remote files; what it committed is a remote file now
    fd = os.open(root / "new.bin", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert os.stat(root / "top2.txt").st_mtime_ns == 4_000_000_000
    assert errno_of(lambda: os.chmod(root / "new.bin", 0o600)) == errno.EPERM
