"""Xet benchmark of the embedded hub (``hubfs serve``): uploads, dedup re-uploads and downloads of a safetensors file.

One ``hubfs serve`` (tests/hub_server.py's HubServer, fresh data folder in a temporary directory,
127.0.0.1) and, in one run:

1. **Upload** of a ``--size-mib`` safetensors file (default 1 GiB: 64 float16 tensors of shape
   (4 x size-mib, 2048), values N(0, 0.02) like freshly initialised weights, so the bytes have the
   statistics of real weights, not of random bytes; written by ``safetensors.numpy.save_file``) with
   ``HfApi().upload_file``:
   (a) through Xet (``HF_HUB_DISABLE_XET`` unset, hf_xet) and (b) through Git LFS
   (``HF_HUB_DISABLE_XET=1``: the batch API, then basic or multipart PUTs, whichever the hub
   answers), each to a fresh repo. Goal: Xet wall time <= 1.2x LFS.
2. **Re-upload** of the Xet file to the same repo, same name, after rewriting ``--changed-pct`` %
   of its tensors (rounded up to whole tensors) with new random values of the same shapes:
   (a) with the same ``HF_XET_CACHE`` as the first Xet upload (the normal case: hf_xet's local
   shard cache knows the old chunks), (b) with a fresh ``HF_XET_CACHE`` (the old chunks can only
   be found through the hub's global dedup, ``GET /v1/chunks``; a different rewrite of the same
   tensors of the original, so the hub has seen none of the new values). Goal: the bytes the hub
   receives <= 15% of the file.
3. **Download** of the Xet-uploaded file: ``hf_hub_download`` with Xet and with
   ``HF_HUB_DISABLE_XET=1`` (a fresh cache folder and ``HF_XET_CACHE`` each run), and
   ``curl -s -o /dev/null`` of ``{endpoint}/{repo}/resolve/main/{file}`` (as in bench_server.py)
   for the Xet-uploaded file and for the LFS-uploaded one (curl's own ``time_total``); best of
   ``--runs`` each. Goal: curl of the Xet-uploaded file >= 0.8x curl of the LFS-uploaded one (plain
   clients get a Xet-uploaded file from wherever the hub keeps its bytes; this compares that path with
   a plain LFS object's). One more Xet ``hf_hub_download`` goes through the counting proxy (below),
   untimed, to check that it really fetched reconstructions and xorb ranges, and to count the bytes.

Every upload and ``hf_hub_download`` runs in its own subprocess (huggingface_hub reads
``HF_HUB_DISABLE_XET`` when it is imported) with a fresh ``HF_HOME`` (``HF_XET_CACHE`` as above) and
``HF_HUB_DISABLE_PROGRESS_BARS=1``; its time is the ``upload_file`` / ``hf_hub_download`` call
alone, measured inside the subprocess (no interpreter start-up or imports). Every uploaded
file has content of its own (its own random seed): the hub would otherwise deduplicate one upload
against another (Xet) or find the object already stored (LFS).

How bytes are counted: the hub keeps xorbs decoded (uncompressed), so the growth of ``DATA/xet``
says nothing about what crossed the network. Bytes are counted by benchlib's loopback proxy
(``benchlib.proxy``, its own process, no added latency) in front of the hub: "received" is every
byte the client sent to the hub over TCP (request heads and bodies: xorbs, shards, LFS PUTs and
the API calls), counted as it passes. The proxy costs CPU on a shared machine, so wall times come
from uploads that go to the hub directly; the byte counts come from a second set of uploads of
other files of the same size and make through the proxy (1a and 1b again, then 2a and 2b, whose
wall times are therefore through the proxy). Wall times and bytes of every upload are printed as
they happen, with the requests by kind and the growth of the hub's ``xet/xorbs``, ``xet/shards``
and ``lfs`` folders.

CPU seconds (wall times are noisy on a shared machine; these much less): the hub's are those of the
``hubfs serve`` process, all threads (``/proc/PID/stat``), over the call; the client's are those of
the subprocess (``RUSAGE_CHILDREN``), its Python start-up and imports included (about 0.5 s).

Run it (2.5-4.5 minutes on 2 cores at the defaults, about 5 with ``--runs 3``; the quick check
below takes about 30 seconds)::

    .venv/bin/python scripts/bench_xet.py
    .venv/bin/python scripts/bench_xet.py --size-mib 64 --json /tmp/bench_xet.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    add_numbers,
    add_output_args,
    arg_parser,
    cpu_seconds,
    curl_seconds,
    start_hub_server,
    tree_bytes,
    workdir,
    write_json,
)
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.proxy import ProxyHandle
from benchlib.table import print_table, size_label

MIB = 1 << 20
TENSORS, COLS = 64, 2048
FILE_NAME = "model.safetensors"
PROJECTIONS = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")
TOOLS, PACKAGES = ("curl", "hf_xet"), ("huggingface_hub", "safetensors", "numpy")
WORKER = "_worker"  # argv[1] of this script in the upload/download subprocesses
DATA_DIRS = ("xet/xorbs", "xet/shards", "lfs")


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Model:
    """A safetensors file on disk: its size and sha256 (the LFS oid the hub must end up with)."""

    path: Path
    size: int
    sha256: str


def write_model(path: Path, size_mib: int, seed: int, overrides: dict[int, int] | None = None) -> Model:
    """64 float16 tensors of shape (4 x ``size_mib``, 2048), N(0, 0.02); tensor ``i`` drawn from the
    seed ``(overrides.get(i, seed), i)``, so two files share exactly the tensors whose seeds agree."""
    import numpy as np
    from safetensors.numpy import save_file

    rows = size_mib * MIB // (TENSORS * COLS * 2)
    tensors = {}
    for i in range(TENSORS):
        rng = np.random.default_rng([(overrides or {}).get(i, seed), i])
        values = rng.standard_normal(rows * COLS, dtype=np.float32) * np.float32(0.02)
        tensors[f"model.layers.{i // 4}.{PROJECTIONS[i % 4]}.weight"] = values.astype(np.float16).reshape(rows, COLS)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    del tensors
    return Model(path, path.stat().st_size, sha256_file(path))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()


def changed_tensors(pct: float) -> list[int]:
    """``pct`` % of the tensors, rounded up, spread evenly over the file."""
    n = max(1, math.ceil(TENSORS * pct / 100))
    return sorted({round(k * TENSORS / n) % TENSORS for k in range(n)})


# -- subprocesses --------------------------------------------------------------------------------


def worker(job: dict[str, Any]) -> None:
    """In a subprocess: one ``upload_file`` or ``hf_hub_download``; prints its seconds (and result) as JSON."""
    from huggingface_hub import HfApi, hf_hub_download

    t0 = time.perf_counter()
    if job["kind"] == "upload":
        api = HfApi(endpoint=job["endpoint"], token=job["token"])
        info = api.upload_file(path_or_fileobj=job["local"], path_in_repo=FILE_NAME, repo_id=job["repo"],
                               commit_message=job["message"])
        out = {"commit": info.oid}
    else:
        out = {"path": hf_hub_download(job["repo"], FILE_NAME, endpoint=job["endpoint"], token=job["token"],
                                       cache_dir=job["cache_dir"])}
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)


def run_worker(job: dict[str, Any], xet: bool, home: Path, xet_cache: Path) -> dict[str, Any]:
    """Run ``job`` in a subprocess with Xet on or off, ``HF_HOME=home`` and ``HF_XET_CACHE=xet_cache``."""
    env = {**os.environ, "HF_HOME": str(home), "HF_XET_CACHE": str(xet_cache), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_ENDPOINT": job["endpoint"], "HF_TOKEN": job["token"]}
    env.pop("HF_HUB_DISABLE_XET", None)
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    t0, cpu0 = time.perf_counter(), children_cpu()
    proc = subprocess.run([sys.executable, __file__, WORKER, json.dumps(job)], capture_output=True, text=True,
                          env=env, check=False)
    cpu = children_cpu() - cpu0
    if proc.returncode:
        raise RuntimeError(f"{job['kind']} ({'Xet' if xet else 'LFS'}) failed ({proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - t0
    out["client_cpu"] = cpu
    return out


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (the workers, curl)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# -- the hub -------------------------------------------------------------------------------------


@dataclass
class Hub:
    endpoint: str
    token: str
    data: Path
    tmp: Path
    api: Any
    pid: int
    homes: int = 0

    def fresh(self, what: str) -> Path:
        """A new empty folder under the work dir (an HF_HOME, an HF_XET_CACHE, a download cache)."""
        self.homes += 1
        path = self.tmp / "clients" / f"{self.homes:02d}-{what}"
        path.mkdir(parents=True)
        return path

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def usage(self) -> dict[str, int]:
        return {d: tree_bytes(self.data / d) for d in DATA_DIRS}

    def file_info(self, repo: str) -> Any:
        (entry,) = self.api.get_paths_info(repo, [FILE_NAME])
        return entry


@dataclass
class Upload:
    """One upload: wall seconds and, through the proxy, what the hub received."""

    label: str
    seconds: float
    size: int
    server_cpu: float
    client_cpu: float
    up_bytes: int | None = None
    requests: dict[str, int] = field(default_factory=dict)
    growth: dict[str, int] = field(default_factory=dict)

    @property
    def pct(self) -> float | None:
        return None if self.up_bytes is None else 100 * self.up_bytes / self.size


def request_kinds(stats: dict[str, Any]) -> dict[str, int]:
    """The proxy's exchanges by kind: xorb and shard POSTs, dedup queries (hits), LFS PUTs, reconstructions,
    xorb range GETs, the rest."""
    kinds: Counter[str] = Counter()
    for method, target, _rng, status, _body in stats["exchanges"]:
        path = target.split("?", 1)[0]
        if method == "POST" and "/v1/xorbs/" in path:
            kinds["xorb POST"] += 1
        elif method == "POST" and "/shards" in path:
            kinds["shard POST"] += 1
        elif method == "GET" and "/v1/chunks/" in path:
            kinds["dedup GET"] += 1
            kinds["dedup hit"] += status == 200
        elif method == "PUT":
            kinds["LFS PUT"] += 1
        elif method == "GET" and "/reconstructions/" in path:
            kinds["reconstruction GET"] += 1
        elif method == "GET" and "/xorb/" in path:
            kinds["xorb GET"] += 1
        else:
            kinds["other"] += 1
    kinds["total"] = stats["requests"]
    return dict(kinds)


def upload(hub: Hub, model: Model, repo: str, xet: bool, xet_cache: Path | None, label: str,
           proxy: ProxyHandle | None = None) -> Upload:
    """``upload_file`` in a subprocess (directly, or through ``proxy`` to count bytes), then check that the
    repo's file has the model's sha256 and is (or, for LFS, is not) a Xet file."""
    before = hub.usage()
    if proxy is not None:
        proxy.reset()
    cpu0 = hub.cpu()
    job = {"kind": "upload", "endpoint": proxy.endpoint if proxy else hub.endpoint, "token": hub.token,
           "repo": repo, "local": str(model.path), "message": label}
    out = run_worker(job, xet, hub.fresh("home"), xet_cache or hub.fresh("xet-cache"))
    server_cpu = hub.cpu() - cpu0
    stats = proxy.stats() if proxy is not None else None
    after = hub.usage()
    entry = hub.file_info(repo)
    if entry.lfs is None or entry.lfs.sha256 != model.sha256 or entry.size != model.size:
        raise RuntimeError(f"{label}: the repo's {FILE_NAME} is not the uploaded file: {entry}")
    if bool(entry.xet_hash) != xet:
        raise RuntimeError(f"{label}: xetHash is {entry.xet_hash!r}; expected {'one' if xet else 'none'}")
    if xet and stats is not None and not any("/shards" in e[1] for e in stats["exchanges"]):
        raise RuntimeError(f"{label}: no shard upload went through the proxy")
    u = Upload(label, out["seconds"], model.size, server_cpu, out["client_cpu"], stats["up_bytes"] if stats else None,
               request_kinds(stats) if stats else {}, {d: after[d] - before[d] for d in DATA_DIRS})
    where = "through the proxy" if proxy else "direct"
    sent = f", hub received {u.up_bytes / MIB:,.1f} MiB ({u.pct:.1f}% of the file)" if u.up_bytes is not None else ""
    print(f"  {label} ({where}): {u.seconds:.2f}s (process {out['process_seconds']:.2f}s; CPU s: hub "
          f"{u.server_cpu:.1f}, client {u.client_cpu:.1f}){sent}", flush=True)
    if u.requests:
        print("    requests: " + ", ".join(f"{k} {v}" for k, v in u.requests.items()), flush=True)
    print("    hub data growth: " + ", ".join(f"{d} {n / MIB:+,.1f} MiB" for d, n in u.growth.items()), flush=True)
    return u


# -- 1 and 2: uploads ------------------------------------------------------------------------------


def bench_uploads(hub: Hub, proxy: ProxyHandle, args: argparse.Namespace) -> dict[str, Any]:
    """Timed uploads (direct, best of ``--runs``; also the repos the downloads read), then the counted
    ones through the proxy: 1a, 1b, 2a, 2b."""
    src = hub.tmp / "src"
    runs: dict[str, list[Upload]] = {"xet": [], "lfs": []}
    models: dict[str, Model] = {}
    for r in range(args.runs):
        order = ("xet", "lfs") if r % 2 == 0 else ("lfs", "xet")
        for how in order:
            repo = f"admin/{how}-{r}"
            hub.api.create_repo(repo)
            model = write_model(src / f"{how}-{r}.safetensors", args.size_mib, seed=(100 if how == "xet" else 200) + r)
            label = "1a Xet" if how == "xet" else "1b LFS"
            runs[how].append(upload(hub, model, repo, how == "xet", None, f"{label} upload, run {r + 1}"))
            if r == 0:
                models[how] = model  # downloaded later
            else:
                model.path.unlink()

    counted: dict[str, Upload] = {}
    hub.api.create_repo("admin/lfs-counted")
    model = write_model(src / "lfs-counted.safetensors", args.size_mib, seed=400)
    counted["1b"] = upload(hub, model, "admin/lfs-counted", False, None, "1b LFS upload", proxy)
    model.path.unlink()

    hub.api.create_repo("admin/xet-counted")
    cache = hub.fresh("xet-cache-kept")
    model = write_model(src / "xet-counted.safetensors", args.size_mib, seed=300)
    counted["1a"] = upload(hub, model, "admin/xet-counted", True, cache, "1a Xet upload", proxy)
    changed = changed_tensors(args.changed_pct)
    model = write_model(model.path, args.size_mib, seed=300, overrides=dict.fromkeys(changed, 301))
    counted["2a"] = upload(hub, model, "admin/xet-counted", True, cache,
                           "2a Xet re-upload, same HF_XET_CACHE", proxy)
    model = write_model(model.path, args.size_mib, seed=300, overrides=dict.fromkeys(changed, 302))
    counted["2b"] = upload(hub, model, "admin/xet-counted", True, None,
                           "2b Xet re-upload, fresh HF_XET_CACHE", proxy)
    model.path.unlink()
    return {"runs": runs, "counted": counted, "models": models, "changed": changed}


# -- 3: downloads ----------------------------------------------------------------------------------


def hf_download(hub: Hub, repo: str, model: Model, xet: bool) -> float:
    """MiB/s of one ``hf_hub_download`` (subprocess, fresh caches), its file checked afterwards."""
    cache = hub.fresh("dl-cache")
    out = run_worker({"kind": "download", "endpoint": hub.endpoint, "token": hub.token, "repo": repo,
                      "cache_dir": str(cache)}, xet, hub.fresh("home"), hub.fresh("xet-cache"))
    got = Path(out["path"])
    if got.stat().st_size != model.size or sha256_file(got) != model.sha256:
        raise RuntimeError(f"hf_hub_download ({'Xet' if xet else 'LFS'}) of {repo}: wrong content")
    shutil.rmtree(cache)
    return model.size / out["seconds"] / MIB


def check_xet_download(hub: Hub, proxy: ProxyHandle, model: Model) -> dict[str, Any]:
    """One Xet ``hf_hub_download`` through the proxy (not timed): it must fetch reconstructions and xorb
    ranges, not the file; returns what the hub sent (response bodies) and the requests."""
    proxy.reset()
    cache = hub.fresh("dl-cache")
    out = run_worker({"kind": "download", "endpoint": proxy.endpoint, "token": hub.token, "repo": "admin/xet-0",
                      "cache_dir": str(cache)}, True, hub.fresh("home"), hub.fresh("xet-cache"))
    stats = proxy.stats()
    got = Path(out["path"])
    if got.stat().st_size != model.size or sha256_file(got) != model.sha256:
        raise RuntimeError("hf_hub_download (Xet, through the proxy): wrong content")
    shutil.rmtree(cache)
    kinds = request_kinds(stats)
    if not kinds.get("reconstruction GET") or not kinds.get("xorb GET"):
        raise RuntimeError(f"hf_hub_download with Xet did not download through Xet: {kinds}")
    body = stats["down_body_bytes"]
    print(f"  Xet hf_hub_download through the proxy (a check, not timed): hub sent {body / MIB:,.1f} MiB of "
          f"response bodies ({100 * body / model.size:.1f}% of the file); requests: "
          + ", ".join(f"{k} {v}" for k, v in kinds.items()), flush=True)
    return {"down_body_bytes": body, "down_bytes": stats["down_bytes"], "requests": kinds}


def bench_downloads(hub: Hub, models: dict[str, Model], runs: int) -> dict[str, Any]:
    xet, lfs = models["xet"], models["lfs"]
    auth = [f"Authorization: Bearer {hub.token}"]

    def curl(repo: str, m: Model) -> float:
        return m.size / curl_seconds(f"{hub.endpoint}/{repo}/resolve/main/{FILE_NAME}", m.size, auth) / MIB

    clients = {
        "curl, Xet-uploaded": lambda: curl("admin/xet-0", xet),
        "curl, LFS-uploaded": lambda: curl("admin/lfs-0", lfs),
        "hf_hub_download, Xet": lambda: hf_download(hub, "admin/xet-0", xet, True),
        "hf_hub_download, HF_HUB_DISABLE_XET=1": lambda: hf_download(hub, "admin/xet-0", xet, False),
    }
    results: dict[str, list[float]] = {c: [] for c in clients}
    cpu: dict[str, list[tuple[float, float]]] = {c: [] for c in clients}  # (hub, client) CPU seconds per run
    for r in range(runs):
        names = list(clients) if r % 2 == 0 else list(clients)[::-1]
        for name in names:
            hub0, client0 = hub.cpu(), children_cpu()
            results[name].append(clients[name]())
            cpu[name].append((hub.cpu() - hub0, children_cpu() - client0))
        print(f"  download run {r + 1}, MiB/s (CPU s: hub + client): " + ", ".join(
            f"{n} {results[n][-1]:,.0f} ({cpu[n][-1][0]:.1f} + {cpu[n][-1][1]:.1f})" for n in clients), flush=True)
    return {"runs": results, "best": {n: max(v) for n, v in results.items()}, "cpu": cpu}


# -- report ----------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    xet: str
    peer: str
    ratio: str
    goal: str
    met: bool | None
    value: float | None = None


def verdict(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MIB:,.1f} MiB"


def build_rows(up: dict[str, Any], down: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    what = f"{size_label(args.size_mib * MIB)} safetensors"
    size = up["models"]["xet"].size
    x, lf = min(u.seconds for u in up["runs"]["xet"]), min(u.seconds for u in up["runs"]["lfs"])
    c = up["counted"]
    n = len(up["changed"])
    r = x / lf
    rows = [
        Row(f"upload {what}, HfApi.upload_file, fresh repo and caches: wall time (s, best of {args.runs})",
            f"{x:.2f}", f"LFS (HF_HUB_DISABLE_XET=1): {lf:.2f}", f"{r:.2f}x", "Xet <= 1.2x LFS", r <= 1.2, r),
        cpu_row(f"upload {what}: CPU seconds, hub + client (the fastest run)",
                min(up["runs"]["xet"], key=lambda u: u.seconds), min(up["runs"]["lfs"], key=lambda u: u.seconds)),
        Row(f"upload {what}: bytes the hub received (counting proxy) / file",
            f"{mib(c['1a'].up_bytes)} ({c['1a'].pct:.1f}%)", f"LFS: {mib(c['1b'].up_bytes)} ({c['1b'].pct:.1f}%)",
            f"{c['1a'].up_bytes / c['1b'].up_bytes:.2f}x", "", None),
    ]
    for key, how in (("2a", "same HF_XET_CACHE"), ("2b", "fresh HF_XET_CACHE (global dedup)")):
        u = c[key]
        rows.append(Row(f"re-upload after rewriting {n} of {TENSORS} tensors ({100 * n / TENSORS:.1f}%), {how}: "
                        f"bytes the hub received / file (wall time through the proxy)",
                        f"{mib(u.up_bytes)} ({u.pct:.1f}%, {u.seconds:.2f} s)", "", f"{u.pct:.1f}%", "<= 15%",
                        (u.pct or 0) <= 15, u.pct))
    b = down["best"]
    r = b["curl, Xet-uploaded"] / b["curl, LFS-uploaded"]
    rows.append(Row(f"download {what}, curl -o /dev/null of resolve/main (MiB/s, best of {args.runs})",
                    f"Xet-uploaded: {b['curl, Xet-uploaded']:,.0f}", f"LFS-uploaded: {b['curl, LFS-uploaded']:,.0f}",
                    f"{r:.2f}x", ">= 0.8x LFS-uploaded", r >= 0.8, r))
    r = b["hf_hub_download, Xet"] / b["hf_hub_download, HF_HUB_DISABLE_XET=1"]
    rows.append(Row(f"download {what} (Xet-uploaded), hf_hub_download, fresh caches (MiB/s, best of {args.runs})",
                    f"Xet: {b['hf_hub_download, Xet']:,.0f}",
                    f"HF_HUB_DISABLE_XET=1: {b['hf_hub_download, HF_HUB_DISABLE_XET=1']:,.0f}", f"{r:.2f}x", "", None,
                    r))
    check = down["check"]
    rows.append(Row(f"download {what}, hf_hub_download with Xet: bytes the hub sent (response bodies, counting proxy) "
                    "/ file", f"{mib(check['down_body_bytes'])} ({100 * check['down_body_bytes'] / size:.1f}%)", "",
                    "", "", None))
    (xh, xc), (lh, lc) = (fastest_cpu(down, "hf_hub_download, Xet"),
                          fastest_cpu(down, "hf_hub_download, HF_HUB_DISABLE_XET=1"))
    rows.append(Row(f"download {what}, hf_hub_download: CPU seconds, hub + client (the fastest run)",
                    f"{xh:.1f} + {xc:.1f}",
                    f"HF_HUB_DISABLE_XET=1: {lh:.1f} + {lc:.1f}", f"{(xh + xc) / (lh + lc):.2f}x", "", None))
    return rows


def fastest_cpu(down: dict[str, Any], client: str) -> tuple[float, float]:
    """(hub, client) CPU seconds of the client's fastest download run."""
    runs = down["runs"][client]
    return down["cpu"][client][runs.index(max(runs))]


def cpu_row(scenario: str, xet: Upload, lfs: Upload) -> Row:
    total = (xet.server_cpu + xet.client_cpu) / (lfs.server_cpu + lfs.client_cpu)
    return Row(scenario, f"{xet.server_cpu:.1f} + {xet.client_cpu:.1f}",
               f"LFS: {lfs.server_cpu:.1f} + {lfs.client_cpu:.1f}", f"{total:.2f}x", "", None, total)


def print_rows(rows: list[Row]) -> None:
    print_table(["scenario", "hubfs, Xet", "peer", "ratio", "goal", "met?"],
                ([r.scenario, r.xet, r.peer, r.ratio, r.goal, verdict(r.met)] for r in rows), right=(1, 2, 3))


def print_notes(up: dict[str, Any]) -> None:
    lfs = up["counted"]["1b"].requests
    print()
    print("- one `hubfs serve` (uvicorn) on 127.0.0.1; the clients share the machine's cores with it.")
    print("- wall times: the `upload_file` / `hf_hub_download` call inside its subprocess (fresh HF_HOME; progress "
          "bars off); curl: its own time_total, body to /dev/null. hf_hub_download writes the file to disk.")
    print("- bytes received: everything the client sent to the hub over TCP (request heads and bodies), counted by a "
          "loopback proxy (benchlib.proxy, no added latency) in front of the hub, on other uploads of files of the "
          "same size and make than the timed ones (the hub stores xorbs decoded, so its disk usage is no measure).")
    print(f"- LFS uploads went as {lfs.get('LFS PUT', 0)} PUT(s) (basic, or multipart parts when the hub asks).")
    print("- CPU seconds: hub = the `hubfs serve` process (all threads, /proc/PID/stat) during the call; client = the "
          "subprocess (RUSAGE_CHILDREN), Python start-up and imports included (about 0.5 s); both from the fastest run.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--size-mib", 1024, "size of the safetensors file (MiB; 64 tensors)"),
                ("--changed-pct", 10.0, "percent of the tensors rewritten before the re-uploads (rounded up)"),
                ("--runs", 1, "repetitions of the timed uploads and of the downloads; the best counts"))
    add_output_args(p)
    args = p.parse_args(argv)
    if args.size_mib < 1 or args.runs < 1 or not 0 < args.changed_pct <= 100:
        p.error("--size-mib and --runs must be >= 1, --changed-pct in (0, 100]")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER]:
        worker(json.loads(argv[1]))
        return 0
    args = parse_args(argv)
    if not shutil.which("curl"):
        raise SystemExit("curl is needed")
    info = machine_info({"curl": tool_version(["curl", "--version"], words=2),
                         "hf_xet": f"hf_xet {importlib.metadata.version('hf_xet')}"}, PACKAGES)
    print(machine_line(info, TOOLS, PACKAGES), flush=True)
    with workdir(args.keep, "hubfs-bench-xet-") as tmp, contextlib.ExitStack() as stack:
        os.environ["HF_HOME"] = str(tmp / "hf-home")
        from huggingface_hub import HfApi

        server = start_hub_server(stack, tmp)
        endpoint, token = server.endpoint, server.admin_token
        proxy = ProxyHandle(endpoint, 0.0)
        stack.callback(proxy.stop)
        print(f"hubfs at {endpoint}; counting proxy at {proxy.endpoint}", flush=True)
        hub = Hub(endpoint, token, tmp / "hub-data", tmp, HfApi(endpoint=endpoint, token=token), server.proc.pid)
        up = bench_uploads(hub, proxy, args)
        down = bench_downloads(hub, up["models"], args.runs)
        down["check"] = check_xet_download(hub, proxy, up["models"]["xet"])

    rows = build_rows(up, down, args)
    print()
    print(machine_line(info, TOOLS, PACKAGES))
    print()
    print_rows(rows)
    print_notes(up)
    if args.json:
        print()
        write_json(args.json, info, args, changed_tensors=up["changed"],
                   uploads={k: [vars(u) for u in v] for k, v in up["runs"].items()},
                   counted={k: vars(u) for k, u in up["counted"].items()},
                   downloads=down,
                   table=[vars(r) for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
