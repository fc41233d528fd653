"""ReadAhead (hubfs/client/readahead.py) and RangeFetcher.fetch_pieces against the session hub."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from huggingface_hub import HfApi

from hubfs.client import HubClient
from hubfs.client.fetch import RangeFetcher
from hubfs.client.readahead import ReadAhead
from hubfs.errors import HubConnectionError

MiB = 1 << 20
SIZE = 40 * MiB + 4321


@pytest.fixture(scope="module")
def remote(hub):
    """(fetcher, url, data) of one LFS file of 40 MiB + a bit."""
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    rid = f"admin/readahead-{os.getpid()}"
    api.create_repo(rid, exist_ok=True)
    data = random.Random(11).randbytes(SIZE)
    sha = api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=rid).oid
    client = HubClient(hub.endpoint, hub.admin_token)
    return RangeFetcher(client.transport), client.file_url("model", rid, sha, "w.bin"), data


class Recorder:
    """Wraps a fetcher's ``fetch_pieces``: the ranges asked, the peak in flight, the piece objects handed out."""

    def __init__(self, fetcher: RangeFetcher, delay: float = 0.0) -> None:
        self.fetcher, self.delay = fetcher, delay
        self.ranges: list[tuple[int, int]] = []
        self.pieces: list[bytes] = []
        self.in_flight = self.peak = 0
        self._lock = threading.Lock()

    def fetch_pieces(self, url: str, start: int, length: int, piece: int) -> list[bytes]:
        with self._lock:
            self.ranges.append((start, length))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)
            got = self.fetcher.fetch_pieces(url, start, length, piece)
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.pieces.extend(got)
        return got


def test_fetch_pieces_split_at_multiples_of_the_piece_size(remote) -> None:
    fetcher, url, data = remote
    pieces = fetcher.fetch_pieces(url, 1000, 3 * MiB, MiB)
    assert [len(p) for p in pieces] == [MiB - 1000, MiB, MiB, 1000]
    assert b"".join(pieces) == data[1000:1000 + 3 * MiB]
    assert fetcher.fetch_pieces(url, SIZE - 10, MiB, MiB) == [data[-10:]]  # past the end: what there is
    assert fetcher.fetch_pieces(url, SIZE + 10, MiB, MiB) == []  # 416
    assert fetcher.fetch_pieces(url, 0, 0, MiB) == []


@pytest.mark.parametrize("read_size", [8 * MiB, MiB, 300_000, 1])
def test_reads_return_the_file_in_order(remote, read_size: int) -> None:
    fetcher, url, data = remote
    start = 0 if read_size != 1 else SIZE - 70_000
    with ThreadPoolExecutor(8) as pool:
        stream = ReadAhead(fetcher, pool, url, start, SIZE, read_size)
        got, pos = [], start
        while pos < SIZE:
            chunk = stream.read(read_size)
            assert len(chunk) == min(read_size, SIZE - pos)
            got.append(chunk)
            pos += len(chunk)
        assert stream.read(read_size) == b"" and stream.pos == SIZE
        stream.close()
    assert b"".join(got) == data[start:]


def test_reads_of_the_piece_size_hand_out_the_received_pieces(remote) -> None:
    fetcher, url, data = remote
    recorder = Recorder(fetcher)
    with ThreadPoolExecutor(8) as pool:
        stream = ReadAhead(recorder, pool, url, 0, SIZE, 4 * MiB)  # type: ignore[arg-type]
        chunks = [stream.read(4 * MiB) for _ in range(SIZE // (4 * MiB))]
        stream.close()
    received = {id(p) for p in recorder.pieces}
    assert all(id(c) in received for c in chunks), "a read of the piece size is the received object, not a copy"
    assert b"".join(chunks) == data[:len(chunks) * 4 * MiB]


def test_ranges_grow_then_run_four_at_a_time(remote) -> None:
    fetcher, url, data = remote
    recorder = Recorder(fetcher, delay=0.05)
    with ThreadPoolExecutor(8) as pool:
        stream = ReadAhead(recorder, pool, url, 0, SIZE, 64 * 1024)  # type: ignore[arg-type]
        while stream.read(64 * 1024):
            pass
        stream.close()
    lengths = [n for _, n in sorted(recorder.ranges)]
    assert max(lengths[:2]) <= 256 * 1024, lengths  # one small range ahead until the reader comes back
    assert all(b >= a for a, b in zip(lengths, lengths[1:-1])), lengths  # then growing, but for the tail
    assert max(lengths) == 16 * MiB and sum(lengths) == SIZE
    assert recorder.peak >= 3  # ranges overlap once they are full size (4 when the file is long enough)


def test_skipping_forward_stays_in_the_stream(remote) -> None:
    fetcher, url, data = remote
    recorder = Recorder(fetcher)
    with ThreadPoolExecutor(8) as pool:
        stream = ReadAhead(recorder, pool, url, 0, SIZE, MiB)  # type: ignore[arg-type]
        pos = 0
        while pos + MiB <= SIZE:
            assert stream.read(MiB) == data[pos:pos + MiB]
            pos += MiB
            nxt = pos + 100_017  # a short skip: the stream holds it
            if not stream.holds(nxt):
                break
            stream.skip_to(nxt)
            pos = nxt
        stream.close()
    assert pos > SIZE // 2
    starts = sorted(start for start, _ in recorder.ranges)
    assert all(b > a for a, b in zip(starts, starts[1:])), "no byte range asked twice"


def test_a_short_answer_is_an_error(remote) -> None:
    fetcher, url, _ = remote

    class Short:
        def fetch_pieces(self, url: str, start: int, length: int, piece: int) -> list[bytes]:
            return fetcher.fetch_pieces(url, start, length - 1, piece)

    with ThreadPoolExecutor(2) as pool:
        stream = ReadAhead(Short(), pool, url, 0, SIZE, MiB)  # type: ignore[arg-type]
        with pytest.raises(HubConnectionError, match="sent"):
            stream.read(MiB)
        stream.close()


def test_a_failed_range_raises_at_its_turn(remote) -> None:
    fetcher, url, data = remote
    failed: list[int] = []

    class Failing:
        def fetch_pieces(self, url: str, start: int, length: int, piece: int) -> list[bytes]:
            if start >= 4 * MiB:
                failed.append(start)
                raise HubConnectionError(f"GET {url} bytes {start}+{length} failed: connection reset")
            return fetcher.fetch_pieces(url, start, length, piece)

    got = bytearray()
    with ThreadPoolExecutor(4) as pool:
        stream = ReadAhead(Failing(), pool, url, 0, SIZE, MiB)  # type: ignore[arg-type]
        with pytest.raises(HubConnectionError, match="connection reset"):
            while True:
                got += stream.read(MiB)
        stream.close()
    assert bytes(got) == data[:min(failed)], "every byte before the failed range, then the error"


def test_allocator_setting_is_on_by_default_and_can_be_turned_off() -> None:
    code = "from hubfs.client.malloc import keep_freed_buffers as k; print(k(), k())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "HUBFS_MALLOPT": "0"}).stdout.split()
    assert on == ["True", "True"] and off == ["False", "False"]


def test_peek_serves_bytes_ahead_without_moving_the_reader(remote) -> None:
    """Bytes the stream fetches (or is fetching) ahead can be read out of turn, and the in-order reads that
    follow still get every byte; nothing is asked twice, and what is not held is None."""
    fetcher, url, data = remote
    recorder = Recorder(fetcher)
    with ThreadPoolExecutor(8) as pool:
        stream = ReadAhead(recorder, pool, url, 0, SIZE, MiB)  # type: ignore[arg-type]
        assert stream.read(MiB) == data[:MiB]
        assert stream.read(MiB) == data[MiB:2 * MiB]  # the ranges grow: several MiB are in flight now
        ahead = stream.pos + MiB + 12_345
        assert stream.holds(ahead + MiB - 1)
        assert stream.peek(ahead, MiB) == data[ahead:ahead + MiB]
        assert stream.peek(stream.pos - 1, 10) is None  # behind the reader
        assert stream.peek(SIZE - 10, 20) is None  # past what is held
        pos = stream.pos
        while pos < 8 * MiB:
            assert stream.read(MiB) == data[pos:pos + MiB]
            pos += MiB
        stream.close()
    starts = sorted(start for start, _ in recorder.ranges)
    assert all(b > a for a, b in zip(starts, starts[1:])), "no byte range asked twice"
