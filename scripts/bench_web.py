"""Server time of the embedded hub's web pages: the search page over many repos and the pages of a repo
with many files, against the JSON API answering the same question in the same run.

What it measures: ``--repos`` model repos (default 10,000) with varied cards (task, library,
languages, license) for the search pages, and one repo with ``--files`` files (default 10,000) in its
top folder for the repo page, the file tree (first and last page) and a file view. Each page is
fetched ``--runs`` times (after one warm-up) over one keep-alive loopback connection; the figure is
the median of the ``Server-Timing: app;dur=MS`` header the pages carry (time in the handler:
access checks, git and SQLite reads, template rendering), with the client's wall time beside it.
The peer column is the API route that answers the same question (``/api/models?search=...``,
``/api/models/ID/tree/main``), timed on the client. The goal (issue 15): every page under 100 ms
of server time.

Repos are made with the hub's own service layer (``Hub.create_repo``, ``GitRepo.commit``) in the
data folder before ``hubfs serve`` starts, so setting up 10,000 repos takes a minute or two, not an
hour of HTTP round trips. Everything runs in a temporary directory on 127.0.0.1; the server is
stopped by PID at the end.

Run it::

    .venv/bin/python scripts/bench_web.py                       # 10,000 repos, 10,000 files
    .venv/bin/python scripts/bench_web.py --repos 500 --files 1000 --runs 5   # a quick check
"""

from __future__ import annotations

import contextlib
import random
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
from benchlib import TESTS, add_numbers, add_output_args, arg_parser, workdir, write_json
from benchlib.machine import machine_info, machine_line
from benchlib.table import Row, print_table, ratio, verdict

sys.path.insert(0, str(TESTS))
from hub_server import HubServer

from hubfs.server.cards import card_tags
from hubfs.server.git_store import Change
from hubfs.server.hub import ADMIN, Caller, Hub

GOAL_MS = 100.0
BIG_REPO = "admin/many-files"
TASKS = ["fill-mask", "text-generation", "image-classification", "translation", "summarization",
         "token-classification", "automatic-speech-recognition", "feature-extraction"]
LIBRARIES = ["transformers", "timm", "diffusers", "sentence-transformers", "peft", "gguf"]
LANGUAGES = ["en", "fr", "de", "es", "zh", "ja", "ar", "hi", "pt", "ru"]
LICENSES = ["mit", "apache-2.0", "cc-by-4.0", "openrail", "llama3"]
_TIMING = re.compile(r"app;dur=([\d.]+)")


def populate(data: Path, repos: int, files: int, seed: int = 0) -> None:
    """``repos`` models with cards in the metadata index, and ``BIG_REPO`` with ``files`` files at its top."""
    rnd = random.Random(seed)
    hub = Hub(data)
    hub.bootstrap()
    admin = Caller(ADMIN, "write")
    for i in range(repos):
        hub.create_repo(admin, "model", f"admin/model-{i:05d}", private=i % 50 == 0)
        repo = hub.meta.get_repo("model", f"admin/model-{i:05d}")
        assert repo is not None
        card = {"pipeline_tag": rnd.choice(TASKS), "library_name": rnd.choice(LIBRARIES),
                "language": rnd.sample(LANGUAGES, rnd.randint(1, 3)), "license": rnd.choice(LICENSES),
                "tags": [f"group-{i % 20}"]}
        hub.meta.index_card(repo, repo.indexed_sha or "", card, card_tags("model", card), card["pipeline_tag"],
                            card["library_name"], time.time() - rnd.random() * 1e7)
    repo = hub.create_repo(admin, "model", BIG_REPO, private=False)
    with hub.git.open("model", BIG_REPO) as g:
        readme = "---\nlicense: mit\npipeline_tag: fill-mask\nlibrary_name: transformers\n---\n# Many files\n\n" + \
                 "Some text.\n" * 200
        changes = [Change("put", "README.md", g.add_blob(readme.encode()))]
        changes += [Change("put", f"file-{i:05d}.txt", g.add_blob(f"content {i}\n".encode())) for i in range(files)]
        sha, _ = g.commit("refs/heads/main", changes, "add many files", hub.signature(ADMIN))
        hub.after_ref_update(repo, g, "refs/heads/main", sha)


def measure(client: httpx.Client, path: str, runs: int) -> tuple[float, float, float]:
    """(median server ms, max server ms, median client ms) of ``runs`` GETs after one warm-up."""
    r = client.get(path)
    r.raise_for_status()
    server, wall = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(path)
        wall.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        m = _TIMING.search(r.headers.get("server-timing", ""))
        if m is None:
            raise RuntimeError(f"{path} carries no Server-Timing header")
        server.append(float(m.group(1)))
    return statistics.median(server), max(server), statistics.median(wall)


def client_ms(client: httpx.Client, path: str, runs: int) -> float:
    client.get(path).raise_for_status()
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.get(path).raise_for_status()
        wall.append((time.perf_counter() - t0) * 1000)
    return statistics.median(wall)


def main() -> int:
    p = arg_parser(__doc__)
    add_numbers(p, ("--repos", 10_000, "model repos for the search pages"),
                ("--files", 10_000, "files in the top folder of the big repo"),
                ("--runs", 20, "timed requests per page (median reported)"))
    p.add_argument("--data", help="hub data folder to make (or reuse, when it holds a hub) instead of a temporary one")
    add_output_args(p)
    args = p.parse_args()
    machine = machine_info(packages=["jinja2", "markdown_it", "nh3"])
    print(machine_line(machine, packages=["jinja2", "markdown_it", "nh3"]))
    rows: list[Row] = []
    with workdir(args.keep) as tmp, contextlib.ExitStack() as stack:
        data = Path(args.data) if args.data else tmp / "hub-data"
        if (data / "hub.sqlite").exists():
            print(f"reusing the hub data in {data} (made by an earlier run with --data)")
        else:
            t0 = time.perf_counter()
            populate(data, args.repos, args.files)
            print(f"set up {args.repos} repos and a repo of {args.files} files in {time.perf_counter() - t0:.1f} s")
        server = HubServer(data)
        stack.callback(server.stop)
        server.start(timeout=600)  # the hub re-checks every repo's card index at start
        client = stack.enter_context(httpx.Client(base_url=server.endpoint, timeout=120))
        last_page = max(0, (args.files + 1 - 1) // 200)
        pages = [
            ("search: all models", "/models", "/api/models?limit=30"),
            ("search: text", "/models?search=model-0", "/api/models?search=model-0&limit=30"),
            ("search: 4 facets", "/models?pipeline_tag=fill-mask&library=transformers&language=fr&license=mit",
             "/api/models?pipeline_tag=fill-mask&library=transformers&language=fr&filter=license:mit&limit=30"),
            ("search: page 10, by name", "/models?sort=name&p=10", "/api/models?limit=30"),
            (f"repo page ({args.files} files)", f"/{BIG_REPO}", f"/api/models/{BIG_REPO}"),
            ("file tree, first page", f"/{BIG_REPO}/tree/main", f"/api/models/{BIG_REPO}/tree/main"),
            ("file tree, last page", f"/{BIG_REPO}/tree/main?p={last_page}", f"/api/models/{BIG_REPO}/tree/main"),
            ("file view", f"/{BIG_REPO}/blob/main/file-00001.txt", f"/{BIG_REPO}/resolve/main/file-00001.txt"),
            ("history", f"/{BIG_REPO}/commits/main", f"/api/models/{BIG_REPO}/commits/main"),
        ]
        for name, path, peer_path in pages:
            med, worst, wall = measure(client, path, args.runs)
            peer = client_ms(client, peer_path, args.runs)
            rows.append(Row(name, f"{med:.1f} ms (max {worst:.1f}, client {wall:.1f})", f"{peer:.1f} ms",
                            ratio(med, peer), f"< {GOAL_MS:.0f} ms", med < GOAL_MS, med,
                            {"max_ms": worst, "client_ms": wall, "peer_client_ms": peer, "path": path}))
    print(f"\n{args.repos} repos, a repo of {args.files} files, median of {args.runs} requests per page\n")
    print_table(["page", "hubfs page (server time)", "API peer (client time)", "ratio", "goal", "met"],
                [[r.scenario, r.hubfs, r.peer, r.ratio, r.goal, verdict(r.met)] for r in rows], right=(1, 2, 3))
    if args.json:
        write_json(Path(args.json), machine, args, rows=[{"page": r.scenario, "server_ms": r.value, **r.extra}
                                                         for r in rows])
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
