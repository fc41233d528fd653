"""LFS content over the Git LFS batch API, fast: pipelined batch calls, adaptive concurrency, resumable, verified.

Download (:func:`prefetch`, :func:`fetch_objects`): up to 100 objects per batch call; the next batch call
is in flight while the objects of the previous ones download; GETs run 8 at a time at first, one more
after each object that took 30 ms or more to arrive (a latency-bound link; up to 64), half as many
after a failure. An object of up to 1 MiB is
fetched whole into memory; a bigger one streams into ``.git/lfs/incomplete/<oid>`` through
:func:`hubfs.client.download.fetch_file` (8-16 MiB ranges; the partial file is resumed with a Range
request, in the same run after a dropped connection and on a rerun), at most 8 such at once (2 of 64 MiB
and more) to bound memory. Its sha256 and size are checked, and only then is it renamed into
``objects/``: an object whose bytes do not match its oid is never stored. :class:`BackgroundFetch` is
the same machinery fed over time, for the filter's delayed smudges.

hubfs's stream transfer: every download batch offers ``hubfs-stream``; a hub that answers with it
(the embedded hub, from its own disk) sends many objects back to back in one POST answer
(``.../objects/stream``), so a clone of many small objects costs a few round trips instead of one per
object. Once a batch answer said so, objects of up to ``STREAM_MAX`` bytes travel in groups (up to
``STREAM_GROUP`` bytes each, ``STREAMS_AT_ONCE`` at once) and later batch calls are skipped; each object
is checked (size, sha256) and stored as it arrives, and whatever a failed stream did not deliver goes
the basic way (batch hrefs, one GET each). Bigger objects always go the basic way (ranged, resumable).
Off: ``GIT_REMOTE_HF_LFS_STREAM=0`` (the batch then offers only ``basic``). Upload (:func:`upload`): the batch ``upload`` operation through
:func:`hubfs.client.commit.upload_lfs_objects` (basic PUT or the Hub's multipart), then ``verify``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from git_remote_hf import trace
from git_remote_hf.lfs_select import wanted_objects
from git_remote_hf.lfs_store import LfsStore
from hubfs.client.api import HubClient
from hubfs.client.commit import Add, upload_lfs_objects
from hubfs.client.fetch import RangeFetcher
from hubfs.client.malloc import receive_buffer
from hubfs.errors import HubConnectionError, HubfsError, IntegrityError, LfsTransferError
from hubfs.lfs import LfsPointer

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BackgroundFetch", "LfsTransferError", "batch_url", "fetch_objects", "prefetch", "upload"]

BATCH_SIZE = 100
SMALL = 1 << 20  # objects up to this size are fetched whole into memory (no partial file to resume)
MEDIUM_STREAMS, LARGE_STREAMS = 8, 2  # objects over SMALL, and of PARALLEL_MIN and more, at once
BATCHES_AHEAD = 2
MIN_STREAMS, START_STREAMS, MAX_STREAMS = 2, 8, 64
SLOW = 0.03  # seconds: an object that took this long says the link is latency-bound (see _Limiter)
STREAMS_ENV = "GIT_REMOTE_HF_STREAMS"
REUSE_ENV = "GIT_REMOTE_HF_REUSE_BUFFERS"
STREAM_ENV = "GIT_REMOTE_HF_LFS_STREAM"
STREAM_TRANSFER = "hubfs-stream"
STREAM_MAX = 8 << 20  # objects up to this size may travel in a stream
STREAM_GROUP, STREAM_GROUP_MIN, STREAM_GROUP_OBJECTS = 32 << 20, 4 << 20, 1000  # bytes, bytes, objects per stream
STREAMS_AT_ONCE = 4
LFS_JSON = "application/vnd.git-lfs+json"


def stream_enabled() -> bool:
    """Whether download batches offer hubfs's stream transfer (``GIT_REMOTE_HF_LFS_STREAM``, default on)."""
    return os.environ.get(STREAM_ENV, "").strip().lower() not in ("0", "false", "no", "off")


def stream_groups(pointers: list[LfsPointer], ways: int = STREAMS_AT_ONCE) -> list[list[LfsPointer]]:
    """``pointers`` (objects of at most ``STREAM_MAX`` bytes) cut, in order, into groups for streams: about
    a ``ways``-th of their bytes each (within ``STREAM_GROUP_MIN``..``STREAM_GROUP``), at most
    ``STREAM_GROUP_OBJECTS`` objects, never empty."""
    target = min(STREAM_GROUP, max(STREAM_GROUP_MIN, sum(p.size for p in pointers) // max(1, ways)))
    groups: list[list[LfsPointer]] = []
    group: list[LfsPointer] = []
    size = 0
    for pointer in pointers:
        if group and (size + pointer.size > target or len(group) >= STREAM_GROUP_OBJECTS):
            groups.append(group)
            group, size = [], 0
        group.append(pointer)
        size += pointer.size
    if group:
        groups.append(group)
    return groups


def _by_oid(answer: dict[str, Any] | None) -> dict[Any, dict[str, Any]]:
    """A batch answer's object entries by oid (none for no answer)."""
    return {o.get("oid"): o for o in (answer or {}).get("objects", []) if isinstance(o, dict)}


def batch_url(lfs_url: str) -> str:
    """The batch endpoint of an LFS URL (``.../info/lfs`` -> ``.../info/lfs/objects/batch``)."""
    url = lfs_url.rstrip("/")
    return url if url.endswith("/objects/batch") else url + "/objects/batch"


def prefetch(git_dir: Path, client: HubClient, lfs_url: str, tips: list[str], *, ref: str | None = None,
             progress: bool | None = None) -> None:
    """Download the LFS objects the trees of ``tips`` point to and the store lacks (see the module doc).

    Does nothing with ``GIT_LFS_SKIP_SMUDGE=1`` or when the user opted out of the helper's LFS handling
    (:func:`~git_remote_hf.lfs_store.lfs_enabled`); honours ``lfs.fetchinclude``/``lfs.fetchexclude``.
    Raises :class:`LfsTransferError` naming what failed; what did arrive stays (complete objects in
    ``objects/``, partial ones in ``incomplete/`` for the next run).
    """
    wanted = wanted_objects(Path(git_dir), tips)
    fetch_objects(git_dir, client, lfs_url, [p for _, p in wanted], ref=ref, progress=progress,
                  names={p.oid: path for path, p in reversed(wanted)})


def fetch_objects(git_dir: Path, client: HubClient, lfs_url: str, pointers: Iterable[LfsPointer], *,
                  ref: str | None = None, progress: bool | None = None, names: dict[str, str] | None = None,
                  on_done: Callable[[LfsPointer, str | None], None] | None = None) -> None:
    """Download the objects of ``pointers`` that the store lacks; ``names`` (oid -> path) for messages;
    ``on_done(pointer, why)`` is told of each object as it settles (``why`` None once it is stored)."""
    store = LfsStore(git_dir)
    todo = store.missing(pointers)
    if not todo:
        return
    with _Downloads(client, store, batch_url(lfs_url), ref, _Progress.maybe("Downloading", todo, progress),
                    names or {}) as run:
        run.on_done = on_done
        run.all(todo)


class _Limiter:
    """Adaptive concurrency: ``limit`` streams at once (START_STREAMS at first), halved on a failure; one
    more after each success that took SLOW seconds or longer (a link where round trips, not bytes, bound
    the rate: more streams in flight help), up to MAX_STREAMS; a quick success (loopback, a LAN) leaves
    it as it is, since more threads there only cost CPU. ``GIT_REMOTE_HF_STREAMS=grow`` adds one after
    every success, whatever it took (the former rule)."""

    def __init__(self, grow_always: bool | None = None) -> None:
        self.limit, self.active = START_STREAMS, 0
        self.grow_always = (os.environ.get(STREAMS_ENV, "").strip().lower() == "grow") if grow_always is None \
            else grow_always
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one stream for the body; it counts as a failure if the body raises."""
        with self._cond:
            self._cond.wait_for(lambda: self.active < self.limit)
            self.active += 1
        t0 = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.done(ok, time.monotonic() - t0)

    def done(self, ok: bool, seconds: float = 0.0) -> None:
        with self._cond:
            self.active -= 1
            if not ok:
                self.limit = max(MIN_STREAMS, self.limit // 2)
            elif self.grow_always or seconds >= SLOW:
                self.limit = min(MAX_STREAMS, self.limit + 1)
            self._cond.notify_all()


class _Downloads:
    """One download run: a batch pool (the pipeline), a stream pool (adaptive), a range pool for big objects."""

    def __init__(self, client: HubClient, store: LfsStore, url: str, ref: str | None, progress: _Progress | None,
                 names: dict[str, str]) -> None:
        self.client, self.store, self.url, self.ref = client, store, url, ref
        self.progress, self.names = progress, names
        self.fetcher = RangeFetcher(client.transport, max_idle=MAX_STREAMS)
        self.limiter = _Limiter()
        self.batches = ThreadPoolExecutor(BATCHES_AHEAD, thread_name_prefix="lfs-batch")
        self.streams = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix="lfs-get")
        self.ranges = ThreadPoolExecutor(8, thread_name_prefix="lfs-range")
        self.medium, self.large = threading.BoundedSemaphore(MEDIUM_STREAMS), threading.BoundedSemaphore(LARGE_STREAMS)
        self.stream_url = url.removesuffix("/batch") + "/stream"
        self.offer_stream = stream_enabled()
        self.streaming = False  # a batch answer chose the stream transfer: small objects travel in streams
        self.stream_pool = ThreadPoolExecutor(STREAMS_AT_ONCE, thread_name_prefix="lfs-stream")
        self.errors: list[str] = []
        self.on_done: Callable[[LfsPointer, str | None], None] | None = None  # told of each object settled
        self._lock = threading.Lock()
        self._buffers = threading.local()  # each stream thread's receive buffer (SMALL bytes), reused

    def _buffer(self, size: int) -> memoryview:
        """This thread's receive buffer, ``size`` bytes of it: one allocation per thread rather than a fresh
        (mapped, page-faulted, zeroed) 1 MiB per object, at a page boundary
        (:func:`hubfs.client.malloc.receive_buffer`). ``GIT_REMOTE_HF_REUSE_BUFFERS=0``: a new one each time."""
        if os.environ.get(REUSE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
            return memoryview(bytearray(size))
        buf = getattr(self._buffers, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._buffers.buf = receive_buffer(max(size, SMALL))
        return buf[:size]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self.batches, self.stream_pool, self.streams, self.ranges):
            pool.shutdown(wait=True, cancel_futures=True)
        self.fetcher.close()
        if self.progress is not None:
            self.progress.finish()

    def _fail(self, pointer: LfsPointer, why: str) -> None:
        name = self.names.get(pointer.oid)
        with self._lock:
            self.errors.append(f"{name + ' ' if name else ''}(oid {pointer.oid}, {pointer.size} bytes): {why}")

    def all(self, todo: list[LfsPointer]) -> None:
        """Fetch every pointer of ``todo``; raise :class:`LfsTransferError` listing the failures."""
        chunks = [todo[i:i + BATCH_SIZE] for i in range(0, len(todo), BATCH_SIZE)]
        calls = [self.batches.submit(self._batch, chunk) for chunk in chunks]  # at most BATCHES_AHEAD run at once
        gets: list[Future[None]] = []
        unasked: list[LfsPointer] = []  # chunks whose batch call was cancelled: streamed all at once
        for chunk, call in zip(chunks, calls):
            if self.streaming and call.cancel():  # streams need no batch answer
                unasked += chunk
                continue
            try:
                answer = call.result()
            except HubfsError as err:
                for call_left in calls:
                    call_left.cancel()
                raise LfsTransferError(f"LFS batch request to {self.client.endpoint} failed: {err}") from err
            gets += self.dispatch(chunk, answer)
        if unasked:
            gets += self.dispatch(unasked, None)
        for get in gets:
            get.result()
        if self.errors:
            shown = "\n  ".join(self.errors[:10])
            more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            raise LfsTransferError(f"{len(self.errors)} of {len(todo)} LFS objects could not be downloaded "
                                   f"(rerun to resume):\n  {shown}{more}")

    def _batch(self, chunk: list[LfsPointer]) -> dict[str, Any]:
        transfers = [STREAM_TRANSFER, "basic"] if self.offer_stream else ["basic"]
        body: dict[str, Any] = {"operation": "download", "transfers": transfers, "hash_algo": "sha256",
                                "objects": [{"oid": p.oid, "size": p.size} for p in chunk]}
        if self.ref:
            body["ref"] = {"name": self.ref}
        answer = self.client.transport.request("POST", self.url, json_body=body,
                                               headers={"Accept": LFS_JSON, "Content-Type": LFS_JSON}).json()
        if not isinstance(answer, dict):
            return {}
        if self.offer_stream and answer.get("transfer") == STREAM_TRANSFER:
            self.streaming = True
        return answer

    def dispatch(self, chunk: list[LfsPointer], answer: dict[str, Any] | None) -> list[Future[None]]:
        """Start downloading ``chunk``: each object by its own GET (the batch ``answer``'s hrefs), or, once
        the hub streams, the small ones in streams and the rest by their GETs (``answer`` None: no batch
        call was made for ``chunk``; one is made for the objects that need hrefs)."""
        by_oid = _by_oid(answer)
        if not self.streaming:
            return [self.streams.submit(self._one, p, by_oid.get(p.oid)) for p in chunk]
        small: list[LfsPointer] = []
        rest: list[LfsPointer] = []
        for p in chunk:
            streamable = p.size <= STREAM_MAX and not (by_oid.get(p.oid) or {}).get("error")
            (small if streamable else rest).append(p)
        futures = [self.stream_pool.submit(self._stream_group, group) for group in stream_groups(small)]
        if rest and answer is None:
            futures.append(self.batches.submit(self._basic, rest))
        else:
            futures += [self.streams.submit(self._one, p, by_oid.get(p.oid)) for p in rest]
        return futures

    def _basic(self, pointers: list[LfsPointer]) -> None:
        """Download ``pointers`` the basic way: a batch call for their hrefs, then one GET each (in the
        stream pool, in parallel); every object settles, a failed batch call included."""
        try:
            answer = self._batch(pointers)
        except Exception as err:  # noqa: BLE001 (every object must settle)
            for pointer in pointers:
                self._settle_failed(pointer, f"LFS batch request to {self.client.endpoint} failed: {err}")
            return
        by_oid = _by_oid(answer)
        for get in [self.streams.submit(self._one, p, by_oid.get(p.oid)) for p in pointers]:
            get.result()

    def _settle_failed(self, pointer: LfsPointer, why: str) -> None:
        self._fail(pointer, why)
        if self.on_done is not None:
            self.on_done(pointer, why)

    def _stream_group(self, group: list[LfsPointer]) -> None:
        """Receive ``group`` in one stream, storing each object as it arrives; what the stream did not
        deliver (refused, cut off) goes the basic way."""
        settled = 0
        try:
            body = json.dumps({"objects": [{"oid": p.oid, "size": p.size} for p in group]}).encode()
            with self.fetcher.post_stream(self.stream_url, body, {"Content-Type": LFS_JSON}) as resp:
                for pointer in group:
                    why = self._receive(resp, pointer)
                    if why is not None:
                        self._fail(pointer, why)
                    if self.on_done is not None:
                        self.on_done(pointer, why)
                    settled += 1
        except (HubfsError, OSError, httpx.HTTPError, http.client.HTTPException) as err:
            trace.mark("lfs", "stream-fallback", f"{len(group) - settled} objects: {' '.join(str(err).split())[:160]}")
        if settled < len(group):
            self._basic(group[settled:])

    def _receive(self, resp: Any, pointer: LfsPointer) -> str | None:
        """Read ``pointer``'s bytes off the stream and store them if they check out: None, else why not (the
        stream stays in step: exactly ``size`` bytes are read either way). A stream cut short raises."""
        view, got = self._buffer(pointer.size), 0
        while got < pointer.size:
            n = resp.readinto(view[got:])
            if not n:
                raise HubConnectionError(f"the LFS stream ended {pointer.size - got} bytes into object {pointer.oid}")
            got += n
        try:
            self._store_checked(view, got, pointer)
        except IntegrityError as err:
            return f"refused: {err} (not stored)"
        if self.progress is not None:
            self.progress.object_done()
        return None

    def _one(self, pointer: LfsPointer, entry: dict[str, Any] | None) -> None:
        """Download one object; a failure is recorded, and ``on_done`` is told either way."""
        why: str | None = "interrupted"
        try:
            why = self._get(pointer, entry)
        except Exception as err:  # noqa: BLE001 (an unforeseen error still settles the object, with its name)
            why = f"{type(err).__name__}: {err}"
        finally:
            if why is not None:
                self._fail(pointer, why)
            if self.on_done is not None:
                self.on_done(pointer, why)

    def _get(self, pointer: LfsPointer, entry: dict[str, Any] | None) -> str | None:
        """None once the object is stored, else why not."""
        if entry is None:
            return "the server's batch answer left it out"
        if entry.get("error"):
            err = entry["error"]
            return f"the server refused it ({err.get('code')}: {err.get('message')})"
        action = (entry.get("actions") or {}).get("download")
        if not action or not action.get("href"):
            return "the server sent no download action"
        try:
            with self.limiter.slot():
                self._download(pointer, action["href"], action.get("header") or {})
        except IntegrityError as err:
            return f"refused: {err} (not stored)"
        except (HubfsError, OSError, httpx.HTTPError) as err:
            return str(err) or type(err).__name__
        return None

    def _download(self, pointer: LfsPointer, href: str, header: dict[str, str]) -> None:
        if not header and pointer.size <= SMALL:  # one request into memory, checked, one write
            self._download_small(pointer, href)
        else:  # bounded memory: a medium object holds an 8 MiB buffer, a large one up to 6 x 16 MiB ranges
            # imported here: the module (tqdm, the file cache's locks) costs a clone's processes 0.1-0.2 s
            from hubfs.client.download import PARALLEL_MIN, RemoteFile, fetch_file

            with self.large if pointer.size >= PARALLEL_MIN else self.medium:
                tmp = self.store.incomplete(pointer.oid)
                if header:  # an action that needs its own headers: streamed through the transport
                    _download_with_headers(self.client, href, header, pointer, tmp, self.progress)
                else:
                    remote = RemoteFile(self.names.get(pointer.oid, pointer.oid), pointer.size, pointer.oid, True)
                    fetch_file(self.fetcher, self.ranges, href, remote, tmp, self.progress)
                self.store.install(tmp, pointer)
        if self.progress is not None:
            self.progress.object_done()

    def _download_small(self, pointer: LfsPointer, href: str) -> None:
        view, got = self._buffer(pointer.size), 0
        while got < pointer.size:
            n, _ = self.fetcher.fetch_into(href, got, view[got:])
            if n == 0:
                break
            got += n
        self._store_checked(view, got, pointer)

    def _store_checked(self, view: memoryview, got: int, pointer: LfsPointer) -> None:
        """Store the ``got`` bytes received into ``view`` as ``pointer``'s object once their size and sha256
        match it; else :class:`IntegrityError` (nothing stored)."""
        digest = hashlib.sha256(view[:got]).hexdigest()
        if got != pointer.size or digest != pointer.oid:
            raise IntegrityError(f"got {got} bytes with sha256 {digest}")
        self.store.put_verified(view[:got], pointer)
        if self.progress is not None:
            self.progress.update(got)


class BackgroundFetch:
    """Downloads fed over time (the filter's delayed smudges, as git sends them): :meth:`submit` starts the
    batch calls at once (up to 100 objects each, pipelined) and each object's GET as its batch answers;
    :meth:`wait` blocks until one of the given objects is settled (stored, or failed with a reason in
    ``failed``), so git can check out what arrived while the rest downloads; :meth:`drain` blocks until
    every submitted object is settled. :meth:`close` waits for what is in flight. ``on_done(pointer, why)``
    is told of each object as it settles (``why`` None once it is stored)."""

    def __init__(self, git_dir: Path, client: HubClient, lfs_url: str, names: dict[str, str],
                 on_done: Callable[[LfsPointer, str | None], None] | None = None) -> None:
        self.run = _Downloads(client, LfsStore(git_dir), batch_url(lfs_url), None, None, names)
        self.run.on_done = self._settle
        self.on_done = on_done
        self.failed: dict[str, str] = {}
        self.stored: set[str] = set()  # downloaded (and verified) by this fetch
        self._submitted: set[str] = set()
        self._settled: set[str] = set()
        self._cond = threading.Condition()

    def submit(self, pointers: Iterable[LfsPointer], missing: bool = False) -> None:
        """Start fetching the objects of ``pointers`` that are neither stored nor already asked for
        (``missing``: the caller has just found them all missing from the store)."""
        with self._cond:
            todo = list(pointers) if missing else self.run.store.missing(pointers)
            new = [p for p in todo if p.oid not in self._submitted]
            self._submitted.update(p.oid for p in new)
        if self.run.streaming:  # streams need no batch answer
            self.run.dispatch(new, None)
            return
        chunks = [new[i:i + BATCH_SIZE] for i in range(0, len(new), BATCH_SIZE)]
        for chunk in chunks[:BATCHES_AHEAD]:
            self.run.batches.submit(self._chunk, chunk)
        if chunks[BATCHES_AHEAD:]:  # runs once a first answer is in: streams then take them all at once
            self.run.batches.submit(self._rest, [p for chunk in chunks[BATCHES_AHEAD:] for p in chunk])

    def _rest(self, pointers: list[LfsPointer]) -> None:
        if self.run.streaming:
            self.run.dispatch(pointers, None)
            return
        for i in range(0, len(pointers), BATCH_SIZE):
            self.run.batches.submit(self._chunk, pointers[i:i + BATCH_SIZE])

    def _chunk(self, chunk: list[LfsPointer]) -> None:
        if self.run.streaming:  # an earlier batch answer said so: no batch call for this one
            self.run.dispatch(chunk, None)
            return
        try:
            answer = self.run._batch(chunk)
        except Exception as err:  # noqa: BLE001 (every object of the chunk must settle)
            for pointer in chunk:
                self._settle(pointer, f"LFS batch request to {self.run.client.endpoint} failed: {err}")
            return
        self.run.dispatch(chunk, answer)

    def _settle(self, pointer: LfsPointer, why: str | None) -> None:
        if self.on_done is not None:
            self.on_done(pointer, why)
        with self._cond:
            self._settled.add(pointer.oid)
            if why is not None:
                self.failed[pointer.oid] = why
            else:
                self.stored.add(pointer.oid)
            self._cond.notify_all()

    def drain(self) -> None:
        """Block until every object submitted so far is settled."""
        with self._cond:
            self._cond.wait_for(lambda: self._submitted <= self._settled)

    def wait(self, oids: set[str], gather: float = 0.05) -> None:
        """Block until one of ``oids`` is settled or not being fetched (at once for none); then up to
        ``gather`` seconds more while others settle, so that git gets them in fewer, larger rounds."""
        def count() -> int:
            return sum(1 for o in oids if o in self._settled or o not in self._submitted)

        want = min(len(oids), 32)
        with self._cond:
            self._cond.wait_for(lambda: not oids or count() > 0)
            deadline = time.monotonic() + gather
            while oids and count() < want and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def close(self) -> None:
        self.run.__exit__(None, None, None)


def _download_with_headers(client: HubClient, href: str, header: dict[str, str], pointer: LfsPointer, tmp: Path,
                           progress: _Progress | None) -> None:
    """GET ``href`` with the action's headers into ``tmp``: what is there is resumed with a Range request,
    and a body cut short is resumed the same way, up to the transport's retry count; then verified."""
    tries = client.transport.max_retries + 1
    for attempt in range(tries):
        try:
            done, hexdigest = _stream_into(client, href, header, pointer.size, tmp, progress)
            break
        except httpx.TransportError:
            if attempt + 1 >= tries:
                raise
            time.sleep(client.transport.retry.delay_for(attempt))
    if done != pointer.size or hexdigest != pointer.oid:
        tmp.unlink(missing_ok=True)
        raise IntegrityError(f"got {done} bytes with sha256 {hexdigest}")


def _stream_into(client: HubClient, href: str, header: dict[str, str], size: int, tmp: Path,
                 progress: _Progress | None) -> tuple[int, str]:
    """One GET from where ``tmp`` ends, appended as it arrives; (bytes in ``tmp``, their sha256)."""
    done = tmp.stat().st_size if tmp.exists() else 0
    if done > size:
        tmp.unlink()
        done = 0
    digest = hashlib.sha256()
    if done:
        with open(tmp, "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
    if done == size and size:
        return done, digest.hexdigest()
    headers = {**header, "Accept-Encoding": "identity", **({"Range": f"bytes={done}-"} if done else {})}
    resp = client.transport.request("GET", href, headers=headers, stream=True)
    try:
        if resp.status_code != 206 and done:  # the Range was ignored: start over
            done, digest = 0, hashlib.sha256()
            tmp.unlink()
        with open(tmp, "ab") as out:
            for chunk in resp.iter_raw():
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
    finally:
        resp.close()
    return done, digest.hexdigest()


def upload(git_dir: Path, client: HubClient, lfs_url: str, pointers: list[LfsPointer], ref: str | None, *,
           progress: bool | None = None) -> None:
    """Upload the objects of ``pointers`` that the server lacks (basic or multipart), each verified.

    Raises :class:`LfsTransferError`: for an object the server wants that is not in the local store
    (naming its oid), and for any refused or failed transfer. Returns only when all are stored.
    """
    store = LfsStore(git_dir)
    unique = list({p.oid: p for p in pointers}.values())
    if not unique:
        return
    url = batch_url(lfs_url)
    absent = [p for p in unique if not store.has(p.oid, p.size)]
    if absent:  # the server may have them already; if not, say which one is missing here
        wanted = _server_wants(client, url, absent, ref)
        if wanted:
            p = wanted[0]
            raise LfsTransferError(
                f"LFS object {p.oid} ({p.size} bytes) is not in {store.objects} and the server does not have "
                f"it{f' (and {len(wanted) - 1} more)' if len(wanted) > 1 else ''}: fetch it first "
                "(`git lfs fetch --all` or a checkout of the commit that added it), then push again.")
    adds = []
    for p in unique:
        if store.has(p.oid, p.size):
            add = Add(f"lfs/{p.oid}", store.path(p.oid))
            add.sha256 = p.oid
            adds.append(add)
    shown = _Progress.maybe("Uploading", [LfsPointer(a.sha256, a.size) for a in adds], progress)
    try:
        upload_lfs_objects(client, url, adds, ref, progress=shown, workers=8)
    except HubfsError as err:
        raise LfsTransferError(f"LFS upload to {client.endpoint} failed: {err}") from err
    except (OSError, httpx.HTTPError) as err:
        raise LfsTransferError(f"LFS upload to {client.endpoint} failed: {err or type(err).__name__}") from err
    finally:
        if shown is not None:
            shown.finish()


def _server_wants(client: HubClient, url: str, pointers: list[LfsPointer], ref: str | None) -> list[LfsPointer]:
    """The pointers a batch ``upload`` call answers with an upload action (the server lacks them)."""
    wanted = []
    for i in range(0, len(pointers), BATCH_SIZE):
        chunk = pointers[i:i + BATCH_SIZE]
        body: dict[str, Any] = {"operation": "upload", "transfers": ["basic", "multipart"], "hash_algo": "sha256",
                                "objects": [{"oid": p.oid, "size": p.size} for p in chunk]}
        if ref:
            body["ref"] = {"name": ref}
        try:
            answer = client.transport.request("POST", url, json_body=body,
                                              headers={"Accept": LFS_JSON, "Content-Type": LFS_JSON}).json()
        except HubfsError as err:
            raise LfsTransferError(f"LFS batch request to {client.endpoint} failed: {err}") from err
        by_oid = {o.get("oid"): o for o in answer.get("objects", [])}
        wanted += [p for p in chunk if (by_oid.get(p.oid) or {}).get("actions", {}).get("upload")
                   or (by_oid.get(p.oid) or {}).get("error")]
    return wanted


class _Progress:
    """git-lfs's progress line on stderr: ``Downloading LFS objects: 42% (126/300), 120 MB | 95 MB/s``."""

    def __init__(self, verb: str, objects: int, total: int, stream: IO[str]) -> None:
        self.verb, self.objects, self.total, self.stream = verb, objects, total, stream
        self.count, self.bytes = 0, 0
        self.start = self.last = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def maybe(cls, verb: str, pointers: list[LfsPointer], asked: bool | None) -> _Progress | None:
        """A progress line when asked, or (``asked`` None) when stderr is a terminal."""
        show = asked if asked is not None else sys.stderr.isatty()
        return cls(verb, len(pointers), sum(p.size for p in pointers), sys.stderr) if show and pointers else None

    def update(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            self._show(False)

    def object_done(self) -> None:
        with self._lock:
            self.count += 1
            self._show(False)

    def finish(self) -> None:
        with self._lock:
            if self.verb == "Uploading":
                self.count = self.objects if self.bytes >= self.total else self.count
            self._show(True)

    def _show(self, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        pct = 100 * self.bytes // self.total if self.total else 100
        rate = self.bytes / max(now - self.start, 1e-3)
        line = (f"\r{self.verb} LFS objects: {pct:3d}% ({self.count}/{self.objects}), "
                f"{_human(self.bytes)} | {_human(rate)}/s")
        self.stream.write(line + (", done.\n" if final and self.bytes >= self.total else "\n" if final else ""))
        self.stream.flush()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
