"""Keeping freed read buffers in the heap, so streaming reads do not page-fault on fresh memory.

A sequential read hands every caller new ``bytes`` objects of megabytes. glibc serves such sizes
with ``mmap`` until its adaptive threshold catches up, and trims freed heap tops back to the
kernel; either way each new buffer costs a page fault per 4 KiB, which on a loopback or fast
network costs more than receiving the bytes (a third of the CPU time of a 1 GiB read, measured).
Pinning the mmap threshold at glibc's own maximum (32 MiB) and the trim threshold at 64 MiB
lets freed buffers be reused. The tweak is process-wide and done once, on glibc only; set
``HUBFS_MALLOPT=0`` to leave the allocator alone (read by :func:`hubfs.config.malloc_tuning`).

This is the one place it is done, and :class:`~hubfs.fs.HubFileSystem` is the one caller: its
constructor applies it, since every streaming read of the process goes through a filesystem. A
program that uses :mod:`hubfs.client` directly for big reads may call :func:`keep_freed_buffers` itself.

:func:`receive_buffer`: where bytes are received into, a buffer starting at a page boundary. The
kernel copies socket data into one about twice as fast as into a ``bytearray`` (``malloc``'s
16-byte alignment): 5.2-6.3 against 2.4-2.7 GB/s over loopback, a quarter of the system time,
measured on the AMD EPYC of the benchmarks (writes from a buffer do not care where it starts).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

from hubfs.config import malloc_tuning

PAGE = 4096
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


@functools.cache
def keep_freed_buffers() -> bool:
    """Apply the allocator settings (once per process); True when they are in force."""
    return _tune()


def _tune() -> bool:
    if not malloc_tuning() or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def receive_buffer(n: int) -> memoryview:
    """A writable buffer of ``n`` bytes whose first byte sits at a page boundary (see the module
    docstring): a view into a ``bytearray`` one page longer, which it keeps alive."""
    raw = bytearray(n + PAGE)
    skip = -ctypes.addressof(ctypes.c_char.from_buffer(raw)) % PAGE
    return memoryview(raw)[skip:skip + n]
