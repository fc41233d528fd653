"""int8 row-wise absmax: bit-identical to bitsandbytes (CB/SCB), readable by bnb, QuantLinear within bounds."""

from __future__ import annotations

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import pytest
import torch
from torch import nn

from hubfs.loader.quant import QuantizedTensor, quantizer
from hubfs.loader.quant.linear import QuantLinear, replace_linears

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = [(1, 1), (3, 7), (64, 64), (130, 257), (1031, 300)]  # the last: more than one piece
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_bit_identical_to_bitsandbytes(shape: tuple[int, int], dtype: torch.dtype, device: str) -> None:
    torch.manual_seed(sum(shape))
    w = (torch.randn(shape) * 2).to(dtype).to(device)
    q = quantizer("int8").quantize(w)
    # What bnb.nn.Int8Params stores: the weight cast to fp16, then int8_vectorwise_quant.
    cb, scb, _ = bnbf.int8_vectorwise_quant(w.to(torch.float16))
    assert q.data.dtype == torch.int8 and q.scales.dtype == torch.float32
    assert torch.equal(q.data, cb) and torch.equal(q.scales, scb)
    assert q.shape == shape and q.dtype == dtype and q.device.type == device
    # bnb dequantizes our stored layout to exactly what we do.
    sd = q.state_dict("layer.")
    assert set(sd) == {"layer.weight", "layer.SCB", "layer.weight_format"}
    theirs = bnbf.int8_vectorwise_dequant(sd["layer.weight"], sd["layer.SCB"])
    assert torch.equal(q.dequantize(torch.float32), theirs)
    # Row-wise error bound: half a quantization step, SCB / 254, plus the fp16 cast.
    err = (q.dequantize(torch.float32) - w.float()).abs()
    bound = q.scales.view(-1, 1) / 254 * 1.001 + w.float().abs() * 2**-10
    assert bool((err <= bound).all())


def test_zero_row_and_roundtrip() -> None:
    w = torch.randn(4, 8)
    w[2] = 0
    q = quantizer("int8").quantize(w)
    assert torch.equal(q.data[2], torch.zeros(8, dtype=torch.int8)) and q.scales[2] == 0
    assert torch.equal(q.dequantize()[2], torch.zeros(8))
    back = QuantizedTensor.from_state_dict("int8", q.state_dict(), dtype=w.dtype)
    assert torch.equal(back.dequantize(), q.dequantize())
    assert q.nbytes == 4 * 8 + 4 * 4


def test_bnb_linear8bitlt_reads_our_state_dict() -> None:
    """A bnb Linear8bitLt loads the state dict our QuantLinear saves and holds the same CB/SCB."""
    lin = nn.Linear(64, 32).half()
    ql = QuantLinear.from_linear(lin, quantizer("int8"))
    sd = ql.state_dict()
    theirs = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False, threshold=0.0)
    theirs = theirs.to("cpu")
    theirs.load_state_dict(sd)
    assert torch.equal(theirs.weight.data, sd["weight"]) and torch.equal(theirs.state_dict()["SCB"], sd["SCB"])


@pytest.mark.parametrize("device", DEVICES)
def test_quantlinear_forward_within_bounds(device: str) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(256, 96).to(device)
    x = torch.randn(5, 256, device=device)
    ql = QuantLinear.from_linear(lin, quantizer("int8"))
    ref, out = lin(x), ql(x)
    # |x @ (W - Wq).T| <= sum_j |x_j| * step_j / 2 with step = SCB / 127.
    bound = x.abs() @ (ql.qweight.scales.view(-1, 1).expand(96, 256) / 254).T + 1e-4  # type: ignore[union-attr]
    assert bool(((out - ref).abs() <= bound).all())
    assert torch.equal(ql(x), out)  # deterministic
    # state_dict round trip into an empty shell
    shell = QuantLinear(256, 96, kind="int8", device=device)
    shell.load_state_dict(ql.state_dict())
    assert torch.equal(shell(x), out)


def test_replace_linears_honours_skip() -> None:
    model = nn.Sequential()
    model.add_module("up", nn.Linear(8, 16))
    model.add_module("lm_head", nn.Linear(16, 8))
    swapped = replace_linears(model, quantizer("int8", skip=("lm_head",)))
    assert swapped == ["up.weight"]
    assert isinstance(model.up, QuantLinear) and isinstance(model.lm_head, nn.Linear)


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown quantization 'int3'.*int8.*nf4.*fp8"):
        quantizer("int3")
