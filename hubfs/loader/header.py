"""The safetensors header: read, parse and validate it before a single tensor byte is allocated.

Layout (``huggingface/safetensors``): 8 bytes little-endian ``N``, then ``N`` bytes of a UTF-8 JSON
object (trailing spaces allowed) mapping each tensor name to ``{"dtype", "shape", "data_offsets"}``
(offsets into the data section that follows), plus an optional ``__metadata__`` str -> str map. The
data section must be covered exactly: no holes, no overlaps, no bytes past the last tensor.

:func:`parse_header` checks all of it and raises :class:`~hubfs.errors.SafetensorsError` naming the
file, the tensor and the problem. No torch here (the loader's torch parts import it lazily).
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hubfs.errors import SafetensorsError

if TYPE_CHECKING:
    import torch

MAX_HEADER_SIZE = 100_000_000  # the reference reader's cap (safetensors tensor.rs)
METADATA_KEY = "__metadata__"

# Every dtype of the reference format, with its width in bits.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

# The torch dtype of each (by attribute name: older torch builds lack some).
_TORCH_NAMES: dict[str, str] = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32",
    "F32": "float32", "I64": "int64", "U64": "uint64", "F64": "float64", "C64": "complex64",
    "F4": "float4_e2m1fn_x2",  # two per byte: the torch tensor's last dimension is halved
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of one file: ``dtype`` as safetensors spells it, ``start``/``end`` absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int
    file: str

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        """Bytes per element (0 for the sub-byte F4/F6 types)."""
        return DTYPE_BITS[self.dtype] // 8 if DTYPE_BITS[self.dtype] % 8 == 0 else 0


@dataclass(frozen=True)
class Header:
    """A validated header: tensors in file-offset order, the metadata, where data starts, the file size."""

    file: str
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str] | None = field(default=None, compare=False)
    data_start: int = 0
    size: int = 0

    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}


def torch_dtype(info: TensorInfo | str) -> torch.dtype:
    """The torch dtype of a tensor (or of a safetensors dtype name); SafetensorsError when torch has none."""
    name = info.dtype if isinstance(info, TensorInfo) else info
    dtype = _torch_dtype(name)
    if dtype is None:
        import torch

        where = f"{info.file}: tensor {info.name!r}: " if isinstance(info, TensorInfo) else ""
        raise SafetensorsError(f"{where}dtype {name} has no torch equivalent in torch {torch.__version__}")
    return dtype


@functools.cache
def _torch_dtype(name: str) -> torch.dtype | None:
    import torch

    attr = _TORCH_NAMES.get(name)
    return getattr(torch, attr, None) if attr else None


def st_dtype(dtype: torch.dtype) -> str:
    """The safetensors name of a torch dtype (``torch.bfloat16`` -> ``"BF16"``)."""
    name = str(dtype).removeprefix("torch.")
    for st, attr in _TORCH_NAMES.items():
        if attr == name:
            return st
    raise SafetensorsError(f"{dtype} has no safetensors dtype")


def torch_shape(info: TensorInfo) -> tuple[int, ...]:
    """The shape of the torch tensor holding ``info`` (F4 packs two per byte: last dimension halved)."""
    if info.dtype == "F4":
        return (*info.shape[:-1], info.shape[-1] // 2) if info.shape else info.shape
    return info.shape


def header_length(first8: bytes, file: str, size: int) -> int:
    """``N`` from the first 8 bytes, checked against the file size and the 100 MB cap."""
    if size < 8 or len(first8) < 8:
        raise SafetensorsError(f"{file}: truncated: {size} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", first8[:8])
    if n > MAX_HEADER_SIZE:
        raise SafetensorsError(f"{file}: header length {n} exceeds the {MAX_HEADER_SIZE}-byte limit")
    if 8 + n > size:
        raise SafetensorsError(f"{file}: header length {n} runs past the end of the file ({size} bytes; truncated?)")
    return n


def read_header(read: Callable[[int, int], bytes], file: str, size: int) -> Header:
    """Read and validate the header of a file of ``size`` bytes through ``read(offset, length)``."""
    n = header_length(read(0, 8) if size >= 8 else b"", file, size)
    raw = read(8, n)
    if len(raw) != n:
        raise SafetensorsError(f"{file}: truncated: the {n}-byte header could not be read whole ({len(raw)} bytes)")
    return parse_header(raw, file, size)


def parse_header(raw: bytes, file: str, size: int) -> Header:
    """Validate the JSON header ``raw`` (without its 8-byte length) of a file of ``size`` bytes."""
    data_start = 8 + len(raw)
    data_len = size - data_start
    if not raw.startswith(b"{"):
        raise SafetensorsError(f"{file}: the header is not a JSON object (it must start with '{{')")
    try:
        obj = json.loads(raw.decode("utf-8").rstrip(" "))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SafetensorsError(f"{file}: the header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SafetensorsError(f"{file}: the header is not a JSON object")
    metadata = _metadata(obj.pop(METADATA_KEY, None), file)
    infos = [_tensor(name, entry, file, data_start, data_len) for name, entry in obj.items()]
    infos.sort(key=lambda t: (t.start, t.end))
    _check_coverage(infos, file, data_start, size)
    return Header(file, tuple(infos), metadata, data_start, size)


def _metadata(value: object, file: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SafetensorsError(f"{file}: {METADATA_KEY} must map strings to strings")
    return dict(value)


def _tensor(name: str, entry: object, file: str, data_start: int, data_len: int) -> TensorInfo:
    where = f"{file}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SafetensorsError(f"{where}: its entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise SafetensorsError(f"{where}: unknown dtype {dtype!r} (known: {', '.join(DTYPE_BITS)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise SafetensorsError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
        raise SafetensorsError(f"{where}: data_offsets {offsets!r} is not [begin, end]")
    begin, end = offsets
    if end < begin:
        raise SafetensorsError(f"{where}: data_offsets [{begin}, {end}] end before they begin")
    if end > data_len:
        raise SafetensorsError(f"{where}: data_offsets [{begin}, {end}] out of range: the data section has "
                               f"{data_len} bytes (truncated file?)")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        need = f"{bits // 8} bytes" if bits % 8 == 0 else f"{bits} bits (not a whole number of bytes)"
        raise SafetensorsError(f"{where}: shape {shape} of {dtype} needs {need} but data_offsets [{begin}, {end}] "
                               f"hold {end - begin}")
    if dtype == "F4" and shape and shape[-1] % 2:
        raise SafetensorsError(f"{where}: F4 needs an even last dimension, shape is {shape}")
    return TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end, file)


def _check_coverage(infos: list[TensorInfo], file: str, data_start: int, size: int) -> None:
    """Tensors (sorted by offset) cover the data section exactly: no overlap, no hole, nothing after."""
    pos, prev = data_start, None
    for t in infos:
        if t.start < pos:
            assert prev is not None
            raise SafetensorsError(f"{file}: tensor {t.name!r}: data_offsets [{t.start - data_start}, "
                                   f"{t.end - data_start}] overlap tensor {prev.name!r} "
                                   f"[{prev.start - data_start}, {prev.end - data_start}]")
        if t.start > pos:
            after = f"after tensor {prev.name!r}" if prev is not None else "at the start of the data section"
            raise SafetensorsError(f"{file}: tensor {t.name!r}: a hole of {t.start - pos} bytes {after} "
                                   f"(data_offsets begin at {t.start - data_start}, expected {pos - data_start})")
        if t.end > pos or prev is None or prev.end <= t.start:
            prev = t
        pos = max(pos, t.end)
    if pos != size:
        last = f"after tensor {prev.name!r}" if prev is not None else "and no tensor"
        raise SafetensorsError(f"{file}: {size - pos} trailing bytes in the data section {last} "
                               f"(data ends at {pos - data_start}, the file holds {size - data_start})")


__all__ = ["DTYPE_BITS", "MAX_HEADER_SIZE", "METADATA_KEY", "Header", "TensorInfo", "header_length", "parse_header",
           "read_header", "st_dtype", "torch_dtype", "torch_shape"]
