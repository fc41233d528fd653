"""``open(src)``: a lazy handle shaped like ``safetensors.safe_open``, over any source the loader reads.

Opening reads and validates every header (and the index) and nothing else. ``get_tensor`` reads one
tensor (zero-copy from a local file to the CPU); ``get_slice(name)[...]`` reads only the bytes of the
selected rows (runs of selected elements closer than :data:`MERGE_GAP` are fetched as one range).
"""

from __future__ import annotations

import itertools
import math
import os
from typing import TYPE_CHECKING, Any

from hubfs.errors import SafetensorsError
from hubfs.loader.header import TensorInfo, torch_dtype, torch_shape
from hubfs.loader.pipeline import Loader, byte_view
from hubfs.loader.sources import Checkpoint, resolve

if TYPE_CHECKING:
    import torch
    from typing_extensions import Self

MERGE_GAP = 256 << 10  # selected runs closer than this are read as one range


class SafeOpen:
    """An open checkpoint: ``keys()``, ``metadata()``, ``infos()``, ``get_tensor()``, ``get_slice()``.
    A context manager; ``close()`` releases files and connections (tensors already made stay valid)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.storages: dict[str, torch.UntypedStorage] = {}  # file -> its private mapping (zero-copy tensors)
        self._infos = checkpoint.infos()

    def keys(self) -> list[str]:
        """Tensor names in file-offset order (shard by shard)."""
        return list(self._infos)

    def metadata(self) -> dict[str, str] | None:
        """The ``__metadata__`` of the file (of the first shard for a sharded checkpoint)."""
        return self.checkpoint.metadata

    def index_metadata(self) -> dict[str, Any] | None:
        """The ``metadata`` of the index of a sharded checkpoint."""
        return self.checkpoint.index_metadata

    def infos(self) -> dict[str, TensorInfo]:
        return dict(self._infos)

    def info(self, name: str) -> TensorInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a tensor of {self.checkpoint.name}") from None

    def get_tensor(self, name: str, device: Any = "cpu", dtype: Any = None) -> torch.Tensor:
        """Tensor ``name`` on ``device`` (cast to ``dtype`` on the device when given)."""
        from hubfs.loader.api import plan

        info = self.info(name)
        items = plan({name: info}, device, dtype)
        for _, tensor in Loader(self.checkpoint, items, threads=4, populate=False, storages=self.storages):
            return tensor  # type: ignore[no-any-return]
        raise AssertionError("unreachable")

    def get_slice(self, name: str) -> TensorSlice:
        return TensorSlice(self, self.info(name))

    def close(self) -> None:
        self.checkpoint.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TensorSlice:
    """A tensor not read yet: ``get_shape()``, ``get_dtype()``, and ``[...]`` (ints, step > 0 slices,
    ``...``) reading only what is selected, as a CPU tensor."""

    def __init__(self, handle: SafeOpen, info: TensorInfo) -> None:
        self.handle, self.info = handle, info

    def get_shape(self) -> list[int]:
        return list(self.info.shape)

    def get_dtype(self) -> str:
        return self.info.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape

    def __len__(self) -> int:
        return self.info.shape[0] if self.info.shape else 0

    def __getitem__(self, index: Any) -> torch.Tensor:
        import torch

        info = self.info
        dtype, shape = torch_dtype(info), torch_shape(info)
        size = dtype.itemsize
        ranges, keep = _ranges(index, shape, info)
        out_shape = [len(r) for r in ranges]
        final_shape = [n for n, k in zip(out_shape, keep) if k]
        if math.prod(out_shape) == 0:
            return torch.empty(final_shape, dtype=dtype)
        runs = _runs(ranges, shape)
        buf = torch.empty(sum(n for _, n in runs) * size, dtype=torch.uint8)
        self._gather(runs, size, byte_view(buf))
        return buf.view(dtype).reshape(final_shape)

    def _gather(self, runs: list[tuple[int, int]], size: int, out: memoryview) -> None:
        """Fill ``out`` with the runs (element offset, count), reading merged ranges of the file."""
        src = self.handle.checkpoint.source(self.info)
        base = self.info.start
        pos, i = 0, 0
        while i < len(runs):
            j = i + 1
            while j < len(runs) and (runs[j][0] - (runs[j - 1][0] + runs[j - 1][1])) * size <= MERGE_GAP:
                j += 1
            first, last = runs[i], runs[j - 1]
            lo, hi = first[0] * size, (last[0] + last[1]) * size
            if j == i + 1:  # one run: straight into the output
                _fill(src, base + lo, out[pos:pos + hi - lo])
                pos += hi - lo
            else:
                chunk = bytearray(hi - lo)
                _fill(src, base + lo, memoryview(chunk))
                for off, n in runs[i:j]:
                    a = off * size - lo
                    out[pos:pos + n * size] = chunk[a:a + n * size]
                    pos += n * size
            i = j


def _fill(src: Any, offset: int, view: memoryview) -> None:
    got = src.readinto(offset, view)
    if got != len(view):
        raise SafetensorsError(f"{src.name}: truncated: {len(view)} bytes wanted at offset {offset}, got {got}")


def _ranges(index: Any, shape: tuple[int, ...], info: TensorInfo) -> tuple[list[range], list[bool]]:
    """Per dimension, the selected indices (a range) and whether the dimension is kept (not an int)."""
    idx = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in idx):
        at = idx.index(Ellipsis)
        idx = idx[:at] + (slice(None),) * (len(shape) - len(idx) + 1) + idx[at + 1:]
    if len(idx) > len(shape):
        raise IndexError(f"tensor {info.name!r} has {len(shape)} dimensions, {len(idx)} indices given")
    idx = idx + (slice(None),) * (len(shape) - len(idx))
    ranges, keep = [], []
    for d, (i, n) in enumerate(zip(idx, shape)):
        if isinstance(i, slice):
            r = range(*i.indices(n))
            if r.step <= 0:
                raise ValueError(f"tensor {info.name!r}: dimension {d}: only positive steps are supported")
            ranges.append(r)
            keep.append(True)
        elif isinstance(i, int) or hasattr(i, "__index__"):
            k = i.__index__()
            if not -n <= k < n:
                raise IndexError(f"tensor {info.name!r}: index {k} out of range for dimension {d} of size {n}")
            k %= n
            ranges.append(range(k, k + 1))
            keep.append(False)
        else:
            raise TypeError(f"tensor {info.name!r}: unsupported index {i!r} (ints, slices and ... only)")
    return ranges, keep


def _runs(ranges: list[range], shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The selection as contiguous runs of (element offset, element count), in order."""
    strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    k = len(shape)
    while k > 0 and ranges[k - 1] == range(shape[k - 1]):
        k -= 1  # trailing dimensions selected whole are part of one contiguous block
    if k == 0:
        return [(0, math.prod(shape))]
    block = strides[k - 1]
    last = ranges[k - 1]
    runs = []
    for combo in itertools.product(*ranges[:k - 1]):
        base = sum(i * s for i, s in zip(combo, strides))
        if last.step == 1:
            runs.append((base + last.start * block, len(last) * block))
        else:
            runs.extend((base + j * block, block) for j in last)
    return runs


def open_checkpoint(src: str | os.PathLike[str], *, revision: str | None = None, endpoint: str | None = None,
                    token: str | bool | None = None) -> SafeOpen:
    """Resolve and validate ``src`` (see :func:`hubfs.loader.sources.resolve`) and open it lazily."""
    return SafeOpen(resolve(src, revision=revision, endpoint=endpoint, token=token))


__all__ = ["MERGE_GAP", "SafeOpen", "TensorSlice", "open_checkpoint"]
