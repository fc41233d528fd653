"""A fake byte source for the block cache and readers: serves ``data`` and records each (offset, length)."""

from __future__ import annotations

from collections.abc import Callable


def recording_source(data: bytes, calls: list[tuple[int, int]]) -> Callable[[int, memoryview], int]:
    def fetch(offset: int, buf: memoryview) -> int:
        calls.append((offset, len(buf)))
        chunk = data[offset: offset + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)

    return fetch
