"""Small checkpoints for the loader tests, written by the real ``safetensors`` writer or by hand (malformed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

ST_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
             "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64", "U64", "U32", "U16"]


def every_dtype(seed: int = 0) -> dict[str, torch.Tensor]:
    """One small tensor of each dtype ``safetensors.torch`` supports, odd shapes included (scalar, empty)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(7, 13, generator=g) * 3
    out = {
        "f64": base.double(), "f32": base, "f16": base.half(), "bf16": base.bfloat16(),
        "i64": (base * 1000).long(), "i32": (base * 1000).int(), "i16": (base * 100).short(),
        "i8": base.clamp(-100, 100).to(torch.int8), "u8": (base.abs() * 10).to(torch.uint8),
        "bool": base > 0, "c64": torch.complex(base, -base),
        "f8_e4m3": base.to(torch.float8_e4m3fn), "f8_e5m2": base.to(torch.float8_e5m2),
        "f8_e4m3fnuz": base.to(torch.float8_e4m3fnuz), "f8_e5m2fnuz": base.to(torch.float8_e5m2fnuz),
        "u64": (base.abs() * 1e6).to(torch.int64).to(torch.uint64), "u32": (base.abs() * 1e4).to(torch.uint32),
        "u16": (base.abs() * 100).to(torch.uint16),
        "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4), "odd.vector": torch.arange(5, dtype=torch.int16),
    }
    return out


def model_like(layers: int = 3, width: int = 32, seed: int = 1, dtype: torch.dtype = torch.bfloat16
               ) -> dict[str, torch.Tensor]:
    """A transformer-shaped state dict: embeddings, ``layers`` blocks, a head."""
    g = torch.Generator().manual_seed(seed)
    sd = {"model.embed_tokens.weight": torch.randn(50, width, generator=g).to(dtype)}
    for i in range(layers):
        p = f"model.layers.{i}"
        sd[f"{p}.self_attn.q_proj.weight"] = torch.randn(width, width, generator=g).to(dtype)
        sd[f"{p}.mlp.up_proj.weight"] = torch.randn(2 * width, width, generator=g).to(dtype)
        sd[f"{p}.input_layernorm.weight"] = torch.ones(width, dtype=dtype)
    sd["model.norm.weight"] = torch.ones(width, dtype=dtype)
    sd["lm_head.weight"] = torch.randn(50, width, generator=g).to(dtype)
    return sd


def write_sharded(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 3,
                  metadata: dict[str, str] | None = None) -> dict[str, str]:
    """Save ``tensors`` as ``shards`` files plus ``model.safetensors.index.json``; returns the weight_map."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    weight_map: dict[str, str] = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(folder / fname), metadata=metadata or {"format": "pt"})
        weight_map.update({n: fname for n in part})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return weight_map


def raw_file(path: Path, header: dict | bytes, data: bytes = b"", *, length: int | None = None) -> Path:
    """A hand-made safetensors file: ``header`` (JSON object or raw bytes), then ``data``; ``length``
    overrides the 8-byte header length."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Same names, dtypes, shapes and bytes (bit-exact, NaNs included)."""
    assert set(got) == set(want)
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, name
        assert g.shape == w.shape, name
        assert g.cpu().contiguous().view(-1).view(torch.uint8).tolist() == w.contiguous().view(-1).view(
            torch.uint8).tolist() if w.numel() else True, name


__all__ = ["ST_DTYPES", "assert_same", "every_dtype", "model_like", "raw_file", "write_sharded"]
