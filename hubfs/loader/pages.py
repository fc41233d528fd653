"""Host memory for the loader: fresh buffers that fault in cheaply, and which mapped pages are resident.

Two speed tricks, each feature-checked, with a fallback and an off switch (read in :mod:`hubfs.config`):

- **huge pages for fresh buffers** (``HUBFS_LOADER_HUGEPAGES=0`` turns it off): every byte the loader
  reads lands in new memory the tensor owns, and a fault per 4 KiB page costs more than the copy
  itself (1.7 GB/s against 10 GB/s with 2 MiB pages, measured on a 2-vCPU VM). Buffers of 2 MiB or
  more are advised ``MADV_HUGEPAGE`` when transparent huge pages are enabled and free memory covers
  the buffer with room to spare (so the kernel need not compact or reclaim to find a huge page; when
  memory is short, the buffer keeps small pages: slower, never a stall);
- **populate only what is not in the page cache** (``HUBFS_LOADER_CACHESTAT=0`` populates everything):
  faulting a cached file page into a private mapping on first touch (16 pages per fault, by the
  kernel's fault-around) is cheaper than ``MADV_POPULATE_READ`` ahead of time (5.8 against 9.8 ms
  for 1 GiB, measured), so the zero-copy path asks ``cachestat`` (Linux 6.5+; ``mincore`` walks
  every page, 5 ms per 256 MiB) whether a file seems all cached (a sample of ranges), else whether each
  tensor's bytes are, and populates only those that are not (reading them ahead from the disk in
  parallel); where ``cachestat`` fails, every tensor is populated, as before. A file whose sample is
  cached but not the rest is left to fault in from the disk on first touch (slower, same bytes).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from hubfs.config import loader_cachestat, loader_hugepages

if TYPE_CHECKING:
    import torch

OWN_MAPPING_MIN = 1 << 20  # CPU buffers this big get their own anonymous mapping
HUGE_PAGE = 2 << 20
HUGE_MIN = HUGE_PAGE  # buffers this big may get huge pages
FREE_MARGIN = 512 << 20  # free memory beyond twice the buffer before huge pages are asked for
MADV_HUGEPAGE = 14
MADV_POPULATE_READ = 22  # Linux 5.14+: fault a range in, read-only, without touching it from user space
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
LINUX = sys.platform.startswith("linux")  # the advice numbers and the system call number are Linux's


def host_buffer(nbytes: int, *, huge: bool | None = None) -> torch.Tensor:
    """``nbytes`` of CPU memory as a uint8 tensor. Big ones get their own anonymous mapping, unmapped when
    the last tensor using it goes: glibc's heap keeps freed buffers of that size (its adaptive mmap
    threshold), so the peak memory of a streamed load would grow with the model. ``huge``: advise huge
    pages (None: when :func:`huge_pages_fit` says they come without a stall)."""
    import torch

    if nbytes < OWN_MAPPING_MIN:
        return torch.empty(nbytes, dtype=torch.uint8)
    out = torch.frombuffer(mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), dtype=torch.uint8)
    if huge if huge is not None else huge_pages_fit(nbytes):
        # Linux 6.7+ starts a mapping whose length is a multiple of 2 MiB on a huge-page boundary; else
        # the partial huge pages at either end stay small. EINVAL without THP: small pages, as before.
        madvise(out.data_ptr(), nbytes, MADV_HUGEPAGE)
    return out


def huge_pages_fit(nbytes: int) -> bool:
    """Whether a fresh buffer of ``nbytes`` should be advised huge pages: allowed (``HUBFS_LOADER_HUGEPAGES``),
    big enough, transparent huge pages not off, and ``MemFree`` above twice the buffer plus a margin."""
    if nbytes < HUGE_MIN or not loader_hugepages() or not _thp_available():
        return False
    free = _mem_free()
    return free is not None and free >= 2 * nbytes + FREE_MARGIN


@functools.cache
def _thp_available() -> bool:
    try:
        with open(THP_ENABLED) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def _mem_free() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemFree:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def populate(addr: int, length: int) -> None:
    """Make ``length`` mapped bytes at ``addr`` resident (a no-op where the kernel cannot)."""
    page = mmap.PAGESIZE
    lo = addr - addr % page
    if length > 0:
        madvise(lo, addr + length - lo, MADV_POPULATE_READ)  # EINVAL on old kernels: left lazy


def madvise(addr: int, length: int, advice: int) -> bool:
    """``madvise`` on a range (``addr`` page-aligned); False where it failed or does not exist."""
    fn = _libc_fn("madvise")
    return fn is not None and fn(addr, length, advice) == 0


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


SYS_CACHESTAT = 451  # Linux 6.5+; one number on every architecture (alpha aside, which then fails: ENOSYS)


def cached(fd: int, offset: int, length: int) -> bool | None:
    """Whether every page of ``length`` bytes at ``offset`` of the file ``fd`` is in the page cache
    (``cachestat``, one system call whatever the length); None where that cannot be told (an older
    kernel, or ``HUBFS_LOADER_CACHESTAT=0``)."""
    if length <= 0:
        return True
    if not loader_cachestat():
        return None
    fn = _libc_fn("syscall")
    if fn is None:
        return None
    page = mmap.PAGESIZE
    first = offset - offset % page
    stat = _CacheStat()
    span = _Range(first, offset + length - first)
    if fn(ctypes.c_long(SYS_CACHESTAT), ctypes.c_long(fd), ctypes.byref(span), ctypes.byref(stat), ctypes.c_long(0)):
        return None
    return bool(stat.cache >= -(-(offset + length - first) // page))


PROBES = 4  # ranges a file is sampled at to tell whether all of it is probably cached
PROBE_BYTES = 64 << 10


def probably_cached(fd: int, size: int) -> bool | None:
    """Whether the file ``fd`` of ``size`` bytes seems all in the page cache: :data:`PROBES` evenly spread
    ranges of :data:`PROBE_BYTES` all are (asking for all of it walks every page: 75 us per 256 MiB
    against 2 us per probe). None where :func:`cached` cannot tell."""
    if size <= PROBES * PROBE_BYTES:
        return cached(fd, 0, size)
    step = (size - PROBE_BYTES) // (PROBES - 1)
    for k in range(PROBES):
        got = cached(fd, k * step, PROBE_BYTES)
        if not got:
            return got
    return True


@functools.cache
def _libc_fn(name: str) -> Callable[..., int] | None:
    if not LINUX:
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    if name == "madvise":
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_long if name == "syscall" else ctypes.c_int
    return cast(Callable[..., int], fn)


def byte_view(t: torch.Tensor) -> memoryview:
    """A writable byte view of a contiguous uint8 CPU tensor's memory."""
    return memoryview(cast(Any, t.numpy())).cast("B")


__all__ = ["byte_view", "cached", "host_buffer", "huge_pages_fit", "madvise", "populate", "probably_cached"]
