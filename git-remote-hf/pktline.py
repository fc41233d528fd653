"""git's pkt-line framing, as the long-running filter protocol uses it: 4 hex digits of length, then data;
``0000`` is a flush packet. A packet carries at most 65,516 bytes of data."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

__all__ = ["MAX_DATA", "PktLine"]

MAX_DATA = 65516
PACKETS_PER_WRITE = 16  # about 1 MiB: the size the filter gives its pipe to git


class PktLine:
    """Reads packets from ``rd`` and writes them to ``wr`` (binary streams); EOF raises ``EOFError``. One
    thread's: :meth:`content_from` reuses one buffer."""

    def __init__(self, rd: BinaryIO, wr: BinaryIO) -> None:
        self.rd, self.wr = rd, wr
        self._buf: memoryview | None = None  # content_from's, made once: a fresh 1 MiB per object costs more
        # than sending a small one

    def _exact(self, n: int) -> bytes:
        data = self.rd.read(n)
        while data is not None and 0 < len(data) < n:
            more = self.rd.read(n - len(data))
            if not more:
                break
            data += more
        if not data or len(data) < n:
            raise EOFError("git closed the filter's input")
        return data

    def read(self) -> bytes | None:
        """One packet's data, or None for a flush packet."""
        head = self._exact(4)
        try:
            size = int(head, 16)
        except ValueError:
            raise EOFError(f"bad pkt-line header {head!r}") from None
        if size == 0:
            return None
        if size < 4:
            raise EOFError(f"bad pkt-line length {size}")
        return self._exact(size - 4)

    def read_list(self) -> list[str]:
        """Text packets (trailing LF stripped) up to the next flush."""
        out = []
        while (pkt := self.read()) is not None:
            out.append(pkt.decode("utf-8", "surrogateescape").rstrip("\n"))
        return out

    def read_content(self) -> Iterator[bytes]:
        """The data packets of a content section, up to its flush."""
        while (pkt := self.read()) is not None:
            yield pkt

    def write(self, data: bytes) -> None:
        self.wr.write(b"%04x" % (len(data) + 4) + data)

    def text(self, *lines: str, send: bool = True) -> None:
        """Text packets (each LF-terminated), then a flush packet; ``send`` False: left in the stream's
        buffer, to go with what follows (git wakes once per answer rather than once per part)."""
        for line in lines:
            self.write(line.encode("utf-8", "surrogateescape") + b"\n")
        self.flush(send)

    def flush(self, send: bool = True) -> None:
        """A flush packet; ``send``: and everything buffered goes to git now."""
        self.wr.write(b"0000")
        if send:
            self.wr.flush()

    def content(self, chunks: Iterable[bytes]) -> None:
        """``chunks`` split into packets (no flush)."""
        for chunk in chunks:
            view = memoryview(chunk)
            for i in range(0, len(view), MAX_DATA):
                self.write(bytes(view[i:i + MAX_DATA]))

    def content_from(self, f: io.RawIOBase | io.BufferedIOBase, on_data: Callable[[memoryview], object] | None = None) -> int:
        """The rest of the file ``f`` as packets (no flush): read straight into a buffer of
        :data:`PACKETS_PER_WRITE` framed packets, written at once (one system call for about 1 MiB instead
        of two per 64 KiB packet). ``on_data`` sees each packet's data (to hash it); returns the bytes sent."""
        if self._buf is None:
            self._buf = memoryview(bytearray(PACKETS_PER_WRITE * (MAX_DATA + 4)))
        buf = self._buf
        total, eof = 0, False
        while not eof:
            end = 0
            while end + 4 + MAX_DATA <= len(buf):
                n = f.readinto(buf[end + 4:end + 4 + MAX_DATA])
                if not n:
                    eof = True
                    break
                buf[end:end + 4] = b"%04x" % (n + 4)
                if on_data is not None:
                    on_data(buf[end + 4:end + 4 + n])
                end += n + 4
                total += n
            if end:
                self.wr.write(buf[:end])
        return total

