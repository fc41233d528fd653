"""``hubfs serve --workers N``: N worker processes accepting on one listening socket.

The choice: uvicorn's own multi-process supervisor over a socket the parent binds, each worker
building its app with the factory ``hubfs.server.app:worker_app`` from settings passed in the
environment (``HUBFS_SERVE_SETTINGS``). Workers are *spawned* (a fresh interpreter, nothing
inherited but the socket and the environment), so no SQLite connection, thread or lock of the
parent leaks into them; the supervisor pings each worker and starts a new one when one dies
(a worker killed mid-request costs that request only). The alternative, pre-forking workers that
each bind with ``SO_REUSEPORT``, lets the kernel hash connections to processes instead of waking
one accepting process; measured with ``scripts/bench_scale.py`` the accept model is not what limits
small-file requests here (Python per request is), and the supervisor's restart and health checks
would have to be written again. Spawning costs ~1 s of start-up per worker, once.

Start-up work, and where it runs:

- object-store check and ``object-store.json``, schema creation and column migrations, the admin
  account and token file, removal of dead upload temporaries, the card re-index, the git hooks:
  **once**, in the parent, before any worker starts, under ``DATA/startup.lock`` (an exclusive
  flock), so independent ``hubfs serve`` processes sharing a data folder also take turns;
- each worker opens the same hub (``CREATE ... IF NOT EXISTS``: safe N times) and serves;
- periodic gc and webhook delivery: **once**, as threads of the parent (both are also safe N times:
  gc deletes under the data folder's exclusive reclaim flock, deliveries are claimed with a lease);
- jobs: refused with ``--workers`` > 1 (a runner keeps its jobs' live state in memory and marks
  the jobs it does not know as stopped when it starts): one ``--workers 1`` hub runs them;
- inference: per worker (each worker loads the models it serves).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from hubfs.config import export_serve_settings

if TYPE_CHECKING:
    from hubfs.server.app import ServeSettings

FACTORY = "hubfs.server.app:worker_app"


def run_workers(settings: ServeSettings, sock: socket.socket, workers: int, options: dict[str, Any]) -> None:
    """Serve ``sock`` with ``workers`` spawned processes until SIGINT or SIGTERM (then stop them all)."""
    export_serve_settings(settings.to_json())  # spawned workers inherit the environment
    config = uvicorn.Config(FACTORY, factory=True, workers=workers, **options)
    Multiprocess(config, sockets=[sock]).run()
