"""mfusepy, loaded over libfuse3, and the one libfuse call mfusepy does not wrap (cache invalidation).

mfusepy picks its library when imported, preferring libfuse2; :func:`load` imports it with
``FUSE_LIBRARY_NAME=fuse3`` (unless ``FUSE_LIBRARY_PATH`` names a library) and refuses anything but
libfuse 3: only libfuse3 negotiates reads larger than 128 KiB (``max_pages``), ``max_background`` and
the kernel cache notifications used after a refresh.

:class:`Invalidator` drops the kernel's cached pages and attributes of a path with
``fuse_invalidate_path`` (libfuse >= 3.1): the ``struct fuse`` is taken from the FUSE context during
``init``, and notifications are sent from a thread of their own, never from inside a request.
:func:`fuse_class` is mfusepy's ``FUSE`` with renameat2's flags passed on.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

from hubfs.errors import MountError

log = logging.getLogger("hubfs.mount")


def load() -> ModuleType:
    """The ``mfusepy`` module bound to libfuse 3; :class:`MountError` when that cannot be had."""
    if not os.environ.get("FUSE_LIBRARY_PATH"):
        os.environ["FUSE_LIBRARY_NAME"] = "fuse3"
    try:
        import mfusepy
    except (ImportError, OSError, AttributeError) as exc:
        raise MountError(f"libfuse3 is not available ({exc}): install fuse3 (Debian/Ubuntu: apt-get install "
                         "fuse3) and the mfusepy package.") from exc
    if mfusepy.fuse_version_major != 3:
        raise MountError(f"hubfs needs libfuse 3, but mfusepy loaded libfuse {mfusepy.fuse_version_major}."
                         f"{mfusepy.fuse_version_minor} (FUSE_LIBRARY_PATH={os.environ.get('FUSE_LIBRARY_PATH')}).")
    return mfusepy


def fuse_class(mfusepy: ModuleType) -> type:
    """mfusepy's ``FUSE``, passing renameat2's flags on as ``operations.rename(old, new, flags)`` (mfusepy
    drops them, which would turn RENAME_NOREPLACE into a plain rename)."""

    class HubFUSE(mfusepy.FUSE):  # type: ignore[misc,name-defined]
        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            result: int = self.operations.rename(old.decode(self.encoding, self.errors),
                                                 new.decode(self.encoding, self.errors), flags)
            return result

    return HubFUSE


class Invalidator:
    """Sends ``fuse_invalidate_path`` for mount paths, in the background, once :meth:`attach` ran in ``init``."""

    def __init__(self) -> None:
        self._fuse: int | None = None
        self._lib: ctypes.CDLL | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hubfs-inval")

    def attach(self, mfusepy: ModuleType) -> None:
        """Remember this mount's ``struct fuse``; call from inside a FUSE callback (``init``)."""
        lib = mfusepy._libfuse
        if not hasattr(lib, "fuse_invalidate_path"):
            log.warning("libfuse has no fuse_invalidate_path: changed files are re-read at their next open only")
            return
        lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.fuse_invalidate_path.restype = ctypes.c_int
        with self._lock:
            self._lib, self._fuse = lib, lib.fuse_get_context().contents.fuse

    def invalidate(self, paths: list[str]) -> None:
        """Drop the kernel's pages and attributes of ``paths`` (mount paths, no leading slash), soon."""
        if paths:
            self._pool.submit(self._send, list(paths))

    def _send(self, paths: list[str]) -> None:
        with self._lock:
            lib, fuse = self._lib, self._fuse
            if lib is None or fuse is None:
                return
            for path in paths:
                # -ENOENT: the kernel never looked the path up, so it caches nothing of it
                lib.fuse_invalidate_path(fuse, ("/" + path).encode("utf-8", "surrogateescape"))

    def detach(self) -> None:
        """Stop sending (the session is ending); waits for notifications in flight."""
        with self._lock:
            self._lib = self._fuse = None
        self._pool.shutdown(wait=True)


__all__ = ["Invalidator", "fuse_class", "load"]
