"""``load`` and ``iter_load``: a checkpoint onto devices, cast or quantized on the way (see :mod:`.pipeline`).

``src`` is anything :func:`hubfs.loader.sources.resolve` takes (a file, a folder, a path in a hubfs
mount, an ``hf://`` URL, a repo id with ``revision=``) or a :class:`~hubfs.loader.handle.SafeOpen`
already open. ``device_map`` maps tensor-name prefixes to devices (the longest matching prefix wins;
``""`` is the default; a prefix matches a name equal to it or starting with it and a ``.``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hubfs.loader.handle import SafeOpen, open_checkpoint
from hubfs.loader.header import TensorInfo, st_dtype, torch_dtype
from hubfs.loader.pipeline import Item, Loader, Quantizer, default_threads

if TYPE_CHECKING:
    import torch

    Device = str | int | torch.device
else:
    Device = Any

Source = str | os.PathLike[str] | SafeOpen


def load(src: Source, device: Device = "cpu", dtype: torch.dtype | str | None = None, quantize: Any = None,
         device_map: Mapping[str, Device] | None = None, *, revision: str | None = None,
         endpoint: str | None = None, token: str | bool | None = None, threads: int | None = None,
         keys: Iterable[str] | None = None, on_tensor: Callable[[str, Any], None] | None = None,
         process_group: Any = None, quantize_skip: Sequence[str] | None = None, mmap: bool = True,
         ) -> dict[str, Any]:
    """Every tensor of ``src`` (or those in ``keys``) on its device, in a dict in file-offset order.

    ``dtype``: cast floating-point tensors on the device (integer and bool tensors keep theirs);
    ``quantize``: ``"int8"``, ``"nf4"``, ``"fp8"`` (or a quantizer object): the tensors it wants become
    :class:`hubfs.loader.quant.QuantizedTensor`\\ s, quantized on the device right after the raw copy;
    ``on_tensor(name, tensor)`` is called as each tensor is ready, in file-offset order;
    ``process_group``: a ``torch.distributed`` group whose ranks each read a share of the bytes and
    exchange the rest (:func:`hubfs.loader.distributed.load_distributed`); ``mmap=False`` turns off the
    zero-copy CPU path (every byte is read into memory the tensors own).
    """
    if process_group is not None:
        load_distributed = importlib.import_module("hubfs.loader.distributed").load_distributed
        return load_distributed(src, process_group, device=device, dtype=dtype, quantize=quantize,
                                device_map=device_map, revision=revision, endpoint=endpoint, token=token,
                                threads=threads, keys=keys, on_tensor=on_tensor, quantize_skip=quantize_skip)
    out: dict[str, Any] = {}
    for name, tensor in iter_load(src, device, dtype, quantize, device_map, revision=revision, endpoint=endpoint,
                                  token=token, threads=threads, keys=keys, quantize_skip=quantize_skip, mmap=mmap):
        out[name] = tensor
        if on_tensor is not None:
            on_tensor(name, tensor)
    return out


def iter_load(src: Source, device: Device = "cpu", dtype: torch.dtype | str | None = None, quantize: Any = None,
              device_map: Mapping[str, Device] | None = None, *, revision: str | None = None,
              endpoint: str | None = None, token: str | bool | None = None, threads: int | None = None,
              keys: Iterable[str] | None = None, quantize_skip: Sequence[str] | None = None,
              mmap: bool = True) -> Iterator[tuple[str, Any]]:
    """(name, tensor) pairs as each tensor is ready, in file-offset order (see :func:`load`). The
    checkpoint is validated whole before the first byte of any tensor is read."""
    handle = src if isinstance(src, SafeOpen) else open_checkpoint(src, revision=revision, endpoint=endpoint,
                                                                   token=token)
    try:
        quantizer = make_quantizer(quantize, quantize_skip)
        items = plan(handle.infos(), device, dtype, quantizer, device_map, keys)
        loader = Loader(handle.checkpoint, items, threads=threads or default_threads(handle.checkpoint),
                        quantizer=quantizer, mmap=mmap, storages=handle.storages)
        yield from loader
    finally:
        if handle is not src:
            handle.close()


def plan(infos: Mapping[str, TensorInfo], device: Device = "cpu", dtype: torch.dtype | str | None = None,
         quantizer: Quantizer | None = None, device_map: Mapping[str, Device] | None = None,
         keys: Iterable[str] | None = None) -> list[Item]:
    """The items of a load, in file-offset order: each tensor's device, target dtype (floating-point
    tensors of 16 bits or more are cast; float8 and integer ones keep theirs) and quantizing."""
    wanted = list(infos) if keys is None else list(keys)
    missing = [k for k in wanted if k not in infos]
    if missing:
        raise KeyError(f"not in the checkpoint: {', '.join(map(repr, missing[:5]))}"
                       f"{' ...' if len(missing) > 5 else ''}")
    chosen = set(wanted)
    target = to_dtype(dtype)
    devices = {prefix: to_device(d) for prefix, d in (device_map or {}).items()}
    default = to_device(device)
    items = []
    for name, info in infos.items():
        if name not in chosen:
            continue
        dev = device_for(name, devices, default if device_map is None else None)
        src_dtype = torch_dtype(info)
        cast = target if (target is not None and src_dtype.is_floating_point and src_dtype.itemsize >= 2) else None
        final = cast or src_dtype
        q = quantizer is not None and dev.type != "meta" and bool(quantizer.wants(name, info.shape, st_dtype(final)))
        items.append(Item(info, dev, cast, q))
    return items


def device_for(name: str, devices: Mapping[str, torch.device], default: torch.device | None) -> torch.device:
    """The device of tensor ``name`` under a ``device_map`` (``devices``: module-name prefix -> device; the
    longest prefix that is ``name`` itself or a dotted parent of it wins, ``""`` matches everything), else
    ``default``. Raises ValueError when nothing matches and ``default`` is None."""
    best = None
    for prefix in devices:
        matches = prefix == "" or name == prefix or name.startswith(prefix if prefix.endswith(".") else prefix + ".")
        if matches and (best is None or len(prefix) > len(best)):
            best = prefix
    if best is not None:
        return devices[best]
    if default is not None:
        return default
    raise ValueError(f"tensor {name!r} matches no device_map prefix ({', '.join(map(repr, devices))}); "
                     f"add it, or a default under ''")


def to_device(device: Device) -> torch.device:
    import torch

    if isinstance(device, int):
        return torch.device("cuda", device)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA device")
    return dev


def to_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32",
            "fp64": "float64", "double": "float64"}.get(dtype.lower(), dtype.lower().removeprefix("torch."))
    found = getattr(torch, name, None)
    if not isinstance(found, torch.dtype):
        raise TypeError(f"unknown dtype {dtype!r} (e.g. bfloat16, float16, float32)")
    return found


def make_quantizer(quantize: Any, skip: Sequence[str] | None = None) -> Quantizer | None:
    """None, a quantizer object (has ``wants`` and ``quantize``), or one made by :mod:`hubfs.loader.quant`."""
    if quantize is None:
        return None
    if hasattr(quantize, "wants") and hasattr(quantize, "quantize"):
        return quantize  # type: ignore[no-any-return]
    from hubfs.loader.quant import quantizer as build

    return build(quantize, skip=skip) if skip is not None else build(quantize)


__all__ = ["device_for", "iter_load", "load", "make_quantizer", "plan", "to_device", "to_dtype"]
