"""`QuantLinear`: an ``nn.Linear`` whose weight is a `QuantizedTensor`, run forward in plain torch.

Forward dequantizes the weight to the input's dtype on the fly and calls ``F.linear`` (any device; no custom
kernels). ``state_dict`` writes the bitsandbytes layout of the weight (`QuantizedTensor.state_dict`) plus
``bias``; ``load_state_dict`` reads it back. ``replace_linears`` swaps a model's ``nn.Linear`` layers for
empty `QuantLinear` shells (meta models included) that the loader fills.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hubfs.loader.quant import Quantizer
from hubfs.loader.quant.tensor import QuantizedTensor


class QuantLinear(nn.Module):
    """y = x @ dequantize(W).T + b, with W held quantized (``qweight``) and ``bias`` a normal parameter."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        kind: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.kind = in_features, out_features, kind
        self.weight_dtype = dtype or torch.get_default_dtype()
        self.qweight: QuantizedTensor | None = None
        self.bias: nn.Parameter | None = (
            nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, q: Quantizer, *, fill: bool = True) -> QuantLinear:
        """A QuantLinear for ``linear``; its weight is quantized now (``fill`` and not on the meta device)
        or left for the loader to install (`set_weight`)."""
        w = linear.weight
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, kind=q.kind, device=w.device,
                  dtype=w.dtype)
        if linear.bias is not None:
            out.bias = linear.bias
        if fill and not w.is_meta:
            out.qweight = q.quantize(w.detach())
        return out

    @property
    def weight(self) -> torch.Tensor:
        """The stored quantized data (as bitsandbytes' layers expose it)."""
        if self.qweight is None:
            raise RuntimeError(f"{self!r}: weight not loaded yet")
        return self.qweight.data

    def set_weight(self, qt: QuantizedTensor) -> None:
        """Install a quantized weight; its shape must be ``(out_features, in_features)``."""
        if tuple(qt.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"quantized weight of shape {tuple(qt.shape)} for a layer of {(self.out_features, self.in_features)}"
            )
        self.qweight, self.kind, self.weight_dtype = qt, qt.kind, qt.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.qweight
        if w is None:
            raise RuntimeError(f"{self!r}: weight not loaded yet")
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w.dequantize(x.dtype), bias)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> QuantLinear:  # type: ignore[override]
        super()._apply(fn, recurse)
        if self.qweight is not None:
            # Module.to(dtype)/.half() must not cast quantized data or scales: follow only the device.
            target = fn(torch.empty(0, device=self.qweight.device)).device
            if target != self.qweight.device:
                self.qweight = self.qweight.to(target)
        return self

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        if self.qweight is not None:
            destination.update(self.qweight.state_dict(prefix))
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        try:
            qt = QuantizedTensor.from_state_dict(self.kind, state_dict, prefix, self.weight_dtype)
        except KeyError:
            missing_keys.append(prefix + "weight")
            known = {prefix + "weight"}
        except ValueError as e:
            error_msgs.append(f"{prefix}weight: {e}")
            return
        else:
            known = set(qt.state_keys(prefix))
            try:
                self.set_weight(qt)
            except ValueError as e:
                error_msgs.append(f"{prefix}weight: {e}")
        known.add(prefix + "bias")
        if self.bias is not None:
            if prefix + "bias" in state_dict:
                b = state_dict[prefix + "bias"]
                with torch.no_grad():
                    if self.bias.is_meta:
                        self.bias = nn.Parameter(b.detach().clone(), requires_grad=self.bias.requires_grad)
                    else:
                        self.bias.copy_(b)
            else:
                missing_keys.append(prefix + "bias")
        if strict:  # a QuantLinear has no children: every key under its prefix is its own
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and k not in known)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, kind={self.kind}"


def linear_weights(model: nn.Module) -> dict[str, nn.Linear]:
    """``{"<module>.weight": linear}`` for every ``nn.Linear`` in ``model`` whose weight is not shared."""
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return {
        f"{name}.weight": m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and counts.get(id(m.weight), 0) == 1
    }


def replace_linears(model: nn.Module, q: Quantizer, *, fill: bool = True) -> list[str]:
    """Swap each ``nn.Linear`` that ``q`` wants (skip list honoured, tied weights left alone) for a QuantLinear.

    Returns the swapped weights' names (``"<module>.weight"``). Real weights are quantized on the spot
    (unless ``fill`` is False: the loader is about to install them); meta ones leave an empty shell.
    """
    swapped: list[str] = []
    for wname, lin in linear_weights(model).items():
        st_dtype = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}.get(lin.weight.dtype, "F32")
        if not q.wants(wname, tuple(lin.weight.shape), st_dtype):
            continue
        parent_name, _, child = wname[: -len(".weight")].rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantLinear.from_linear(lin, q, fill=fill))
        swapped.append(wname)
    return swapped
