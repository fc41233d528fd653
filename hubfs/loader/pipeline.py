"""The device pipeline: tensors from a :class:`~hubfs.loader.sources.Checkpoint` onto devices, in file order.

Per tensor, one of three paths:

- **zero-copy**: a local, mappable file to the CPU without dtype change or quantizing: a view of a
  private (copy-on-write) mapping of the file, as safetensors does. A tensor whose bytes are all in the
  page cache is handed out at once (its pages fault in cheaply on first touch); the others are
  populated ahead by the ``threads`` workers, ``chunk`` bytes a piece (reading the disk in parallel),
  before they are handed out (see :mod:`hubfs.loader.pages`);
- **direct**: to the CPU otherwise: ``threads`` workers ``pread`` pieces of ``chunk`` bytes straight
  into the tensor's raw bytes, then it is cast or quantized in place of the raw buffer;
- **staged**: to an accelerator: workers read pieces into a ring of reused staging buffers (pinned
  host memory), each piece is copied raw to the device on a side stream while the next pieces are read
  (an event per buffer says when it may be refilled), then the tensor is cast or quantized on the device,
  on that stream; the caller's stream waits on a per-tensor event (no host synchronisation).

A small local checkpoint (``INLINE_MAX``) is read by the calling thread itself by default (``threads`` 0:
no pool to start, no hand-off per piece; ``HUBFS_LOADER_INLINE=0`` keeps the pool).
Reads are submitted in file-offset order, at most ``window`` pieces ahead, and tensors come out in that
order as soon as their last piece landed. Host memory stays bounded whatever the model size: the ring
(``slots x chunk``) on the staged path; the raw buffers of tensors in flight (on the device, or on the
CPU on the direct path) are capped at ``max(2 x largest tensor, threads x chunk)``; CPU buffers of 1 MiB
or more are anonymous mappings of their own (huge pages where they fit), returned to the system when
freed (see :func:`~hubfs.loader.pages.host_buffer`).
Yielded tensors own their memory (or their mapping): nothing is reused under the caller.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hubfs.config import loader_inline
from hubfs.errors import SafetensorsError
from hubfs.loader.header import TensorInfo, torch_dtype, torch_shape
from hubfs.loader.pages import byte_view, host_buffer
from hubfs.loader.pages import populate as fault_in
from hubfs.loader.sources import Checkpoint, FileSource

if TYPE_CHECKING:
    import torch

MiB = 1 << 20
DIRECT_CHUNK = 8 * MiB  # pieces read straight into CPU tensors from local files
STAGE_CHUNK = 16 * MiB  # pinned staging buffers (fastsafetensors' bounce size), and ranges from the hub
INLINE_MAX = 32 * MiB  # local checkpoints up to this size are read inline by default (see default_threads)


class Quantizer(Protocol):
    """What the pipeline asks of a quantizer (:func:`hubfs.loader.quant.quantizer` makes them)."""

    def wants(self, name: str, shape: Sequence[int], dtype: str) -> bool:
        """Whether to quantize tensor ``name`` (``dtype``: the safetensors name of its dtype once cast)."""

    def quantize(self, tensor: torch.Tensor) -> Any: ...


@dataclass(frozen=True)
class Item:
    """One tensor to load: where to (``device``), as what (``dtype``: None keeps it), quantized or not."""

    info: TensorInfo
    device: torch.device
    dtype: torch.dtype | None = None
    quantize: bool = False


@dataclass
class _Piece:
    job: _Job
    offset: int  # into the tensor's bytes
    length: int
    future: Future[None]
    slot: int = -1  # staging slot, -1 on the direct path


class _Job:
    """A tensor in flight: its raw destination bytes and how many pieces are still to land."""

    def __init__(self, item: Item, raw: torch.Tensor | None, pieces: int) -> None:
        self.item, self.raw, self.left = item, raw, pieces
        self.result: Any = None


class StagingRing:
    """``slots`` reused host buffers of ``chunk`` bytes (pinned when ``pin``); each remembers the event of
    the device copy last made from it, which a reader waits on before refilling it."""

    def __init__(self, slots: int, chunk: int, pin: bool) -> None:
        import torch

        self.chunk = chunk
        self.buffers = [torch.empty(chunk, dtype=torch.uint8, pin_memory=pin) for _ in range(slots)]
        self.views = [byte_view(b) for b in self.buffers]
        self.events: list[Any] = [None] * slots
        self.free: collections.deque[int] = collections.deque(range(slots))

    def acquire(self) -> int | None:
        return self.free.popleft() if self.free else None

    def release(self, slot: int, event: Any) -> None:
        self.events[slot] = event
        self.free.append(slot)


def default_threads(ckpt: Checkpoint) -> int:
    """Readers per load: 16 connections for the hub; 0 (read by the calling thread, no pool) for a local
    checkpoint of at most ``INLINE_MAX`` bytes, where starting and feeding a pool costs more than parallel
    reads save (``HUBFS_LOADER_INLINE=0``: never); else 2-8 by CPU count."""
    import os

    if _remote(ckpt):
        return 16
    if loader_inline() and sum(f.size for f in ckpt.files.values()) <= INLINE_MAX:
        return 0
    return max(2, min(8, os.cpu_count() or 2))


def _remote(ckpt: Checkpoint) -> bool:
    """Whether some file of ``ckpt`` is read from the hub (not from a cached blob)."""
    return any(getattr(f, "url", None) and not getattr(f, "cached", False) for f in ckpt.files.values())


class Loader:
    """One load of ``items`` (in order) from ``ckpt``; iterate for (name, tensor) pairs in that order."""

    def __init__(self, ckpt: Checkpoint, items: list[Item], *, threads: int, quantizer: Quantizer | None = None,
                 chunk: int | None = None, mmap: bool = True, populate: bool = True, stage: bool = False,
                 storages: dict[str, torch.UntypedStorage] | None = None) -> None:
        """``threads`` 0: every read on the calling thread (no pool); ``stage``: send CPU tensors through the
        staging ring too (the accelerator path, run on the CPU)."""
        import torch

        self.ckpt, self.items, self.threads = ckpt, items, max(1, threads)
        self.inline = threads <= 0
        self.quantizer = quantizer
        self.mmap, self.populate = mmap, populate
        self.storages = storages if storages is not None else {}
        self.stage_all = stage
        self.staged = stage or any(_accelerated(i.device) for i in items)
        self.chunk = chunk or (STAGE_CHUNK if self.staged or _remote(ckpt) else DIRECT_CHUNK)
        largest = max((i.info.nbytes for i in items), default=0)
        self.budget = max(2 * largest, self.threads * self.chunk)
        self.window = self.threads * 2
        self._torch = torch
        self._streams: dict[torch.device, Any] = {}
        self._cached_files: dict[str, bool] = {}  # file -> all of it seems in the page cache (when asked)

    # -- planning ------------------------------------------------------------------------------------

    def _zero_copy(self, item: Item) -> bool:
        info = item.info
        return (self.mmap and not self.stage_all and not item.quantize and item.device.type == "cpu"
                and self.ckpt.files[info.file].mmap_path is not None
                and (item.dtype is None or item.dtype == torch_dtype(info))
                and info.end > info.start and info.start % max(1, info.itemsize) == 0)

    def _mapped(self, item: Item) -> torch.Tensor:
        torch = self._torch
        info = item.info
        storage = self.storages.get(info.file)
        if storage is None:
            src = self.ckpt.source(info)
            assert src.mmap_path is not None
            storage = self.storages[info.file] = torch.UntypedStorage.from_file(src.mmap_path, False, src.size)
        dtype = torch_dtype(info)
        shape = torch_shape(info)
        return torch.empty(0, dtype=dtype).set_(storage, info.start // max(1, dtype.itemsize), shape,
                                                _contiguous_strides(shape))

    def _in_page_cache(self, info: TensorInfo) -> bool:
        """Whether ``info``'s bytes are all in the page cache (the whole file sampled first, once per load)."""
        src = self.ckpt.source(info)
        whole = self._cached_files.get(info.file)
        if whole is None:
            whole = self._cached_files[info.file] = bool(src.probably_in_page_cache())
        return whole or bool(src.in_page_cache(info.start, info.nbytes))

    # -- running -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        torch = self._torch
        ring = None
        if self.staged:
            ring = StagingRing(self.threads + 2, self.chunk, torch.cuda.is_available())
            self.window = len(ring.buffers)
        pool: Any = _Inline() if self.inline else ThreadPoolExecutor(self.threads, thread_name_prefix="hubfs-load")
        inflight: collections.deque[_Piece] = collections.deque()
        jobs: collections.deque[_Job] = collections.deque()
        pending_bytes, idx = 0, 0
        current: tuple[_Job, int] | None = None  # the job being submitted, and its next offset
        try:
            while True:
                # 1. submit pieces in order while the window, the ring and the byte budget allow
                while len(inflight) < self.window:
                    if current is None:
                        if idx == len(self.items):
                            break
                        item = self.items[idx]
                        nbytes = item.info.nbytes
                        mapped = self._zero_copy(item)
                        cold = mapped and self.populate and not self._in_page_cache(item.info)
                        if mapped and not cold and not jobs:  # ready now, and nothing before it is pending
                            idx += 1
                            yield item.info.name, self._mapped(item)
                            continue
                        cheap = mapped or nbytes == 0 or item.device.type == "meta"
                        if not cheap and pending_bytes and pending_bytes + nbytes > self.budget:
                            break
                        idx += 1
                        job = self._start(item, mapped, cold)
                        jobs.append(job)
                        if job.left == 0:
                            continue
                        pending_bytes += nbytes if job.raw is not None else 0
                        current = (job, 0)
                    job, off = current
                    length = min(self.chunk, job.item.info.nbytes - off)
                    piece = self._submit(pool, ring, job, off, length)
                    if piece is None:
                        break  # no free staging slot: land a piece first
                    inflight.append(piece)
                    current = (job, off + length) if off + length < job.item.info.nbytes else None
                # 2. hand out every finished tensor at the head, in order
                while jobs and jobs[0].left == 0:
                    job = jobs.popleft()
                    if job.raw is not None:
                        pending_bytes -= job.item.info.nbytes
                    yield job.item.info.name, self._finish(job)
                # 3. land the oldest piece (its copy to the device is issued here), or stop when all is out
                if inflight:
                    self._land(inflight.popleft(), ring)
                elif current is None and idx == len(self.items) and not jobs:
                    return
        finally:
            for piece in inflight:
                piece.future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _stages(self, item: Item) -> bool:
        return self.stage_all or _accelerated(item.device)

    def _start(self, item: Item, mapped: bool, cold: bool) -> _Job:
        """A job for ``item`` (``mapped``: on the zero-copy path; ``cold``: not in the page cache): done
        already (empty, meta, zero-copy and cached), or with pieces to read or to fault in."""
        torch = self._torch
        info = item.info
        if info.nbytes == 0 or item.device.type == "meta":
            job = _Job(item, None, 0)
            job.result = torch.empty(torch_shape(info), dtype=torch_dtype(info), device=item.device)
            return job
        if mapped:
            job = _Job(item, None, 0)
            job.result = self._mapped(item)
            if cold:
                job.left = math.ceil(info.nbytes / self.chunk)  # fault in from the disk, in parallel
            return job
        if _accelerated(item.device):
            with self._stream_ctx(item.device):
                raw = torch.empty(info.nbytes, dtype=torch.uint8, device=item.device)
        else:
            raw = host_buffer(info.nbytes)
        return _Job(item, raw, math.ceil(info.nbytes / self.chunk))

    def _submit(self, pool: ThreadPoolExecutor, ring: StagingRing | None, job: _Job, off: int,
                length: int) -> _Piece | None:
        src = self.ckpt.source(job.item.info)
        start = job.item.info.start + off
        if job.raw is None:  # a mapped tensor: fault its pages in (kernel side, no copy)
            storage = self.storages[job.item.info.file]
            return _Piece(job, off, length, pool.submit(fault_in, storage.data_ptr() + start, length))
        if not self._stages(job.item):
            view = byte_view(job.raw)[off:off + length]
            return _Piece(job, off, length, pool.submit(_read, src, start, view, None))
        assert ring is not None
        slot = ring.acquire()
        if slot is None:
            return None
        event, ring.events[slot] = ring.events[slot], None
        return _Piece(job, off, length, pool.submit(_read, src, start, ring.views[slot][:length], event), slot)

    def _land(self, piece: _Piece, ring: StagingRing | None) -> None:
        piece.future.result()
        job = piece.job
        if piece.slot >= 0:
            assert ring is not None and job.raw is not None
            torch = self._torch
            with self._stream_ctx(job.item.device) as stream:
                # async only where an event tells when the buffer may be refilled (CUDA)
                job.raw[piece.offset:piece.offset + piece.length].copy_(ring.buffers[piece.slot][:piece.length],
                                                                       non_blocking=stream is not None)
                event = None
                if stream is not None:
                    event = torch.cuda.Event()
                    event.record(stream)
            ring.release(piece.slot, event)
        job.left -= 1

    def _finish(self, job: _Job) -> Any:
        """The tensor of a job whose bytes all landed: viewed as its dtype and shape, cast, quantized."""
        if job.raw is None:
            return job.result
        item, info = job.item, job.item.info
        with self._stream_ctx(item.device) as stream:
            out: Any = job.raw.view(torch_dtype(info)).view(torch_shape(info))
            if item.dtype is not None and out.dtype != item.dtype:
                out = out.to(item.dtype)
            if item.quantize and self.quantizer is not None:
                out = self.quantizer.quantize(out)
            job.raw = None
            if stream is not None:
                torch = self._torch
                ready = torch.cuda.Event()
                ready.record(stream)
                current = torch.cuda.current_stream(item.device)
                current.wait_event(ready)
                for t in _tensors_of(out):
                    if t.device.type == "cuda":
                        t.record_stream(current)
        return out

    def _stream_ctx(self, device: torch.device) -> Any:
        """A context running on ``device``'s side stream (yields it), or a no-op one off CUDA."""
        torch = self._torch
        if device.type != "cuda":
            return _NoStream()
        stream = self._streams.get(device)
        if stream is None:
            stream = self._streams[device] = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
        return _OnStream(stream)


class _Inline:
    """The pool of an inline load: ``submit`` runs the call at once, on the calling thread."""

    def submit(self, fn: Any, *args: Any) -> Future[None]:
        done: Future[None] = Future()
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - raised by result(), as a pool's future would
            done.set_exception(exc)
        else:
            done.set_result(None)
        return done

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None


class _NoStream:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _OnStream:
    def __init__(self, stream: Any) -> None:
        import torch

        self.stream = stream
        self._ctx = torch.cuda.stream(stream)

    def __enter__(self) -> Any:
        self._ctx.__enter__()
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _read(src: FileSource, offset: int, view: memoryview, wait: Any) -> None:
    """Worker: wait until the staging buffer's last device copy finished, then fill it whole."""
    if wait is not None:
        wait.synchronize()
    got = src.readinto(offset, view)
    if got != len(view):
        raise SafetensorsError(f"{src.name}: truncated: {len(view)} bytes wanted at offset {offset}, got {got} "
                               f"(the file is {src.size} bytes)")


def _accelerated(device: torch.device) -> bool:
    return device.type not in ("cpu", "meta")


@functools.lru_cache(maxsize=1024)  # a model has few distinct shapes
def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))


def _tensors_of(obj: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return [v for f in fields(obj) if isinstance(v := getattr(obj, f.name), torch.Tensor)]
    return []


__all__ = ["DIRECT_CHUNK", "INLINE_MAX", "STAGE_CHUNK", "Item", "Loader", "Quantizer", "StagingRing", "byte_view",
           "default_threads", "host_buffer"]
