"""Models built on the meta device without running their weight initialisation.

A module's ``__init__`` initialises its weights (``nn.init.normal_`` and the like) even on the meta
device, where the tensors hold no data: on meta every such call still goes through torch's Python
reference implementations (about half of a small transformers model's build time). Under
:class:`SkipMetaInit` the in-place initialisers on meta tensors return at once. It is a torch function
mode, so it holds for the calling thread only (transformers' ``no_init_weights`` patches ``torch.nn.init``
for the whole process, which concurrent loads in a server would race on). The weights are filled by
the loader afterwards; what it does not fill is materialised and initialised then, outside this mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

INITIALISERS = frozenset({"normal_", "uniform_", "zero_", "fill_", "erfinv_", "clamp_", "mul_", "add_", "copy_",
                          "exponential_", "bernoulli_", "random_", "log_normal_", "cauchy_", "geometric_",
                          "fill_diagonal_"})


class SkipMetaInit(TorchFunctionMode):
    """In-place initialisers applied to a meta tensor return the tensor untouched (see the module docstring)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in INITIALISERS:
            target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by name
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)
