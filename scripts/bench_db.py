"""Metadata database benchmark: the hub's stores on SQLite (WAL, one file) and on PostgreSQL
(a throwaway local cluster, ``scripts/benchlib/pg.py``, fsync on unless ``--no-fsync``), measured in the
same run. SQLite runs WAL with ``synchronous=NORMAL`` (no fsync per commit); PostgreSQL's commits fsync.

Rows, each on both backends:

1. **token lookup**: ``Metadata.lookup_token`` (the read every authenticated request makes), median latency.
2. **write tx**: ``Metadata.link_lfs`` (one ``tx()``: one INSERT), median latency, one thread.
3. **writes, N threads**: write transactions per second with ``--threads`` threads at once (every
   ``tx()`` of PostgreSQL takes the one global advisory lock, as SQLite's ``BEGIN IMMEDIATE`` takes
   the file's write lock). PostgreSQL is also measured with the lock left out (``SET``-free raw
   ``BEGIN``/``COMMIT``, same INSERT): the cost of serializing writers.

Run it (about a minute)::

    .venv/bin/python scripts/bench_db.py [--ops 2000] [--threads 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.pg import pg_bin, pg_cluster
from benchlib.table import print_table, ratio

from hubfs.server.db import Database, open_database
from hubfs.server.metadata import Metadata


def _median_us(op: Callable[[int], None], n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def _throughput(op: Callable[[int], None], threads: int, per_thread: int) -> float:
    def run(k: int) -> None:
        for i in range(per_thread):
            op(k * per_thread + i)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * per_thread / (time.perf_counter() - t)


def measure(db: Database, ops: int, threads: int, offset: int, lockless: bool = False) -> dict[str, float]:
    meta = Metadata(db)
    meta.add_account(f"u{offset}")
    token = meta.create_token(f"u{offset}", "bench")
    repo = meta.create_repo("model", f"u{offset}/r", private=False)
    out = {"lookup_us": _median_us(lambda i: meta.lookup_token(token), ops),
           "write_us": _median_us(lambda i: meta.link_lfs(repo, f"{offset}a{i:063d}"[-64:], i), ops),
           "writes_per_s": _throughput(lambda i: meta.link_lfs(repo, f"{offset}b{i:063d}"[-64:], i), threads,
                                       ops // threads)}
    if lockless:
        pool = db._pool  # type: ignore[attr-defined]

        def raw(i: int) -> None:
            with pool.connection() as conn, conn.transaction():
                conn.execute("INSERT INTO lfs_links VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                             (repo.id, f"{offset}c{i:063d}"[-64:], i))

        out["writes_per_s_nolock"] = _throughput(raw, threads, ops // threads)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-fsync", action="store_true", help="run PostgreSQL with fsync off (the lock's own cost)")
    args = parser.parse_args()
    info = machine_info({"postgres": tool_version([str(pg_bin() / "postgres"), "--version"])}, packages=["psycopg"])
    print(machine_line(info, tools=["postgres"], packages=["psycopg"]))
    with tempfile.TemporaryDirectory(prefix="hubfs-bench-db-") as tmp, pg_cluster(Path(tmp), durable=not args.no_fsync) as url:
        sqlite = open_database(f"sqlite:///{Path(tmp) / 'hub.sqlite'}")
        postgres = open_database(url)
        results = {"sqlite": measure(sqlite, args.ops, args.threads, 1),
                   "postgresql": measure(postgres, args.ops, args.threads, 2, lockless=True)}
        postgres.close()
    s, p = results["sqlite"], results["postgresql"]
    print_table(["operation", "SQLite", "PostgreSQL", "PostgreSQL / SQLite"], [
        ["token lookup (median µs)", f"{s['lookup_us']:.0f}", f"{p['lookup_us']:.0f}", ratio(p["lookup_us"], s["lookup_us"])],
        ["write tx, 1 thread (median µs)", f"{s['write_us']:.0f}", f"{p['write_us']:.0f}", ratio(p["write_us"], s["write_us"])],
        [f"write tx/s, {args.threads} threads", f"{s['writes_per_s']:.0f}", f"{p['writes_per_s']:.0f}",
         ratio(p["writes_per_s"], s["writes_per_s"])],
        [f"write tx/s, {args.threads} threads, no advisory lock", "-", f"{p['writes_per_s_nolock']:.0f}",
         ratio(p["writes_per_s_nolock"], p["writes_per_s"]) + " of locked"],
    ], right=[1, 2, 3])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
