"""Relaying the server's side-band text to stderr the way git shows it: each line after ``remote: ``."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SidebandRelay"]


class SidebandRelay:
    """Callable with each side-band chunk (bytes); writes whole lines to ``write`` with their own ending
    (``\\n``, or ``\\r`` for a progress line that redraws itself)."""

    def __init__(self, write: Callable[[str], None], prefix: str = "remote: ") -> None:
        self._write = write
        self._prefix = prefix
        self._pending = b""

    def __call__(self, data: bytes) -> None:
        self._pending += data
        while True:
            cut = min((i for i in (self._pending.find(b"\n"), self._pending.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                return
            line, end, self._pending = self._pending[:cut], self._pending[cut:cut + 1], self._pending[cut + 1:]
            if line.strip():
                self._write(self._prefix + line.decode("utf-8", "replace").rstrip() + end.decode())

    def flush(self) -> None:
        """Write a last unterminated line, if any."""
        if self._pending.strip():
            self._write(self._prefix + self._pending.decode("utf-8", "replace").rstrip() + "\n")
        self._pending = b""
