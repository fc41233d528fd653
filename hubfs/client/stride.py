"""Stride prefetch: reads at a steady stride (a parquet column across row groups, a tensor per layer)
are fetched ahead, concurrently. Used by :class:`hubfs.client.reader.FileReader`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from itertools import pairwise

TWO_POINT_MIN = 1 << 20
WINDOW = 8  # recent reads a stride is judged on
HISTORY = 64  # recent reads never guessed again
STRIDE_DEPTH = 8  # guesses in flight: a parquet column's remaining row groups, usually
SPARSE_SLOTS = 3  # a stride needs at least one read in this many of the slots it spans
SMALL_READS_MIN = 4  # reads under TWO_POINT_MIN: this many before a stride is believed


class StridePrefetcher:
    """Guesses the next reads of a strided pattern and fetches them on ``pool``.

    The recent random reads are taken in offset order, since readers with a thread pool ask out of
    order (pyarrow asks row groups 0, 8, 2, 3, ...): when they have about the same length and every
    gap between neighbours is about a multiple of the smallest gap, that gap is the stride, and the
    slots missing between them plus ``depth`` past the furthest (and one before the first) are
    requested at once, widened by the jitter seen. Two reads of 1 MiB or more are evidence enough; smaller
    reads need :data:`SMALL_READS_MIN` of them; more reads must fill at least one slot in
    :data:`SPARSE_SLOTS` of the span they cover.
    Ranges already read, requested or held (``held``) are not asked again. Any other pattern (truly
    random reads) prefetches nothing. ``fetch(start, length)`` returns the bytes; ``warm()`` is
    called once, at the first big random read (to open connections ahead). Not thread-safe: the
    owner serializes calls.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], pool: Executor, *, warm: Callable[[], None] | None = None,
                 depth: int = STRIDE_DEPTH, budget: int = 128 << 20,
                 held: Callable[[int, int], bool] | None = None) -> None:
        self.fetch, self.pool, self.depth, self.budget = fetch, pool, depth, budget
        self.warm = warm or (lambda: None)
        self.held = held or (lambda start, end: False)
        self.history: list[tuple[int, int]] = []  # recent random reads, oldest first
        self.streamed: list[tuple[int, int]] = []  # recent reads the sequential stream served
        self.pending: list[tuple[int, int, Future[bytes]]] = []  # (start, length, future of bytes)
        self.warmed = False

    def take(self, start: int, end: int) -> bytes | None:
        """The bytes [start, end) from a prefetch that holds part of them (the gaps around it are fetched
        now: a guess that began a little late still saves most of the read)."""
        for i, (pstart, plen, future) in enumerate(self.pending):
            if start < pstart + plen and pstart < end:
                del self.pending[i]
                try:
                    data = future.result()
                except Exception:  # noqa: BLE001 - a failed guess is simply fetched again
                    return None
                head = self.fetch(start, pstart - start) if start < pstart else b""
                data = head + data[max(0, start - pstart): end - pstart]
                if len(data) < end - start:
                    data += self.fetch(start + len(data), end - start - len(data))
                return data
        return None

    def observe(self, start: int, length: int, size: int) -> None:
        """Note a random read of [start, start + length) of a file of ``size``; maybe prefetch."""
        if length >= TWO_POINT_MIN and not self.warmed:  # a big random read: a stride may follow, warm up
            self.warmed = True
            self.warm()
        self.history = (self.history + [(start, length)])[-HISTORY:]
        reads = sorted(set(self.history[-WINDOW:]))
        lengths = [n for _, n in reads]
        if len(reads) < 2 or (len(reads) < SMALL_READS_MIN and min(lengths) < TWO_POINT_MIN):
            return  # two or three small random reads fit some stride by chance (a % or two of the time)
        if max(lengths) - min(lengths) > max(lengths) // 50:
            return  # a stride repeats one read
        gaps = [b - a for (a, _), (b, _) in pairwise(reads)]
        stride = min(gaps)
        if stride < max(lengths):
            return
        deviations = [abs(g - round(g / stride) * stride) / round(g / stride) for g in gaps]
        # big reads (row groups) jitter by a per cent of the stride; small ones get no more than an eighth of
        # their own length: a per cent of a wide stride lets a few random 4 KiB reads pass as a pattern
        tolerance = stride // 100 if min(lengths) >= TWO_POINT_MIN else max(lengths) // 8
        if max(deviations) > max(4096, tolerance):
            return
        if (reads[-1][0] - reads[0][0]) // stride + 1 > SPARSE_SLOTS * len(reads):
            return  # mostly empty slots: page-aligned random reads fit any small "stride" and are no pattern
        # two points show no variance: allow 1.5% of the read (row groups differ by a few KiB)
        jitter = int(max(4096, 2 * max(deviations), max(lengths) // 64 if len(reads) == 2 else 0))
        want = max(lengths) + (max(lengths) - min(lengths)) + 2 * jitter
        slots = [a + j * (b - a) // round((b - a) / stride)  # the missing ones between known reads
                 for (a, _), (b, _) in pairwise(reads) for j in range(1, round((b - a) / stride))]
        slots += [reads[-1][0] + k * stride for k in range(1, self.depth + 1)] + [reads[0][0] - stride]
        del slots[self.depth + len(reads):]  # guesses in proportion to the evidence
        self._request(slots, jitter, want, min(lengths), size)

    def _request(self, slots: list[int], jitter: int, want: int, shortest: int, size: int) -> None:
        queued = sum(n for _, n, _ in self.pending)
        for slot in slots:
            nxt = max(0, slot - jitter)
            n = min(want, size - nxt)
            if slot < 0 or n < shortest or self.held(nxt, nxt + n) or self._known(nxt, n):
                continue  # outside the file (or too near its end to hold a read), held, read or requested
            if queued + n > self.budget:
                break
            self.pending.append((nxt, n, self.pool.submit(self.fetch, nxt, n)))
            queued += n

    def served(self, start: int, length: int) -> None:
        """Note bytes the sequential stream served: they are read, and never guessed again."""
        if length:
            self.streamed = (self.streamed + [(start, length)])[-HISTORY:]

    def _known(self, start: int, length: int) -> bool:
        """Whether [start, start + length) overlaps a recent read or a pending guess."""
        return any(start < s + sn and s < start + length for s, sn in self.history) or \
            any(start < s + sn and s < start + length for s, sn in self.streamed) or \
            any(start < p + pn and p < start + length for p, pn, _ in self.pending)

    def cancel(self) -> None:
        for _, _, future in self.pending:
            future.cancel()
        self.pending.clear()
