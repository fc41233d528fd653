"""Client benchmark of hubfs (``hf://`` filesystem and ``hubfs download``) against curl and huggingface_hub.

Everything runs against one ``hubfs serve`` (tests/hub_server.py's HubServer) in a temporary
directory, with data uploaded by huggingface_hub (``HfApi``, Git LFS for the big files), in one run:

1. **Sequential read**: a ``--size-mib`` file (default 1 GiB of random bytes, LFS). ``curl -s -o
   /dev/null`` on its pinned resolve URL (``/{repo}/resolve/{commit}/{path}``) against
   ``HubFileSystem().open(path, "rb")`` and ``huggingface_hub.HfFileSystem().open(path, "rb")``,
   each read to the end in 8 MiB ``read()`` calls (a new filesystem instance each run, best of
   ``--runs`` / ``--hf-runs``; every 8th block and the last one are kept and compared with the
   source file once the clock has stopped, as curl's figure includes no check).
   Every hubfs run (here and in 2.) gets an empty ``HF_HUB_CACHE``, so its block cache cannot
   answer from local disk: the numbers are cold reads over HTTP.
2. **Parquet column read over a slow link**: a ``--parquet-mb`` MB parquet file (9 columns:
   float64, int64 and 16-letter strings; ``--row-groups`` row groups; snappy) read with
   ``pd.read_parquet(path, columns=["c0"])`` through a loopback TCP proxy that delays every
   forwarded chunk by half of ``--latency-ms`` each way (so each request/response round trip and
   each new connection costs ``--latency-ms``, default 50 ms). The proxy (its own process) frames
   the HTTP/1.1 streams and counts requests, connections and response body bytes. "Needed" bytes
   are the compressed size of c0's column chunks (from the file's metadata) plus the footer.
   Measured: hubfs via ``filesystem=HubFileSystem(...)``, hubfs via the fsspec registry
   (``"hf://..."`` + ``storage_options``, the way most users call it), and
   ``filesystem=HfFileSystem(...)`` (instance caches cleared before every run, best of ``--runs``).
3. **Repo download**: a repo of ``--small-files`` files (1-4 KiB) and 4 files of ``--large-mib`` MiB
   (one ``upload_folder`` commit). ``huggingface_hub.snapshot_download`` (in this process, progress
   bars off) against ``python -m hubfs.cli download REPO --cache-dir DIR --quiet`` (a subprocess,
   so its time includes interpreter start-up; HF_ENDPOINT/HF_TOKEN in its environment), each into
   a fresh cache directory, best of ``--download-runs``. Both results are checked file by file
   (names and sizes; content of the small files, sha256 of the large ones).

The goals (from the issue): sequential read >= 0.8x curl and >= 2x HfFileSystem; parquet fetches
<= 1.1x the bytes it needs and beats HfFileSystem by >= 2x; ``hubfs download`` <= 0.5x the wall time
of ``snapshot_download``. Printed: a Markdown table (scenario, hubfs, peer, ratio, goal, met?), the
request/byte breakdown of the parquet reads and a machine line; ``--json PATH`` writes all numbers.

Run it (about 2-3 minutes on 2 cores at the defaults; the quick check below takes about a minute)::

    .venv/bin/python scripts/bench_fs.py
    .venv/bin/python scripts/bench_fs.py --size-mib 128 --parquet-mb 40 --large-mib 8 --json /tmp/bench_fs.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import add_numbers, add_output_args, arg_parser, start_hub, workdir, write_json
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.proxy import ProxyHandle
from benchlib.table import Row, print_table, verdict

MIB = 1 << 20
MB = 1_000_000
READ_CHUNK = 8 << 20
REPO_READ, BIG_NAME = "admin/fs-read", "big.bin"
REPO_PARQUET, PARQUET_NAME = "admin/fs-parquet", "data.parquet"  # a dataset repo
REPO_DOWNLOAD = "admin/fs-download"
LARGE_FILES = 4
SMALL_FOLDERS = 10
TOOLS, PACKAGES = ("curl",), ("huggingface_hub", "pandas", "pyarrow")


# -- data ----------------------------------------------------------------------------------------


def write_random_file(path: Path, size: int) -> str:
    """``size`` random bytes, 16 MiB at a time; returns their sha256."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = os.urandom(min(16 * MIB, left))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


@dataclass
class ParquetData:
    path: Path
    rows: int
    c0_sum: float
    needed: int  # c0's column chunks (compressed, with page headers) + footer + its length and magic
    c0_chunks: list[tuple[int, int]]  # (offset, length) of c0 in each row group


def make_parquet(path: Path, target_mb: int, row_groups: int) -> ParquetData:
    """~``target_mb`` MB of 9 incompressible columns (3 float64, 3 int64, 3 strings of 16 letters)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = max(row_groups, int(target_mb * MB / 101))  # ~101 B a row on disk (6 x 8 B + 3 x 20 B, less snappy's share)
    rng = np.random.default_rng(42)
    cols: dict[str, Any] = {}
    for i in range(9):
        if i % 3 == 0:
            cols[f"c{i}"] = pa.array(rng.random(rows))
        elif i % 3 == 1:
            cols[f"c{i}"] = pa.array(rng.integers(0, 1 << 62, rows))
        else:
            data = rng.integers(97, 123, rows * 16, dtype=np.uint8).tobytes()
            offsets = np.arange(0, rows * 16 + 1, 16, dtype=np.int32)
            cols[f"c{i}"] = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))
    table = pa.table(cols)
    c0_sum = float(np.sum(table["c0"].to_numpy()))
    pq.write_table(table, path, compression="snappy", row_group_size=math.ceil(rows / row_groups),
                   use_dictionary=False)
    del table, cols
    meta = pq.ParquetFile(path).metadata
    chunks = []
    for rg in range(meta.num_row_groups):
        col = meta.row_group(rg).column(0)
        start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        chunks.append((start, col.total_compressed_size))
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        footer = int.from_bytes(f.read(4), "little") + 8
    return ParquetData(path, rows, c0_sum, sum(n for _, n in chunks) + footer, chunks)


def small_size(i: int) -> int:
    """Deterministic sizes between 1 KiB and 4 KiB."""
    return 1024 + (i * 7919) % (3 * 1024 + 1)


def make_download_tree(root: Path, files: int, large_mib: int) -> dict[str, str]:
    """``files`` small files in folders plus 4 large random ones; returns path -> sha256."""
    digests = {}
    for i in range(files):
        rel = f"small/d{i % SMALL_FOLDERS:02d}/f{i:05d}.bin"
        data = random.Random(i).randbytes(small_size(i))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        digests[rel] = hashlib.sha256(data).hexdigest()
    for i in range(LARGE_FILES):
        rel = f"large/w{i}.bin"
        digests[rel] = write_random_file(root / rel, large_mib * MIB)
    return digests


# -- hub -----------------------------------------------------------------------------------------


def hf_api(endpoint: str, token: str) -> Any:
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # must be set before huggingface_hub is imported
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # for the uploads here and snapshot_download later
    return HfApi(endpoint=endpoint, token=token)


def upload_file(api: Any, repo_id: str, local: Path, name: str, repo_type: str = "model") -> str:
    """Create the repo, upload one file; returns the commit sha."""
    api.create_repo(repo_id, repo_type=repo_type)
    t0 = time.monotonic()
    info = api.upload_file(path_or_fileobj=str(local), path_in_repo=name, repo_id=repo_id, repo_type=repo_type)
    print(f"uploaded {repo_id}/{name} ({local.stat().st_size / MIB:,.0f} MiB) in {time.monotonic() - t0:.1f}s",
          flush=True)
    return info.oid


def upload_tree(api: Any, repo_id: str, root: Path) -> None:
    api.create_repo(repo_id)
    t0 = time.monotonic()
    api.upload_folder(folder_path=str(root), repo_id=repo_id, commit_message="benchmark content")
    print(f"uploaded {repo_id} ({sum(1 for p in root.rglob('*') if p.is_file())} files) in "
          f"{time.monotonic() - t0:.1f}s", flush=True)


# -- 1. sequential read --------------------------------------------------------------------------


def curl_mib_s(url: str, token: str, size: int) -> float:
    """MiB/s of one ``curl -s -o /dev/null`` (curl's own time_total), checking status and size."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                          "-w", "%{http_code} %{size_download} %{time_total}", url],
                         capture_output=True, text=True, check=True).stdout
    code, got, secs = out.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"curl {url}: HTTP {code}, {got} bytes (expected {size})")
    return size / float(secs) / MIB


def fresh_hub_cache(root: Path) -> None:
    """Point ``HF_HUB_CACHE`` at an empty folder, so hubfs's block cache cannot serve a run from disk."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    os.environ["HF_HUB_CACHE"] = str(root)


def read_sequential(fs: Any, path: str, source: Path, size: int) -> float:
    """MiB/s of ``fs.open(path, "rb")`` + 8 MiB ``read()`` calls to EOF.

    Every 8th block and the last one are kept and compared with ``source`` after the clock stops
    (curl's figure includes no check either).
    """
    kept: list[tuple[int, bytes]] = []
    t0 = time.perf_counter()
    total = block = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            if block % 8 == 0 or total + len(chunk) == size:
                kept.append((total, chunk))
            total += len(chunk)
            block += 1
    secs = time.perf_counter() - t0
    if total != size:
        raise RuntimeError(f"{type(fs).__name__}: read {total} bytes of {size}")
    with open(source, "rb") as src:
        for offset, chunk in kept:
            if chunk != os.pread(src.fileno(), len(chunk), offset):
                raise RuntimeError(f"{type(fs).__name__}: wrong bytes at offset {offset}")
    return size / secs / MIB


def bench_read(endpoint: str, token: str, sha: str, source: Path, cache: Path,
               args: argparse.Namespace) -> dict[str, Any]:
    from huggingface_hub import HfFileSystem
    from huggingface_hub.utils import close_session

    from hubfs.fs import HubFileSystem

    size = source.stat().st_size
    url = f"{endpoint}/{REPO_READ}/resolve/{sha}/{BIG_NAME}"
    path = f"{REPO_READ}/{BIG_NAME}"
    runs: dict[str, list[float]] = {"curl": [], "hubfs": [], "HfFileSystem": []}
    for i in range(max(args.runs, args.hf_runs)):
        line = []
        if i < args.runs:
            runs["curl"].append(curl_mib_s(url, token, size))
            fresh_hub_cache(cache)
            runs["hubfs"].append(read_sequential(
                HubFileSystem(endpoint=endpoint, token=token, skip_instance_cache=True), path, source, size))
            line += [f"curl {runs['curl'][-1]:,.0f}", f"hubfs {runs['hubfs'][-1]:,.0f}"]
        if i < args.hf_runs:
            close_session()  # a cold start, like hubfs's new instance
            runs["HfFileSystem"].append(read_sequential(
                HfFileSystem(endpoint=endpoint, token=token, skip_instance_cache=True), path, source, size))
            line.append(f"HfFileSystem {runs['HfFileSystem'][-1]:,.0f}")
        print(f"  read run {i + 1}: " + ", ".join(line) + " MiB/s", flush=True)
    return {"runs": runs, "best": {k: max(v) for k, v in runs.items()}, "size": size}


class LocalFile:
    """``open()`` of one local file, shaped like a filesystem so that :func:`read_sequential` reads it the
    same way (same calls, same blocks kept and checked) as it reads ``hf://``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, _path: str, mode: str = "rb") -> Any:
        return open(self.path, mode, buffering=0)


def read_page_cache(blob: Path, source: Path, size: int) -> float:
    """MiB/s of plain 8 MiB ``read()`` calls on a file already in the page cache (the floor for a cached read)."""
    return read_sequential(LocalFile(blob), str(blob), source, size)


class RequestCounter:
    """Counts the HTTP requests this process sends (http.client for byte ranges, httpx for metadata)."""

    def __init__(self) -> None:
        import http.client

        import httpx

        self.count = 0
        self._patches = [(http.client.HTTPConnection, "putrequest"), (httpx.Client, "send")]
        self._saved = [getattr(cls, name) for cls, name in self._patches]
        for (cls, name), original in zip(self._patches, self._saved):
            setattr(cls, name, self._counting(original))

    def _counting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            self.count += 1
            return original(*a, **kw)

        return wrapper

    def stop(self) -> None:
        for (cls, name), original in zip(self._patches, self._saved):
            setattr(cls, name, original)


def bench_cached(endpoint: str, token: str, sha: str, source: Path, cache: Path,
                 args: argparse.Namespace) -> dict[str, Any]:
    """A file fully in the local cache (``hf_hub_download``): ``hf://`` against reading its blob directly."""
    from huggingface_hub import hf_hub_download

    from hubfs.fs import HubFileSystem

    size = source.stat().st_size
    fresh_hub_cache(cache)
    blob = Path(hf_hub_download(REPO_READ, BIG_NAME, revision=sha, endpoint=endpoint, token=token,
                                cache_dir=cache)).resolve()
    read_page_cache(blob, source, size)  # warm the page cache once
    runs: dict[str, list[float]] = {"page cache": [], "hubfs": []}
    requests = []
    for i in range(args.runs):
        runs["page cache"].append(read_page_cache(blob, source, size))
        counter = RequestCounter()
        try:
            with HubFileSystem(endpoint=endpoint, token=token, skip_instance_cache=True) as fs:
                runs["hubfs"].append(read_sequential(fs, f"{REPO_READ}/{BIG_NAME}", source, size))
        finally:
            counter.stop()
        requests.append(counter.count)
        print(f"  cached read run {i + 1}: page cache {runs['page cache'][-1]:,.0f}, hubfs {runs['hubfs'][-1]:,.0f} "
              f"MiB/s, {counter.count} requests", flush=True)
    return {"runs": runs, "best": {k: max(v) for k, v in runs.items()}, "size": size, "requests": max(requests)}


# -- 2. parquet over a slow link -----------------------------------------------------------------


def read_parquet_once(how: str, proxy: ProxyHandle, token: str, pq: ParquetData, cache: Path) -> dict[str, Any]:
    """One ``pd.read_parquet(columns=["c0"])`` through the proxy: seconds, bytes and requests."""
    import pandas as pd
    from huggingface_hub import HfFileSystem
    from huggingface_hub.utils import close_session

    from hubfs.fs import HubFileSystem

    HubFileSystem.clear_instance_cache()
    HfFileSystem.clear_instance_cache()
    close_session()  # huggingface_hub's shared keep-alive client: every run starts cold, like hubfs's
    fresh_hub_cache(cache)
    url = f"hf://datasets/{REPO_PARQUET}/{PARQUET_NAME}"
    options = {"endpoint": proxy.endpoint, "token": token}
    HubFileSystem(**options, skip_instance_cache=True).client.forget_pins()  # hubfs shares pins in a process
    proxy.reset()
    t0 = time.perf_counter()
    if how == "hubfs":
        df = pd.read_parquet(url, columns=["c0"], filesystem=HubFileSystem(**options))
    elif how == "hubfs (hf:// + storage_options)":
        df = pd.read_parquet(url, columns=["c0"], storage_options=options)
    else:
        df = pd.read_parquet(url, columns=["c0"], filesystem=HfFileSystem(**options))
    secs = time.perf_counter() - t0
    stats = proxy.stats()
    if list(df.columns) != ["c0"] or len(df) != pq.rows or not math.isclose(float(df["c0"].sum()), pq.c0_sum):
        raise RuntimeError(f"{how}: wrong result: columns {list(df.columns)}, {len(df)} rows")
    return {"seconds": secs, **stats}


def check_registry() -> str:
    """The class fsspec (and so pandas) uses for ``hf://``."""
    import fsspec

    cls = fsspec.get_filesystem_class("hf")
    return f"{cls.__module__}.{cls.__qualname__}"


PARQUET_CLIENTS = ("hubfs", "hubfs (hf:// + storage_options)", "HfFileSystem")


def bench_parquet(proxy: ProxyHandle, token: str, pq: ParquetData, cache: Path, runs: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in PARQUET_CLIENTS}
    for i in range(runs):
        order = PARQUET_CLIENTS if i % 2 == 0 else PARQUET_CLIENTS[::-1]
        for client in order:
            results[client].append(read_parquet_once(client, proxy, token, pq, cache))
        print(f"  parquet run {i + 1}: " + ", ".join(
            f"{c} {results[c][-1]['seconds']:.2f}s/{results[c][-1]['down_body_bytes'] / MB:.1f} MB/"
            f"{results[c][-1]['requests']} req" for c in PARQUET_CLIENTS), flush=True)
    best = {}
    for client, rs in results.items():
        top = min(rs, key=lambda r: r["seconds"])
        best[client] = {"seconds": top["seconds"], "body_bytes": max(r["down_body_bytes"] for r in rs),
                        "wire_bytes": max(r["down_bytes"] for r in rs), "requests": top["requests"],
                        "connections": top["connections"], "methods": top["methods"], "exchanges": top["exchanges"]}
    return {"runs": [dict(zip(results, rs)) for rs in zip(*results.values())], "best": best}


def describe_exchanges(exchanges: list[list[Any]], pq: ParquetData) -> list[str]:
    """One short line per request: method, what it asked for, status, body bytes."""
    out = []
    c0 = {start: n for start, n in pq.c0_chunks}
    for method, target, rng, status, body in exchanges:
        what = target.split("?")[0]
        what = what if len(what) <= 60 else "..." + what[-57:]
        note = ""
        if rng.startswith("bytes="):
            lo = int(rng[6:].split("-")[0] or 0)
            note = " (c0 chunk start)" if lo in c0 else ""
        out.append(f"{method} {what} {rng or '-'} -> {status}, {body:,} B{note}")
    return out


# -- 3. repo download ----------------------------------------------------------------------------


def hubfs_download_available() -> bool:
    probe = subprocess.run([sys.executable, "-m", "hubfs.cli", "download", "--help"], capture_output=True, text=True,
                           check=False)
    return probe.returncode == 0


def listing(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``root`` (following the cache's symlinks)."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def check_download(root: Path, who: str, digests: dict[str, str], source: Path) -> dict[str, int]:
    got = listing(root)
    missing = [p for p in digests if p not in got]
    wrong = [p for p in digests if p in got and got[p] != (source / p).stat().st_size]
    if missing or wrong:
        raise RuntimeError(f"{who}: {len(missing)} files missing (e.g. {missing[:3]}), {len(wrong)} with wrong "
                           f"sizes (e.g. {wrong[:3]})")
    for rel, digest in digests.items():
        if hashlib.sha256((root / rel).read_bytes()).hexdigest() != digest:
            raise RuntimeError(f"{who}: wrong content in {rel}")
    return got


def snapshot_dir(cache: Path, stdout: str) -> Path:
    """Where ``hubfs download`` put the files: the path it printed last, else the cache's snapshot."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if lines and Path(lines[-1]).is_dir():
        return Path(lines[-1])
    found = sorted(cache.glob(f"models--{REPO_DOWNLOAD.replace('/', '--')}/snapshots/*"))
    if len(found) != 1:
        raise RuntimeError(f"hubfs download: no single snapshot under {cache} (found {found}); stdout: {stdout[-500:]}")
    return found[0]


def run_snapshot_download(endpoint: str, token: str, cache: Path) -> tuple[float, Path]:
    from huggingface_hub import snapshot_download

    os.sync()
    t0 = time.perf_counter()
    path = snapshot_download(REPO_DOWNLOAD, cache_dir=str(cache), endpoint=endpoint, token=token)
    return time.perf_counter() - t0, Path(path)


def run_hubfs_download(endpoint: str, token: str, cache: Path) -> tuple[float, Path]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": token}
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hubfs.cli", "download", REPO_DOWNLOAD, "--cache-dir", str(cache),
                           "--quiet"], capture_output=True, text=True, env=env, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"hubfs download failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return secs, snapshot_dir(cache, proc.stdout)


def startup_seconds() -> float:
    """Best of 3: ``python -m hubfs.cli --help`` (the fixed cost inside every hubfs CLI time)."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hubfs.cli", "--help"], capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_download(endpoint: str, token: str, digests: dict[str, str], source: Path, tmp: Path,
                   runs: int) -> dict[str, Any]:
    available = hubfs_download_available()
    if not available:
        print("note: `hubfs download` is missing (python -m hubfs.cli download --help failed); measuring "
              "snapshot_download only", flush=True)
    clients: dict[str, Callable[[str, str, Path], tuple[float, Path]]] = {"snapshot_download": run_snapshot_download}
    if available:
        clients["hubfs download"] = run_hubfs_download
    times: dict[str, list[float]] = {c: [] for c in clients}
    for i in range(runs):
        names = list(clients) if i % 2 == 0 else list(clients)[::-1]
        results = {}
        for name in names:
            cache = tmp / f"dl-{name.replace(' ', '-')}-{i}"
            secs, root = clients[name](endpoint, token, cache)
            results[name] = check_download(root, name, digests, source)
            times[name].append(secs)
            shutil.rmtree(cache)
        if len({json.dumps(r, sort_keys=True) for r in results.values()}) > 1:
            a, b = results.values()
            raise RuntimeError(f"the two downloads differ: only in snapshot_download {sorted(set(a) - set(b))[:5]}, "
                               f"only in hubfs {sorted(set(b) - set(a))[:5]}, sizes differ "
                               f"{[p for p in a if p in b and a[p] != b[p]][:5]}")
        print(f"  download run {i + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in clients), flush=True)
    return {"available": available, "runs": times, "best": {n: min(t) for n, t in times.items()},
            "files": len(digests) + 1, "startup_s": startup_seconds() if available else None}


# -- report --------------------------------------------------------------------------------------


def size_label(size: int) -> str:
    return f"{size / (1 << 30):g} GiB" if size >= 1 << 30 and size % (1 << 30) == 0 else f"{size / MIB:,.0f} MiB"


def build_rows(read: dict[str, Any] | None, parquet: dict[str, Any] | None, pq: ParquetData | None, pq_size: int,
               download: dict[str, Any] | None, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    if read:
        rows += read_rows(read, args)
    if parquet and pq:
        rows += parquet_rows(parquet, pq, pq_size, args)
    if download:
        rows += download_rows(download, args)
    return rows


def read_rows(read: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    rows = []
    b = read["best"]
    what = f"{size_label(read['size'])} sequential read, 8 MiB read() calls (MiB/s, best of {args.runs})"
    r = b["hubfs"] / b["curl"]
    paired = statistics.median(h / c for h, c in zip(read["runs"]["hubfs"], read["runs"]["curl"]))
    rows.append(Row(what, f"{b['hubfs']:,.0f}", f"curl -o /dev/null: {b['curl']:,.0f}",
                    f"{r:.2f}x (median of per-run ratios {paired:.2f}x)", ">= 0.8x curl", r >= 0.8, r,
                    {"median_paired_ratio": paired}))
    r = b["hubfs"] / b["HfFileSystem"]
    rows.append(Row(what, f"{b['hubfs']:,.0f}", f"HfFileSystem (best of {args.hf_runs}): {b['HfFileSystem']:,.0f}",
                    f"{r:.2f}x", ">= 2x HfFileSystem", r >= 2, r))
    cached = read.get("cached")
    if cached:
        c = cached["best"]
        r = c["hubfs"] / c["page cache"]
        rows.append(Row(f"{size_label(cached['size'])} fully cached, read through hf:// (MiB/s, best of {args.runs}; "
                        f"{cached['requests']} HTTP requests)", f"{c['hubfs']:,.0f}",
                        f"the blob file from the page cache: {c['page cache']:,.0f}", f"{r:.2f}x",
                        ">= 0.8x, no request beyond the pin (paths-info + the peek, sent together)",
                        r >= 0.8 and cached["requests"] <= 2, r,
                        {"requests": cached["requests"]}))
    return rows


def parquet_rows(parquet: dict[str, Any], pq: ParquetData, pq_size: int, args: argparse.Namespace) -> list[Row]:
    rows = []
    p = parquet["best"]
    hub, hf = p["hubfs"], p["HfFileSystem"]
    what = (f"pd.read_parquet(columns=[\"c0\"]), {pq_size / MB:,.0f} MB file, +{args.latency_ms:g} ms RTT")
    r = hf["seconds"] / hub["seconds"]
    rows.append(Row(f"{what}: wall time (s, best of {args.runs})", f"{hub['seconds']:.2f}",
                    f"HfFileSystem: {hf['seconds']:.2f}", f"{r:.2f}x speed-up", ">= 2x speed-up", r >= 2, r))
    r = hub["body_bytes"] / pq.needed
    rows.append(Row(f"{what}: bytes fetched (response bodies, most of {args.runs} runs) / needed "
                    f"({pq.needed / MB:,.1f} MB)",
                    f"{hub['body_bytes'] / MB:,.1f} MB ({r:.2f}x)",
                    f"HfFileSystem: {hf['body_bytes'] / MB:,.1f} MB ({hf['body_bytes'] / pq.needed:.2f}x)",
                    f"{r:.2f}x", "<= 1.1x needed", r <= 1.1, r))
    rows.append(Row(f"{what}: HTTP requests / connections", f"{hub['requests']} / {hub['connections']}",
                    f"HfFileSystem: {hf['requests']} / {hf['connections']}", "", "", None))
    reg = p["hubfs (hf:// + storage_options)"]
    r = hf["seconds"] / reg["seconds"]
    rows.append(Row("same, as `pd.read_parquet(\"hf://...\", storage_options=...)` (fsspec registry): wall time",
                    f"{reg['seconds']:.2f} s, {reg['body_bytes'] / MB:,.1f} MB, {reg['requests']} req",
                    f"HfFileSystem: {hf['seconds']:.2f} s", f"{r:.2f}x speed-up", "(same goals)",
                    r >= 2 and reg["body_bytes"] / pq.needed <= 1.1, r))
    return rows


def download_rows(download: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    rows = []
    what = (f"download {download['files']:,} files ({args.small_files:,} x 1-4 KiB + {LARGE_FILES} x "
            f"{args.large_mib} MiB + .gitattributes) (s, best of {args.download_runs})")
    snap = download["best"]["snapshot_download"]
    if download["available"]:
        mine = download["best"]["hubfs download"]
        r = mine / snap
        paired = statistics.median(h / s for h, s in zip(download["runs"]["hubfs download"],
                                                          download["runs"]["snapshot_download"]))
        rows.append(Row(what, f"{mine:.2f}", f"snapshot_download: {snap:.2f}",
                        f"{r:.2f}x (median of per-run ratios {paired:.2f}x)", "<= 0.5x snapshot_download", r <= 0.5, r,
                        {"median_paired_ratio": paired}))
    else:
        rows.append(Row(what, "n/a (command missing)", f"snapshot_download: {snap:.2f}", "n/a",
                        "<= 0.5x snapshot_download", None))
    return rows


def print_rows(rows: list[Row]) -> None:
    print_table(["scenario", "hubfs", "peer", "ratio", "goal", "met?"],
                ([r.scenario, r.hubfs, r.peer, r.ratio, r.goal, verdict(r.met) if r.goal else ""] for r in rows),
                right=(1, 2, 3))


def print_parquet_details(parquet: dict[str, Any], pq: ParquetData) -> None:
    print(f"\nparquet: {pq.rows:,} rows, c0 in {len(pq.c0_chunks)} column chunks of "
          f"~{pq.c0_chunks[0][1] / MB:.1f} MB; needed {pq.needed:,} B")
    for client, best in parquet["best"].items():
        methods = ", ".join(f"{m} {n}" for m, n in sorted(best["methods"].items()))
        print(f"\n{client}: {best['seconds']:.2f}s, {best['requests']} requests ({methods}), {best['connections']} "
              f"connections, {best['body_bytes']:,} B of bodies ({best['wire_bytes']:,} B on the wire)")
        for line in describe_exchanges(best["exchanges"], pq)[:60]:
            print(f"    {line}")


def print_notes(download: dict[str, Any] | None, args: argparse.Namespace, registry: str) -> None:
    print()
    print("- one `hubfs serve` (uvicorn) on 127.0.0.1; clients and server share the machine's cores.")
    print("- read: curl's own `time_total`; the Python clients from `open()` to EOF, a new filesystem instance "
          "each run; every 8th 8 MiB block is kept and compared with the source file after the clock stops.")
    print("- hubfs reads (read and parquet) start each run with an empty `HF_HUB_CACHE`: its block cache would "
          "otherwise serve later runs from local disk; these are cold, network-bound numbers.")
    print(f"- parquet: a loopback proxy (its own process) delays each forwarded chunk by {args.latency_ms / 2:g} ms "
          f"each way and each new connection by {args.latency_ms:g} ms; bytes fetched = HTTP response bodies it "
          f"relayed (JSON API answers included). `hf://` is registered to {registry}. huggingface_hub's shared "
          "HTTP client is closed before each HfFileSystem run, so both clients start without open connections.")
    if download and download["available"]:
        print(f"- download: snapshot_download runs in this process; `hubfs download` is a subprocess, its time "
              f"includes Python start-up (`python -m hubfs.cli --help`: {download['startup_s']:.2f}s). "
              "Fresh cache dirs; `sync` before each run.")
    elif download:
        print("- download: `hubfs download` is not implemented yet (`python -m hubfs.cli download --help` fails).")


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--size-mib", 1024, "size of the sequentially read file"),
                ("--parquet-mb", 300, "size of the parquet file in MB"),
                ("--row-groups", 10, "row groups in the parquet file"),
                ("--latency-ms", 50.0, "added round-trip time for parquet"),
                ("--small-files", 1000, "small files in the download repo"),
                ("--large-mib", 64, f"size of each of the {LARGE_FILES} large files in the download repo"),
                ("--runs", 3, "repetitions of read/parquet; the best counts"),
                ("--hf-runs", 2, "repetitions of the HfFileSystem read"),
                ("--download-runs", 3, "repetitions of the downloads"))
    p.add_argument("--only", default="read,parquet,download",
                   help="comma-separated scenarios to run (default read,parquet,download)")
    add_output_args(p)
    args = p.parse_args(argv)
    if min(args.size_mib, args.parquet_mb, args.row_groups, args.small_files, args.large_mib, args.runs,
           args.hf_runs, args.download_runs) < 1 or args.latency_ms < 0:
        p.error("sizes, counts and runs must be >= 1, --latency-ms >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("curl"):
        raise SystemExit("curl is needed")
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # before huggingface_hub is imported (machine_info imports it)
    info = machine_info({"curl": tool_version(["curl", "--version"], words=2)}, PACKAGES)
    print(machine_line(info, TOOLS, PACKAGES), flush=True)
    registry = check_registry()
    with workdir(args.keep, "hubfs-bench-fs-") as tmp, contextlib.ExitStack() as stack:
        os.environ["HF_HOME"] = str(tmp / "hf-home")
        endpoint, token = start_hub(stack, tmp)
        print(f"hubfs at {endpoint}; hf:// -> {registry}", flush=True)
        api = hf_api(endpoint, token)

        only = set(args.only.split(","))
        (tmp / "src").mkdir(parents=True, exist_ok=True)
        read = parquet = download = pq = None
        pq_size = 0
        if "read" in only:
            big = tmp / "src" / BIG_NAME
            write_random_file(big, args.size_mib * MIB)
            sha = upload_file(api, REPO_READ, big, BIG_NAME)
            read = bench_read(endpoint, token, sha, big, tmp / "hubfs-cache", args)
            read["cached"] = bench_cached(endpoint, token, sha, big, tmp / "hubfs-cache", args)
            big.unlink()

        if "parquet" in only:
            pq = make_parquet(tmp / "src" / PARQUET_NAME, args.parquet_mb, args.row_groups)
            pq_size = pq.path.stat().st_size
            upload_file(api, REPO_PARQUET, pq.path, PARQUET_NAME, repo_type="dataset")
            proxy = ProxyHandle(endpoint, args.latency_ms / 1000)
            stack.callback(proxy.stop)
            print(f"latency proxy at {proxy.endpoint} (+{args.latency_ms:g} ms per round trip)", flush=True)
            parquet = bench_parquet(proxy, token, pq, tmp / "hubfs-cache", args.runs)

        if "download" in only:
            tree = tmp / "src" / "tree"
            digests = make_download_tree(tree, args.small_files, args.large_mib)
            upload_tree(api, REPO_DOWNLOAD, tree)
            download = bench_download(endpoint, token, digests, tree, tmp, args.download_runs)

    rows = build_rows(read, parquet, pq, pq_size, download, args)
    print()
    print(machine_line(info, TOOLS, PACKAGES))
    print()
    print_rows(rows)
    print_notes(download, args, registry)
    if parquet and pq:
        print_parquet_details(parquet, pq)
    if args.json:
        print()
        write_json(
            args.json, info, args, registry=registry,
            read=read, parquet={"needed": pq.needed, "size": pq_size, "rows": pq.rows,
                                "c0_chunks": pq.c0_chunks, **parquet} if parquet and pq else None,
            download=download,
            table=[{"scenario": r.scenario, "hubfs": r.hubfs, "peer": r.peer, "ratio": r.ratio, "goal": r.goal,
                    "met": r.met, "value": r.value, **r.extra} for r in rows],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
