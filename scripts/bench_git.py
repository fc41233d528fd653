"""Clone benchmark of the embedded hub (``hubfs serve``): git smart HTTP + Git LFS against
``git http-backend`` serving the same repository in the same run.

The repository (built once in a temporary directory): the hub's initial commit (its default
``.gitattributes``) plus one commit with ``--files`` small text files (default 2,000, 200 B-4 KiB,
in 40 folders) and ``--lfs-objects`` binary files of ``--lfs-mib`` MiB of random bytes each
(default 300 x 1 MiB, ``weights/wNNN.bin``, stored through git-lfs). It is pushed to the hub with
``git push`` (which uploads the LFS objects through the hub's batch API too).

The baseline is the standard deployment of ``git http-backend``: nginx (one worker) in front of
fcgiwrap running ``git-http-backend`` as CGI for every request, on a ``git clone --bare --no-local``
copy of the same repository (one pack, like the hub's pushed repo). Its Git LFS endpoint
(``REPO.git/info/lfs``, the one git-lfs derives from the clone URL, so both clone commands are the
same) is a minimal batch API written here (proxied by nginx to a thread of this script) that
hands out nginx-served static files of the LFS objects. Without nginx or fcgiwrap, or with
``--baseline-host python``, the bridge thread does all of it (CGI, batch, static files) itself
(``apt-get install fcgiwrap`` gets the standard setup).

Measured, best of ``--runs`` (each into a fresh directory; each scenario on both servers back to
back, the one going first alternating by run; ``sync`` before each timed command), with
``GIT_TERMINAL_PROMPT=0``, ``GIT_CONFIG_NOSYSTEM=1`` and a fresh ``HOME`` where ``git lfs install``
ran:

1. ``git clone URL DIR``: full clone, the LFS files smudged (downloaded) during checkout;
2. ``GIT_LFS_SKIP_SMUDGE=1 git clone URL DIR``: git objects only;
3. ``git lfs pull`` in that skip-smudge clone: LFS objects only.

Every clone is checked: its HEAD is the source commit, all files are there, all LFS files have
their size and three of them their sha256. The table gives the best times, their ratio, and the
median of the per-run ratios (steadier on a shared machine). The project's goal: full clone within
1.2x the wall time of ``git http-backend``.

Run it (about 1.5-3 minutes on 2 cores at the defaults; the quick check takes under half a minute)::

    .venv/bin/python scripts/bench_git.py
    .venv/bin/python scripts/bench_git.py --files 200 --lfs-objects 30 --json /tmp/bench_git.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from benchlib import add_numbers, add_output_args, arg_parser, start_hub, workdir, write_json
from benchlib.git_baseline import NGINX, start_baseline
from benchlib.git_helper import HELPER_GOALS, measure_helper, print_helper
from benchlib.git_repo import (
    REPO_ID,
    Source,
    build_source,
    check_clone,
    create_hub_repo,
    make_bare,
    push_to_hub,
    run,
    setup_home,
    timed,
)
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.table import print_table

SCENARIOS = {
    "full": "git clone (full, LFS smudged on checkout)",
    "skip_smudge": "GIT_LFS_SKIP_SMUDGE=1 git clone (git objects only)",
    "lfs_pull": "git lfs pull after the skip-smudge clone (LFS only)",
}
GOAL = 1.2
TOOLS = ("git", "git-lfs", "nginx")


# -- measurements --------------------------------------------------------------------------------


def timed_step(scenario: str, url: str, dest: Path, env: dict[str, str]) -> float:
    """One timed command of ``scenario``; ``sync`` first, so the writeback of the previous clone's
    LFS bytes (object store + working tree, ~2x) is not charged to this one."""
    os.sync()
    if scenario == "full":
        return timed(["git", "clone", url, str(dest / "full")], env)
    if scenario == "skip_smudge":
        return timed(["git", "clone", url, str(dest / "skip")], {**env, "GIT_LFS_SKIP_SMUDGE": "1"})
    return timed(["git", "lfs", "pull"], env, dest / "skip")


def check_step(scenario: str, dest: Path, src: Source, env: dict[str, str]) -> None:
    """Check what ``scenario`` produced; delete clones no later step needs."""
    if scenario == "full":
        check_clone(dest / "full", src, env, smudged=True)
        shutil.rmtree(dest / "full")
    elif scenario == "skip_smudge":
        check_clone(dest / "skip", src, env, smudged=False)
    else:
        check_clone(dest / "skip", src, env, smudged=True)
        shutil.rmtree(dest)


def measure(targets: dict[str, str], src: Source, env: dict[str, str], tmp: Path,
            runs: int) -> dict[str, dict[str, list[float]]]:
    """scenario -> server -> seconds of every run.

    Each run does the scenarios in order (full clone; skip-smudge clone; ``git lfs pull`` in it),
    and each scenario on both servers back to back, the server going first alternating from run to
    run: the two numbers of a pair see the same conditions on a shared (noisy) machine.
    """
    times: dict[str, dict[str, list[float]]] = {s: {name: [] for name in targets} for s in SCENARIOS}
    names = list(targets)
    for i in range(runs):
        order = names if i % 2 == 0 else names[::-1]
        dests = {name: tmp / "clones" / f"{name}-{i}" for name in names}
        line = []
        for scenario in SCENARIOS:
            for name in order:
                seconds = timed_step(scenario, targets[name], dests[name], env)
                check_step(scenario, dests[name], src, env)
                times[scenario][name].append(seconds)
            line.append(f"{scenario} " + " / ".join(f"{times[scenario][n][-1]:.2f}s" for n in names))
        print(f"  run {i + 1}/{runs} ({' / '.join(names)}): " + "  ".join(line), flush=True)
    return times


# -- report ---------------------------------------------------------------------------------------


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per scenario: best seconds of each server, their ratio, and the median of the per-run ratios."""
    out: dict[str, dict[str, float]] = {}
    for scenario, per_server in times.items():
        hub, base = per_server["hubfs"], per_server["baseline"]
        paired = statistics.median(h / b for h, b in zip(hub, base))
        out[scenario] = {"hubfs": min(hub), "baseline": min(base), "ratio": min(hub) / min(base),
                         "median_paired_ratio": paired}
    return out


def print_results(best: dict[str, dict[str, float]], runs: int) -> None:
    head = [f"scenario (best of {runs})", "hubfs (s)", "git http-backend (s)", "hubfs / baseline",
            "median of per-run ratios"]
    print_table(head, ([label, f"{best[s]['hubfs']:.2f}", f"{best[s]['baseline']:.2f}", f"{best[s]['ratio']:.2f}x",
                        f"{best[s]['median_paired_ratio']:.2f}x"] for s, label in SCENARIOS.items()),
                right=range(1, len(head)))


def print_notes(baseline: str, args: argparse.Namespace, push_s: float) -> None:
    print()
    print(f"- content: {args.files} small text files (200 B-4 KiB) + {args.lfs_objects} LFS objects x "
          f"{args.lfs_mib} MiB random bytes, one commit on top of the hub's initial commit.")
    print(f"- baseline: {baseline}; repository: a `git clone --bare --no-local` of the pushed source.")
    print("- hubfs: one uvicorn process (`hubfs serve`), git upload-pack per request, LFS from its own store.")
    print("- both clone URLs have the same shape (`.../REPO[.git]`), git-lfs derives `REPO.git/info/lfs` from it; "
          "git-lfs defaults (8 concurrent transfers); clients share the machine's cores with the servers.")
    print(f"- setup (not measured against anything): `git push` of the content to hubfs took {push_s:.1f}s.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--files", 2000, "number of small text files"),
                ("--lfs-objects", 300, "number of LFS files"),
                ("--lfs-mib", 1, "size of each LFS file in MiB"),
                ("--lfs-kib", 0, "size of each LFS file in KiB, instead of --lfs-mib"),
                ("--latency-ms", 50.0, "round-trip latency the proxy adds for the git-remote-hf latency row"),
                ("--runs", 3, "repetitions; the best counts"))
    p.add_argument("--baseline-host", choices=("auto", "nginx", "python"), default="auto",
                   help="nginx+fcgiwrap (auto: when both exist) or the Python CGI bridge")
    p.add_argument("--only", choices=("all", "server", "helper"), default="all",
                   help="server: hubfs against git http-backend; helper: git clone hf:// against stock git + git-lfs")
    add_output_args(p)
    args = p.parse_args(argv)
    if args.files < 1 or args.lfs_objects < 1 or args.lfs_mib < 1 or args.runs < 1 or args.lfs_kib < 0:
        p.error("--files, --lfs-objects, --lfs-mib and --runs must be >= 1 (--lfs-kib >= 0)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info({"git": tool_version(["git", "--version"]), "git-lfs": tool_version(["git", "lfs", "version"]),
                         "nginx": tool_version([NGINX, "-v"])})
    print(machine_line(info, TOOLS), flush=True)
    times: dict[str, dict[str, list[float]]] = {}
    helper: dict[str, Any] = {}
    baseline = ""
    with workdir(args.keep, "hubfs-bench-git-") as tmp, contextlib.ExitStack() as stack:
        os.environ.setdefault("HF_HOME", str(tmp / "hf-home"))
        env = setup_home(tmp / "home")
        endpoint, token = start_hub(stack, tmp)
        create_hub_repo(endpoint, token)
        hub_url = f"{endpoint}/{REPO_ID}"
        print(f"hubfs at {endpoint}", flush=True)
        src = build_source(tmp / "source", hub_url, env, args)
        push_s = push_to_hub(src, hub_url.replace("://", f"://admin:{token}@", 1), env)
        print(f"pushed to hubfs in {push_s:.1f}s", flush=True)
        hub_head = run(["git", "ls-remote", hub_url, "refs/heads/main"], env).split()[0]
        if hub_head != src.head:
            raise RuntimeError(f"hubfs main is {hub_head} after the push, expected {src.head}")
        if args.only in ("all", "server"):
            project_root = tmp / "cgi-root"
            make_bare(src, project_root, env)
            base_url, baseline = start_baseline(stack, tmp, project_root, src, env, args.baseline_host)
            print(f"baseline at {base_url}: {baseline}", flush=True)
            times = measure({"hubfs": hub_url, "baseline": base_url}, src, env, tmp, args.runs)
        if args.only in ("all", "helper"):
            print("git clone hf:// (git-remote-hf, no git-lfs) against stock git clone + git-lfs, same hub:", flush=True)
            helper = measure_helper(endpoint, token, src, env, tmp, args)
    print()
    print(machine_line(info, TOOLS))
    met = True
    best: dict[str, dict[str, float]] = {}
    if times:
        best = summarize(times)
        print()
        print_results(best, args.runs)
        ratio = best["full"]["ratio"]
        met = ratio <= GOAL
        print(f"\ngoal (full clone wall time within {GOAL}x of git http-backend, best of {args.runs} each): "
              f"{ratio:.2f}x -> {'met' if met else 'NOT met'} (median of per-run ratios: "
              f"{best['full']['median_paired_ratio']:.2f}x)")
        print_notes(baseline, args, push_s)
    helper_met = print_helper(helper, args) if helper else None
    if args.json:
        write_json(args.json, info, args, baseline=baseline, push_seconds=push_s, labels=SCENARIOS, runs=times,
                   best=best, goal=GOAL, goal_met=met if times else None, helper=helper, helper_goals=HELPER_GOALS,
                   helper_goals_met=helper_met)
    return 0


if __name__ == "__main__":
    sys.exit(main())
