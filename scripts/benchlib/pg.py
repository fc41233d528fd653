"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's ``postgresql`` binaries
(``/usr/lib/postgresql/*/bin``), ``initdb`` into a temporary folder, trust authentication, listening on
127.0.0.1 on a free port (and a unix socket in the folder), run as an unprivileged user (``nobody``
when this process is root: PostgreSQL refuses to run as root). No password anywhere.

    with pg_cluster(tmp_dir) as url:      # postgresql://hubfs@127.0.0.1:PORT/hubfs
        ...

:class:`PgCluster` gives more: fresh databases (``new_database``), ``stop``/``start`` (a restart
keeps the data and the port), the log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

SUPERUSER = "hubfs"


def pg_bin() -> Path:
    """The newest installed PostgreSQL's ``bin`` folder (FileNotFoundError: install ``postgresql``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One cluster in its own folder; ``url`` is its ``hubfs`` database."""

    def __init__(self, durable: bool = False) -> None:
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="hubfs-pg-"))  # short (unix socket path) and reachable by `nobody`
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.durable = durable
        self._user = "nobody" if os.geteuid() == 0 else None
        if self._user:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, self._user)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bin / tool), *args], check=True, user=self._user, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self.root, timeout=120)

    def url_of(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_of(SUPERUSER)

    def start(self) -> PgCluster:
        settings = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                    + ("" if self.durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", settings, "-w", "-t", "60", "start")
        if not self._exists(SUPERUSER):
            self._create(SUPERUSER)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: active connections are cut, as in a restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def _admin(self) -> object:
        import psycopg

        return psycopg.connect(self.url_of("postgres"), autocommit=True)

    def _exists(self, name: str) -> bool:
        with self._admin() as conn:  # type: ignore[attr-defined]
            return conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone() is not None

    def _create(self, name: str) -> None:
        with self._admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f'CREATE DATABASE "{name}"')

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._create(name)
        return self.url_of(name)

    def close(self) -> None:
        """Stop the server (if running) and delete the folder."""
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        for _ in range(50):
            if not self.running():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_cluster(tmp_dir: Path | None = None, *, durable: bool = False) -> Iterator[str]:
    """A running throwaway cluster for the block; yields the URL of its ``hubfs`` database.

    ``tmp_dir`` is accepted for symmetry with the other helpers (the cluster lives in its own folder
    under the system temp dir so that ``nobody`` can reach it); ``durable``: fsync on (benchmarks)."""
    cluster = PgCluster(durable=durable)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.close()
