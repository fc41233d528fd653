"""FP8 e4m3 with per-row scales: within the format's error bound, round trips, QuantLinear forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hubfs.loader.quant import QuantizedTensor, quantizer
from hubfs.loader.quant.linear import QuantLinear

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (130, 257), (1031, 300)])  # the last: more than one piece
def test_error_bound_and_layout(shape: tuple[int, int], dtype: torch.dtype, device: str) -> None:
    torch.manual_seed(sum(shape))
    w = (torch.randn(shape) * torch.logspace(-3, 2, shape[1])).to(dtype).to(device)
    q = quantizer("fp8").quantize(w)
    assert q.data.dtype == torch.float8_e4m3fn and q.scales.dtype == torch.float32
    assert q.data.shape == shape and q.scales.shape == (shape[0],) and q.device.type == device
    w32 = w.float()
    assert torch.equal(q.scales, w32.abs().amax(dim=1) / 448)
    assert float(q.data.float().abs().amax()) <= 448
    err = (q.dequantize(torch.float32) - w32).abs()
    # 3 mantissa bits: half a unit is 2**-4 of a normal value; the subnormal step is 2**-9 of the scale.
    bound = w32.abs() * 2**-4 + q.scales.view(-1, 1) * 2**-10
    assert bool((err <= bound * (1 + 1e-6)).all())
    assert q.dequantize().dtype == dtype


def test_zero_row_and_roundtrip() -> None:
    w = torch.randn(4, 8, dtype=torch.bfloat16)
    w[1] = 0
    q = quantizer("fp8").quantize(w)
    assert q.scales[1] == 0 and torch.equal(q.dequantize()[1], torch.zeros(8, dtype=torch.bfloat16))
    assert not q.dequantize().isnan().any()
    sd = q.state_dict("m.")
    assert set(sd) == {"m.weight", "m.weight_scale"}
    back = QuantizedTensor.from_state_dict("fp8", sd, "m.", dtype=torch.bfloat16)
    assert torch.equal(back.dequantize(), q.dequantize())
    assert q.nbytes == 4 * 8 + 4 * 4


@pytest.mark.parametrize("device", DEVICES)
def test_quantlinear_forward_within_bounds(device: str) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(256, 96).to(device)
    x = torch.randn(5, 256, device=device)
    ql = QuantLinear.from_linear(lin, quantizer("fp8"))
    with torch.no_grad():
        ref, out = lin(x), ql(x)
        # |x @ (W - Wq).T| <= |x| @ bound(W).T
        bound = x.abs() @ (lin.weight.abs() * 2**-4 + ql.qweight.scales.view(-1, 1) * 2**-10).T  # type: ignore[union-attr]
    assert bool(((out - ref).abs() <= bound * 1.001 + 1e-5).all())
    moved = QuantLinear(256, 96, kind="fp8")
    moved.load_state_dict(ql.state_dict())
    moved.half()  # casts the bias, never the fp8 data or its fp32 scales
    assert moved.qweight is not None and moved.qweight.data.dtype == torch.float8_e4m3fn
    assert moved.qweight.scales.dtype == torch.float32
    moved.to("meta")  # a device move takes the quantized weight along
    assert moved.qweight.device.type == "meta" and moved.bias is not None and moved.bias.is_meta
