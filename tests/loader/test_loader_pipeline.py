"""The pipeline's inline reads: a small local checkpoint is read by the calling thread (no pool) unless
``HUBFS_LOADER_INLINE=0``; a big one, or one read from the hub, keeps its readers. Bit-exact either way."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from checkpoints import assert_same, every_dtype, model_like
from safetensors.torch import load_file, save_file

from hubfs import loader
from hubfs.errors import SafetensorsError
from hubfs.loader import pipeline
from hubfs.loader.sources import resolve


def _load_noting_threads(path: Path, **kwargs: object) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The load of ``path`` and the names of the threads alive while its tensors arrived."""
    seen: set[str] = set()
    got = loader.load(path, on_tensor=lambda name, t: seen.update(th.name for th in threading.enumerate()),
                      **kwargs)  # type: ignore[arg-type]
    return got, seen


def _threads_for(path: Path) -> int:
    """The reader threads the pipeline would start for ``path`` (0: read inline)."""
    ckpt = resolve(path)
    try:
        return pipeline.default_threads(ckpt)
    finally:
        ckpt.close()


def _assert_loaded_by_the_pool(path: Path, want: dict[str, torch.Tensor]) -> None:
    got, threads = _load_noting_threads(path, mmap=False)
    assert_same(got, want)
    assert any(name.startswith("hubfs-load") for name in threads)


@pytest.mark.parametrize("mmap", [True, False])
def test_small_local_checkpoint_is_read_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mmap: bool) -> None:
    path = tmp_path / "m.safetensors"
    save_file({**model_like(layers=2, width=64, dtype=torch.float32), **every_dtype()}, str(path))
    want = load_file(str(path))
    monkeypatch.delenv("HUBFS_LOADER_INLINE", raising=False)
    assert _threads_for(path) == 0
    got, threads = _load_noting_threads(path, mmap=mmap)
    assert_same(got, want)
    assert not any(name.startswith("hubfs-load") for name in threads)  # no pool was started

    monkeypatch.setenv("HUBFS_LOADER_INLINE", "0")  # the switch: readers as before
    assert _threads_for(path) >= 2
    _assert_loaded_by_the_pool(path, want)


def test_big_checkpoint_keeps_its_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "INLINE_MAX", 1024)  # this small file counts as big
    path = tmp_path / "m.safetensors"
    save_file(model_like(layers=2, width=64, dtype=torch.float32), str(path))
    assert _threads_for(path) >= 2
    _assert_loaded_by_the_pool(path, load_file(str(path)))


def test_inline_read_errors_surface(tmp_path: Path) -> None:
    """A file cut short after it was opened fails the inline load as it fails a pooled one."""
    path = tmp_path / "m.safetensors"
    save_file(model_like(layers=2, width=64, dtype=torch.float32), str(path))
    ckpt = resolve(path)
    try:
        from hubfs.loader.api import plan

        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - 100)
        with pytest.raises(SafetensorsError, match="truncated"):
            dict(pipeline.Loader(ckpt, plan(ckpt.infos()), threads=0, mmap=False))
    finally:
        ckpt.close()
