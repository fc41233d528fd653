"""`hubfs.loader.load` from local files: bit-exact against `safetensors.torch.load_file` for every dtype,
single and sharded, zero-copy or read; casts, device_map, the ready callback's order, keys, quantize on
load, and host memory bounded whatever the checkpoint size (measured in a child process)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from checkpoints import assert_same, every_dtype, model_like, raw_file, write_sharded
from safetensors.torch import load_file, save_file

from hubfs import loader
from hubfs.loader.header import read_header
from hubfs.loader.pipeline import Loader
from hubfs.loader.sources import resolve

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # the same tests on a GPU where there is one


@pytest.fixture
def single(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(every_dtype(), str(path), metadata={"format": "pt"})
    return path


@pytest.mark.parametrize("mmap", [True, False])
def test_every_dtype_bit_exact(single: Path, mmap: bool) -> None:
    assert_same(loader.load(single, mmap=mmap), load_file(str(single)))


def test_zero_copy_shares_one_private_mapping(single: Path) -> None:
    got = loader.load(single)
    storages = {t.untyped_storage().data_ptr() for t in got.values() if t.numel()}
    assert len(storages) == 1  # views of one mapping of the file, no copies
    before = single.read_bytes()
    got["f32"].add_(1)  # copy-on-write: the file never changes
    assert single.read_bytes() == before
    read = loader.load(single, mmap=False)
    assert len({t.untyped_storage().data_ptr() for t in read.values() if t.numel()}) == sum(
        1 for t in read.values() if t.numel())  # each tensor owns its memory


def test_sharded_bit_exact_and_in_file_order(tmp_path: Path) -> None:
    sd = model_like(layers=4)
    weight_map = write_sharded(tmp_path / "m", sd, shards=3)
    ref: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        ref.update(load_file(str(tmp_path / "m" / shard)))
    seen: list[str] = []
    got = loader.load(tmp_path / "m", mmap=False, threads=2, on_tensor=lambda name, t: seen.append(name))
    assert_same(got, ref)
    assert list(got) == seen
    order = []
    for shard in sorted(set(weight_map.values())):
        data = (tmp_path / "m" / shard).read_bytes()
        order += [t.name for t in read_header(lambda o, n, d=data: d[o:o + n], shard, len(data)).tensors]
    assert seen == order  # shard by shard, in file-offset order
    assert [n for n, _ in loader.iter_load(tmp_path / "m")] == order


def test_many_pieces_per_tensor_and_few_threads(tmp_path: Path) -> None:
    sd = model_like(layers=2, width=64, dtype=torch.float32)
    save_file(sd, str(tmp_path / "m.safetensors"))
    ckpt = resolve(tmp_path / "m.safetensors")
    try:
        from hubfs.loader.api import plan

        for threads, chunk in ((1, 4096), (3, 1000)):
            got = dict(Loader(ckpt, plan(ckpt.infos()), threads=threads, chunk=chunk, mmap=False))
            assert_same(got, sd)
            assert list(got) == list(ckpt.infos())
    finally:
        ckpt.close()


def test_staging_ring_path_on_the_cpu(tmp_path: Path) -> None:
    """The accelerator path (reused staging buffers, copies landed in order, then cast) run on the CPU."""
    sd = {**model_like(layers=2, width=64, dtype=torch.float32), **every_dtype()}
    save_file(sd, str(tmp_path / "m.safetensors"))
    ckpt = resolve(tmp_path / "m.safetensors")
    try:
        from hubfs.loader.api import plan

        for threads, chunk in ((1, 512), (2, 4096), (4, 1 << 20)):
            loader_ = Loader(ckpt, plan(ckpt.infos()), threads=threads, chunk=chunk, stage=True)
            got = dict(loader_)
            assert_same(got, sd)
            assert list(got) == list(ckpt.infos())
        cast = dict(Loader(ckpt, plan(ckpt.infos(), dtype=torch.bfloat16), threads=2, chunk=999, stage=True))
        assert torch.equal(cast["model.norm.weight"], sd["model.norm.weight"].bfloat16())
        assert cast["i64"].dtype == torch.int64
    finally:
        ckpt.close()


@pytest.mark.parametrize("device", DEVICES)
def test_on_each_device_bit_exact(single: Path, device: str) -> None:
    seen: list[str] = []
    got = loader.load(single, device=device, on_tensor=lambda n, t: seen.append(n))
    assert {t.device.type for t in got.values()} == {device}
    assert_same(got, load_file(str(single)))
    assert seen == list(got) == loader.open(single).keys()


@pytest.mark.parametrize("device", DEVICES)
def test_dtype_cast_on_device(tmp_path: Path, device: str) -> None:
    tensors = every_dtype()
    save_file(tensors, str(tmp_path / "a.safetensors"))
    got = {k: v.cpu() for k, v in loader.load(tmp_path / "a.safetensors", device=device, dtype=torch.float32).items()}
    for name, ref in tensors.items():
        floating = ref.dtype.is_floating_point and ref.element_size() >= 2
        want = ref.to(torch.float32) if floating else ref
        assert got[name].dtype == want.dtype, name
        assert torch.equal(got[name], want) or (got[name].isnan() == want.isnan()).all(), name
    assert loader.load(tmp_path / "a.safetensors", dtype="bf16")["f32"].dtype == torch.bfloat16
    with pytest.raises(TypeError, match="unknown dtype"):
        loader.load(tmp_path / "a.safetensors", dtype="float13")


def test_device_map_longest_prefix(tmp_path: Path) -> None:
    sd = {f"model.layers.{i}.w": torch.full((2,), float(i)) for i in (1, 10, 11)}
    sd["lm_head.weight"] = torch.ones(3)
    save_file(sd, str(tmp_path / "a.safetensors"))
    got = loader.load(tmp_path / "a.safetensors", device_map={"": "cpu", "model.layers": "meta",
                                                               "model.layers.1": "cpu"})
    assert got["model.layers.1.w"].device.type == "cpu" and got["model.layers.1.w"].tolist() == [1.0, 1.0]
    assert got["model.layers.10.w"].device.type == "meta"  # "model.layers.1" is no prefix of layer 10
    assert got["model.layers.11.w"].device.type == "meta" and got["model.layers.11.w"].shape == (2,)
    assert got["lm_head.weight"].device.type == "cpu"
    if torch.cuda.is_available():
        spread = loader.load(tmp_path / "a.safetensors", device_map={"": "cpu", "model.layers.1": "cuda:0"})
        assert spread["model.layers.1.w"].device == torch.device("cuda", 0)
        assert spread["model.layers.10.w"].device.type == "cpu"
        assert spread["model.layers.1.w"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="'lm_head.weight' matches no device_map prefix"):
        loader.load(tmp_path / "a.safetensors", device_map={"model": "cpu"})


def test_keys_subset(single: Path) -> None:
    got = loader.load(single, keys=["bf16", "i8"])
    with loader.open(single) as f:
        names = f.keys()
    assert list(got) == [n for n in names if n in ("bf16", "i8")]
    with pytest.raises(KeyError, match="'nope'"):
        loader.load(single, keys=["nope"])


def test_misaligned_offsets_are_copied_not_mapped(tmp_path: Path) -> None:
    values = torch.arange(6, dtype=torch.float32)
    header = {"pad": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
              "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [3, 27]}}
    body = json.dumps(header).encode()
    body += b" " * (-(8 + len(body)) % 8)  # data starts 8-aligned, so "w" sits at an odd address
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + b"abc" + values.numpy().tobytes())
    got = loader.load(path)
    assert got["w"].tolist() == values.reshape(2, 3).tolist()
    assert got["pad"].tolist() == list(b"abc")
    assert got["w"].data_ptr() % 4 == 0


def test_f4_packed_and_f8_e8m0(tmp_path: Path) -> None:
    header = {"f4": {"dtype": "F4", "shape": [2, 4], "data_offsets": [0, 4]},
              "e8": {"dtype": "F8_E8M0", "shape": [3], "data_offsets": [4, 7]}}
    path = raw_file(tmp_path / "packed.safetensors", header, bytes([1, 2, 3, 4, 120, 127, 130]))
    got = loader.load(path, mmap=False)
    assert got["f4"].dtype == torch.float4_e2m1fn_x2 and got["f4"].shape == (2, 2)
    assert got["f4"].view(torch.uint8).flatten().tolist() == [1, 2, 3, 4]
    assert got["e8"].dtype == torch.float8_e8m0fnu and got["e8"].view(torch.uint8).tolist() == [120, 127, 130]


def test_quantize_on_load_uses_the_quantizer(tmp_path: Path) -> None:
    from hubfs.loader.quant import quantizer

    sd = model_like(layers=2, width=64, dtype=torch.bfloat16)
    save_file(sd, str(tmp_path / "m.safetensors"))
    q = quantizer("int8")
    got = loader.load(tmp_path / "m.safetensors", quantize="int8")
    for name, ref in sd.items():
        if q.wants(name, tuple(ref.shape), "BF16"):
            want = q.quantize(ref)
            assert type(got[name]) is type(want)
            for field in vars(want):
                a, b = getattr(got[name], field), getattr(want, field)
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, (name, field)
        else:
            assert torch.equal(got[name], ref), name
    assert any(not isinstance(t, torch.Tensor) for t in got.values())
    assert isinstance(got["lm_head.weight"], torch.Tensor)  # skipped by default


def test_host_memory_bounded_whatever_the_size(tmp_path: Path) -> None:
    """320 MiB of 4 MiB tensors, streamed and dropped: peak RSS growth stays under the bound
    max(2 x largest, threads x chunk) + 256 MiB = 272 MiB."""
    mib = 1 << 20
    folder = tmp_path / "big"
    sd = {f"layers.{i}.w": torch.full((mib,), float(i)) for i in range(80)}
    write_sharded(folder, sd, shards=4)
    del sd
    script = textwrap.dedent(f"""
        import sys, torch
        from hubfs import loader
        from hubfs.loader.pipeline import DIRECT_CHUNK
        def status(field):
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":")) * 1024
        base = status("VmRSS")
        n = 0
        for name, t in loader.iter_load({str(folder)!r}, threads=2, mmap=False):
            assert t[0].item() == float(name.split(".")[1])
            n += t.numel() * 4
        bound = max(2 * 4 * (1 << 20), 2 * DIRECT_CHUNK) + (256 << 20)
        print(n, status("VmHWM") - base, bound)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    loaded, growth, bound = map(int, done.stdout.split())
    assert loaded == 320 * mib > bound
    assert growth <= bound, f"peak RSS grew by {growth >> 20} MiB, bound {bound >> 20} MiB"
