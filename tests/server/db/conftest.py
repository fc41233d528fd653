"""One throwaway PostgreSQL cluster for the session (tests/pg_cluster.py), and ``db``: a fresh
database on each backend, for the store-level tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_cluster import PgCluster

from hubfs.server.db import Database, open_database


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    else:
        database = open_database(request.getfixturevalue("pg").new_database())
    try:
        yield database
    finally:
        database.close()
