"""FP8 e4m3 (``torch.float8_e4m3fn``) with one fp32 scale per row: scale = row absmax / 448.

Each element is ``w / scale`` rounded to the nearest e4m3 value, so the dequantized ``q * scale`` is within
``2**-4 * |w| + 2**-10 * scale`` of ``w`` (3 mantissa bits: half a unit is 2**-4 of the value for normal
numbers; the subnormal step is 2**-9 of the scale). An all-zero row gets scale 0 and stores zeros.
"""

from __future__ import annotations

import torch

from hubfs.loader.quant.nf4 import chunk_elements
from hubfs.loader.quant.tensor import QuantizedTensor

E4M3_MAX = 448.0


def quantize(w: torch.Tensor) -> QuantizedTensor:
    """Quantize a 2-D floating weight ``[rows, cols]`` to e4m3 with per-row scales."""
    if w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"fp8 quantizes 2-D floating weights, got {tuple(w.shape)} {w.dtype}")
    rows, cols = w.shape
    data = torch.empty(rows, cols, dtype=torch.float8_e4m3fn, device=w.device)
    scale = torch.zeros(rows, dtype=torch.float32, device=w.device)
    step = max(1, chunk_elements(w.device) // max(1, cols))  # rows per piece: bounded scratch memory
    for r in range(0, rows if cols else 0, step):
        w32 = w[r : r + step].float()
        s = w32.abs().amax(dim=1) / E4M3_MAX
        safe = torch.where(s > 0, s, torch.ones_like(s))
        data[r : r + step] = (w32 / safe.unsqueeze(1)).clamp_(-E4M3_MAX, E4M3_MAX)
        scale[r : r + step] = s
    return QuantizedTensor("fp8", data, scale, tuple(w.shape), w.dtype)


def dequantize(q: QuantizedTensor, dtype: torch.dtype) -> torch.Tensor:
    """``data * scale`` per row in fp32, cast to ``dtype``."""
    return (q.data.float() * q.scales.view(-1, 1)).to(dtype)
