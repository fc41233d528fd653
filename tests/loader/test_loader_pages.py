"""The loader's host-memory tricks, each tested on and off: huge pages for fresh buffers
(``HUBFS_LOADER_HUGEPAGES``) and populating only tensors not in the page cache (``HUBFS_LOADER_CACHESTAT``).
Both ways, every load stays bit-exact against ``safetensors.torch.load_file``."""

from __future__ import annotations

import gc
import os
import platform
from pathlib import Path

import pytest
import torch
from checkpoints import assert_same, every_dtype
from safetensors.torch import load_file, save_file

from hubfs import loader
from hubfs.loader import pages, pipeline
from hubfs.loader.sources import LocalFile

MiB = 1 << 20
THP = os.path.exists(pages.THP_ENABLED) and "[never]" not in Path(pages.THP_ENABLED).read_text()


def _kernel_has_cachestat() -> bool:
    major, minor = (int(p) for p in platform.release().split(".")[:2])
    return (major, minor) >= (6, 5)


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """A file with tensors of several MiB (huge-page sized) and small ones of every dtype."""
    g = torch.Generator().manual_seed(3)
    tensors = {"a.weight": torch.randn(1024, 1536, generator=g).bfloat16(),  # 3 MiB
               "b.weight": torch.randn(2048, 1024, generator=g),  # 8 MiB
               **every_dtype()}
    path = tmp_path / "big.safetensors"
    save_file(tensors, str(path))
    return path


def _vm_flags(addr: int) -> set[str]:
    """The ``VmFlags`` of this process's mapping holding ``addr`` (``hg``: advised huge pages)."""
    current = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                current = lo <= addr < hi
            elif current and line.startswith("VmFlags:"):
                return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {addr:#x}")


def test_huge_pages_asked_for_only_where_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBFS_LOADER_HUGEPAGES", "0")
    assert not pages.huge_pages_fit(64 * MiB)
    monkeypatch.setenv("HUBFS_LOADER_HUGEPAGES", "1")
    assert not pages.huge_pages_fit(pages.HUGE_MIN - 1)  # too small to hold one
    assert pages.huge_pages_fit(4 * MiB) == THP  # this machine has memory to spare
    monkeypatch.setattr(pages, "_mem_free", lambda: 4 * MiB)
    assert not pages.huge_pages_fit(4 * MiB)  # short of free memory: small pages, never a compaction stall
    small = pages.host_buffer(8 * MiB, huge=False)
    assert "hg" not in _vm_flags(small.data_ptr())
    huge = pages.host_buffer(8 * MiB, huge=True)
    assert ("hg" in _vm_flags(huge.data_ptr())) == THP
    huge.fill_(7)
    assert int(huge.sum()) == 7 * 8 * MiB and huge.numel() == 8 * MiB


@pytest.mark.parametrize("switch", ["1", "0"])
def test_read_path_with_and_without_huge_pages(big: Path, switch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBFS_LOADER_HUGEPAGES", switch)
    advised: list[int] = []
    real = pages.madvise

    def spy(addr: int, length: int, advice: int) -> bool:
        if advice == pages.MADV_HUGEPAGE:
            advised.append(length)
        return real(addr, length, advice)

    monkeypatch.setattr(pages, "madvise", spy)
    got = loader.load(big, mmap=False, threads=2)
    assert_same(got, load_file(str(big)))
    expected = sorted([3 * MiB, 8 * MiB]) if switch == "1" and THP else []
    assert sorted(advised) == expected  # the tensors of 2 MiB or more, and only with the switch on


def _evict(path: Path) -> None:
    """Drop the file from the page cache (its pages mapped by dead tensors are let go first)."""
    gc.collect()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_page_cache_residency(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = LocalFile(big)
    try:
        big.read_bytes()
        if not _kernel_has_cachestat():  # the fallback: unknown, so the loader populates as before
            assert f.in_page_cache(0, f.size) is None and f.probably_in_page_cache() is None
            return
        assert f.in_page_cache(0, f.size) is True
        assert f.in_page_cache(100, 5) is True and f.in_page_cache(0, 0) is True
        assert f.size > pages.PROBES * pages.PROBE_BYTES and f.probably_in_page_cache() is True  # sampled
        _evict(big)
        assert f.in_page_cache(0, f.size) is False and f.probably_in_page_cache() is False
        monkeypatch.setenv("HUBFS_LOADER_CACHESTAT", "0")
        assert f.in_page_cache(0, f.size) is None and f.probably_in_page_cache() is None  # switched off: unknown
    finally:
        f.close()


@pytest.mark.parametrize("switch", ["1", "0"])
def test_zero_copy_populates_only_what_is_not_cached(big: Path, switch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBFS_LOADER_CACHESTAT", switch)
    populated: list[int] = []
    real = pipeline.fault_in

    def spy(addr: int, length: int) -> None:
        populated.append(length)
        real(addr, length)

    monkeypatch.setattr(pipeline, "fault_in", spy)
    ref = load_file(str(big))  # reads it: all in the page cache
    mapped_bytes = sum(t.numel() * t.element_size() for t in ref.values())
    assert_same(loader.load(big, threads=2), ref)
    assert sum(populated) == (0 if switch == "1" and _kernel_has_cachestat() else mapped_bytes)
    populated.clear()
    del ref
    _evict(big)
    with loader.open(big) as f:  # reads the header (the kernel may read a little ahead of it)
        src = next(iter(f.checkpoint.files.values()))
        info = f.info("b.weight")
        assert src.in_page_cache(info.start, info.nbytes) is (False if switch == "1" and _kernel_has_cachestat() else None)
        got = loader.load(f, threads=2)
    # the tensors not in the page cache (b.weight at least) faulted in ahead, by the threads
    assert info.nbytes <= sum(populated) <= mapped_bytes
    assert_same(got, load_file(str(big)))
