"""The mount's pieces that need no kernel: the entry table, its diff, the errno mapping, mountinfo parsing."""

from __future__ import annotations

import errno
import http.client

from hubfs.client.snapshot import FileEntry
from hubfs.errors import (
    AuthenticationError,
    CacheFullError,
    ConflictError,
    EntryNotFoundError,
    GatedRepoError,
    HubConnectionError,
    HubfsError,
    OfflineEntryNotFoundError,
    OfflineModeError,
    RepoNotFoundError,
    errno_for,
)
from hubfs.mount.daemon import HUGETLB_TUNABLE, MountSpec, daemon_env
from hubfs.mount.kernel import _unescape
from hubfs.mount.tree import Tree


def _f(path: str, size: int, blob: str, lfs: str | None = None) -> FileEntry:
    return FileEntry(path, size, blob, lfs)


def test_tree_from_one_listing() -> None:
    listing = [_f("a.txt", 1, "b1"), FileEntry.folder("x"), _f("x/y/z.bin", 9, "b2", "0" * 64), _f("x/k", 2, "b3")]
    tree = Tree.build("c" * 40, listing, now_ns=5)
    assert tree.listdir("") == ("a.txt", "x") and tree.listdir("x") == ("k", "y") and tree.listdir("x/y") == ("z.bin",)
    assert tree.entry("x/y") is not None and tree.entry("x/y").is_dir  # implied by a file's path
    assert tree.listdir("a.txt") is None and tree.entry("nope") is None
    assert tree.total_size == 12 and set(tree.times.values()) == {5}


def test_tree_diff_and_times() -> None:
    old = Tree.build("1" * 40, [_f("same", 1, "s"), _f("edit", 1, "e1"), _f("gone", 1, "g"), _f("kind", 1, "k")],
                     now_ns=1)
    new = Tree.build("2" * 40, [_f("same", 1, "s"), _f("edit", 2, "e2"), FileEntry.folder("kind"), _f("kind/x", 1, "x"),
                                _f("added", 1, "a")], previous=old, now_ns=2)
    assert old.changed(new) == ["edit", "gone", "kind"]  # only these lose their kernel cache
    assert new.times["same"] == 1 and new.times["edit"] == 2 and new.times["added"] == 2


def test_errno_for() -> None:
    assert errno_for(EntryNotFoundError("x")) == errno.ENOENT
    assert errno_for(RepoNotFoundError("x")) == errno.ENOENT
    assert errno_for(OfflineEntryNotFoundError("x")) == errno.ENOENT
    assert errno_for(AuthenticationError("x")) == errno.EACCES
    assert errno_for(GatedRepoError("x")) == errno.EACCES
    assert errno_for(HubConnectionError("x")) == errno.EIO
    assert errno_for(OfflineModeError("x")) == errno.EIO
    assert errno_for(HubfsError("boom", status=500)) == errno.EIO
    assert errno_for(http.client.IncompleteRead(b"", 10)) == errno.EIO  # a truncated body
    assert errno_for(TimeoutError()) == errno.EIO and errno_for(BlockingIOError(errno.EAGAIN, "stall")) == errno.EIO
    assert errno_for(ConnectionRefusedError(errno.ECONNREFUSED, "no")) == errno.EIO
    assert errno_for(CacheFullError("/c", 1, 0)) == errno.ENOSPC
    assert errno_for(ValueError("I/O operation on closed file.")) == errno.EBADF
    assert errno_for(RuntimeError("?")) == errno.EIO
    for code in (errno.ENOTEMPTY, errno.EEXIST, errno.EINVAL, errno.EXDEV, errno.EPERM, errno.EISDIR):  # staging's
        assert errno_for(OSError(code, "local")) == code
    assert errno_for(ConflictError("x")) == errno.EIO  # a commit conflict is no EEXIST


def test_spec_travels_without_token() -> None:
    spec = MountSpec("/m", "dataset", "ns/name", "v1", "http://h", "/c", 2.0)
    assert MountSpec.from_json(spec.to_json()) == spec and "token" not in spec.to_json()
    assert spec.describe() == "datasets/ns/name@v1" and MountSpec("/m").describe() == "the whole hub"


def test_mountinfo_escapes() -> None:
    assert _unescape(r"/tmp/with\040space\134x") == "/tmp/with space\\x"


def test_daemon_env_asks_glibc_for_huge_pages_unless_switched_off(monkeypatch) -> None:
    monkeypatch.delenv("HUBFS_MOUNT_HUGEPAGES", raising=False)
    env = daemon_env("hf_x", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "HF_TOKEN": "hf_x", "GLIBC_TUNABLES": HUGETLB_TUNABLE}
    kept = daemon_env(None, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"]
    assert kept == f"glibc.malloc.arena_max=2:{HUGETLB_TUNABLE}"  # added to the caller's, not replacing them
    assert daemon_env(None, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
    monkeypatch.setenv("HUBFS_MOUNT_HUGEPAGES", "0")
    assert daemon_env(None, {"PATH": "/bin"}) == {"PATH": "/bin"}


def test_direct_io_is_for_big_weights_and_data_files_only() -> None:
    from hubfs.mount.ops import DIRECT_MIN, reads_direct

    for path in ("model.safetensors", "sub/pytorch_model-00001-of-00002.BIN", "data/train-0.parquet", "m.gguf"):
        assert reads_direct(path, DIRECT_MIN), path
        assert not reads_direct(path, DIRECT_MIN - 1), path  # small: the page cache's read-ahead serves it
    for path in ("train.csv", "data.jsonl", "notes.txt", "archive.tar", "model.safetensors.json"):
        assert not reads_direct(path, 10 * DIRECT_MIN), path  # read line by line or in small blocks
