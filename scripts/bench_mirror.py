"""Mirror benchmark: ``hubfs mirror`` against stock git + git-lfs copying the same repo between two embedded
hubs (``hubfs serve``) on loopback, in the same run.

The source repo (built once): ``--files`` small text files (default 500, 600 B each) and ``--lfs-objects``
LFS files of ``--lfs-mib`` MiB of random bytes (default 16 x 4 MiB), one commit. Three scenarios, each
for hubfs then the peer, into two different destination repos of the same destination hub:

1. first copy: ``hubfs mirror SRC/REPO`` against ``git clone --bare`` + ``git lfs fetch --all`` +
   ``git lfs push --all DEST`` + ``git push DEST 'refs/heads/*' 'refs/tags/*'``;
2. nothing changed: the same commands again (the peer: ``git fetch`` + ``git lfs fetch --all`` + push);
3. one new commit with one new LFS file at the source, then the same commands again.

Both keep the commit shas (checked: the destination's main is the source's). The goal: hubfs takes at most
the peer's wall time in every scenario.

Run it (under a minute on 2 cores at the defaults)::

    .venv/bin/python scripts/bench_mirror.py
    .venv/bin/python scripts/bench_mirror.py --files 100 --lfs-objects 4 --lfs-mib 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.table import print_table, ratio
from hub_server import HubServer

from hubfs.client.api import HubClient
from hubfs.client.commit import Add
from hubfs.mirror import mirror

TOOLS = ("git", "git-lfs")


def _git(env: dict[str, str], token: str, *args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", "-c", f"http.extraHeader=Authorization: Bearer {token}", *args], cwd=cwd, env=env,
                   check=True, capture_output=True, timeout=600)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--lfs-objects", type=int, default=16)
    parser.add_argument("--lfs-mib", type=int, default=4)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hubfs-bench-mirror-"))
    os.environ["HF_HOME"] = str(root / "home")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root),
           "GIT_CONFIG_GLOBAL": str(root / "gitconfig")}
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    tools = {"git": tool_version(["git", "--version"]), "git-lfs": tool_version(["git", "lfs", "version"], 1)}
    print(machine_line(machine_info(tools), TOOLS), flush=True)
    src = HubServer(root / "src", "--regular-max-size", "1k").start()
    dst = HubServer(root / "dst").start()
    rows = []
    try:
        repo, peer_repo = "admin/bench", "admin/bench-git"
        size = args.lfs_mib << 20
        with HubClient(src.endpoint, src.admin_token) as source, HubClient(dst.endpoint, dst.admin_token) as dest:
            source.create_repo("model", repo)
            ops = [Add(f"small/{i:05d}.txt", os.urandom(600)) for i in range(args.files)]
            ops += [Add(f"weights/{i:03d}.bin", os.urandom(size)) for i in range(args.lfs_objects)]
            source.commit("model", repo, ops, "bench data")
            dest.create_repo("model", peer_repo)
            bare = root / "peer.git"
            src_url, dst_url = f"{src.endpoint}/{repo}", f"{dst.endpoint}/{peer_repo}"

            def ours() -> None:
                mirror(src_url, dest, src_token=src.admin_token, work_dir=root / "work")

            def theirs(first: bool) -> None:
                if first:
                    _git(env, src.admin_token, "clone", "-q", "--bare", src_url, str(bare))
                else:
                    _git(env, src.admin_token, "fetch", "-q", src_url, "+refs/heads/*:refs/heads/*",
                         "+refs/tags/*:refs/tags/*", cwd=bare)
                _git(env, src.admin_token, "lfs", "fetch", "--all", src_url, cwd=bare)
                _git(env, dst.admin_token, "lfs", "push", "--all", dst_url, cwd=bare)
                _git(env, dst.admin_token, "push", "-q", "--force", dst_url, "refs/heads/*:refs/heads/*",
                     "refs/tags/*:refs/tags/*", cwd=bare)

            label = f"{args.files} files + {args.lfs_objects} LFS x {args.lfs_mib} MiB"
            for scenario, first in ((f"first copy ({label})", True), ("nothing changed", False),
                                    ("one new LFS file", False)):
                if scenario == "one new LFS file":
                    source.commit("model", repo, [Add("weights/new.bin", os.urandom(size))], "one more")
                a, b = timed(ours), timed(lambda first=first: theirs(first))
                main_sha = source.resolve("model", repo, refresh=True)
                same = {dest.resolve("model", r, refresh=True) for r in (repo, peer_repo)} == {main_sha}
                rows.append([scenario, f"{a:.2f} s", f"{b:.2f} s", ratio(a, b), "<= 1.00x",
                             ("yes" if a <= b else "**no**") + ("" if same else " (shas differ!)")])
    finally:
        src.stop()
        dst.stop()
    print()
    print_table(["scenario", "hubfs mirror", "git + git-lfs", "ratio", "goal", "met"], rows, right=(1, 2, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
