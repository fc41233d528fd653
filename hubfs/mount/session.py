"""A FUSE session on a ``/dev/fuse`` descriptor hubfs opens and mounts itself (root only).

mfusepy builds libfuse's operations table and hands it to ``fuse_main_real``, which parses options,
mounts (``fuse_mount``) and runs the loop. :class:`OwnSession` stands in for that one call: it opens
``/dev/fuse``, mounts it with ``mount(2)`` (type ``fuse.hubfs``, ``nosuid,nodev``, ``ro`` when asked,
``allow_other,default_permissions`` when asked, the caller's uid and gid), creates the ``struct fuse``
(``fuse_new``), gives its session the descriptor with the :class:`~hubfs.mount.passthrough.Channel`'s
``read``/``writev`` (``fuse_session_custom_io``), installs libfuse's signal handlers and runs the
multi-threaded loop as ``fuse_main_real`` does (``max_idle_threads`` as given, ``max_threads`` 10).
When the loop ends it detaches the mount (unless the kernel ended the connection already: unmounted
from outside) and destroys the session, which calls the operations' ``destroy`` and closes the
descriptor. Its return value is ``fuse_main_real``'s: 0, 4 when the mount failed, 8 when the loop
failed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from hubfs.mount.passthrough import Channel

log = logging.getLogger("hubfs.mount")

MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MNT_DETACH = 2
FSTYPE = b"fuse.hubfs"
_swap = threading.Lock()


class _FuseArgs(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


def _bind(lib: Any) -> None:
    vp = ctypes.c_void_p
    for name, args, res in (("fuse_new_31", [ctypes.POINTER(_FuseArgs), vp, ctypes.c_size_t, vp], vp),
                            ("fuse_get_session", [vp], vp), ("fuse_session_custom_io", [vp, vp, ctypes.c_int], ctypes.c_int),
                            ("fuse_set_signal_handlers", [vp], ctypes.c_int), ("fuse_remove_signal_handlers", [vp], None),
                            ("fuse_loop_cfg_create", [], vp), ("fuse_loop_cfg_destroy", [vp], None),
                            ("fuse_loop_cfg_set_idle_threads", [vp, ctypes.c_uint], None),
                            ("fuse_loop_cfg_set_clone_fd", [vp, ctypes.c_uint], None),
                            ("fuse_loop_mt_312", [vp, vp], ctypes.c_int), ("fuse_destroy", [vp], None)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res


class OwnSession:
    """Mount ``mountpoint`` on a descriptor of our own and serve it through ``channel`` (module docstring);
    :attr:`fd` is that descriptor once mounted (-1 before)."""

    def __init__(self, channel: Channel, mountpoint: str, source: str, *, ro: bool, allow_other: bool,
                 idle_threads: int) -> None:
        self.channel, self.mountpoint, self.source = channel, mountpoint, source
        self.ro, self.allow_other, self.idle_threads = ro, allow_other, idle_threads
        self.fd = -1
        self.mounted = threading.Event()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        self._libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    @contextmanager
    def replacing(self, mfusepy: ModuleType) -> Iterator[None]:
        """While inside: mfusepy's ``fuse_main_real`` is :meth:`main` (one mount per process at a time)."""
        with _swap:
            saved = getattr(mfusepy, "fuse_main_real")  # noqa: B009 (a module without types)
            setattr(mfusepy, "fuse_main_real", self.main)  # noqa: B010
            try:
                yield
            finally:
                setattr(mfusepy, "fuse_main_real", saved)  # noqa: B010

    def _mount(self) -> bool:
        try:
            self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            log.error("cannot open /dev/fuse: %s", exc)
            return False
        options = f"fd={self.fd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()}"
        if self.allow_other:
            options += ",allow_other,default_permissions"
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if self.ro else 0)
        if self._libc.mount(self.source.encode("utf-8", "surrogateescape"), os.fsencode(self.mountpoint), FSTYPE,
                            flags, options.encode()) != 0:
            log.error("mount(2) of %s failed: %s", self.mountpoint, os.strerror(ctypes.get_errno()))
            os.close(self.fd)
            self.fd = -1
            return False
        self.channel.fd = self.fd
        self.mounted.set()
        return True

    def _unmount(self) -> None:
        poller = select.poll()
        poller.register(self.fd, 0)
        if any(ev & select.POLLERR for _, ev in poller.poll(0)):
            return  # unmounted from outside, or the connection was aborted
        if self._libc.umount2(os.fsencode(self.mountpoint), MNT_DETACH) != 0:
            log.warning("unmounting %s failed: %s", self.mountpoint, os.strerror(ctypes.get_errno()))

    def main(self, argc: int, argv: Any, ops: Any, ops_size: int, user_data: Any) -> int:
        """``fuse_main_real``'s stand-in (mfusepy's arguments; its ``-o`` options are ours already)."""
        from hubfs.mount.libfuse import load

        lib = load()._libfuse
        _bind(lib)
        name = (ctypes.c_char_p * 2)(b"hubfs", None)
        args = _FuseArgs(1, ctypes.cast(name, ctypes.POINTER(ctypes.c_char_p)), 0)
        fuse = lib.fuse_new_31(ctypes.byref(args), ctypes.cast(ops, ctypes.c_void_p), ops_size, None)
        if not fuse:
            return 3
        if not self._mount():
            lib.fuse_destroy(fuse)
            return 4
        session = lib.fuse_get_session(fuse)
        if lib.fuse_session_custom_io(session, ctypes.addressof(self.channel.io), self.fd) != 0:
            self._unmount()
            os.close(self.fd)
            lib.fuse_destroy(fuse)
            return 4
        config = None
        res = 6
        if lib.fuse_set_signal_handlers(session) == 0:
            config = lib.fuse_loop_cfg_create()
            lib.fuse_loop_cfg_set_clone_fd(config, 0)
            lib.fuse_loop_cfg_set_idle_threads(config, self.idle_threads)
            res = 8 if lib.fuse_loop_mt_312(fuse, config) else 0
            lib.fuse_remove_signal_handlers(session)
        self._unmount()
        lib.fuse_destroy(fuse)  # closes self.fd
        if config is not None:
            lib.fuse_loop_cfg_destroy(config)
        return res


__all__ = ["OwnSession"]
