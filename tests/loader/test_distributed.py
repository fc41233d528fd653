"""The distributed load: gloo, 2 and 4 processes on CPU; equal to a plain load on every rank; each tensor
byte fetched from the hub once across the ranks (counted by the hub's request log)."""

from __future__ import annotations

import os
import re
import socket
import struct
import traceback
import uuid
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from checkpoints import model_like, write_sharded
from hub_server import HubServer, RequestLog
from safetensors.torch import load_file

from hubfs.loader.distributed import batches, split
from hubfs.loader.header import TensorInfo

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, cases: list[tuple[str, str, dict]], out: str, env: dict) -> None:
    """One rank: for each case (src, reference folder, load kwargs) a distributed load compared with
    safetensors' load of the reference folder; writes "ok" or the failure to ``out/<rank>``."""
    import torch.distributed as dist

    torch.set_num_threads(1)  # this worker process only: up to 4 ranks share a small CI box
    os.environ.update(env)
    if "HF_HOME" in env:
        os.environ["HF_HOME"] = os.path.join(env["HF_HOME"], f"rank{rank}")  # one cache per "node"
    result = "ok"
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        from hubfs.loader import load

        for src, ref_dir, kwargs in cases:
            order: list[str] = []
            got = load(src, process_group=dist.group.WORLD, on_tensor=lambda n, _t, seen=order: seen.append(n),
                       **kwargs)
            _check(got, order, ref_dir, kwargs)
        dist.barrier()
    except Exception:  # noqa: BLE001 - any failure goes back to the parent, which asserts on it
        result = traceback.format_exc()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        Path(out, str(rank)).write_text(result)


def _check(got: dict, order: list[str], ref_dir: str, kwargs: dict) -> None:
    want: dict[str, torch.Tensor] = {}
    for f in sorted(Path(ref_dir).glob("*.safetensors")):
        want.update(load_file(f))
    dtype = kwargs.get("dtype")
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    assert order == list(got), "on_tensor not in the order of the result"
    for name, w in want.items():
        expect = w.to(dtype) if dtype is not None and w.is_floating_point() else w
        g = got[name]
        if not isinstance(g, torch.Tensor):  # quantized: what the quantizer makes of the cast tensor
            from hubfs.loader.quant import quantizer

            q = quantizer(kwargs["quantize"]).quantize(expect)
            assert torch.equal(g.data, q.data) and torch.equal(g.scales, q.scales), name
            continue
        assert g.dtype == expect.dtype and g.shape == expect.shape, name
        assert torch.equal(g.reshape(-1).view(torch.uint8), expect.reshape(-1).view(torch.uint8)), name


def _run(world: int, cases: list[tuple[str, Path, dict]], tmp: Path, env: dict | None = None) -> None:
    out = tmp / f"out-{uuid.uuid4().hex[:6]}"
    out.mkdir()
    plain = [(src, str(ref), kw) for src, ref, kw in cases]
    mp.start_processes(_worker, args=(world, _free_port(), plain, str(out), env or {}), nprocs=world, join=True,
                       start_method="spawn")
    for rank in range(world):
        assert (out / str(rank)).read_text() == "ok", f"rank {rank}:\n{(out / str(rank)).read_text()}"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dist") / "ckpt"
    tensors = model_like(layers=4, width=96)
    tensors["step"] = torch.tensor(7, dtype=torch.int64)
    tensors["mask"] = torch.arange(10) % 3 == 0
    write_sharded(folder, tensors, shards=3)
    return folder


def test_split_is_contiguous_and_balanced() -> None:
    infos = [TensorInfo(f"t{i}", "U8", (n,), 0, n, "f") for i, n in enumerate([10, 50, 5, 5, 30, 100, 1, 0, 7])]
    for parts in (1, 2, 3, 4, 12):
        runs = split(infos, parts)
        assert [i for run in runs for i in run] == infos and len(runs) == parts
        share = sum(i.nbytes for i in infos) / parts
        assert all(sum(i.nbytes for i in run) <= share + max(i.nbytes for i in infos) for run in runs)
    assert [len(b) for b in batches(infos, 64)] == [1, 1, 3, 1, 3]  # 16-byte aligned: 16+64 > 64


@pytest.fixture(scope="module")
def logged_hub(tmp_path_factory):
    """A private hub that logs every request it serves, holding a sharded checkpoint."""
    from huggingface_hub import HfApi

    root = tmp_path_factory.mktemp("disthub")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    folder = root / "ckpt"
    write_sharded(folder, model_like(layers=4, width=256), shards=3)  # ~1.4 MiB of bf16
    rid = f"admin/dist-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=server.endpoint, token=server.admin_token)
    api.create_repo(rid)
    api.upload_folder(repo_id=rid, folder_path=str(folder))
    yield server, RequestLog(log), rid, folder
    server.stop()


@pytest.mark.parametrize("world", [2, 4])
def test_equal_to_plain_load_and_hub_bytes_fetched_once(ckpt: Path, logged_hub, tmp_path: Path, world: int) -> None:
    """Local shards (as stored; and cast + quantized, with 2 ranks) and an hf:// URL, all equal to a plain load
    on every rank; the hub serves each tensor byte once across the ranks."""
    server, log, rid, folder = logged_hub
    cases: list[tuple[str, Path, dict]] = [(str(ckpt), ckpt, {}), (f"hf://{rid}", folder, {})]
    if world == 2:
        cases.append((str(ckpt), ckpt, {"dtype": torch.float32, "quantize": "int8"}))
    log.clear()
    _run(world, cases, tmp_path, {"HF_ENDPOINT": server.endpoint, "HF_TOKEN": server.admin_token,
                                  "HF_HOME": str(tmp_path / "homes")})
    data = {f.name: f.stat().st_size for f in folder.glob("*.safetensors")}
    fetched: dict[str, list[tuple[int, int]]] = {name: [] for name in data}
    for method, path, rng, _ in log.lines():
        name = path.rsplit("/", 1)[-1]
        if method == "GET" and name in data:
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", rng)
            assert m, f"a whole-file GET of {name}: {rng}"
            fetched[name].append((int(m[1]), int(m[2]) + 1))
    total = sum(data.values())
    got = sum(b - a for runs in fetched.values() for a, b in runs)
    headers = sum(8 + struct.unpack("<Q", (folder / n).read_bytes()[:8])[0] for n in data)
    # Every byte at least once; beyond the headers (which every rank reads) nothing twice, where a plain
    # load on each rank would fetch the files ``world`` times.
    assert all(_covered(runs) >= size for runs, size in zip(fetched.values(), data.values(), strict=True))
    assert got <= total + (world - 1) * headers, (got, total, headers)


def _covered(runs: list[tuple[int, int]]) -> int:
    end, covered = 0, 0
    for a, b in sorted(runs):
        a = max(a, end)
        if b > a:
            covered, end = covered + b - a, b
    return covered
