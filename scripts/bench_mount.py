"""FUSE mount benchmark of hubfs (``hubfs mount``) against ``hf://``, the page cache and ``fsspec.fuse``.

Everything runs against one ``hubfs serve`` started here (tests/hub_server.py's HubServer, with
``HUBFS_REQUEST_LOG`` so the hub itself counts the requests), in a temporary directory, with data
uploaded by huggingface_hub, in one run:

1. **Cold sequential read**: a ``--size-mib`` file (default 1 GiB of random bytes, Git LFS) read to
   the end through a hubfs mount in 1 MiB ``read()`` calls into a page-aligned buffer (like ``dd bs=1M``;
   an unaligned one spans 257 pages, which direct I/O sends as two requests), each run on a fresh
   mount with an empty ``--cache-dir`` (so neither the kernel page cache nor hubfs's disk cache can
   answer), against the ``hf://`` filesystem's own throughput: ``hubfs.fs.HubFileSystem().open()``
   read in 8 MiB ``read()`` calls with an empty ``HF_HUB_CACHE`` (as in bench_fs.py). Best of
   ``--runs``; every 64th block and the last one are compared with the source after the clock stops.
   Also shown: the daemon's CPU seconds per GiB (``/proc/PID/stat``; steadier than MiB/s on a busy
   machine); ``--compare-hugepages`` adds, in turns, cold reads on a mount started with
   ``HUBFS_MOUNT_HUGEPAGES=0`` (its heap, where the read buffers live, in 4 KiB pages), and
   ``--compare-direct`` on one started with ``HUBFS_MOUNT_DIRECT_READS=1`` (the file read with direct
   I/O instead of through the kernel's page cache), and ``--compare-keep`` on one started with
   ``HUBFS_MOUNT_KEEP_READS=0`` (the file read whole is not kept in the cache; ``hf://`` keeps nothing),
   and ``--compare-minimal`` through ``benchlib/minimal_fuse.py`` (no hubfs code: the least a Python FUSE
   daemon does per byte, received once and copied once into the reader; what any of them reaches here).
2. **Warm re-read**: right after each cold read, the same file is read three more times through the
   same mount (FUSE passthrough to the now complete cached blob, or ``keep_cache``: the kernel's page
   cache answers), in turns with a local copy of the same
   bytes already in the page cache (read once untimed first), 1 MiB calls as well: both are measured
   in the same minute, under the same load; the fastest of each counts. Also shown: the hub requests
   each re-read caused (pages the kernel reclaimed in between come back as small reads) and how the
   page cache holds both files (4 KiB pages or large folios, read from ``/proc/kpageflags``).
3. **``ls -lR`` of a ``--files`` repo** (default 10,000 small files in 110 folders): on a fresh mount
   each run, ``ls -lR`` wall time and the requests the hub logged from the mount command to the end of
   ``ls`` (the mount lists the whole commit at start-up). Against ``fsspec.fuse`` over
   huggingface_hub's ``HfFileSystem`` on the same repo (a subprocess running ``fsspec.fuse.run(...,
   foreground=True)`` with its defaults, fusepy over libfuse2): same ``ls -lR``, same count. Both
   listings must show every file.
4. **Random 4 KiB reads over a slow link**: a ``--random-mib`` file (default 256 MiB) on a mount whose
   endpoint is benchlib's latency proxy (``--latency-ms``, default 50 ms per round trip). 1, 4 and 8
   threads (``--readers``), each with its own descriptor, do ``--random-reads`` ``os.pread`` calls of
   4 KiB at random 4 KiB-aligned offsets (the GIL is released in ``pread``); a fresh mount and an
   empty cache for every count of readers, one warm-up read per thread before the clock starts.
   Reads/s, the scaling against one reader, and what crossed the proxy per read. Every byte is
   compared with the source.

Goals (issue #11): cold read >= 0.8x ``hf://``; warm re-read >= 0.8x the page cache (and >= 5 GB/s
where the machine allows); ``ls -lR`` costs one recursive listing (⌈entries/1000⌉ pages plus the
revision) and is faster than ``fsspec.fuse``; random reads scale close to linearly (here: >= 0.75 x
readers). Printed: a machine line, one Markdown table (scenario, hubfs mount, peer, ratio, goal,
met?) and notes; ``--json PATH`` writes all numbers. Needs root (FUSE, the bdi read-ahead), fuse3,
and for the ``fsspec.fuse`` peer fusepy (``pip install fusepy``) and libfuse2 (``apt-get install
libfuse2``); without them that peer is reported as not run.

Run it (about 4 minutes on 2 cores at the defaults; the quick check takes about a minute)::

    .venv/bin/python scripts/bench_mount.py
    .venv/bin/python scripts/bench_mount.py --size-mib 128 --files 1000 --random-mib 32 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import mmap
import os
import random
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    RequestLog,
    add_numbers,
    add_output_args,
    arg_parser,
    cpu_seconds,
    fuse_unmount,
    is_mounted,
    spawn,
    start_logged_hub,
    stop_pid,
    wait_mounted,
    workdir,
    write_json,
)
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.proxy import MAX_EXCHANGES, ProxyHandle
from benchlib.table import Row, print_table, size_label, verdict

MIB = 1 << 20
GIB = 1 << 30
GB = 1_000_000_000
BLOCK = 1 << 20  # the mount's and the page cache's read() size (dd bs=1M)
HF_BLOCK = 8 << 20  # hf://'s read() size (as in bench_fs.py)
PAGE = 4096
REPO_READ, BIG_NAME, RANDOM_NAME = "admin/mount-read", "big.bin", "random.bin"
REPO_TREE = "admin/mount-tree"
TOOLS, PACKAGES = ("fusermount3", "kernel", "mfusepy", "fusepy"), ("huggingface_hub", "fsspec")
FSSPEC_FUSE = """
import sys
from fsspec.fuse import run
from huggingface_hub import HfFileSystem
endpoint, root, mountpoint = sys.argv[1:4]  # the token comes in HF_TOKEN
run(HfFileSystem(endpoint=endpoint), root, mountpoint, foreground=True)
"""


# -- data ----------------------------------------------------------------------------------------


def write_random_file(path: Path, size: int) -> None:
    """``size`` random bytes, 16 MiB at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(os.urandom(min(16 * MIB, left)))
            left -= min(16 * MIB, left)


def tree_path(i: int) -> str:
    """10 folders of 10 folders, files spread over the 100 leaves."""
    return f"a{i % 10}/b{i // 10 % 10}/f{i:05d}.txt"


def make_tree(root: Path, files: int) -> int:
    """``files`` small text files (10-440 B); returns the entries a recursive listing holds (files, folders,
    .gitattributes)."""
    folders = set()
    for i in range(files):
        rel = tree_path(i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"file {i}\n" * (1 + i % 40))
        folders.update({rel.split("/")[0], rel.rsplit("/", 1)[0]})
    return files + len(folders) + 1


def hf_api(endpoint: str, token: str) -> Any:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    return HfApi(endpoint=endpoint, token=token)


def timed(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    print(f"{what} in {time.monotonic() - t0:.1f}s", flush=True)
    return out


# -- mounts --------------------------------------------------------------------------------------


@dataclass
class Mount:
    path: Path
    pid: int | None
    seconds: float  # `hubfs mount` from start to exit (the daemon said ready)
    log: str = ""


@contextlib.contextmanager
def hubfs_mount(repo: str, mountpoint: Path, endpoint: str, token: str, cache: Path,
                extra_env: dict[str, str] | None = None) -> Iterator[Mount]:
    """``hubfs mount REPO MOUNTPOINT`` (a daemon) with an empty ``cache`` and ``extra_env`` set; unmounted
    with ``hubfs umount`` (then ``fusermount3 -u``, then the daemon stopped by its PID) however the body
    ends."""
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {}), "HF_TOKEN": token}  # not --token: it would show in `ps`
    pid = None
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hubfs.cli", "mount", repo, str(mountpoint), "--endpoint",
                               endpoint, "--cache-dir", str(cache)], capture_output=True, text=True, env=env,
                              timeout=180, check=False)
        secs = time.perf_counter() - t0
        found = re.search(r"daemon pid (\d+)", proc.stdout + proc.stderr)
        pid = int(found.group(1)) if found else None
        if proc.returncode:
            raise RuntimeError(f"hubfs mount {repo} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
        if not is_mounted(mountpoint):
            raise RuntimeError(f"hubfs mount {repo} exited 0 but {mountpoint} is not mounted: {proc.stdout}")
        log = re.search(r"log (\S+?)\)?$", proc.stdout.strip())
        yield Mount(mountpoint, pid, secs, log.group(1) if log else "")
    finally:
        if is_mounted(mountpoint):
            subprocess.run([sys.executable, "-m", "hubfs.cli", "umount", str(mountpoint)], capture_output=True,
                           timeout=120, check=False)
        fuse_unmount(mountpoint)
        if pid is not None:
            stop_pid(pid, "hubfs mount daemon")


def fsspec_fuse_problem() -> str | None:
    """Why ``fsspec.fuse`` cannot run here (fusepy or libfuse2 missing), or None."""
    proc = subprocess.run([sys.executable, "-c", "import fsspec.fuse"], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
    return f"`import fsspec.fuse` fails: {last} (needs `pip install fusepy` and libfuse2: `apt-get install libfuse2`)"


def spawn_mount(stack: contextlib.ExitStack, name: str, argv: list[str], mountpoint: Path, log: Path,
                env: dict[str, str]) -> None:
    """Start the FUSE file system ``argv`` (foreground) on ``stack`` and wait until ``mountpoint`` is mounted;
    when ``stack`` closes it is unmounted, then the process is stopped by its PID."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = spawn(stack, name, argv, log, env)
    stack.callback(fuse_unmount, mountpoint)  # runs before the process is stopped
    wait_mounted(mountpoint, proc, log)


@contextlib.contextmanager
def fsspec_fuse_mount(stack: contextlib.ExitStack, root: str, mountpoint: Path, endpoint: str, token: str,
                      log: Path) -> Iterator[float]:
    """``fsspec.fuse.run(HfFileSystem(...), root, mountpoint)`` in a subprocess; yields the seconds until
    the mount appeared. Unmounted and stopped (by PID) however the body ends."""
    env = {**os.environ, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    inner = contextlib.ExitStack()
    stack.callback(inner.close)  # the process is stopped even if this generator is never closed
    with inner:
        t0 = time.perf_counter()
        spawn_mount(inner, "fsspec.fuse", [sys.executable, "-c", FSSPEC_FUSE, endpoint, root, str(mountpoint)],
                    mountpoint, log, env)
        yield time.perf_counter() - t0


@contextlib.contextmanager
def minimal_mount(endpoint: str, token: str, size: int, mountpoint: Path, log: Path) -> Iterator[None]:
    """benchlib/minimal_fuse.py serving ``REPO_READ``'s ``BIG_NAME`` (``size`` bytes) at ``mountpoint``; unmounted
    and stopped (by PID) however the body ends."""
    url = f"{endpoint}/{REPO_READ}/resolve/main/{BIG_NAME}"
    script = Path(__file__).parent / "benchlib" / "minimal_fuse.py"
    with contextlib.ExitStack() as stack:
        spawn_mount(stack, "minimal FUSE file system", [sys.executable, str(script), str(mountpoint), url, str(size)],
                    mountpoint, log, {**os.environ, "HF_TOKEN": token})
        yield


# -- 1 and 2. sequential reads -------------------------------------------------------------------


def read_file(path: Path, size: int, source: Path, block: int = BLOCK) -> float:
    """Seconds to read ``path`` to EOF in ``block``-byte ``read()`` calls into one buffer (like ``dd``);
    every 64th block and the last are kept and compared with ``source`` after the clock stops."""
    buf = mmap.mmap(-1, block)  # page-aligned, as dd's, cat's and cp's buffers are
    kept: list[tuple[int, bytes]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        total = i = 0
        while n := os.readv(fd, [buf]):
            if i % 64 == 0 or total + n == size:
                kept.append((total, bytes(buf[:n])))
            total += n
            i += 1
        secs = time.perf_counter() - t0
    finally:
        os.close(fd)
    check_blocks(path, kept, total, size, source)
    return secs


def check_blocks(what: Any, kept: list[tuple[int, bytes]], total: int, size: int, source: Path) -> None:
    if total != size:
        raise RuntimeError(f"{what}: read {total} bytes of {size}")
    with open(source, "rb") as src:
        for offset, chunk in kept:
            if chunk != os.pread(src.fileno(), len(chunk), offset):
                raise RuntimeError(f"{what}: wrong bytes at offset {offset}")


def read_hf(endpoint: str, token: str, size: int, source: Path, cache: Path) -> float:
    """Seconds for ``HubFileSystem().open(path).read(8 MiB)`` to EOF, a new instance and an empty cache."""
    from hubfs.fs import HubFileSystem

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    os.environ["HF_HUB_CACHE"] = str(cache)
    kept: list[tuple[int, bytes]] = []
    with HubFileSystem(endpoint=endpoint, token=token, skip_instance_cache=True) as fs:
        with contextlib.suppress(AttributeError):
            fs.client.forget_pins()  # pins are shared in a process: resolve the branch again, like a new process
        t0 = time.perf_counter()
        total = i = 0
        with fs.open(f"{REPO_READ}/{BIG_NAME}", "rb") as f:
            while chunk := f.read(HF_BLOCK):
                if i % 8 == 0 or total + len(chunk) == size:
                    kept.append((total, chunk))
                total += len(chunk)
                i += 1
        secs = time.perf_counter() - t0
    check_blocks("hf://", kept, total, size, source)
    return secs


NO_HP = "mount cold, HUBFS_MOUNT_HUGEPAGES=0"  # the --compare-hugepages variant
DIRECT = "mount cold, HUBFS_MOUNT_DIRECT_READS=1"  # the --compare-direct variant
NO_KEEP = "mount cold, HUBFS_MOUNT_KEEP_READS=0"  # the --compare-keep variant
MINIMAL = "minimal mfusepy file system"  # the --compare-minimal variant (benchlib/minimal_fuse.py)
VARIANTS = {"nohp": ("HUBFS_MOUNT_HUGEPAGES", "0", NO_HP), "direct": ("HUBFS_MOUNT_DIRECT_READS", "1", DIRECT),
            "nokeep": ("HUBFS_MOUNT_KEEP_READS", "0", NO_KEEP)}
WARM_READS = 3  # warm re-reads of the mount, each followed by one of the local copy: best of each


def page_sizes(path: Path, pages: int = 16384) -> dict[str, int] | None:
    """How the page cache holds the first ``pages`` pages of ``path`` (already cached): ``{"pages": n,
    "in_large_folios": k}``, from ``/proc/self/pagemap`` and ``/proc/kpageflags`` (root); None when they
    cannot be read. A FUSE file's cached pages are 4 KiB folios on kernels without large folios for FUSE,
    where a local file of ext4 or xfs gets large ones: the copy out of the page cache then costs more per
    byte (a read walks 256 folios per MiB instead of one), which caps a mount's warm re-read below the
    local page cache's, whatever the daemon does."""
    import ctypes
    import mmap

    kpf_compound_head, kpf_compound_tail = 1 << 15, 1 << 16
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        length = min(os.fstat(fd).st_size, pages * PAGE) // PAGE * PAGE
        if length == 0:
            return None
        # private and writable only to take its address: nothing is written, so the pages stay the cache's
        with mmap.mmap(fd, length, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE) as mm:
            for off in range(0, length, PAGE):
                mm[off]  # map each cached page
            first = ctypes.addressof(ctypes.c_char.from_buffer(mm)) // PAGE
            with open("/proc/self/pagemap", "rb", buffering=0) as pm, open("/proc/kpageflags", "rb",
                                                                              buffering=0) as kf:
                entries = os.pread(pm.fileno(), 8 * (length // PAGE), 8 * first)
                large = present = 0
                for (entry,) in struct.iter_unpack("Q", entries):
                    pfn = entry & ((1 << 55) - 1)
                    if not entry >> 63 or not pfn:  # not present, or PFNs hidden (not root)
                        continue
                    present += 1
                    (flags,) = struct.unpack("Q", os.pread(kf.fileno(), 8, 8 * pfn))
                    large += bool(flags & (kpf_compound_head | kpf_compound_tail))
    except (OSError, ValueError, TypeError):
        return None
    finally:
        os.close(fd)
    return {"pages": present, "in_large_folios": large} if present else None


def bench_read(endpoint: str, token: str, source: Path, tmp: Path, requests: RequestLog,
               args: argparse.Namespace) -> dict[str, Any]:
    size = source.stat().st_size
    mib_s: dict[str, list[float]] = {"mount cold": [], "hf://": [], NO_HP: [], DIRECT: [], NO_KEEP: [], MINIMAL: []}
    # the daemon's CPU seconds per GiB read
    daemon_cpu: dict[str, list[float]] = {"mount cold": [], NO_HP: [], DIRECT: [], NO_KEEP: []}
    gb_s: dict[str, list[float]] = {"mount warm": [], "page cache": []}
    every: dict[str, list[list[float]]] = {"mount warm": [], "page cache": []}
    mount_requests = []
    warm_requests: list[list[int]] = []  # per warm re-read: pages the kernel no longer had, asked again
    folios: dict[str, Any] = {}
    whos = ["mount", "hf", *(["nohp"] if args.compare_hugepages else []), *(["direct"] if args.compare_direct else []),
            *(["nokeep"] if args.compare_keep else []), *(["minimal"] if args.compare_minimal else [])]
    for i in range(args.runs):
        order = whos[i % len(whos):] + whos[:i % len(whos)]  # each goes first in turn
        for who in order:
            os.sync()  # no writeback of earlier runs (or of the upload) competing with this one for the cores
            if who == "hf":
                mib_s["hf://"].append(size / read_hf(endpoint, token, size, source, tmp / "hf-cache") / MIB)
                shutil.rmtree(tmp / "hf-cache", ignore_errors=True)
                continue
            if who == "minimal":
                with minimal_mount(endpoint, token, size, tmp / "mnt-minimal", tmp / "minimal.log"):
                    mib_s[MINIMAL].append(size / read_file(tmp / "mnt-minimal" / BIG_NAME, size, source) / MIB)
                continue
            if who in VARIANTS:
                env_name, value, key = VARIANTS[who]
                with hubfs_mount(REPO_READ, tmp / "mnt-read", endpoint, token, tmp / "mount-cache",
                                 {env_name: value}) as m:
                    cpu = cpu_seconds(m.pid) if m.pid else 0.0
                    mib_s[key].append(size / read_file(m.path / BIG_NAME, size, source) / MIB)
                    if m.pid:
                        daemon_cpu[key].append((cpu_seconds(m.pid) - cpu) * GIB / size)
                shutil.rmtree(tmp / "mount-cache", ignore_errors=True)
                continue
            requests.mark()
            with hubfs_mount(REPO_READ, tmp / "mnt-read", endpoint, token, tmp / "mount-cache") as m:
                cpu = cpu_seconds(m.pid) if m.pid else 0.0
                mib_s["mount cold"].append(size / read_file(m.path / BIG_NAME, size, source) / MIB)
                if m.pid:
                    daemon_cpu["mount cold"].append((cpu_seconds(m.pid) - cpu) * GIB / size)
                mount_requests.append(len(requests.since_mark()))
                # warm: the mount and the local copy read in turns, in the same minute (whatever else runs on
                # the machine weighs on both alike); the local copy is read once untimed first, as the mount was
                read_file(source, size, source)
                warm: dict[str, list[float]] = {"mount warm": [], "page cache": []}
                asked = []
                for _ in range(WARM_READS):
                    requests.mark()
                    warm["mount warm"].append(size / read_file(m.path / BIG_NAME, size, source) / GB)
                    asked.append(len(requests.since_mark()))
                    warm["page cache"].append(size / read_file(source, size, source) / GB)
                warm_requests.append(asked)
                for key, values in warm.items():
                    every[key].append(values)
                    gb_s[key].append(max(values))
                if not folios:
                    folios = {"mount": page_sizes(m.path / BIG_NAME), "local": page_sizes(source)}
            shutil.rmtree(tmp / "mount-cache", ignore_errors=True)
        cpu_note = (f", daemon {daemon_cpu['mount cold'][-1]:.2f} CPU-s/GiB" if daemon_cpu["mount cold"] else "") + (
            f"; 4 KiB-page heap {mib_s[NO_HP][-1]:,.0f} MiB/s" if mib_s[NO_HP] else "") + (
            f", daemon {daemon_cpu[NO_HP][-1]:.2f} CPU-s/GiB" if daemon_cpu[NO_HP] else "") + (
            f"; direct I/O {mib_s[DIRECT][-1]:,.0f} MiB/s" if mib_s[DIRECT] else "") + (
            f", daemon {daemon_cpu[DIRECT][-1]:.2f} CPU-s/GiB" if daemon_cpu[DIRECT] else "") + (
            f"; keeping nothing {mib_s[NO_KEEP][-1]:,.0f} MiB/s" if mib_s[NO_KEEP] else "") + (
            f", daemon {daemon_cpu[NO_KEEP][-1]:.2f} CPU-s/GiB" if daemon_cpu[NO_KEEP] else "") + (
            f"; {MINIMAL} {mib_s[MINIMAL][-1]:,.0f} MiB/s" if mib_s[MINIMAL] else "")
        print(f"  read run {i + 1}: cold mount {mib_s['mount cold'][-1]:,.0f} MiB/s ({mount_requests[-1]} requests"
              f"{cpu_note}), hf:// {mib_s['hf://'][-1]:,.0f} MiB/s; warm mount {span(every['mount warm'][-1], '.2f')} GB/s "
              f"(hub requests: {'/'.join(map(str, warm_requests[-1]))}), page cache "
              f"{span(every['page cache'][-1], '.2f')} GB/s", flush=True)
    return {"size": size, "mib_s": mib_s, "gb_s": gb_s, "warm_reads": every, "mount_requests": mount_requests,
            "warm_requests": warm_requests, "page_sizes": folios, "daemon_cpu_s_per_gib": daemon_cpu,
            "best": {**{k: max(v) for k, v in mib_s.items() if v}, **{k: max(v) for k, v in gb_s.items()}}}


# -- 3. ls -lR -----------------------------------------------------------------------------------


def ls_lr(root: Path, files: int) -> float:
    """Seconds of ``ls -lR root``; checks that it shows ``files`` regular files."""
    t0 = time.perf_counter()
    proc = subprocess.run(["ls", "-lR", str(root)], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
                          timeout=1800, check=False)
    secs = time.perf_counter() - t0
    shown = sum(1 for line in proc.stdout.splitlines() if line.startswith("-"))
    if proc.returncode or shown != files:
        raise RuntimeError(f"ls -lR {root}: exit {proc.returncode}, {shown} files of {files}: {proc.stderr[-500:]}")
    return secs


def classify(lines: list[str]) -> dict[str, int]:
    """Requests by kind: recursive listing pages, other API calls, file reads."""
    kinds = {"listing": 0, "api": 0, "file": 0}
    for line in lines:
        path = line.split()[1]
        if "/tree/" in path:
            kinds["listing"] += 1
        elif path.startswith("/api/"):
            kinds["api"] += 1
        else:
            kinds["file"] += 1
    return kinds


def bench_ls(stack: contextlib.ExitStack, endpoint: str, token: str, tmp: Path, requests: RequestLog,
             entries: int, args: argparse.Namespace) -> dict[str, Any]:
    peer_problem = fsspec_fuse_problem()
    if peer_problem:
        print(f"note: fsspec.fuse cannot run: {peer_problem}", flush=True)
    out: dict[str, Any] = {"entries": entries, "peer_problem": peer_problem,
                           "hubfs": {"ls_s": [], "warm_ls_s": [], "mount_s": [], "requests": [], "kinds": []},
                           "fsspec.fuse": {"ls_s": [], "mount_s": [], "requests": [], "kinds": []}}
    for i in range(args.runs):
        order = ["hubfs", "fsspec.fuse"] if i % 2 == 0 else ["fsspec.fuse", "hubfs"]
        for who in order:
            r = out[who]
            if who == "fsspec.fuse":
                if peer_problem:
                    continue
                requests.mark()
                with fsspec_fuse_mount(stack, REPO_TREE, tmp / "mnt-fsspec", endpoint, token,
                                       tmp / f"fsspec-fuse-{i}.log") as mount_s:
                    r["mount_s"].append(mount_s)
                    r["ls_s"].append(ls_lr(tmp / "mnt-fsspec", args.files))
                    lines = requests.since_mark()
            else:
                requests.mark()
                with hubfs_mount(REPO_TREE, tmp / "mnt-tree", endpoint, token, tmp / "tree-cache") as m:
                    r["mount_s"].append(m.seconds)
                    r["ls_s"].append(ls_lr(m.path, args.files))
                    lines = requests.since_mark()
                    r["warm_ls_s"].append(ls_lr(m.path, args.files))
            r["requests"].append(len(lines))
            r["kinds"].append(classify(lines))
        peer = out["fsspec.fuse"]
        print(f"  ls -lR run {i + 1}: hubfs {out['hubfs']['ls_s'][-1]:.2f}s ({out['hubfs']['requests'][-1]} requests, "
              f"mount {out['hubfs']['mount_s'][-1]:.2f}s, warm ls {out['hubfs']['warm_ls_s'][-1]:.2f}s)"
              + (f", fsspec.fuse {peer['ls_s'][-1]:.2f}s ({peer['requests'][-1]} requests)" if peer["ls_s"] else ""),
              flush=True)
    return out


# -- 4. random reads -----------------------------------------------------------------------------


def random_reads(path: Path, size: int, source: Path, readers: int, reads: int, seed: int,
                 on_start: Callable[[], None]) -> dict[str, Any]:
    """``readers`` threads, each ``reads`` 4 KiB ``os.pread`` calls at random aligned offsets of ``path``
    (past its first 2 MiB: the warm-up reads are at 0). Reads/s over the wall time of all of them;
    ``on_start()`` runs after the warm-up reads, just before the clock starts."""
    rng = random.Random(seed)
    blocks = size // PAGE
    offsets = [[rng.randrange(512, blocks) * PAGE for _ in range(reads)] for _ in range(readers)]
    fds = [os.open(path, os.O_RDONLY) for _ in range(readers)]
    for fd in fds:
        os.pread(fd, PAGE, 0)  # warm-up (resolve, connection), not timed
    results: list[list[tuple[int, bytes, float]]] = [[] for _ in range(readers)]
    errors: list[BaseException] = []
    start = threading.Barrier(readers + 1)

    def work(k: int) -> None:
        start.wait()
        try:
            for off in offsets[k]:
                t0 = time.perf_counter()
                data = os.pread(fds[k], PAGE, off)
                results[k].append((off, data, time.perf_counter() - t0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(readers)]
    try:
        for t in threads:
            t.start()
        on_start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        for fd in fds:
            os.close(fd)
    if errors:
        raise RuntimeError(f"random reads: {errors[0]!r}")
    done = [r for rs in results for r in rs]
    if len(done) != readers * reads:
        raise RuntimeError(f"random reads: {len(done)} of {readers * reads} done")
    with open(source, "rb") as src:
        for off, data, _ in done:
            if data != os.pread(src.fileno(), PAGE, off):
                raise RuntimeError(f"{path}: wrong bytes at offset {off}")
    lat = sorted(s for _, _, s in done)
    return {"reads": len(done), "seconds": wall, "iops": len(done) / wall,
            "p50_ms": 1000 * statistics.median(lat), "p90_ms": 1000 * lat[int(0.9 * (len(lat) - 1))]}


def bench_random(stack: contextlib.ExitStack, endpoint: str, token: str, source: Path, tmp: Path,
                 args: argparse.Namespace) -> dict[str, Any]:
    proxy = ProxyHandle(endpoint, args.latency_ms / 1000)
    stack.callback(proxy.stop)
    print(f"latency proxy at {proxy.endpoint} (+{args.latency_ms:g} ms per round trip)", flush=True)
    size = source.stat().st_size
    levels = [int(x) for x in args.readers.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in levels}
    for i in range(args.runs):
        for n in levels:
            with hubfs_mount(REPO_READ, tmp / "mnt-random", proxy.endpoint, token, tmp / "random-cache") as m:
                r = random_reads(m.path / RANDOM_NAME, size, source, n, args.random_reads, 1000 * i + n,
                                 proxy.reset)
                stats = proxy.stats()
            bodies = Counter(e[4] for e in stats["exchanges"])  # response body sizes: 4096 = a bounded read
            # the bodies of the requests sent during the timed reads (down_body_bytes would also count the
            # tail of a warm-up prefetch still in flight at the reset)
            body_bytes = (stats["down_body_bytes"] if len(stats["exchanges"]) >= MAX_EXCHANGES
                          else sum(e[4] for e in stats["exchanges"]))
            r.update({"requests": stats["requests"], "body_bytes": body_bytes,
                      "connections": stats["connections"], "body_sizes": bodies.most_common(5)})
            runs[n].append(r)
            shutil.rmtree(tmp / "random-cache", ignore_errors=True)
        print(f"  random run {i + 1}: " + ", ".join(
            f"{n} reader{'s' if n > 1 else ''} {runs[n][-1]['iops']:.1f}/s (p50 {runs[n][-1]['p50_ms']:.0f} ms, "
            f"{runs[n][-1]['requests']} req)" for n in levels), flush=True)
    best = {n: max(rs, key=lambda r: r["iops"]) for n, rs in runs.items()}
    return {"size": size, "levels": levels, "runs": {str(n): rs for n, rs in runs.items()},
            "best": {str(n): r for n, r in best.items()}}


# -- report --------------------------------------------------------------------------------------


def paired_median(ours: list[float], peers: list[float]) -> float:
    """The median of the per-run ratios ours / peer (runs paired in order)."""
    return statistics.median(o / p for o, p in zip(ours, peers))


def read_rows(read: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    b, label = read["best"], size_label(read["size"])
    r = b["mount cold"] / b["hf://"]
    paired = paired_median(read["mib_s"]["mount cold"], read["mib_s"]["hf://"])
    cpu = read.get("daemon_cpu_s_per_gib", {})
    cpu_cell = f" (daemon {statistics.median(cpu['mount cold']):.2f} CPU-s/GiB, median)" if cpu.get("mount cold") else ""
    rows = [Row(f"{label} cold sequential read, 1 MiB read() calls, fresh mount + empty cache (MiB/s, best of "
                f"{args.runs}; {max(read['mount_requests'])} requests)",
                f"{b['mount cold']:,.0f}{cpu_cell}", f"hf:// (HubFileSystem, 8 MiB read(), empty cache): {b['hf://']:,.0f}",
                f"{r:.2f}x (median of per-run ratios {paired:.2f}x)", ">= 0.8x hf://", r >= 0.8, r,
                {"median_paired_ratio": paired})]
    r = b["mount warm"] / b["page cache"]
    paired = paired_median(read["gb_s"]["mount warm"], read["gb_s"]["page cache"])
    rows.append(Row(f"{label} warm re-read through the same mount, 1 MiB read() calls, in turns with the local copy "
                    f"(GB/s, best of {args.runs} x {WARM_READS})",
                    f"{b['mount warm']:.2f}", f"local copy from the page cache: {b['page cache']:.2f}",
                    f"{r:.2f}x (median of per-run ratios {paired:.2f}x)",
                    ">= 0.8x page cache (>= 5 GB/s where the machine allows)", r >= 0.8, r,
                    {"reaches_5_gb_s": b["mount warm"] >= 5, "median_paired_ratio": paired}))
    if read["mib_s"].get(NO_HP) and cpu.get(NO_HP) and cpu.get("mount cold"):
        on, off = statistics.median(cpu["mount cold"]), statistics.median(cpu[NO_HP])
        rows.append(Row(f"{label} cold read, daemon CPU with its heap in huge pages (default) vs "
                        f"HUBFS_MOUNT_HUGEPAGES=0 (CPU-s/GiB, median of {args.runs}; MiB/s best)",
                        f"{on:.2f} ({b['mount cold']:,.0f} MiB/s)",
                        f"HUBFS_MOUNT_HUGEPAGES=0: {off:.2f} ({b[NO_HP]:,.0f} MiB/s)",
                        f"{on / off:.2f}x the CPU", "", None, on / off))
    for key, what, default in (
            (DIRECT, "with direct I/O (HUBFS_MOUNT_DIRECT_READS=1) vs through the page cache", "page cache"),
            (NO_KEEP, "keeping nothing in the cache (HUBFS_MOUNT_KEEP_READS=0, as hf:// does) vs keeping the file",
             "kept")):
        if read["mib_s"].get(key) and cpu.get(key) and cpu.get("mount cold"):
            rows.append(variant_row(label, what, default, b[key], b["mount cold"], cpu[key], cpu["mount cold"], args))
    if read["mib_s"].get(MINIMAL):
        r = b[MINIMAL] / b["hf://"]
        paired = paired_median(read["mib_s"][MINIMAL], read["mib_s"]["hf://"])
        rows.append(Row(f"{label} cold read by a {MINIMAL} (benchlib/minimal_fuse.py: one GET, 1 MiB pieces handed to "
                        f"the kernel with direct I/O, nothing kept; no hubfs code) vs hf:// (MiB/s, best of {args.runs})",
                        f"{b[MINIMAL]:,.0f}", f"hf://: {b['hf://']:,.0f}", f"{r:.2f}x (median of per-run ratios "
                        f"{paired:.2f}x)", "", None, r, {"median_paired_ratio": paired}))
    return rows


def variant_row(label: str, what: str, default: str, mib_s: float, default_mib_s: float, cpu: list[float],
                default_cpu: list[float], args: argparse.Namespace) -> Row:
    """A cold-read row of a mount started with one setting changed against the default mount, same run."""
    return Row(f"{label} cold read {what} (default) (MiB/s best of {args.runs}; daemon CPU-s/GiB median)",
               f"{mib_s:,.0f} ({statistics.median(cpu):.2f} CPU-s/GiB)",
               f"{default}: {default_mib_s:,.0f} ({statistics.median(default_cpu):.2f} CPU-s/GiB)",
               f"{mib_s / default_mib_s:.2f}x", "", None, mib_s / default_mib_s)


def page_sizes_note(sizes: dict[str, Any]) -> str | None:
    """One line on how the page cache holds the mounted file and the local copy (see :func:`page_sizes`)."""
    mount, local = sizes.get("mount"), sizes.get("local")
    if not mount or not local:
        return None

    def held(s: dict[str, int]) -> str:
        return f"{100 * s['in_large_folios'] / s['pages']:.0f}% of {s['pages']:,} pages in large folios"

    return (f"- page cache after the warm reads (first {mount['pages'] * PAGE // MIB} MiB): mounted file "
            f"{held(mount)}, local copy {held(local)}. A kernel without large folios for FUSE keeps a mount's "
            "pages as 4 KiB folios: the copy out of the page cache walks 256 of them per MiB (a fixed cost of the "
            "kernel, not of the daemon, which is not asked anything on a warm read). Linux 6.18 gave FUSE files "
            "no large folios in any setting tried (writeback cache off or on, max_write 1 MiB = max_pages 256, "
            "read_ahead_kb 4-16 MiB, keep_cache): only kernels with FUSE large-folio support lift this.")


def ls_rows(ls: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    h, p = ls["hubfs"], ls["fsspec.fuse"]
    what = f"`ls -lR` of {args.files:,} files ({ls['entries']:,} entries), fresh mount"
    best = min(h["ls_s"])
    at = h["ls_s"].index(best)
    pages_budget = math.ceil(ls["entries"] / 1000)
    worst = max(range(len(h["requests"])), key=lambda k: h["requests"][k])
    kinds = h["kinds"][worst]
    one_listing = kinds["listing"] <= pages_budget and kinds["api"] <= 3 and kinds["file"] == 0
    hub_req = f"{h['requests'][worst]} ({kinds['listing']} listing pages, {kinds['api']} other API, {kinds['file']} file)"
    rows = []
    if p["ls_s"]:
        peer_best = min(p["ls_s"])
        r = peer_best / best
        rows.append(Row(f"{what}: wall time (s, best of {args.runs})",
                        f"{best:.2f} (mount {h['mount_s'][at]:.2f}; warm ls {min(h['warm_ls_s']):.2f})",
                        f"fsspec.fuse over HfFileSystem: {peer_best:.2f} (mount {min(p['mount_s']):.2f})",
                        f"{r:.2f}x speed-up", "faster than fsspec.fuse", r > 1, r))
        pw = max(p["requests"])
        pk = p["kinds"][p["requests"].index(pw)]
        rows.append(Row(f"{what}: requests on the hub, mount + `ls -lR` (most of {args.runs} runs)", hub_req,
                        f"fsspec.fuse: {pw} ({pk['listing']} listing, {pk['api']} other API, {pk['file']} file)",
                        f"{pw / max(1, h['requests'][worst]):.1f}x fewer",
                        f"one recursive listing: <= {pages_budget} pages + <= 3 other, 0 per file",
                        one_listing, h["requests"][worst]))
    else:
        rows.append(Row(f"{what}: wall time (s, best of {args.runs})",
                        f"{best:.2f} (mount {h['mount_s'][at]:.2f}; warm ls {min(h['warm_ls_s']):.2f})",
                        "fsspec.fuse: not run (see notes)", "n/a", "faster than fsspec.fuse", None))
        rows.append(Row(f"{what}: requests on the hub, mount + `ls -lR`", hub_req, "fsspec.fuse: not run", "n/a",
                        f"one recursive listing: <= {pages_budget} pages + <= 3 other, 0 per file", one_listing,
                        h["requests"][worst]))
    return rows


def span(values: list[float], fmt: str) -> str:
    """``1.00-1.80``, or one number when they all print the same."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def random_rows(rnd: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    rows = []
    one = rnd["best"][str(rnd["levels"][0])]
    base_n = rnd["levels"][0]
    for n in rnd["levels"]:
        b = rnd["best"][str(n)]
        # requests and bytes per read over all runs (stride guesses vary with the offsets drawn)
        req = [r["requests"] / max(1, r["reads"]) for r in rnd["runs"][str(n)]]
        kib = [r["body_bytes"] / max(1, r["reads"]) / 1024 for r in rnd["runs"][str(n)]]
        cell = (f"{b['iops']:.1f} (p50 {b['p50_ms']:.0f} ms; {span(req, '.2f')} req, {span(kib, ',.0f')} KiB "
                "per read)")
        what = (f"random 4 KiB pread, {size_label(rnd['size'])} file, +{args.latency_ms:g} ms RTT, {n} "
                f"reader{'s' if n > 1 else ''} x {args.random_reads} (reads/s, best of {args.runs})")
        if n == base_n:
            rows.append(Row(what, cell, "", "", "", None, b["iops"]))
            continue
        scale = b["iops"] / one["iops"]
        want = 0.75 * n / base_n
        rows.append(Row(what, cell, f"{base_n} reader: {one['iops']:.1f}", f"{scale:.2f}x",
                        f">= {want:.2f}x (0.75 x linear)", scale >= want, scale))
    return rows


def print_notes(read: dict[str, Any] | None, ls: dict[str, Any] | None, args: argparse.Namespace) -> None:
    print()
    print("- one `hubfs serve` (uvicorn) on 127.0.0.1; the mount daemon, the hub and the readers share the "
          "machine's cores (timings are noisy where other work runs on them).")
    if read:
        print("- cold read: every mount run is a new `hubfs mount` daemon with an empty `--cache-dir` (a new mount "
              "has no page cache); hf:// gets a new instance and an empty `HF_HUB_CACHE`. Mount and hf:// runs "
              f"alternate which goes first. Warm: after the cold read, the local copy is read once untimed, then "
              f"{WARM_READS} re-reads of the mount and {WARM_READS} of the local copy in turns; the fastest of each "
              "counts.")
        asked = [n for run in read.get("warm_requests", []) for n in run]
        if any(asked):
            print(f"- warm re-reads asked the hub {'/'.join(map(str, asked))} times: pages of the mounted file the kernel "
                  "dropped between reads (memory reclaim) come back as small reads, one round trip each, where a "
                  "local file's come back from its disk; the fastest re-read counts.")
        note = page_sizes_note(read.get("page_sizes") or {})
        if note:
            print(note)
    if ls:
        print("- ls -lR: requests are the hub's own log (`HUBFS_REQUEST_LOG`) from the mount command to the end of "
              "the first `ls -lR`; the wall time is `ls -lR` alone (the mount time is shown beside it). `warm ls` is "
              "a second `ls -lR` on the same mount.")
        if ls["peer_problem"]:
            print(f"- fsspec.fuse was not run: {ls['peer_problem']}.")
        else:
            print("- fsspec.fuse: `fsspec.fuse.run(HfFileSystem(endpoint), repo, mountpoint, "
                  "foreground=True)` in a subprocess (fusepy over libfuse2, single-threaded: fsspec's default).")
    if args.only and "random" in args.only:
        print(f"- random: benchlib's proxy between the mount and the hub (+{args.latency_ms:g} ms a round trip and "
              "a connect); requests and bytes are what crossed it during the timed reads (after one warm-up "
              "read per thread).")


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--size-mib", 1024, "size of the sequentially read file"),
                ("--files", 10000, "files in the repo listed with ls -lR"),
                ("--random-mib", 256, "size of the randomly read file"),
                ("--random-reads", 40, "4 KiB reads per reader"),
                ("--latency-ms", 50.0, "added round-trip time for the random reads"),
                ("--runs", 3, "repetitions of every scenario; the best counts"))
    p.add_argument("--readers", default="1,4,8", help="counts of concurrent random readers (default 1,4,8)")
    p.add_argument("--compare-hugepages", action="store_true",
                   help="cold reads also on a mount with HUBFS_MOUNT_HUGEPAGES=0, in turns (daemon CPU both ways)")
    p.add_argument("--compare-direct", action="store_true",
                   help="cold reads also on a mount with HUBFS_MOUNT_DIRECT_READS=1, in turns (direct I/O)")
    p.add_argument("--compare-keep", action="store_true",
                   help="cold reads also on a mount with HUBFS_MOUNT_KEEP_READS=0, in turns (nothing kept, as hf://)")
    p.add_argument("--compare-minimal", action="store_true",
                   help="cold reads also through benchlib/minimal_fuse.py, in turns (a Python FUSE daemon's ceiling)")
    p.add_argument("--only", default="read,ls,random", help="comma-separated scenarios (default read,ls,random)")
    add_output_args(p)
    args = p.parse_args(argv)
    if min(args.size_mib, args.files, args.random_mib, args.random_reads, args.runs) < 1 or args.latency_ms < 0:
        p.error("sizes, counts and runs must be >= 1, --latency-ms >= 0")
    if args.random_mib < 4:
        p.error("--random-mib must be >= 4")
    try:
        if min(int(x) for x in args.readers.split(",")) < 1:
            raise ValueError
    except ValueError:
        p.error("--readers: comma-separated counts >= 1")
    if unknown := set(args.only.split(",")) - {"read", "ls", "random"}:
        p.error(f"--only: unknown scenarios {sorted(unknown)}")
    return args


def versions() -> dict[str, str]:
    out = {"fusermount3": tool_version(["fusermount3", "-V"]), "kernel": f"Linux {os.uname().release}"}
    for dist in ("mfusepy", "fusepy"):
        try:
            out[dist] = f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            out[dist] = f"{dist} missing"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C does: mounts unmounted, daemons, proxy and hub stopped, tmp removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0:
        print("note: not root: FUSE may be refused and the mount cannot raise its read-ahead", file=sys.stderr)
    if not shutil.which("fusermount3"):
        raise SystemExit("fusermount3 is needed (apt-get install fuse3)")
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # before huggingface_hub is imported (machine_info imports it)
    info = machine_info(versions(), PACKAGES)
    print(machine_line(info, TOOLS, PACKAGES), flush=True)
    only = set(args.only.split(","))
    read = ls = rnd = None
    with workdir(args.keep, "hubfs-bench-mount-") as tmp, contextlib.ExitStack() as stack:
        os.environ["HF_HOME"] = str(tmp / "hf-home")  # mount logs and pid files, huggingface_hub's token
        requests = RequestLog(tmp / "requests.log")
        server = start_logged_hub(stack, tmp, requests.path)
        endpoint, token = server.endpoint, server.admin_token
        print(f"hubfs serve at {endpoint} (pid {server.proc.pid})", flush=True)
        api = hf_api(endpoint, token)
        src = tmp / "src"
        entries = 0
        if only & {"read", "random"}:
            api.create_repo(REPO_READ)
            files = []
            if "read" in only:
                write_random_file(src / BIG_NAME, args.size_mib * MIB)
                files.append(BIG_NAME)
            if "random" in only:
                write_random_file(src / RANDOM_NAME, args.random_mib * MIB)
                files.append(RANDOM_NAME)
            from huggingface_hub import CommitOperationAdd

            timed(f"uploaded {REPO_READ} ({', '.join(files)})", api.create_commit, REPO_READ,
                  [CommitOperationAdd(f, str(src / f)) for f in files], commit_message="benchmark files")
        if "ls" in only:
            entries = make_tree(src / "tree", args.files)
            api.create_repo(REPO_TREE)
            timed(f"uploaded {REPO_TREE} ({args.files:,} files)", api.upload_folder, folder_path=str(src / "tree"),
                  repo_id=REPO_TREE, commit_message="benchmark tree")

        if "read" in only:
            read = bench_read(endpoint, token, src / BIG_NAME, tmp, requests, args)
        if "ls" in only:
            ls = bench_ls(stack, endpoint, token, tmp, requests, entries, args)
        if "random" in only:
            rnd = bench_random(stack, endpoint, token, src / RANDOM_NAME, tmp, args)

    rows: list[Row] = []
    if read:
        rows += read_rows(read, args)
    if ls:
        rows += ls_rows(ls, args)
    if rnd:
        rows += random_rows(rnd, args)
    print()
    print(machine_line(info, TOOLS, PACKAGES))
    print()
    print_table(["scenario", "hubfs mount", "peer", "ratio", "goal", "met?"],
                ([r.scenario, r.hubfs, r.peer, r.ratio, r.goal, verdict(r.met) if r.goal else ""] for r in rows),
                right=(1, 2, 3))
    print_notes(read, ls, args)
    if args.json:
        print()
        write_json(args.json, info, args, read=read, ls=ls, random=rnd,
                   table=[{"scenario": r.scenario, "hubfs": r.hubfs, "peer": r.peer, "ratio": r.ratio,
                           "goal": r.goal, "met": r.met, "value": r.value, **r.extra} for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
