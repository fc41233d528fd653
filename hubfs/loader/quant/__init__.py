"""Quantize-on-load in plain torch: int8 (row-wise absmax), nf4 (blockwise, optional double quant), fp8 (e4m3).

``quantizer(kind, skip)`` returns a `Quantizer`; the loader asks ``wants(name, shape, dtype)`` from the
header (before any byte is read) and calls ``quantize(tensor)`` on the tensor once it is on its device, so
the cast and quantization run where the weight lands (GPU or CPU). Results are `QuantizedTensor`s in layouts
bitsandbytes (int8, nf4) reads; `QuantLinear` runs them forward.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import torch

from hubfs.loader.quant import fp8, int8, nf4
from hubfs.loader.quant.tensor import QuantizedTensor

KINDS = ("int8", "nf4", "nf4-dq", "fp8")
# safetensors dtype names a quantizer accepts as input.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32"})
_TORCH_TO_ST = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
# Last module-name parts that are 2-D ".weight"s but not Linear layers.
_EMBEDDING_PARTS = ("wte", "wpe")


@dataclass(frozen=True)
class Quantizer:
    """Decides which tensors to quantize and quantizes them.

    ``skip``: module names or fnmatch patterns left in full precision; "lm_head" skips "lm_head.weight" and
    "model.lm_head.weight". ``only``: when set, nothing outside these tensor names is quantized (load_into
    passes the weights of the Linear layers it swapped). ``double_quant`` and ``blocksize`` apply to nf4.
    """

    kind: str
    skip: tuple[str, ...] = ("lm_head",)
    double_quant: bool = False
    blocksize: int = 64
    only: frozenset[str] | None = None

    def skips(self, module: str) -> bool:
        """True when ``module`` (a dotted module name) matches an entry of ``skip``."""
        dotted = f".{module}."
        for s in self.skip:
            if any(c in s for c in "*?["):
                if fnmatch.fnmatchcase(module, s):
                    return True
            elif f".{s.strip('.')}." in dotted:
                return True
        return False

    def wants(self, name: str, shape: Sequence[int], dtype: str) -> bool:
        """True for the ``.weight`` of a Linear-like layer this format can hold: 2-D, non-empty, fp16/bf16/fp32
        (``dtype`` is the safetensors name, e.g. "BF16"), not skipped, not an embedding table."""
        if self.only is not None and name not in self.only:
            return False
        if not name.endswith(".weight") or len(shape) != 2 or not all(int(d) > 0 for d in shape):
            return False
        if dtype.upper() not in FLOAT_DTYPES:
            return False
        module = name[: -len(".weight")]
        last = module.rsplit(".", 1)[-1]
        if "embed" in last or last in _EMBEDDING_PARTS:
            return self.only is not None  # an explicit "only" (Linear layers) wins over the name heuristic
        return not self.skips(module)

    def wants_tensor(self, name: str, t: torch.Tensor) -> bool:
        """`wants` for a tensor already in hand."""
        return self.wants(name, tuple(t.shape), _TORCH_TO_ST.get(t.dtype, str(t.dtype)))

    def quantize(self, t: torch.Tensor) -> QuantizedTensor:
        """Quantize ``t`` on its own device."""
        if self.kind == "int8":
            return int8.quantize(t)
        if self.kind == "fp8":
            return fp8.quantize(t)
        return nf4.quantize(t, blocksize=self.blocksize, double_quant=self.double_quant)

    def restricted_to(self, names: Collection[str]) -> Quantizer:
        """The same quantizer limited to the tensor ``names``."""
        return replace(self, only=frozenset(names))


def quantizer(
    kind: str, skip: Sequence[str] = ("lm_head",), *, double_quant: bool | None = None, blocksize: int = 64
) -> Quantizer:
    """A `Quantizer` for ``kind`` in "int8", "nf4", "nf4-dq" (nf4 with double quantization), "fp8".

    Raises ValueError naming the known kinds otherwise.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown quantization {kind!r}: choose one of {', '.join(KINDS)}")
    if blocksize not in nf4.BLOCKSIZES:
        raise ValueError(f"nf4 blocksize must be one of {nf4.BLOCKSIZES}, got {blocksize}")
    dq = kind == "nf4-dq" if double_quant is None else double_quant
    base = "nf4" if kind == "nf4-dq" else kind
    return Quantizer(base, tuple(skip), double_quant=dq and base == "nf4", blocksize=blocksize)


def as_quantizer(q: str | Quantizer | None, skip: Sequence[str] = ("lm_head",)) -> Quantizer | None:
    """Accept a kind name, a ready `Quantizer` or None (no quantization)."""
    if q is None or isinstance(q, Quantizer):
        return q
    return quantizer(q, skip)


__all__ = ["KINDS", "QuantizedTensor", "Quantizer", "as_quantizer", "quantizer"]
