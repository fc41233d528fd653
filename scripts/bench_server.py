"""Download benchmark of the embedded hub (``hubfs serve``) against static file servers.

What it measures, in one run and on the same bytes:

* a big LFS file (default 1 GiB of random bytes) downloaded with ``curl`` by one client
  (best of ``--runs``), and by 16 concurrent ``curl`` processes that each download the whole file
  (aggregate MiB/s = 16 x size / wall time, best of ``--concurrent-runs``);
* ``--files`` small files (default 1,000 files of 1-8 KiB) fetched with httpx by one keep-alive
  client (sequentially) and by 16 threads, each with its own keep-alive client and its own
  share of the file list (files/s, best of ``--runs``).

Servers: the hubfs hub (files uploaded into one model repo with huggingface_hub: the big file
through Git LFS, the small files in one commit), ``python -m http.server`` on a directory holding
the same files, and nginx (``sendfile on``, one worker) when ``/usr/sbin/nginx`` exists. Everything
runs in a temporary directory on 127.0.0.1 with free ports, and every process started here is
stopped by PID at the end. The project's goal: hubfs single-stream download >= 0.8x the static
baseline.

Run it (about 4-5 minutes on 2 cores at the defaults; the quick check below takes under a minute)::

    .venv/bin/python scripts/bench_server.py
    .venv/bin/python scripts/bench_server.py --size-mib 64 --files 100 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import hashlib
import os
import pwd
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from benchlib import add_numbers, add_output_args, arg_parser, free_port, spawn, wait_http, workdir, write_json
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.table import print_table, ratio
from tqdm import tqdm

NGINX = "/usr/sbin/nginx"
REPO_ID = "admin/bench"
BIG_NAME = "big.bin"
SMALL_DIR = "small"
GEN_CHUNK = 16 << 20
MIB = 1 << 20


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """The files on disk (in ``root``, laid out as served) and what a correct download returns."""

    root: Path
    big_size: int
    big_sha256: str
    small: dict[str, bytes] = field(default_factory=dict)  # relative path -> content


def small_size(i: int) -> int:
    """Deterministic sizes between 1 KiB and 8 KiB."""
    return 1024 + (i * 7919) % (7 * 1024 + 1)


def write_big_file(path: Path, size: int) -> str:
    """``size`` random bytes, written 16 MiB at a time; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=f"writing {path.name}") as bar:
        left = size
        while left > 0:
            chunk = os.urandom(min(GEN_CHUNK, left))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def write_small_files(folder: Path, count: int) -> dict[str, bytes]:
    """``count`` files of deterministic size and content under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, bytes] = {}
    for i in tqdm(range(count), desc="writing small files", unit="file"):
        data = random.Random(i).randbytes(small_size(i))
        name = f"f{i:05d}.bin"
        (folder / name).write_bytes(data)
        out[f"{folder.name}/{name}"] = data
    return out


def make_dataset(root: Path, size_mib: int, files: int) -> Dataset:
    root.mkdir(parents=True)
    sha = write_big_file(root / BIG_NAME, size_mib * MIB)
    small = write_small_files(root / SMALL_DIR, files)
    return Dataset(root, size_mib * MIB, sha, small)


# -- processes -----------------------------------------------------------------------------------


def start_hubfs(stack: contextlib.ExitStack, tmp: Path) -> tuple[str, str]:
    """``hubfs serve --port 0``; returns (endpoint, admin token)."""
    data, log = tmp / "hub-data", tmp / "hubfs.log"
    proc = spawn(stack, "hubfs", [sys.executable, "-m", "hubfs.cli", "serve", "--data", str(data), "--port", "0"],
                 log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    endpoint = ""
    while not endpoint and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hubfs serve exited early:\n{log.read_text()[-2000:]}")
        endpoint = next((ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("endpoint: ")), "")
        time.sleep(0.05)
    if not endpoint:
        raise RuntimeError("hubfs serve printed no endpoint")
    wait_http(f"{endpoint}/api/models", proc, log)
    return endpoint, (data / "admin.token").read_text().strip()


def start_http_server(stack: contextlib.ExitStack, tmp: Path, root: Path) -> str:
    port, log = free_port(), tmp / "http_server.log"
    proc = spawn(stack, "http.server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                                        "--directory", str(root)], log)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc, log)
    return url


def nginx_conf(prefix: Path, root: Path, port: int) -> str:
    as_root = os.geteuid() == 0  # workers would otherwise run as nobody and could not read the 0700 temp dir
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n" if as_root else ""
    temp = "".join(f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    access_log {prefix}/access.log;\n{temp}"
            "    default_type application/octet-stream;\n"
            "    sendfile on;\n    tcp_nopush on;\n    keepalive_requests 100000;\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n        root {root};\n    }}\n"
            "}\n")


def start_nginx(stack: contextlib.ExitStack, tmp: Path, root: Path) -> str | None:
    """nginx on ``root``, or None (with a note) when it is missing or fails to start."""
    if not os.path.exists(NGINX):
        print(f"note: {NGINX} not found; skipping nginx")
        return None
    prefix, port = tmp / "nginx", free_port()
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, root, port))
    log = prefix / "stdout.log"
    proc = spawn(stack, "nginx", [NGINX, "-c", str(conf), "-p", str(prefix)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, log, timeout=15)
    except RuntimeError as exc:
        print(f"note: nginx failed to start, skipping it: {exc}")
        return None
    return f"http://127.0.0.1:{port}"


# -- upload --------------------------------------------------------------------------------------


def upload_to_hub(endpoint: str, token: str, data: Dataset) -> None:
    """One repo: the big file (Git LFS, being > 10 MiB), then all small files in one commit."""
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # must be set before huggingface_hub is imported
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(REPO_ID)
    t0 = time.monotonic()
    api.upload_file(path_or_fileobj=str(data.root / BIG_NAME), path_in_repo=BIG_NAME, repo_id=REPO_ID)
    print(f"uploaded {BIG_NAME} ({data.big_size / MIB:.0f} MiB) in {time.monotonic() - t0:.1f}s")
    t0 = time.monotonic()
    api.upload_folder(folder_path=str(data.root / SMALL_DIR), path_in_repo=SMALL_DIR, repo_id=REPO_ID)
    print(f"uploaded {len(data.small)} small files in {time.monotonic() - t0:.1f}s")


# -- measurements --------------------------------------------------------------------------------


@dataclass
class Target:
    """One server under test: how to name a file's URL."""

    name: str
    file_url: Callable[[str], str]


def curl_argv(url: str) -> list[str]:
    return ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url]


def parse_curl(out: str, url: str, size: int) -> tuple[int, float]:
    """(bytes, seconds) from curl's ``-w`` line, checking the status and the size."""
    code, got, secs = out.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"bad download of {url}: HTTP {code}, {got} bytes (expected {size})")
    return int(got), float(secs)


def big_single(url: str, size: int, runs: int) -> float:
    """Best MiB/s of ``runs`` sequential whole-file curl downloads."""
    best = 0.0
    for _ in range(runs):
        out = subprocess.run(curl_argv(url), capture_output=True, text=True, check=True).stdout
        got, secs = parse_curl(out, url, size)
        best = max(best, got / secs / MIB)
    return best


def big_concurrent(url: str, size: int, clients: int, runs: int) -> float:
    """Best aggregate MiB/s of ``clients`` curl processes each downloading the whole file at once."""
    best = 0.0
    for _ in range(runs):
        t0 = time.monotonic()
        procs = [subprocess.Popen(curl_argv(url), stdout=subprocess.PIPE, text=True) for _ in range(clients)]
        outs = [p.communicate()[0] for p in procs]
        wall = time.monotonic() - t0
        if any(p.returncode for p in procs):
            raise RuntimeError(f"curl failed on {url}: {[p.returncode for p in procs]}")
        total = sum(parse_curl(out, url, size)[0] for out in outs)
        best = max(best, total / wall / MIB)
    return best


def fetch_all(client: httpx.Client, target: Target, paths: list[str], expected: dict[str, bytes]) -> None:
    """Fetch ``paths`` in order on one (keep-alive) client, checking every body."""
    for p in paths:
        r = client.get(target.file_url(p))
        if r.status_code != 200 or r.content != expected[p]:
            raise RuntimeError(f"{target.name}: bad body for {p}: HTTP {r.status_code}, {len(r.content)} bytes")


def small_files(target: Target, expected: dict[str, bytes], clients: int, runs: int) -> float:
    """Best files/s of ``runs`` passes over all small files, split among ``clients`` clients.

    The clients (one httpx.Client each, created before the clock starts and kept for all passes)
    connect on their first request, so the first pass includes ``clients`` TCP connects.
    """
    paths = sorted(expected)
    shares = [paths[i::clients] for i in range(clients)]
    best = 0.0
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(clients) as pool:
        pool_clients = [stack.enter_context(httpx.Client(timeout=60)) for _ in range(clients)]
        for _ in range(runs):
            t0 = time.monotonic()
            if clients == 1:
                fetch_all(pool_clients[0], target, paths, expected)
            else:
                list(pool.map(lambda c, share: fetch_all(c, target, share, expected), pool_clients, shares))
            best = max(best, len(paths) / (time.monotonic() - t0))
    return best


def sha256_of_url(url: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=60) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes(MIB):
            digest.update(chunk)
    return digest.hexdigest()


# -- report --------------------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    label: str
    unit: str
    run: Callable[[Target], float]


def scenarios(data: Dataset, args: argparse.Namespace) -> list[Scenario]:
    big = f"{data.big_size / MIB:.0f} MiB" if data.big_size < 1 << 30 else f"{data.big_size / (1 << 30):g} GiB"
    n, c = len(data.small), args.clients

    def big_url(t: Target) -> str:
        return t.file_url(BIG_NAME)

    return [
        Scenario("big_1", f"{big} LFS file, 1 client (curl, best of {args.runs})", "MiB/s",
                 lambda t: big_single(big_url(t), data.big_size, args.runs)),
        Scenario(f"big_{c}", f"{big} LFS file, {c} concurrent clients, each the whole file (curl, aggregate, "
                 f"best of {args.concurrent_runs})", "MiB/s",
                 lambda t: big_concurrent(big_url(t), data.big_size, c, args.concurrent_runs)),
        Scenario("small_1", f"{n} small files (1-8 KiB), 1 keep-alive client (httpx, best of {args.runs})", "files/s",
                 lambda t: small_files(t, data.small, 1, args.runs)),
        Scenario(f"small_{c}", f"{n} small files (1-8 KiB), {c} clients (httpx threads, best of {args.runs})",
                 "files/s", lambda t: small_files(t, data.small, c, args.runs)),
    ]


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.1f}"


def print_results(results: dict[str, dict[str, float | None]], rows: list[Scenario], servers: list[str]) -> None:
    head = ["scenario", "unit", *servers, "hubfs / http.server", "hubfs / nginx"]
    print_table(head, ([s.label, s.unit, *(fmt(results[s.key].get(name)) for name in servers),
                        ratio(results[s.key].get("hubfs"), results[s.key].get("http.server")),
                        ratio(results[s.key].get("hubfs"), results[s.key].get("nginx"))] for s in rows),
                right=range(2, len(head)))


NOTES = (
    ("python -m http.server answers HTTP/1.0 and closes the connection after each response, so its "
     "'keep-alive' clients reconnect for every file."),
    "nginx runs one worker with sendfile; hubfs is one uvicorn process; http.server one threaded process.",
    "Clients (curl, httpx threads) run on the same machine and share its cores with the server.",
)


def print_notes() -> None:
    print()
    for note in NOTES:
        print(f"- {note}")


# -- main ----------------------------------------------------------------------------------------


def verify(targets: list[Target], data: Dataset) -> None:
    """Sizes (every server) with one curl each, and the big file's sha256 once through hubfs."""
    for t in targets:
        out = subprocess.run(curl_argv(t.file_url(BIG_NAME)), capture_output=True, text=True, check=True).stdout
        parse_curl(out, t.name, data.big_size)
        print(f"verified size of {BIG_NAME} via {t.name}")
    hub = targets[0]
    got = sha256_of_url(hub.file_url(BIG_NAME))
    if got != data.big_sha256:
        raise RuntimeError(f"sha256 mismatch through hubfs: {got} != {data.big_sha256}")
    print(f"verified sha256 of {BIG_NAME} via hubfs: {got}")


def run_all(targets: list[Target], rows: list[Scenario]) -> dict[str, dict[str, float | None]]:
    results: dict[str, dict[str, float | None]] = {}
    for s in rows:
        results[s.key] = {}
        for t in targets:
            t0 = time.monotonic()
            results[s.key][t.name] = value = s.run(t)
            print(f"  {s.key:>9} {t.name:<12} {value:12,.1f} {s.unit:<8} ({time.monotonic() - t0:.1f}s)", flush=True)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--size-mib", 1024, "size of the big LFS file"),
                ("--files", 1000, "number of small files"),
                ("--clients", 16, "concurrent clients"),
                ("--runs", 3, "repetitions; the best counts"),
                ("--concurrent-runs", 1, "repetitions of the concurrent big-file download"))
    add_output_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info({"curl": tool_version(["curl", "--version"], words=2)})
    print(f"machine: nproc={info['nproc']}, cpu={info['cpu']}, python {info['python']}, {info['platform']}, "
          f"{info['curl']}")
    if not shutil.which("curl"):
        raise SystemExit("curl is needed")
    with workdir(args.keep, "hubfs-bench-") as tmp, contextlib.ExitStack() as stack:
        os.environ.setdefault("HF_HOME", str(tmp / "hf-home"))
        data = make_dataset(tmp / "static", args.size_mib, args.files)
        endpoint, token = start_hubfs(stack, tmp)
        print(f"hubfs at {endpoint}")
        upload_to_hub(endpoint, token, data)
        targets = [Target("hubfs", lambda p: f"{endpoint}/{REPO_ID}/resolve/main/{p}")]
        http_url = start_http_server(stack, tmp, data.root)
        targets.append(Target("http.server", lambda p: f"{http_url}/{p}"))
        nginx_url = start_nginx(stack, tmp, data.root)
        if nginx_url:
            targets.append(Target("nginx", lambda p: f"{nginx_url}/{p}"))
        print("servers: " + ", ".join(t.name for t in targets))
        verify(targets, data)
        rows = scenarios(data, args)
        results = run_all(targets, rows)
    servers = ["hubfs", "http.server", "nginx"]
    print()
    print(machine_line(info, ["curl"]))
    print()
    print_results(results, rows, servers)
    single = results["big_1"]
    baseline = max((v for k, v in single.items() if k != "hubfs" and v), default=None)
    if baseline:
        share = (single["hubfs"] or 0) / baseline
        print(f"\ngoal (1 client, big file, hubfs >= 0.8x the best static baseline): {share:.2f}x -> "
              f"{'met' if share >= 0.8 else 'NOT met'}")
    print_notes()
    if args.json:
        write_json(args.json, info, args, units={s.key: s.unit for s in rows},
                   labels={s.key: s.label for s in rows}, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
