"""Scale-out benchmark of the embedded hub: more workers, S3 object storage, PostgreSQL metadata.

What it measures, in one run:

* small-file GETs per second (``/resolve`` of ``--files`` files of 1-8 KiB, with a token, keep-alive)
  against ``hubfs serve --workers 1`` and ``--workers 2`` on the same data folder, driven by ``wrk``
  (``--connections`` connections, ``--seconds`` each, median of ``--runs``);
* a big LFS file (default 1 GiB of random bytes) downloaded with ``curl``: from a hub that sends it from
  its local disk, and from a hub whose objects live in S3 (moto's standalone server), where ``resolve``
  answers with a redirect to a presigned GET that curl follows (best of ``--runs``);
* commit latency: one small commit through the REST commit API (NDJSON, one file), sequentially,
  ``--commits`` times, median and 90th percentile, with the metadata in SQLite and in PostgreSQL
  (a throwaway cluster from ``benchlib.pg``).

Everything runs on 127.0.0.1 in a temporary folder; every process started here is stopped by PID.
The load generator shares the machine's cores with the hub, so on a 2-core machine the 2-worker row
is a floor for what two cores give the hub. Needs ``wrk`` and ``curl`` (Debian packages) and, for the
PostgreSQL row, Debian's ``postgresql``.

Run it (about 3 minutes at the defaults on 2 cores; the quick check below takes under a minute)::

    .venv/bin/python scripts/bench_scale.py
    .venv/bin/python scripts/bench_scale.py --size-mib 64 --files 200 --seconds 3 --commits 10 --runs 1
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"  # the big file is one LFS object (so S3 holds it whole); before the import
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx
from benchlib import TESTS, add_numbers, add_output_args, arg_parser, workdir, write_json
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.table import print_table, ratio, size_label

sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "server"))
from hub_server import HubServer

REPO = "admin/scale"
MIB = 1 << 20


def parse_args(argv: list[str] | None):
    p = arg_parser(__doc__)
    add_numbers(p, ("--files", 500, "small files"), ("--connections", 64, "wrk connections"),
                ("--seconds", 10, "seconds per wrk run"), ("--size-mib", 1024, "big file size in MiB"),
                ("--commits", 30, "commits timed per database"), ("--runs", 3, "runs per measurement"))
    add_output_args(p)
    return p.parse_args(argv)


def start(stack: contextlib.ExitStack, data: Path, *args: str, env: dict[str, str] | None = None) -> HubServer:
    server = HubServer(data, *args, "--gc-interval", "0", env=env)
    stack.callback(server.stop)
    return server.start(timeout=60)


def auth(hub: HubServer) -> dict[str, str]:
    return {"authorization": f"Bearer {hub.admin_token}"}


def commit(hub: HubServer, files: dict[str, bytes], summary: str = "bench") -> None:
    """One commit of ``files`` (regular files, base64) through the REST commit API."""
    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}]
    lines += [{"key": "file", "value": {"path": p, "content": base64.b64encode(c).decode(), "encoding": "base64"}}
              for p, c in files.items()]
    body = "\n".join(json.dumps(line) for line in lines)
    r = httpx.post(f"{hub.endpoint}/api/models/{REPO}/commit/main", content=body, timeout=120,
                   headers={**auth(hub), "content-type": "application/x-ndjson"})
    r.raise_for_status()


def create_repo(hub: HubServer) -> None:
    r = httpx.post(f"{hub.endpoint}/api/repos/create", json={"name": REPO.split("/")[1], "organization": "admin",
                                                               "type": "model"}, headers=auth(hub), timeout=60)
    r.raise_for_status()


# -- small files, 1 and 2 workers ------------------------------------------------------------------


def small_files(n: int) -> dict[str, bytes]:
    """``n`` files of 1-8 KiB (deterministic sizes, as in bench_server)."""
    return {f"small/{i:05d}.txt": bytes([65 + i % 26]) * (1024 + (i * 7919) % (7 * 1024 + 1)) for i in range(n)}


def wrk_rate(hub: HubServer, paths: list[str], args, tmp: Path) -> float:
    """Requests per second ``wrk`` got over ``paths`` (cycled) on ``hub``; fails on any non-2xx answer."""
    script = tmp / "paths.lua"
    script.write_text("paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                      f'wrk.headers["Authorization"] = "Bearer {hub.admin_token}"\n'
                      "i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
    threads = max(1, min(2, args.connections))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "30s",
                          "-s", str(script), hub.endpoint], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out) or (errors and any(int(n) for n in errors.groups())):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"no rate in wrk's output:\n{out}")
    return float(m.group(1))


def measure_workers(stack_tmp: Path, args) -> dict[str, float]:
    data = stack_tmp / "small-hub"
    files = small_files(args.files)
    paths = [f"/{REPO}/resolve/main/{p}" for p in files]
    out: dict[str, float] = {}
    for workers in (1, 2):
        with contextlib.ExitStack() as stack:
            hub = start(stack, data, "--workers", str(workers))
            if workers == 1:
                create_repo(hub)
                commit(hub, files, "small files")
            for p, content in list(files.items())[:20]:  # right bytes before speed
                r = httpx.get(f"{hub.endpoint}/{REPO}/resolve/main/{p}", headers=auth(hub))
                assert r.status_code == 200 and r.content == content, (p, r.status_code)
            wrk_rate(hub, paths, argparse_short(args), stack_tmp)  # warm-up (caches, worker start-up)
            rates = [wrk_rate(hub, paths, args, stack_tmp) for _ in range(args.runs)]
            out[f"workers_{workers}"] = statistics.median(rates)
            print(f"--workers {workers}: " + ", ".join(f"{r:,.0f}" for r in rates) + " req/s")
    return out


def argparse_short(args):
    """``args`` with a 2-second wrk run (the warm-up)."""
    import copy

    short = copy.copy(args)
    short.seconds = 2
    return short


# -- a big download: presigned redirect to S3 vs the local path -----------------------------------


def write_big(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n


def curl_follow(url: str, size: int, headers: dict[str, str]) -> tuple[float, int]:
    """``curl -L`` of ``url``: (seconds, redirects followed), after checking the size. curl sends a
    custom Authorization header only to the first host."""
    argv = ["curl", "-s", "-L", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total} %{num_redirects}"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    code, got, secs, redirects = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"curl {url}: HTTP {code}, {got} bytes (expected {size})")
    return float(secs), int(redirects)


def measure_download(tmp: Path, args) -> dict[str, float]:
    from huggingface_hub import HfApi
    from moto_s3 import s3_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise
    size = int(args.size_mib * MIB)
    big = tmp / "big.bin"
    write_big(big, size)
    out: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(s3_server(tmp))
        bucket = s3.bucket()
        hubs = {"local": start(stack, tmp / "local-hub", "--regular-max-size", "1k"),
                "s3": start(stack, tmp / "s3-hub", "--regular-max-size", "1k", "--object-store", f"s3://{bucket}/hub",
                            "--s3-endpoint-url", s3.endpoint, env=s3.hub_env)}
        for name, hub in hubs.items():
            HfApi(endpoint=hub.endpoint, token=hub.admin_token).create_repo(REPO)
            HfApi(endpoint=hub.endpoint, token=hub.admin_token).upload_file(
                path_or_fileobj=str(big), path_in_repo="big.bin", repo_id=REPO)
            url = f"{hub.endpoint}/{REPO}/resolve/main/big.bin"
            times = []
            for _ in range(args.runs):
                secs, redirects = curl_follow(url, size, auth(hub))
                assert redirects == (1 if name == "s3" else 0), (name, redirects)
                times.append(secs)
            out[name] = size / MIB / min(times)
            print(f"{name}: " + ", ".join(f"{t:.2f}s" for t in times))
    big.unlink()
    return out


# -- commit latency: SQLite vs PostgreSQL -----------------------------------------------------------


def commit_latencies(hub: HubServer, n: int) -> list[float]:
    create_repo(hub)
    commit(hub, {"warm.txt": b"warm"})
    out = []
    for i in range(n):
        t = time.perf_counter()
        commit(hub, {f"c/{i}.txt": f"commit {i}\n".encode()}, f"commit {i}")
        out.append((time.perf_counter() - t) * 1000)
    return out


def measure_commits(tmp: Path, args) -> dict[str, list[float] | None]:
    out: dict[str, list[float] | None] = {}
    with contextlib.ExitStack() as stack:
        out["sqlite"] = commit_latencies(start(stack, tmp / "sqlite-hub"), args.commits)
    try:
        from benchlib.pg import pg_cluster
    except ImportError:
        pg_cluster = None
    if pg_cluster is None:
        print("PostgreSQL row: not available (scripts/benchlib/pg.py is missing)")
        out["postgres"] = None
        return out
    try:
        with pg_cluster(tmp, durable=True) as url, contextlib.ExitStack() as stack:
            out["postgres"] = commit_latencies(start(stack, tmp / "pg-hub", "--database-url", url), args.commits)
    except FileNotFoundError as exc:
        print(f"PostgreSQL row: not available ({exc})")
        out["postgres"] = None
    return out


def pct(values: list[float] | None, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (Debian: apt-get install {tool})")
    info = machine_info({"wrk": tool_version(["wrk", "--version"], words=2),
                         "curl": tool_version(["curl", "--version"], words=2)})
    print(machine_line(info, ["wrk", "curl"]))
    with workdir(args.keep, "hubfs-bench-scale-") as tmp:
        os.environ.setdefault("HF_HOME", str(tmp / "hf-home"))
        rates = measure_workers(tmp, args)
        speeds = measure_download(tmp, args)
        commits = measure_commits(tmp, args)
    print()
    print(machine_line(info, ["wrk", "curl"]))
    print(f"\nsmall-file GETs ({args.files} files of 1-8 KiB, {args.connections} connections, wrk, median of "
          f"{args.runs} x {args.seconds:g} s; the load generator runs on the same cores)\n")
    one, two = rates["workers_1"], rates["workers_2"]
    print_table(["hubfs serve", "requests/s", "vs 1 worker"],
                [["--workers 1", f"{one:,.0f}", "1.00x"], ["--workers 2", f"{two:,.0f}", ratio(two, one)]], right=[1, 2])
    print(f"\n{size_label(int(args.size_mib * MIB))} LFS download with curl (best of {args.runs})\n")
    print_table(["path", "MiB/s", "vs local"],
                [["hub sends it from local disk", f"{speeds['local']:,.0f}", "1.00x"],
                 ["302 to a presigned S3 GET (moto)", f"{speeds['s3']:,.0f}", ratio(speeds["s3"], speeds["local"])]],
                right=[1, 2])
    print(f"\ncommit latency, one small file through the REST commit API ({args.commits} sequential commits)\n")
    sq, pg = commits["sqlite"], commits["postgres"]
    rows = [["SQLite", f"{pct(sq, 0.5):.1f}", f"{pct(sq, 0.9):.1f}", "1.00x"]]
    if pg is not None:
        rows.append(["PostgreSQL", f"{pct(pg, 0.5):.1f}", f"{pct(pg, 0.9):.1f}", ratio(pct(pg, 0.5), pct(sq, 0.5))])
    else:
        rows.append(["PostgreSQL", "n/a", "n/a", "n/a"])
    print_table(["metadata", "median ms", "p90 ms", "median vs SQLite"], rows, right=[1, 2, 3])
    print("\nnotes: moto serves S3 from one Python process, so the presigned row measures moto, not S3; the "
          "point is that the hub sends no bytes. More cores: each worker is one Python process, so requests/s "
          "grows with workers up to the cores left after the load generator and the kernel's network work.")
    if args.json:
        write_json(args.json, info, args, small_files_rps=rates, download_mib_s=speeds,
                   commit_ms={"sqlite": sq, "postgres": pg})
    return 0


if __name__ == "__main__":
    sys.exit(main())
