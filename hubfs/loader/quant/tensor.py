"""`QuantizedTensor`: one quantized weight, its scales and its quantization state.

The stored layouts are the ones bitsandbytes reads (int8: ``CB`` + ``SCB``; NF4: packed nibbles + absmax +
quant-state JSON as ``Linear4bit`` saves it) and, for FP8, an ``float8_e4m3fn`` weight + ``weight_scale``.
Every tensor of one `QuantizedTensor` lives on one device; `to` moves them together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

# bitsandbytes' reciprocal of 127, written exactly as its default backend does (int8_vectorwise_dequant).
INT8_INV_127 = 7.874015718698502e-3


@dataclass
class QuantizedTensor:
    """A 2-D weight in one of the kinds "int8", "nf4" or "fp8".

    - ``data``: int8 ``[rows, cols]`` (int8), uint8 packed nibbles ``[ceil(n/2), 1]`` (nf4, high nibble first),
      ``float8_e4m3fn`` ``[rows, cols]`` (fp8).
    - ``scales``: fp32 row absmax (int8, bitsandbytes' ``SCB``), fp32 per-block absmax or, with double
      quantization, its uint8 codes (nf4), fp32 per-row scale = row absmax / 448 (fp8).
    - ``shape``, ``dtype``: the original weight's shape and dtype (what `dequantize` returns by default).
    - nf4 only: ``blocksize``, ``code`` (the 16-entry NF4 map), and for double quantization ``nested_absmax``,
      ``nested_code`` (the 256-entry dynamic map), ``nested_offset``, ``nested_blocksize``.
    """

    kind: str
    data: torch.Tensor
    scales: torch.Tensor
    shape: tuple[int, ...]
    dtype: torch.dtype
    blocksize: int = 0
    code: torch.Tensor | None = None
    nested_absmax: torch.Tensor | None = None
    nested_code: torch.Tensor | None = None
    nested_offset: float | None = None
    nested_blocksize: int = 256

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def nested(self) -> bool:
        return self.nested_absmax is not None

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor this weight holds (data first)."""
        extra = [self.code, self.nested_absmax, self.nested_code]
        return [self.data, self.scales, *(t for t in extra if t is not None)]

    @property
    def nbytes(self) -> int:
        """Bytes held by the quantized data and its state."""
        return sum(t.nbytes for t in self.tensors())

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> QuantizedTensor:
        """A copy with ``fn`` applied to every tensor (a device move; dtypes must not change)."""

        def opt(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else fn(t)

        return replace(
            self,
            data=fn(self.data),
            scales=fn(self.scales),
            code=opt(self.code),
            nested_absmax=opt(self.nested_absmax),
            nested_code=opt(self.nested_code),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> QuantizedTensor:
        """The same weight with every tensor on ``device``."""
        return self.apply(lambda t: t.to(device, non_blocking=non_blocking))

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight back in floating point (``dtype``, default the original dtype), on the same device."""
        from hubfs.loader.quant import fp8, int8, nf4

        out_dtype = dtype or self.dtype
        if self.kind == "int8":
            return int8.dequantize(self, out_dtype)
        if self.kind == "nf4":
            return nf4.dequantize(self, out_dtype)
        if self.kind == "fp8":
            return fp8.dequantize(self, out_dtype)
        raise ValueError(f"unknown quantization kind {self.kind!r}")

    # --- serialisation in the layouts bitsandbytes / transformers save ---

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors under the names a module at ``prefix`` saves them (``prefix`` ends with "." or is "").

        int8: ``weight`` (CB), ``SCB``, ``weight_format`` (0 = row-major), as ``Linear8bitLt`` saves.
        nf4: ``weight``, ``weight.absmax``, ``weight.quant_map``, [``weight.nested_absmax``,
        ``weight.nested_quant_map``], ``weight.quant_state.bitsandbytes__nf4``, as ``Linear4bit`` saves.
        fp8: ``weight`` (float8_e4m3fn) and ``weight_scale`` (fp32, one per row).
        """
        if self.kind == "int8":
            fmt = torch.tensor(0, dtype=torch.uint8)
            return {prefix + "weight": self.data, prefix + "SCB": self.scales, prefix + "weight_format": fmt}
        if self.kind == "fp8":
            return {prefix + "weight": self.data, prefix + "weight_scale": self.scales}
        if self.kind != "nf4" or self.code is None:
            raise ValueError(f"cannot save a {self.kind!r} tensor")
        w = prefix + "weight."
        out = {prefix + "weight": self.data, w + "absmax": self.scales, w + "quant_map": self.code}
        info: dict[str, object] = {
            "quant_type": "nf4",
            "blocksize": self.blocksize,
            "dtype": _dtype_name(self.dtype),
            "shape": list(self.shape),
        }
        if self.nested_absmax is not None and self.nested_code is not None:
            out[w + "nested_absmax"] = self.nested_absmax
            out[w + "nested_quant_map"] = self.nested_code.clone()
            info.update(
                nested_blocksize=self.nested_blocksize,
                nested_dtype="float32",
                nested_offset=self.nested_offset,
            )
        packed = json.dumps(info).encode()
        out[w + "quant_state.bitsandbytes__nf4"] = torch.tensor(list(packed), dtype=torch.uint8)
        return out

    @classmethod
    def from_state_dict(
        cls, kind: str, sd: dict[str, torch.Tensor], prefix: str = "", dtype: torch.dtype = torch.float16
    ) -> QuantizedTensor:
        """Rebuild from `state_dict`'s layout; ``dtype`` is the original dtype where the layout does not say.

        Raises KeyError naming the first key that is missing.
        """

        def need(key: str) -> torch.Tensor:
            if prefix + key not in sd:
                raise KeyError(f"missing {prefix + key!r} for a {kind} weight")
            return sd[prefix + key]

        if kind == "int8":
            data = need("weight")
            return cls("int8", data, need("SCB"), tuple(data.shape), dtype)
        if kind == "fp8":
            data = need("weight")
            return cls("fp8", data, need("weight_scale"), tuple(data.shape), dtype)
        if kind != "nf4":
            raise ValueError(f"unknown quantization kind {kind!r}")
        info = json.loads(bytes(need("weight.quant_state.bitsandbytes__nf4").cpu().tolist()).decode())
        if info.get("quant_type") != "nf4":
            raise ValueError(f"{prefix}weight: quant_type {info.get('quant_type')!r} is not nf4")
        nested = "nested_offset" in info
        return cls(
            "nf4",
            need("weight"),
            need("weight.absmax"),
            tuple(info["shape"]),
            getattr(torch, info["dtype"]),
            blocksize=int(info["blocksize"]),
            code=need("weight.quant_map"),
            nested_absmax=need("weight.nested_absmax") if nested else None,
            nested_code=need("weight.nested_quant_map") if nested else None,
            nested_offset=float(info["nested_offset"]) if nested else None,
            nested_blocksize=int(info.get("nested_blocksize", 256)),
        )

    def state_keys(self, prefix: str = "") -> list[str]:
        """The names `state_dict` writes."""
        return list(self.state_dict(prefix))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
