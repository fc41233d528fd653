"""Loader benchmark: ``hubfs.loader.load`` against safetensors (and, on a GPU, fastsafetensors and the Run:ai
streamer) on the same synthetic bf16 checkpoint, in one run.

The checkpoint: ``--size-gib`` (default 2) of bf16 tensors of 16 MiB in 4 shards plus
``model.safetensors.index.json``, written to a temporary folder and uploaded (plain LFS) to one
``hubfs serve`` started here. Scenarios (best of ``--runs``; every load is checked tensor by tensor
against the source after the clock stops, on a sample of rows):

1. **Local file to CPU, page cache warm, until every byte is resident**: ``hubfs.loader.load(folder,
   threads=2)`` (zero-copy mappings; tensors whose bytes are in the page cache are left to fault in on
   first touch, others are populated ahead by the threads) against ``safetensors.torch.load_file`` of
   each shard; both then touch one byte of every 4 KiB page, the same work for both, so both clocks stop
   with every byte resident. Also hubfs with every mapping populated ahead (``HUBFS_LOADER_CACHESTAT=0``)
   and with ``mmap=False`` (every byte read into memory the tensors own, huge pages on and off).
   Goals: >= 1.0x safetensors and >= 10 GB/s.
2. **From a hubfs mount, cold**: a fresh ``hubfs mount`` of the repo with an empty cache for each run;
   hubfs loads the folder inside the mount (it reads through the client, not through FUSE) against
   ``load_file`` on the same files through the mount (mmap over FUSE), pages touched. Goal: >= 5x.
   Needs root and fuse3 (else reported as not run).
3. **From an ``hf://`` URL, cold** (empty cache): ``load("hf://repo")`` against ``curl`` of the same 4 files
   from the same server, 16 ranges at once (4 per file); also hubfs with 4 KiB pages for its fresh
   buffers (``HUBFS_LOADER_HUGEPAGES=0``). Goal: >= 0.8x curl.
4. **Peak host RSS** of a streamed load (``iter_load``, tensors dropped, ``mmap=False``) in a child process,
   against the bound max(2 x largest tensor, threads x chunk) + 256 MiB.
5. **Quantize on load**: ``quantize=`` int8, nf4 and fp8 against the same load without it (``mmap=False``),
   on the first ``--quant-mib`` of tensors, and each quantizer alone on those tensors already in memory
   (the split: what the arithmetic costs, what the loader adds). The goal (<= 10% more) is for the GPU,
   where quantizing runs right after the copy; on a CPU the arithmetic dominates, so there the check is
   that the loader adds <= 10% of the plain load beyond the quantizer's own time.
6. **GPU** (only with CUDA): pinned host-to-device bandwidth measured here, then hubfs ``load(device="cuda")``
   from the page cache against it (goals >= 0.85x and >= 45 GB/s), safetensors ``load_file(device="cuda")``,
   fastsafetensors (nogds) and the Run:ai streamer when installed, and int8 quantize-on-load on the GPU.
   Without CUDA these rows say "no GPU on this machine".

Printed: a machine line, one Markdown table (scenario, hubfs, peer, ratio, goal, met?); ``--json PATH``
writes all numbers. Run it::

    .venv/bin/python scripts/bench_loader.py --size-gib 0.25 --runs 2
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchlib import (
    add_numbers,
    add_output_args,
    arg_parser,
    fuse_unmount,
    is_mounted,
    start_hub_server,
    stop_pid,
    workdir,
    write_json,
)
from benchlib.machine import machine_info, machine_line
from benchlib.table import Row, print_table, ratio, size_label, verdict

MIB = 1 << 20
GB = 1_000_000_000
PAGE = 4096
TENSOR_ROWS, TENSOR_COLS = 4096, 2048  # 16 MiB of bf16
REPO = "admin/bench-loader"
PACKAGES = ("torch", "safetensors")
NO_GPU = "no GPU on this machine"


# -- the checkpoint --------------------------------------------------------------------------------


def make_checkpoint(folder: Path, size: int) -> dict[str, int]:
    """4 shards of 16 MiB bf16 tensors (``size`` bytes in all, rounded to whole tensors) plus the index;
    returns tensor name -> seed (the checker rebuilds any row from it)."""
    import json

    import torch
    from safetensors.torch import save_file

    per = TENSOR_ROWS * TENSOR_COLS * 2
    count = max(4, round(size / per))
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"model.layers.{i}.mlp.weight" for i in range(count)]
    weight_map: dict[str, str] = {}
    for s in range(4):
        part = names[s::4]
        shard = f"model-{s + 1:05d}-of-00004.safetensors"
        tensors = {n: _tensor(names.index(n)) for n in part}
        save_file(tensors, str(folder / shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
        del tensors
    index = {"metadata": {"total_size": count * per}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    del torch
    return {n: i for i, n in enumerate(names)}


def _tensor(seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(TENSOR_ROWS, TENSOR_COLS, generator=g).to(torch.bfloat16)


def check(got: dict[str, Any], seeds: dict[str, int], what: str, sample: int = 3) -> None:
    """Every tensor is there with its shape; ``sample`` of them compared whole with their source."""
    import torch

    if set(got) != set(seeds):
        raise AssertionError(f"{what}: {len(got)} tensors, expected {len(seeds)}")
    names = sorted(seeds)
    for name in names[:: max(1, len(names) // sample)]:
        t = got[name]
        if not isinstance(t, torch.Tensor):
            continue
        if not torch.equal(t.cpu(), _tensor(seeds[name])):
            raise AssertionError(f"{what}: tensor {name} differs from its source")


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def touch(tensors: dict[str, Any]) -> int:
    """Read one byte of every 4 KiB page of every CPU tensor (faults in what is not resident yet)."""
    import torch

    total = 0
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel():
            flat = t.reshape(-1).view(torch.uint8)
            total += int(flat[::PAGE].sum())
    return total


def drop_page_cache(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(64 * MIB):
                pass


def best(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def interleaved(runs: int, fns: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The best of ``runs`` of each of ``fns``, run in turns (one of each, ``runs`` times)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(fn())
    return {name: min(t) for name, t in times.items()}


@contextlib.contextmanager
def env(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment for the block (hubfs reads its switches per call)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


# -- 1. local files ----------------------------------------------------------------------------------


def bench_local(folder: Path, seeds: dict[str, int], size: int, args: argparse.Namespace) -> dict[str, Any]:
    from safetensors.torch import load_file

    from hubfs import loader

    files = shard_files(folder)
    warm(files)

    def hubfs_mapped() -> float:
        t0 = time.perf_counter()
        got = loader.load(folder, threads=2)
        touch(got)
        secs = time.perf_counter() - t0
        check(got, seeds, "hubfs local")
        return secs

    def hubfs_read() -> float:
        t0 = time.perf_counter()
        got = loader.load(folder, threads=2, mmap=False)
        touch(got)
        secs = time.perf_counter() - t0
        check(got, seeds, "hubfs local mmap=False")
        return secs

    def safetensors() -> float:
        t0 = time.perf_counter()
        got: dict[str, Any] = {}
        for f in files:
            got.update(load_file(str(f)))
        touch(got)
        secs = time.perf_counter() - t0
        check(got, seeds, "safetensors local")
        return secs

    def populated() -> float:
        with env("HUBFS_LOADER_CACHESTAT", "0"):
            return hubfs_mapped()

    def read_small() -> float:
        with env("HUBFS_LOADER_HUGEPAGES", "0"):
            return hubfs_read()

    # taken in turns, so that a busy spell of a shared machine does not fall on one of them only
    out: dict[str, float] = interleaved(args.runs, {"hubfs_s": hubfs_mapped, "safetensors_s": safetensors,
                                                    "hubfs_populated_s": populated})
    out.update(interleaved(args.runs, {"hubfs_read_s": hubfs_read, "hubfs_read_small_s": read_small}))
    for key in list(out):
        out[key.removesuffix("_s") + "_gbs"] = size / out[key] / GB
    print(f"local: hubfs {out['hubfs_gbs']:.2f} GB/s (all populated {out['hubfs_populated_gbs']:.2f}, mmap=False "
          f"{out['hubfs_read_gbs']:.2f}, with 4 KiB pages {out['hubfs_read_small_gbs']:.2f}), "
          f"safetensors {out['safetensors_gbs']:.2f} GB/s", flush=True)
    return out


# -- 2. a hubfs mount ----------------------------------------------------------------------------------


@contextlib.contextmanager
def hubfs_mount(mountpoint: Path, endpoint: str, token: str, cache: Path) -> Iterator[Path]:
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_TOKEN": token}
    pid = None
    try:
        proc = subprocess.run([sys.executable, "-m", "hubfs.cli", "mount", REPO, str(mountpoint), "--endpoint",
                               endpoint, "--cache-dir", str(cache)], capture_output=True, text=True, env=env,
                              timeout=180, check=False)
        found = re.search(r"daemon pid (\d+)", proc.stdout + proc.stderr)
        pid = int(found.group(1)) if found else None
        if proc.returncode or not is_mounted(mountpoint):
            raise RuntimeError(f"hubfs mount failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-1000:]}")
        yield mountpoint
    finally:
        if is_mounted(mountpoint):
            subprocess.run([sys.executable, "-m", "hubfs.cli", "umount", str(mountpoint)], capture_output=True,
                           timeout=120, check=False)
        fuse_unmount(mountpoint)
        if pid is not None:
            stop_pid(pid, "hubfs mount daemon")


def mount_problem() -> str | None:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        return "needs root and /dev/fuse"
    if not shutil.which("fusermount3"):
        return "needs fuse3 (fusermount3)"
    return None


def bench_mount(tmp: Path, endpoint: str, token: str, seeds: dict[str, int], size: int,
                args: argparse.Namespace) -> dict[str, Any]:
    from safetensors.torch import load_file

    from hubfs import loader

    problem = mount_problem()
    if problem:
        return {"skipped": problem}

    def hubfs_run() -> float:
        with hubfs_mount(tmp / "mnt", endpoint, token, tmp / "mount-cache") as mnt:
            os.environ["HF_HUB_CACHE"] = str(tmp / "mount-cache")
            t0 = time.perf_counter()
            got = loader.load(mnt, token=token)
            touch(got)
            secs = time.perf_counter() - t0
            check(got, seeds, "hubfs from the mount")
        return secs

    def safetensors_run() -> float:
        with hubfs_mount(tmp / "mnt", endpoint, token, tmp / "mount-cache") as mnt:
            t0 = time.perf_counter()
            got: dict[str, Any] = {}
            for f in shard_files(mnt):
                got.update(load_file(str(f)))
            touch(got)
            secs = time.perf_counter() - t0
            check(got, seeds, "safetensors on the mount")
        return secs

    out: dict[str, Any] = {"hubfs_s": best(args.runs, hubfs_run), "safetensors_s": best(args.runs, safetensors_run)}
    out["hubfs_gbs"], out["safetensors_gbs"] = size / out["hubfs_s"] / GB, size / out["safetensors_s"] / GB
    print(f"mount: hubfs {out['hubfs_gbs']:.2f} GB/s, safetensors mmap {out['safetensors_gbs']:.3f} GB/s", flush=True)
    return out


# -- 3. hf:// --------------------------------------------------------------------------------------------


def parallel_curl(endpoint: str, files: list[Path], per_file: int) -> float:
    """Wall time of ``curl`` fetching every file as ``per_file`` ranges at once (all files together)."""
    procs = []
    t0 = time.perf_counter()
    for f in files:
        size = f.stat().st_size
        step = -(-size // per_file)
        url = f"{endpoint}/{REPO}/resolve/main/{f.name}"
        for a in range(0, size, step):
            b = min(size, a + step) - 1
            procs.append(subprocess.Popen(["curl", "-sSfL", "-r", f"{a}-{b}", "-o", "/dev/null", url]))
    codes = [p.wait() for p in procs]
    secs = time.perf_counter() - t0
    if any(codes):
        raise RuntimeError(f"curl failed: exit codes {codes}")
    return secs


def bench_url(tmp: Path, endpoint: str, token: str, folder: Path, seeds: dict[str, int], size: int,
              args: argparse.Namespace) -> dict[str, Any]:
    from hubfs import loader

    def hubfs_run() -> float:
        cache = tmp / "url-cache"
        shutil.rmtree(cache, ignore_errors=True)
        os.environ["HF_HUB_CACHE"] = str(cache)
        t0 = time.perf_counter()
        got = loader.load(f"hf://{REPO}", endpoint=endpoint, token=token)
        touch(got)
        secs = time.perf_counter() - t0
        check(got, seeds, "hubfs from hf://")
        return secs

    out: dict[str, Any] = {"hubfs_s": best(args.runs, hubfs_run)}
    if shutil.which("curl"):
        out["curl_s"] = best(args.runs, lambda: parallel_curl(endpoint, shard_files(folder), 4))
        out["curl_gbs"] = size / out["curl_s"] / GB
    with env("HUBFS_LOADER_HUGEPAGES", "0"):
        out["hubfs_small_s"] = best(args.runs, hubfs_run)
    out["hubfs_gbs"] = size / out["hubfs_s"] / GB
    out["hubfs_small_gbs"] = size / out["hubfs_small_s"] / GB
    print(f"hf://: hubfs {out['hubfs_gbs']:.2f} GB/s (4 KiB pages {out['hubfs_small_gbs']:.2f}), "
          f"curl x16 {out.get('curl_gbs', 0):.2f} GB/s", flush=True)
    return out


# -- 4. peak RSS ------------------------------------------------------------------------------------------

RSS_CHILD = """
import sys
import torch  # before the baseline: its own memory is no part of the load's
import hubfs.loader as loader
from hubfs.loader.pipeline import DIRECT_CHUNK
def status(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":")) * 1024
base = status("VmRSS")
largest = 0
with loader.open(sys.argv[1]) as f:
    largest = max(i.nbytes for i in f.infos().values())
    for name, t in loader.iter_load(f, threads=2, mmap=False):
        del t
print(status("VmHWM") - base, max(2 * largest, 2 * DIRECT_CHUNK) + (256 << 20))
"""


def bench_rss(folder: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(folder)], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode:
        raise RuntimeError(f"RSS child failed: {done.stderr[-2000:]}")
    growth, bound = map(int, done.stdout.split())
    print(f"peak RSS growth {growth / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB", flush=True)
    return {"growth": growth, "bound": bound}


# -- 5. quantize on load (CPU) ------------------------------------------------------------------------------

QUANT_KINDS = ("int8", "nf4", "fp8")


def bench_quant(folder: Path, seeds: dict[str, int], args: argparse.Namespace, device: str = "cpu"
                ) -> dict[str, Any]:
    """Per kind: the load with it, the quantizer alone on the same tensors (already on ``device``), and
    the load without it, all on the first ``--quant-mib`` of tensors."""
    from hubfs import loader
    from hubfs.loader.api import make_quantizer

    per = TENSOR_ROWS * TENSOR_COLS * 2
    keys = sorted(seeds, key=seeds.get)[: max(1, args.quant_mib * MIB // per)]  # type: ignore[arg-type]

    def run(quantize: str | None) -> float:
        t0 = time.perf_counter()
        got = loader.load(folder, device=device, quantize=quantize, keys=keys, mmap=False)
        _sync(device)
        secs = time.perf_counter() - t0
        if quantize is None:
            check(got, {k: seeds[k] for k in keys}, "hubfs before quantizing")
        return secs

    loaded = loader.load(folder, device=device, keys=keys, mmap=False)

    def alone(kind: str) -> float:
        quantizer = make_quantizer(kind)
        assert quantizer is not None
        _sync(device)
        t0 = time.perf_counter()
        for name, t in loaded.items():
            if quantizer.wants(name, tuple(t.shape), "BF16"):
                quantizer.quantize(t)
        _sync(device)
        return time.perf_counter() - t0

    times = interleaved(args.runs, {"plain": lambda: run(None),
                                    **{kind: functools.partial(run, kind) for kind in QUANT_KINDS},
                                    **{f"{kind} alone": functools.partial(alone, kind) for kind in QUANT_KINDS}})
    plain = times["plain"]
    out: dict[str, Any] = {"plain_s": plain, "bytes": len(keys) * per, "kinds": {}}
    for kind in QUANT_KINDS:
        with_q, arithmetic = times[kind], times[f"{kind} alone"]
        out["kinds"][kind] = {"load_s": with_q, "quantizer_s": arithmetic, "overhead": with_q / plain - 1,
                              "loader_overhead": (with_q - arithmetic - plain) / plain}
        print(f"quantize {kind} ({device}): plain {plain:.3f} s, with {kind} {with_q:.3f} s, {kind} alone "
              f"{arithmetic:.3f} s", flush=True)
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# -- 6. GPU ----------------------------------------------------------------------------------------------------


def pinned_h2d_gbs(nbytes: int = 1 << 30) -> float:
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    secs = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src, non_blocking=True)
        end.record()
        end.synchronize()
        secs.append(start.elapsed_time(end) / 1000)
    return nbytes / min(secs) / GB


def bench_gpu(folder: Path, seeds: dict[str, int], size: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": NO_GPU}
    from safetensors.torch import load_file

    from hubfs import loader

    files = shard_files(folder)
    warm(files)
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "pinned_h2d_gbs": pinned_h2d_gbs()}

    def timed_load(fn: Callable[[], dict[str, Any]], what: str) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        got = fn()
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        check(got, seeds, what)
        del got
        torch.cuda.empty_cache()
        return secs

    def st_all() -> dict[str, Any]:
        got: dict[str, Any] = {}
        for f in files:
            got.update(load_file(str(f), device="cuda"))
        return got

    peers: dict[str, Callable[[], dict[str, Any]]] = {
        "hubfs": lambda: loader.load(folder, device="cuda"),
        "safetensors": st_all,
    }
    fst = _fastsafetensors(files)
    if fst is not None:
        peers["fastsafetensors"] = fst
    runai = _runai(files)
    if runai is not None:
        peers["runai"] = runai
    for name, fn in peers.items():
        try:
            out[f"{name}_s"] = min(timed_load(fn, name) for _ in range(args.runs))
            out[f"{name}_gbs"] = size / out[f"{name}_s"] / GB
        except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
            out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:200]
    out["fastsafetensors_missing"] = fst is None
    out["runai_missing"] = runai is None
    out["quant"] = bench_quant(folder, seeds, args, device="cuda")
    print(f"gpu: pinned H2D {out['pinned_h2d_gbs']:.1f} GB/s, hubfs {out.get('hubfs_gbs', 0):.1f} GB/s", flush=True)
    return out


def _fastsafetensors(files: list[Path]) -> Callable[[], dict[str, Any]] | None:
    try:
        fastsafe_open = importlib.import_module("fastsafetensors").fastsafe_open
    except ImportError:
        return None

    def run() -> dict[str, Any]:
        with fastsafe_open(filenames=[str(f) for f in files], nogds=True, device="cuda:0") as f:
            names = list(f.keys())
            return {k: f.get_tensor(k).clone() for k in names}

    return run


def _runai(files: list[Path]) -> Callable[[], dict[str, Any]] | None:
    try:
        streamer_class = importlib.import_module("runai_model_streamer").SafetensorsStreamer
    except ImportError:
        return None

    def run() -> dict[str, Any]:
        got: dict[str, Any] = {}
        with streamer_class() as streamer:
            streamer.stream_files([str(f) for f in files])
            for name, t in streamer.get_tensors():
                got[name] = t.to("cuda", non_blocking=True)
        return got

    return run


# -- the table ------------------------------------------------------------------------------------------------


def rows(size: int, local: dict[str, Any], mount: dict[str, Any], url: dict[str, Any], rss: dict[str, Any],
         quant: dict[str, Any], gpu: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    label = size_label(size)
    out = [Row(f"{label} local, page cache -> CPU, resident, 2 threads (GB/s, best of {args.runs})",
               f"{local['hubfs_gbs']:.2f}", f"safetensors {local['safetensors_gbs']:.2f}",
               ratio(local["hubfs_gbs"], local["safetensors_gbs"]), ">= 1.0x and >= 10 GB/s",
               local["hubfs_gbs"] >= local["safetensors_gbs"] and local["hubfs_gbs"] >= 10, local["hubfs_gbs"]),
           Row(f"{label} local -> CPU, every mapping populated ahead (HUBFS_LOADER_CACHESTAT=0)",
               f"{local['hubfs_populated_gbs']:.2f}", f"safetensors {local['safetensors_gbs']:.2f}",
               ratio(local["hubfs_populated_gbs"], local["safetensors_gbs"]), "", None, local["hubfs_populated_gbs"]),
           Row(f"{label} local -> CPU, mmap=False (tensors own their memory), 2 threads (GB/s)",
               f"{local['hubfs_read_gbs']:.2f}", f"4 KiB pages {local['hubfs_read_small_gbs']:.2f}",
               ratio(local["hubfs_read_gbs"], local["hubfs_read_small_gbs"]), ">= 10 GB/s",
               local["hubfs_read_gbs"] >= 10, local["hubfs_read_gbs"])]
    if "skipped" in mount:
        out.append(Row(f"{label} from a hubfs mount, cold", "not run", mount["skipped"], "n/a", ">= 5x", None))
    else:
        out.append(Row(f"{label} from a hubfs mount, cold (fresh mount + empty cache), resident (GB/s)",
                       f"{mount['hubfs_gbs']:.2f}", f"safetensors mmap {mount['safetensors_gbs']:.3f}",
                       ratio(mount["hubfs_gbs"], mount["safetensors_gbs"]), ">= 5x",
                       mount["hubfs_gbs"] >= 5 * mount["safetensors_gbs"], mount["hubfs_gbs"]))
    if "curl_gbs" in url:
        out.append(Row(f"{label} from hf://, cold (empty cache), resident (GB/s)", f"{url['hubfs_gbs']:.2f}",
                       f"curl, 16 ranges {url['curl_gbs']:.2f}", ratio(url["hubfs_gbs"], url["curl_gbs"]),
                       ">= 0.8x", url["hubfs_gbs"] >= 0.8 * url["curl_gbs"], url["hubfs_gbs"]))
        out.append(Row(f"{label} from hf://, cold, 4 KiB pages (HUBFS_LOADER_HUGEPAGES=0) (GB/s)",
                       f"{url['hubfs_small_gbs']:.2f}", f"curl, 16 ranges {url['curl_gbs']:.2f}",
                       ratio(url["hubfs_small_gbs"], url["curl_gbs"]), "", None, url["hubfs_small_gbs"]))
    else:
        out.append(Row(f"{label} from hf://, cold", f"{url['hubfs_gbs']:.2f}", "curl missing", "n/a", ">= 0.8x", None))
    out.append(Row("peak host RSS growth, streamed load (MiB)", f"{rss['growth'] / MIB:.0f}",
                   f"bound {rss['bound'] / MIB:.0f}", ratio(rss["growth"], rss["bound"]), "<= bound",
                   rss["growth"] <= rss["bound"], rss["growth"] / MIB))
    out += quant_rows(quant, "CPU", gpu_goal=False)
    if "skipped" in gpu:
        out.append(Row("GPU rows (pinned H2D, hubfs, safetensors, fastsafetensors, Run:ai)", NO_GPU, "", "n/a",
                       ">= 0.85x pinned H2D, >= 45 GB/s", None))
        return out
    h2d = gpu["pinned_h2d_gbs"]
    hub = gpu.get("hubfs_gbs")
    out.append(Row(f"{label} page cache -> {gpu['gpu']} (GB/s)", f"{hub:.1f}" if hub else gpu.get("hubfs_error", "?"),
                   f"pinned H2D {h2d:.1f}", ratio(hub, h2d), ">= 0.85x and >= 45 GB/s",
                   bool(hub and hub >= 0.85 * h2d and hub >= 45), hub))
    for peer in ("safetensors", "fastsafetensors", "runai"):
        cell = f"{gpu[peer + '_gbs']:.1f}" if peer + "_gbs" in gpu else (
            "not installed" if gpu.get(peer + "_missing") else gpu.get(peer + "_error", "?"))
        out.append(Row(f"{label} page cache -> GPU vs {peer} (GB/s)", f"{hub:.1f}" if hub else "?", f"{peer} {cell}",
                       ratio(hub, gpu.get(peer + "_gbs")), "", None))
    out += quant_rows(gpu["quant"], "GPU", gpu_goal=True)
    return out


def quant_rows(quant: dict[str, Any], where: str, gpu_goal: bool) -> list[Row]:
    """One row per quantizer: the load with it against the plain load, and the split (its arithmetic
    alone; what the loader adds beyond plain load + arithmetic, negative where they overlap)."""
    out = []
    for kind, q in quant.get("kinds", {}).items():
        split = f"{q['overhead'] * 100:+.0f}% (arith. {q['quantizer_s']:.3f} s, loader {q['loader_overhead'] * 100:+.0f}%)"
        met = q["overhead"] <= 0.10 if gpu_goal else q["loader_overhead"] <= 0.10
        goal = "<= +10%" if gpu_goal else "loader <= +10% beyond the arithmetic (GPU goal: <= +10%)"
        out.append(Row(f"{kind} quantize on load, {where}, {quant['bytes'] // MIB} MiB (s)", f"{q['load_s']:.3f}",
                       f"plain {quant['plain_s']:.3f}", split, goal, met, q["load_s"]))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--size-gib", 2.0, "checkpoint size"), ("--runs", 3, "repetitions; the best counts"),
                ("--quant-mib", 64, "bytes of tensors the quantize-on-load rows load"))
    p.add_argument("--only", default="local,mount,url,rss,quant,gpu",
                   help="comma-separated scenarios (default local,mount,url,rss,quant,gpu)")
    add_output_args(p)
    args = p.parse_args(argv)
    if args.size_gib <= 0 or args.runs < 1 or args.quant_mib < 16:
        p.error("--size-gib > 0, --runs >= 1, --quant-mib >= 16")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # plain LFS uploads; set before huggingface_hub is imported
    info = machine_info({}, PACKAGES)
    print(machine_line(info, (), PACKAGES), flush=True)
    only = set(args.only.split(","))
    empty: dict[str, Any] = {}
    local = mount = url = rss = quant = gpu = empty
    with workdir(args.keep, "hubfs-bench-loader-") as tmp, contextlib.ExitStack() as stack:
        os.environ["HF_HOME"] = str(tmp / "hf-home")
        folder = tmp / "ckpt"
        t0 = time.perf_counter()
        seeds = make_checkpoint(folder, int(args.size_gib * (1 << 30)))
        size = sum(f.stat().st_size for f in shard_files(folder))
        print(f"wrote {size_label(size)} in 4 shards in {time.perf_counter() - t0:.1f}s", flush=True)
        if only & {"mount", "url"}:
            server = start_hub_server(stack, tmp)
            from huggingface_hub import HfApi

            api = HfApi(endpoint=server.endpoint, token=server.admin_token)
            api.create_repo(REPO)
            t0 = time.perf_counter()
            api.upload_folder(folder_path=str(folder), repo_id=REPO)
            print(f"uploaded to {server.endpoint} in {time.perf_counter() - t0:.1f}s", flush=True)
        if "local" in only:
            local = bench_local(folder, seeds, size, args)
        if "mount" in only:
            mount = bench_mount(tmp, server.endpoint, server.admin_token, seeds, size, args)
        if "url" in only:
            url = bench_url(tmp, server.endpoint, server.admin_token, folder, seeds, size, args)
        if "rss" in only:
            rss = bench_rss(folder)
        if "quant" in only:
            quant = bench_quant(folder, seeds, args)
        if "gpu" in only:
            gpu = bench_gpu(folder, seeds, size, args)
    table = rows(size, local or {"hubfs_gbs": 0.0, "hubfs_populated_gbs": 0.0, "hubfs_read_gbs": 0.0,
                                 "hubfs_read_small_gbs": 1.0, "safetensors_gbs": 1.0},
                 mount or {"skipped": "not asked"},
                 url or {"hubfs_gbs": 0.0}, rss or {"growth": 0, "bound": 1},
                 quant or {"plain_s": 1.0, "bytes": 0, "kinds": {}}, gpu or {"skipped": NO_GPU},
                 args)
    print()
    print(machine_line(info, (), PACKAGES))
    print()
    print_table(["scenario", "hubfs", "peer", "ratio", "goal", "met?"],
                ([r.scenario, r.hubfs, r.peer, r.ratio, r.goal, verdict(r.met) if r.goal else ""] for r in table),
                right=(1, 2, 3))
    if args.json:
        write_json(args.json, info, args, local=local, mount=mount, url=url, rss=rss, quant=quant, gpu=gpu,
                   table=[{"scenario": r.scenario, "hubfs": r.hubfs, "peer": r.peer, "ratio": r.ratio,
                           "goal": r.goal, "met": r.met, "value": r.value} for r in table])
    return 0


if __name__ == "__main__":
    sys.exit(main())
