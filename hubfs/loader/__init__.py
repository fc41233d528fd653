"""hubfs.loader: safetensors from a file, a folder, a hubfs mount, an ``hf://`` URL or a repo id onto devices.

- :func:`load` / :func:`iter_load`: every tensor on its device (``device_map`` by name prefix), cast
  (``dtype=``) or quantized (``quantize="int8"|"nf4"|"fp8"``) on the device, in file-offset order;
- :func:`open`: a lazy handle like ``safetensors.safe_open`` (``keys``, ``metadata``, ``get_tensor``,
  ``get_slice``);
- :func:`load_into` / :func:`from_pretrained`: fill an ``nn.Module`` / build a transformers model
  (:mod:`hubfs.loader.modules`), checkpoint names mapped as transformers maps them (:mod:`hubfs.loader.keys`).

torch is imported only when a tensor is made: ``import hubfs.loader`` works without it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from hubfs.errors import SafetensorsError
from hubfs.loader.api import iter_load, load
from hubfs.loader.handle import SafeOpen, TensorSlice
from hubfs.loader.header import TensorInfo


def open(src: str | os.PathLike[str], *, revision: str | None = None, endpoint: str | None = None,
         token: str | bool | None = None) -> SafeOpen:
    """A lazy handle on the checkpoint ``src`` (headers read and validated now, tensors on demand)."""
    from hubfs.loader.handle import open_checkpoint

    return open_checkpoint(src, revision=revision, endpoint=endpoint, token=token)


def load_into(model: Any, src: Any, *args: Any, **kwargs: Any) -> Any:
    """Fill ``model`` in place from ``src`` (see :func:`hubfs.loader.modules.load_into`)."""
    return importlib.import_module("hubfs.loader.modules").load_into(model, src, *args, **kwargs)


def from_pretrained(model_class: Any, src: Any, *args: Any, **kwargs: Any) -> Any:
    """Build ``model_class`` from ``src``'s config.json and weights (see :func:`hubfs.loader.modules.from_pretrained`)."""
    return importlib.import_module("hubfs.loader.modules").from_pretrained(model_class, src, *args, **kwargs)


__all__ = ["SafeOpen", "SafetensorsError", "TensorInfo", "TensorSlice", "from_pretrained", "iter_load", "load",
           "load_into", "open"]
