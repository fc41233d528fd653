"""The staging area's journal: one folder's JSON-lines log, appended with fsync, rewritten atomically.

Files in the folder: ``lock`` (flock'ed while a :class:`Journal` is open: one user per folder; the
kernel releases it when the process dies) and ``journal`` (a header line, then records, one JSON
object a line). :meth:`~Journal.append` writes its records with one ``write`` and an ``fsync``;
:meth:`~Journal.rewrite` replaces the whole file (temp + fsync + rename + fsync of the folder), so the
header is never torn; :meth:`~Journal.replay` reads the records back, skipping (and logging) a line cut
short by a crash. What the records mean is the staging area's business (:mod:`hubfs.mount.staging`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hubfs.errors import BadRequestError, ConflictError, HubfsError


class Journal:
    """The journal in ``root``, whose first line is ``header``. Not thread-safe (the caller locks).
    Raises :class:`~hubfs.errors.ConflictError` when another Journal holds ``root``."""

    def __init__(self, root: Path, header: dict[str, Any], log: logging.Logger) -> None:
        self.root, self.header, self.log = Path(root), header, log
        self.path = self.root / "journal"
        self.appended = 0  # records appended since the last rewrite
        self._fd = -1
        self._lock_fd = _take_lock(self.root / "lock")

    def replay(self) -> Iterator[dict[str, Any]]:
        """The records left in the journal (none when there is no journal). Raises
        :class:`~hubfs.errors.BadRequestError` when its header is not ``header`` (another repo or branch)."""
        lines = self.path.read_bytes().splitlines() if self.path.exists() else []
        for n, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except ValueError as exc:
                self.log.warning("%s line %d: skipped (%s)", self.path, n + 1, exc)  # a write cut short
                continue
            if n == 0:
                if not isinstance(rec, dict) or {k: rec.get(k) for k in self.header} != self.header:
                    raise BadRequestError(f"{self.root} is the staging area of something else than "
                                          f"{self.header}: {line[:200]!r}")
            elif isinstance(rec, dict):
                yield rec
            else:
                self.log.warning("%s line %d: skipped (not an object)", self.path, n + 1)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Add ``records`` durably (one write, one fsync)."""
        if self._fd < 0:
            raise HubfsError(f"The journal in {self.root} is closed.")
        if records:
            os.write(self._fd, _lines(records))
            os.fsync(self._fd)
            self.appended += len(records)

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the journal with the header and ``records``, atomically."""
        tmp = self.root / "journal.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _lines([self.header, *records]))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.appended = 0

    def close(self) -> None:
        """Close the journal and release ``root`` (idempotent)."""
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1


def _lines(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConflictError(f"{path.parent} is in use by another hubfs mount (staging area).") from None
    return fd


__all__ = ["Journal"]
