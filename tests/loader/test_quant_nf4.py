"""NF4 blocksize 64, with and without double quantization: bit-identical to bitsandbytes' default torch
backend, a stored layout bnb dequantizes, QuantLinear forward within bounds."""

from __future__ import annotations

from collections.abc import Iterator

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import pytest
import torch
from torch import nn

from hubfs.loader.quant import QuantizedTensor, quantizer
from hubfs.loader.quant.linear import QuantLinear
from hubfs.loader.quant.nf4 import dynamic_code, nf4_code

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = [(1, 1), (3, 7), (130, 257), (1031, 300)]  # the last: more than one piece
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _eager_bnb() -> Iterator[None]:
    """bnb's default dequantize is wrapped in torch.compile (a compile per shape and dtype, seconds each on a
    small CPU); the eager kernel computes the same values."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        yield


def default_quantize_blockwise(a: torch.Tensor, code: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """bitsandbytes' default (pure torch) quantize_blockwise kernel. On CPU bnb dispatches to its native C
    kernel instead, which breaks some ties differently; the default backend is the one the GPU-side
    torch path and this loader follow."""
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    return torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(keys, a, code, blocksize)


def test_code_tables_match_bitsandbytes() -> None:
    assert torch.equal(nf4_code(), bnbf.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(dynamic_code(), bnbf.create_dynamic_map())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("double_quant", [False, True])
def test_bit_identical_to_bitsandbytes(shape: tuple[int, int], dtype: torch.dtype, device: str, double_quant: bool) -> None:
    torch.manual_seed(sum(shape))
    w = (torch.randn(shape) * 0.5).to(dtype).to(device)
    q = quantizer("nf4", double_quant=double_quant).quantize(w)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double_quant)
    assert q.data.dtype == torch.uint8 and q.data.shape == packed.shape
    assert torch.equal(q.data, packed)
    assert q.blocksize == 64 and q.shape == shape and q.dtype == dtype and q.device.type == device
    if not double_quant:
        assert torch.equal(q.scales, state.absmax)
    else:
        assert q.nested_offset == state.offset.item()
        # The nested 8-bit absmax quantization, against bnb's default backend (bnb's own path on this
        # device when it is the GPU-side torch one).
        fp32_absmax = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")[1].absmax
        ref_codes, ref_absmax = default_quantize_blockwise(fp32_absmax - state.offset, bnbf.create_dynamic_map().to(device), 256)
        assert torch.equal(q.scales, ref_codes) and torch.equal(q.nested_absmax, ref_absmax)
        assert q.nested_blocksize == 256
    # bnb reads our saved layout (as Linear4bit saves it) and dequantizes it to what we do.
    sd = q.state_dict("layer.")
    qs = bnbf.QuantState.from_dict({k[len("layer.weight.") :]: v for k, v in sd.items() if k != "layer.weight"}, device=torch.device(device))
    assert qs.quant_type == "nf4" and qs.blocksize == 64 and qs.dtype == dtype and tuple(qs.shape) == shape
    assert qs.nested == double_quant
    theirs = bnbf.dequantize_4bit(sd["layer.weight"], qs)
    ours = q.dequantize()
    assert ours.dtype == dtype and ours.shape == shape
    assert torch.allclose(theirs.float(), ours.float(), rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-2)
    # Error bound: the widest NF4 gap is -1 .. -0.6962 (0.304), so half of it times the block absmax, plus
    # the double-quantized absmax (well under 1%) and the bf16/fp16 rounding of the result.
    err = (ours.float() - w.float()).abs().reshape(-1)
    absmax = w.float().reshape(-1).abs()
    n = absmax.numel()
    blocks = torch.nn.functional.pad(absmax, (0, (-n) % 64)).reshape(-1, 64).amax(dim=1).repeat_interleave(64)[:n]
    assert bool((err <= blocks * (0.152 + 0.02) + 1e-6).all())


def test_state_dict_roundtrip_and_sizes() -> None:
    w = torch.randn(128, 64, dtype=torch.bfloat16)
    for dq in (False, True):
        q = quantizer("nf4-dq" if dq else "nf4").quantize(w)
        assert q.nested is dq
        back = QuantizedTensor.from_state_dict("nf4", q.state_dict("x."), "x.")
        assert back.dtype == torch.bfloat16 and back.shape == (128, 64)
        assert torch.equal(back.dequantize(), q.dequantize())
        assert q.data.nbytes == 128 * 64 // 2


def test_bnb_linear4bit_loads_our_layout() -> None:
    """A bnb Linear4bit fed our state dict (the transformers-saved layout) computes what our QuantLinear computes."""
    torch.manual_seed(1)
    lin = nn.Linear(128, 64, bias=True)
    ql = QuantLinear.from_linear(lin, quantizer("nf4", double_quant=True))
    sd = ql.state_dict()
    assert {"weight", "bias", "weight.absmax", "weight.quant_map", "weight.nested_absmax", "weight.nested_quant_map",
            "weight.quant_state.bitsandbytes__nf4"} == set(sd)
    weight = bnb.nn.Params4bit.from_prequantized(
        data=sd["weight"], quantized_stats={k: v for k, v in sd.items() if k.startswith("weight.")}, device="cpu"
    )
    x = torch.randn(3, 128)
    theirs = torch.nn.functional.linear(x, bnbf.dequantize_4bit(weight.data, weight.quant_state), sd["bias"])
    assert torch.allclose(ql(x), theirs, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantlinear_forward_within_bounds(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(256, 96).to(device=device, dtype=dtype)
    x = torch.randn(5, 256, device=device, dtype=dtype)
    ql = QuantLinear.from_linear(lin, quantizer("nf4"))
    with torch.no_grad():
        ref, out = lin(x).float(), ql(x).float()
    assert out.dtype == torch.float32 and ql(x).dtype == dtype
    # Relative to the output scale: NF4 is ~4 bits, so the error stays a small fraction of |x| |W|.
    scale = (x.float().abs() @ lin.weight.float().abs().T).clamp(min=1e-3)
    assert float(((out - ref).abs() / scale).max()) < 0.08
    shell = QuantLinear(256, 96, kind="nf4", device=device, dtype=dtype)
    shell.load_state_dict(ql.state_dict())
    assert torch.equal(shell(x), ql(x))


def test_wants_filters_by_name_shape_dtype() -> None:
    q = quantizer("nf4", skip=("lm_head", "*.gate"))
    assert q.wants("model.layers.0.mlp.up_proj.weight", (64, 32), "BF16")
    assert not q.wants("lm_head.weight", (64, 32), "BF16")
    assert not q.wants("model.lm_head.weight", (64, 32), "BF16")
    assert not q.wants("model.layers.0.mlp.gate.weight", (8, 32), "F16")
    assert not q.wants("model.layers.0.mlp.up_proj.bias", (64,), "BF16")
    assert not q.wants("model.norm.weight", (64,), "BF16")
    assert not q.wants("model.embed_tokens.weight", (100, 32), "BF16")
    assert not q.wants("model.layers.0.mlp.up_proj.weight", (64, 32), "I32")
    assert not q.wants("model.layers.0.mlp.up_proj.weight", (0, 32), "F32")
    assert q.restricted_to({"a.weight"}).wants("a.weight", (4, 4), "F32")
    assert not q.restricted_to({"a.weight"}).wants("b.weight", (4, 4), "F32")
