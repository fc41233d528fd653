"""Row-wise absmax int8, weight only: bitsandbytes' LLM.int8 weight layout (``CB`` int8 + ``SCB`` fp32).

Bit-identical to what ``bnb.nn.Int8Params`` stores: the weight is cast to float16 first, each row is
scaled by 127 / row absmax and rounded (``bitsandbytes.functional.int8_vectorwise_quant``, default torch
backend). Plain torch on whatever device the tensor is on. A row of zeros quantizes to zeros (SCB 0).
"""

from __future__ import annotations

import torch

from hubfs.loader.quant.nf4 import chunk_elements
from hubfs.loader.quant.tensor import INT8_INV_127, QuantizedTensor


def quantize(w: torch.Tensor) -> QuantizedTensor:
    """Quantize a 2-D floating weight ``[rows, cols]`` row-wise to int8."""
    if w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"int8 quantizes 2-D floating weights, got {tuple(w.shape)} {w.dtype}")
    rows, cols = w.shape
    cb = torch.empty(rows, cols, dtype=torch.int8, device=w.device)
    row_stats = torch.empty(rows, dtype=torch.float32, device=w.device)
    step = max(1, chunk_elements(w.device) // max(1, cols))  # rows per piece: bounded scratch memory
    for r in range(0, rows, step):
        a = w[r : r + step].to(torch.float16)
        stats = torch.max(a.abs(), dim=1).values.float()
        scaled = a * (127.0 / stats.unsqueeze(-1))
        # 0 * inf = nan only on an all-zero row: store it as zeros rather than an undefined cast.
        cb[r : r + step] = torch.round(scaled.nan_to_num_(0.0))
        row_stats[r : r + step] = stats
    return QuantizedTensor("int8", cb, row_stats, tuple(w.shape), w.dtype)


def dequantize(q: QuantizedTensor, dtype: torch.dtype) -> torch.Tensor:
    """``CB * SCB / 127`` in fp32 (as bitsandbytes' ``int8_vectorwise_dequant``), then cast to ``dtype``."""
    return (q.data * q.scales.view(-1, 1) * INT8_INV_127).to(dtype)
