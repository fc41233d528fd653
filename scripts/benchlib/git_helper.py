"""``git clone hf://...`` (git-remote-hf, no git-lfs) against stock ``git clone`` + git-lfs from the same hub,
for ``scripts/bench_git.py --only helper``: wall times (both alternating, best and median), the reference
(a skip-smudge clone plus a raw parallel download of the LFS objects), bytes on the wire, disk with
no second copy, and the same clones at an injected round-trip latency."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchlib.git_repo import REPO_ID, Source, check_clone, git_env, run, timed
from benchlib.table import print_table

HELPER_GOALS = {"stock": 0.5, "reference": 1.2, "wire": 1.01, "disk": 1.05, "latency_s": 2.5}
HELPER_BIN = Path(sys.executable).parent / "git-remote-hf"


def helper_env(tmp: Path, endpoint: str, token: str) -> dict[str, str]:
    """A fresh HOME with no git-lfs anywhere (PATH: git and git-remote-hf only), the hub's endpoint and token."""
    home, bin_dir = tmp / "helper-home", tmp / "helper-bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    (bin_dir / "git-remote-hf").symlink_to(HELPER_BIN)
    home.mkdir()
    env = git_env(home)
    env.update(PATH=str(bin_dir), HF_ENDPOINT=endpoint, HF_TOKEN=token, HF_HOME=str(tmp / "helper-hf-home"))
    return env


def raw_download(endpoint: str, token: str, src: Source, dest: Path, threads: int = 16) -> float:
    """The reference transfer: LFS batch calls (100 objects each) and parallel GETs of every object into files,
    sha256 checked; what any client has to do at least. Returns seconds."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    dest.mkdir(parents=True)
    headers = {"authorization": f"Bearer {token}", "accept": "application/vnd.git-lfs+json",
               "content-type": "application/vnd.git-lfs+json"}
    local = threading.local()
    clients: list[httpx.Client] = []

    def own_client() -> httpx.Client:  # one per thread: a shared pool once handed a thread a closed socket
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
            clients.append(local.client)
        return local.client

    def get(action: dict[str, Any], oid: str) -> None:
        h = hashlib.sha256()
        with own_client().stream("GET", action["href"], headers=action.get("header") or {}) as resp, \
                open(dest / oid, "wb") as f:
            resp.raise_for_status()
            for chunk in resp.iter_bytes(1 << 20):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != oid:
            raise RuntimeError(f"raw download of {oid}: sha256 mismatch")

    t0 = time.monotonic()
    try:
        with httpx.Client(timeout=120) as client, ThreadPoolExecutor(threads) as pool:
            futures = []
            for i in range(0, len(src.oids), 100):
                body = {"operation": "download", "transfers": ["basic"], "hash_algo": "sha256",
                        "objects": [{"oid": oid, "size": src.lfs_size} for oid in src.oids[i:i + 100]]}
                answer = client.post(f"{endpoint}/{REPO_ID}.git/info/lfs/objects/batch", json=body, headers=headers)
                answer.raise_for_status()
                futures += [pool.submit(get, o["actions"]["download"], o["oid"]) for o in answer.json()["objects"]]
            for fut in futures:
                fut.result()
    finally:
        for c in clients:
            c.close()
    return time.monotonic() - t0


def disk_bytes(root: Path) -> int:
    """Bytes of the files under ``root``, each inode once (a hard link is no second copy)."""
    seen: set[int] = set()
    total = 0
    for path in root.rglob("*"):
        st = path.lstat()
        if path.is_file() and not path.is_symlink() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total


def worktree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)


def byte_compile() -> None:
    """Byte-compile git_remote_hf and hubfs where they live, as pip does when it installs them: a source
    edited since its ``.pyc`` would otherwise be compiled again by every helper and filter process the
    clones start (``PYTHONDONTWRITEBYTECODE`` set, as in some shells), which no installed copy pays."""
    import compileall

    import git_remote_hf
    import hubfs

    for package in (git_remote_hf, hubfs):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def measure_helper(endpoint: str, token: str, src: Source, env: dict[str, str], tmp: Path,
                   args: argparse.Namespace) -> dict[str, Any]:
    """The helper's clone against stock git + git-lfs from the same hub, the reference, wire bytes, disk, latency."""
    from benchlib.proxy import ProxyHandle

    byte_compile()
    henv = helper_env(tmp, endpoint, token)
    hf_url, stock_url = f"hf://{REPO_ID}", f"{endpoint}/{REPO_ID}"
    dest = tmp / "helper-clones"
    # Clones are removed only at the end: ext4 steers new inodes away from ones deleted in the last minute
    # (``recently_deleted``), which made every clone after a removed one pay for thousands of deletions.
    done_dirs: list[Path] = []
    times: dict[str, list[float]] = {"helper": [], "stock": [], "skip_smudge": [], "raw": []}
    for i in range(args.runs):
        d = dest / str(i)
        pairs = [("helper", ["git", "clone", "-q", hf_url, str(d / "h")], henv),
                 ("stock", ["git", "clone", "-q", stock_url, str(d / "s")], env)]
        for name, argv, e in (pairs if i % 2 == 0 else pairs[::-1]):
            os.sync()
            times[name].append(timed(argv, e))
        check_clone(d / "h", src, henv, smudged=True)
        check_clone(d / "s", src, env, smudged=True)
        os.sync()
        times["skip_smudge"].append(timed(["git", "clone", "-q", stock_url, str(d / "k")],
                                          {**env, "GIT_LFS_SKIP_SMUDGE": "1"}))
        times["raw"].append(raw_download(endpoint, token, src, d / "raw"))
        print(f"  run {i + 1}/{args.runs}: hf:// {times['helper'][-1]:.2f}s, stock {times['stock'][-1]:.2f}s, "
              f"skip-smudge {times['skip_smudge'][-1]:.2f}s + raw LFS {times['raw'][-1]:.2f}s", flush=True)
        done_dirs.append(d)
    out: dict[str, Any] = {"times": times, "best": {k: min(v) for k, v in times.items()}}
    # bytes on the wire (every response byte through a counting proxy) against pack + LFS bytes
    proxy = ProxyHandle(endpoint, 0)
    try:
        run(["git", "clone", "-q", hf_url, str(dest / "wire")], {**henv, "HF_ENDPOINT": proxy.endpoint})
        stats = proxy.stats()
    finally:
        proxy.stop()
    run(["git", "clone", "-q", "--bare", stock_url, str(dest / "pack.git")], {**env, "GIT_LFS_SKIP_SMUDGE": "1"})
    pack = sum(p.stat().st_size for p in (dest / "pack.git/objects/pack").glob("*.pack"))
    lfs = len(src.oids) * src.lfs_size
    out["wire"] = {"bytes": stats["down_head_bytes"] + stats["down_body_bytes"], "pack": pack, "lfs": lfs,
                   "requests": stats["requests"]}
    # disk with no second copy of LFS content (hardlinks here: reflinks are invisible to a byte count)
    run(["git", "clone", "-q", "--config", "hf.lfs.linkMode=hardlink", hf_url, str(dest / "disk")], henv)
    out["disk"] = {"clone": disk_bytes(dest / "disk"), "worktree": worktree_bytes(dest / "disk")}
    run(["git", "clone", "-q", stock_url, str(dest / "disk-stock")], env)
    out["disk"]["stock"] = disk_bytes(dest / "disk-stock")
    done_dirs.append(dest)
    dest = tmp / "helper-latency-clones"
    # the same clones with injected latency on every round trip, --runs times each, alternating
    proxy = ProxyHandle(endpoint, args.latency_ms / 1000)
    lat_times: dict[str, list[float]] = {"helper": [], "stock": []}
    try:
        for i in range(args.runs):
            d = dest / str(i)
            pairs = [("helper", ["git", "clone", "-q", hf_url, str(d / "lh")], {**henv, "HF_ENDPOINT": proxy.endpoint}),
                     ("stock", ["git", "clone", "-q", f"{proxy.endpoint}/{REPO_ID}", str(d / "ls")], env)]
            for name, argv, e in (pairs if i % 2 == 0 else pairs[::-1]):
                os.sync()
                lat_times[name].append(timed(argv, e))
            check_clone(d / "lh", src, henv, smudged=True)
            check_clone(d / "ls", src, env, smudged=True)
            print(f"  {args.latency_ms:g} ms run {i + 1}/{args.runs}: hf:// {lat_times['helper'][-1]:.2f}s, "
                  f"stock {lat_times['stock'][-1]:.2f}s", flush=True)
    finally:
        proxy.stop()
        for folder in [*done_dirs, dest]:
            shutil.rmtree(folder, ignore_errors=True)
    out["latency"] = {k: min(v) for k, v in lat_times.items()}
    out["latency_times"] = lat_times
    return out


def print_helper(res: dict[str, Any], args: argparse.Namespace) -> bool:
    """The helper's table and its verdict on each goal of the issue; True if all are met."""
    best, wire, disk, lat = res["best"], res["wire"], res["disk"], res["latency"]
    med = {k: statistics.median(v) for k, v in res["times"].items()}
    lat_med = {k: statistics.median(v) for k, v in res.get("latency_times", {}).items()} or lat
    reference = best["skip_smudge"] + best["raw"]
    rows: list[tuple[str, float, float | None, str]] = [
        ("wall time: `git clone hf://` / stock `git clone` + git-lfs", best["helper"] / best["stock"],
         HELPER_GOALS["stock"], (f"{best['helper']:.2f}s / {best['stock']:.2f}s (medians {med['helper']:.2f}s / "
         f"{med['stock']:.2f}s: {med['helper'] / med['stock']:.2f}x)")),
        ("wall time: `git clone hf://` / (skip-smudge clone + raw parallel LFS download)", best["helper"] / reference,
         HELPER_GOALS["reference"], f"{best['helper']:.2f}s / ({best['skip_smudge']:.2f}s + {best['raw']:.2f}s)"),
        ("bytes on the wire / (pack + LFS bytes)", wire["bytes"] / (wire["pack"] + wire["lfs"]), HELPER_GOALS["wire"],
         f"{wire['bytes']:,} / ({wire['pack']:,} + {wire['lfs']:,}), {wire['requests']} requests"),
        ("disk (hf.lfs.linkMode=hardlink) / worktree", disk["clone"] / disk["worktree"], HELPER_GOALS["disk"],
         f"{disk['clone']:,} / {disk['worktree']:,} (stock clone: {disk['stock'] / disk['worktree']:.2f}x)"),
    ]
    latency = (f"{lat['helper']:.2f}s vs stock {lat['stock']:.2f}s (medians {lat_med['helper']:.2f}s / "
               f"{lat_med['stock']:.2f}s)")
    if main_repo(args):  # the 2.5 s is for its main repo; another shape shows the ratio to stock
        rows.append((f"`git clone hf://` at {args.latency_ms:g} ms per round trip (s; stock: {lat['stock']:.2f}s)",
                     lat["helper"], HELPER_GOALS["latency_s"], latency))
    else:
        rows.append((f"`git clone hf://` at {args.latency_ms:g} ms per round trip / stock (no goal for this shape)",
                     lat["helper"] / lat["stock"], None, latency))
    print()
    print_table(["git-remote-hf (best of runs)", "value", "goal", "met", "measured (best; medians)"],
                ([name, f"{value:.2f}", "" if goal is None else f"<= {goal}",
                  "" if goal is None else "yes" if value <= goal else "NO", detail]
                 for name, value, goal, detail in rows), right=range(1, 3))
    return all(goal is None or value <= goal for _, value, goal, _ in rows)


def main_repo(args: argparse.Namespace) -> bool:
    """Whether the benchmark repo has the issue's main shape (2,000 small files and 300 x 1 MiB LFS objects)."""
    return (args.files, args.lfs_objects, args.lfs_mib, args.lfs_kib) == (2000, 300, 1, 0)
