"""`hubfs.loader.open`: the lazy handle shaped like `safetensors.safe_open` (keys, metadata, get_tensor,
get_slice), compared with safetensors' own handle on the same file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoints import every_dtype, write_sharded
from safetensors import safe_open
from safetensors.torch import save_file

from hubfs import loader
from hubfs.loader.header import TensorInfo


@pytest.fixture
def path(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(5)
    tensors = {"w": torch.randn(10, 6, 4, generator=g), "b": torch.arange(9, dtype=torch.int32),
               "h": torch.randn(12, 8, generator=g).bfloat16(), **every_dtype()}
    out = tmp_path / "m.safetensors"
    save_file(tensors, str(out), metadata={"format": "pt", "note": "x"})
    return out


def test_keys_metadata_infos(path: Path) -> None:
    with loader.open(path) as f, safe_open(str(path), framework="pt") as ref:
        assert sorted(f.keys()) == sorted(ref.keys())
        assert f.metadata() == ref.metadata() == {"format": "pt", "note": "x"}
        infos = f.infos()
        assert all(isinstance(i, TensorInfo) and i.file == str(path) for i in infos.values())
        names, ref_names = f.keys(), ref.keys()
        assert [infos[k].start for k in names] == sorted(i.start for i in infos.values())
        for name in ref_names:
            t = f.get_tensor(name)
            want = ref.get_tensor(name)
            assert t.dtype == want.dtype and t.shape == want.shape
            assert t.view(-1).view(torch.uint8).tolist() == want.view(-1).view(torch.uint8).tolist() if t.numel() \
                else True, name
        with pytest.raises(KeyError, match="'missing' is not a tensor"):
            f.get_tensor("missing")


def test_get_tensor_cast(path: Path) -> None:
    with loader.open(path) as f:
        t = f.get_tensor("h", dtype=torch.float32)
        assert t.dtype == torch.float32
        assert torch.equal(t, f.get_tensor("h").float())
        assert f.get_tensor("w", device="meta").device.type == "meta"


@pytest.mark.parametrize("index", [
    slice(2, 5), (slice(None), slice(1, 3)), 3, (3, 2), (slice(1, 9, 3), slice(None), slice(2, 4)),
    (Ellipsis, 1), (slice(None), 0, slice(1, 4)), slice(8, 100), slice(-3, None), (-1, -2, -3), slice(4, 4),
])
def test_get_slice_like_safetensors(path: Path, index: object) -> None:
    with loader.open(path) as f, safe_open(str(path), framework="pt") as ref:
        got = f.get_slice("w")[index]
        want = ref.get_slice("w")[index]
        assert got.shape == want.shape and torch.equal(got, want)
        assert f.get_slice("w").get_shape() == [10, 6, 4] and f.get_slice("w").get_dtype() == "F32"


def test_get_slice_other_dtypes(path: Path) -> None:
    with loader.open(path) as f, safe_open(str(path), framework="pt") as ref:
        for name in ("b", "h", "bf16", "i8", "bool", "f8_e4m3"):
            sl = (slice(1, 4),) if name == "b" else (slice(2, 5), slice(3, 9))
            got, want = f.get_slice(name)[sl], ref.get_slice(name)[sl]
            assert got.view(torch.uint8).tolist() == want.view(torch.uint8).tolist(), name


def test_get_slice_errors(path: Path) -> None:
    with loader.open(path) as f:
        with pytest.raises(IndexError, match="out of range"):
            f.get_slice("w")[10]
        with pytest.raises(IndexError, match="3 dimensions"):
            f.get_slice("w")[1, 1, 1, 1]
        with pytest.raises(ValueError, match="positive steps"):
            f.get_slice("w")[::-1]


def test_sharded_handle(tmp_path: Path) -> None:
    sd = {f"l.{i}": torch.full((3, 2), float(i)) for i in range(5)}
    write_sharded(tmp_path / "m", sd, shards=2, metadata={"format": "pt"})
    with loader.open(tmp_path / "m") as f:
        assert sorted(f.keys()) == sorted(sd)
        assert f.metadata() == {"format": "pt"}
        assert f.index_metadata() == {"total_size": 5 * 24}
        assert torch.equal(f.get_slice("l.3")[1:], sd["l.3"][1:])
        assert {Path(i.file).name for i in f.infos().values()} == {"model-00001-of-00002.safetensors",
                                                                   "model-00002-of-00002.safetensors"}


def test_tensors_outlive_the_handle(path: Path) -> None:
    with loader.open(path) as f:
        t = f.get_tensor("w")
        s = f.get_slice("h")[:2]
    assert t.sum().item() == t.sum().item() and s.shape == (2, 8)
