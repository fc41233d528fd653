"""A load shared by the ranks of a ``torch.distributed`` process group: each byte is read by one rank only.

The tensors (in file-offset order, shard after shard) are split into one contiguous run per rank of about
equal bytes. Each rank reads its run as stored (no cast) onto the communication device (the CPU for
gloo, the rank's GPU for NCCL); then, owner after owner, the runs go to every rank as packed byte batches
of at most ``batch_bytes`` over ``broadcast``. Every rank then places, casts and quantizes each tensor
exactly as a plain :func:`hubfs.loader.load` would (same :func:`hubfs.loader.api.plan`), so the result
is equal on every rank to a plain load, and ``on_tensor`` sees the tensors in file-offset order.

So N nodes pull a checkpoint from the hub once, not N times: only the headers (a few KiB per file) are
read by every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from hubfs.loader.api import load, make_quantizer, plan
from hubfs.loader.handle import SafeOpen, open_checkpoint
from hubfs.loader.header import TensorInfo, torch_dtype, torch_shape
from hubfs.loader.pipeline import Item

BATCH_BYTES = 256 << 20  # one broadcast carries at most this much (a bigger tensor goes alone)
ALIGN = 16  # every tensor starts at a multiple of this in a batch (so each can be viewed as its dtype)


def split(infos: Sequence[TensorInfo], parts: int) -> list[list[TensorInfo]]:
    """``infos`` (in load order) cut into ``parts`` contiguous runs of about equal bytes (a run may be empty).

    A tensor goes to the run its byte midpoint falls in, so no run exceeds its share by more than one tensor.
    """
    total = sum(i.nbytes for i in infos)
    runs: list[list[TensorInfo]] = [[] for _ in range(parts)]
    seen = 0
    for info in infos:
        mid = seen + info.nbytes / 2
        r = min(parts - 1, int(mid * parts / total)) if total else 0
        runs[r].append(info)
        seen += info.nbytes
    return runs


def batches(run: Sequence[TensorInfo], limit: int = BATCH_BYTES) -> list[list[TensorInfo]]:
    """``run`` cut into consecutive batches of at most ``limit`` packed bytes (a bigger tensor alone)."""
    out: list[list[TensorInfo]] = []
    size = 0
    for info in run:
        n = _padded(info.nbytes)
        if out and size + n <= limit:
            out[-1].append(info)
            size += n
        else:
            out.append([info])
            size = n
    return out


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _comm_device(group: Any) -> torch.device:
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _pack(batch: Sequence[TensorInfo], own: Mapping[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    buf = torch.empty(sum(_padded(i.nbytes) for i in batch), dtype=torch.uint8, device=device)
    off = 0
    for info in batch:
        if info.nbytes:
            buf[off : off + info.nbytes].copy_(own[info.name].contiguous().reshape(-1).view(torch.uint8))
        off += _padded(info.nbytes)
    return buf


def _unpack(batch: Sequence[TensorInfo], buf: torch.Tensor) -> Iterable[tuple[TensorInfo, torch.Tensor]]:
    off = 0
    for info in batch:
        raw = buf[off : off + info.nbytes]
        yield info, raw.view(torch_dtype(info)).reshape(torch_shape(info))
        off += _padded(info.nbytes)


def _finish(item: Item, raw: torch.Tensor, quantizer: Any) -> Any:
    """The raw tensor as a plain load yields it: on its device, cast, quantized (the same steps, same order).

    A tensor that needs neither a move nor a cast stays a view of its batch buffer: batch buffers are
    never reused, so nothing is overwritten, and no second copy is made.
    """
    t = raw.to(item.device) if raw.device != item.device else raw
    if item.dtype is not None and t.dtype != item.dtype:
        t = t.to(item.dtype)
    return quantizer.quantize(t) if item.quantize else t


def load_distributed(
    src: str | os.PathLike[str] | SafeOpen,
    group: Any = None,
    *,
    device: Any = "cpu",
    dtype: torch.dtype | str | None = None,
    quantize: Any = None,
    device_map: Mapping[str, Any] | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    threads: int | None = None,
    keys: Iterable[str] | None = None,
    on_tensor: Callable[[str, Any], None] | None = None,
    quantize_skip: Sequence[str] | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> dict[str, Any]:
    """Every tensor of ``src`` on every rank of ``group`` (default: the world), each byte read by one rank.

    Takes :func:`hubfs.loader.load`'s arguments and returns what it returns, on every rank. Every rank must
    call it with the same ``src`` and ``keys``. Without an initialised process group it is a plain load.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return load(src, device, dtype, quantize, device_map, revision=revision, endpoint=endpoint, token=token,
                    threads=threads, keys=keys, on_tensor=on_tensor, quantize_skip=quantize_skip)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    handle = src if isinstance(src, SafeOpen) else open_checkpoint(src, revision=revision, endpoint=endpoint,
                                                                   token=token)
    try:
        quantizer = make_quantizer(quantize, quantize_skip)
        items = {i.info.name: i for i in plan(handle.infos(), device, dtype, quantizer, device_map, keys)}
        runs = split([i.info for i in items.values()], world)
        comm = _comm_device(group)
        mine = [i.name for i in runs[rank]]
        # This rank's run, as stored, on the communication device (read in parallel with the other ranks).
        own = load(handle, comm, None, None, None, threads=threads, keys=mine) if mine else {}
        out: dict[str, Any] = {}
        for owner, run in enumerate(runs):
            root = owner if group is None else dist.get_global_rank(group, owner)
            for batch in batches(run, batch_bytes):
                if owner == rank:
                    buf = _pack(batch, own, comm)
                    for info in batch:
                        del own[info.name]  # packed: the batch buffer holds the bytes now
                else:
                    buf = torch.empty(sum(_padded(i.nbytes) for i in batch), dtype=torch.uint8, device=comm)
                dist.broadcast(buf, src=root, group=group)
                for info, raw in _unpack(batch, buf):
                    value = _finish(items[info.name], raw, quantizer)
                    out[info.name] = value
                    if on_tensor is not None:
                        on_tensor(info.name, value)
        return out
    finally:
        if handle is not src:
            handle.close()


__all__ = ["BATCH_BYTES", "batches", "load_distributed", "split"]
