"""NF4 (4-bit NormalFloat), blockwise absmax, optional double quantization of the absmax.

Bit-identical to bitsandbytes' default torch backend (``quantize_4bit(..., quant_type="nf4")``): each block
of ``blocksize`` elements of the flattened weight is scaled by 1 / its absmax, each value is mapped to the
nearest of the 16 NF4 levels (``bucketize`` against the midpoints), and two codes are packed per byte, the
even element in the high nibble. With double quantization the fp32 absmax minus its mean is quantized again
with bitsandbytes' 8-bit dynamic map in blocks of 256. Plain torch on whatever device the tensor is on.
"""

from __future__ import annotations

import torch

from hubfs.loader.quant.tensor import QuantizedTensor

# The 16 NF4 levels (QLoRA; bitsandbytes.functional.get_4bit_type("nf4")).
NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # fmt: skip
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NESTED_BLOCKSIZE = 256


def chunk_elements(device: torch.device) -> int:
    """Elements quantized per piece: 256 Ki on the CPU (a few MiB of scratch), 16 Mi on an accelerator (fewer
    kernel launches). A multiple of every block size."""
    return 1 << (18 if device.type == "cpu" else 24)


def nf4_code(device: torch.device | str = "cpu") -> torch.Tensor:
    """The NF4 map as bitsandbytes builds it (fp32, normalised by its absmax)."""
    code = torch.tensor(NF4_LEVELS, device=device)
    return code.div_(code.abs().max())


def dynamic_code(device: torch.device | str = "cpu") -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic map (``create_dynamic_map()``: 7 exponent bits, sorted, fp32)."""
    data: list[float] = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32, device=device)


def _blockwise_absmax(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(absmax per block, values scaled into [-1, 1]) exactly as bitsandbytes' default backend computes them."""
    n = flat.numel()
    rem = n % blocksize
    full = n - rem
    blocks = flat[:full].reshape(full // blocksize, blocksize)
    absmax = blocks.abs().max(dim=-1)[0]
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    if rem:
        am = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.unsqueeze(0)])
        scaled = torch.cat([scaled, torch.clamp(flat[full:] / am, -1, 1)])
    return absmax, scaled


def _bucketize(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    bounds = (code[:-1] + code[1:]) / 2
    return torch.bucketize(scaled, bounds, out_int32=True)


def _blockwise_dequant(q: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    """fp32 ``code[q]`` times its block's absmax (bitsandbytes' default ``dequantize_blockwise``)."""
    n = q.numel()
    out = code[q.reshape(-1).to(torch.int64)]
    rem = n % blocksize
    full = n - rem
    head = (out[:full].reshape(-1, blocksize) * absmax[: full // blocksize].view(-1, 1)).reshape(full)
    if not rem:
        return head
    return torch.cat([head, out[full:] * absmax[full // blocksize]])


def quantize(w: torch.Tensor, blocksize: int = 64, double_quant: bool = False) -> QuantizedTensor:
    """Quantize a floating weight (fp16, bf16 or fp32) to packed NF4 in ``blocksize`` blocks.

    Works through the weight in pieces of `chunk_elements` (whole blocks), so the scratch memory stays
    bounded whatever the tensor's size; the result is the same as in one piece.
    """
    if blocksize not in BLOCKSIZES:
        raise ValueError(f"nf4 blocksize must be one of {BLOCKSIZES}, got {blocksize}")
    if w.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"nf4 quantizes fp16, bf16 or fp32 weights, got {w.dtype}")
    code = nf4_code(w.device)
    flat = w.reshape(-1)
    n = flat.numel()
    packed = torch.empty((n + 1) // 2, dtype=torch.uint8, device=w.device)
    absmax = torch.empty(-(-n // blocksize), dtype=torch.float32, device=w.device)
    step = chunk_elements(w.device)
    for start in range(0, n, step):
        part_absmax, scaled = _blockwise_absmax(flat[start : start + step].float(), blocksize)
        absmax[start // blocksize : start // blocksize + part_absmax.numel()] = part_absmax
        del part_absmax
        if scaled.numel() % 2:
            scaled = torch.nn.functional.pad(scaled, (0, 1))
        q = _bucketize(scaled, code).to(torch.uint8)
        del scaled
        packed[start // 2 : start // 2 + q.numel() // 2] = (q[::2] << 4) | q[1::2]
    qt = QuantizedTensor("nf4", packed.unsqueeze(1), absmax, tuple(w.shape), w.dtype, blocksize=blocksize, code=code)
    if not double_quant:
        return qt
    offset = absmax.mean()
    nested_code = dynamic_code(w.device)
    nested_absmax, scaled2 = _blockwise_absmax(absmax - offset, NESTED_BLOCKSIZE)
    qt.scales = _bucketize(scaled2, nested_code).to(torch.uint8)
    qt.nested_absmax, qt.nested_code, qt.nested_offset = nested_absmax, nested_code, float(offset.item())
    qt.nested_blocksize = NESTED_BLOCKSIZE
    return qt


def block_absmax(q: QuantizedTensor) -> torch.Tensor:
    """The fp32 per-block absmax (undoing double quantization when present)."""
    if q.nested_absmax is None or q.nested_code is None:
        return q.scales
    deq = _blockwise_dequant(q.scales, q.nested_absmax, q.nested_code, q.nested_blocksize)
    return deq + (q.nested_offset or 0.0)


def dequantize(q: QuantizedTensor, dtype: torch.dtype) -> torch.Tensor:
    """``code[nibble] * absmax`` per block in fp32, reshaped to the original shape, cast to ``dtype``."""
    if q.code is None:
        raise ValueError("nf4 tensor without its quant_map")
    packed = q.data.reshape(-1)
    if packed.dtype != torch.uint8:
        packed = packed.view(torch.uint8)
    nibbles = torch.empty(packed.numel() * 2, dtype=torch.uint8, device=packed.device)
    nibbles[::2] = packed >> 4
    nibbles[1::2] = packed & 0xF
    n = 1
    for d in q.shape:
        n *= d
    out = _blockwise_dequant(nibbles[:n], block_absmax(q), q.code, q.blocksize)
    return out.reshape(q.shape).to(dtype)
