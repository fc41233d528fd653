"""FUSE passthrough of cached blobs (hubfs.mount.passthrough), through real kernel mounts, on and off.

A file whose complete blob is in the mount's cache is opened in passthrough: the kernel reads and maps
the blob itself, so the mount's own page cache stays empty (``cachestat`` of the mounted file: 0 pages)
while the bytes are the blob's. ``HUBFS_MOUNT_PASSTHROUGH=0`` mounts as before (libfuse's own mount;
the mounted file's pages are cached). Every read is compared with the bytes uploaded.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import mmap
import os
import random
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest
from mounting import MiB, Mount, alive, hubfs, is_mounted, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")

ON_LINE = "FUSE passthrough of cached blobs: on"
OFF = {"HUBFS_MOUNT_PASSTHROUGH": "0"}


class _CacheStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


def mount_pages(path: Path) -> int:
    """Pages of the mounted file ``path`` in the mount's own page cache (``cachestat``, Linux 6.5+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    st = _CacheStat()
    fd = os.open(path, os.O_RDONLY)
    try:
        span = _Range(0, os.fstat(fd).st_size)
        assert libc.syscall(ctypes.c_long(451), ctypes.c_long(fd), ctypes.byref(span), ctypes.byref(st),
                            ctypes.c_long(0)) == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)
    return int(st.cache)


def read_all(path: Path) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return b"".join(iter(lambda: f.read(MiB), b""))


def mapped(path: Path) -> bytes:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        return bytes(m)


def upload(api, rid: str, files: dict[str, bytes], message: str = "upload") -> None:
    from huggingface_hub import CommitOperationAdd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        api.create_commit(rid, [CommitOperationAdd(p, c) for p, c in files.items()], commit_message=message)


def prefill(api, rid: str, paths: list[str], cache: Path) -> None:
    """Put the complete blobs of ``paths`` into the hub cache ``cache`` (the mount's ``--cache-dir``)."""
    for path in paths:
        api.hf_hub_download(rid, path, cache_dir=str(cache))


def _safetensors() -> tuple[bytes, dict]:
    import torch
    from safetensors.torch import save

    g = torch.Generator().manual_seed(7)
    tensors = {"a": torch.randn(300, 200, generator=g), "b": torch.arange(5000, dtype=torch.int32)}
    return save(tensors), tensors


@pytest.fixture(scope="module")
def repo(api) -> dict:
    """A repo of several files; all but ``cold.bin`` are prefilled into each test's cache."""
    import uuid

    rng = random.Random(21)
    st, tensors = _safetensors()
    files = {"README.md": b"# passthrough\n", "small.txt": b"x" * 5000, "big.bin": rng.randbytes(24 * MiB + 77),
             "mid.bin": rng.randbytes(9 * MiB + 5), "model.safetensors": st, "cold.bin": rng.randbytes(10 * MiB + 3)}
    rid = f"admin/pt-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    upload(api, rid, files)
    return {"repo": rid, "files": files, "tensors": tensors, "cached": [p for p in files if p != "cold.bin"]}


def _mount(mounter, api, repo: dict, tmp_path: Path, name: str, env: dict[str, str] | None = None) -> Mount:
    cache = tmp_path / f"cache-{name}"
    prefill(api, repo["repo"], repo["cached"], cache)
    return mounter(repo["repo"], "--cache-dir", str(cache), env=env, name=name)


@pytest.mark.parametrize("way", ["on", "off"])
def test_reads_are_the_blobs_bytes(mounter, api, repo, tmp_path, way) -> None:
    """cat, sha256sum, read(), pread() and mmap give the uploaded bytes, both ways; on: cached blobs pass
    through (no page of the mounted file cached), the uncached file is read through the daemon."""
    import numpy as np
    import torch
    from safetensors import safe_open

    mount = _mount(mounter, api, repo, tmp_path, way, None if way == "on" else OFF)
    files: dict[str, bytes] = repo["files"]
    assert (ON_LINE in mount.log.read_text()) == (way == "on")
    with open(mount / "cold.bin", "rb", buffering=0) as cold:  # no blob in the cache: read through the daemon
        assert cold.read(2 * MiB) == files["cold.bin"][:2 * MiB]
        assert mount_pages(mount / "cold.bin") >= 2 * MiB // mmap.PAGESIZE
    cat = subprocess.run(["cat", *files], cwd=mount.path, capture_output=True, check=True).stdout
    assert cat == b"".join(files.values())
    sums = subprocess.run(["sha256sum", *files], cwd=mount.path, capture_output=True, text=True, check=True).stdout
    assert {ln.split("  ", 1)[1]: ln.split("  ", 1)[0] for ln in sums.splitlines()} == {
        p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    for path, data in files.items():
        assert read_all(mount / path) == data, path
        if data:
            assert mapped(mount / path) == data, path
        pages = mount_pages(mount / path)
        if way == "off":
            assert pages == -(-len(data) // mmap.PAGESIZE), path  # read through the mount's page cache
        elif path != "cold.bin":  # (read whole by now, the mount may have kept it in the cache)
            assert pages == 0, path  # the kernel read the blob itself
    rng = random.Random(3)
    data = files["big.bin"]
    with open(mount / "big.bin", "rb", buffering=0) as f:
        for _ in range(50):
            off, n = rng.randrange(len(data)), rng.choice([1, 4096, 70_000, 3 * MiB])
            assert os.pread(f.fileno(), n, off) == data[off:off + n]
    arr = np.memmap(mount / "mid.bin", dtype=np.uint8, mode="r")
    assert arr.tobytes() == files["mid.bin"]
    del arr
    with safe_open(str(mount / "model.safetensors"), framework="pt") as st:
        for name, tensor in repo["tensors"].items():
            assert torch.equal(st.get_tensor(name), tensor), name


@pytest.mark.parametrize("way", ["on", "off"])
def test_concurrent_readers_byte_checked(mounter, api, repo, tmp_path, way) -> None:
    """Threads reading random ranges of several files at once (each opening, reading, closing, and some
    holding one handle across reads), every range compared with the original."""
    mount = _mount(mounter, api, repo, tmp_path, way, None if way == "on" else OFF)
    files: dict[str, bytes] = repo["files"]
    names = ["big.bin", "mid.bin", "model.safetensors", "cold.bin", "small.txt"]
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        held = {n: os.open(mount / n, os.O_RDONLY) for n in names} if seed % 2 else {}
        try:
            for _ in range(60):
                name = rng.choice(names)
                data = files[name]
                off, n = rng.randrange(len(data)), rng.choice([1, 4096, 65_536, MiB, 4 * MiB])
                if name in held:
                    got = os.pread(held[name], n, off)
                else:
                    fd = os.open(mount / name, os.O_RDONLY)
                    try:
                        got = os.pread(fd, n, off)
                    finally:
                        os.close(fd)
                if got != data[off:off + n]:
                    errors.append(f"{name} [{off}, +{n})")
        except OSError as exc:
            errors.append(f"{exc!r}")
        finally:
            for fd in held.values():
                os.close(fd)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    if way == "on":
        assert mount_pages(mount / "big.bin") == 0


def test_cached_mode_and_passthrough_on_one_file(mounter, api, repo, tmp_path) -> None:
    """A file opened before its blob was cached stays in cached mode while that handle is open: a second
    open (blob now cached) falls back to it instead of failing; once both are closed, the next open
    passes through."""
    cache = tmp_path / "cache-mix"
    mount = mounter(repo["repo"], "--cache-dir", str(cache), name="mix")
    data = repo["files"]["mid.bin"]
    with open(mount / "mid.bin", "rb", buffering=0) as first:
        assert first.read(MiB) == data[:MiB]  # read through the daemon: the mount's pages
        prefill(api, repo["repo"], ["mid.bin"], cache)
        with open(mount / "mid.bin", "rb", buffering=0) as second:  # blob cached now, the inode is not free
            assert b"".join(iter(lambda: second.read(MiB), b"")) == data
            assert mapped(mount / "mid.bin") == data
        assert os.pread(first.fileno(), 4096, len(data) - 4096) == data[-4096:]
        assert mount_pages(mount / "mid.bin") == -(-len(data) // mmap.PAGESIZE)  # all in the mount's page cache
    with open(mount / "mid.bin", "rb", buffering=0) as third:  # passes through; its open dropped the old pages
        assert b"".join(iter(lambda: third.read(MiB), b"")) == data
        assert mount_pages(mount / "mid.bin") == 0
        with open(mount / "mid.bin", "rb", buffering=0) as fourth:  # a second passthrough open: same backing
            assert os.pread(fourth.fileno(), MiB, 3 * MiB) == data[3 * MiB:4 * MiB]
        assert mapped(mount / "mid.bin") == data
    assert mount_pages(mount / "mid.bin") == 0


def test_refresh_changes_a_passed_through_file(mounter, api, repo_id, tmp_path) -> None:
    """After a push changes a file open in passthrough: the open handle keeps reading what it opened, a
    new open reads the new bytes (read() comes to the daemon: the inode can hold one backing file only),
    and once every handle is closed the next open passes the new blob through."""
    old, new = random.Random(1).randbytes(3 * MiB + 1), random.Random(2).randbytes(2 * MiB + 9)
    upload(api, repo_id, {"f.bin": old, "keep.txt": b"same\n"}, "v1")
    cache = tmp_path / "cache-refresh"
    prefill(api, repo_id, ["f.bin", "keep.txt"], cache)
    mount = mounter(repo_id, "--refresh", "0.5", "--cache-dir", str(cache))
    with open(mount / "f.bin", "rb", buffering=0) as held:
        assert held.read() == old and mount_pages(mount / "f.bin") == 0
        upload(api, repo_id, {"f.bin": new}, "v2")
        prefill(api, repo_id, ["f.bin"], cache)
        deadline = time.monotonic() + 20
        while os.stat(mount / "f.bin").st_size != len(new):
            assert time.monotonic() < deadline, "the mount never switched to the new commit"
            time.sleep(0.1)
        assert read_all(mount / "f.bin") == new
        assert os.pread(held.fileno(), MiB, MiB) == old[MiB:2 * MiB]
    assert read_all(mount / "f.bin") == new
    assert mapped(mount / "f.bin") == new
    assert mount_pages(mount / "f.bin") == 0
    assert read_all(mount / "keep.txt") == b"same\n"


def test_unmount_leaves_nothing_behind(mounter, api, repo, tmp_path) -> None:
    """`hubfs umount` and SIGTERM both end a passthrough mount: no mount, no daemon, no FUSE connection."""
    conns = set(os.listdir("/sys/fs/fuse/connections")) if os.path.isdir("/sys/fs/fuse/connections") else set()
    first = _mount(mounter, api, repo, tmp_path, "um1")
    second = _mount(mounter, api, repo, tmp_path, "um2")
    for m in (first, second):
        assert ON_LINE in m.log.read_text()
        with open(m / "big.bin", "rb") as f:
            assert f.read(MiB) == repo["files"]["big.bin"][:MiB]
    done = hubfs("umount", str(first.path))
    assert done.returncode == 0 and not is_mounted(first.path), done.stderr
    os.kill(second.pid, 15)
    deadline = time.monotonic() + 10
    while (alive(first.pid) or alive(second.pid) or is_mounted(second.path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(first.pid) and not alive(second.pid) and not is_mounted(second.path)
    assert "stopped by a signal" in second.log.read_text()
    if conns or os.path.isdir("/sys/fs/fuse/connections"):
        deadline = time.monotonic() + 5
        while set(os.listdir("/sys/fs/fuse/connections")) - conns and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not set(os.listdir("/sys/fs/fuse/connections")) - conns


# -- direct I/O of big weights that are not cached yet ---------------------------------------------------

DIRECT = {"HUBFS_MOUNT_DIRECT_READS": "1"}


@pytest.fixture(scope="module")
def weights(api) -> dict:
    """A repo with a checkpoint just over the direct I/O size (hubfs.mount.ops.DIRECT_MIN), a text file as
    big, and a small checkpoint."""
    import uuid

    import torch
    from safetensors.torch import save

    from hubfs.mount.ops import DIRECT_MIN

    g = torch.Generator().manual_seed(11)
    tensors = {"w": torch.randn(DIRECT_MIN // 4 + 4099, generator=g), "b": torch.arange(777, dtype=torch.int64)}
    files = {"model.safetensors": save(tensors), "table.csv": random.Random(5).randbytes(DIRECT_MIN + 1),
             "small.safetensors": save({"x": torch.ones(10)})}
    rid = f"admin/direct-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    upload(api, rid, files)
    return {"repo": rid, "files": files, "tensors": tensors}


@pytest.mark.parametrize("way", ["direct", "paged"])
def test_cold_weights_read_direct_then_pass_through(mounter, weights, tmp_path, way) -> None:
    """A big checkpoint with no cached blob: read() and pread() of any size, and a shared mmap
    (``safe_open``) while it is open, give the original bytes; with direct I/O no page of it lands in the
    mount's page cache (by default every page does). Read whole, its blob is
    kept, and the next open passes through. Big text files and small checkpoints never go direct."""
    import torch
    from safetensors import safe_open

    from hubfs.client.cache import HubCache

    mount = mounter(weights["repo"], "--cache-dir", str(tmp_path / "cache"), env=DIRECT if way == "direct" else None)
    assert ON_LINE in mount.log.read_text()
    data = weights["files"]["model.safetensors"]
    rng = random.Random(8)
    with open(mount / "model.safetensors", "rb", buffering=0) as f:
        assert b"".join(iter(lambda: f.read(MiB), b"")) == data
        for _ in range(30):
            off, n = rng.randrange(len(data)), rng.choice([1, 4096, 70_001, MiB, 5 * MiB])
            assert os.pread(f.fileno(), n, off) == data[off:off + n]
        pages = mount_pages(mount / "model.safetensors")
        # paged: its pages went through the mount's page cache (not a full count: under the suite's load
        # the kernel may already have reclaimed some of these 64 MiB)
        assert pages == 0 if way == "direct" else pages > 0, (way, pages, -(-len(data) // mmap.PAGESIZE))
        with safe_open(str(mount / "model.safetensors"), framework="pt") as st:  # mapped while held open
            for name, tensor in weights["tensors"].items():
                assert torch.equal(st.get_tensor(name), tensor), name
        del st  # unmapped: the kernel releases the file once f is closed too
    gc.collect()
    blob = HubCache(tmp_path / "cache").blob("model", weights["repo"], hashlib.sha256(data).hexdigest())
    wait_for(blob.exists, what="the blob of the checkpoint read whole")
    deadline = time.monotonic() + 10
    while True:  # complete blob now: passes through (once the daemon saw the release the kernel sends late)
        with open(mount / "model.safetensors", "rb", buffering=0) as again:
            assert b"".join(iter(lambda: again.read(4 * MiB), b"")) == data  # noqa: B023
            if mount_pages(mount / "model.safetensors") == 0:
                break
        assert time.monotonic() < deadline, "the kept checkpoint never passed through"
        time.sleep(0.1)
    for name in ("table.csv", "small.safetensors"):  # not direct: through the mount's page cache
        with open(mount / name, "rb", buffering=0) as f:  # (held: once closed, the kept blob passes through)
            assert b"".join(iter(lambda: f.read(MiB), b"")) == weights["files"][name]
            assert mount_pages(mount / name) == -(-len(weights["files"][name]) // mmap.PAGESIZE), name


def test_cold_weights_concurrent_direct_readers_byte_checked(mounter, weights, tmp_path) -> None:
    """Threads reading random ranges of a cold checkpoint through direct I/O at once (each holding its own
    handle, some mapping it), alongside one sequential reader: every range is the original's."""
    mount = mounter(weights["repo"], "--cache-dir", str(tmp_path / "cache"), env=DIRECT)
    data = weights["files"]["model.safetensors"]
    errors: list[str] = []

    def random_reads(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with open(mount / "model.safetensors", "rb", buffering=0) as f:
                view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) if seed % 3 == 0 else None
                for _ in range(40):
                    off, n = rng.randrange(len(data)), rng.choice([1, 4096, 65_536, MiB, 3 * MiB + 5])
                    got = view[off:off + n] if view is not None else os.pread(f.fileno(), n, off)
                    if got != data[off:off + n]:
                        errors.append(f"[{off}, +{n})")
                if view is not None:
                    view.close()
        except OSError as exc:
            errors.append(repr(exc))

    def sequential() -> None:
        try:
            if read_all(mount / "model.safetensors") != data:
                errors.append("sequential read differs")
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=random_reads, args=(k,)) for k in range(6)] + [threading.Thread(target=sequential)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


# -- the policy and the reply edits, without a kernel -------------------------------------------------


class _Ids:
    """Backings whose backing ids come from a counter instead of the kernel (records opens and closes)."""

    def __init__(self) -> None:
        from hubfs.mount.passthrough import Backings, Channel

        channel = Channel()
        channel.enabled = True
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.b = Backings(channel)
        self.b._ioctl_open = self._open  # type: ignore[method-assign]
        self.b._close = self.closed.append  # type: ignore[method-assign]

    def _open(self, fd: int) -> int:
        self.opened.append(len(self.opened) + 1)
        return self.opened[-1]


def test_policy_never_mixes_io_modes_on_one_path() -> None:
    from hubfs.mount.passthrough import PAGE_CACHE, Route

    ids = _Ids()
    b = ids.b
    assert b.open("a", "e1", None) == PAGE_CACHE  # no blob: through the page cache
    assert b.open("a", "e1", 5) == PAGE_CACHE  # blob now, but a cached handle is open: stays cached
    b.release("a", False)
    b.release("a", False)
    assert b.open("a", "e1", 5) == Route(1)  # free: passes through
    assert b.open("a", "e1", None) == Route(1)  # open in passthrough: every open passes, same backing
    b.release("a", True)
    b.release("a", True)
    assert b.open("a", "e1", 5) == Route(1) and ids.opened == [1]  # the idle backing is reused
    b.changed(["a"])  # a refresh changed it while open
    assert b.open("a", "e2", 6) == Route(1, direct=True)  # still the old backing, reads come to the daemon
    b.release("a", True)
    b.release("a", True)
    assert ids.closed == [1]  # the changed path's backing went with its last handle
    assert b.open("a", "e2", 6) == Route(2)
    b.release("a", True)
    b.changed(["a"])  # idle: dropped at once
    assert ids.closed == [1, 2]


def test_policy_direct_io_only_for_uncached_files_with_passthrough_on() -> None:
    """``direct``: granted to an open with no complete blob, on a path not open in passthrough, and only
    once passthrough is on (such a kernel maps direct I/O files); it counts as a page-cache handle (a
    shared mmap of it puts the inode in the page-cache mode), so the path passes through after it."""
    from hubfs.mount.passthrough import PAGE_CACHE, Route

    ids = _Ids()
    b = ids.b
    assert b.open("w", "e1", None, direct=True) == Route(direct=True)
    assert b.open("w", "e1", 5, direct=True) == PAGE_CACHE  # complete blob, but the direct handle is open
    b.release("w", False)
    b.release("w", False)
    assert b.open("w", "e1", 5, direct=True) == Route(1)  # complete and free: passes through
    assert b.open("w", "e1", None, direct=True) == Route(1)  # the path is in passthrough: so is every open
    b.release("w", True)
    b.release("w", True)
    ids.b.channel.enabled = False  # passthrough off (refused by the kernel): no direct I/O either
    assert b.open("x", "e1", None, direct=True) == PAGE_CACHE


def test_reply_edits() -> None:
    """INIT asks for passthrough and shared mmap of direct I/O files (flags2 bits, max_stack_depth) only
    with FUSE_INIT_EXT; an OPEN reply gets
    FOPEN_PASSTHROUGH and its backing id only for a marked fh, and loses keep_cache."""
    import struct

    from hubfs.mount import passthrough as pt

    def iov(*bufs: ctypes.Array) -> ctypes.Array:
        return (pt.IOVec * len(bufs))(*(pt.IOVec(ctypes.addressof(b), ctypes.sizeof(b)) for b in bufs))

    header = ctypes.create_string_buffer(struct.pack("<IiQ", 80, 0, 2), 16)
    for ext in (True, False):
        ch = pt.Channel()
        init = ctypes.create_string_buffer(struct.pack("<IIII", 7, 38, 0, pt.FUSE_INIT_EXT if ext else 0), 64)
        ch._edit(iov(header, init), 2)
        flags2, depth = struct.unpack_from("<II", init.raw, 32)
        asked = (pt.FUSE_PASSTHROUGH | pt.FUSE_DIRECT_IO_ALLOW_MMAP) >> 32
        assert (flags2, depth, ch.asked) == ((asked, pt.MAX_STACK_DEPTH, True) if ext else (0, 0, False))
    ch.mark(41, 7)
    ch.mark(43, 8, direct=True)
    for fh, want in ((41, (pt.FOPEN_PASSTHROUGH, 7)), (42, (pt.FOPEN_KEEP_CACHE, 0)),
                     (43, (pt.FOPEN_PASSTHROUGH | pt.FOPEN_DIRECT_IO, 8))):
        out = ctypes.create_string_buffer(struct.pack("<QIi", fh, pt.FOPEN_KEEP_CACHE, 0), 16)
        ch._edit(iov(header, out), 2)
        assert struct.unpack("<QIi", out.raw) == (fh, *want), fh
    assert not ch._marks
